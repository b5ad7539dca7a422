//! One browser's WebSocket: the session's terminal both ways (binary frames of terminal
//! bytes), and JSON text messages for everything else.
//!
//! Page → server: `{"type":"resize","cols":C,"rows":R}`, `{"type":"mode","read_only":B}`,
//! `{"type":"cancel"}`. Server → page: `state` (connected / reconnecting n of N / error),
//! `running` (command, source, whether a person's), `notice`, `cancel` (the stop
//! ladder's report), `error`, `ended`.

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use ssh_session_core::{
    AttachOptions, Session, SessionInfo, SessionStatus, ShellSession, TerminalEvent,
};
use tokio::sync::{broadcast, mpsc};

/// How often the page's "who runs what" is brought up to date (a person reads it; the
/// terminal itself shows a command as soon as it is typed).
const RUNNING_EVERY: Duration = Duration::from_millis(200);

/// What the browser is, as its person's commands record it.
pub(crate) const SOURCE: &str = "browser";

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FromPage {
    Resize { cols: u16, rows: u16 },
    Mode { read_only: bool },
    Cancel,
}

/// How a browser joined.
pub(crate) struct Joined {
    pub session: ShellSession,
    /// The login may only watch (not changeable from the page).
    pub forced_read_only: bool,
    /// The page asked to watch.
    pub read_only: bool,
    /// The page's terminal size.
    pub size: Option<(u16, u16)>,
}

fn text(value: serde_json::Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn state(status: &SessionStatus) -> Message {
    text(match status {
        SessionStatus::Reconnecting { attempt, of } => {
            json!({"type": "state", "state": "reconnecting", "attempt": attempt, "of": of})
        }
        SessionStatus::Error { detail, .. } => {
            json!({"type": "state", "state": "error", "detail": detail})
        }
        other => json!({"type": "state", "state": other.name()}),
    })
}

fn running(info: &SessionInfo) -> serde_json::Value {
    json!({
        "type": "running",
        "command": info.running,
        "source": info.running_source,
        "person": info.running_by_person,
    })
}

/// Runs one browser's terminal until either side ends it.
pub(crate) async fn bridge(socket: WebSocket, joined: Joined) {
    let Joined {
        session,
        forced_read_only,
        read_only,
        size,
    } = joined;
    let mut read_only = forced_read_only || read_only;
    let name = session.name().to_string();
    let (mut to_page, mut from_page) = socket.split();
    let mut status = session.subscribe_status();
    let info = session.info();
    let _ = to_page.send(state(&info.status)).await;
    // A watcher does not resize the shared terminal for everyone else.
    let mut options = AttachOptions::default();
    options.source = Some(SOURCE.into());
    options.size = if read_only { None } else { size };
    let mut terminal = match session.attach(options).await {
        Ok(t) => t,
        Err(e) => {
            let reason = e.to_string();
            let _ = to_page
                .send(text(json!({"type": "ended", "reason": reason})))
                .await;
            let _ = to_page.close().await;
            return;
        }
    };
    tracing::info!(session = %name, read_only, "a browser attached");
    let (reports, mut report) = mpsc::channel::<serde_json::Value>(1);
    let mut tick = tokio::time::interval(RUNNING_EVERY);
    let mut shown = serde_json::Value::Null;
    let mut status_open = true;
    loop {
        tokio::select! {
            event = terminal.next() => {
                let message = match event {
                    Some(TerminalEvent::Output(bytes)) => Message::Binary(bytes),
                    Some(TerminalEvent::Notice(notice)) => text(json!({"type": "notice", "text": notice})),
                    Some(TerminalEvent::Ended(reason)) => {
                        let _ = to_page.send(text(json!({"type": "ended", "reason": reason}))).await;
                        break;
                    }
                    Some(_) => continue,
                    None => {
                        let _ = to_page.send(text(json!({"type": "ended", "reason": "the session was closed"}))).await;
                        break;
                    }
                };
                if to_page.send(message).await.is_err() {
                    break;
                }
            }
            message = from_page.next() => match message {
                Some(Ok(Message::Binary(keys))) => {
                    if read_only {
                        continue;
                    }
                    if let Err(e) = terminal.send(&keys).await {
                        let _ = to_page.send(text(json!({"type": "error", "text": format!("keys not sent: {e}")}))).await;
                    }
                }
                Some(Ok(Message::Text(body))) => match serde_json::from_str::<FromPage>(body.as_str()) {
                    Ok(FromPage::Resize { cols, rows }) if !read_only && cols > 0 && rows > 0 => {
                        if let Err(e) = terminal.resize(cols, rows).await {
                            tracing::debug!(session = %name, "resize failed: {e}");
                        }
                    }
                    Ok(FromPage::Resize { .. }) => {}
                    Ok(FromPage::Mode { read_only: watch }) => read_only = forced_read_only || watch,
                    Ok(FromPage::Cancel) if read_only => {
                        let _ = to_page.send(text(json!({"type": "cancel", "ok": false, "error": "this page is read-only: untick read-only to cancel (a read-only login cannot)"}))).await;
                    }
                    Ok(FromPage::Cancel) => {
                        let session = session.clone();
                        let reports = reports.clone();
                        // The ladder takes up to the session's cancel deadline; the
                        // terminal keeps flowing meanwhile.
                        tokio::spawn(async move {
                            let value = match session.stop_command().await {
                                Ok(r) => json!({
                                    "type": "cancel", "ok": true, "tried": r.tried,
                                    "steps": r.steps, "shell_replaced": r.shell_replaced,
                                    "connection_restarted": r.connection_restarted,
                                    "exit_code": r.result.exit_code,
                                }),
                                Err(e) => json!({"type": "cancel", "ok": false, "error": e.to_string()}),
                            };
                            let _ = reports.send(value).await;
                        });
                    }
                    Err(e) => {
                        tracing::debug!(session = %name, "a message the page should not send: {e}");
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            changed = status.recv(), if status_open => match changed {
                Ok(event) => {
                    if to_page.send(state(&event.status)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = to_page.send(state(&session.info().status)).await;
                }
                Err(broadcast::error::RecvError::Closed) => status_open = false,
            },
            Some(value) = report.recv() => {
                if to_page.send(text(value)).await.is_err() {
                    break;
                }
            }
            _ = tick.tick() => {
                let now = running(&session.info());
                if now != shown {
                    if to_page.send(text(now.clone())).await.is_err() {
                        break;
                    }
                    shown = now;
                }
            }
        }
    }
    tracing::info!(session = %name, "a browser detached");
    let _ = to_page.close().await;
}
