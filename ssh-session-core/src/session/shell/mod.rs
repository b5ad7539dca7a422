//! [`ShellSession`]: a [`Session`] over any [`Transport`], speaking the marker protocol.

mod close;
mod pump;
mod reconnect;
mod spawn;
mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rand::RngCore;
use tokio::sync::{broadcast, mpsc, watch, OwnedMutexGuard};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::types::{
    ExecOptions, ExecResult, HistoryEntry, Interrupt, Notice, ReadOptions, SessionConfig,
    SessionInfo, SessionStatus, StatusEvent, StopReport,
};
use super::{ExecStream, Session, StreamEvent};
use crate::error::{Error, Result};
use crate::persistent::{self, TmuxAttachment, TmuxShell};
use crate::protocol::{command_line, prime_script, MarkerParser, Nonce, Output, Restore};
use crate::transport::{run, ChannelEvent, EventSource, ShellRequest, Transport};
use reconnect::{connection_alive, reconnect_worker};
use state::{Deliveries, Outcome, Phase, Shell, State};

/// Makes a new connection for a session whose connection was lost (the manager gives each
/// session one that goes through its connection pool).
pub type Reconnector =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<Arc<dyn Transport>>> + Send + Sync>;

/// Where a session is connected, for listings and messages.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Remote host.
    pub host: String,
    /// Remote user.
    pub user: String,
    /// Remote port.
    pub port: u16,
}

/// A persistent shell on one channel of a [`Transport`]. Create it with
/// [`ShellSession::start`] or, usually, through the [`SessionManager`](crate::SessionManager).
#[derive(Clone)]
pub struct ShellSession {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    endpoint: Endpoint,
    /// The current connection; replaced by a reconnect.
    transport: Mutex<Arc<dyn Transport>>,
    reconnector: Mutex<Option<Reconnector>>,
    /// Set while a reconnect loop runs, so a second one is never started.
    reconnecting: AtomicBool,
    /// The tmux attachment of a persistent session: where the output stream stands.
    attachment: Mutex<Option<TmuxAttachment>>,
    /// Link losses seen by a pump, for the session's reconnect worker.
    reconnect_requests: mpsc::UnboundedSender<String>,
    status_events: broadcast::Sender<StatusEvent>,
    config: SessionConfig,
    /// Names this session's exported-variables file on the remote host; stable across
    /// shell restarts so a new shell can restore what the old one exported.
    env_file_id: String,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// FIFO turn-taking for commands (tokio's mutex is fair).
    queue: Arc<tokio::sync::Mutex<()>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for ShellSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellSession")
            .field("name", &self.inner.name)
            .field("transport", &self.inner.transport())
            .finish()
    }
}

impl ShellSession {
    /// Opens a shell channel on `transport` and primes it. The session owns the transport
    /// and closes it on [`close`](Session::close).
    pub async fn start(
        name: &str,
        endpoint: Endpoint,
        transport: Arc<dyn Transport>,
        config: SessionConfig,
    ) -> Result<Self> {
        let pty = config.pty.as_ref().map(|p| (p.cols, p.rows));
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        let (reconnect_requests, requests) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            name: name.to_string(),
            endpoint,
            transport: Mutex::new(transport),
            reconnector: Mutex::new(None),
            reconnecting: AtomicBool::new(false),
            reconnect_requests,
            attachment: Mutex::new(None),
            status_events: broadcast::channel(64).0,
            state: Mutex::new(State::new(
                pty,
                config.max_output_bytes,
                config.history_limit,
            )),
            config,
            env_file_id: id.iter().map(|b| format!("{b:02x}")).collect(),
            changed: watch::channel(0).0,
            queue: Arc::new(tokio::sync::Mutex::new(())),
            pumps: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(reconnect_worker(Arc::downgrade(&inner), requests));
        let session = ShellSession { inner };
        match session.spawn_shell(Restore::default()).await {
            Ok(notices) => {
                session.inner.lock().pending = notices;
                session.inner.set_status(SessionStatus::Connected);
            }
            Err(e) => {
                session.inner.transport().close().await;
                session.inner.abort_pumps();
                return Err(e);
            }
        }
        Ok(session)
    }

    /// Takes the command turn, (re)starts the shell if needed and types the command.
    async fn begin_command(
        &self,
        command: &str,
        options: &ExecOptions,
        stream: Option<mpsc::Sender<StreamEvent>>,
    ) -> Result<(OwnedMutexGuard<()>, u64)> {
        let inner = &self.inner;
        let turn = inner.queue.clone().lock_owned().await;
        inner.check_open()?;
        let timeout = options.timeout.unwrap_or(inner.config.exec_timeout);
        self.wait_connected(Instant::now() + timeout).await?;
        let mut notices = Vec::new();
        let restart = {
            let st = inner.lock();
            if let Some(run) = st.running() {
                return Err(Error::Busy {
                    session: inner.name.clone(),
                    command: run.command.clone(),
                    running_for: state::running_for(run),
                });
            }
            st.shell.is_none().then(|| {
                let cwd = (!st.cwd.is_empty()).then(|| st.cwd.clone());
                (
                    st.death.clone().unwrap_or_else(|| "the shell ended".into()),
                    cwd,
                )
            })
        };
        if let Some((reason, cwd)) = restart {
            notices.push(Notice::ShellRestarted { reason });
            notices.extend(self.spawn_shell(Restore { cwd, env: true }).await?);
            inner.lock().death = None;
        }
        let source = options.source.clone().unwrap_or_else(|| "api".into());
        let (line, input, id) = {
            let mut st = inner.lock();
            let line = command_line(command, st.flavor, st.next_id).ok_or_else(|| {
                Error::InvalidCommand {
                    session: inner.name.clone(),
                    reason: "it contains a NUL byte, which cannot be typed into a shell".into(),
                }
            })?;
            let Some(shell) = st.shell.clone() else {
                return Err(inner.lost_shell());
            };
            let (id, idle) = st.begin(command, source, notices, stream.clone());
            if let (Some(tx), false) = (&stream, idle.is_empty()) {
                // Room for it: the channel is new and has capacity for many chunks.
                let _ = tx.try_send(StreamEvent::Output(idle.into()));
            }
            (line, shell.input, id)
        };
        if let Err(e) = input.write(line.as_bytes()).await {
            let mut deliveries = Vec::new();
            inner
                .lock()
                .finish(Outcome::ShellExited(None), &mut deliveries);
            inner.deliver(deliveries).await;
            inner.notify();
            return Err(e);
        }
        Ok((turn, id))
    }

    /// Waits until the current command ends, new output arrives (if asked), or `deadline`.
    async fn wait_result(&self, deadline: Instant, return_on_output: bool) -> Result<ExecResult> {
        let inner = &self.inner;
        loop {
            let mut changed = inner.changed.subscribe();
            {
                let mut st = inner.lock();
                let Some(run) = st.current.as_mut() else {
                    return Err(Error::NotRunning {
                        session: inner.name.clone(),
                    });
                };
                run.settle_stream();
                let fresh = run.output.total() > run.cursor;
                if run.outcome.is_some()
                    || Instant::now() >= deadline
                    || (return_on_output && fresh)
                {
                    return Ok(st.take_result().expect("current command exists"));
                }
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Signals the terminal's foreground process group (the running command) through a
    /// separate exec channel: a PTY can only carry Ctrl-C, and SSH `signal` requests reach
    /// the shell, not its foreground job.
    async fn signal_foreground(&self, pid: u32, signal: &str) -> Result<()> {
        // tpgid is field 8 of /proc/PID/stat, counted after the ")" that ends the command
        // name (which may contain spaces). No foreground job of its own → signal children.
        let script = format!(
            "P={pid}; T=; if [ -r /proc/$P/stat ]; then s=$(cat /proc/$P/stat); s=${{s##*) }}; set -- $s; T=$6; \
             else T=$(ps -o tpgid= -p $P 2>/dev/null | tr -d \" \"); fi; \
             if [ -n \"$T\" ] && [ \"$T\" -gt 0 ] && [ \"$T\" != \"$P\" ]; then kill -{signal} -$T; \
             else pkill -{signal} -P $P; fi"
        );
        let transport = self.inner.transport();
        let out = run(transport.as_ref(), &format!("sh -c '{script}'")).await?;
        if out.exit_status == Some(0) {
            Ok(())
        } else {
            Err(Error::InvalidCommand {
                session: self.inner.name.clone(),
                reason: format!(
                    "could not send SIG{signal} to the running command: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            })
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn transport(&self) -> Arc<dyn Transport> {
        self.transport
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets the status, tells subscribers (in order) and wakes waiters.
    fn set_status(&self, status: SessionStatus) {
        {
            let mut st = self.lock();
            if st.status == status {
                return;
            }
            if status == SessionStatus::Connected {
                st.connected_since = Some(std::time::SystemTime::now());
            }
            if let SessionStatus::Error { detail, at } = &status {
                st.last_error = Some((detail.clone(), *at));
            }
            st.status = status.clone();
            // Sent under the state lock so that events can never overtake each other.
            let _ = self.status_events.send(StatusEvent {
                session: self.name.clone(),
                status,
                at: std::time::SystemTime::now(),
            });
        }
        self.notify();
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                session: self.name.clone(),
            });
        }
        Ok(())
    }

    fn lost_shell(&self) -> Error {
        Error::Ssh {
            host: self.endpoint.host.clone(),
            port: self.endpoint.port,
            detail: format!("session {:?}: the shell is gone", self.name),
        }
    }

    async fn deliver(&self, deliveries: Deliveries) {
        for (tx, event) in deliveries {
            // A slow stream consumer slows the channel (flow control); a dropped one is skipped.
            let _ = tx.send(event).await;
        }
    }

    fn abort_pumps(&self) {
        for pump in self
            .pumps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            pump.abort();
        }
    }
}

#[async_trait]
impl Session for ShellSession {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn info(&self) -> SessionInfo {
        let inner = &self.inner;
        let st = inner.lock();
        let transport = inner.transport();
        let mut status = st.status.clone();
        if status == SessionStatus::Connected && transport.is_closed() {
            status = SessionStatus::Error {
                detail: format!("the connection to {} was lost", transport.describe()),
                at: st.last_activity,
            };
        }
        SessionInfo {
            name: inner.name.clone(),
            host: inner.endpoint.host.clone(),
            user: inner.endpoint.user.clone(),
            port: inner.endpoint.port,
            transport: transport.kind(),
            status,
            created: st.created,
            last_activity: st.last_activity,
            command_count: st.command_count,
            cwd: st.cwd.clone(),
            running: st.running().map(|r| r.command.clone()),
            last_error: st.last_error.clone(),
            reconnects: st.reconnects,
            connected_since: st.connected_since,
            persistent: st.persistent,
            resumed: st.resumed,
        }
    }

    async fn exec(&self, command: &str, options: ExecOptions) -> Result<ExecResult> {
        let timeout = options.timeout.unwrap_or(self.inner.config.exec_timeout);
        let (_turn, _id) = self.begin_command(command, &options, None).await?;
        // The deadline counts from when the command was typed, not from when it was queued.
        self.wait_result(Instant::now() + timeout, false).await
    }

    async fn exec_stream(&self, command: &str, options: ExecOptions) -> Result<ExecStream> {
        let (tx, rx) = mpsc::channel(256);
        let (turn, id) = self.begin_command(command, &options, Some(tx)).await?;
        // None if it already finished: then everything was sent and nothing needs counting.
        let consumed = {
            let st = self.inner.lock();
            st.current
                .as_ref()
                .filter(|run| run.id == id)
                .and_then(|run| run.stream_consumed.clone())
        };
        Ok(ExecStream::new(rx, turn, consumed))
    }

    async fn read_output(&self, options: ReadOptions) -> Result<ExecResult> {
        self.inner.check_open()?;
        self.wait_result(Instant::now() + options.wait, options.return_on_output)
            .await
    }

    async fn send_input(&self, input: &[u8]) -> Result<()> {
        let inner = &self.inner;
        let shell = {
            let st = inner.lock();
            if st.running().is_none() {
                return Err(Error::NotRunning {
                    session: inner.name.clone(),
                });
            }
            st.shell.clone().ok_or_else(|| inner.lost_shell())?
        };
        shell.input.write(input).await
    }

    async fn interrupt(&self, how: Interrupt) -> Result<()> {
        let inner = &self.inner;
        let (shell, pid, pty) = {
            let st = inner.lock();
            if st.running().is_none() {
                return Err(Error::NotRunning {
                    session: inner.name.clone(),
                });
            }
            (st.shell.clone(), st.shell_pid, st.pty)
        };
        let shell = shell.ok_or_else(|| inner.lost_shell())?;
        match (how, pty) {
            // Through the terminal, as a person would: the line discipline signals the
            // foreground job and the shell survives.
            (Interrupt::Int, true) => shell.input.write(b"\x03").await,
            (Interrupt::Eof, true) => shell.input.write(b"\x04").await,
            (Interrupt::Eof, false) => Err(Error::InvalidCommand {
                session: inner.name.clone(),
                reason: "EOF needs a PTY session: without one, closing stdin would end the shell"
                    .into(),
            }),
            (how, _) => {
                let name = match how {
                    Interrupt::Term => "TERM",
                    Interrupt::Kill => "KILL",
                    _ => "INT",
                };
                let pid = pid.ok_or_else(|| inner.lost_shell())?;
                self.signal_foreground(pid, name).await
            }
        }
    }

    fn screen(&self) -> String {
        self.inner.lock().screen.screen().contents()
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let shell = {
            let mut st = self.inner.lock();
            st.resize(cols, rows);
            st.shell.clone().filter(|_| st.pty)
        };
        match shell {
            Some(shell) => shell.input.resize(cols, rows).await,
            None => Ok(()),
        }
    }

    fn history(&self) -> Vec<HistoryEntry> {
        self.inner
            .lock()
            .history
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    async fn stop_command(&self) -> Result<StopReport> {
        let inner = &self.inner;
        if inner.lock().running().is_none() {
            return Err(Error::NotRunning {
                session: inner.name.clone(),
            });
        }
        let step = inner.config.stop_deadline / 3;
        let mut tried = Vec::new();
        for (how, name) in [
            (Interrupt::Int, "INT"),
            (Interrupt::Term, "TERM"),
            (Interrupt::Kill, "KILL"),
        ] {
            tried.push(name);
            if let Err(e) = self.interrupt(how).await {
                tracing::info!(session = %inner.name, signal = name, error = %e, "interrupt failed");
            }
            let result = self.wait_result(Instant::now() + step, false).await?;
            if !result.is_running() {
                return Ok(StopReport {
                    tried,
                    shell_replaced: false,
                    result,
                });
            }
        }
        // Nothing stopped it (a process in uninterruptible sleep, a terminal grabbed by a
        // program that ignores everything): kill the shell's channel and start afresh.
        tracing::warn!(session = %inner.name, "command survived SIGKILL; replacing the shell");
        let shell = {
            let mut st = inner.lock();
            let mut deliveries = Vec::new();
            st.finish(Outcome::Killed, &mut deliveries);
            st.generation += 1;
            st.death = Some("it was killed because its command would not stop".into());
            st.parser = None;
            st.phase = Phase::Dead;
            st.shell.take()
        };
        inner.notify();
        if let Some(shell) = shell {
            let _ = shell.input.close().await;
        }
        let result = inner.lock().take_result().expect("the command just ended");
        let cwd = {
            let st = inner.lock();
            (!st.cwd.is_empty()).then(|| st.cwd.clone())
        };
        let notices = self.spawn_shell(Restore { cwd, env: true }).await?;
        {
            let mut st = inner.lock();
            st.pending.push(Notice::ShellRestarted {
                reason: "the shell was killed because its command would not stop".into(),
            });
            st.pending.extend(notices);
            st.death = None;
        }
        Ok(StopReport {
            tried,
            shell_replaced: true,
            result,
        })
    }

    fn subscribe_status(&self) -> broadcast::Receiver<StatusEvent> {
        self.inner.status_events.subscribe()
    }

    async fn reconnect(&self) -> Result<()> {
        self.inner.check_open()?;
        if self.inner.reconnecting.swap(true, Ordering::AcqRel) {
            // One is running already: wait for its outcome.
            let deadline = Instant::now() + self.inner.config.exec_timeout;
            return self.wait_connected(deadline).await;
        }
        let attempts = self.inner.config.reconnect.max_attempts.max(1);
        let result = self
            .reconnect_loop("reconnect requested".into(), attempts)
            .await;
        self.inner.reconnecting.store(false, Ordering::Release);
        result
    }

    async fn close(&self) -> Result<()> {
        self.shutdown(true).await
    }
}
