//! `ssh_exec` and the reads that follow a command: results rendered for a language model,
//! progress notifications while a command runs, a link loss never reported as a result.

use std::time::{Duration, Instant};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};
use ssh_session_core::{CommandState, ExecOptions, ReadOptions, Session, ShellSession};

use super::params::ExecArgs;
use super::results::{ExecResult, ReadResult};
use super::{map_core, SshSessionServer, SOURCE};
use crate::error::{McpError, Result};
use crate::render::{render, RenderOptions};

/// How often a running command reports progress, when the client asked for it.
const PROGRESS_EVERY: Duration = Duration::from_millis(1000);

/// The largest accepted `timeout_ms`/`wait_ms`: a day. Longer is certainly a mistake.
const MAX_WAIT_MS: u64 = 86_400_000;

impl SshSessionServer {
    pub(super) fn render_options(
        &self,
        raw: Option<bool>,
        max_chars: Option<usize>,
    ) -> RenderOptions {
        RenderOptions {
            raw: raw.unwrap_or(false),
            max_chars: self.cap(max_chars),
        }
    }

    pub(super) async fn exec(
        &self,
        args: ExecArgs,
        progress: Option<(Peer<RoleServer>, ProgressToken)>,
    ) -> Result<ExecResult> {
        let session = self.session(&args.session)?;
        self.rules_of(&session)?
            .check_command(&args.command)
            .map_err(|detail| McpError::Policy { detail })?;
        let timeout_ms = args.timeout_ms.unwrap_or(self.config.exec_timeout_ms);
        if timeout_ms > MAX_WAIT_MS {
            return Err(McpError::InvalidArgument {
                name: "timeout_ms",
                detail: format!(
                    "{timeout_ms} is over a day; use a shorter timeout and ssh_read_output"
                ),
            });
        }
        let timeout = Duration::from_millis(timeout_ms);
        // By default an agent learns what a person did at the session's terminal before
        // it acts.
        let human_activity = args
            .human_activity
            .map_or(ssh_session_core::HumanActivity::RefuseOnce, Into::into);
        let options = |timeout| ExecOptions {
            timeout: Some(timeout),
            source: Some(SOURCE.into()),
            human_activity,
        };
        let render_opts = self.render_options(args.raw, args.max_output_chars);
        let Some((peer, token)) = progress else {
            let r = session
                .exec(&args.command, options(timeout))
                .await
                .map_err(map_core)?;
            return exec_result(&session, r, render_opts);
        };

        // With a progress token: follow the command, reporting at most once a second.
        let mut follow = session
            .follow(&args.command, options(timeout))
            .await
            .map_err(map_core)?;
        let mut reported = Instant::now();
        while follow
            .next(Some(PROGRESS_EVERY))
            .await
            .map_err(map_core)?
            .is_some()
        {
            if reported.elapsed() < PROGRESS_EVERY {
                continue;
            }
            reported = Instant::now();
            let message = progress_message(&follow.tail(4096), follow.output_bytes());
            let _ = peer
                .notify_progress(
                    ProgressNotificationParam::new(
                        token.clone(),
                        follow.elapsed().as_millis() as f64,
                    )
                    .with_message(message),
                )
                .await;
        }
        exec_result(&session, follow.into_result(), render_opts)
    }

    pub(super) async fn read(
        &self,
        session: &ShellSession,
        wait: Duration,
        screen: bool,
        render_opts: RenderOptions,
    ) -> Result<ReadResult> {
        if wait > Duration::from_millis(MAX_WAIT_MS) {
            return Err(McpError::InvalidArgument {
                name: "wait_ms",
                detail: "over a day; wait less and call again".into(),
            });
        }
        let r = session
            .read_output(ReadOptions {
                wait,
                return_on_output: false,
            })
            .await
            .map_err(map_core)?;
        if let Some(e) = lost_error(session, &r, render_opts) {
            return Err(e);
        }
        let rendered = render(&r.output, r.dropped_bytes, render_opts);
        let notices = r
            .notices
            .iter()
            .map(ToString::to_string)
            .chain(state_notice(&r))
            .collect();
        Ok(ReadResult {
            output: rendered.text,
            running: r.is_running(),
            exit_code: r.exit_code,
            cwd: r.cwd,
            truncated: rendered.truncated,
            screen: screen.then(|| session.screen()),
            shell_exited: r.state == CommandState::ShellExited,
            notices,
            waiting_for: r.waiting_for.as_ref().map(|p| p.kind.name().into()),
            prompt: r.waiting_for.as_ref().map(|p| p.text.clone()),
        })
    }
}

fn exec_result(
    session: &ShellSession,
    r: ssh_session_core::ExecResult,
    render_opts: RenderOptions,
) -> Result<ExecResult> {
    if let Some(e) = lost_error(session, &r, render_opts) {
        return Err(e);
    }
    let rendered = render(&r.output, r.dropped_bytes, render_opts);
    let mut notices: Vec<String> = r.notices.iter().map(ToString::to_string).collect();
    notices.extend(state_notice(&r));
    Ok(ExecResult {
        output: rendered.text,
        exit_code: r.exit_code,
        running: r.is_running(),
        cwd: r.cwd,
        duration_ms: r.duration.as_millis() as u64,
        truncated: rendered.truncated,
        output_bytes: r.output_bytes,
        shell_exited: r.state == CommandState::ShellExited,
        notices,
        waiting_for: r.waiting_for.as_ref().map(|p| p.kind.name().into()),
        prompt: r.waiting_for.as_ref().map(|p| p.text.clone()),
    })
}

/// What a result's end means when it is not an exit code of its own.
fn state_notice(r: &ssh_session_core::ExecResult) -> Option<String> {
    match r.state {
        CommandState::Killed => Some(
            "the command would not stop, so its shell was killed and replaced (cwd and exported variables restored)".into(),
        ),
        CommandState::Untracked => Some(
            "the shell had stopped reporting on this command (exec, its output redirected, the session's variables changed) and was set up again: exit code unknown; cwd, variables and jobs kept".into(),
        ),
        _ => None,
    }
}

/// A command cut off by a lost link is a tool error, never a normal result.
fn lost_error(
    session: &ShellSession,
    r: &ssh_session_core::ExecResult,
    render_opts: RenderOptions,
) -> Option<McpError> {
    (r.state == CommandState::LinkLost).then(|| McpError::LinkLost {
        session: session.name().to_string(),
        command: r.command.clone(),
        output: render(&r.output, r.dropped_bytes, render_opts).text,
    })
}

/// The last line printed so far, for a progress message.
fn progress_message(tail: &[u8], total: u64) -> String {
    let text = crate::render::clean(tail);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let last: String = last.chars().take(200).collect();
    format!("running; {total} bytes of output so far; last line: {last}")
}
