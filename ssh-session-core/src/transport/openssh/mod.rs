//! The OpenSSH backend: the local `ssh` client, through one ControlMaster per connection.
//!
//! Choose it when OpenSSH itself should do the connecting: `~/.ssh/config` aliases and
//! `Match` blocks, `ProxyCommand`, FIDO/PKCS#11 keys, certificates, GSSAPI, its agent.
//! The host is passed to `ssh` as given, so an alias resolves exactly as on the command
//! line.
//!
//! How channels travel (no data ever passes through an extra local process: the master
//! reads and writes the descriptors we hand it):
//! - commands without a PTY ([`open_exec`](Transport::open_exec), so also
//!   [`run`](crate::transport::run)) use the master's native multiplexing protocol through
//!   the `openssh` crate: no local process, ~2 ms per command;
//! - shells and PTY commands speak the same protocol directly, because the crate cannot
//!   ask for a terminal or agent forwarding. The request is a real `shell` request, so the
//!   server runs the account's login shell exactly as for `ssh host`;
//! - tunnels run `ssh -S CTL -W host:port`.
//!
//! PTYs: the master builds the remote PTY from the client's stdin (modes by `tcgetattr`,
//! size by `TIOCGWINSZ`), as for an interactive `ssh`. We give it the slave of a local
//! pseudo-terminal set to the requested size and echo, then switch that to raw once the
//! session is open so our bytes pass unchanged. So the remote PTY starts right (Ctrl-C,
//! line editing, echo off, size), `TERM` is sent in the request, and
//! [`resize`](crate::transport::ChannelInput::resize) sets the local size and sends
//! SIGWINCH to the master, which forwards a `window-change` — the same path `ssh -S`
//! clients use. Throughput through a PTY is lower than through an exec channel (OpenSSH
//! measured ~45 vs ~500 MB/s here); keep bulk transfers off the PTY. TCP_NODELAY and
//! keepalives are OpenSSH's job (it sets TCP_NODELAY for interactive sessions).
//!
//! Limits: ssh runs in batch mode, so it never prompts: passwords and passphrases are not
//! supported (use keys, or load encrypted keys into ssh-agent); SSH `signal` requests
//! cannot be sent through a multiplexed channel.
//!
//! ```no_run
//! use ssh_session_core::transport::{openssh::OpenSshTransport, run};
//! use ssh_session_core::ConnectOptions;
//!
//! # async fn demo() -> ssh_session_core::Result<()> {
//! // "build" may be a ~/.ssh/config alias: OpenSSH resolves it.
//! let transport = OpenSshTransport::connect(&ConnectOptions::new("build", "deploy")).await?;
//! let out = run(&transport, "uname -s").await?;
//! assert_eq!(out.exit_status, Some(0));
//! # Ok(())
//! # }
//! ```

mod args;
mod channel;
mod errors;
mod input;
mod master;
mod mux;
mod subsystem;
mod tunnel;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tempfile::TempDir;

use super::{
    Channel, ChannelInput, PtyRequest, ShellRequest, Transport, TransportKind, TunnelStream,
};
use crate::error::{Error, Result};
use crate::options::ConnectOptions;
use crate::transport::key_file;
use channel::{Channels, Opened};
use input::Input;
use master::{Master, Program};

/// How long `close` waits for channel processes to be reaped.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// A connection made by the local OpenSSH client: a ControlMaster we started and own.
///
/// Dropping it (or [`close`](Transport::close)) stops the master, which ends every channel.
pub struct OpenSshTransport {
    opts: ConnectOptions,
    ctl: PathBuf,
    /// The private directory of the control socket; removed on close or drop.
    dir: Mutex<Option<TempDir>>,
    master: Master,
    session: Arc<openssh::Session>,
    channels: Channels,
    /// The relay of each remote forward, needed again to cancel it.
    forwards: Mutex<std::collections::HashMap<u16, SocketAddr>>,
}

impl std::fmt::Debug for OpenSshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSshTransport")
            .field("target", &self.describe())
            .field("control_path", &self.ctl)
            .finish()
    }
}

impl OpenSshTransport {
    /// Starts a ControlMaster for `opts` and waits until it is authenticated and serving,
    /// all within `opts.connect_timeout`. Failures are read from ssh's stderr and reported
    /// as the matching [`Error`] (unknown or changed host key, authentication, connection,
    /// timeout, configuration) with ssh's own message included.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self> {
        match Self::connect_once(opts).await {
            Err(e) if !opts.proxy_jump.is_empty() => Err(Self::blame_hop(opts, e).await),
            other => other,
        }
    }

    /// `ssh -J` does not say which hop failed. Only after a failure, connect to each hop in
    /// turn (through the hops before it) and name the first one that fails, with its own
    /// error; if every hop is fine, the target itself is at fault.
    async fn blame_hop(opts: &ConnectOptions, target_error: Error) -> Error {
        let total = opts.proxy_jump.len();
        for (i, hop) in opts.proxy_jump.iter().enumerate() {
            let mut hop_opts = opts.clone();
            hop_opts.host = hop.host.clone();
            hop_opts.port = hop.port.unwrap_or(22);
            hop_opts.user = hop.user.clone().unwrap_or_else(crate::options::local_user);
            hop_opts.proxy_jump = opts.proxy_jump[..i].to_vec();
            match Box::pin(Self::connect_once(&hop_opts)).await {
                Ok(transport) => transport.close().await,
                Err(source) => {
                    return Error::JumpHost {
                        hop: hop.to_string(),
                        index: i + 1,
                        total,
                        source: Box::new(source),
                    }
                }
            }
        }
        target_error
    }

    async fn connect_once(opts: &ConnectOptions) -> Result<Self> {
        // One deadline for everything a connect does, checking key files included.
        let deadline = tokio::time::Instant::now() + opts.connect_timeout;
        // ssh would read a bad key file as blindly as anyone: `/dev/zero` to the end, a
        // FIFO forever, then report a timeout ("host may be down"). Refuse such a path
        // here, naming it, before ssh is started.
        match tokio::time::timeout_at(deadline, key_file::check_all(&opts.identities)).await {
            Ok(checked) => checked?,
            Err(_) => return Err(Self::timed_out(opts)),
        }
        let dir = args::control_dir().map_err(|e| Error::Ssh {
            host: opts.host.clone(),
            port: opts.port,
            detail: format!("cannot create a directory for the control socket: {e}"),
            source: Some(Box::new(e)),
        })?;
        let ctl = dir.path().join("m");
        let jump_config = if opts.proxy_jump.is_empty() {
            None
        } else {
            let path = dir.path().join("config");
            std::fs::write(&path, args::jump_config(opts)).map_err(|e| Error::Ssh {
                host: opts.host.clone(),
                port: opts.port,
                detail: format!("cannot write {}: {e}", path.display()),
                source: Some(Box::new(e)),
            })?;
            Some(path)
        };
        let program = Program {
            path: &opts.ssh_program,
            args: args::master(opts, &ctl, jump_config.as_deref()),
            agent_socket: opts.agent_socket.as_deref(),
            use_agent: opts.use_agent,
        };
        let master = Master::spawn(&program, &ctl).map_err(|e| Error::SshProgram {
            program: opts.ssh_program.clone(),
            detail: e.to_string(),
            source: Some(Box::new(e)),
        })?;
        match tokio::time::timeout_at(deadline, master.ready()).await {
            Ok(true) => {}
            Ok(false) => {
                master.stop().await;
                return Err(errors::classify(opts, &master.log()));
            }
            Err(_) => {
                master.stop().await;
                let log = master.log();
                // ssh may have timed out itself, or failed in a way worth reporting.
                return Err(match errors::classify(opts, &log) {
                    Error::Ssh { .. } => Self::timed_out(opts),
                    other => other,
                });
            }
        }
        // The master is ours; the crate only speaks the mux protocol to its socket (a
        // resumed session neither owns nor stops the master).
        let session = Arc::new(openssh::Session::resume_mux(
            ctl.clone().into_boxed_path(),
            None,
        ));
        let transport = OpenSshTransport {
            opts: opts.clone(),
            ctl,
            dir: Mutex::new(Some(dir)),
            master,
            session,
            channels: Channels::new(),
            forwards: Mutex::default(),
        };
        if let Err(e) = transport.session.check().await {
            let detail = format!(
                "the ControlMaster does not answer: {}; ssh said: {}",
                mux_detail(&e),
                errors::clean(&transport.master.log())
            );
            transport.close().await;
            return Err(transport.ssh_error(detail));
        }
        Ok(transport)
    }

    fn timed_out(opts: &ConnectOptions) -> Error {
        Error::ConnectTimeout {
            host: opts.host.clone(),
            port: opts.port,
            timeout: opts.connect_timeout,
        }
    }

    /// The control socket's path (`ssh -S PATH host cmd` reuses this connection).
    pub fn control_path(&self) -> &std::path::Path {
        &self.ctl
    }

    fn ssh_error(&self, detail: String) -> Error {
        Error::Ssh {
            host: self.opts.host.clone(),
            port: self.opts.port,
            detail,
            source: None,
        }
    }

    /// The error for a channel that could not be opened: the lost connection if that is
    /// why, else the refusal.
    fn refused(&self, what: &str, detail: impl std::fmt::Display) -> Error {
        if self.is_closed() {
            return self.ssh_error(format!(
                "the connection is closed (cannot open {what}); ssh said: {}",
                errors::clean(&self.master.log())
            ));
        }
        Error::ChannelRefused {
            host: self.opts.host.clone(),
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    fn lease(&self, what: &str) -> Result<channel::Lease> {
        match self.channels.lease() {
            Some(lease) if !self.is_closed() => Ok(lease),
            _ => Err(self.refused(what, "the connection is closed")),
        }
    }

    /// A local `ssh -S CTL` client (tunnels only).
    fn client(&self, extra: &[&str]) -> tokio::process::Command {
        let mut args = args::client(&self.opts, &self.ctl);
        args.extend(extra.iter().map(Into::into));
        Program {
            path: &self.opts.ssh_program,
            args,
            agent_socket: self.opts.agent_socket.as_deref(),
            use_agent: self.opts.use_agent,
        }
        .command()
    }

    /// A session channel through our own mux client: a login shell or a command, with or
    /// without a PTY, asking for agent forwarding when the options say so.
    async fn open_session(
        &self,
        pty: Option<&PtyRequest>,
        command: Option<&str>,
    ) -> Result<Channel> {
        let what = match (pty.is_some(), command.is_some()) {
            (_, false) => "a shell",
            (true, true) => "a command on a PTY",
            (false, true) => "an exec channel",
        };
        let lease = self.lease(what)?;
        let (pid, gone) = self.master.handle();
        let (opened, window) = mux::open(
            &self.ctl,
            mux::MasterRef { pid, gone },
            pty,
            command,
            self.opts.forward_agent,
            lease,
        )
        .await
        .map_err(|e| self.refused(what, e))?;
        Ok(self.channel(opened, window))
    }

    fn channel(&self, opened: Opened, window: Option<mux::Window>) -> Channel {
        let input: Arc<dyn ChannelInput> = Arc::new(Input::new(
            opened.stdin,
            opened.guard,
            window,
            self.opts.host.clone(),
            self.opts.port,
        ));
        Channel {
            input,
            events: Box::new(opened.events),
        }
    }
}

/// An `openssh` error with its causes, which hold the useful part.
/// Random ports tried for a remote forward on port 0.
const REMOTE_PORT_TRIES: usize = 8;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn mux_detail(e: &openssh::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

#[async_trait]
impl Transport for OpenSshTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::OpenSsh
    }

    fn describe(&self) -> String {
        format!("{}@{}:{}", self.opts.user, self.opts.host, self.opts.port)
    }

    /// Speaks the multiplexing protocol itself (see the module docs): a real `shell`
    /// request (or `exec` with a command), with a PTY when asked.
    async fn open_shell(&self, request: ShellRequest) -> Result<Channel> {
        self.open_session(request.pty.as_ref(), request.command.as_deref())
            .await
    }

    /// Without a PTY: the `openssh` crate's native-mux command (no local process). With a
    /// PTY: as [`open_shell`](Transport::open_shell).
    async fn open_exec(&self, command: &str, pty: Option<PtyRequest>) -> Result<Channel> {
        if let Some(pty) = pty {
            return self.open_session(Some(&pty), Some(command)).await;
        }
        let what = "an exec channel";
        let lease = self.lease(what)?;
        let opened = channel::spawn_native(self.session.clone(), command, lease)
            .await
            .map_err(|e| self.refused(what, mux_detail(&e)))?;
        Ok(self.channel(opened, None))
    }

    async fn open_direct_tcpip(&self, host: &str, port: u16) -> Result<Box<dyn TunnelStream>> {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let what = format!("a tunnel to {target}");
        let lease = self.lease(&what)?;
        let cmd = self.client(&["-W", &target, "--", &self.opts.host]);
        let spawned = channel::spawn_supervised(cmd, lease).map_err(|e| Error::SshProgram {
            program: self.opts.ssh_program.clone(),
            detail: e.to_string(),
            source: Some(Box::new(e)),
        })?;
        Ok(Box::new(tunnel::Tunnel::new(
            spawned,
            self.master.failures(),
            target,
        )))
    }

    async fn open_subsystem(&self, name: &str) -> Result<Box<dyn TunnelStream>> {
        let what = format!("the {name} subsystem");
        let lease = self.lease(&what)?;
        let stream = subsystem::open(self.session.clone(), name, lease)
            .await
            .map_err(|e| self.refused(&what, mux_detail(&e)))?;
        Ok(Box::new(stream))
    }

    /// Through the master's own remote forwarding (it connects to `relay` itself). The
    /// mux protocol as the `openssh` crate speaks it does not return a port the server
    /// chose, so for port 0 a few random high ports are tried until the server takes one.
    async fn forward_remote(&self, host: &str, port: u16, relay: SocketAddr) -> Result<u16> {
        let candidates: Vec<u16> = if port != 0 {
            vec![port]
        } else {
            (0..REMOTE_PORT_TRIES)
                .map(|_| rand::random_range(20_000..60_000))
                .collect()
        };
        let mut last = String::new();
        for p in candidates {
            let listen = openssh::Socket::TcpSocket {
                host: host.to_string().into(),
                port: p,
            };
            match self
                .session
                .request_port_forward(openssh::ForwardType::Remote, listen, relay)
                .await
            {
                Ok(()) => {
                    lock(&self.forwards).insert(p, relay);
                    return Ok(p);
                }
                Err(e) => last = mux_detail(&e),
            }
        }
        Err(self.refused(&format!("a remote forward from {host}:{port}"), last))
    }

    async fn cancel_remote(&self, host: &str, port: u16) -> Result<()> {
        let Some(relay) = lock(&self.forwards).remove(&port) else {
            return Ok(());
        };
        let listen = openssh::Socket::TcpSocket {
            host: host.to_string().into(),
            port,
        };
        self.session
            .close_port_forward(openssh::ForwardType::Remote, listen, relay)
            .await
            .map_err(|e| {
                self.refused(
                    &format!("closing the remote forward from {host}:{port}"),
                    mux_detail(&e),
                )
            })
    }

    /// A flag set when the master process exits (its supervisor waits on it): no I/O.
    fn is_closed(&self) -> bool {
        self.master.is_gone()
    }

    /// Stops the master (which ends every channel on the server), kills and reaps the
    /// local `ssh` clients, and removes the control directory.
    async fn close(&self) {
        self.master.stop().await;
        self.channels.shut_down(CLOSE_GRACE).await;
        let dir = self.dir.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(dir) = dir {
            let _ = dir.close();
        }
    }
}
