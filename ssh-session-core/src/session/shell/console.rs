//! The terminal as people share it with programs: who is attached, where the prompt is,
//! whether a person has started typing, and the commands people ran, for the programs that
//! must hear about them before they act. Pure bookkeeping for the
//! [`Machine`](super::machine::Machine), which decides when the shell changes hands.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::session::types::HumanCommand;

/// People's commands remembered for programs that have not heard of them yet.
const HUMAN_LOG: usize = 64;

/// Sources whose place in that log is remembered (a front end may use one per terminal).
const SOURCES: usize = 256;

/// Keys held while the shell changes modes (typed before its prompt is there).
const HELD_KEYS: usize = 64 << 10;

/// Output kept per person's command for the programs that hear of it.
pub(super) const EXCERPT: usize = 2048;

/// The people at the session's terminal, and what they did.
#[derive(Default)]
pub(super) struct Console {
    attached: usize,
    /// Where the cursor was when the shell's prompt ended, while the shell reads a line.
    prompt: Option<(u16, u16)>,
    /// Keys arrived at a prompt since the last line was taken in. A prompt printed again
    /// (the line editor redraws it, prompt mark included, after Tab Tab, Ctrl-L or a
    /// resize) keeps it: the line may still hold what a person typed.
    typed: bool,
    /// When keys were sent at the prompt, if the shell printed nothing since: their echo
    /// is on its way, so the line on the screen is not yet what the shell holds.
    unechoed: Option<Instant>,
    /// A line end was typed at the prompt: the shell is taking in a line a person
    /// entered (their command starts, or a new or continuation prompt follows).
    entered: bool,
    /// Between a command line's start mark and its end mark: its output is the command's.
    output_open: bool,
    /// The running command is a person's (its id).
    human: Option<u64>,
    /// The terminal that sent keys last: where the next command a person runs was typed.
    typist: String,
    held: Vec<u8>,
    log: VecDeque<(u64, HumanCommand)>,
    /// Per program source: the last person's command it was told about.
    seen: HashMap<String, u64>,
}

impl Console {
    /// One more person attached; returns how many are.
    pub(super) fn attach(&mut self) -> usize {
        self.attached += 1;
        self.attached
    }

    /// One person left; returns how many remain.
    pub(super) fn detach(&mut self) -> usize {
        self.attached = self.attached.saturating_sub(1);
        self.attached
    }

    /// How many people are attached.
    pub(super) fn attached(&self) -> usize {
        self.attached
    }

    /// A new shell: nothing of the old one's prompt or command carries over.
    pub(super) fn new_shell(&mut self) {
        self.prompt = None;
        self.typed = false;
        self.unechoed = None;
        self.entered = false;
        self.output_open = false;
        self.human = None;
    }

    /// The prompt was printed; the cursor is at `at`.
    pub(super) fn prompt_shown(&mut self, at: (u16, u16)) {
        self.prompt = Some(at);
        self.unechoed = None;
        self.entered = false;
        self.output_open = false;
    }

    /// Where the prompt ended, while the shell reads a line at it.
    pub(super) fn prompt(&self) -> Option<(u16, u16)> {
        self.prompt
    }

    /// The prompt is left (the shell switches modes): nothing may be typed at it.
    pub(super) fn leave_prompt(&mut self) {
        self.prompt = None;
    }

    /// Whether keys arrived at a prompt since the last line was taken in (the line may hold
    /// what a person typed).
    pub(super) fn typed(&self) -> bool {
        self.typed
    }

    /// How long ago keys were sent at the prompt that have not been echoed yet.
    pub(super) fn unechoed_for(&self) -> Option<Duration> {
        self.unechoed.map(|at| at.elapsed())
    }

    /// Whether a person pressed Enter at the prompt and the shell has not yet said what
    /// came of it.
    pub(super) fn entered(&self) -> bool {
        self.entered
    }

    /// The shell's terminal printed something (the echo of keys typed, among others).
    pub(super) fn output_seen(&mut self) {
        self.unechoed = None;
    }

    /// A command line started: output is a command's until it ends.
    pub(super) fn line_started(&mut self) {
        self.prompt = None;
        self.typed = false;
        self.entered = false;
        self.output_open = true;
    }

    /// Whether output belongs to a command now.
    pub(super) fn output_open(&self) -> bool {
        self.output_open
    }

    /// The command line ended.
    pub(super) fn line_ended(&mut self) {
        self.output_open = false;
    }

    /// Keys from terminal `source` go to the shell now.
    pub(super) fn keys_sent(&mut self, source: &str, keys: &[u8]) {
        if self.typist != source {
            self.typist = source.to_string();
        }
        if self.prompt.is_some() && !keys.is_empty() {
            self.typed = true;
            self.unechoed.get_or_insert_with(Instant::now);
            self.entered |= keys.iter().any(|&b| b == b'\r' || b == b'\n');
        }
    }

    /// Keys that cannot go to the shell yet; false if too many are held already.
    pub(super) fn hold(&mut self, source: &str, keys: &[u8]) -> bool {
        if self.held.len() + keys.len() > HELD_KEYS {
            return false;
        }
        self.typist = source.to_string();
        self.held.extend_from_slice(keys);
        true
    }

    /// The keys held, to type now.
    pub(super) fn take_held(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// Where the person typing now is (`"attach"` unless a front end said otherwise).
    pub(super) fn typist(&self) -> &str {
        if self.typist.is_empty() {
            "attach"
        } else {
            &self.typist
        }
    }

    /// The person's command `id` runs.
    pub(super) fn human_started(&mut self, id: u64) {
        self.human = Some(id);
    }

    /// The running command is a person's.
    pub(super) fn human_running(&self) -> Option<u64> {
        self.human
    }

    /// The person's command ended as `done` (or, `None`, without its end being seen).
    pub(super) fn human_ended(&mut self, id: u64, done: Option<HumanCommand>) {
        if self.human == Some(id) {
            self.human = None;
        }
        if let Some(done) = done {
            self.log.push_back((id, done));
            while self.log.len() > HUMAN_LOG {
                self.log.pop_front();
            }
        }
    }

    /// People's commands `source` has not been told about; from now on it has been.
    pub(super) fn take_unseen(&mut self, source: &str) -> Vec<HumanCommand> {
        let last = self.log.back().map(|(id, _)| *id);
        let seen = self.seen.get(source).copied().unwrap_or(0);
        let unseen = self
            .log
            .iter()
            .filter(|(id, _)| *id > seen)
            .map(|(_, c)| c.clone())
            .collect();
        if let Some(last) = last {
            if self.seen.len() >= SOURCES && !self.seen.contains_key(source) {
                // Forgetting the oldest-served source only means it hears of more again.
                if let Some(oldest) = self
                    .seen
                    .iter()
                    .min_by_key(|(_, id)| **id)
                    .map(|(s, _)| s.clone())
                {
                    self.seen.remove(&oldest);
                }
            }
            self.seen.insert(source.to_string(), last);
        }
        unseen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn cmd(text: &str) -> HumanCommand {
        HumanCommand {
            command: text.into(),
            exit_code: Some(0),
            cwd: "/".into(),
            started_at: SystemTime::now(),
            duration: None,
            output: String::new(),
            source: "attach".into(),
        }
    }

    #[test]
    fn each_source_hears_of_a_command_once() {
        let mut c = Console::default();
        assert!(c.take_unseen("mcp").is_empty());
        c.human_started(3);
        c.human_ended(3, Some(cmd("cd /tmp")));
        assert_eq!(c.human_running(), None);
        assert_eq!(c.take_unseen("mcp").len(), 1);
        assert!(c.take_unseen("mcp").is_empty(), "told once");
        assert_eq!(c.take_unseen("cli").len(), 1, "every source is told");
        c.human_ended(5, Some(cmd("ls")));
        let unseen = c.take_unseen("mcp");
        assert_eq!(unseen.len(), 1);
        assert_eq!(unseen[0].command, "ls");
    }

    #[test]
    fn typing_counts_only_at_a_prompt() {
        let mut c = Console::default();
        c.keys_sent("attach", b"y");
        assert!(!c.typed(), "keys for a running command are not a line");
        assert!(c.unechoed_for().is_none() && !c.entered());
        c.prompt_shown((3, 10));
        c.keys_sent("browser", b"ls");
        assert!(c.typed());
        assert_eq!(c.typist(), "browser");
        // Until the shell prints something, the screen does not show those keys yet.
        assert!(c.unechoed_for().is_some() && !c.entered());
        c.output_seen();
        assert!(c.unechoed_for().is_none());
        c.keys_sent("browser", b"\r");
        assert!(c.entered(), "Enter: the shell takes the line in");
        c.prompt_shown((3, 10));
        assert!(c.typed(), "a redrawn prompt keeps the line typed");
        c.line_started();
        assert!(!c.entered());
        assert_eq!(c.prompt(), None);
        assert!(c.output_open());
        c.prompt_shown((4, 10));
        assert!(!c.typed() && !c.output_open());
    }
}
