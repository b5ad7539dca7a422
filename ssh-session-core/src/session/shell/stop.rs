//! Interrupting the running command, and the stop ladder that ends with replacing a shell
//! whose command will not stop.

use std::sync::Arc;

use tokio::time::Instant;

use super::driver::Driver;
use super::spawn;
use crate::error::{Error, Result};
use crate::persistent;
use crate::session::types::{Interrupt, StopReport};
use crate::transport::run;

/// Sends `how` to the running command.
pub(super) async fn interrupt(driver: &Driver, how: Interrupt) -> Result<()> {
    let (input, pid, pty) = driver.view(|m| m.interrupt_target())?;
    match (how, pty) {
        // Through the terminal, as a person would: the line discipline signals the
        // foreground job and the shell survives.
        (Interrupt::Int, true) => input.write(b"\x03").await,
        (Interrupt::Eof, true) => input.write(b"\x04").await,
        (Interrupt::Eof, false) => Err(Error::InvalidCommand {
            session: driver.name.clone(),
            reason: "EOF needs a PTY session: without one, closing stdin would end the shell"
                .into(),
        }),
        (how, _) => {
            let pid = pid.ok_or_else(|| Error::Disconnected {
                session: driver.name.clone(),
                detail: "the shell's process id is not known yet".into(),
            })?;
            signal_foreground(driver, pid, how.signal_name()).await
        }
    }
}

/// Signals the terminal's foreground process group (the running command) through a
/// separate exec channel: a PTY can only carry Ctrl-C, and SSH `signal` requests reach the
/// shell, not its foreground job.
async fn signal_foreground(driver: &Driver, pid: u32, signal: &str) -> Result<()> {
    // tpgid is field 8 of /proc/PID/stat, counted after the ")" that ends the command name
    // (which may contain spaces). No foreground job of its own → signal children.
    let script = format!(
        "P={pid}; T=; if [ -r /proc/$P/stat ]; then s=$(cat /proc/$P/stat); s=${{s##*) }}; set -- $s; T=$6; \
         else T=$(ps -o tpgid= -p $P 2>/dev/null | tr -d \" \"); fi; \
         if [ -n \"$T\" ] && [ \"$T\" -gt 0 ] && [ \"$T\" != \"$P\" ]; then kill -{signal} -$T; \
         else pkill -{signal} -P $P; fi"
    );
    let transport = driver.transport();
    let out = run(transport.as_ref(), &format!("sh -c '{script}'")).await?;
    if out.exit_status == Some(0) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(Error::InvalidCommand {
        session: driver.name.clone(),
        reason: if stderr.is_empty() {
            format!("SIG{signal} found no process of the running command to signal")
        } else {
            format!("could not send SIG{signal} to the running command: {stderr}")
        },
    })
}

/// Stops the running command however it takes: Ctrl-C, SIGTERM, SIGKILL, a third of the
/// stop deadline each; then the shell itself is killed and a new one started.
pub(super) async fn stop_command(driver: &Arc<Driver>) -> Result<StopReport> {
    if !driver.view(|m| m.is_running()) {
        return Err(Error::NotRunning {
            session: driver.name.clone(),
        });
    }
    let step = driver.config.stop_deadline / 3;
    let mut tried = Vec::new();
    for how in [Interrupt::Int, Interrupt::Term, Interrupt::Kill] {
        tried.push(how.signal_name());
        if let Err(e) = interrupt(driver, how).await {
            tracing::info!(session = %driver.name, signal = how.signal_name(), error = %e, "interrupt failed");
        }
        let result = driver.wait_result(Instant::now() + step, false).await?;
        if !result.is_running() {
            return Ok(StopReport {
                tried,
                shell_replaced: false,
                result,
            });
        }
    }
    // Nothing stopped it (a process in uninterruptible sleep, a shell whose output goes
    // nowhere): kill the shell and start afresh. Replacing claims the next shell's start,
    // so a command queued meanwhile waits for it instead of starting a second one.
    tracing::warn!(session = %driver.name, "command survived SIGKILL; replacing the shell");
    let old = driver.act(|m| m.replace_shell());
    if let Some(old) = old {
        let _ = old.close().await;
    }
    if driver.config.persistent {
        // Closing a tmux attachment only detaches: end the wedged shell itself.
        let _ = persistent::kill(driver.transport().as_ref(), &driver.name).await;
    }
    let result = driver.wait_result(Instant::now(), false).await?;
    let notices =
        spawn::start_claimed(driver, Some(super::effects::GoneCause::Replaced), false).await?;
    driver.apply(|m| {
        m.add_notices(notices);
        Default::default()
    });
    Ok(StopReport {
        tried,
        shell_replaced: true,
        result,
    })
}
