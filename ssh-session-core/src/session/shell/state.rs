//! A session's mutable state and how stream events change it. Everything here is
//! synchronous and runs under the session's state mutex for microseconds: no I/O, no await.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::super::output::OutputBuffer;
use super::super::types::{CommandState, ExecResult, HistoryEntry, Notice, SessionStatus};
use super::StreamEvent;
use crate::protocol::{Event, MarkerParser, OnlcrDecoder, ShellFlavor};
use crate::transport::ChannelInput;

/// Output that arrives between commands (job notifications, a background job's prints) is
/// kept here, bounded, and shown at the start of the next command's output, where a
/// terminal would show it.
const IDLE_OUTPUT_CAP: usize = 64 << 10;

/// The live shell: where to type. (`State::generation` numbers shells, so a late event
/// from a dead shell's channel can never touch its successor.)
#[derive(Clone, Debug)]
pub(super) struct Shell {
    pub input: Arc<dyn ChannelInput>,
}

/// Where the current shell is in its life.
pub(super) enum Phase {
    /// The prime was sent; waiting for the ready and probe markers.
    Priming {
        log: Vec<u8>,
        ready: Option<(u32, ShellFlavor)>,
        probed: bool,
    },
    /// Primed; commands may run.
    Ready,
    /// No shell (never started, or it ended).
    Dead,
}

/// How a command ended.
#[derive(Clone, Debug)]
pub(super) enum Outcome {
    Exited(i32),
    ShellExited(Option<i32>),
    LinkLost,
    Killed,
}

/// The current (or most recent) command.
pub(super) struct CommandRun {
    pub id: u64,
    pub command: String,
    pub started: Instant,
    pub output: OutputBuffer,
    /// Stream offset up to which output was already handed to a caller.
    pub cursor: u64,
    pub outcome: Option<(Outcome, Instant)>,
    pub notices: Vec<Notice>,
    pub stream: Option<mpsc::Sender<StreamEvent>>,
    /// Bytes the streaming caller actually took out of the stream: where `read_output`
    /// goes on once the stream is dropped (chunks still queued in it were never seen).
    pub stream_consumed: Option<Arc<AtomicU64>>,
}

impl CommandRun {
    /// A stream whose receiver was dropped stops consuming: from then on the output is
    /// `read_output`'s, from the first byte the caller did not take.
    pub(super) fn settle_stream(&mut self) {
        if self.stream.as_ref().is_some_and(|tx| tx.is_closed()) {
            self.stream = None;
            if let Some(consumed) = self.stream_consumed.take() {
                self.cursor = consumed.load(Ordering::Acquire);
            }
        }
    }
}

/// Everything about a session that changes.
pub(super) struct State {
    pub status: SessionStatus,
    pub shell: Option<Shell>,
    pub phase: Phase,
    pub generation: u64,
    pub parser: Option<MarkerParser>,
    pub decoder: OnlcrDecoder,
    pub pty: bool,
    pub flavor: ShellFlavor,
    pub shell_pid: Option<u32>,
    pub cwd: String,
    pub current: Option<CommandRun>,
    pub next_id: u64,
    pub idle: OutputBuffer,
    pub screen: vt100::Parser,
    pub history: VecDeque<(u64, HistoryEntry)>,
    pub history_limit: usize,
    pub command_count: u64,
    pub created: SystemTime,
    pub last_activity: SystemTime,
    /// Why the last shell ended, reported when the next one starts.
    pub death: Option<String>,
    /// Exit status reported by the channel, if any.
    pub exit_status: Option<i32>,
    pub max_output: usize,
    /// Notices for the next command (e.g. the POSIX fallback chosen at start).
    pub pending: Vec<Notice>,
    /// Whether the current shell's channel reported how it ended (exit status or signal):
    /// a channel that closes without saying so was cut with its connection.
    pub exit_seen: bool,
    pub last_error: Option<(String, SystemTime)>,
    pub reconnects: u32,
    pub connected_since: Option<SystemTime>,
    /// The shell lives in remote tmux: a lost link leaves it (and its command) running.
    pub persistent: bool,
    pub resumed: bool,
}

/// Stream chunks to deliver once the lock is released.
pub(super) type Deliveries = Vec<(mpsc::Sender<StreamEvent>, StreamEvent)>;

impl State {
    pub(super) fn new(pty: Option<(u16, u16)>, max_output: usize, history_limit: usize) -> Self {
        let (cols, rows) = pty.unwrap_or((80, 24));
        let now = SystemTime::now();
        State {
            status: SessionStatus::Connecting,
            shell: None,
            phase: Phase::Dead,
            generation: 0,
            parser: None,
            decoder: OnlcrDecoder::default(),
            pty: pty.is_some(),
            flavor: ShellFlavor::Posix,
            shell_pid: None,
            cwd: String::new(),
            current: None,
            next_id: 1,
            idle: OutputBuffer::new(IDLE_OUTPUT_CAP),
            screen: vt100::Parser::new(nonzero(rows), nonzero(cols), 0),
            history: VecDeque::new(),
            history_limit,
            command_count: 0,
            created: now,
            last_activity: now,
            death: None,
            exit_status: None,
            max_output,
            pending: Vec::new(),
            exit_seen: false,
            last_error: None,
            reconnects: 0,
            connected_since: None,
            persistent: false,
            resumed: false,
        }
    }

    /// The running command, if one is running.
    pub(super) fn running(&self) -> Option<&CommandRun> {
        self.current.as_ref().filter(|c| c.outcome.is_none())
    }

    /// Applies raw bytes from shell `generation`'s stdout.
    pub(super) fn on_output(&mut self, generation: u64, data: &[u8], out: &mut Deliveries) {
        if generation != self.generation {
            return;
        }
        let Some(parser) = self.parser.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        parser.feed(data, &mut events);
        for event in events {
            self.apply(event, out);
        }
    }

    /// Applies stderr (pipes only: no marker can be there).
    pub(super) fn on_stderr(&mut self, generation: u64, data: &[u8], out: &mut Deliveries) {
        if generation == self.generation {
            self.apply(Event::Output(data.to_vec()), out);
        }
    }

    /// The channel of shell `generation` closed: the shell is gone, and with it the
    /// connection if `link_lost`. Returns whether that applied to the current shell.
    pub(super) fn on_closed(
        &mut self,
        generation: u64,
        link_lost: bool,
        out: &mut Deliveries,
    ) -> bool {
        if generation != self.generation {
            return false;
        }
        let link_lost = link_lost && matches!(self.phase, Phase::Ready);
        if link_lost && self.persistent {
            // The shell and its command go on in tmux; the stream resumes where it stopped,
            // through the same parser.
            self.shell = None;
            return true;
        }
        let mut events = Vec::new();
        if let Some(parser) = self.parser.as_mut() {
            parser.finish(&mut events);
        }
        for event in events {
            self.apply(event, out);
        }
        let status = self.exit_status.take();
        self.death = Some(match status {
            Some(code) => format!("the shell exited with status {code}"),
            None => "the shell's channel was closed".to_string(),
        });
        if link_lost {
            self.death = Some("the connection was lost".to_string());
        }
        self.shell = None;
        self.parser = None;
        self.phase = Phase::Dead;
        if self.running().is_some() {
            let outcome = if link_lost {
                Outcome::LinkLost
            } else {
                Outcome::ShellExited(status)
            };
            self.finish(outcome, out);
        }
        link_lost
    }

    fn apply(&mut self, event: Event, out: &mut Deliveries) {
        let running_id = self.running().map(|run| run.id);
        match (&mut self.phase, event) {
            (Phase::Priming { log, .. }, Event::Output(bytes)) => {
                log.extend_from_slice(&bytes);
                let excess = log.len().saturating_sub(4096);
                log.drain(..excess);
            }
            (Phase::Priming { ready, .. }, Event::Ready { pid, flavor, cwd }) => {
                *ready = Some((pid, flavor));
                self.cwd = String::from_utf8_lossy(&cwd).into_owned();
            }
            (Phase::Priming { probed, .. }, Event::Probe) => *probed = true,
            (_, Event::Output(bytes)) => self.on_command_output(&bytes, out),
            (Phase::Ready, Event::Done { id, exit_code, cwd }) if running_id == Some(id) => {
                self.cwd = String::from_utf8_lossy(&cwd).into_owned();
                self.finish(Outcome::Exited(exit_code), out);
            }
            _ => {}
        }
    }

    fn on_command_output(&mut self, raw: &[u8], out: &mut Deliveries) {
        self.last_activity = SystemTime::now();
        if self.pty {
            self.screen.process(raw);
        }
        let mut decoded = Vec::with_capacity(raw.len());
        if self.pty {
            self.decoder.decode(raw, &mut decoded);
        } else {
            decoded.extend_from_slice(raw);
        }
        self.deliver(decoded, out);
    }

    fn deliver(&mut self, bytes: Vec<u8>, out: &mut Deliveries) {
        if bytes.is_empty() {
            return;
        }
        match self.current.as_mut().filter(|c| c.outcome.is_none()) {
            Some(run) => {
                run.output.push(&bytes);
                run.settle_stream();
                if let Some(tx) = &run.stream {
                    out.push((tx.clone(), StreamEvent::Output(Bytes::from(bytes))));
                }
            }
            None => self.idle.push(&bytes),
        }
    }

    /// Ends the running command.
    pub(super) fn finish(&mut self, outcome: Outcome, out: &mut Deliveries) {
        let mut tail = Vec::new();
        self.decoder.flush(&mut tail);
        self.deliver(tail, out);
        let cwd = self.cwd.clone();
        let Some(run) = self.current.as_mut().filter(|c| c.outcome.is_none()) else {
            return;
        };
        run.settle_stream();
        let now = Instant::now();
        run.outcome = Some((outcome.clone(), now));
        let exit_code = match outcome {
            Outcome::Exited(c) => Some(c),
            Outcome::ShellExited(c) => c,
            Outcome::LinkLost | Outcome::Killed => None,
        };
        if let Some((_, entry)) = self.history.iter_mut().rev().find(|(id, _)| *id == run.id) {
            entry.exit_code = exit_code;
            entry.duration = Some(now - run.started);
        }
        if let Some(tx) = run.stream.take() {
            run.stream_consumed = None;
            let mut result = result_of(run, &cwd, now);
            // The bytes already went out as chunks.
            result.output.clear();
            run.cursor = run.output.total();
            out.push((tx, StreamEvent::Finished(result)));
        }
    }

    /// Starts bookkeeping for a new command; returns its id and the idle output that now
    /// opens its output (a streaming caller must be sent it first).
    pub(super) fn begin(
        &mut self,
        command: &str,
        source: String,
        mut notices: Vec<Notice>,
        stream: Option<mpsc::Sender<StreamEvent>>,
    ) -> (u64, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        let now = SystemTime::now();
        let mut output = OutputBuffer::new(self.max_output);
        let (idle, _) = self.idle.take_all();
        output.push(&idle);
        notices.splice(0..0, self.pending.drain(..));
        self.decoder = OnlcrDecoder::default();
        self.current = Some(CommandRun {
            id,
            command: command.to_string(),
            started: Instant::now(),
            cursor: 0,
            output,
            outcome: None,
            notices,
            stream_consumed: stream.as_ref().map(|_| Arc::new(AtomicU64::new(0))),
            stream,
        });
        self.command_count += 1;
        self.last_activity = now;
        self.history.push_back((
            id,
            HistoryEntry {
                command: command.to_string(),
                exit_code: None,
                started_at: now,
                duration: None,
                source,
            },
        ));
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        (id, idle)
    }

    /// The result for the current command from its read cursor on, advancing the cursor.
    pub(super) fn take_result(&mut self) -> Option<ExecResult> {
        let cwd = self.cwd.clone();
        let run = self.current.as_mut()?;
        run.settle_stream();
        let result = result_of(run, &cwd, Instant::now());
        run.cursor = run.output.total();
        run.notices.clear();
        Some(result)
    }

    pub(super) fn resize(&mut self, cols: u16, rows: u16) {
        self.screen.set_size(nonzero(rows), nonzero(cols));
    }
}

fn result_of(run: &CommandRun, cwd: &str, now: Instant) -> ExecResult {
    let (output, dropped_bytes) = run.output.read_from(run.cursor);
    let (state, exit_code, end) = match &run.outcome {
        None => (CommandState::Running, None, now),
        Some((Outcome::Exited(c), at)) => (CommandState::Exited, Some(*c), *at),
        Some((Outcome::ShellExited(c), at)) => (CommandState::ShellExited, *c, *at),
        Some((Outcome::LinkLost, at)) => (CommandState::LinkLost, None, *at),
        Some((Outcome::Killed, at)) => (CommandState::Killed, None, *at),
    };
    ExecResult {
        command: run.command.clone(),
        output,
        exit_code,
        state,
        cwd: cwd.to_string(),
        duration: end.saturating_duration_since(run.started),
        output_bytes: run.output.total(),
        dropped_bytes,
        notices: run.notices.clone(),
    }
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

/// How long a command has been running, for busy errors.
pub(super) fn running_for(run: &CommandRun) -> Duration {
    run.started.elapsed()
}
