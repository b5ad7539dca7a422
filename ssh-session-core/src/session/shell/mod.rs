//! [`ShellSession`]: a [`Session`] over any [`Transport`], speaking the marker protocol.
//!
//! - `machine.rs`: the shell's states and transitions, pure (no I/O); `command.rs`: the
//!   bookkeeping of its commands (output, outcome, stream, history); `terminal.rs`: the
//!   screen and the PTY's line endings; `link.rs`: the connection status; `effects.rs`:
//!   the vocabulary of transitions (why a shell ended, what they return).
//! - `driver.rs`: the I/O around it — channel readers, typing, waiting, committing effects.
//! - `spawn.rs`: opening and priming a shell, or re-attaching a persistent one.
//! - `reconnect.rs`: the reconnection worker and loop.
//! - `stop.rs`: interrupts and the stop ladder. `close.rs`: close, detach, drop.
//! - `follow.rs`: following a command live until it ends or its timeout.
//! - `attach.rs`: a person's terminal on the session; `console.rs`: the bookkeeping of the
//!   people attached and the commands they ran.

mod attach;
mod close;
mod command;
mod console;
mod driver;
mod echo;
mod effects;
mod follow;
mod link;
mod machine;
mod reconnect;
mod spawn;
mod stop;
mod terminal;

use std::sync::Arc;

use async_trait::async_trait;
use rand::RngCore;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::stream::ExecStream;
use super::types::{
    ExecOptions, ExecResult, HistoryEntry, Interrupt, ReadOptions, SessionConfig, SessionInfo,
    StatusEvent, StopReport,
};
use super::Session;
use crate::error::{Error, Result};
use crate::session::types::SessionStatus;
use crate::transport::Transport;
pub use attach::{AttachOptions, Attachment, TerminalEvent};
use driver::Driver;
use effects::Claim;
pub use follow::{Follow, FollowEvent};
use machine::{Machine, Settings};

/// Makes a new connection for a session whose connection was lost (the manager gives each
/// session one that goes through its connection pool).
pub(crate) type Reconnector =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<Arc<dyn Transport>>> + Send + Sync>;

/// Where a session is connected, for listings and messages.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Endpoint {
    /// Remote host.
    pub host: String,
    /// Remote user.
    pub user: String,
    /// Remote port.
    pub port: u16,
}

impl Endpoint {
    /// `user@host:port`.
    pub fn new(host: impl Into<String>, user: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: host.into(),
            user: user.into(),
            port,
        }
    }
}

/// A persistent shell on one channel of a [`Transport`], usually opened through the
/// [`SessionManager`](crate::SessionManager). Cheap to clone: clones share the session.
#[derive(Clone)]
pub struct ShellSession {
    driver: Arc<Driver>,
}

impl std::fmt::Debug for ShellSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellSession")
            .field("name", &self.driver.name)
            .field("transport", &self.driver.transport())
            .finish()
    }
}

impl ShellSession {
    /// Opens a shell channel on `transport` and primes it. The session owns the transport
    /// and closes it on [`close`](Session::close).
    pub(crate) async fn start(
        name: &str,
        endpoint: Endpoint,
        transport: Arc<dyn Transport>,
        config: SessionConfig,
    ) -> Result<Self> {
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        let machine = Machine::new(Settings {
            name: name.to_string(),
            persistent: config.persistent,
            pty: config.pty.as_ref().map(|p| (p.cols, p.rows)),
            max_output: config.max_output_bytes,
            history_limit: config.history_limit,
        });
        let env_file_id = id.iter().map(|b| format!("{b:02x}")).collect();
        let (driver, requests) = Driver::new(
            name.to_string(),
            endpoint,
            config,
            machine,
            transport,
            env_file_id,
        );
        tokio::spawn(reconnect::worker(Arc::downgrade(&driver), requests));
        let started = match driver.peek(|m| m.claim_start()) {
            Claim::Claimed { previous, resume } => {
                spawn::start_claimed(&driver, previous, resume).await
            }
            Claim::InProgress | Claim::Ready => Ok(Vec::new()),
        };
        match started {
            Ok(notices) => driver.apply(|m| {
                m.add_notices(notices);
                m.set_status(SessionStatus::Connected)
            }),
            Err(e) => {
                driver.apply(|m| m.closed());
                driver.transport().close().await;
                driver.abort_readers();
                return Err(e);
            }
        }
        Ok(ShellSession { driver })
    }

    /// Lets the session re-establish its connection by itself when it is lost.
    pub(crate) fn set_reconnector(&self, reconnector: Reconnector) {
        self.driver.set_reconnector(reconnector);
    }

    /// Closes the session but leaves a persistent shell running in its remote tmux
    /// session, to be re-adopted later by opening a session of the same name.
    pub async fn detach(&self) -> Result<()> {
        close::shutdown(&self.driver, false).await
    }

    /// Opens an SFTP channel on the session's connection for its files. Relative paths
    /// start at the shell's working directory as of now. Works on both transports and
    /// while a command runs (it does not use the shell).
    pub async fn files(&self) -> Result<crate::files::RemoteFiles> {
        self.check_open()?;
        let base = self.driver.view(|m| m.cwd());
        crate::files::RemoteFiles::open(self.driver.transport().as_ref(), &self.driver.name, base)
            .await
    }

    /// The host's OS, kernel, CPUs, load, memory, disks and uptime, in one round trip on
    /// an exec channel of the session's connection (not its shell: it works while a
    /// command runs).
    pub async fn host_info(&self) -> Result<crate::session::HostInfo> {
        self.check_open()?;
        crate::session::host_info::probe(self.driver.transport().as_ref(), &self.driver.name).await
    }

    /// The session's connection now (it changes on a reconnect).
    pub(crate) fn transport(&self) -> Arc<dyn Transport> {
        self.driver.transport()
    }

    /// Whether the session was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.driver.view(|m| m.is_closed())
    }

    fn check_open(&self) -> Result<()> {
        if self.driver.view(|m| m.is_closed()) {
            return Err(Error::Closed {
                session: self.driver.name.clone(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Session for ShellSession {
    fn name(&self) -> &str {
        &self.driver.name
    }

    fn info(&self) -> SessionInfo {
        let d = &self.driver;
        let transport = d.transport();
        let lost = transport
            .is_closed()
            .then(|| format!("the connection to {} was lost", transport.describe()));
        let base = SessionInfo::new(&d.name, &d.endpoint, transport.kind());
        d.view(|m| m.info(base, lost))
    }

    async fn exec(&self, command: &str, options: ExecOptions) -> Result<ExecResult> {
        let timeout = options.timeout.unwrap_or(self.driver.config.exec_timeout);
        let (_turn, _) = self.driver.begin(command, &options, false).await?;
        // The deadline counts from when the command was typed, not from when it was queued.
        self.driver
            .wait_result(Instant::now() + timeout, false)
            .await
    }

    async fn exec_stream(&self, command: &str, options: ExecOptions) -> Result<ExecStream> {
        let (turn, begun) = self.driver.begin(command, &options, true).await?;
        let sink = begun.sink.ok_or_else(|| Error::Closed {
            session: self.driver.name.clone(),
        })?;
        Ok(ExecStream::new(sink, turn))
    }

    async fn read_output(&self, options: ReadOptions) -> Result<ExecResult> {
        self.check_open()?;
        self.driver
            .wait_result(Instant::now() + options.wait, options.return_on_output)
            .await
    }

    async fn send_input(&self, input: &[u8]) -> Result<()> {
        let shell = self.driver.peek(|m| m.input_for_running())?;
        shell.write(input).await
    }

    async fn interrupt(&self, how: Interrupt) -> Result<()> {
        stop::interrupt(&self.driver, how).await
    }

    fn screen(&self) -> String {
        self.driver.view(|m| m.screen())
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        resize(&self.driver, cols, rows).await
    }

    fn history(&self) -> Vec<HistoryEntry> {
        self.driver.view(|m| m.history())
    }

    async fn stop_command(&self) -> Result<StopReport> {
        stop::stop_command(&self.driver).await
    }

    fn subscribe_status(&self) -> broadcast::Receiver<StatusEvent> {
        self.driver.subscribe_status()
    }

    async fn reconnect(&self) -> Result<()> {
        reconnect::reconnect_now(&self.driver).await
    }

    async fn close(&self) -> Result<()> {
        close::shutdown(&self.driver, true).await
    }
}

/// Resizes the shell's terminal (and the screen kept of it): for the session and for each
/// attached person alike.
async fn resize(driver: &driver::Driver, cols: u16, rows: u16) -> Result<()> {
    let shell = driver.act(|m| (m.resize(cols, rows), Default::default()));
    match shell {
        Some(shell) => shell.resize(cols, rows).await,
        None => Ok(()),
    }
}
