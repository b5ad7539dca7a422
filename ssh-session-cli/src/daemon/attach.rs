//! The daemon's side of `attach`: command lines typed at the client's prompt run in the
//! session's shell, keystrokes go to the running command's terminal, and output streams
//! back live, until the client detaches. Detaching never stops anything.

use std::time::Duration;

use ssh_session_core::{ExecOptions, ExecResult, ReadOptions, Session, ShellSession};

use super::handler::{LineReader, Writer};
use crate::error::classify;
use crate::protocol::{decode, encode, AttachInput, Response};

/// How long a command typed at the prompt may wait for a reconnecting session.
const START_WAIT: Duration = Duration::from_secs(30);

/// What following produced.
enum Event {
    Output(Vec<u8>),
    Finished(ExecResult),
    Failed(ssh_session_core::Error),
}

/// Serves an attached client until it detaches or hangs up.
pub(super) async fn run(
    session: ShellSession,
    mut lines: LineReader,
    mut w: Writer,
    cols: u16,
    rows: u16,
) -> std::io::Result<()> {
    if let Err(e) = session.resize(cols, rows).await {
        tracing::debug!("attach: resize failed: {e}");
    }
    let info = session.info();
    // Whether a command runs, whose output is followed with `read_output` (returning as
    // soon as output arrives): one started here, or one already running (an `exec` that
    // timed out).
    let mut following = info.running.is_some();
    w.send(&Response::Attached {
        running: info.running.clone(),
        cwd: info.cwd.clone(),
    })
    .await?;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let input: AttachInput = match serde_json::from_str(&line) {
                    Ok(i) => i,
                    Err(e) => {
                        // Ignored: whatever runs is still followed.
                        w.send(&Response::Notice {
                            message: format!("malformed attach message ignored: {e}"),
                        })
                        .await?;
                        continue;
                    }
                };
                match input {
                    AttachInput::Run { command } => {
                        let started = async {
                            // Typed at once, then followed below: a (re)connecting session is
                            // waited for first, so the zero timeout does not refuse it.
                            session.wait_ready(START_WAIT).await?;
                            let options = ExecOptions {
                                timeout: Some(Duration::ZERO),
                                source: Some("attach".into()),
                                ..Default::default()
                            };
                            session.exec(&command, options).await
                        };
                        match started.await {
                            Ok(first) => {
                                if !first.output.is_empty() {
                                    w.send(&Response::Output { data: encode(&first.output) }).await?;
                                }
                                if first.is_running() {
                                    following = true;
                                } else {
                                    send_finished(&mut w, &first).await?;
                                }
                            }
                            Err(e) => w.error(&e).await?,
                        }
                    }
                    AttachInput::Input { data } => {
                        let sent = match decode(&data) {
                            Ok(bytes) => session.send_input(&bytes).await,
                            Err(detail) => Err(ssh_session_core::Error::InvalidCommand {
                                session: session.name().to_string(),
                                reason: detail,
                            }),
                        };
                        match sent {
                            Ok(()) => {}
                            // Typed just as the command ended: back to the client's prompt.
                            Err(ssh_session_core::Error::NotRunning { .. }) => {
                                w.send(&Response::Unconsumed { data }).await?;
                            }
                            // Not delivered (reconnecting...): say so, but the command is
                            // still followed; only its end or a failed poll ends that.
                            Err(e) => {
                                w.send(&Response::Notice {
                                    message: format!("keys not delivered: {e}"),
                                })
                                .await?
                            }
                        }
                    }
                    AttachInput::Resize { cols, rows } => {
                        if let Err(e) = session.resize(cols, rows).await {
                            tracing::debug!("attach: resize failed: {e}");
                        }
                    }
                    AttachInput::Detach => return Ok(()),
                }
            }
            event = poll(&session), if following => match event {
                Event::Output(bytes) => {
                    if !bytes.is_empty() {
                        w.send(&Response::Output { data: encode(&bytes) }).await?;
                    }
                }
                Event::Finished(r) => {
                    following = false;
                    send_finished(&mut w, &r).await?;
                }
                Event::Failed(e) => {
                    following = false;
                    w.send(&Response::Error {
                        error: classify(&e),
                        message: e.to_string(),
                    })
                    .await?;
                }
            },
        }
    }
}

async fn poll(session: &ShellSession) -> Event {
    let options = ReadOptions {
        wait: Duration::from_secs(60),
        return_on_output: true,
    };
    match session.read_output(options).await {
        Ok(r) if r.is_running() => Event::Output(r.output),
        Ok(r) if r.output.is_empty() => Event::Finished(r),
        // Output and the end arrived together: show the output now; the next poll reports
        // the end (reading again after the end returns it with no new output).
        Ok(r) => Event::Output(r.output),
        Err(e) => Event::Failed(e),
    }
}

async fn send_finished(w: &mut Writer, r: &ExecResult) -> std::io::Result<()> {
    w.send(&Response::Finished {
        exit_code: r.exit_code,
        cwd: r.cwd.clone(),
    })
    .await
}
