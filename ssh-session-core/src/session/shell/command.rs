//! The session's commands: the current one's output, outcome and stream, the output
//! between commands, the notices for the next one, and the history. Pure bookkeeping for
//! the [`Machine`](super::machine::Machine), which decides when a command begins and ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::effects::GoneCause;
use crate::error::{Error, Result};
use crate::session::output::OutputBuffer;
use crate::session::stream::{Sink, StreamEvent};
use crate::session::types::{CommandState, ExecResult, HistoryEntry, Notice};

/// Output that arrives between commands (job notifications, a background job's prints) is
/// kept here, bounded, and shown at the start of the next command's output, where a
/// terminal would show it.
const IDLE_OUTPUT_CAP: usize = 64 << 10;

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Its marker came back with this exit code.
    Exited(i32),
    /// Its shell ended while it ran.
    ShellGone(GoneCause),
    /// Its connection was lost while it ran, or before its keys were confirmed typed:
    /// whether and how it ran is unknown.
    LinkLost,
    /// It would not stop, so its shell was killed.
    Killed,
    /// Its marker never came; the shell answered a new prime instead (see
    /// `Machine::resync`).
    Untracked,
}

/// The current (or most recent) command.
struct CommandRun {
    id: u64,
    command: String,
    source: String,
    started: Instant,
    output: OutputBuffer,
    /// Stream offset up to which output was already handed to a caller.
    cursor: u64,
    outcome: Option<(Outcome, Instant)>,
    notices: Vec<Notice>,
    /// An `exec_stream` consumer, while it listens.
    stream: Option<Arc<Sink>>,
    /// Its keys reached the shell: the write returned (and, for a persistent shell, tmux
    /// confirmed them). A command lost before that never ran as far as anyone can tell.
    typed: bool,
}

impl CommandRun {
    fn running(&self) -> bool {
        self.outcome.is_none()
    }

    /// A dropped stream stops consuming: from then on the output is `read_output`'s, from
    /// the first byte the consumer did not take (chunks still queued were never seen).
    fn settle_stream(&mut self) {
        if let Some(consumed) = self.stream.as_ref().and_then(|s| s.dropped()) {
            self.stream = None;
            self.cursor = consumed;
        }
    }

    fn result(&self, cwd: &str, now: Instant) -> ExecResult {
        let (output, dropped_bytes) = self.output.read_from(self.cursor);
        let (state, exit_code, end) = match &self.outcome {
            None => (CommandState::Running, None, now),
            Some((outcome, at)) => (outcome.state(), outcome.exit_code(), *at),
        };
        ExecResult {
            command: self.command.clone(),
            output,
            exit_code,
            state,
            cwd: cwd.to_string(),
            duration: end.saturating_duration_since(self.started),
            output_bytes: self.output.total(),
            dropped_bytes,
            notices: self.notices.clone(),
            waiting_for: self.running().then(|| self.prompt()).flatten(),
        }
    }

    /// The secret prompt the output ends with (however much of it was handed out).
    fn prompt(&self) -> Option<crate::session::SecretPrompt> {
        const TAIL: u64 = 512;
        let (tail, _) = self
            .output
            .read_from(self.output.total().saturating_sub(TAIL));
        crate::session::prompt::detect(&tail)
    }
}

impl Outcome {
    fn state(&self) -> CommandState {
        match self {
            Outcome::Exited(_) => CommandState::Exited,
            Outcome::ShellGone(_) => CommandState::ShellExited,
            Outcome::LinkLost => CommandState::LinkLost,
            Outcome::Killed => CommandState::Killed,
            Outcome::Untracked => CommandState::Untracked,
        }
    }

    /// The command's exit code, or its shell's when the shell exited while it ran.
    fn exit_code(&self) -> Option<i32> {
        match self {
            Outcome::Exited(c) | Outcome::ShellGone(GoneCause::Exited(c)) => Some(*c),
            _ => None,
        }
    }
}

/// Every command of a session, as far as it is remembered.
pub(super) struct Commands {
    current: Option<CommandRun>,
    /// The run before `current`, until the next one begins.
    previous: Option<CommandRun>,
    next_id: u64,
    idle: OutputBuffer,
    max_output: usize,
    /// Notices for the next command (a restart, a reconnection, the POSIX fallback).
    pending: Vec<Notice>,
    history: VecDeque<(u64, HistoryEntry)>,
    history_limit: usize,
    count: u64,
}

impl Commands {
    pub(super) fn new(max_output: usize, history_limit: usize) -> Self {
        Commands {
            current: None,
            previous: None,
            next_id: 1,
            idle: OutputBuffer::new(IDLE_OUTPUT_CAP),
            max_output,
            pending: Vec::new(),
            history: VecDeque::new(),
            history_limit,
            count: 0,
        }
    }

    fn running_mut(&mut self) -> Option<&mut CommandRun> {
        self.current.as_mut().filter(|c| c.running())
    }

    /// The running command's id.
    pub(super) fn running_id(&self) -> Option<u64> {
        self.current.as_ref().filter(|c| c.running()).map(|c| c.id)
    }

    /// The running command's line and how long it has run.
    pub(super) fn running(&self) -> Option<(String, Duration)> {
        self.current
            .as_ref()
            .filter(|c| c.running())
            .map(|c| (c.command.clone(), c.started.elapsed()))
    }

    /// Who issued the running command (a program's source, or a person's terminal).
    pub(super) fn running_source(&self) -> Option<&str> {
        self.current
            .as_ref()
            .filter(|c| c.running())
            .map(|c| c.source.as_str())
    }

    /// The running command turned out to have another line (a person pasted several at
    /// once: each starts on its own, one `$?` ends them all).
    pub(super) fn extend_running(&mut self, line: &str) {
        let Some(run) = self.current.as_mut().filter(|c| c.running()) else {
            return;
        };
        run.command.push('\n');
        run.command.push_str(line);
        let (id, command) = (run.id, run.command.clone());
        if let Some((_, entry)) = self.history.iter_mut().rev().find(|(i, _)| *i == id) {
            entry.command = command;
        }
    }

    /// The running command's text, as its shell finally reported it.
    pub(super) fn set_running_text(&mut self, text: &str) {
        let Some(run) = self.current.as_mut().filter(|c| c.running()) else {
            return;
        };
        run.command = text.to_string();
        let id = run.id;
        if let Some((_, entry)) = self.history.iter_mut().rev().find(|(i, _)| *i == id) {
            entry.command = text.to_string();
        }
    }

    /// The current (or last) command's output, at most about `max` bytes of it: its head
    /// and tail around a marked cut.
    pub(super) fn excerpt(&self, max: usize) -> String {
        let Some(run) = &self.current else {
            return String::new();
        };
        let (bytes, _) = run.output.read_from(0);
        let text = String::from_utf8_lossy(&bytes);
        if text.len() <= max {
            return text.into_owned();
        }
        let cut = |i: usize| {
            (0..=i)
                .rev()
                .find(|&j| text.is_char_boundary(j))
                .unwrap_or(0)
        };
        let head = cut(max / 2);
        let tail = cut(text.len() - max / 2);
        format!(
            "{}\n[... {} bytes ...]\n{}",
            &text[..head],
            tail - head,
            &text[tail..]
        )
    }

    /// The history entry of command `id`, if it is still remembered.
    pub(super) fn entry(&self, id: u64) -> Option<&HistoryEntry> {
        self.history
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, e)| e)
    }

    /// Starts the record of a command a person typed at the terminal: unlike a program's,
    /// it takes neither the output printed before it (that was the prompt and the echo of
    /// their typing) nor the notices meant for the next program command.
    pub(super) fn begin_human(&mut self, command: &str, source: &str) -> u64 {
        let notices = std::mem::take(&mut self.pending);
        let (idle, _) = self.idle.take_all();
        let (id, _) = self.begin(command, source, false, &mut Vec::new());
        self.pending = notices;
        self.idle.push(&idle);
        self.typed(id);
        id
    }

    /// Whether the running command's keys reached the shell.
    pub(super) fn running_was_typed(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.running() && c.typed)
    }

    /// The id the next command gets.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Commands begun so far.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// Notices for the next command.
    pub(super) fn add_notices(&mut self, notices: impl IntoIterator<Item = Notice>) {
        self.pending.extend(notices);
    }

    /// Starts the record of a new command (the caller checked nothing runs): the output
    /// printed since the last one opens its output. Returns its id and, if `stream`, the
    /// sink its stream reads.
    pub(super) fn begin(
        &mut self,
        command: &str,
        source: &str,
        stream: bool,
        wakers: &mut Vec<Waker>,
    ) -> (u64, Option<Arc<Sink>>) {
        let id = self.next_id;
        self.next_id += 1;
        let now = SystemTime::now();
        let mut output = OutputBuffer::new(self.max_output);
        let (idle, _) = self.idle.take_all();
        output.push(&idle);
        let sink = stream.then(|| Arc::new(Sink::default()));
        if let (Some(sink), false) = (&sink, idle.is_empty()) {
            wakers.extend(sink.push(StreamEvent::Output(Bytes::from(idle))));
        }
        // The previous run stays readable by id until the next one begins: the stop
        // ladder reads the result of the command it stopped even if a queued command
        // began in the moment between.
        self.previous = self.current.take();
        self.current = Some(CommandRun {
            id,
            command: command.to_string(),
            source: source.to_string(),
            started: Instant::now(),
            cursor: 0,
            output,
            outcome: None,
            notices: std::mem::take(&mut self.pending),
            stream: sink.clone(),
            typed: false,
        });
        self.count += 1;
        self.history.push_back((
            id,
            HistoryEntry {
                command: command.to_string(),
                exit_code: None,
                started_at: now,
                duration: None,
                source: source.to_string(),
                cwd: None,
            },
        ));
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        (id, sink)
    }

    /// Command `id`'s keys reached the shell.
    pub(super) fn typed(&mut self, id: u64) {
        if let Some(run) = self.current.as_mut().filter(|c| c.id == id) {
            run.typed = true;
        }
    }

    /// Output for the running command (or, between commands, for the next one). Returns
    /// the stream sink it went to, if any, for flow control.
    pub(super) fn deliver(&mut self, bytes: Vec<u8>, wakers: &mut Vec<Waker>) -> Option<Arc<Sink>> {
        if bytes.is_empty() {
            return None;
        }
        let Some(run) = self.running_mut() else {
            self.idle.push(&bytes);
            return None;
        };
        run.output.push(&bytes);
        run.settle_stream();
        let sink = run.stream.clone()?;
        wakers.extend(sink.push(StreamEvent::Output(Bytes::from(bytes))));
        Some(sink)
    }

    /// Ends the running command, if one runs; its stream gets its final event.
    pub(super) fn finish(&mut self, outcome: Outcome, cwd: &str, wakers: &mut Vec<Waker>) {
        let Some(run) = self.current.as_mut().filter(|c| c.running()) else {
            return;
        };
        run.settle_stream();
        let now = Instant::now();
        if let Some((_, entry)) = self.history.iter_mut().rev().find(|(id, _)| *id == run.id) {
            entry.exit_code = outcome.exit_code();
            entry.duration = Some(now.saturating_duration_since(run.started));
            entry.cwd = Some(cwd.to_string());
        }
        run.outcome = Some((outcome, now));
        if let Some(sink) = run.stream.take() {
            // The bytes already went out as chunks.
            let mut last = run.result(cwd, now);
            last.output.clear();
            run.cursor = run.output.total();
            wakers.extend(sink.push(StreamEvent::Finished(last)));
        }
    }

    /// The current command's result from its read cursor on (advancing the cursor), if it
    /// has ended, new output arrived and `on_output`, or the wait `expired`.
    /// `Err(NotRunning)` if there never was a command.
    pub(super) fn poll_result(
        &mut self,
        session: &str,
        cwd: &str,
        on_output: bool,
        expired: bool,
    ) -> Result<Option<ExecResult>> {
        self.poll_run(None, session, cwd, on_output, expired)
    }

    /// [`poll_result`](Self::poll_result) for command `id` (the current or the previous
    /// one); `NotRunning` if it is neither.
    pub(super) fn poll_result_of(
        &mut self,
        id: u64,
        session: &str,
        cwd: &str,
        expired: bool,
    ) -> Result<Option<ExecResult>> {
        self.poll_run(Some(id), session, cwd, false, expired)
    }

    fn poll_run(
        &mut self,
        id: Option<u64>,
        session: &str,
        cwd: &str,
        on_output: bool,
        expired: bool,
    ) -> Result<Option<ExecResult>> {
        let run = match id {
            None => self.current.as_mut(),
            Some(id) => [self.current.as_mut(), self.previous.as_mut()]
                .into_iter()
                .flatten()
                .find(|run| run.id == id),
        };
        let Some(run) = run else {
            return Err(Error::NotRunning {
                session: session.to_string(),
            });
        };
        run.settle_stream();
        let fresh = run.output.total() > run.cursor;
        if !(run.outcome.is_some() || expired || (on_output && fresh)) {
            return Ok(None);
        }
        let result = run.result(cwd, Instant::now());
        run.cursor = run.output.total();
        run.notices.clear();
        Ok(Some(result))
    }

    /// Commands run so far, oldest first.
    pub(super) fn history(&self) -> Vec<HistoryEntry> {
        self.history.iter().map(|(_, e)| e.clone()).collect()
    }
}
