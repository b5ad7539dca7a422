//! `attach`: the session's own terminal, like `tmux attach`. The local terminal goes raw
//! and every byte typed goes to the session's shell as is, so its line editor, Tab
//! completion, history, colours and full-screen programs are the shell's own; what the
//! shell's terminal prints comes back byte for byte. Commands a person runs are recorded
//! in the session's history, and programs' commands (`ssh-session exec`, an agent) appear
//! typed at the prompt with their output.
//!
//! [`DETACH_KEY`] (Ctrl-]) leaves at any time; the session and whatever runs in it go on.
//! The remote window size follows the local terminal (SIGWINCH → resize). Messages from
//! ssh-session itself (not the shell) go to stderr in brackets, each on its own line.

use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;

use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::error::CliError;
use crate::output;
use crate::protocol::{decode, encode, AttachInput, Request, Response};

/// The detach key: Ctrl-] (0x1d), as in telnet.
pub(crate) const DETACH_KEY: u8 = 0x1d;

/// Attaches the terminal to session `name` until the detach key; returns the exit code.
pub(crate) async fn run(mut client: Client, name: &str) -> Result<i32, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Invalid(
            "attach needs a terminal on stdin; from scripts use exec, read and send".into(),
        ));
    }
    let (cols, rows) = window_size();
    client
        .send(&Request::Attach {
            name: name.to_string(),
            cols,
            rows,
        })
        .await?;
    let tracked = match client.recv().await? {
        Response::Attached { tracked, .. } => tracked,
        Response::Error { error, message } => {
            return Err(CliError::Remote {
                kind: error,
                message,
            })
        }
        other => return Err(client.protocol(format!("unexpected answer {other:?}"))),
    };
    let signal_of = |kind: SignalKind, what: &str| {
        signal(kind).map_err(|e| CliError::io(format!("watching for {what}"), e))
    };
    let mut winch = signal_of(SignalKind::window_change(), "terminal resizes")?;
    // Killed or hung up: leave like Ctrl-], the terminal restored. Watched before the
    // terminal goes raw, so that no moment is left where a signal would leave it raw.
    let mut term = signal_of(SignalKind::terminate(), "SIGTERM")?;
    let mut hangup = signal_of(SignalKind::hangup(), "SIGHUP")?;
    let raw = RawMode::enable()?;
    let how = if tracked {
        "your commands are recorded in its history"
    } else {
        "its shell cannot report commands, so they are not recorded"
    };
    notice(&format!(
        "attached to {name}: {how}; Ctrl-] detaches and leaves it running"
    ));
    let (mut replies, requests) = client.split();
    let mut keys = read_keys();
    let ended = loop {
        tokio::select! {
            response = replies.recv() => match response? {
                Response::Output { data } => {
                    write_screen(&decode(&data).map_err(|e| replies.protocol(e))?)?;
                }
                Response::Notice { message } => notice(&message),
                Response::Ended { reason } => break Some(reason),
                Response::Error { error, message } => {
                    drop(raw);
                    return Err(CliError::Remote { kind: error, message });
                }
                other => return Err(replies.protocol(format!("unexpected answer {other:?}"))),
            },
            chunk = keys.recv() => {
                // stdin closed: nothing more can be typed; leave the session running.
                let Some(chunk) = chunk else { break None };
                let (typed, detach) = split_detach(&chunk);
                if !typed.is_empty() {
                    requests.send(&AttachInput::Input { data: encode(typed) })?;
                }
                if detach {
                    break None;
                }
            }
            _ = winch.recv() => {
                let (cols, rows) = window_size();
                requests.send(&AttachInput::Resize { cols, rows })?;
            }
            _ = term.recv() => break None,
            _ = hangup.recv() => break None,
        }
    };
    match ended {
        Some(reason) => {
            requests.flush(FLUSH_LIMIT).await;
            notice(&reason);
            drop(raw);
            Ok(1)
        }
        None => {
            // Best effort: a daemon that already went away detached us anyway.
            let _ = requests.send(&AttachInput::Detach);
            requests.flush(FLUSH_LIMIT).await;
            notice(&format!(
                "detached from {name}; it keeps running: `ssh-session attach {name}` to return"
            ));
            drop(raw);
            Ok(0)
        }
    }
}

/// How long leaving may wait for keys still queued for the daemon.
const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The keys before the detach key, and whether it was typed (what follows it is dropped:
/// it was typed after leaving).
fn split_detach(chunk: &[u8]) -> (&[u8], bool) {
    match chunk.iter().position(|&b| b == DETACH_KEY) {
        Some(at) => (&chunk[..at], true),
        None => (chunk, false),
    }
}

/// The shell's terminal output, as it printed it (it already ends lines with `\r\n`).
fn write_screen(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("writing to the terminal", e))
}

/// A message from ssh-session, on its own line of stderr: in raw mode `\n` does not
/// return the carriage, so lines end with `\r\n`.
fn notice(message: &str) {
    let _ = write!(
        std::io::stderr().lock(),
        "{}",
        notice_line(&output::escape_controls(message))
    );
}

fn notice_line(message: &str) -> String {
    format!("\r\n[ssh-session: {message}]\r\n")
}

/// Keystrokes from stdin, read on tokio's blocking pool.
fn read_keys() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// The local terminal's size (80×24 if unknown).
fn window_size() -> (u16, u16) {
    // SAFETY: TIOCGWINSZ fills the winsize we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0
        || unsafe { libc::ioctl(std::io::stdin().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col, ws.ws_row)
    } else {
        (80, 24)
    }
}

/// The terminal in raw mode (no echo, no line buffering, no signals from Ctrl-C, no
/// output processing): the remote shell's terminal does all of that. Restored on drop.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enable() -> Result<RawMode, CliError> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: tcgetattr/tcsetattr on stdin with termios structs we own.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return Err(CliError::io(
                    "reading the terminal mode",
                    std::io::Error::last_os_error(),
                ));
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return Err(CliError::io(
                    "setting the terminal to raw mode",
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the mode saved from the same descriptor.
        unsafe {
            libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_after_the_detach_key_are_not_sent() {
        assert_eq!(split_detach(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(split_detach(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(split_detach(b"\x1d"), (&b""[..], true));
        // Everything else is the shell's: Ctrl-C, Ctrl-D, Tab, arrows, Ctrl-R.
        let all: Vec<u8> = (0u8..=255).filter(|&b| b != DETACH_KEY).collect();
        assert_eq!(split_detach(&all), (&all[..], false));
    }

    #[test]
    fn a_notice_has_lines_of_its_own_in_raw_mode() {
        assert_eq!(notice_line("hi"), "\r\n[ssh-session: hi]\r\n");
    }
}
