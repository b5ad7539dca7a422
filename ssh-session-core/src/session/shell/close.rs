//! Ending a session: close (the remote shell ends; a persistent one is killed), detach
//! (a persistent shell stays), and the best-effort cleanup of a dropped session.

use super::*;

impl ShellSession {
    /// Closes the session but leaves a persistent shell running in its remote tmux
    /// session, to be re-adopted later by opening a session of the same name.
    pub async fn detach(&self) -> Result<()> {
        self.shutdown(false).await
    }

    /// Ends the session; `kill_remote: false` leaves a persistent shell running.
    pub(super) async fn shutdown(&self, kill_remote: bool) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (shell, idle) = {
            let st = inner.lock();
            (st.shell.clone(), st.running().is_none())
        };
        const GRACE: Duration = Duration::from_secs(2);
        let persistent = inner.config.persistent;
        if let Some(shell) = &shell {
            if persistent && !kill_remote {
                // Detach: the shell stays in tmux for a later session of the same name.
            } else if idle {
                // Remove the saved variables and leave cleanly, bounded in time.
                let bye = b" rm -f -- \"$__ss_f\" \"$__ss_f.r\";exit 0\n";
                let mut changed = inner.changed.subscribe();
                if tokio::time::timeout(GRACE, shell.input.write(bye))
                    .await
                    .is_ok()
                {
                    let _ = tokio::time::timeout(GRACE, async {
                        while !matches!(inner.lock().phase, Phase::Dead) {
                            if changed.changed().await.is_err() {
                                break;
                            }
                        }
                    })
                    .await;
                }
            } else {
                let name = format!(".ssh-session-{}.env", inner.env_file_id);
                let rm = format!(
                    "rm -f -- \"${{XDG_RUNTIME_DIR:-/nonexistent}}/{name}\" \"/dev/shm/{name}\" \"${{TMPDIR:-/tmp}}/{name}\""
                );
                let transport = inner.transport();
                let _ = tokio::time::timeout(GRACE, run(transport.as_ref(), &rm)).await;
            }
            let _ = shell.input.close().await;
        }
        if persistent && kill_remote {
            let transport = inner.transport();
            let _ = tokio::time::timeout(GRACE, persistent::kill(transport.as_ref(), &inner.name))
                .await;
        }
        {
            let mut st = inner.lock();
            let mut deliveries = Vec::new();
            st.finish(Outcome::ShellExited(None), &mut deliveries);
            st.shell = None;
            st.phase = Phase::Dead;
        }
        inner.set_status(SessionStatus::Closed);
        inner.transport().close().await;
        inner.abort_pumps();
        inner.notify();
        Ok(())
    }
}

impl Drop for Inner {
    /// A session dropped without [`close`](Session::close): remove the remote snapshot of
    /// exported variables (it may hold secrets) and end the shell, best effort, if a
    /// runtime is there to do it.
    fn drop(&mut self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let shell = self.lock().shell.take();
        let transport = self.transport();
        self.abort_pumps();
        let (Some(shell), Ok(runtime)) = (shell, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let persistent = self.config.persistent;
        runtime.spawn(async move {
            if persistent {
                // Dropped, not closed: a persistent shell stays for a later re-adoption.
                let _ = shell.input.close().await;
                transport.close().await;
                return;
            }
            let bye = b"\x03 rm -f -- \"$__ss_f\" \"$__ss_f.r\";exit 0\n";
            let _ = tokio::time::timeout(Duration::from_secs(2), shell.input.write(bye)).await;
            let _ = shell.input.eof().await;
            transport.close().await;
        });
    }
}
