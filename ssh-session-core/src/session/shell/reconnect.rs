//! Losing and regaining the connection: the reconnect loop with backoff, re-attaching
//! a persistent shell, and waiting while it happens.

use super::*;

impl ShellSession {
    /// Lets the session re-establish its connection by itself when it is lost.
    pub fn set_reconnector(&self, reconnector: Reconnector) {
        *self
            .inner
            .reconnector
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reconnector);
    }

    /// Runs the reconnect loop unless one is already running.
    pub(super) async fn auto_reconnect(self, cause: String) {
        if self.inner.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        // The loss is the failure to report, even when the reconnection then succeeds.
        self.inner.lock().last_error = Some((
            format!("connection lost: {cause}"),
            std::time::SystemTime::now(),
        ));
        let _ = self
            .reconnect_loop(cause, self.inner.config.reconnect.max_attempts)
            .await;
        self.inner.reconnecting.store(false, Ordering::Release);
    }

    /// Up to `attempts` tries, with the policy's backoff, to get a new connection and a new
    /// shell with cwd and exported variables restored.
    pub(super) async fn reconnect_loop(&self, cause: String, attempts: u32) -> Result<()> {
        let inner = &self.inner;
        let reconnector = inner
            .reconnector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let give_up = |detail: String| {
            inner.set_status(SessionStatus::Error {
                detail: detail.clone(),
                at: std::time::SystemTime::now(),
            });
            Err(Error::Disconnected {
                session: inner.name.clone(),
                detail,
            })
        };
        let Some(reconnector) = reconnector.filter(|_| attempts > 0) else {
            return give_up(format!("{cause}; automatic reconnection is off"));
        };
        let policy = &inner.config.reconnect;
        let mut last = cause.clone();
        for attempt in 1..=attempts {
            if inner.closed.load(Ordering::Acquire) {
                return Err(Error::Closed {
                    session: inner.name.clone(),
                });
            }
            inner.set_status(SessionStatus::Reconnecting {
                attempt,
                of: attempts,
            });
            let unit = rand::random::<f64>() * 2.0 - 1.0;
            tokio::time::sleep(policy.delay(attempt, unit)).await;
            let transport = match reconnector().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!(session = %inner.name, attempt, error = %e, "reconnect failed");
                    last = e.to_string();
                    continue;
                }
            };
            let old = std::mem::replace(
                &mut *inner.transport.lock().unwrap_or_else(|p| p.into_inner()),
                transport,
            );
            old.close().await;
            if inner.config.persistent {
                match self.reattach().await {
                    Ok(true) => {
                        inner.lock().pending.push(Notice::Reconnected {
                            cause: cause.clone(),
                            attempts: attempt,
                        });
                        inner.lock().reconnects += 1;
                        inner.set_status(SessionStatus::Connected);
                        return Ok(());
                    }
                    // The tmux session itself is gone (host rebooted, killed): a new shell.
                    Ok(false) => {
                        let mut deliveries = Vec::new();
                        let mut st = inner.lock();
                        st.finish(Outcome::LinkLost, &mut deliveries);
                        st.phase = Phase::Dead;
                        st.parser = None;
                    }
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                }
            }
            let cwd = {
                let st = inner.lock();
                (!st.cwd.is_empty()).then(|| st.cwd.clone())
            };
            match self.spawn_shell(Restore { cwd, env: true }).await {
                Ok(notices) => {
                    {
                        let mut st = inner.lock();
                        st.pending.push(Notice::Reconnected {
                            cause: cause.clone(),
                            attempts: attempt,
                        });
                        st.pending.push(Notice::ShellRestarted {
                            reason: cause.clone(),
                        });
                        st.pending.extend(notices);
                        st.death = None;
                        st.reconnects += 1;
                    }
                    inner.set_status(SessionStatus::Connected);
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
        }
        give_up(format!("{last} (after {attempts} reconnect attempts)"))
    }

    /// Re-attaches a persistent session's stream at the exact byte it stopped at, keeping
    /// the parser (and so the running command). Returns false if the tmux session was gone
    /// and a new, unprimed one was created instead (it is killed again).
    pub(super) async fn reattach(&self) -> Result<bool> {
        let inner = &self.inner;
        let offset = inner
            .attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(TmuxAttachment::offset);
        let pty = inner.config.pty.clone().unwrap_or_default();
        let transport = inner.transport();
        let (channel, attachment) = TmuxShell::default()
            .open(transport.as_ref(), &inner.name, &pty, offset)
            .await?;
        if attachment.created {
            let _ = channel.input.close().await;
            let _ = persistent::kill(transport.as_ref(), &inner.name).await;
            return Ok(false);
        }
        if let Some(gap) = &attachment.gap {
            tracing::warn!(session = %inner.name, ?gap, "output missed while disconnected");
        }
        *inner.attachment.lock().unwrap_or_else(|p| p.into_inner()) = Some(attachment);
        // Same parser and phase: the stream continues where it stopped.
        inner.adopt_channel(channel);
        Ok(true)
    }

    /// Waits while the session reconnects (up to `deadline`); fails clearly if it cannot.
    pub(super) async fn wait_connected(&self, deadline: Instant) -> Result<()> {
        let inner = &self.inner;
        loop {
            let mut changed = inner.changed.subscribe();
            let status = inner.lock().status.clone();
            match status {
                SessionStatus::Reconnecting { attempt, of } => {
                    let timed_out = tokio::select! {
                        _ = changed.changed() => false,
                        _ = tokio::time::sleep_until(deadline) => true,
                    };
                    if timed_out {
                        return Err(Error::Reconnecting {
                            session: inner.name.clone(),
                            attempt,
                            of,
                        });
                    }
                }
                SessionStatus::Error { detail, .. } => {
                    return Err(Error::Disconnected {
                        session: inner.name.clone(),
                        detail,
                    })
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Whether `transport` still carries a working connection: a tiny exec answered in time.
pub(super) async fn connection_alive(transport: Arc<dyn Transport>) -> bool {
    if transport.is_closed() {
        return false;
    }
    let probe = run(transport.as_ref(), "true");
    matches!(
        tokio::time::timeout(Duration::from_secs(3), probe).await,
        Ok(Ok(out)) if out.exit_status == Some(0)
    ) && !transport.is_closed()
}

/// Reconnects a session whose pump saw its connection die. One per session, holding only a
/// weak reference; it ends when the session is dropped.
pub(super) async fn reconnect_worker(
    weak: Weak<Inner>,
    mut requests: mpsc::UnboundedReceiver<String>,
) {
    while let Some(cause) = requests.recv().await {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        ShellSession { inner }.auto_reconnect(cause).await;
    }
}
