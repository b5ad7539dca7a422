//! The native backend: an in-process SSH client built on `russh`.
//!
//! One [`RusshTransport`] is one authenticated connection; every channel opened on it is
//! multiplexed over the same TCP stream with TCP_NODELAY on (GUIDE lesson 1: without it a
//! round trip waits ~40 ms for Nagle).

mod auth;
mod forward;
mod host_keys;
mod jump;
mod socket;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use russh::client::{self, Handle, Msg};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Pty};

use super::{
    Channel, ChannelEvent, ChannelInput, EventSource, PtyRequest, ShellRequest, Transport,
    TransportKind, TunnelStream,
};
use crate::error::{Error, Result};
use crate::options::ConnectOptions;
use crate::transport::key_file;
use auth::ssh_error;
use host_keys::ClientHandler;

/// A connection made with the native `russh` client, directly or through a chain of jump
/// hosts (`ProxyJump`), each hop verified and authenticated on its own.
pub struct RusshTransport {
    opts: ConnectOptions,
    handle: Handle<ClientHandler>,
    /// The jump hosts the connection runs through, first to last. They must stay alive:
    /// the target's byte stream is a channel on the last one.
    hops: Vec<Handle<ClientHandler>>,
    closed: AtomicBool,
    /// The remote ports the server listens on for us, and their local relays.
    forwards: forward::Forwards,
}

impl std::fmt::Debug for RusshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RusshTransport")
            .field("target", &self.describe())
            .finish()
    }
}

impl RusshTransport {
    /// Connects, verifies the host key and authenticates, all within `opts.connect_timeout`.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self> {
        let timeout = opts.connect_timeout;
        match tokio::time::timeout(timeout, Self::connect_inner(opts)).await {
            Ok(result) => result,
            Err(_) => Err(Error::ConnectTimeout {
                host: opts.host.clone(),
                port: opts.port,
                timeout,
            }),
        }
    }

    async fn connect_inner(opts: &ConnectOptions) -> Result<Self> {
        // Inside the connect deadline, and before any network traffic: a path that is
        // not a key file is the caller's mistake, reported the same way as by OpenSSH.
        key_file::check_all(&opts.identities).await?;
        let total = opts.proxy_jump.len();
        let mut hops: Vec<Handle<ClientHandler>> = Vec::with_capacity(total);
        for (i, hop) in opts.proxy_jump.iter().enumerate() {
            let hop_failed = |source: Error| Error::JumpHost {
                hop: hop.to_string(),
                index: i + 1,
                total,
                source: Box::new(source),
            };
            let hop_opts = jump::hop_options(opts, hop).await.map_err(hop_failed)?;
            let handle = match hops.last() {
                None => {
                    handshake(
                        tcp(&hop_opts).await.map_err(hop_failed)?,
                        &hop_opts,
                        Default::default(),
                    )
                    .await
                }
                Some(previous) => {
                    let tunnel = jump::tunnel(previous, &hop_opts)
                        .await
                        .map_err(hop_failed)?;
                    handshake(tunnel, &hop_opts, Default::default()).await
                }
            }
            .map_err(hop_failed)?;
            hops.push(handle);
        }
        let forwards = forward::Forwards::default();
        let handle = match hops.last() {
            None => handshake(tcp(opts).await?, opts, forwards.clone()).await?,
            Some(last) => {
                let tunnel = jump::tunnel(last, opts)
                    .await
                    .map_err(|source| Error::JumpHost {
                        hop: opts.proxy_jump[total - 1].to_string(),
                        index: total,
                        total,
                        source: Box::new(source),
                    })?;
                handshake(tunnel, opts, forwards.clone()).await?
            }
        };
        Ok(RusshTransport {
            opts: opts.clone(),
            handle,
            hops,
            closed: AtomicBool::new(false),
            forwards,
        })
    }

    async fn open_session_channel(&self) -> Result<(ChannelReadHalf, ChannelWriteHalf<Msg>)> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.refused("a session channel", e))?;
        Ok(channel.split())
    }

    fn refused(&self, what: &str, e: impl std::fmt::Display) -> Error {
        if self.is_closed() {
            return Error::Ssh {
                host: self.opts.host.clone(),
                port: self.opts.port,
                detail: format!("connection lost while opening {what}: {e}"),
                source: None,
            };
        }
        Error::ChannelRefused {
            host: self.opts.host.clone(),
            what: what.into(),
            detail: e.to_string(),
        }
    }

    async fn request_pty(&self, write: &ChannelWriteHalf<Msg>, pty: &PtyRequest) -> Result<()> {
        let echo = u32::from(pty.echo);
        write
            .request_pty(
                true,
                &pty.term,
                pty.cols.into(),
                pty.rows.into(),
                0,
                0,
                &[(Pty::ECHO, echo), (Pty::ECHOE, echo), (Pty::ECHOK, echo)],
            )
            .await
            .map_err(|e| self.refused("a PTY", e))
    }
}

/// Opens the TCP connection to `opts.host:opts.port`.
async fn tcp(opts: &ConnectOptions) -> Result<socket::QuickAckStream> {
    let tcp = tokio::net::TcpStream::connect((opts.host.as_str(), opts.port))
        .await
        .map_err(|source| Error::Connect {
            host: opts.host.clone(),
            port: opts.port,
            source,
        })?;
    Ok(socket::QuickAckStream::new(tcp))
}

/// Runs the SSH handshake over `stream`: key exchange, host key check, authentication.
async fn handshake<S>(
    stream: S,
    opts: &ConnectOptions,
    forwards: forward::Forwards,
) -> Result<Handle<ClientHandler>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let config = Arc::new(client::Config {
        nodelay: true,
        // 8 MiB in flight per channel (russh's default is 2 MiB): SFTP keeps 32 requests
        // of up to 252 KiB outstanding, and a smaller window stalls the server's replies.
        window_size: 8 << 20,
        preferred: russh::Preferred {
            // AES-GCM first: with AES-NI (every x86 CPU of the last decade, and ARMv8's
            // crypto extensions) it costs both ends a fraction of ChaCha20-Poly1305,
            // which bulk transfers feel (see the transfer bench). ChaCha20 stays second
            // for CPUs without.
            cipher: std::borrow::Cow::Borrowed(&[
                russh::cipher::AES_256_GCM,
                russh::cipher::AES_128_GCM,
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_256_CTR,
                russh::cipher::AES_192_CTR,
                russh::cipher::AES_128_CTR,
            ]),
            ..russh::Preferred::DEFAULT
        },
        // The health probe: russh sends a keepalive after this much silence and drops the
        // connection after `keepalive_max` unanswered ones, which ends every channel and
        // so starts the sessions' reconnection.
        keepalive_interval: opts.server_alive_interval,
        // russh gives up when *more than* keepalive_max probes went unanswered, i.e. after
        // (max + 1) intervals; OpenSSH's ServerAliveCountMax means interval × count. Map
        // it so a stalled link is declared dead at the same moment (0 would disable it).
        keepalive_max: (opts.server_alive_count_max as usize)
            .saturating_sub(1)
            .max(1),
        ..Default::default()
    });
    let refusal = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        host: opts.host.clone(),
        port: opts.port,
        known_hosts: opts.known_hosts.clone(),
        policy: opts.host_key_policy,
        refusal: refusal.clone(),
        forwards,
    };
    let mut handle = client::connect_stream(config, stream, handler)
        .await
        .map_err(|e| {
            refusal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| ssh_error(opts, e))
        })?;
    auth::authenticate(&mut handle, opts).await?;
    Ok(handle)
}

/// Waits for the replies to `n` want-reply requests, keeping anything else that arrives
/// meanwhile (data can race ahead of a reply) for the event stream.
async fn await_replies(
    read: &mut ChannelReadHalf,
    n: usize,
    early: &mut VecDeque<ChannelMsg>,
) -> std::result::Result<(), String> {
    let mut got = 0;
    while got < n {
        match read.wait().await {
            Some(ChannelMsg::Success) => got += 1,
            Some(ChannelMsg::Failure) => return Err("request failed".into()),
            Some(ChannelMsg::Close) | None => return Err("channel closed".into()),
            Some(other) => early.push_back(other),
        }
    }
    Ok(())
}

#[async_trait]
impl Transport for RusshTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Russh
    }

    fn describe(&self) -> String {
        format!("{}@{}:{}", self.opts.user, self.opts.host, self.opts.port)
    }

    async fn open_shell(&self, request: ShellRequest) -> Result<Channel> {
        let (mut read, write) = self.open_session_channel().await?;
        let mut replies = 1;
        if let Some(pty) = &request.pty {
            self.request_pty(&write, pty).await?;
            replies += 1;
        }
        let what = match &request.command {
            Some(cmd) => {
                write
                    .exec(true, cmd.as_bytes())
                    .await
                    .map_err(|e| self.refused("exec", e))?;
                "a command"
            }
            None => {
                write
                    .request_shell(true)
                    .await
                    .map_err(|e| self.refused("a shell", e))?;
                "a shell"
            }
        };
        let mut early = VecDeque::new();
        await_replies(&mut read, replies, &mut early)
            .await
            .map_err(|e| self.refused(what, e))?;
        Ok(channel(&self.opts, read, write, early))
    }

    async fn open_exec(&self, command: &str, pty: Option<PtyRequest>) -> Result<Channel> {
        self.open_shell(ShellRequest {
            pty,
            command: Some(command.to_string()),
        })
        .await
    }

    async fn open_direct_tcpip(&self, host: &str, port: u16) -> Result<Box<dyn TunnelStream>> {
        let channel = self
            .handle
            .channel_open_direct_tcpip(host, port.into(), "127.0.0.1", 0)
            .await
            .map_err(|e| self.refused(&format!("a tunnel to {host}:{port}"), e))?;
        Ok(Box::new(channel.into_stream()))
    }

    async fn open_subsystem(&self, name: &str) -> Result<Box<dyn TunnelStream>> {
        let what = format!("the {name} subsystem");
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.refused("a session channel", e))?;
        channel
            .request_subsystem(true, name)
            .await
            .map_err(|e| self.refused(&what, e))?;
        // A subsystem speaks only once spoken to, so nothing but the reply can come first.
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) => {
                    return Err(self.refused(&what, "the server has no such subsystem"))
                }
                Some(ChannelMsg::Close) | None => {
                    return Err(self.refused(&what, "the channel closed"))
                }
                Some(_) => {}
            }
        }
        Ok(Box::new(channel.into_stream()))
    }

    async fn forward_remote(&self, host: &str, port: u16, relay: SocketAddr) -> Result<u16> {
        let what = format!("a remote forward from {host}:{port}");
        // Registered before asking: the first connection may arrive before the reply.
        let added = port != 0 && self.forwards.try_add(port.into(), relay);
        let bound = match self.handle.tcpip_forward(host, port.into()).await {
            Ok(bound) => bound,
            Err(e) => {
                if added {
                    self.forwards.remove(port.into());
                }
                return Err(self.refused(&what, e));
            }
        };
        // A server answers 0 when it listens on the port asked for.
        let bound = if port != 0 { u32::from(port) } else { bound };
        let bound = u16::try_from(bound)
            .map_err(|_| self.refused(&what, format!("the server reported port {bound}")))?;
        self.forwards.add(bound.into(), relay);
        Ok(bound)
    }

    async fn cancel_remote(&self, host: &str, port: u16) -> Result<()> {
        self.forwards.remove(port.into());
        self.handle
            .cancel_tcpip_forward(host, port.into())
            .await
            .map_err(|e| self.refused(&format!("closing the remote forward from {host}:{port}"), e))
    }

    fn is_closed(&self) -> bool {
        // A dead hop kills the tunnel through it, even before the target notices.
        self.closed.load(Ordering::Relaxed)
            || self.handle.is_closed()
            || self.hops.iter().any(|h| h.is_closed())
    }

    async fn close(&self) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            for handle in std::iter::once(&self.handle).chain(self.hops.iter().rev()) {
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "closed", "en")
                    .await;
            }
        }
    }
}

fn channel(
    opts: &ConnectOptions,
    read: ChannelReadHalf,
    write: ChannelWriteHalf<Msg>,
    early: VecDeque<ChannelMsg>,
) -> Channel {
    Channel {
        input: Arc::new(RusshInput {
            write,
            host: opts.host.clone(),
            port: opts.port,
        }),
        events: Box::new(RusshEvents { read, early }),
    }
}

#[derive(Debug)]
struct RusshInput {
    write: ChannelWriteHalf<Msg>,
    host: String,
    port: u16,
}

impl RusshInput {
    fn gone(&self, e: russh::Error) -> Error {
        Error::Ssh {
            host: self.host.clone(),
            port: self.port,
            detail: format!("the channel is closed ({e})"),
            source: Some(Box::new(e)),
        }
    }
}

#[async_trait]
impl ChannelInput for RusshInput {
    async fn write(&self, data: &[u8]) -> Result<()> {
        self.write.data(data).await.map_err(|e| self.gone(e))
    }

    async fn eof(&self) -> Result<()> {
        self.write.eof().await.map_err(|e| self.gone(e))
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.write
            .window_change(cols.into(), rows.into(), 0, 0)
            .await
            .map_err(|e| self.gone(e))
    }

    async fn close(&self) -> Result<()> {
        self.write.close().await.map_err(|e| self.gone(e))
    }
}

struct RusshEvents {
    read: ChannelReadHalf,
    early: VecDeque<ChannelMsg>,
}

#[async_trait]
impl EventSource for RusshEvents {
    async fn recv(&mut self) -> Option<ChannelEvent> {
        loop {
            let msg = match self.early.pop_front() {
                Some(msg) => msg,
                None => self.read.wait().await?,
            };
            return Some(match msg {
                ChannelMsg::Data { data } => ChannelEvent::Stdout(data),
                ChannelMsg::ExtendedData { data, .. } => ChannelEvent::Stderr(data),
                ChannelMsg::ExitStatus { exit_status } => ChannelEvent::ExitStatus(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    ChannelEvent::ExitSignal(format!("{signal_name:?}"))
                }
                ChannelMsg::Eof => ChannelEvent::Eof,
                ChannelMsg::Close => return None,
                _ => continue,
            });
        }
    }
}
