//! The pluggable connection layer: a [`Transport`] connects to one host and opens channels.
//!
//! Backends live in their own folders: [`russh`] (native, in-process) and [`openssh`] (the
//! local OpenSSH client through a ControlMaster). A [`Session`](crate::Session) only ever
//! sees the [`Channel`] shape below, so it works unchanged over any backend.

mod key_file;
pub mod openssh;
pub mod russh;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::Result;

/// Which backend carries a session.
///
/// The default is [`Russh`](TransportKind::Russh): in-process, no external program, the
/// fastest connect and round trip. Choose [`OpenSsh`](TransportKind::OpenSsh) when the
/// local OpenSSH client's features matter (FIDO/PKCS#11 keys, GSSAPI, its agent and
/// certificate handling, `Match exec`, `ProxyCommand`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// The native Rust SSH implementation (`russh`), in-process.
    #[default]
    Russh,
    /// The local OpenSSH client (`ssh`), through a ControlMaster it starts.
    OpenSsh,
}

impl TransportKind {
    /// The lower-case name used in listings and configuration: `russh`, `openssh`.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Russh => "russh",
            TransportKind::OpenSsh => "openssh",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TransportKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "russh" | "native" => Ok(TransportKind::Russh),
            "openssh" | "ssh" => Ok(TransportKind::OpenSsh),
            other => Err(format!(
                "unknown transport {other:?}: use \"russh\" or \"openssh\""
            )),
        }
    }
}

/// A pseudo-terminal to attach to a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtyRequest {
    /// `TERM` for the remote side.
    pub term: String,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Whether the TTY echoes input. Sessions turn it off: an echoed command line would be
    /// mistaken for output (GUIDE lesson 4).
    pub echo: bool,
}

impl Default for PtyRequest {
    fn default() -> Self {
        PtyRequest {
            term: "xterm-256color".into(),
            cols: 200,
            rows: 50,
            echo: false,
        }
    }
}

/// What a channel should run.
#[derive(Clone, Debug, Default)]
pub struct ShellRequest {
    /// A PTY, or `None` for plain pipes (stdout and stderr then arrive separately).
    pub pty: Option<PtyRequest>,
    /// `None` starts the user's login shell; `Some(cmd)` runs `cmd` instead (used to start
    /// `/bin/sh` when the login shell is not POSIX).
    pub command: Option<String>,
}

/// Something the remote end of a channel did, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelEvent {
    /// Bytes on stdout (with a PTY: everything the terminal shows).
    Stdout(Bytes),
    /// Bytes on stderr (only without a PTY).
    Stderr(Bytes),
    /// The remote process exited with this status.
    ExitStatus(u32),
    /// The remote process was killed by a signal.
    ExitSignal(String),
    /// The remote side will send no more data.
    Eof,
}

/// The sending half of a channel. Cheap to clone (an `Arc`), usable from many tasks.
#[async_trait]
pub trait ChannelInput: Send + Sync + fmt::Debug {
    /// Writes bytes to the remote process's stdin / terminal.
    async fn write(&self, data: &[u8]) -> Result<()>;
    /// Closes the remote stdin (EOF).
    async fn eof(&self) -> Result<()>;
    /// Tells the remote PTY its new size.
    async fn resize(&self, cols: u16, rows: u16) -> Result<()>;
    /// Closes the channel.
    async fn close(&self) -> Result<()>;
}

/// The receiving half of a channel: what the remote side does, in order.
#[async_trait]
pub trait EventSource: Send {
    /// The next event, or `None` once the channel is closed.
    async fn recv(&mut self) -> Option<ChannelEvent>;
}

/// An open channel: a writer and the stream of what the remote side does.
pub struct Channel {
    /// Where to send input.
    pub input: Arc<dyn ChannelInput>,
    /// What arrives, in order. Read directly by the session (no extra task or queue hop on
    /// the exec round trip).
    pub events: Box<dyn EventSource>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("input", &self.input)
            .finish()
    }
}

/// A byte stream tunnelled through the connection (`direct-tcpip`), e.g. to a jump host's next hop.
pub trait TunnelStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> TunnelStream for T {}

/// One authenticated connection to one host, able to open any number of channels.
///
/// Implementations must be cheap to share (`Arc<dyn Transport>`), must never hold a lock
/// across a network round trip, and must report a dead connection through [`is_closed`].
///
/// [`is_closed`]: Transport::is_closed
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> TransportKind;
    /// `user@host:port`, for messages.
    fn describe(&self) -> String;
    /// Opens an interactive shell channel.
    async fn open_shell(&self, request: ShellRequest) -> Result<Channel>;
    /// Opens a channel running one command (`exec`), optionally with a PTY.
    async fn open_exec(&self, command: &str, pty: Option<PtyRequest>) -> Result<Channel>;
    /// Opens a TCP tunnel from the server to `host:port`.
    async fn open_direct_tcpip(&self, host: &str, port: u16) -> Result<Box<dyn TunnelStream>>;
    /// Opens a channel running the server's subsystem `name` (`"sftp"`), as one byte stream.
    async fn open_subsystem(&self, name: &str) -> Result<Box<dyn TunnelStream>>;
    /// Asks the server to listen on `host:port` (`port` 0: a free one) and to send each
    /// connection it accepts there back through the connection, to be relayed to `relay`
    /// on this machine (`ssh -R`). Returns the port the server listens on.
    async fn forward_remote(&self, host: &str, port: u16, relay: SocketAddr) -> Result<u16>;
    /// Stops a [`forward_remote`](Transport::forward_remote) listening on `host:port`.
    async fn cancel_remote(&self, host: &str, port: u16) -> Result<()>;
    /// Whether the connection is gone.
    fn is_closed(&self) -> bool;
    /// Closes the connection and every channel on it.
    async fn close(&self);
}

/// The result of [`run`]: a command's separate stdout, stderr and exit status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunOutput {
    /// Everything on stdout.
    pub stdout: Vec<u8>,
    /// Everything on stderr.
    pub stderr: Vec<u8>,
    /// Exit status, or `None` if killed by a signal or the channel closed first.
    pub exit_status: Option<u32>,
}

/// Runs `command` on its own exec channel (no PTY) and collects everything. This is the
/// one-shot path; sessions use a persistent shell, which is ~10× faster per command.
pub async fn run(transport: &dyn Transport, command: &str) -> Result<RunOutput> {
    let mut channel = transport.open_exec(command, None).await?;
    let mut out = RunOutput::default();
    while let Some(event) = channel.events.recv().await {
        match event {
            ChannelEvent::Stdout(b) => out.stdout.extend_from_slice(&b),
            ChannelEvent::Stderr(b) => out.stderr.extend_from_slice(&b),
            ChannelEvent::ExitStatus(s) => out.exit_status = Some(s),
            ChannelEvent::ExitSignal(_) | ChannelEvent::Eof => {}
        }
    }
    Ok(out)
}
