//! One client connection: the hello, then requests answered in order.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ssh_session_core::{
    ConnectOptions, ExecOptions, ExecResult, HostSpec, ReadOptions, Session, SessionConfig,
    SessionStatus, ShellSession, TransportKind,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::broadcast::error::RecvError;
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
        if daemon.is_stopping() && request != Request::Shutdown {
            // Not started, so the client may safely run it again on a new daemon.
            return writer
                .send(&Response::Error {
                    error: ErrorKind::ShuttingDown,
                    message: "the ssh-session daemon is shutting down; run the command again \
                              to start a new one"
                        .into(),
                })
                .await;
        }
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
            // The guard keeps the runtime up until the answer is written.
            let _answering = daemon.stop_for_client().await;
            return w.send(&Response::Done).await;
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
    let host = HostSpec {
        host: spec.target,
        user: spec.user,
        port: spec.port,
        identity_files: spec.identities,
        transport,
        config_file: spec.ssh_config,
    };
    let mut options = host.resolve().await?;
    if let Some(known_hosts) = spec.known_hosts {
        options.known_hosts = known_hosts;
    }
    if spec.no_agent {
        options.use_agent = false;
    }
    if let Some(ms) = spec.connect_timeout_ms {
        options.connect_timeout = Duration::from_millis(ms);
    }
    apply_agent(&mut options, spec.agent_socket);
    let config = SessionConfig {
        persistent: spec.persistent,
        ..SessionConfig::default()
    };
    tracing::info!(session = name, host = %options.host, port = options.port, user = %options.user, "connecting");
    let session = daemon.manager.open(name, options, config).await?;
    Ok(SessionView::from(&session.info()))
}

/// The agent is the connecting client's (`SSH_AUTH_SOCK` of its shell), not that of the
/// shell that happened to start the daemon. The options start with the daemon's own
/// `SSH_AUTH_SOCK`; anything else there came from the config's `IdentityAgent`, which
/// wins as it does for `ssh`. A client without an agent gets none (the openssh backend
/// would otherwise inherit the daemon's).
fn apply_agent(options: &mut ConnectOptions, client_agent: Option<PathBuf>) {
    let daemon_agent = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from);
    if options.agent_socket != daemon_agent {
        return;
    }
    options.agent_socket = client_agent;
    if options.agent_socket.is_none() {
        options.use_agent = false;
    }
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
/// up to `deadline`, so the zero timeout does not turn into an immediate `Reconnecting`
/// error.
///
/// The core waits like this inside `exec` only for as long as the exec's own timeout,
/// which is zero here (the daemon follows the command with `read_output` instead, see
/// [`exec`]), and has no public "wait until connected"; hence this loop on the status
/// events. It ends at `deadline` at the latest, or when the session goes away.
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
        match tokio::time::timeout_at(deadline, events.recv()).await {
            // A status changed (or several did): look again.
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            // The session is gone, or time is up: let `exec` report the state.
            Ok(Err(RecvError::Closed)) | Err(_) => break,
        }
    }
    let options = ExecOptions {
        timeout: Some(Duration::ZERO),
        source: Some(source.into()),
    };
    session.exec(command, options).await
}
