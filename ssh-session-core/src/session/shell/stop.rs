//! Interrupting the running command, and the stop ladder that ends with replacing a shell
//! whose command will not stop.
//!
//! Who gets a signal is decided by looking at the shell's terminal from a separate exec
//! channel: its foreground process group is the running command. When that group is the
//! shell itself, no process may be signalled (that would kill the shell, or, as `pkill -P`
//! did, every background job): the shell is running a builtin (`read`), or it is waiting
//! for input because the command's marker can never come back (`exec bash`,
//! `exec >/dev/null`, our variables unset). Ctrl-C ends the first; for the second the
//! shell is primed again, and replaced if it does not answer.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::driver::Driver;
use super::effects::{Effects, GoneCause, PrimeVerdict};
use super::{reconnect, spawn};
use crate::error::{Error, Result};
use crate::persistent;
use crate::protocol::{prime_script, Output, Restore};
use crate::session::types::{ExecResult, Interrupt, StopReport};
use crate::transport::run;

/// How long a shell in its own foreground gets to end its command after Ctrl-C before it
/// is primed again. A builtin (`read`, a `while` loop) ends at once; the time only matters
/// when the marker can never come.
const SHELL_GRACE: Duration = Duration::from_secs(1);

/// What the side channel found in the shell's terminal.
#[derive(Debug, PartialEq, Eq)]
enum Foreground {
    /// A job (process group) other than the shell's: signalled, if asked.
    Job,
    /// No terminal (plain pipes): the shell's children were signalled.
    Children,
    /// Nothing but the shell itself.
    Shell,
}

/// Sends `how` to the running command.
pub(super) async fn interrupt(driver: &Arc<Driver>, how: Interrupt) -> Result<()> {
    deliver(driver, how).await.map(|_| ())
}

/// [`interrupt`], saying whether the shell had to be replaced.
async fn deliver(driver: &Arc<Driver>, how: Interrupt) -> Result<bool> {
    let (input, pid, pty) = driver.peek(|m| m.interrupt_target())?;
    let Some(id) = driver.view(|m| m.running_id()) else {
        return Ok(false);
    };
    if how == Interrupt::Eof {
        if !pty {
            return Err(Error::InvalidCommand {
                session: driver.name.clone(),
                reason: "EOF needs a PTY session: without one, closing stdin would end the shell"
                    .into(),
            });
        }
        input.write(b"\x04").await?;
        return Ok(false);
    }
    let pid = pid.ok_or_else(|| Error::Disconnected {
        session: driver.name.clone(),
        detail: "the shell's process id is not known yet".into(),
    })?;
    // Ctrl-C goes through the terminal, as a person's would: the line discipline signals
    // the foreground even where we may not (sudo runs as root), and the shell survives.
    // It is typed after the look at the terminal, not before: typed at once, it can land
    // in the trailer of a command that just ended, while the env snapshot is being written
    // (the likely cause of an exported variable lost once in tests/lifecycle.rs, with
    // Ctrl-C typed first). A failed look (no channel to spare)
    // leaves Ctrl-C as it always was.
    let typed_ctrl_c = how == Interrupt::Int && pty;
    let signal = (!typed_ctrl_c).then(|| how.signal_name());
    // Bounded: over a stalled connection the look never answers, and the stop ladder must
    // go on to its next step.
    let look = (driver.config.cancel_deadline / 3).max(SHELL_GRACE);
    let looked = tokio::time::timeout(look, foreground(driver, pid, signal))
        .await
        .unwrap_or_else(|_| {
            Err(Error::Disconnected {
                session: driver.name.clone(),
                detail: format!(
                    "the connection did not answer within {:.1} s",
                    look.as_secs_f64()
                ),
            })
        });
    let found = match looked {
        Ok(found) => found,
        Err(e) if typed_ctrl_c => {
            tracing::debug!(session = %driver.name, error = %e, "could not look at the terminal; typing Ctrl-C");
            input.write(b"\x03").await?;
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    if pty && (typed_ctrl_c || found == Foreground::Shell) {
        // With nothing to signal but the shell, Ctrl-C interrupts a builtin it runs (`read`).
        input.write(b"\x03").await?;
    }
    if found != Foreground::Shell {
        return Ok(false);
    }
    let grace = SHELL_GRACE.min(driver.config.cancel_deadline / 3);
    if !driver
        .wait_result_of(id, Instant::now() + grace)
        .await?
        .is_running()
    {
        return Ok(false);
    }
    resync(driver, id).await
}

/// Looks at the shell's terminal through a separate exec channel (a PTY carries only
/// Ctrl-C, and SSH `signal` requests reach the shell, not its foreground job), signalling
/// the foreground job with `signal` if there is one and a signal is asked for.
async fn foreground(driver: &Driver, pid: u32, signal: Option<&str>) -> Result<Foreground> {
    // pgrp and tpgid are fields 3 and 6 after the ")" that ends the command name (which may
    // contain spaces); tpgid is -1 without a terminal.
    let (kill_job, kill_children) = match signal {
        Some(sig) => (
            format!("kill -{sig} -$T 2>&1 || {{ echo denied; exit 0; }};"),
            format!("pkill -{sig} -P $P && echo children || echo shell"),
        ),
        None => (String::new(), "echo shell".to_string()),
    };
    let script = format!(
        "P={pid}; if [ -r /proc/$P/stat ]; then s=$(cat /proc/$P/stat); s=${{s##*) }}; set -- $s; G=$3; T=$6; \
         else s=$(ps -o pgid=,tpgid= -p $P 2>/dev/null) || {{ echo gone; exit 0; }}; set -- $s; G=$1; T=$2; fi; \
         if [ \"$T\" -gt 0 ] && [ \"$T\" != \"$G\" ]; then {kill_job} echo job; \
         elif [ \"$T\" -gt 0 ]; then echo shell; else {kill_children}; fi"
    );
    let transport = driver.transport();
    let out = run(transport.as_ref(), &format!("sh -c '{script}'")).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let what = lines.next_back().unwrap_or("").trim();
    let signal_name = signal.unwrap_or("INT");
    match what {
        "job" => Ok(Foreground::Job),
        "children" => Ok(Foreground::Children),
        "shell" => Ok(Foreground::Shell),
        // The shell's process is gone; its channel's end will say why.
        "gone" => Ok(Foreground::Shell),
        "denied" => Err(Error::InvalidCommand {
            session: driver.name.clone(),
            reason: format!(
                "could not send SIG{signal_name} to the running command ({}); it may run as \
                 another user (sudo): interrupt it with Ctrl-C (INT) instead, which the terminal \
                 delivers to any process",
                lines.collect::<Vec<_>>().join(" ").trim()
            ),
        }),
        _ => Err(Error::InvalidCommand {
            session: driver.name.clone(),
            reason: format!(
                "could not look for the running command's process to send SIG{signal_name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
    }
}

/// Primes the shell again, with the same nonce, because its command's marker may never
/// come back; replaces the shell if it does not answer. Returns whether it was replaced.
async fn resync(driver: &Arc<Driver>, id: u64) -> Result<bool> {
    let Some((input, nonce)) = driver.act(|m| (m.resync(id), Effects::default())) else {
        return Ok(false);
    };
    tracing::info!(session = %driver.name, "the shell stopped reporting; priming it again");
    let output = match driver.config.pty {
        Some(_) => Output::Pty,
        None => Output::Pipes,
    };
    let mut typed = prime_script(&nonce, &driver.env_file_id, &Restore::default(), output);
    if output == Output::Pty {
        // Whatever was typed into the waiting shell must not prefix the prime.
        typed.insert(0, '\x15');
    }
    let verdict = match input.write(typed.as_bytes()).await {
        Ok(()) => {
            let deadline = Instant::now() + driver.config.prime_timeout / 3;
            spawn::wait_verdict(driver, &input, &nonce, deadline).await
        }
        Err(_) => PrimeVerdict::Waiting,
    };
    match verdict {
        // Ready: the command ended as untracked (or with its own marker, if it was only
        // slow). Ended: the shell went away, and its command says so.
        PrimeVerdict::Ready | PrimeVerdict::Ended(_) => Ok(false),
        PrimeVerdict::NotPosix | PrimeVerdict::Waiting | PrimeVerdict::Syncing => {
            replace(driver, GoneCause::Unresponsive).await?;
            Ok(true)
        }
    }
}

/// Stops the running command however it takes: Ctrl-C, SIGTERM, SIGKILL, a third of the
/// stop deadline each; then the shell itself is killed and a new one started; if even that
/// fails, the connection is dropped and made again. Every step is reported to the caller
/// and, as it happens, to everyone attached. A person's command is theirs to stop.
pub(super) async fn stop_command(driver: &Arc<Driver>) -> Result<StopReport> {
    let Some(id) = driver.view(|m| m.running_id()) else {
        return Err(Error::NotRunning {
            session: driver.name.clone(),
        });
    };
    if let Some(refusal) = driver.view(|m| m.persons_command()) {
        return Err(refusal);
    }
    let command = driver
        .view(|m| m.running_command())
        .unwrap_or_else(|| "the command".into());
    let mut report = Ladder::new(driver);
    let step = driver.config.cancel_deadline / 3;
    for how in [Interrupt::Int, Interrupt::Term, Interrupt::Kill] {
        report.tried.push(how.signal_name());
        report.step(match how {
            Interrupt::Int => format!("stopping {command:?}: Ctrl-C (SIGINT)"),
            _ => format!(
                "still running after {:.1} s: SIG{}",
                step.as_secs_f64(),
                how.signal_name()
            ),
        });
        let replaced = match deliver(driver, how).await {
            Ok(replaced) => replaced,
            Err(e) => {
                report.step(format!("SIG{} could not be sent: {e}", how.signal_name()));
                false
            }
        };
        if replaced {
            report.step("the shell itself stopped answering: replaced it, cwd and exported variables restored".into());
        }
        let result = driver.wait_result_of(id, Instant::now() + step).await?;
        if !result.is_running() {
            report.shell_replaced = replaced;
            return Ok(report.finish(result));
        }
    }
    // Nothing stopped it (a process in uninterruptible sleep, a shell that hears nothing):
    // kill the shell and start afresh; over a connection that cannot do that, start over.
    report.step(format!(
        "still running after {:.0} s: killing the shell and starting a new one",
        driver.config.cancel_deadline.as_secs_f64()
    ));
    match replace_bounded(driver).await {
        Ok(()) => {
            report.shell_replaced = true;
            report.step("new shell started, cwd and exported variables restored".into());
        }
        Err(why) => {
            report.step(format!(
                "could not replace the shell ({why}): dropping the connection and connecting again"
            ));
            reconnect_after_drop(driver).await?;
            report.connection_restarted = true;
            report.step("connected again, cwd and exported variables restored".into());
        }
    }
    let result = driver.wait_result_of(id, Instant::now()).await?;
    Ok(report.finish(result))
}

/// How much longer than the prime's own timeout replacing a shell may take (closing the
/// old channel, opening a new one) before the connection is given up.
const REPLACE_SLACK: Duration = Duration::from_secs(5);

/// The stop ladder's report as it is built: each step also goes to everyone attached.
struct Ladder<'a> {
    driver: &'a Driver,
    tried: Vec<&'static str>,
    steps: Vec<String>,
    shell_replaced: bool,
    connection_restarted: bool,
}

impl<'a> Ladder<'a> {
    fn new(driver: &'a Driver) -> Self {
        Ladder {
            driver,
            tried: Vec::new(),
            steps: Vec::new(),
            shell_replaced: false,
            connection_restarted: false,
        }
    }

    fn step(&mut self, text: String) {
        // The steps name the command, which may carry a secret: the log only counts them.
        tracing::info!(session = %self.driver.name, step = self.steps.len() + 1, "stopping the command");
        self.driver.tell_attached(text.clone());
        self.steps.push(text);
    }

    fn finish(self, result: ExecResult) -> StopReport {
        StopReport {
            tried: self.tried,
            shell_replaced: self.shell_replaced,
            connection_restarted: self.connection_restarted,
            steps: self.steps,
            result,
        }
    }
}

/// The last resort: the connection itself goes (its shell and command with it), and the
/// session connects again, restoring cwd and exported variables (a persistent session
/// re-attaches to its tmux shell, which is killed first when reachable).
async fn reconnect_after_drop(driver: &Arc<Driver>) -> Result<()> {
    let transport = driver.transport();
    let _ = tokio::time::timeout(REPLACE_SLACK, transport.close()).await;
    reconnect::reconnect_now(driver).await?;
    if driver.config.persistent && driver.view(|m| m.is_running()) {
        // tmux kept the wedged shell through the new connection: end it for good.
        if let Err(why) = replace_bounded(driver).await {
            tracing::warn!(session = %driver.name, %why, "no new shell after reconnecting");
            return Err(Error::ShellNotReady {
                session: driver.name.clone(),
                timeout: driver.config.prime_timeout + REPLACE_SLACK,
                last_output: driver.view(|m| m.screen()),
            });
        }
    }
    Ok(())
}

/// [`replace`], within the prime's timeout and [`REPLACE_SLACK`]; what went wrong, in
/// words, if it did not.
async fn replace_bounded(driver: &Arc<Driver>) -> std::result::Result<(), String> {
    let bound = driver.config.prime_timeout + REPLACE_SLACK;
    match tokio::time::timeout(bound, replace(driver, GoneCause::Replaced)).await {
        Ok(done) => done.map_err(|e| e.to_string()),
        Err(_) => {
            // The start this replacement claimed was abandoned half-way: give it up, so
            // that a reconnection can start the shell.
            driver.apply(|m| m.start_failed(GoneCause::Replaced));
            Err(format!("no new shell within {:.0} s", bound.as_secs_f64()))
        }
    }
}

/// Kills the shell (its command ends as killed) and starts a new one, restoring cwd and
/// exported variables. Replacing claims the next shell's start, so a command queued
/// meanwhile waits for it instead of starting a second one.
async fn replace(driver: &Arc<Driver>, cause: GoneCause) -> Result<()> {
    tracing::warn!(session = %driver.name, %cause, "replacing the shell");
    let old = driver.act(|m| m.replace_shell(cause.clone()));
    if let Some(old) = old {
        let _ = old.close().await;
    }
    if driver.config.persistent {
        // Closing a tmux attachment only detaches: end the wedged shell itself.
        let _ = persistent::kill(driver.transport().as_ref(), &driver.name).await;
    }
    let notices = spawn::start_claimed(driver, Some(cause), false).await?;
    driver.apply(|m| {
        m.add_notices(notices);
        Default::default()
    });
    Ok(())
}
