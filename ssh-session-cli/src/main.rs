//! `ssh-session`: persistent SSH sessions from the shell, held by a local daemon.
//!
//! The client path is kept lean (a current-thread runtime, no logging set-up) because a
//! whole process per command is what a shell user pays for.

mod attach;
mod cli;
mod client;
mod commands;
mod daemon;
mod error;
mod output;
mod protocol;
mod remote;
mod runtime;

use clap::Parser;

use cli::{Cli, Command};
use error::CliError;

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        // A closed stdout (`| head`) is the reader's choice, not a failure to report.
        Err(e @ CliError::StdoutClosed) => e.exit_code(),
        Err(e) => {
            output::error(&e.to_string());
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<i32, CliError> {
    if let Command::Daemon { action: None } = cli.command {
        let paths = runtime::Paths::resolve(&cli.global)?;
        daemon::run(paths, cli.global.idle_timeout, is_foreground())?;
        return Ok(0);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the tokio runtime", e))?;
    let code = runtime.block_on(commands::run(cli));
    // Don't wait for attach's stdin reader, blocked in read(2) on the blocking pool.
    runtime.shutdown_background();
    code
}

/// A daemon started by a client has its own session (setsid) and so no controlling
/// terminal; one started by hand in a terminal is in the foreground.
fn is_foreground() -> bool {
    // SAFETY: getsid(0) and getpid have no preconditions.
    unsafe { libc::getsid(0) != libc::getpid() }
}
