//! One client connection: the hello, then requests answered in order.

use std::sync::Arc;
use std::time::Duration;

use ssh_session_core::{
    ConnectOptions, ExecOptions, ExecResult, IdentityFile, ReadOptions, Session, SessionConfig,
    SessionStatus, ShellSession, TransportKind,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::{ClientGuard, Daemon};
use crate::error::classify;
use crate::protocol::{
    decode, encode, to_line, ConnectSpec, ErrorKind, Hello, HistoryView, Request, Response,
    ResultView, SessionView,
};

/// The reading side of a client connection, one JSON message per line.
pub type LineReader = Lines<BufReader<OwnedReadHalf>>;

/// Writes responses to a client.
pub struct Writer(OwnedWriteHalf);

impl Writer {
    /// Sends one response.
    pub async fn send(&mut self, response: &Response) -> std::io::Result<()> {
        self.0.write_all(&to_line(response)).await
    }

    /// Sends a core error as a response.
    pub async fn error(&mut self, e: &ssh_session_core::Error) -> std::io::Result<()> {
        self.send(&Response::Error {
            error: classify(e),
            message: e.to_string(),
        })
        .await
    }
}

/// Serves one client until it hangs up. Errors only end this connection.
pub async fn serve_client(daemon: Arc<Daemon>, stream: UnixStream, _guard: ClientGuard) {
    if let Err(e) = serve(&daemon, stream).await {
        tracing::debug!("client connection ended: {e}");
    }
}

async fn serve(daemon: &Arc<Daemon>, stream: UnixStream) -> std::io::Result<()> {
    let peer = stream.peer_cred()?;
    let (read, write) = stream.into_split();
    let mut writer = Writer(write);
    // The socket is 0600 in a 0700 directory; this check also holds if someone loosens
    // those permissions (or for root, who ignores them).
    if peer.uid() != daemon.uid {
        tracing::warn!(uid = peer.uid(), pid = ?peer.pid(), "refused a client of another user");
        return writer
            .send(&Response::Error {
                error: ErrorKind::Daemon,
                message: format!(
                    "refused: this ssh-session daemon belongs to uid {}, and you are uid {}; \
                     run your own (it starts by itself) with --runtime-dir or --socket",
                    daemon.uid,
                    peer.uid()
                ),
            })
            .await;
    }
    let mut lines = BufReader::new(read).lines();
    let Some(first) = lines.next_line().await? else {
        return Ok(());
    };
    let ours = Hello {
        pid: std::process::id(),
        sessions: daemon.manager.names().len(),
        ..Hello::client()
    };
    let theirs: Hello = match serde_json::from_str(&first) {
        Ok(h) => h,
        Err(e) => {
            return writer
                .send(&Response::Error {
                    error: ErrorKind::Daemon,
                    message: format!("expected a hello message first: {e}"),
                })
                .await
        }
    };
    writer.send(&Response::Hello(ours.clone())).await?;
    if !theirs.compatible_with(&ours) {
        // The client learned our versions from the hello and decides what to do.
        return Ok(());
    }
    while let Some(line) = lines.next_line().await? {
        daemon.touch();
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                writer
                    .send(&Response::Error {
                        error: ErrorKind::Daemon,
                        message: format!("malformed request: {e}"),
                    })
                    .await?;
                continue;
            }
        };
        if let Request::Attach { name, cols, rows } = request {
            // Attach takes the connection over until the client detaches.
            let session = match daemon.manager.get(&name) {
                Ok(s) => s,
                Err(e) => {
                    writer.error(&e).await?;
                    continue;
                }
            };
            return super::attach::run(session, lines, writer, cols, rows).await;
        }
        handle(daemon, request, &mut lines, &mut writer).await?;
    }
    Ok(())
}

async fn handle(
    daemon: &Arc<Daemon>,
    request: Request,
    lines: &mut LineReader,
    w: &mut Writer,
) -> std::io::Result<()> {
    let manager = &daemon.manager;
    let response = match request {
        Request::Connect { name, spec } => match connect(daemon, &name, spec).await {
            Ok(view) => Response::Session(view),
            Err(e) => return w.error(&e).await,
        },
        Request::Exec {
            name,
            command,
            timeout_ms,
        } => {
            let session = match manager.get(&name) {
                Ok(s) => s,
                Err(e) => return w.error(&e).await,
            };
            let timeout = Duration::from_millis(timeout_ms);
            return exec(&session, &command, timeout, lines, w).await;
        }
        Request::Read {
            name,
            wait_ms,
            screen,
        } => {
            let result = async {
                let session = manager.get(&name)?;
                if screen {
                    return Ok(Response::Screen {
                        text: session.screen(),
                    });
                }
                let options = ReadOptions {
                    wait: Duration::from_millis(wait_ms),
                    return_on_output: false,
                };
                let r = session.read_output(options).await?;
                Ok(Response::Result(ResultView::of(&r, &r.output)))
            };
            match result.await {
                Ok(r) => r,
                Err(e) => return w.error(&e).await,
            }
        }
        Request::Send { name, data } => {
            let bytes = match decode(&data) {
                Ok(b) => b,
                Err(message) => {
                    return w
                        .send(&Response::Error {
                            error: ErrorKind::Invalid,
                            message,
                        })
                        .await
                }
            };
            let sent = async { manager.get(&name)?.send_input(&bytes).await };
            done_or_error(sent.await)
        }
        Request::Interrupt { name, signal } => {
            let sent = async { manager.get(&name)?.interrupt(signal.into()).await };
            done_or_error(sent.await)
        }
        Request::List => Response::Sessions {
            sessions: manager.list().iter().map(SessionView::from).collect(),
        },
        Request::Status { name } => match manager.get(&name) {
            Ok(s) => Response::Session(SessionView::from(&s.info())),
            Err(e) => return w.error(&e).await,
        },
        Request::History { name } => match manager.get(&name) {
            Ok(s) => Response::History {
                entries: s.history().iter().map(HistoryView::from).collect(),
            },
            Err(e) => return w.error(&e).await,
        },
        Request::Close { name } => done_or_error(manager.close(&name).await),
        Request::Shutdown => {
            tracing::info!("stop requested by a client");
            daemon.shut_down().await;
            Response::Done
        }
        Request::Attach { .. } => unreachable!("attach is handled by the caller"),
    };
    w.send(&response).await
}

fn done_or_error(result: ssh_session_core::Result<()>) -> Response {
    match result {
        Ok(()) => Response::Done,
        Err(e) => Response::Error {
            error: classify(&e),
            message: e.to_string(),
        },
    }
}

async fn connect(
    daemon: &Daemon,
    name: &str,
    spec: ConnectSpec,
) -> ssh_session_core::Result<SessionView> {
    ssh_session_core::validate_name(name)?;
    let transport: TransportKind = match spec.transport.as_deref() {
        None => TransportKind::default(),
        Some(t) => t
            .parse()
            .map_err(|detail| ssh_session_core::Error::Config { detail })?,
    };
    let resolved = ssh_session_core::resolve_host(&spec.target, spec.ssh_config.as_deref()).await?;
    let base =
        ConnectOptions::new(resolved.host_name.clone(), resolved.user.clone()).transport(transport);
    let mut options = resolved.apply_to(base)?;
    if let Some(user) = spec.user {
        options.user = user;
    }
    if let Some(port) = spec.port {
        options.port = port;
    }
    if !spec.identities.is_empty() {
        options.identities = spec.identities.into_iter().map(IdentityFile::new).collect();
    }
    if let Some(known_hosts) = spec.known_hosts {
        options.known_hosts = known_hosts;
    }
    if spec.no_agent {
        options.use_agent = false;
    }
    if let Some(ms) = spec.connect_timeout_ms {
        options.connect_timeout = Duration::from_millis(ms);
    }
    let config = SessionConfig {
        persistent: spec.persistent,
        ..SessionConfig::default()
    };
    tracing::info!(session = name, host = %options.host, port = options.port, user = %options.user, "connecting");
    let session = daemon.manager.open(name, options, config).await?;
    Ok(SessionView::from(&session.info()))
}

/// Runs a command and streams its output to the client until it ends or `timeout`
/// expires; the command then keeps running and `read` continues exactly where the client
/// stopped seeing output.
///
/// The command is started with a zero timeout and followed with `read_output`, which
/// returns as soon as output arrives. (Not `exec_stream`: a stream dropped at the timeout
/// would count the rest of the output as delivered, and `read` could not show it.)
async fn exec(
    session: &ShellSession,
    command: &str,
    timeout: Duration,
    lines: &mut LineReader,
    w: &mut Writer,
) -> std::io::Result<()> {
    let deadline = Instant::now() + timeout;
    // Notices (shell restarted, reconnected) come with the first result; keep them for
    // the last one, which is what the client reports.
    let mut notices = match start(session, command, "cli", deadline).await {
        Ok(first) => {
            if !first.output.is_empty() {
                w.send(&Response::Output {
                    data: encode(&first.output),
                })
                .await?;
            }
            if !first.is_running() {
                return w.send(&Response::Result(ResultView::of(&first, &[]))).await;
            }
            first.notices
        }
        Err(e) => return w.error(&e).await,
    };
    loop {
        let options = ReadOptions {
            wait: deadline.saturating_duration_since(Instant::now()),
            return_on_output: true,
        };
        let read = tokio::select! {
            read = session.read_output(options) => read,
            // The client went away (Ctrl-C): stop watching; the command goes on.
            _ = hangup(lines) => return Ok(()),
        };
        let mut r = match read {
            Ok(r) => r,
            Err(e) => return w.error(&e).await,
        };
        notices.append(&mut r.notices);
        r.notices = std::mem::take(&mut notices);
        if !r.output.is_empty() {
            // A client that went away (Ctrl-C) just stops watching: the command goes on.
            w.send(&Response::Output {
                data: encode(&r.output),
            })
            .await?;
        }
        if !r.is_running() || Instant::now() >= deadline {
            return w.send(&Response::Result(ResultView::of(&r, &[]))).await;
        }
    }
}

/// Resolves when the client hangs up (nothing is expected from it meanwhile).
async fn hangup(lines: &mut LineReader) {
    while let Ok(Some(_)) = lines.next_line().await {}
}

/// Starts `command` without waiting for it (a zero exec timeout) and returns its first
/// result: usually still running. A session that is (re)connecting is waited for first,
/// up to `deadline`, so the zero timeout does not turn into a `Reconnecting` error.
pub async fn start(
    session: &ShellSession,
    command: &str,
    source: &str,
    deadline: Instant,
) -> ssh_session_core::Result<ExecResult> {
    let mut events = session.subscribe_status();
    while matches!(
        session.info().status,
        SessionStatus::Connecting | SessionStatus::Reconnecting { .. }
    ) {
        if tokio::time::timeout_at(deadline, events.recv())
            .await
            .is_err()
        {
            break;
        }
    }
    let options = ExecOptions {
        timeout: Some(Duration::ZERO),
        source: Some(source.into()),
    };
    session.exec(command, options).await
}
