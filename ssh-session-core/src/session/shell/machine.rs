//! The shell's life, as one state machine: every state a session's shell can be in, and
//! every transition between them, in this file.
//!
//! ```text
//!            claim_start                opened(Prime)            ready marker
//!   Gone ───────────────▶ Starting ─────────────────▶ Priming ───────────────▶ Ready
//!    ▲  ▲                  │   ▲  ▲                       │                     │ │
//!    │  │    start_failed  │   │  └── priming_abandoned ──┘                     │ │
//!    │  └──────────────────┘   │        (not POSIX: try the fallback)           │ │
//!    │                         │                                                │ │
//!    │                         └──────── replace_shell (stop: it would not die) ┘ │
//!    └─────────────── channel_closed (exited, killed, link lost) ─────────────────┘
//!
//!   a shell that stopped reporting:  Ready ── resync ──▶ Priming{resync} ── ready marker ──▶
//!       Ready (its command ends as untracked); no answer: replace_shell ──▶ Starting
//!
//!   persistent shells only:  Ready ── channel_closed(link lost) ──▶ Detached
//!                            Detached ── claim_start ──▶ Starting ── opened(Resume) ──▶ Ready
//! ```
//!
//! All of it stays in this one file, so that the whole life can be read (and changed) in
//! one place, but for the switches between the agent path and a person at the terminal
//! (`machine_people.rs`, a child of this module); what is not a state or a transition lives next door: the commands'
//! bookkeeping (`command.rs`), the terminal (`terminal.rs`), the echo of our own lines
//! (`echo.rs`), the connection status (`link.rs`) and the transitions' vocabulary
//! (`effects.rs`).
//!
//! Everything here is synchronous and runs under the session's state lock for
//! microseconds: no I/O, no await. Each transition returns the `Effects` it caused
//! (stream consumers to wake, status events, a reconnection to start); the driver commits
//! them in one place once the lock is released. Events of a shell channel carry its
//! generation, so a late event from a replaced channel can never touch its successor.

use std::sync::Arc;
use std::time::SystemTime;

use super::attach::TerminalEvent;
use super::command::{Commands, Outcome};
use super::console::{Console, EXCERPT};
use super::echo::EchoFilter;
use super::effects::{
    Begun, Claim, ClosingShell, Effects, GoneCause, Opening, PrimeVerdict, Refusal,
};
use super::link::Link;
use super::terminal::Terminal;
use crate::error::{Error, Result};
use crate::protocol::{
    command_line, echo_of, interactive_on_line, paste_keys, Event, LinePrefix, MarkerParser, Nonce,
    ShellFlavor, EDITOR_OFF_LINE, INTERACTIVE_OFF_KEYS,
};
use crate::session::types::{
    CommandState, ExecResult, HistoryEntry, HumanActivity, HumanCommand, Notice, SessionInfo,
    SessionStatus,
};
use crate::transport::ChannelInput;

/// What a priming shell printed, kept (bounded) for the error if it never gets ready.
const PRIME_LOG_CAP: usize = 4096;

/// A shell channel the session reads and types into.
struct Live {
    generation: u64,
    input: Arc<dyn ChannelInput>,
    parser: MarkerParser,
    /// How the channel said it ended (exit status or signal), once it did.
    exit: Option<GoneCause>,
}

/// Where the shell is in its life.
enum Life {
    /// No shell: never started (`None`), or it ended.
    Gone(Option<GoneCause>),
    /// One task claimed the start and is opening a channel; everyone else waits.
    /// `resume` is a persistent shell's parser, kept across a lost link, and `failed` why
    /// the last channel of this start ended before it was ready.
    Starting {
        previous: Option<GoneCause>,
        resume: Option<MarkerParser>,
        failed: Option<GoneCause>,
    },
    /// The prime was typed; waiting for its ready (or probe) marker. `resync`: typed again
    /// into a shell that stopped reporting while a command ran (see `resync`); that command
    /// is still the current one.
    Priming {
        live: Live,
        previous: Option<GoneCause>,
        log: Vec<u8>,
        probed: bool,
        resync: bool,
        /// A zsh's ready marker, held until its probe line comes back too (see
        /// `PrimeVerdict::Syncing`).
        answered: Option<Answered>,
    },
    /// Primed: commands may run.
    Ready(Live),
    /// A persistent shell whose link was lost: it (and its command) go on in tmux; its
    /// output resumes through the same parser when the session re-attaches.
    Detached(MarkerParser),
}

/// What a shell's ready marker said.
#[derive(Debug)]
pub(super) struct Answered {
    pid: u32,
    flavor: ShellFlavor,
    cwd: Vec<u8>,
}

/// Everything about a session that changes.
pub(super) struct Machine {
    name: String,
    persistent: bool,
    pty: bool,
    link: Link,
    closed: bool,
    life: Life,
    generation: u64,
    flavor: ShellFlavor,
    shell_pid: Option<u32>,
    cwd: String,
    terminal: Terminal,
    echo: EchoFilter,
    /// Bytes other than command lines were typed since the last command began.
    typed_extra: bool,
    /// The last marker said bash's line editor had come back on.
    editor_back: bool,
    commands: Commands,
    mode: Mode,
    console: Console,
    created: SystemTime,
    last_activity: SystemTime,
    resumed: bool,
}

/// The fixed parameters of a [`Machine`].
pub(super) struct Settings {
    pub(super) name: String,
    pub(super) persistent: bool,
    /// The PTY's size, or `None` for plain pipes.
    pub(super) pty: Option<(u16, u16)>,
    pub(super) max_output: usize,
    pub(super) history_limit: usize,
}

impl Machine {
    pub(super) fn new(settings: Settings) -> Self {
        let now = SystemTime::now();
        let name = settings.name;
        Machine {
            link: Link::new(&name),
            name,
            persistent: settings.persistent,
            pty: settings.pty.is_some(),
            closed: false,
            life: Life::Gone(None),
            generation: 0,
            flavor: ShellFlavor::Posix,
            shell_pid: None,
            cwd: String::new(),
            terminal: Terminal::new(settings.pty),
            echo: EchoFilter::default(),
            typed_extra: false,
            editor_back: false,
            commands: Commands::new(settings.max_output, settings.history_limit),
            mode: Mode::Agent,
            console: Console::default(),
            created: now,
            last_activity: now,
            resumed: false,
        }
    }

    // ---- status -------------------------------------------------------------------

    /// The connection status changes (connected, reconnecting n of N, error).
    pub(super) fn set_status(&mut self, status: SessionStatus) -> Effects {
        let mut fx = Effects::default();
        if !self.closed {
            fx.status.extend(self.link.set_status(status));
        }
        fx
    }

    /// The connection was lost (noted even if reconnecting then succeeds).
    pub(super) fn note_link_lost(&mut self, cause: &str) {
        self.link.note_lost(cause);
    }

    /// A reconnection succeeded: the next command says so, then what starting the shell
    /// again brought (`notices`: a new shell, say), and the session is connected again.
    pub(super) fn reconnected(
        &mut self,
        cause: &str,
        attempts: u32,
        notices: Vec<Notice>,
    ) -> Effects {
        self.commands.add_notices(
            std::iter::once(Notice::Reconnected {
                cause: cause.to_string(),
                attempts,
            })
            .chain(notices),
        );
        self.link.reconnected();
        self.set_status(SessionStatus::Connected)
    }

    /// Notices for the next command.
    pub(super) fn add_notices(&mut self, notices: impl IntoIterator<Item = Notice>) {
        self.commands.add_notices(notices);
    }

    // ---- starting a shell ---------------------------------------------------------

    /// Claims the start of a shell (a first one, a replacement, or re-attaching a
    /// persistent one), so that exactly one task starts it.
    pub(super) fn claim_start(&mut self) -> Claim {
        match &mut self.life {
            Life::Ready(_) => Claim::Ready,
            Life::Starting { .. } | Life::Priming { .. } => Claim::InProgress,
            Life::Gone(previous) => {
                let previous = previous.take();
                self.life = Life::Starting {
                    previous: previous.clone(),
                    resume: None,
                    failed: None,
                };
                Claim::Claimed {
                    previous,
                    resume: false,
                }
            }
            Life::Detached(_) => {
                let Life::Detached(parser) = std::mem::replace(&mut self.life, Life::Gone(None))
                else {
                    unreachable!("matched above")
                };
                self.life = Life::Starting {
                    previous: Some(GoneCause::LinkLost),
                    resume: Some(parser),
                    failed: None,
                };
                Claim::Claimed {
                    previous: Some(GoneCause::LinkLost),
                    resume: true,
                }
            }
        }
    }

    /// The claimer opened a shell channel: returns its generation, for its reader.
    pub(super) fn opened(&mut self, input: Arc<dyn ChannelInput>, how: Opening) -> u64 {
        self.generation += 1;
        let generation = self.generation;
        let (previous, resume) = match std::mem::replace(&mut self.life, Life::Gone(None)) {
            Life::Starting {
                previous, resume, ..
            } => (previous, resume),
            Life::Priming { previous, .. } => (previous, None),
            other => {
                // Only the claimer opens channels; keep whatever is there.
                self.life = other;
                (None, None)
            }
        };
        let live = |parser| Live {
            generation,
            input,
            parser,
            exit: None,
        };
        self.life = match (how, resume) {
            (Opening::Resume, Some(parser)) => Life::Ready(live(parser)),
            (how, _) => {
                // A new shell: what was typed into, or echoed by, the last one is gone with
                // it. (A Ctrl-U sent to a fresh zsh, whose terminal may not be in line mode
                // yet, would be a literal byte of the command.)
                self.typed_extra = false;
                self.editor_back = false;
                self.echo.arm(Vec::new());
                self.mode = Mode::Agent;
                self.console.new_shell();
                // `Resume` without a kept parser cannot come from a claim; a fresh nonce
                // then makes the claimer's wait for the prime time out with a clear error.
                let nonce = match how {
                    Opening::Prime(nonce) => nonce,
                    Opening::Resume => Nonce::random(),
                };
                Life::Priming {
                    live: live(MarkerParser::new(&nonce)),
                    previous,
                    log: Vec::new(),
                    probed: false,
                    resync: false,
                    answered: None,
                }
            }
        };
        generation
    }

    /// For the claimer of a start: has the shell answered its prime?
    pub(super) fn prime_verdict(&self) -> PrimeVerdict {
        match &self.life {
            Life::Ready(_) => PrimeVerdict::Ready,
            Life::Priming {
                answered: Some(_), ..
            } => PrimeVerdict::Syncing,
            Life::Priming { probed: true, .. } => PrimeVerdict::NotPosix,
            Life::Priming { .. } => PrimeVerdict::Waiting,
            Life::Starting {
                failed: Some(cause),
                ..
            } => PrimeVerdict::Ended(cause.clone()),
            Life::Starting { .. } | Life::Gone(_) | Life::Detached(_) => {
                PrimeVerdict::Ended(GoneCause::ChannelClosed)
            }
        }
    }

    /// What the priming shell printed last, for an error that says what it was doing.
    pub(super) fn prime_log(&self) -> String {
        match &self.life {
            Life::Priming { log, .. } => String::from_utf8_lossy(log).into_owned(),
            _ => String::new(),
        }
    }

    /// The claimer gives up on this channel (not POSIX, timed out) but keeps the start:
    /// it tries another channel or calls `start_failed`. The channel's events are ignored
    /// from now on.
    pub(super) fn priming_abandoned(&mut self) {
        if let Life::Priming { previous, .. } = &self.life {
            self.life = Life::Starting {
                previous: previous.clone(),
                resume: None,
                failed: None,
            };
        }
    }

    /// The start failed: no shell (a persistent one stays detached, to re-attach later).
    pub(super) fn start_failed(&mut self, cause: GoneCause) -> Effects {
        let life = std::mem::replace(&mut self.life, Life::Gone(None));
        self.life = match life {
            Life::Starting {
                resume: Some(parser),
                ..
            } => Life::Detached(parser),
            Life::Starting { .. } | Life::Priming { .. } => Life::Gone(Some(cause)),
            other => other,
        };
        Effects::default()
    }

    /// Whether a persistent shell was found running when the session opened.
    pub(super) fn set_resumed(&mut self) {
        if self.generation == 0 {
            self.resumed = true;
        }
    }

    // ---- the shell's channel ------------------------------------------------------

    /// Bytes from channel `generation`'s stdout.
    pub(super) fn output(&mut self, generation: u64, data: &[u8]) -> Effects {
        let mut fx = Effects::default();
        let mut events = Vec::new();
        match &mut self.life {
            Life::Priming { live, .. } | Life::Ready(live) if live.generation == generation => {
                live.parser.feed(data, &mut events);
            }
            _ => return fx,
        }
        self.console.output_seen();
        for event in events {
            self.apply(event, &mut fx);
        }
        fx
    }

    /// Bytes from channel `generation`'s stderr (pipes only: no marker can be there).
    pub(super) fn stderr(&mut self, generation: u64, data: &[u8]) -> Effects {
        let mut fx = Effects::default();
        if self.live(generation).is_some() {
            self.apply(Event::Output(data.to_vec()), &mut fx);
        }
        fx
    }

    /// Channel `generation` said how its process ended (exit status or signal).
    pub(super) fn channel_exit(&mut self, generation: u64, cause: GoneCause) {
        if let Some(live) = self.live_mut(generation) {
            live.exit = Some(cause);
        }
    }

    /// Whether channel `generation` ended without saying why, so that only asking the
    /// connection can tell a lost link from a shell that just went away.
    pub(super) fn end_unexplained(&self, generation: u64) -> bool {
        self.live(generation)
            .is_some_and(|live| live.exit.is_none())
    }

    /// Channel `generation` closed. `link_alive`: whether its connection still works
    /// (only asked when the channel did not say why it ended).
    pub(super) fn channel_closed(&mut self, generation: u64, link_alive: bool) -> Effects {
        let mut fx = Effects::default();
        let Some(live) = self.live_mut(generation) else {
            return Effects::default();
        };
        let cause = live.exit.take().unwrap_or(if link_alive {
            GoneCause::ChannelClosed
        } else {
            GoneCause::LinkLost
        });
        if cause == GoneCause::LinkLost {
            fx.reconnect = Some(generation);
        }
        self.end_live(cause, &mut fx);
        fx
    }

    /// The connection is being replaced: whatever shell there was went with the old one
    /// (a persistent one stays in tmux, detached). No reconnection is asked for: the
    /// caller is the one reconnecting.
    pub(super) fn link_lost(&mut self) -> Effects {
        let mut fx = Effects::default();
        self.end_live(GoneCause::LinkLost, &mut fx);
        fx
    }

    /// Whether a channel of `generation` is older than the current shell's: a link loss
    /// it reported was already dealt with.
    pub(super) fn is_stale(&self, generation: u64) -> bool {
        generation < self.generation
    }

    /// The current channel ended for `cause`.
    fn end_live(&mut self, cause: GoneCause, fx: &mut Effects) {
        match std::mem::replace(&mut self.life, Life::Gone(None)) {
            Life::Priming {
                live, resync: true, ..
            } => {
                // The shell being resynchronised ended: as if it had been ready.
                self.life = Life::Ready(live);
                self.end_live(cause, fx);
            }
            Life::Priming { previous, .. } => {
                // The claimer sees it in its verdict and decides.
                self.life = Life::Starting {
                    previous,
                    resume: None,
                    failed: Some(cause),
                };
            }
            Life::Ready(live) if self.persistent && cause == GoneCause::LinkLost => {
                // The shell and its command go on in tmux. A command whose keys were not
                // confirmed may never have reached it: its outcome is unknown.
                self.life = Life::Detached(live.parser);
                if !self.commands.running_was_typed() {
                    self.finish(Outcome::LinkLost, fx);
                }
                if self.console.attached() > 0 {
                    fx.terminal.push(TerminalEvent::Notice(format!(
                        "{cause}; reconnecting: the shell goes on in tmux, and what it prints \
                         meanwhile is shown once the link is back"
                    )));
                }
            }
            Life::Ready(mut live) => {
                let mut events = Vec::new();
                live.parser.finish(&mut events);
                for event in events {
                    self.apply(event, fx);
                }
                let outcome = match &cause {
                    GoneCause::LinkLost => Outcome::LinkLost,
                    other => Outcome::ShellGone(other.clone()),
                };
                self.finish(outcome, fx);
                if self.console.attached() > 0 {
                    fx.terminal.push(match &cause {
                        GoneCause::LinkLost => TerminalEvent::Notice(format!(
                            "{cause}; reconnecting (a new shell starts, with the working \
                             directory and exported variables restored)"
                        )),
                        other => TerminalEvent::Ended(other.to_string()),
                    });
                }
                self.life = Life::Gone(Some(cause));
            }
            other => self.life = other,
        }
    }

    fn live(&self, generation: u64) -> Option<&Live> {
        match &self.life {
            Life::Priming { live, .. } | Life::Ready(live) if live.generation == generation => {
                Some(live)
            }
            _ => None,
        }
    }

    fn live_mut(&mut self, generation: u64) -> Option<&mut Live> {
        match &mut self.life {
            Life::Priming { live, .. } | Life::Ready(live) if live.generation == generation => {
                Some(live)
            }
            _ => None,
        }
    }

    fn apply(&mut self, event: Event, fx: &mut Effects) {
        let running = self.commands.running_id();
        match (&mut self.life, event) {
            // Resynchronising: the command is still current, its output and its marker
            // (if the shell was only slow) still count.
            (Life::Priming { resync: true, .. }, Event::Output(bytes)) => {
                self.command_output(&bytes, fx)
            }
            (
                Life::Priming { resync: true, .. },
                Event::Done {
                    id, exit_code, cwd, ..
                },
            ) if running == Some(id) => {
                self.cwd = String::from_utf8_lossy(&cwd).into_owned();
                self.finish(Outcome::Exited(exit_code), fx);
            }
            (Life::Priming { log, .. }, Event::Output(bytes)) => {
                log.extend_from_slice(&bytes);
                let excess = log.len().saturating_sub(PRIME_LOG_CAP);
                log.drain(..excess);
            }
            (Life::Priming { answered, .. }, Event::Ready { pid, flavor, cwd })
                if flavor == ShellFlavor::Zsh =>
            {
                // zsh's line editor may still have been reading as the prime arrived, and
                // lose part of the probe line typed after it (seen under load): what is
                // left of it would join the first command into a parse error. Ready once
                // the probe comes back; until then the claimer types it again.
                *answered = Some(Answered { pid, flavor, cwd });
            }
            (Life::Priming { .. }, Event::Ready { pid, flavor, cwd }) => {
                // Ready as soon as R arrives: bash and dash read the probe line without an
                // editor; it only tells a non-POSIX shell apart.
                self.primed(Answered { pid, flavor, cwd }, fx);
            }
            (Life::Priming { answered, .. }, Event::Probe) if answered.is_some() => {
                if let Some(answer) = answered.take() {
                    self.primed(answer, fx);
                }
            }
            (Life::Priming { probed, .. }, Event::Probe) => {
                *probed = true;
            }
            (_, Event::Output(bytes)) => self.command_output(&bytes, fx),
            (
                Life::Ready(_),
                Event::Done {
                    id,
                    exit_code,
                    cwd,
                    editor,
                },
            ) if running == Some(id) => {
                self.cwd = String::from_utf8_lossy(&cwd).into_owned();
                self.editor_back = editor;
                self.finish(Outcome::Exited(exit_code), fx);
                self.enter_if_attached(fx);
            }
            (Life::Ready(_), event) => self.interactive_event(event, fx),
            // A late ready/probe, or the marker of a command no longer current.
            _ => {}
        }
    }

    /// The shell answered its prime: commands may run.
    fn primed(&mut self, answer: Answered, fx: &mut Effects) {
        self.cwd = String::from_utf8_lossy(&answer.cwd).into_owned();
        self.shell_pid = Some(answer.pid);
        self.flavor = answer.flavor;
        if let Life::Priming { live, resync, .. } =
            std::mem::replace(&mut self.life, Life::Gone(None))
        {
            self.life = Life::Ready(live);
            if resync {
                // Primed again: whatever the command did, its end was not seen.
                self.mode = Mode::Agent;
                self.console.new_shell();
                self.finish(Outcome::Untracked, fx);
            }
            self.enter_if_attached(fx);
        }
    }

    fn command_output(&mut self, raw: &[u8], fx: &mut Effects) {
        self.last_activity = SystemTime::now();
        let decoded = self.terminal.decode(raw);
        if self.console.attached() > 0 {
            fx.terminal
                .push(TerminalEvent::Output(bytes::Bytes::copy_from_slice(raw)));
        }
        if self.mode != Mode::Agent {
            // Interactive: the prompt and the echo of typing are nobody's output.
            if self.console.output_open() {
                self.deliver(decoded, fx);
            }
            return;
        }
        if self.editor_back && !self.is_running() {
            // The line editor's prompt, printed as it began to read: not anyone's output.
            return;
        }
        let output = self.echo.filter(decoded);
        self.deliver(output, fx);
    }

    fn deliver(&mut self, bytes: Vec<u8>, fx: &mut Effects) {
        if bytes.is_empty() {
            return;
        }
        if let Some(sink) = self.commands.deliver(bytes, &mut fx.wakers) {
            fx.backpressure = Some(sink);
        }
    }

    /// Ends the running command, if one runs; its stream gets its final event.
    fn finish(&mut self, outcome: Outcome, fx: &mut Effects) {
        let held = self.echo.release();
        self.deliver(held, fx);
        let tail = self.terminal.flush();
        self.deliver(tail, fx);
        let id = self.commands.running_id();
        self.commands.finish(outcome, &self.cwd, &mut fx.wakers);
        if let Some(id) = id.filter(|id| self.console.human_running() == Some(*id)) {
            let done = self.commands.entry(id).map(|e| HumanCommand {
                command: e.command.clone(),
                exit_code: e.exit_code,
                cwd: self.cwd.clone(),
                started_at: e.started_at,
                duration: e.duration,
                output: self.commands.excerpt(EXCERPT),
                source: e.source.clone(),
            });
            self.console.human_ended(id, done);
        }
    }

    // ---- commands -----------------------------------------------------------------

    /// Starts bookkeeping for `command` and says what to type, or why not now.
    pub(super) fn begin_command(
        &mut self,
        command: &str,
        source: &str,
        stream: bool,
        human: HumanActivity,
    ) -> std::result::Result<(Begun, Effects), Refusal> {
        if self.closed {
            return Err(Refusal::Fail(Error::Closed {
                session: self.name.clone(),
            }));
        }
        let prefix = LinePrefix {
            discard_partial: self.pty && self.typed_extra,
            echo_off: self.echo.seen(),
            editor_off: self.editor_back,
        };
        let Some(line) = command_line(command, self.flavor, self.commands.next_id(), prefix) else {
            return Err(Refusal::Fail(Error::InvalidCommand {
                session: self.name.clone(),
                reason: "it contains a NUL byte, which cannot be typed into a shell".into(),
            }));
        };
        match self.link.status() {
            SessionStatus::Connecting | SessionStatus::Reconnecting { .. } => {
                return Err(Refusal::Wait)
            }
            SessionStatus::Error { detail, .. } => {
                return Err(Refusal::Fail(Error::Disconnected {
                    session: self.name.clone(),
                    detail: detail.clone(),
                }))
            }
            SessionStatus::Connected | SessionStatus::Closed => {}
        }
        if let Some(e) = self.persons_command() {
            return Err(Refusal::Fail(e));
        }
        if let Some((command, running_for)) = self.commands.running() {
            return Err(Refusal::Fail(Error::Busy {
                session: self.name.clone(),
                command,
                running_for,
            }));
        }
        let input = match &self.life {
            Life::Ready(live) => live.input.clone(),
            // The reconnection restores this one (or gives up, and says so in the status).
            Life::Gone(Some(GoneCause::LinkLost)) => return Err(Refusal::Wait),
            Life::Gone(_) => match self.claim_start() {
                Claim::Claimed { previous, .. } => return Err(Refusal::NeedShell(previous)),
                Claim::InProgress | Claim::Ready => return Err(Refusal::Wait),
            },
            Life::Starting { .. } | Life::Priming { .. } | Life::Detached(_) => {
                return Err(Refusal::Wait)
            }
        };
        let line = match self.mode {
            Mode::Agent => line,
            Mode::Entering | Mode::Leaving => return Err(Refusal::Wait),
            Mode::Interactive => self.at_the_prompt(command)?,
        };
        let unseen = self.console.take_unseen(source);
        if !unseen.is_empty() {
            let cwd = self.cwd.clone();
            match human {
                HumanActivity::RefuseOnce => {
                    return Err(Refusal::Fail(Error::HumanActivity {
                        session: self.name.clone(),
                        commands: unseen,
                        cwd,
                    }))
                }
                HumanActivity::Report => self.commands.add_notices([Notice::HumanActivity {
                    commands: unseen,
                    cwd,
                }]),
                HumanActivity::Ignore => {}
            }
        }
        let mut fx = Effects::default();
        let (id, sink) = self.commands.begin(command, source, stream, &mut fx.wakers);
        self.terminal.new_command();
        self.typed_extra = false;
        if self.mode == Mode::Interactive {
            // Typed at the person's prompt: its start and end come from the shell's hooks.
            self.console.leave_prompt();
        } else if prefix.editor_off {
            self.echo.arm_skip_line(EDITOR_OFF_LINE.as_bytes());
        } else if self.pty {
            self.echo.arm(vec![echo_of(&line).to_vec()]);
        }
        self.editor_back = false;
        self.last_activity = SystemTime::now();
        Ok((
            Begun {
                id,
                line,
                input,
                sink,
            },
            fx,
        ))
    }

    /// Command `id`'s keys reached the shell.
    pub(super) fn typed(&mut self, id: u64) {
        self.commands.typed(id);
    }

    /// Typing command `id` failed: the channel or its link is going; whether any of it
    /// reached the shell is unknown.
    pub(super) fn typing_failed(&mut self, id: u64) -> Effects {
        let mut fx = Effects::default();
        if self.commands.running_id() == Some(id) {
            self.finish(Outcome::LinkLost, &mut fx);
        }
        fx
    }

    /// The current command's result from its read cursor on, if it has ended, new output
    /// arrived and `on_output`, or the wait `expired`. `Err(NotRunning)` if there never
    /// was a command.
    pub(super) fn poll_result(
        &mut self,
        on_output: bool,
        expired: bool,
    ) -> Result<Option<ExecResult>> {
        let result = self
            .commands
            .poll_result(&self.name, &self.cwd, on_output, expired)?;
        match result {
            // Ended by closing the session, not by its shell: say that, not "shell exited".
            Some(r) if self.closed && r.state == CommandState::ShellExited => Err(Error::Closed {
                session: self.name.clone(),
            }),
            other => Ok(other),
        }
    }

    /// Command `id`'s result, as [`poll_result`](Self::poll_result) without `on_output`,
    /// even if another command began since it ended.
    pub(super) fn poll_result_of(&mut self, id: u64, expired: bool) -> Result<Option<ExecResult>> {
        self.commands
            .poll_result_of(id, &self.name, &self.cwd, expired)
    }

    /// The running command's id.
    pub(super) fn running_id(&self) -> Option<u64> {
        self.commands.running_id()
    }

    /// The shell's input, for a program's bytes or signals meant for the running command
    /// (noted: what the command does not read must not reach the next command line). A
    /// person's command is theirs: programs neither type into it nor signal it.
    pub(super) fn input_for_running(&mut self) -> Result<Arc<dyn ChannelInput>> {
        if self.commands.running_id().is_none() {
            return Err(Error::NotRunning {
                session: self.name.clone(),
            });
        }
        if let Some(refusal) = self.persons_command() {
            return Err(refusal);
        }
        match &self.life {
            Life::Ready(live) => {
                self.typed_extra = true;
                Ok(live.input.clone())
            }
            _ => Err(Error::Disconnected {
                session: self.name.clone(),
                detail: "the shell is not reachable right now (reconnecting or restarting); \
                         try again in a moment"
                    .into(),
            }),
        }
    }

    /// What an interrupt needs: the shell's input, its pid, whether it has a terminal.
    pub(super) fn interrupt_target(
        &mut self,
    ) -> Result<(Arc<dyn ChannelInput>, Option<u32>, bool)> {
        Ok((self.input_for_running()?, self.shell_pid, self.pty))
    }

    /// The shell's process id, once it answered its prime.
    pub(super) fn shell_pid(&self) -> Option<u32> {
        self.shell_pid
    }

    /// Whether a command is running.
    pub(super) fn is_running(&self) -> bool {
        self.commands.running_id().is_some()
    }

    /// The running command's text.
    pub(super) fn running_command(&self) -> Option<String> {
        self.commands.running().map(|(command, _)| command)
    }

    /// The refusal for a program that would run or stop something while a person's
    /// command runs: it is theirs, and only they stop it (Ctrl-C at their terminal).
    pub(super) fn persons_command(&self) -> Option<Error> {
        self.console.human_running()?;
        let (command, running_for) = self.commands.running()?;
        Some(Error::HumanBusy {
            session: self.name.clone(),
            terminal: self.commands.running_source().unwrap_or("attach").into(),
            command,
            typing: false,
            running_for,
        })
    }

    // ---- ending a shell on purpose ------------------------------------------------

    /// The running command's marker may never come back (its shell was replaced by `exec
    /// bash`, its output goes nowhere, our variables were unset): the caller types the prime
    /// again, with the same nonce, into the same shell. Returns its input and nonce, or
    /// `None` if command `id` is not the one running in a ready shell. If the shell
    /// answers, the command ends as untracked (or normally, should its own marker come
    /// first); if not, the caller replaces the shell.
    pub(super) fn resync(&mut self, id: u64) -> Option<(Arc<dyn ChannelInput>, Nonce)> {
        if self.running_id() != Some(id) || !matches!(self.life, Life::Ready(_)) {
            return None;
        }
        let Life::Ready(live) = std::mem::replace(&mut self.life, Life::Gone(None)) else {
            unreachable!("matched above")
        };
        let found = (live.input.clone(), live.parser.nonce().clone());
        self.life = Life::Priming {
            live,
            previous: None,
            log: Vec::new(),
            probed: false,
            resync: true,
            answered: None,
        };
        Some(found)
    }

    /// The running command would not stop, or its shell stopped answering (`cause`): it
    /// ends as killed, and the caller, who now owns the start of the next shell, gets the
    /// old shell's input to close.
    pub(super) fn replace_shell(
        &mut self,
        cause: GoneCause,
    ) -> (Option<Arc<dyn ChannelInput>>, Effects) {
        let mut fx = Effects::default();
        self.finish(Outcome::Killed, &mut fx);
        let old = match std::mem::replace(&mut self.life, Life::Gone(None)) {
            Life::Ready(live) | Life::Priming { live, .. } => Some(live.input),
            _ => None,
        };
        self.life = Life::Starting {
            previous: Some(cause),
            resume: None,
            failed: None,
        };
        (old, fx)
    }

    /// A detached persistent shell turned out to be gone: its command's outcome is
    /// unknown, and the next shell is a new one (the caller keeps the start).
    pub(super) fn resume_impossible(&mut self) -> Effects {
        let mut fx = Effects::default();
        self.finish(Outcome::LinkLost, &mut fx);
        if let Life::Starting {
            resume, previous, ..
        } = &mut self.life
        {
            *resume = None;
            *previous = Some(GoneCause::TmuxGone);
        }
        fx
    }

    /// Closing begins: no new command starts. `None` if it had begun already; else the
    /// shell's input, if there is a shell, and whether it was idle (so that it can be
    /// ended gracefully).
    pub(super) fn begin_close(&mut self) -> Option<ClosingShell> {
        if std::mem::replace(&mut self.closed, true) {
            return None;
        }
        Some(match &self.life {
            Life::Ready(live) => Some((live.input.clone(), !self.is_running())),
            Life::Priming { live, .. } => Some((live.input.clone(), false)),
            _ => None,
        })
    }

    /// Whether the shell's channel has ended (after a graceful `exit`).
    pub(super) fn shell_gone(&self) -> bool {
        matches!(self.life, Life::Gone(_))
    }

    /// Closed: a running command ends, its stream gets its final event.
    pub(super) fn closed(&mut self) -> Effects {
        let mut fx = Effects::default();
        self.closed = true;
        self.finish(Outcome::ShellGone(GoneCause::Closed), &mut fx);
        self.life = Life::Gone(Some(GoneCause::Closed));
        fx.terminal
            .push(TerminalEvent::Ended(GoneCause::Closed.to_string()));
        fx.status
            .extend(self.link.set_status(SessionStatus::Closed));
        fx
    }

    /// Whether the session was closed.
    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    // ---- views --------------------------------------------------------------------

    /// The connection status.
    pub(super) fn status(&self) -> &SessionStatus {
        self.link.status()
    }

    /// The last known working directory, if any.
    pub(super) fn cwd(&self) -> Option<String> {
        (!self.cwd.is_empty()).then(|| self.cwd.clone())
    }

    /// The terminal screen as text.
    pub(super) fn screen(&self) -> String {
        self.terminal.contents()
    }

    /// Resizes the screen model; returns the shell's input if its PTY must be told.
    pub(super) fn resize(&mut self, cols: u16, rows: u16) -> Option<Arc<dyn ChannelInput>> {
        self.terminal.resize(cols, rows);
        match &self.life {
            Life::Ready(live) if self.pty => Some(live.input.clone()),
            _ => None,
        }
    }

    /// Commands run so far, oldest first.
    pub(super) fn history(&self) -> Vec<HistoryEntry> {
        self.commands.history()
    }

    /// A snapshot for listings; `lost` says the connection is known dead even though no
    /// reader noticed yet.
    pub(super) fn info(&self, base: SessionInfo, lost: Option<String>) -> SessionInfo {
        let base = SessionInfo {
            created: self.created,
            last_activity: self.last_activity,
            command_count: self.commands.count(),
            cwd: self.cwd.clone(),
            running: self.commands.running().map(|(command, _)| command),
            running_source: self.commands.running_source().map(str::to_owned),
            // Not `persons_command()`: a listing needs the flag, not a refusal built.
            running_by_person: self.console.human_running().is_some()
                && self.commands.running_id().is_some(),
            attached: self.console.attached(),
            persistent: self.persistent,
            resumed: self.resumed,
            ..base
        };
        self.link.info(base, lost, self.last_activity)
    }
}

#[path = "machine_people.rs"]
mod people;
use people::Mode;
pub(super) use people::ECHO_WAIT;

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
