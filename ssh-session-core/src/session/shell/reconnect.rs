//! Losing and regaining the connection: the worker that reacts to a lost link, the
//! reconnection loop with backoff, and the liveness probe.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::driver::Driver;
use super::effects::{Claim, GoneCause};
use super::spawn;
use crate::error::{Error, Result};
use crate::session::types::{Notice, SessionStatus};
use crate::transport::{run, Transport};

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

/// Reconnects a session whose shell channel found its connection dead. One per session,
/// holding only a weak reference; it ends when the session is dropped.
pub(super) async fn worker(weak: Weak<Driver>, mut requests: mpsc::UnboundedReceiver<u64>) {
    while let Some(generation) = requests.recv().await {
        let Some(driver) = weak.upgrade() else {
            return;
        };
        // A loss reported by a channel older than the current shell was dealt with (by
        // a reconnection that already replaced it).
        if driver.view(|m| m.is_stale(generation)) {
            continue;
        }
        if driver.reconnecting.swap(true, Ordering::AcqRel) {
            continue;
        }
        let cause = GoneCause::LinkLost.to_string();
        // The loss is the failure to report, even when the reconnection then succeeds.
        driver.apply(|m| {
            m.note_link_lost(&cause);
            Default::default()
        });
        let attempts = driver.config.reconnect.max_attempts;
        let _ = reconnect_loop(&driver, &cause, attempts).await;
        driver.reconnecting.store(false, Ordering::Release);
    }
}

/// [`Session::reconnect`](crate::Session::reconnect): reconnect now (or wait for the
/// reconnection already under way).
pub(super) async fn reconnect_now(driver: &Arc<Driver>) -> Result<()> {
    if driver.view(|m| m.is_closed()) {
        return Err(Error::Closed {
            session: driver.name.clone(),
        });
    }
    if driver.reconnecting.swap(true, Ordering::AcqRel) {
        return wait_connected(driver, Instant::now() + driver.config.exec_timeout).await;
    }
    let attempts = driver.config.reconnect.max_attempts.max(1);
    let result = reconnect_loop(driver, "reconnect requested", attempts).await;
    driver.reconnecting.store(false, Ordering::Release);
    result
}

/// Up to `attempts` tries, with the policy's backoff, to get a new connection and the
/// shell back: re-attached (persistent) or new with cwd and exported variables restored.
async fn reconnect_loop(driver: &Arc<Driver>, cause: &str, attempts: u32) -> Result<()> {
    let give_up = |detail: String| {
        driver.apply(|m| {
            m.set_status(SessionStatus::Error {
                detail: detail.clone(),
                at: std::time::SystemTime::now(),
            })
        });
        Err(Error::Disconnected {
            session: driver.name.clone(),
            detail,
        })
    };
    let Some(reconnector) = driver.reconnector().filter(|_| attempts > 0) else {
        return give_up(format!("{cause}; automatic reconnection is off"));
    };
    let policy = &driver.config.reconnect;
    let mut last = cause.to_string();
    for attempt in 1..=attempts {
        if driver.view(|m| m.is_closed()) {
            return Err(Error::Closed {
                session: driver.name.clone(),
            });
        }
        driver.apply(|m| {
            m.set_status(SessionStatus::Reconnecting {
                attempt,
                of: attempts,
            })
        });
        let unit = rand::random::<f64>() * 2.0 - 1.0;
        tokio::time::sleep(policy.delay(attempt, unit)).await;
        let transport = match reconnector().await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(session = %driver.name, attempt, error = %e, "reconnect failed");
                last = e.to_string();
                continue;
            }
        };
        driver.replace_transport(transport).close().await;
        if driver.view(|m| m.is_closed()) {
            // Closed while this connection was being made: the close already shut the one
            // it knew about, so this one is ours to shut.
            driver.transport().close().await;
            return Err(Error::Closed {
                session: driver.name.clone(),
            });
        }
        // Whatever shell there was went with the old connection (a persistent one stays
        // in tmux, to be re-attached).
        driver.apply(|m| m.link_lost());
        match restore_shell(driver).await {
            Ok(notices) => {
                driver.apply(|m| m.reconnected(cause, attempt, notices));
                return Ok(());
            }
            Err(e) => {
                tracing::info!(session = %driver.name, attempt, error = %e, "restoring the shell failed");
                last = e.to_string();
            }
        }
    }
    give_up(format!("{last} (after {attempts} reconnect attempts)"))
}

/// Brings the shell back on the new connection, once any start already in progress (a
/// restart that raced the loss) has ended. Returns the notices of the shell's start.
async fn restore_shell(driver: &Arc<Driver>) -> Result<Vec<Notice>> {
    let deadline = Instant::now() + driver.config.prime_timeout;
    loop {
        let since = driver.watch();
        match driver.peek(|m| m.claim_start()) {
            Claim::Ready => return Ok(Vec::new()),
            Claim::Claimed { previous, resume } => {
                return spawn::start_claimed(driver, previous, resume).await;
            }
            Claim::InProgress => {
                if !driver.changed_before(deadline, since).await {
                    return Err(Error::ShellNotReady {
                        session: driver.name.clone(),
                        timeout: driver.config.prime_timeout,
                        last_output: "(another start of the shell did not finish)".into(),
                    });
                }
            }
        }
    }
}

/// Waits while the session reconnects (up to `deadline`); fails clearly if it cannot.
pub(super) async fn wait_connected(driver: &Driver, deadline: Instant) -> Result<()> {
    loop {
        let since = driver.watch();
        match driver.view(|m| m.status().clone()) {
            SessionStatus::Reconnecting { attempt, of } => {
                if !driver.changed_before(deadline, since).await {
                    return Err(Error::Reconnecting {
                        session: driver.name.clone(),
                        attempt,
                        of,
                    });
                }
            }
            SessionStatus::Error { detail, .. } => {
                return Err(Error::Disconnected {
                    session: driver.name.clone(),
                    detail,
                })
            }
            _ => return Ok(()),
        }
    }
}
