//! [`ShellSession`]: a [`Session`] over any [`Transport`], speaking the marker protocol.

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
use state::{Deliveries, Outcome, Phase, Shell, State};

/// Started instead of a login shell that is not POSIX (fish, csh): every shell can run it.
const POSIX_FALLBACK: &str =
    "sh -c 'if command -v bash >/dev/null 2>&1; then exec bash --noediting; else exec sh; fi'";

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

enum SpawnError {
    NotPosix,
    Failed(Error),
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

    /// Starts a shell (the login shell, or a POSIX one if that is fish/csh) and primes it.
    async fn spawn_shell(&self, restore: Restore) -> Result<Vec<Notice>> {
        match self.try_spawn(None, &restore).await {
            Ok(()) => Ok(Vec::new()),
            Err(SpawnError::Failed(e)) => Err(e),
            Err(SpawnError::NotPosix) => {
                tracing::warn!(session = %self.inner.name, "login shell is not POSIX; starting sh");
                if self.inner.config.persistent {
                    // tmux keeps the shell it was created with: start over with the fallback.
                    let _ =
                        persistent::kill(self.inner.transport().as_ref(), &self.inner.name).await;
                }
                match self.try_spawn(Some(POSIX_FALLBACK.into()), &restore).await {
                    Ok(()) => Ok(vec![Notice::PosixFallback]),
                    Err(SpawnError::Failed(e)) => Err(Error::NonPosixShell {
                        session: self.inner.name.clone(),
                        detail: e.to_string(),
                    }),
                    Err(SpawnError::NotPosix) => Err(Error::NonPosixShell {
                        session: self.inner.name.clone(),
                        detail: "sh did not answer as a POSIX shell either".into(),
                    }),
                }
            }
        }
    }

    async fn try_spawn(
        &self,
        command: Option<String>,
        restore: &Restore,
    ) -> std::result::Result<(), SpawnError> {
        let inner = &self.inner;
        let channel = if inner.config.persistent {
            let pty = inner.config.pty.clone().unwrap_or_default();
            let (channel, attachment) = TmuxShell::default()
                .open_command(
                    inner.transport().as_ref(),
                    &inner.name,
                    &pty,
                    command.as_deref(),
                    None,
                )
                .await
                .map_err(SpawnError::Failed)?;
            {
                let mut st = inner.lock();
                st.persistent = true;
                // A surviving shell keeps its own cwd and variables: restore nothing.
                if !attachment.created && st.generation == 0 {
                    st.resumed = true;
                }
            }
            *inner.attachment.lock().unwrap_or_else(|p| p.into_inner()) = Some(attachment);
            channel
        } else {
            let request = ShellRequest {
                pty: inner.config.pty.clone(),
                command,
            };
            inner
                .transport()
                .open_shell(request)
                .await
                .map_err(SpawnError::Failed)?
        };
        self.prime(channel, restore).await
    }

    /// Types the prime into a freshly opened shell channel and waits for its verdict.
    async fn prime(
        &self,
        channel: crate::transport::Channel,
        restore: &Restore,
    ) -> std::result::Result<(), SpawnError> {
        let inner = &self.inner;
        let nonce = Nonce::random();
        {
            let mut st = inner.lock();
            st.parser = Some(MarkerParser::new(&nonce));
            st.phase = Phase::Priming {
                log: Vec::new(),
                ready: None,
                probed: false,
            };
        }
        let input = channel.input.clone();
        inner.adopt_channel(channel);

        let output = match inner.config.pty {
            Some(_) => Output::Pty,
            None => Output::Pipes,
        };
        let script = prime_script(&nonce, &inner.env_file_id, restore, output);
        if let Err(e) = input.write(script.as_bytes()).await {
            return Err(SpawnError::Failed(e));
        }
        let deadline = Instant::now() + inner.config.prime_timeout;
        loop {
            let mut changed = inner.changed.subscribe();
            let verdict = {
                let mut st = inner.lock();
                match &st.phase {
                    // Ready as soon as R arrives: the probe only tells a non-POSIX shell apart,
                    // and zsh may drop the probe line when its line editor was already reading
                    // (it is switched off by the first line). A late P is dropped by the parser.
                    Phase::Priming {
                        ready: Some((pid, flavor)),
                        ..
                    } => {
                        let (pid, flavor) = (*pid, *flavor);
                        st.phase = Phase::Ready;
                        st.shell_pid = Some(pid);
                        st.flavor = flavor;
                        Some(Ok(()))
                    }
                    Phase::Priming {
                        ready: None,
                        probed: true,
                        ..
                    } => Some(Err(SpawnError::NotPosix)),
                    Phase::Dead => {
                        let why = st.death.clone().unwrap_or_default();
                        Some(Err(SpawnError::Failed(Error::ShellNotReady {
                            session: inner.name.clone(),
                            timeout: inner.config.prime_timeout,
                            last_output: format!("(the shell ended: {why})"),
                        })))
                    }
                    _ => None,
                }
            };
            match verdict {
                Some(Err(SpawnError::NotPosix)) => {
                    let _ = input.close().await;
                    return Err(SpawnError::NotPosix);
                }
                Some(verdict) => return verdict,
                None => {}
            }
            let timed_out = tokio::select! {
                _ = changed.changed() => false,
                _ = tokio::time::sleep_until(deadline) => true,
            };
            if timed_out {
                let log = match &inner.lock().phase {
                    Phase::Priming { log, .. } => String::from_utf8_lossy(log).into_owned(),
                    _ => String::new(),
                };
                let _ = input.close().await;
                return Err(SpawnError::Failed(Error::ShellNotReady {
                    session: inner.name.clone(),
                    timeout: inner.config.prime_timeout,
                    last_output: log
                        .chars()
                        .rev()
                        .take(400)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect(),
                }));
            }
        }
    }

    /// Lets the session re-establish its connection by itself when it is lost.
    pub fn set_reconnector(&self, reconnector: Reconnector) {
        *self
            .inner
            .reconnector
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reconnector);
    }

    /// Runs the reconnect loop unless one is already running.
    async fn auto_reconnect(self, cause: String) {
        if self.inner.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self
            .reconnect_loop(cause, self.inner.config.reconnect.max_attempts)
            .await;
        self.inner.reconnecting.store(false, Ordering::Release);
    }

    /// Up to `attempts` tries, with the policy's backoff, to get a new connection and a new
    /// shell with cwd and exported variables restored.
    async fn reconnect_loop(&self, cause: String, attempts: u32) -> Result<()> {
        let inner = &self.inner;
        let reconnector = inner
            .reconnector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let give_up = |detail: String| {
            inner.set_status(SessionStatus::Error {
                detail: detail.clone(),
                at: std::time::SystemTime::now(),
            });
            Err(Error::Disconnected {
                session: inner.name.clone(),
                detail,
            })
        };
        let Some(reconnector) = reconnector.filter(|_| attempts > 0) else {
            return give_up(format!("{cause}; automatic reconnection is off"));
        };
        let policy = &inner.config.reconnect;
        let mut last = cause.clone();
        for attempt in 1..=attempts {
            if inner.closed.load(Ordering::Acquire) {
                return Err(Error::Closed {
                    session: inner.name.clone(),
                });
            }
            inner.set_status(SessionStatus::Reconnecting {
                attempt,
                of: attempts,
            });
            let unit = rand::random::<f64>() * 2.0 - 1.0;
            tokio::time::sleep(policy.delay(attempt, unit)).await;
            let transport = match reconnector().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!(session = %inner.name, attempt, error = %e, "reconnect failed");
                    last = e.to_string();
                    continue;
                }
            };
            let old = std::mem::replace(
                &mut *inner.transport.lock().unwrap_or_else(|p| p.into_inner()),
                transport,
            );
            old.close().await;
            if inner.config.persistent {
                match self.reattach().await {
                    Ok(true) => {
                        inner.lock().pending.push(Notice::Reconnected {
                            cause: cause.clone(),
                            attempts: attempt,
                        });
                        inner.lock().reconnects += 1;
                        inner.set_status(SessionStatus::Connected);
                        return Ok(());
                    }
                    // The tmux session itself is gone (host rebooted, killed): a new shell.
                    Ok(false) => {
                        let mut deliveries = Vec::new();
                        let mut st = inner.lock();
                        st.finish(Outcome::LinkLost, &mut deliveries);
                        st.phase = Phase::Dead;
                        st.parser = None;
                    }
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                }
            }
            let cwd = {
                let st = inner.lock();
                (!st.cwd.is_empty()).then(|| st.cwd.clone())
            };
            match self.spawn_shell(Restore { cwd, env: true }).await {
                Ok(notices) => {
                    {
                        let mut st = inner.lock();
                        st.pending.push(Notice::Reconnected {
                            cause: cause.clone(),
                            attempts: attempt,
                        });
                        st.pending.push(Notice::ShellRestarted {
                            reason: cause.clone(),
                        });
                        st.pending.extend(notices);
                        st.death = None;
                        st.reconnects += 1;
                    }
                    inner.set_status(SessionStatus::Connected);
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
        }
        give_up(format!("{last} (after {attempts} reconnect attempts)"))
    }

    /// Re-attaches a persistent session's stream at the exact byte it stopped at, keeping
    /// the parser (and so the running command). Returns false if the tmux session was gone
    /// and a new, unprimed one was created instead (it is killed again).
    async fn reattach(&self) -> Result<bool> {
        let inner = &self.inner;
        let offset = inner
            .attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(TmuxAttachment::offset);
        let pty = inner.config.pty.clone().unwrap_or_default();
        let transport = inner.transport();
        let (channel, attachment) = TmuxShell::default()
            .open(transport.as_ref(), &inner.name, &pty, offset)
            .await?;
        if attachment.created {
            let _ = channel.input.close().await;
            let _ = persistent::kill(transport.as_ref(), &inner.name).await;
            return Ok(false);
        }
        if let Some(gap) = &attachment.gap {
            tracing::warn!(session = %inner.name, ?gap, "output missed while disconnected");
        }
        *inner.attachment.lock().unwrap_or_else(|p| p.into_inner()) = Some(attachment);
        // Same parser and phase: the stream continues where it stopped.
        inner.adopt_channel(channel);
        Ok(true)
    }

    /// Closes the session but leaves a persistent shell running in its remote tmux
    /// session, to be re-adopted later by opening a session of the same name.
    pub async fn detach(&self) -> Result<()> {
        self.shutdown(false).await
    }

    /// Ends the session; `kill_remote: false` leaves a persistent shell running.
    async fn shutdown(&self, kill_remote: bool) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (shell, idle) = {
            let st = inner.lock();
            (st.shell.clone(), st.running().is_none())
        };
        const GRACE: Duration = Duration::from_secs(2);
        let persistent = inner.config.persistent;
        if let Some(shell) = &shell {
            if persistent && !kill_remote {
                // Detach: the shell stays in tmux for a later session of the same name.
            } else if idle {
                // Remove the saved variables and leave cleanly, bounded in time.
                let bye = b" rm -f -- \"$__ss_f\" \"$__ss_f.r\";exit 0\n";
                let mut changed = inner.changed.subscribe();
                if tokio::time::timeout(GRACE, shell.input.write(bye))
                    .await
                    .is_ok()
                {
                    let _ = tokio::time::timeout(GRACE, async {
                        while !matches!(inner.lock().phase, Phase::Dead) {
                            if changed.changed().await.is_err() {
                                break;
                            }
                        }
                    })
                    .await;
                }
            } else {
                let name = format!(".ssh-session-{}.env", inner.env_file_id);
                let rm = format!(
                    "rm -f -- \"${{XDG_RUNTIME_DIR:-/nonexistent}}/{name}\" \"/dev/shm/{name}\" \"${{TMPDIR:-/tmp}}/{name}\""
                );
                let transport = inner.transport();
                let _ = tokio::time::timeout(GRACE, run(transport.as_ref(), &rm)).await;
            }
            let _ = shell.input.close().await;
        }
        if persistent && kill_remote {
            let transport = inner.transport();
            let _ = tokio::time::timeout(GRACE, persistent::kill(transport.as_ref(), &inner.name))
                .await;
        }
        {
            let mut st = inner.lock();
            let mut deliveries = Vec::new();
            st.finish(Outcome::ShellExited(None), &mut deliveries);
            st.shell = None;
            st.phase = Phase::Dead;
        }
        inner.set_status(SessionStatus::Closed);
        inner.transport().close().await;
        inner.abort_pumps();
        inner.notify();
        Ok(())
    }

    /// Waits while the session reconnects (up to `deadline`); fails clearly if it cannot.
    async fn wait_connected(&self, deadline: Instant) -> Result<()> {
        let inner = &self.inner;
        loop {
            let mut changed = inner.changed.subscribe();
            let status = inner.lock().status.clone();
            match status {
                SessionStatus::Reconnecting { attempt, of } => {
                    let timed_out = tokio::select! {
                        _ = changed.changed() => false,
                        _ = tokio::time::sleep_until(deadline) => true,
                    };
                    if timed_out {
                        return Err(Error::Reconnecting {
                            session: inner.name.clone(),
                            attempt,
                            of,
                        });
                    }
                }
                SessionStatus::Error { detail, .. } => {
                    return Err(Error::Disconnected {
                        session: inner.name.clone(),
                        detail,
                    })
                }
                _ => return Ok(()),
            }
        }
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
                let Some(run) = st.current.as_ref() else {
                    return Err(Error::NotRunning {
                        session: inner.name.clone(),
                    });
                };
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

    /// Makes `channel` the session's shell: a new generation (so events of any earlier
    /// channel are ignored from now on) and a pump feeding its output into the state.
    fn adopt_channel(self: &Arc<Self>, channel: crate::transport::Channel) {
        let generation = {
            let mut st = self.lock();
            st.generation += 1;
            st.shell = Some(Shell {
                input: channel.input.clone(),
            });
            st.exit_status = None;
            st.exit_seen = false;
            st.generation
        };
        let pump = tokio::spawn(pump(Arc::downgrade(self), generation, channel.events));
        self.pumps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pump);
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

impl Drop for Inner {
    /// A session dropped without [`close`](Session::close): remove the remote snapshot of
    /// exported variables (it may hold secrets) and end the shell, best effort, if a
    /// runtime is there to do it.
    fn drop(&mut self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let shell = self.lock().shell.take();
        let transport = self.transport();
        self.abort_pumps();
        let (Some(shell), Ok(runtime)) = (shell, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let persistent = self.config.persistent;
        runtime.spawn(async move {
            if persistent {
                // Dropped, not closed: a persistent shell stays for a later re-adoption.
                let _ = shell.input.close().await;
                transport.close().await;
                return;
            }
            let bye = b"\x03 rm -f -- \"$__ss_f\" \"$__ss_f.r\";exit 0\n";
            let _ = tokio::time::timeout(Duration::from_secs(2), shell.input.write(bye)).await;
            let _ = shell.input.eof().await;
            transport.close().await;
        });
    }
}

/// Whether `transport` still carries a working connection: a tiny exec answered in time.
async fn connection_alive(transport: Arc<dyn Transport>) -> bool {
    if transport.is_closed() {
        return false;
    }
    let probe = run(transport.as_ref(), "true");
    matches!(
        tokio::time::timeout(Duration::from_secs(3), probe).await,
        Ok(Ok(out)) if out.exit_status == Some(0)
    ) && !transport.is_closed()
}

/// Reconnects a session whose pump saw its connection die. One per session, holding only a
/// weak reference; it ends when the session is dropped.
async fn reconnect_worker(weak: Weak<Inner>, mut requests: mpsc::UnboundedReceiver<String>) {
    while let Some(cause) = requests.recv().await {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        ShellSession { inner }.auto_reconnect(cause).await;
    }
}

/// Reads one shell channel until it closes, feeding its bytes into the session state.
/// Holds only a weak reference so a dropped session is not kept alive by its reader.
async fn pump(weak: Weak<Inner>, generation: u64, mut events: Box<dyn EventSource>) {
    while let Some(event) = events.recv().await {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let mut deliveries = Vec::new();
        {
            let mut st = inner.lock();
            match event {
                ChannelEvent::Stdout(data) => st.on_output(generation, &data, &mut deliveries),
                ChannelEvent::Stderr(data) => st.on_stderr(generation, &data, &mut deliveries),
                ChannelEvent::ExitStatus(code) if st.generation == generation => {
                    st.exit_status = Some(code as i32);
                    st.exit_seen = true;
                }
                ChannelEvent::ExitSignal(sig) if st.generation == generation => {
                    st.exit_status = None;
                    st.exit_seen = true;
                    st.death = Some(format!("the shell was killed by SIG{sig}"));
                }
                _ => {}
            }
        }
        inner.deliver(deliveries).await;
        inner.notify();
    }
    let Some(inner) = weak.upgrade() else {
        return;
    };
    // A channel that ends without an exit status or signal was either cut with its
    // connection or (with some servers and the OpenSSH mux) lost its shell silently. Ask
    // the connection itself; this costs a round trip only on this rare path.
    let unexplained = !inner.lock().exit_seen;
    let link_lost = unexplained && !connection_alive(inner.transport()).await;
    let mut deliveries = Vec::new();
    let link_lost = {
        let mut st = inner.lock();
        let killed = st.death.clone().filter(|d| d.contains("killed"));
        let lost = st.on_closed(generation, link_lost, &mut deliveries);
        if let Some(killed) = killed {
            st.death = Some(killed);
        }
        lost
    };
    inner.deliver(deliveries).await;
    inner.notify();
    if link_lost && !inner.closed.load(Ordering::Acquire) {
        let _ = inner
            .reconnect_requests
            .send("the connection was lost".into());
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
        let (turn, _id) = self.begin_command(command, &options, Some(tx)).await?;
        Ok(ExecStream {
            receiver: rx,
            _turn: Some(turn),
        })
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
