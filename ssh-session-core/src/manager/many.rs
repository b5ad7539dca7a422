//! [`SessionManager::exec_many`]: one command on many sessions at once.

use std::time::Duration;

use futures::future::join_all;

use super::SessionManager;
use crate::error::{Error, Result};
use crate::session::{ExecOptions, ExecResult, Session};

/// How long past its own timeout one session's command may take to answer before it is
/// reported as not answering: writing the command to a link that stalled can block where
/// the command's timeout does not reach.
const GRACE: Duration = Duration::from_secs(5);
/// The timeout when the options give none (the sessions' own default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One session's part of [`SessionManager::exec_many`].
#[derive(Debug)]
#[non_exhaustive]
pub struct ManyResult {
    /// The session.
    pub session: String,
    /// Its command's result (which may still be running), or why it could not run.
    pub result: Result<ExecResult>,
}

impl SessionManager {
    /// Runs `command` on every session in `names` at once, each as
    /// [`exec`](Session::exec) would, and returns their results in the order given (a
    /// name listed twice runs once). A slow or unreachable host delays no other's result:
    /// each returns at its timeout (`running` then), and one that cannot even take the
    /// command within the timeout and a few seconds more is reported as an error. An
    /// unknown name is that entry's error, not the call's.
    pub async fn exec_many(
        &self,
        names: &[impl AsRef<str>],
        command: &str,
        options: ExecOptions,
    ) -> Vec<ManyResult> {
        let mut unique: Vec<&str> = Vec::with_capacity(names.len());
        for name in names.iter().map(AsRef::as_ref) {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        let bound = options.timeout.unwrap_or(DEFAULT_TIMEOUT) + GRACE;
        let runs = unique.into_iter().map(|name| {
            let options = options.clone();
            async move {
                let result = match self.get(name) {
                    Ok(session) => {
                        match tokio::time::timeout(bound, session.exec(command, options)).await {
                            Ok(result) => result,
                            Err(_) => Err(Error::NoAnswer {
                                session: name.to_string(),
                                waited: bound,
                            }),
                        }
                    }
                    Err(e) => Err(e),
                };
                ManyResult {
                    session: name.to_string(),
                    result,
                }
            }
        });
        join_all(runs).await
    }
}
