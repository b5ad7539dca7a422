//! Channels through the master: local pipes on one side, a remote process on the other.
//!
//! Three kinds exist, with one shape ([`Input`](super::input::Input) + [`Events`]):
//! - native: the `openssh` crate asks the master over its socket to run a command and hands
//!   it our pipes (no local process; ~2 ms per command);
//! - shells and PTY commands: the same protocol spoken directly (see [`mux`](super::mux)),
//!   since the crate's commands cannot ask for a terminal or a shell;
//! - tunnels: a local `ssh -S CTL -W host:port` client ([`spawn_supervised`]).
//!
//! Either way the master reads and writes our pipes itself, so data never passes through
//! an extra local process.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::transport::{ChannelEvent, EventSource};

/// A channel's readable end (stdout or stderr).
pub(super) type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// A channel's writable end (stdin).
pub(super) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

const READ_CHUNK: usize = 32 << 10;

/// Ends a channel's local process (or native mux session) when asked, and when the last
/// half of the channel is dropped: nobody can use it any more.
pub(super) struct Guard {
    kill: Arc<Notify>,
}

impl Guard {
    pub(super) fn new() -> (Arc<Guard>, Arc<Notify>) {
        let kill = Arc::new(Notify::new());
        (Arc::new(Guard { kill: kill.clone() }), kill)
    }

    pub(super) fn kill(&self) {
        self.kill.notify_one();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill.notify_one();
    }
}

/// Every channel's supervisor holds a [`Lease`]; the transport's `close` flips the shutdown
/// flag, which ends them all, and then waits until every lease is returned.
pub(super) struct Channels {
    shutdown: watch::Sender<bool>,
    tokens: Mutex<Option<mpsc::Sender<()>>>,
    returned: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

/// Permission to run a channel until the transport shuts down.
pub(super) struct Lease {
    shutdown: watch::Receiver<bool>,
    _token: mpsc::Sender<()>,
}

impl Lease {
    pub(super) async fn shut_down(&mut self) {
        // An error means the transport itself is gone: shut down too.
        let _ = self.shutdown.wait_for(|down| *down).await;
    }
}

impl Channels {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(1);
        Channels {
            shutdown: watch::channel(false).0,
            tokens: Mutex::new(Some(tx)),
            returned: tokio::sync::Mutex::new(rx),
        }
    }

    /// A lease, or `None` once the transport is closing.
    pub(super) fn lease(&self) -> Option<Lease> {
        let token = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(Lease {
            shutdown: self.shutdown.subscribe(),
            _token: token,
        })
    }

    /// Ends every channel and waits (at most `grace`) until their processes are reaped.
    pub(super) async fn shut_down(&self, grace: Duration) {
        self.shutdown.send_replace(true);
        drop(self.tokens.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut returned = self.returned.lock().await;
        let _ = tokio::time::timeout(grace, returned.recv()).await;
    }
}

/// An opened channel before it is wrapped: its stdin, its events and its guard.
pub(super) struct Opened {
    pub stdin: Writer,
    pub events: Events,
    pub guard: Arc<Guard>,
}

/// A local `ssh` client process (a tunnel's `ssh -W`) under a supervisor task.
pub(super) struct Spawned {
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
    pub guard: Arc<Guard>,
}

/// Starts `cmd` with piped stdio under a supervisor that reaps it, and kills it when the
/// guard or the lease says so (ending a mux client makes the master close its channel).
pub(super) fn spawn_supervised(mut cmd: Command, lease: Lease) -> io::Result<Spawned> {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (guard, kill) = Guard::new();
    tokio::spawn(async move {
        let mut lease = lease;
        tokio::select! {
            _ = child.wait() => return,
            _ = kill.notified() => {}
            _ = lease.shut_down() => {}
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    });
    let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
        return Err(io::Error::other("ssh started without its pipes"));
    };
    Ok(Spawned {
        stdin,
        stdout,
        stderr,
        guard,
    })
}

/// Runs `command` through the master's socket with the native multiplexing protocol.
pub(super) async fn spawn_native(
    session: Arc<openssh::Session>,
    command: &str,
    lease: Lease,
) -> std::result::Result<Opened, openssh::Error> {
    use openssh::Stdio;
    // Explicit pipes everywhere: the crate's default is to inherit ours, which would hand
    // this program's own stdin/stdout (an MCP stdio stream, say) to the remote command.
    let mut child = session
        .arc_raw_command(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .await?;
    let (stdin, stdout, stderr) = (
        child.stdin().take(),
        child.stdout().take(),
        child.stderr().take(),
    );
    let (guard, kill) = Guard::new();
    let (exit_tx, exit) = oneshot::channel();
    let (drained_tx, drained) = oneshot::channel();
    let wait = async move {
        match child.wait().await {
            Ok(status) => status.code().map(|c| c as u32),
            // The crate reports exit status 127 as an error; it is a status.
            Err(openssh::Error::Remote(e)) if e.kind() == io::ErrorKind::NotFound => Some(127),
            Err(_) => None,
        }
    };
    tokio::spawn(supervise_mux(wait, drained, kill, lease, exit_tx));
    let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
        return Err(openssh::Error::ChildIo(io::Error::other(
            "the mux session has no pipes",
        )));
    };
    Ok(Opened {
        stdin: Box::new(stdin),
        events: Events::new(
            Box::new(stdout),
            Some(Box::new(stderr)),
            Exit {
                drained: drained_tx,
                status: exit,
            },
            guard.clone(),
        ),
        guard,
    })
}

/// The end of a mux session, for its [`Events`]: `drained` is sent once stdout and stderr
/// are at EOF, then `status` brings the exit status.
pub(super) struct Exit {
    pub drained: oneshot::Sender<()>,
    pub status: oneshot::Receiver<Option<u32>>,
}

/// Supervises one mux session: reports its exit status, or ends it when the channel is
/// closed (`kill`) or the transport shuts down (dropping the mux connection makes the
/// master close the channel).
///
/// `wait` (which reads the exit message and then drops the mux connection) is started
/// only once the output is drained: the master sends the exit status as soon as the
/// server does, possibly before it has written the last output to our pipes, and closing
/// the connection then would make it discard that output (seen here: stderr lost in about
/// 1% of short commands).
pub(super) async fn supervise_mux(
    wait: impl std::future::Future<Output = Option<u32>>,
    drained: oneshot::Receiver<()>,
    kill: Arc<Notify>,
    mut lease: Lease,
    exit: oneshot::Sender<Option<u32>>,
) {
    // An error means the events were dropped unread: nobody needs the output any more.
    let stopped = tokio::select! {
        _ = drained => false,
        _ = kill.notified() => true,
        _ = lease.shut_down() => true,
    };
    let code = if stopped {
        None
    } else {
        tokio::select! {
            code = wait => code,
            _ = kill.notified() => None,
            _ = lease.shut_down() => None,
        }
    };
    let _ = exit.send(code);
}

/// The receiving half: stdout and stderr until both end, then the exit status.
pub(super) struct Events {
    stdout: Option<Reader>,
    stderr: Option<Reader>,
    exit: Option<oneshot::Receiver<Option<u32>>>,
    drained: Option<oneshot::Sender<()>>,
    out_buf: Box<[u8]>,
    err_buf: Box<[u8]>,
    _guard: Arc<Guard>,
}

impl Events {
    /// Reads `stdout` (and `stderr`) until EOF, then reports the exit status.
    pub(super) fn new(
        stdout: Reader,
        stderr: Option<Reader>,
        exit: Exit,
        guard: Arc<Guard>,
    ) -> Self {
        let err_len = if stderr.is_some() { READ_CHUNK } else { 0 };
        Events {
            stdout: Some(stdout),
            stderr,
            exit: Some(exit.status),
            drained: Some(exit.drained),
            out_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            err_buf: vec![0; err_len].into_boxed_slice(),
            _guard: guard,
        }
    }
}

#[async_trait]
impl EventSource for Events {
    async fn recv(&mut self) -> Option<ChannelEvent> {
        // Both reads are cancel-safe, so whichever has data first wins.
        while self.stdout.is_some() || self.stderr.is_some() {
            tokio::select! {
                n = read_some(&mut self.stdout, &mut self.out_buf), if self.stdout.is_some() => {
                    match n {
                        Some(n) => return Some(ChannelEvent::Stdout(Bytes::copy_from_slice(&self.out_buf[..n]))),
                        None => self.stdout = None,
                    }
                }
                n = read_some(&mut self.stderr, &mut self.err_buf), if self.stderr.is_some() => {
                    match n {
                        Some(n) => return Some(ChannelEvent::Stderr(Bytes::copy_from_slice(&self.err_buf[..n]))),
                        None => self.stderr = None,
                    }
                }
            }
        }
        if let Some(drained) = self.drained.take() {
            let _ = drained.send(());
        }
        let exit = self.exit.as_mut()?;
        let code = exit.await.ok().flatten();
        self.exit = None;
        code.map(ChannelEvent::ExitStatus)
    }
}

/// Reads once; `None` at EOF or on error (a broken pipe is the end of the stream).
async fn read_some(reader: &mut Option<Reader>, buf: &mut [u8]) -> Option<usize> {
    match reader.as_mut()?.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}
