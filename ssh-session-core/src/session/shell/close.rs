//! Ending a session: close (the remote shell ends; a persistent one is killed), detach (a
//! persistent shell stays), and the best-effort cleanup of a session dropped unclosed.

use std::time::Duration;

use tokio::time::Instant;

use super::driver::Driver;
use crate::error::Result;
use crate::persistent;
use crate::transport::run;

/// What an idle shell is told when its session closes: remove the saved variables, hang up
/// the shell's whole session (background jobs would outlive it: an exiting bash does not
/// hang them up, and they are not in the terminal's foreground), as a closed terminal
/// would; `nohup` and `setsid` keep a job running. Typed into the shell itself, so that no
/// extra channel is needed on a connection that may be at `MaxSessions`.
const BYE: &[u8] = b" rm -f -- \"$__ss_f\" \"$__ss_f.r\";pkill -HUP -s $$ 2>/dev/null;exit 0\n";

/// How long each step of an orderly close may take.
const GRACE: Duration = Duration::from_secs(2);

/// Ends the session; `kill_remote: false` leaves a persistent shell running in tmux.
/// Idempotent.
pub(super) async fn shutdown(driver: &Driver, kill_remote: bool) -> Result<()> {
    let pid = driver.view(|m| m.shell_pid());
    let Some(shell) = driver.act(|m| (m.begin_close(), Default::default())) else {
        return Ok(());
    };
    let persistent = driver.config.persistent;
    if let Some((input, idle)) = &shell {
        if persistent && !kill_remote {
            // Detach: the shell stays in tmux for a later session of the same name.
        } else if *idle {
            // Remove the saved variables and leave cleanly, bounded in time.
            let bye = BYE;
            if tokio::time::timeout(GRACE, input.write(bye)).await.is_ok() {
                let deadline = Instant::now() + GRACE;
                loop {
                    let since = driver.watch();
                    if driver.view(|m| m.shell_gone())
                        || !driver.changed_before(deadline, since).await
                    {
                        break;
                    }
                }
            }
        } else {
            // The shell is busy: remove the snapshot, and hang up the shell's session,
            // through a separate channel.
            let name = format!(".ssh-session-{}.env", driver.env_file_id);
            let mut rm = format!(
                "rm -f -- \"${{XDG_RUNTIME_DIR:-/nonexistent}}/{name}\" \"/dev/shm/{name}\" \"${{TMPDIR:-/tmp}}/{name}\""
            );
            if let Some(pid) = pid {
                rm.push_str(&format!("; pkill -HUP -s {pid} 2>/dev/null; true"));
            }
            let transport = driver.transport();
            let _ = tokio::time::timeout(GRACE, run(transport.as_ref(), &rm)).await;
        }
        let _ = input.close().await;
    }
    if persistent && kill_remote {
        let transport = driver.transport();
        let _ =
            tokio::time::timeout(GRACE, persistent::kill(transport.as_ref(), &driver.name)).await;
    }
    driver.apply(|m| m.closed());
    driver.transport().close().await;
    driver.abort_readers();
    Ok(())
}

impl Drop for Driver {
    /// A session dropped without [`close`](crate::Session::close): remove the remote
    /// snapshot of exported variables (it may hold secrets) and end the shell, best
    /// effort, if a runtime is there to do it.
    fn drop(&mut self) {
        let Some(shell) = self.act(|m| (m.begin_close(), Default::default())) else {
            return;
        };
        let transport = self.transport();
        self.abort_readers();
        let (Some((input, _)), Ok(runtime)) = (shell, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let persistent = self.config.persistent;
        runtime.spawn(async move {
            if persistent {
                // Dropped, not closed: a persistent shell stays for a later re-adoption.
                let _ = input.close().await;
                transport.close().await;
                return;
            }
            let _ = tokio::time::timeout(GRACE, input.write(b"\x03")).await;
            let _ = tokio::time::timeout(GRACE, input.write(BYE)).await;
            let _ = input.eof().await;
            transport.close().await;
        });
    }
}
