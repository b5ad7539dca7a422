//! The daemon's side of `attach`: the client becomes a person at the session's terminal
//! ([`ShellSession::attach`]). Their keystrokes go to the terminal as typed, everything
//! the terminal prints goes back byte for byte, and core's notices (what a program runs,
//! steps taken to stop a command, a lost link) go as `Notice`s, until the client detaches
//! or hangs up. Detaching never stops anything.

use ssh_session_core::{AttachOptions, Attachment, Session, ShellSession, TerminalEvent};

use super::handler::{LineReader, Writer};
use crate::protocol::{decode, encode, AttachInput, Response};

/// Serves an attached client until it detaches or hangs up, or the terminal ends.
pub(super) async fn run(
    session: ShellSession,
    mut lines: LineReader,
    mut w: Writer,
    cols: u16,
    rows: u16,
) -> std::io::Result<()> {
    let mut terminal = match session
        .attach(AttachOptions::new("attach", cols, rows))
        .await
    {
        Ok(t) => t,
        Err(e) => return w.error(&e).await,
    };
    let info = session.info();
    w.send(&Response::Attached {
        running: info.running.clone(),
        cwd: info.cwd.clone(),
        tracked: terminal.tracked(),
    })
    .await?;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                // A hang-up detaches (dropping the attachment), like Ctrl-].
                let Some(line) = line? else { return Ok(()) };
                match serde_json::from_str::<AttachInput>(&line) {
                    Ok(AttachInput::Detach) => return Ok(()),
                    Ok(input) => handle(&terminal, input, &mut w).await?,
                    Err(e) => {
                        w.send(&Response::Notice {
                            message: format!("a malformed attach message was ignored: {e}"),
                        })
                        .await?
                    }
                }
            }
            event = terminal.next() => match event {
                Some(TerminalEvent::Output(bytes)) => {
                    w.send(&Response::Output { data: encode(&bytes) }).await?;
                }
                Some(TerminalEvent::Notice(message)) => {
                    w.send(&Response::Notice { message }).await?;
                }
                Some(TerminalEvent::Ended(reason)) => {
                    return w.send(&Response::Ended { reason }).await;
                }
                Some(_) => {}
                None => {
                    return w
                        .send(&Response::Ended {
                            reason: format!("session {} ended", session.name()),
                        })
                        .await;
                }
            },
        }
    }
}

/// Applies one message from the client; what fails is told to it and changes nothing.
async fn handle(terminal: &Attachment, input: AttachInput, w: &mut Writer) -> std::io::Result<()> {
    let failed = match input {
        AttachInput::Input { data } => match decode(&data) {
            Ok(bytes) => terminal
                .send(&bytes)
                .await
                .err()
                .map(|e| format!("keys not delivered: {e}")),
            Err(detail) => Some(format!("keys not delivered: {detail}")),
        },
        AttachInput::Resize { cols, rows } => terminal
            .resize(cols, rows)
            .await
            .err()
            .map(|e| format!("the terminal was not resized: {e}")),
        AttachInput::Detach => None,
    };
    match failed {
        Some(message) => w.send(&Response::Notice { message }).await,
        None => Ok(()),
    }
}
