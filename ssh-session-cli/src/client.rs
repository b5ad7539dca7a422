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

/// A connection to the daemon, past the hello.
pub struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    paths: Paths,
    /// The daemon's hello.
    pub hello: Hello,
}

impl Client {
    /// Connects to the running daemon; `None` if there is none.
    pub async fn existing(paths: &Paths) -> Result<Option<Client>, CliError> {
        match UnixStream::connect(&paths.socket).await {
            Ok(stream) => match Client::handshake(stream, paths).await? {
                Handshake::Ready(client) => Ok(Some(client)),
                Handshake::Outdated(hello) => Err(mismatch(&hello)),
            },
            Err(e) if no_daemon(&e) => Ok(None),
            Err(e) => Err(socket_error(paths, e)),
        }
    }

    /// Connects to the daemon, starting one if none runs (or the one running is another
    /// version and holds no sessions). The new daemon inherits this process's environment
    /// and gets its socket and idle timeout on its command line.
    pub async fn connect_or_start(paths: &Paths, idle: Duration) -> Result<Client, CliError> {
        match UnixStream::connect(&paths.socket).await {
            Ok(stream) => match Client::handshake(stream, paths).await? {
                Handshake::Ready(client) => return Ok(client),
                Handshake::Outdated(hello) if hello.sessions == 0 => {
                    stop_outdated(paths, &hello).await?
                }
                Handshake::Outdated(hello) => return Err(mismatch(&hello)),
            },
            Err(e) if no_daemon(&e) => {}
            Err(e) => return Err(socket_error(paths, e)),
        }
        paths.ensure_private_dir()?;
        let mut child = spawn_daemon(paths, idle)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(stream) = UnixStream::connect(&paths.socket).await {
                return match Client::handshake(stream, paths).await? {
                    Handshake::Ready(client) => Ok(client),
                    Handshake::Outdated(hello) => Err(mismatch(&hello)),
                };
            }
            // A daemon that exited with success found another one owning the socket
            // (started concurrently); keep waiting for that one.
            if let Ok(Some(status)) = child.try_wait() {
                if !status.success() {
                    return Err(start_failed(paths, format!("it exited with {status}")));
                }
            }
            if Instant::now() >= deadline {
                return Err(start_failed(
                    paths,
                    format!(
                        "{} did not accept connections within {START_TIMEOUT:?}",
                        paths.socket.display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn handshake(stream: UnixStream, paths: &Paths) -> Result<Handshake, CliError> {
        let peer = stream.peer_cred().map_err(|e| socket_error(paths, e))?;
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
        let (read, writer) = stream.into_split();
        let mut client = Client {
            lines: BufReader::new(read).lines(),
            writer,
            paths: paths.clone(),
            hello: Hello::client(),
        };
        client.send(&Hello::client()).await?;
        match client.recv().await? {
            Response::Hello(hello) if hello.compatible_with(&Hello::client()) => {
                client.hello = hello;
                Ok(Handshake::Ready(client))
            }
            Response::Hello(hello) => Ok(Handshake::Outdated(hello)),
            Response::Error { error, message } => Err(CliError::Remote {
                kind: error,
                message,
            }),
            other => Err(client.protocol(format!("expected a hello, got {other:?}"))),
        }
    }

    /// Sends one message.
    pub async fn send<T: serde::Serialize>(&mut self, message: &T) -> Result<(), CliError> {
        let line = to_line(message);
        self.writer
            .write_all(&line)
            .await
            .map_err(|e| self.protocol(format!("cannot send: {e}")))
    }

    /// The next response. An end of connection is an error: every request is answered.
    pub async fn recv(&mut self) -> Result<Response, CliError> {
        match self.lines.next_line().await {
            Ok(Some(line)) => serde_json::from_str(&line)
                .map_err(|e| self.protocol(format!("malformed response {line:?}: {e}"))),
            Ok(None) => Err(self.protocol("the daemon closed the connection".into())),
            Err(e) => Err(self.protocol(format!("cannot read: {e}"))),
        }
    }

    /// Sends `request` and returns its final response, an error response as `Err`.
    pub async fn call<T: serde::Serialize>(&mut self, request: &T) -> Result<Response, CliError> {
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
    pub fn protocol(&self, detail: String) -> CliError {
        CliError::Protocol {
            socket: self.paths.socket.clone(),
            detail,
            log: self.paths.log.clone(),
        }
    }
}

enum Handshake {
    Ready(Client),
    Outdated(Hello),
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

/// Stops a daemon of another version that holds no session, and waits until it is gone.
async fn stop_outdated(paths: &Paths, hello: &Hello) -> Result<(), CliError> {
    eprintln!(
        "ssh-session: restarting the daemon (pid {}): it is version {} (protocol {}), this is {} (protocol {}), and it holds no sessions",
        hello.pid,
        hello.version,
        hello.protocol,
        crate::protocol::CRATE_VERSION,
        crate::protocol::PROTOCOL_VERSION
    );
    // SIGTERM rather than a protocol message: it means the same to every version.
    // SAFETY: kill(2) on the pid the daemon itself reported.
    unsafe {
        libc::kill(hello.pid as libc::pid_t, libc::SIGTERM);
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
