//! The driver: owns a session's I/O around its [`Machine`]. It reads shell channels, types
//! commands, waits for results, and commits every transition's [`Effects`] in one place,
//! [`Driver::commit`], once the state lock is released.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::{broadcast, mpsc, watch, OwnedMutexGuard};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::attach::TerminalEvent;
use super::effects::GoneCause;
use super::effects::{Begun, Effects, Opening, Refusal};
use super::machine::Machine;
use super::reconnect::connection_alive;
use super::{spawn, Endpoint, Reconnector};
use crate::error::{Error, Result};
use crate::persistent::TmuxAttachment;
use crate::session::types::{ExecOptions, ExecResult, SessionConfig, SessionStatus, StatusEvent};
use crate::transport::{Channel, ChannelEvent, ChannelInput, EventSource, Transport};

/// A session's shared core: its state machine and everything that does I/O for it.
pub(super) struct Driver {
    pub(super) name: String,
    pub(super) endpoint: Endpoint,
    pub(super) config: SessionConfig,
    /// Names this session's exported-variables file on the remote host; stable across
    /// shell restarts so a new shell can restore what the old one exported.
    pub(super) env_file_id: String,
    machine: Mutex<Machine>,
    /// The current connection; replaced by a reconnection.
    transport: Mutex<Arc<dyn Transport>>,
    reconnector: Mutex<Option<Reconnector>>,
    /// Set while a reconnection runs, so that a second one never starts.
    pub(super) reconnecting: AtomicBool,
    /// Where a persistent shell's output stream stands.
    attachment: Mutex<Option<TmuxAttachment>>,
    changed: watch::Sender<u64>,
    status_events: broadcast::Sender<StatusEvent>,
    /// What the people attached to the terminal see.
    terminal_events: broadcast::Sender<TerminalEvent>,
    /// Keys typed in order by one task (see [`type_keys`]).
    typist: mpsc::UnboundedSender<(Arc<dyn ChannelInput>, Vec<u8>)>,
    reconnect_requests: mpsc::UnboundedSender<u64>,
    /// FIFO turn-taking for commands (tokio's mutex is fair).
    queue: Arc<tokio::sync::Mutex<()>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Driver {
    pub(super) fn new(
        name: String,
        endpoint: Endpoint,
        config: SessionConfig,
        machine: Machine,
        transport: Arc<dyn Transport>,
        env_file_id: String,
    ) -> (Arc<Driver>, mpsc::UnboundedReceiver<u64>) {
        let (reconnect_requests, requests) = mpsc::unbounded_channel();
        let (typist, keys) = mpsc::unbounded_channel();
        tokio::spawn(type_keys(name.clone(), keys));
        let driver = Arc::new(Driver {
            name,
            endpoint,
            config,
            env_file_id,
            machine: Mutex::new(machine),
            transport: Mutex::new(transport),
            reconnector: Mutex::new(None),
            reconnecting: AtomicBool::new(false),
            attachment: Mutex::new(None),
            changed: watch::channel(0).0,
            status_events: broadcast::channel(64).0,
            terminal_events: broadcast::channel(TERMINAL_BACKLOG).0,
            typist,
            reconnect_requests,
            queue: Arc::new(tokio::sync::Mutex::new(())),
            readers: Mutex::new(Vec::new()),
        });
        (driver, requests)
    }

    // ---- transitions --------------------------------------------------------------

    /// Runs one transition and commits its effects.
    pub(super) fn act<T>(&self, transition: impl FnOnce(&mut Machine) -> (T, Effects)) -> T {
        let mut machine = lock(&self.machine);
        let (value, effects) = transition(&mut machine);
        self.commit(machine, effects);
        value
    }

    /// Runs a transition that returns nothing but its effects.
    pub(super) fn apply(&self, transition: impl FnOnce(&mut Machine) -> Effects) {
        self.act(|m| ((), transition(m)))
    }

    /// Reads the state.
    pub(super) fn view<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&lock(&self.machine))
    }

    /// A step that changes nothing anyone waits for (taking a result moves a read
    /// cursor; claiming a start only matters to the claimer), so it wakes no waiter:
    /// waking them would make a waiting loop that takes such a step spin.
    pub(super) fn peek<T>(&self, step: impl FnOnce(&mut Machine) -> T) -> T {
        step(&mut lock(&self.machine))
    }

    /// Commits what a transition requires. Status events go out before the lock is
    /// released (a broadcast send never blocks), so that they can never overtake each
    /// other; everything else after it.
    fn commit(&self, machine: MutexGuard<'_, Machine>, effects: Effects) {
        for event in effects.status {
            let _ = self.status_events.send(event);
        }
        // Under the lock too: a person attaching subscribes under it, after taking the
        // screen, so that they miss no byte and see none twice.
        for event in effects.terminal {
            let _ = self.terminal_events.send(event);
        }
        for keys in effects.keys {
            let _ = self.typist.send(keys);
        }
        let closed = machine.is_closed();
        drop(machine);
        for waker in effects.wakers {
            waker.wake();
        }
        // Every transition may be what a waiter waits for (a result, a ready shell, a
        // status): wake them all, they look again.
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        if let (Some(generation), false) = (effects.reconnect, closed) {
            let _ = self.reconnect_requests.send(generation);
        }
    }

    /// Waits until something changes or `deadline`; false if the deadline came.
    pub(super) async fn changed_before(
        &self,
        deadline: Instant,
        mut since: watch::Receiver<u64>,
    ) -> bool {
        tokio::select! {
            r = since.changed() => r.is_ok(),
            _ = tokio::time::sleep_until(deadline) => false,
        }
    }

    /// A receiver to pass to [`changed_before`](Self::changed_before): subscribe *before*
    /// looking at the state, so that no change between the look and the wait is missed.
    pub(super) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Status changes from now on.
    pub(super) fn subscribe_status(&self) -> broadcast::Receiver<StatusEvent> {
        self.status_events.subscribe()
    }

    /// What attached terminals see from now on (call under the state lock, in a
    /// transition, to line it up with a look at the screen).
    pub(super) fn subscribe_terminal(&self) -> broadcast::Receiver<TerminalEvent> {
        self.terminal_events.subscribe()
    }

    /// Tells every attached person something (not shell output).
    pub(super) fn tell_attached(&self, message: String) {
        let _ = self.terminal_events.send(TerminalEvent::Notice(message));
    }

    // ---- connection ---------------------------------------------------------------

    pub(super) fn transport(&self) -> Arc<dyn Transport> {
        lock(&self.transport).clone()
    }

    /// Makes `transport` the session's connection; returns the previous one.
    pub(super) fn replace_transport(&self, transport: Arc<dyn Transport>) -> Arc<dyn Transport> {
        std::mem::replace(&mut *lock(&self.transport), transport)
    }

    pub(super) fn reconnector(&self) -> Option<Reconnector> {
        lock(&self.reconnector).clone()
    }

    pub(super) fn set_reconnector(&self, reconnector: Reconnector) {
        *lock(&self.reconnector) = Some(reconnector);
    }

    /// Where a persistent shell's stream stands, and which tmux session it came from.
    pub(super) fn attachment_position(&self) -> Option<(u64, String)> {
        lock(&self.attachment)
            .as_ref()
            .map(|a| (a.offset(), a.incarnation.clone()))
    }

    pub(super) fn set_attachment(&self, attachment: TmuxAttachment) {
        *lock(&self.attachment) = Some(attachment);
    }

    // ---- shell channels -----------------------------------------------------------

    /// Makes `channel` the shell's (the caller holds the start) and starts its reader.
    pub(super) fn adopt(self: &Arc<Self>, channel: Channel, how: Opening) {
        let input = channel.input.clone();
        let generation = self.act(|m| (m.opened(input, how), Effects::default()));
        let reader = tokio::spawn(read_channel(
            Arc::downgrade(self),
            generation,
            channel.events,
        ));
        let mut readers = lock(&self.readers);
        readers.retain(|r| !r.is_finished());
        readers.push(reader);
    }

    pub(super) fn abort_readers(&self) {
        for reader in lock(&self.readers).drain(..) {
            reader.abort();
        }
    }

    // ---- commands -----------------------------------------------------------------

    /// Takes the command turn, waits for (or starts) a shell ready for commands, and
    /// types `command`. Waiting to begin counts against the exec's timeout.
    pub(super) async fn begin(
        self: &Arc<Self>,
        command: &str,
        options: &ExecOptions,
        stream: bool,
    ) -> Result<(OwnedMutexGuard<()>, Begun)> {
        let turn = self.queue.clone().lock_owned().await;
        let timeout = options.timeout.unwrap_or(self.config.exec_timeout);
        let deadline = Instant::now() + timeout;
        let source = options.source.as_deref().unwrap_or("api");
        let human = options.human_activity;
        let begun = loop {
            let since = self.watch();
            // A refusal changes nothing (so it must not wake the waiters, this loop among
            // them); a command begun is committed like any transition.
            match self.peek(|m| m.begin_command(command, source, stream, human)) {
                Ok((begun, effects)) => {
                    self.apply(|_| effects);
                    break begun;
                }
                Err(Refusal::Fail(e)) => return Err(e),
                Err(Refusal::NeedShell(previous)) => {
                    let notices = spawn::start_claimed(self, previous, false).await?;
                    self.apply(|m| {
                        m.add_notices(notices);
                        Effects::default()
                    });
                }
                Err(Refusal::Wait) => {
                    // Most waits end with a transition; waiting for a person's echo ends
                    // by time too, so look again at least that often.
                    let until = deadline.min(Instant::now() + super::machine::ECHO_WAIT);
                    if !self.changed_before(until, since).await && Instant::now() >= deadline {
                        return Err(self.not_ready_error(timeout));
                    }
                }
            }
        };
        match begun.input.write(begun.line.as_bytes()).await {
            // Nobody waits for a command to be typed: nobody is woken.
            Ok(()) => self.peek(|m| m.typed(begun.id)),
            Err(e) => {
                tracing::info!(session = %self.name, error = %e, "typing a command failed");
                self.apply(|m| m.typing_failed(begun.id));
            }
        }
        Ok((turn, begun))
    }

    /// Why a command could not begin within its timeout.
    fn not_ready_error(&self, timeout: std::time::Duration) -> Error {
        match self.view(|m| m.status().clone()) {
            SessionStatus::Reconnecting { attempt, of } => Error::Reconnecting {
                session: self.name.clone(),
                attempt,
                of,
            },
            SessionStatus::Error { detail, .. } => Error::Disconnected {
                session: self.name.clone(),
                detail,
            },
            _ => Error::ShellNotReady {
                session: self.name.clone(),
                timeout,
                last_output: "(the shell was still starting)".into(),
            },
        }
    }

    /// Waits until command `id` ends, or `deadline` (a command queued behind it may begin
    /// meanwhile: its result is not this one).
    pub(super) async fn wait_result_of(&self, id: u64, deadline: Instant) -> Result<ExecResult> {
        loop {
            let since = self.watch();
            let expired = Instant::now() >= deadline;
            if let Some(result) = self.peek(|m| m.poll_result_of(id, expired))? {
                return Ok(result);
            }
            self.changed_before(deadline, since).await;
        }
    }

    /// Waits until the current command ends, new output arrives (if asked), or `deadline`.
    pub(super) async fn wait_result(
        &self,
        deadline: Instant,
        on_output: bool,
    ) -> Result<ExecResult> {
        loop {
            let since = self.watch();
            let expired = Instant::now() >= deadline;
            let polled = self.peek(|m| m.poll_result(on_output, expired));
            if let Some(result) = polled? {
                return Ok(result);
            }
            self.changed_before(deadline, since).await;
        }
    }
}

/// Events an attached terminal may fall behind by before it is sent the screen instead.
const TERMINAL_BACKLOG: usize = 1024;

/// Types keys (a person's, and the switches between modes) in the order they were
/// committed: one task, so that two writes can never overtake each other.
async fn type_keys(
    session: String,
    mut keys: mpsc::UnboundedReceiver<(Arc<dyn ChannelInput>, Vec<u8>)>,
) {
    while let Some((input, bytes)) = keys.recv().await {
        if let Err(e) = input.write(&bytes).await {
            tracing::info!(session = %session, error = %e, "typing keys failed");
        }
    }
}

/// Reads one shell channel until it closes, feeding its events into the machine. Holds
/// only a weak reference between events, so a dropped session is not kept alive by it.
async fn read_channel(weak: Weak<Driver>, generation: u64, mut events: Box<dyn EventSource>) {
    while let Some(event) = events.recv().await {
        let Some(driver) = weak.upgrade() else {
            return;
        };
        let behind = driver.act(|m| {
            let fx = match event {
                ChannelEvent::Stdout(data) => m.output(generation, &data),
                ChannelEvent::Stderr(data) => m.stderr(generation, &data),
                ChannelEvent::ExitStatus(code) => {
                    m.channel_exit(generation, GoneCause::Exited(code as i32));
                    Effects::default()
                }
                ChannelEvent::ExitSignal(signal) => {
                    m.channel_exit(generation, GoneCause::Signalled(signal));
                    Effects::default()
                }
                ChannelEvent::Eof => Effects::default(),
            };
            (fx.backpressure.clone(), fx)
        });
        if let Some(sink) = behind {
            // Flow control: stop reading the channel while the stream's consumer is far
            // behind; the SSH window then stops the remote side.
            sink.wait_for_space().await;
        }
    }
    let Some(driver) = weak.upgrade() else {
        return;
    };
    // A channel that ends without an exit status or signal was either cut with its
    // connection or (with some servers and the OpenSSH mux) lost its shell silently. Ask
    // the connection itself; this costs a round trip only on this rare path.
    let alive = !driver.view(|m| m.end_unexplained(generation))
        || connection_alive(driver.transport()).await;
    driver.apply(|m| m.channel_closed(generation, alive));
}
