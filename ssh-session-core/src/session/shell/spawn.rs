//! Starting a shell: open the channel (plain or in remote tmux), prime it, detect a
//! non-POSIX login shell and fall back.

use super::*;

pub(super) enum SpawnError {
    NotPosix,
    Failed(Error),
}
/// Started instead of a login shell that is not POSIX (fish, csh): every shell can run it.
const POSIX_FALLBACK: &str =
    "sh -c 'if command -v bash >/dev/null 2>&1; then exec bash --noediting; else exec sh; fi'";

impl ShellSession {
    /// Starts a shell (the login shell, or a POSIX one if that is fish/csh) and primes it.
    pub(super) async fn spawn_shell(&self, restore: Restore) -> Result<Vec<Notice>> {
        match self.try_spawn(None, &restore).await {
            Ok(()) => Ok(Vec::new()),
            Err(SpawnError::Failed(e)) => Err(e),
            Err(SpawnError::NotPosix) => {
                tracing::warn!(session = %self.inner.name, "login shell is not POSIX; starting sh");
                if self.inner.config.persistent {
                    // tmux keeps the shell it was created with: start over with the fallback.
                    let _ =
                        persistent::kill(self.inner.transport().as_ref(), &self.inner.name).await;
                }
                match self.try_spawn(Some(POSIX_FALLBACK.into()), &restore).await {
                    Ok(()) => Ok(vec![Notice::PosixFallback]),
                    Err(SpawnError::Failed(e)) => Err(Error::NonPosixShell {
                        session: self.inner.name.clone(),
                        detail: e.to_string(),
                    }),
                    Err(SpawnError::NotPosix) => Err(Error::NonPosixShell {
                        session: self.inner.name.clone(),
                        detail: "sh did not answer as a POSIX shell either".into(),
                    }),
                }
            }
        }
    }

    pub(super) async fn try_spawn(
        &self,
        command: Option<String>,
        restore: &Restore,
    ) -> std::result::Result<(), SpawnError> {
        let inner = &self.inner;
        let channel = if inner.config.persistent {
            let pty = inner.config.pty.clone().unwrap_or_default();
            let (channel, attachment) = TmuxShell::default()
                .open_command(
                    inner.transport().as_ref(),
                    &inner.name,
                    &pty,
                    command.as_deref(),
                    None,
                )
                .await
                .map_err(SpawnError::Failed)?;
            {
                let mut st = inner.lock();
                st.persistent = true;
                // A surviving shell keeps its own cwd and variables: restore nothing.
                if !attachment.created && st.generation == 0 {
                    st.resumed = true;
                }
            }
            *inner.attachment.lock().unwrap_or_else(|p| p.into_inner()) = Some(attachment);
            channel
        } else {
            let request = ShellRequest {
                pty: inner.config.pty.clone(),
                command,
            };
            inner
                .transport()
                .open_shell(request)
                .await
                .map_err(SpawnError::Failed)?
        };
        self.prime(channel, restore).await
    }

    /// Types the prime into a freshly opened shell channel and waits for its verdict.
    pub(super) async fn prime(
        &self,
        channel: crate::transport::Channel,
        restore: &Restore,
    ) -> std::result::Result<(), SpawnError> {
        let inner = &self.inner;
        let nonce = Nonce::random();
        {
            let mut st = inner.lock();
            st.parser = Some(MarkerParser::new(&nonce));
            st.phase = Phase::Priming {
                log: Vec::new(),
                ready: None,
                probed: false,
            };
        }
        let input = channel.input.clone();
        inner.adopt_channel(channel);

        let output = match inner.config.pty {
            Some(_) => Output::Pty,
            None => Output::Pipes,
        };
        let script = prime_script(&nonce, &inner.env_file_id, restore, output);
        if let Err(e) = input.write(script.as_bytes()).await {
            return Err(SpawnError::Failed(e));
        }
        let deadline = Instant::now() + inner.config.prime_timeout;
        loop {
            let mut changed = inner.changed.subscribe();
            let verdict = {
                let mut st = inner.lock();
                match &st.phase {
                    // Ready as soon as R arrives: the probe only tells a non-POSIX shell apart,
                    // and zsh may drop the probe line when its line editor was already reading
                    // (it is switched off by the first line). A late P is dropped by the parser.
                    Phase::Priming {
                        ready: Some((pid, flavor)),
                        ..
                    } => {
                        let (pid, flavor) = (*pid, *flavor);
                        st.phase = Phase::Ready;
                        st.shell_pid = Some(pid);
                        st.flavor = flavor;
                        Some(Ok(()))
                    }
                    Phase::Priming {
                        ready: None,
                        probed: true,
                        ..
                    } => Some(Err(SpawnError::NotPosix)),
                    Phase::Dead => {
                        let why = st.death.clone().unwrap_or_default();
                        Some(Err(SpawnError::Failed(Error::ShellNotReady {
                            session: inner.name.clone(),
                            timeout: inner.config.prime_timeout,
                            last_output: format!("(the shell ended: {why})"),
                        })))
                    }
                    _ => None,
                }
            };
            match verdict {
                Some(Err(SpawnError::NotPosix)) => {
                    let _ = input.close().await;
                    return Err(SpawnError::NotPosix);
                }
                Some(verdict) => return verdict,
                None => {}
            }
            let timed_out = tokio::select! {
                _ = changed.changed() => false,
                _ = tokio::time::sleep_until(deadline) => true,
            };
            if timed_out {
                let log = match &inner.lock().phase {
                    Phase::Priming { log, .. } => String::from_utf8_lossy(log).into_owned(),
                    _ => String::new(),
                };
                let _ = input.close().await;
                return Err(SpawnError::Failed(Error::ShellNotReady {
                    session: inner.name.clone(),
                    timeout: inner.config.prime_timeout,
                    last_output: log
                        .chars()
                        .rev()
                        .take(400)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect(),
                }));
            }
        }
    }
}
