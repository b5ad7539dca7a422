//! One client connection: the hello, then requests answered in order.

use std::sync::Arc;
use std::time::Duration;

use ssh_session_core::{
    Agent, ExecOptions, FollowEvent, HostSpec, ReadOptions, Session, SessionConfig, ShellSession,
    TransportKind,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::{ClientGuard, Daemon};
use crate::cli::check_new_session_name;
use crate::error::classify;
use crate::protocol::{
    decode, encode, to_line, ConnectSpec, ErrorKind, Hello, HistoryView, Request, Response,
    ResultView, SessionView, ShareView, TunnelView,
};

/// The reading side of a client connection, one JSON message per line.
pub(super) type LineReader = Lines<BufReader<OwnedReadHalf>>;

/// Writes responses to a client.
pub(super) struct Writer(OwnedWriteHalf);

impl Writer {
    /// Sends one response.
    pub(super) async fn send(&mut self, response: &Response) -> std::io::Result<()> {
        self.0.write_all(&to_line(response)).await
    }

    /// Sends a core error as a response.
    pub(super) async fn error(&mut self, e: &ssh_session_core::Error) -> std::io::Result<()> {
        self.send(&Response::Error {
            error: classify(e),
            message: e.to_string(),
        })
        .await
    }
}

/// Serves one client until it hangs up. Errors only end this connection.
pub(super) async fn serve_client(daemon: Arc<Daemon>, stream: UnixStream, _guard: ClientGuard) {
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
        // The client checks the name too; the daemon keeps the rule for any client.
        Request::Connect { name, spec } => match check_new_session_name(&name) {
            Err(message) => Response::Error {
                error: ErrorKind::Invalid,
                message,
            },
            Ok(()) => match connect(daemon, &name, spec).await {
                Ok(view) => Response::Session(view),
                Err(e) => return w.error(&e).await,
            },
        },
        Request::Exec {
            name,
            command,
            timeout_ms,
            source,
        } => {
            let session = match manager.get(&name) {
                Ok(s) => s,
                Err(e) => return w.error(&e).await,
            };
            let options = ExecOptions {
                timeout: Some(Duration::from_millis(timeout_ms)),
                source: Some(source.unwrap_or_else(|| "cli".into())),
                ..Default::default()
            };
            return exec(&session, &command, options, lines, w).await;
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
            let sent = async { manager.get(&name)?.interrupt(signal).await };
            done_or_error(sent.await)
        }
        Request::List => Response::Sessions {
            sessions: manager.list().iter().map(SessionView::from).collect(),
            tunnels: manager.tunnels().iter().map(TunnelView::from).collect(),
        },
        Request::Copy(spec) => return super::remote::copy(daemon, spec, w).await,
        Request::Forward {
            name,
            kind,
            listen,
            target,
        } => super::remote::forward(daemon, &name, &kind, listen, target).await,
        Request::CloseForward { id } => done_or_error(manager.close_tunnel(&id).await),
        Request::ExecMany {
            names,
            command,
            timeout_ms,
            source,
        } => {
            let timeout = Duration::from_millis(timeout_ms);
            super::remote::exec_many(daemon, &names, &command, timeout, source).await
        }
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
        Request::Share { name, read_only } => {
            // The session is checked first: a typo opens no port.
            if let Err(e) = manager.get(&name) {
                return w.error(&e).await;
            }
            let shared = async { daemon.web().await?.share(Some(&name), read_only) };
            match shared.await {
                Ok(share) => Response::Share(ShareView::from(&share)),
                Err(e) => Response::Error {
                    error: match e {
                        ssh_session_web::WebError::NoSuchSession { .. } => {
                            ErrorKind::UnknownSession
                        }
                        _ => ErrorKind::Other,
                    },
                    message: e.to_string(),
                },
            }
        }
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
    // The agent is the connecting client's (`SSH_AUTH_SOCK` of its shell), not that of
    // the shell that happened to start the daemon; the config's IdentityAgent still wins,
    // and a client without an agent gets none.
    let agent = match spec.agent_socket {
        Some(socket) => Agent::Socket(socket),
        None => Agent::Missing,
    };
    let mut host = HostSpec::new(spec.target)
        .transport(transport)
        .agent(agent)
        .use_agent(!spec.no_agent);
    host.user = spec.user;
    host.port = spec.port;
    host.identity_files = spec.identities;
    host.config_file = spec.ssh_config;
    host.known_hosts = spec.known_hosts;
    host.connect_timeout = spec.connect_timeout_ms.map(Duration::from_millis);
    let options = host.resolve().await?;
    let config = SessionConfig {
        persistent: spec.persistent,
        ..SessionConfig::default()
    };
    tracing::info!(session = name, host = %options.host, port = options.port, user = %options.user, "connecting");
    let session = daemon.manager.open(name, options, config).await?;
    Ok(SessionView::from(&session.info()))
}

/// Runs a command and streams its output to the client until it ends or its timeout
/// expires; the command then keeps running and `read` continues exactly where the client
/// stopped seeing output. Notices known when it starts (what a person ran at the terminal
/// since this source's last command) go first, so they are read before its output.
async fn exec(
    session: &ShellSession,
    command: &str,
    options: ExecOptions,
    lines: &mut LineReader,
    w: &mut Writer,
) -> std::io::Result<()> {
    let mut follow = match session.follow(command, options).await {
        Ok(follow) => follow,
        Err(e) => return w.error(&e).await,
    };
    let told = follow.notices().len();
    for notice in follow.notices() {
        w.send(&Response::Notice {
            message: notice.to_string(),
        })
        .await?;
    }
    loop {
        let next = tokio::select! {
            next = follow.next(None) => next,
            // The client went away (Ctrl-C): stop watching; the command goes on.
            _ = hangup(lines) => return Ok(()),
        };
        match next {
            Ok(Some(FollowEvent::Output(bytes))) => {
                w.send(&Response::Output {
                    data: encode(&bytes),
                })
                .await?
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return w.error(&e).await,
        }
    }
    // Every byte was streamed: the result carries none, nor the notices sent first.
    let mut result = follow.into_result();
    result.notices.drain(..told.min(result.notices.len()));
    w.send(&Response::Result(ResultView::of(&result, &[])))
        .await
}

/// Resolves when the client hangs up (nothing is expected from it meanwhile).
async fn hangup(lines: &mut LineReader) {
    while let Ok(Some(_)) = lines.next_line().await {}
}
