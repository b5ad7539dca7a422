//! Talking to the daemon: connect (starting it if needed), check versions, send requests.

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::error::CliError;
use crate::protocol::{to_line, Hello, Response};
use crate::runtime::Paths;

/// How long a freshly started daemon may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an outdated daemon may take to leave after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many daemons one command starts at most while none serves the socket.
const MAX_STARTS: u32 = 3;

/// A connection to the daemon, past the hello.
pub(crate) struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    paths: Paths,
    /// The daemon's hello.
    pub hello: Hello,
}

impl Client {
    /// Connects to the running daemon; `None` if there is none (or it is stopping).
    pub(crate) async fn existing(paths: &Paths) -> Result<Option<Client>, CliError> {
        match UnixStream::connect(&paths.socket).await {
            Ok(stream) => match Client::handshake(stream, paths).await? {
                Handshake::Ready(client) => Ok(Some(client)),
                Handshake::Outdated(hello, _) => Err(mismatch(&hello)),
                Handshake::Gone => Ok(None),
            },
            Err(e) if no_daemon(&e) => Ok(None),
            Err(e) => Err(socket_error(paths, e)),
        }
    }

    /// Connects to the daemon, starting one if none runs (or the one running is another
    /// version and holds no sessions). The new daemon inherits this process's environment
    /// and gets its socket and idle timeout on its command line.
    ///
    /// A daemon that is stopping refuses connections (or drops one it had not accepted
    /// yet) well before it releases its lock: a daemon started then waits for the lock,
    /// so `daemon stop && ssh-session connect ...` just works.
    pub(crate) async fn connect_or_start(
        paths: &Paths,
        idle: Duration,
    ) -> Result<Client, CliError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut child: Option<std::process::Child> = None;
        let mut spawned = 0;
        let mut restarted = false;
        loop {
            match UnixStream::connect(&paths.socket).await {
                Ok(stream) => match Client::handshake(stream, paths).await? {
                    Handshake::Ready(client) => return Ok(client),
                    Handshake::Outdated(hello, pid) if hello.sessions == 0 && !restarted => {
                        restarted = true;
                        stop_outdated(paths, &hello, pid).await?;
                        continue;
                    }
                    Handshake::Outdated(hello, _) => return Err(mismatch(&hello)),
                    Handshake::Gone => {}
                },
                // Reset: the daemon closed its listener with us in the backlog (idle exit).
                Err(e) if no_daemon(&e) || gone(&e) => {}
                Err(e) => return Err(socket_error(paths, e)),
            }
            // Nothing serves the socket. Start a daemon unless ours is still coming up. One
            // that exited with success found another daemon serving the socket (started
            // concurrently); if that one is gone too, start another, a bounded number of
            // times.
            let start = match child.as_mut().map(std::process::Child::try_wait) {
                None => true,
                Some(Ok(Some(status))) if !status.success() => {
                    return Err(start_failed(paths, format!("it exited with {status}")));
                }
                Some(Ok(Some(_))) => spawned < MAX_STARTS,
                Some(_) => false,
            };
            if start {
                paths.ensure_private_dir()?;
                child = Some(spawn_daemon(paths, idle)?);
                spawned += 1;
            }
            if Instant::now() >= deadline {
                return Err(start_failed(
                    paths,
                    format!(
                        "{} did not accept connections within {}",
                        paths.socket.display(),
                        crate::output::human(START_TIMEOUT)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn handshake(stream: UnixStream, paths: &Paths) -> Result<Handshake, CliError> {
        let peer = match stream.peer_cred() {
            Ok(peer) => peer,
            Err(e) if gone(&e) => return Ok(Handshake::Gone),
            Err(e) => return Err(socket_error(paths, e)),
        };
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if peer.uid() != uid {
            return Err(CliError::RuntimeDir {
                path: paths.dir.clone(),
                detail: format!(
                    "the daemon on {} runs as uid {}, not as you (uid {uid}); not talking to it",
                    paths.socket.display(),
                    peer.uid()
                ),
            });
        }
        let (read, mut writer) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        // A connection the daemon had not accepted when it stopped listening is reset:
        // that daemon is going away, as if there were none.
        if let Err(e) = writer.write_all(&to_line(&Hello::client())).await {
            return if gone(&e) {
                Ok(Handshake::Gone)
            } else {
                Err(socket_error(paths, e))
            };
        }
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(Handshake::Gone),
            Err(e) if gone(&e) => return Ok(Handshake::Gone),
            Err(e) => return Err(socket_error(paths, e)),
        };
        let client = Client {
            lines,
            writer,
            paths: paths.clone(),
            hello: Hello::client(),
        };
        let response: Response = serde_json::from_str(&line)
            .map_err(|e| client.protocol(format!("malformed hello {line:?}: {e}")))?;
        match response {
            Response::Hello(hello) if hello.compatible_with(&Hello::client()) => {
                Ok(Handshake::Ready(Client { hello, ..client }))
            }
            Response::Hello(hello) => Ok(Handshake::Outdated(hello, peer.pid())),
            Response::Error { error, message } => Err(CliError::Remote {
                kind: error,
                message,
            }),
            other => Err(client.protocol(format!("expected a hello, got {other:?}"))),
        }
    }

    /// Sends one message.
    pub(crate) async fn send<T: serde::Serialize>(&mut self, message: &T) -> Result<(), CliError> {
        let line = to_line(message);
        self.writer
            .write_all(&line)
            .await
            .map_err(|e| self.protocol(format!("cannot send: {e}")))
    }

    /// The next response. An end of connection is an error: every request is answered.
    pub(crate) async fn recv(&mut self) -> Result<Response, CliError> {
        next_response(&mut self.lines, &self.paths).await
    }

    /// The connection in two directions, for `attach`, which reads and writes at once:
    /// what is sent is written by a task of its own, so that reading never waits on a
    /// write. (If both sides waited on a full socket, a large paste echoed back, neither
    /// would ever go on.)
    pub(crate) fn split(self) -> (Replies, Requests) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let mut writer = self.writer;
        let writing = tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if writer.write_all(&line).await.is_err() {
                    break;
                }
            }
        });
        let requests = Requests {
            tx,
            writing,
            paths: self.paths.clone(),
        };
        let replies = Replies {
            lines: self.lines,
            paths: self.paths,
        };
        (replies, requests)
    }

    /// Sends `request` and returns its final response, an error response as `Err`.
    pub(crate) async fn call<T: serde::Serialize>(
        &mut self,
        request: &T,
    ) -> Result<Response, CliError> {
        self.send(request).await?;
        match self.recv().await? {
            Response::Error { error, message } => Err(CliError::Remote {
                kind: error,
                message,
            }),
            other => Ok(other),
        }
    }

    /// An error for an unexpected answer.
    pub(crate) fn protocol(&self, detail: String) -> CliError {
        protocol_error(&self.paths, detail)
    }
}

/// The daemon's answers, on a connection [`Client::split`] made.
pub(crate) struct Replies {
    lines: Lines<BufReader<OwnedReadHalf>>,
    paths: Paths,
}

impl Replies {
    /// The next response (see [`Client::recv`]).
    pub(crate) async fn recv(&mut self) -> Result<Response, CliError> {
        next_response(&mut self.lines, &self.paths).await
    }

    /// A protocol error on this connection.
    pub(crate) fn protocol(&self, detail: String) -> CliError {
        protocol_error(&self.paths, detail)
    }
}

/// Messages for the daemon, on a connection [`Client::split`] made: queued at once, and
/// written in order by the connection's writing task.
pub(crate) struct Requests {
    tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    writing: tokio::task::JoinHandle<()>,
    paths: Paths,
}

impl Requests {
    /// Queues one message; fails once the connection can no longer be written.
    pub(crate) fn send<T: serde::Serialize>(&self, message: &T) -> Result<(), CliError> {
        self.tx.send(to_line(message)).map_err(|_| {
            protocol_error(&self.paths, "cannot send: the connection is closed".into())
        })
    }

    /// Writes what is still queued (keys typed just before leaving), for at most `limit`.
    pub(crate) async fn flush(self, limit: Duration) {
        drop(self.tx);
        let _ = tokio::time::timeout(limit, self.writing).await;
    }
}

async fn next_response(
    lines: &mut Lines<BufReader<OwnedReadHalf>>,
    paths: &Paths,
) -> Result<Response, CliError> {
    match lines.next_line().await {
        Ok(Some(line)) => serde_json::from_str(&line)
            .map_err(|e| protocol_error(paths, format!("malformed response {line:?}: {e}"))),
        Ok(None) => Err(protocol_error(
            paths,
            "the daemon closed the connection".into(),
        )),
        Err(e) => Err(protocol_error(paths, format!("cannot read: {e}"))),
    }
}

fn protocol_error(paths: &Paths, detail: String) -> CliError {
    CliError::Protocol {
        socket: paths.socket.clone(),
        detail,
        log: paths.log.clone(),
    }
}

enum Handshake {
    Ready(Client),
    /// Another version; with the pid of the socket's peer (`SO_PEERCRED`), if known.
    Outdated(Hello, Option<libc::pid_t>),
    /// The daemon closed the connection before its hello: it is stopping.
    Gone,
}

fn gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::UnexpectedEof
    )
}

fn no_daemon(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

fn socket_error(paths: &Paths, e: std::io::Error) -> CliError {
    CliError::RuntimeDir {
        path: paths.dir.clone(),
        detail: format!("cannot connect to {}: {e}", paths.socket.display()),
    }
}

fn mismatch(hello: &Hello) -> CliError {
    let ours = Hello::client();
    CliError::VersionMismatch {
        pid: hello.pid,
        theirs: hello.version.clone(),
        their_protocol: hello.protocol,
        ours: ours.version,
        our_protocol: ours.protocol,
        sessions: hello.sessions,
    }
}

fn start_failed(paths: &Paths, detail: String) -> CliError {
    CliError::DaemonStart {
        detail,
        log: paths.log.clone(),
        tail: paths.log_tail(20),
    }
}

/// Starts `current_exe() --socket S --idle-timeout T daemon` in its own session (setsid),
/// stdin from /dev/null and output appended to the log, so it outlives this process and
/// holds none of its terminal or pipes.
fn spawn_daemon(paths: &Paths, idle: Duration) -> Result<std::process::Child, CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::io("finding this executable", e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&paths.log)
        .map_err(|e| CliError::io(format!("opening the daemon log {}", paths.log.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| CliError::io("duplicating the log descriptor", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--socket")
        .arg(&paths.socket)
        .arg("--idle-timeout")
        .arg(format!("{}ms", idle.as_millis()))
        .arg("daemon")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal and
    // process group so a Ctrl-C on this command never reaches it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| start_failed(paths, format!("cannot run it: {e}")))
}

/// Stops a daemon of another version that holds no session, and waits until it no longer
/// accepts connections. `pid` is the socket peer's, from the kernel: the pid in an old
/// daemon's hello may be missing (0), and kill(0) would signal our own process group.
async fn stop_outdated(
    paths: &Paths,
    hello: &Hello,
    pid: Option<libc::pid_t>,
) -> Result<(), CliError> {
    let Some(pid) = signal_target(pid, std::process::id()) else {
        return Err(CliError::RuntimeDir {
            path: paths.dir.clone(),
            detail: format!(
                "the daemon on {} is version {} (protocol {}), this is {} (protocol {}), and its \
                 pid is unknown ({pid:?}), so it was not restarted; stop it with that \
                 version's `ssh-session daemon stop`",
                paths.socket.display(),
                hello.version,
                hello.protocol,
                crate::protocol::CRATE_VERSION,
                crate::protocol::PROTOCOL_VERSION
            ),
        });
    };
    eprintln!(
        "ssh-session: restarting the daemon (pid {pid}): it is version {} (protocol {}), this is {} (protocol {}), and it holds no sessions",
        hello.version,
        hello.protocol,
        crate::protocol::CRATE_VERSION,
        crate::protocol::PROTOCOL_VERSION
    );
    // SIGTERM rather than a protocol message: it means the same to every version.
    // SAFETY: kill(2) on the socket peer's pid, checked by `signal_target`.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while UnixStream::connect(&paths.socket).await.is_ok() {
        if Instant::now() >= deadline {
            return Err(mismatch(hello));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The pid that may be sent SIGTERM: a real process other than init and ourselves. 0 and
/// negative pids address process groups, 1 is init, and our own would kill the client.
fn signal_target(peer: Option<libc::pid_t>, own: u32) -> Option<libc::pid_t> {
    peer.filter(|&pid| pid > 1 && u32::try_from(pid).ok() != Some(own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_real_process_is_signalled() {
        let own = std::process::id();
        assert_eq!(signal_target(None, own), None);
        assert_eq!(signal_target(Some(0), own), None);
        assert_eq!(signal_target(Some(-1), own), None);
        assert_eq!(signal_target(Some(-4242), own), None);
        assert_eq!(signal_target(Some(1), own), None);
        assert_eq!(signal_target(Some(own as libc::pid_t), own), None);
        assert_eq!(signal_target(Some(4242), 17), Some(4242));
    }
}
