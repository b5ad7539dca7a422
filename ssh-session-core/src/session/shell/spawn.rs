//! Starting a shell once a task holds the start: open a channel (plain, or in remote tmux),
//! prime it, fall back to a POSIX shell when the login shell is not one, or re-attach a
//! persistent shell that survived a lost link.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::driver::Driver;
use super::effects::{GoneCause, Opening, PrimeVerdict};
use crate::error::{Error, Result};
use crate::persistent::{self, TmuxShell};
use crate::protocol::{prime_script, probe_line, Nonce, Output, Restore};
use crate::session::types::Notice;
use crate::transport::{Channel, ChannelInput, ShellRequest};

/// Started instead of a login shell that is not POSIX (fish, csh): every shell can run it.
const POSIX_FALLBACK: &str =
    "sh -c 'if command -v bash >/dev/null 2>&1; then exec bash --noediting; else exec sh; fi'";

enum SpawnError {
    NotPosix,
    Failed(Error),
}

/// Brings up the shell whose start the caller claimed: re-attaches a persistent shell
/// (`resume`), or starts a new one, restoring cwd and exported variables if an earlier
/// shell (`previous`) ended. Returns the notices for the next command. On failure the
/// start is given up (see `Machine::start_failed`).
pub(super) async fn start_claimed(
    driver: &Arc<Driver>,
    mut previous: Option<GoneCause>,
    resume: bool,
) -> Result<Vec<Notice>> {
    if resume {
        match reattach(driver).await {
            Ok(true) => return Ok(Vec::new()),
            Ok(false) => {
                driver.apply(|m| m.resume_impossible());
                previous = Some(GoneCause::TmuxGone);
            }
            Err(e) => {
                driver.apply(|m| m.start_failed(GoneCause::LinkLost));
                return Err(e);
            }
        }
    }
    let restore = Restore {
        cwd: previous.as_ref().and_then(|_| driver.view(|m| m.cwd())),
        env: previous.is_some(),
    };
    match spawn(driver, &restore).await {
        Ok(mut notices) => {
            let now = driver.view(|m| m.cwd()).unwrap_or_default();
            if let Some(wanted) = restore.cwd.filter(|wanted| *wanted != now) {
                notices.push(Notice::CwdNotRestored { wanted, now });
            }
            if let Some(previous) = &previous {
                notices.insert(
                    0,
                    Notice::ShellRestarted {
                        reason: previous.to_string(),
                    },
                );
            }
            Ok(notices)
        }
        Err(e) => {
            let cause = previous.unwrap_or(GoneCause::ChannelClosed);
            driver.apply(|m| m.start_failed(cause));
            Err(e)
        }
    }
}

/// Starts the login shell (or a POSIX one if that is fish/csh) and primes it.
async fn spawn(driver: &Arc<Driver>, restore: &Restore) -> Result<Vec<Notice>> {
    match try_spawn(driver, None, restore).await {
        Ok(()) => Ok(Vec::new()),
        Err(SpawnError::Failed(e)) => Err(e),
        Err(SpawnError::NotPosix) => {
            tracing::warn!(session = %driver.name, "login shell is not POSIX; starting sh");
            if driver.config.persistent {
                // tmux keeps the shell it was created with: start over with the fallback.
                let _ = persistent::kill(driver.transport().as_ref(), &driver.name).await;
            }
            match try_spawn(driver, Some(POSIX_FALLBACK), restore).await {
                Ok(()) => Ok(vec![Notice::PosixFallback]),
                Err(SpawnError::Failed(e)) => Err(Error::NonPosixShell {
                    session: driver.name.clone(),
                    detail: e.to_string(),
                }),
                Err(SpawnError::NotPosix) => Err(Error::NonPosixShell {
                    session: driver.name.clone(),
                    detail: "sh did not answer as a POSIX shell either".into(),
                }),
            }
        }
    }
}

async fn try_spawn(
    driver: &Arc<Driver>,
    command: Option<&str>,
    restore: &Restore,
) -> std::result::Result<(), SpawnError> {
    let transport = driver.transport();
    let channel = if driver.config.persistent {
        let pty = driver.config.pty.clone().unwrap_or_default();
        let (channel, attachment) = TmuxShell::default()
            .open_command(transport.as_ref(), &driver.name, &pty, command, None)
            .await
            .map_err(SpawnError::Failed)?;
        if !attachment.created {
            // A surviving shell keeps its own cwd and variables; it is primed anew.
            driver.apply(|m| {
                m.set_resumed();
                Default::default()
            });
        }
        driver.set_attachment(attachment);
        channel
    } else {
        let request = ShellRequest {
            pty: driver.config.pty.clone(),
            command: command.map(str::to_string),
        };
        transport
            .open_shell(request)
            .await
            .map_err(SpawnError::Failed)?
    };
    prime(driver, channel, restore).await
}

/// Types the prime into a freshly opened shell channel and waits for its verdict.
async fn prime(
    driver: &Arc<Driver>,
    channel: Channel,
    restore: &Restore,
) -> std::result::Result<(), SpawnError> {
    let nonce = Nonce::random();
    let output = match driver.config.pty {
        Some(_) => Output::Pty,
        None => Output::Pipes,
    };
    let script = prime_script(&nonce, &driver.env_file_id, restore, output);
    let input = channel.input.clone();
    driver.adopt(channel, Opening::Prime(nonce.clone()));
    let timeout = driver.config.prime_timeout;
    let not_ready = |last_output: String| Error::ShellNotReady {
        session: driver.name.clone(),
        timeout,
        last_output,
    };
    if let Err(e) = input.write(script.as_bytes()).await {
        driver.apply(|m| {
            m.priming_abandoned();
            Default::default()
        });
        return Err(SpawnError::Failed(e));
    }
    let deadline = Instant::now() + timeout;
    match wait_verdict(driver, &input, &nonce, deadline).await {
        PrimeVerdict::Ready => Ok(()),
        PrimeVerdict::NotPosix => {
            driver.apply(|m| {
                m.priming_abandoned();
                Default::default()
            });
            let _ = input.close().await;
            Err(SpawnError::NotPosix)
        }
        PrimeVerdict::Ended(cause) => Err(SpawnError::Failed(not_ready(format!(
            "(the shell ended: {cause})"
        )))),
        PrimeVerdict::Waiting | PrimeVerdict::Syncing => {
            let log = driver.view(|m| m.prime_log());
            driver.apply(|m| {
                m.priming_abandoned();
                Default::default()
            });
            let _ = input.close().await;
            let tail: String = {
                let chars: Vec<char> = log.chars().collect();
                chars[chars.len().saturating_sub(400)..].iter().collect()
            };
            Err(SpawnError::Failed(not_ready(tail)))
        }
    }
}

/// How long a zsh that answered its prime gets for its probe line before it is typed again
/// (it normally comes in the same read as the ready marker).
const PROBE_AGAIN: Duration = Duration::from_millis(300);

/// Waits until the priming shell answers or `deadline` (then the verdict is `Waiting`).
/// A zsh whose probe line does not come back (`PrimeVerdict::Syncing`) gets it again,
/// after a newline that ends whatever is left of the lost one.
pub(super) async fn wait_verdict(
    driver: &Driver,
    input: &Arc<dyn ChannelInput>,
    nonce: &Nonce,
    deadline: Instant,
) -> PrimeVerdict {
    let mut probe_again: Option<Instant> = None;
    loop {
        let since = driver.watch();
        let verdict = driver.view(|m| m.prime_verdict());
        match verdict {
            PrimeVerdict::Waiting => {}
            PrimeVerdict::Syncing => {
                let now = Instant::now();
                match probe_again {
                    None => probe_again = Some(now + PROBE_AGAIN),
                    Some(at) if now >= at => {
                        tracing::debug!(session = %driver.name, "zsh lost its probe line; typing it again");
                        // What zsh lost is the probe's newline (its `echo` then took the
                        // next line as arguments: `parse error near }`): a newline ends
                        // that line, and the probe follows. Not Ctrl-C: with its line
                        // editor off, zsh discards the next whole line after one.
                        let mut again = String::from("\n");
                        again.push_str(&probe_line(nonce));
                        let _ = input.write(again.as_bytes()).await;
                        probe_again = Some(Instant::now() + PROBE_AGAIN);
                        continue;
                    }
                    Some(_) => {}
                }
            }
            other => return other,
        }
        let wake = probe_again.map_or(deadline, |at| at.min(deadline));
        if !driver.changed_before(wake, since).await && Instant::now() >= deadline {
            return PrimeVerdict::Waiting;
        }
    }
}

/// Re-attaches a persistent session's stream at the exact byte it stopped at, keeping the
/// parser (and so the running command). Returns false if the tmux session was gone and a
/// new, unprimed one was created instead (it is killed again).
async fn reattach(driver: &Arc<Driver>) -> Result<bool> {
    let (offset, previous) = driver.attachment_position().unzip();
    let pty = driver.config.pty.clone().unwrap_or_default();
    let transport = driver.transport();
    let (channel, attachment) = TmuxShell::default()
        .open(transport.as_ref(), &driver.name, &pty, offset)
        .await?;
    if attachment.created {
        let _ = channel.input.close().await;
        let _ = persistent::kill(transport.as_ref(), &driver.name).await;
        return Ok(false);
    }
    if previous.is_some_and(|p| p != attachment.incarnation) {
        // The tmux session was killed and made again under this name meanwhile (by another
        // client): its stream is not the one our offset counts. Prime it as found.
        tracing::warn!(session = %driver.name, "persistent shell replaced while disconnected");
        let _ = channel.input.close().await;
        return Ok(false);
    }
    tracing::debug!(
        session = %driver.name,
        pid = attachment.shell_pid,
        tmux = %attachment.tmux_version,
        from = attachment.start,
        "persistent shell re-attached"
    );
    if let Some(gap) = &attachment.gap {
        tracing::warn!(session = %driver.name, ?gap, "output missed while disconnected");
    }
    driver.set_attachment(attachment);
    driver.adopt(channel, Opening::Resume);
    Ok(true)
}
