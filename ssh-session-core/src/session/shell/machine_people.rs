//! The people at a shell's terminal: the switches between the agent path and a person's
//! interactive shell (the `Mode` of a ready shell), the marks that shell's hooks print,
//! and the rules of who may type or run what while anyone is attached. Transitions of the
//! one machine in `machine.rs`, kept apart only because the whole would be too long to
//! read at once.
//!
//! ```text
//!             someone attached, shell at rest                 I mark
//!   Agent ──────────────────────────────────▶ Entering ──────────────▶ Interactive
//!     ▲                                                                   │
//!     │       ready marker                          nobody attached,      │
//!     └──────────────────────── Leaving ◀────── shell at its prompt ──────┘
//! ```

use super::*;

/// What a person attached to a shell without command hooks is told.
const UNTRACKED_SHELL: &str = "this shell (sh) has no command hooks: what you type runs without \
    tracking (no history, exit codes or working directory are recorded), and programs' \
    commands are refused until you detach";

/// How long a person's keys may go unechoed before a program takes it that their line
/// editor holds them (a key with no echo of its own): an echo takes one round trip.
pub(in crate::session::shell) const ECHO_WAIT: std::time::Duration =
    std::time::Duration::from_secs(1);

/// Who has the shell's terminal, while it is ready: the agent path (no echo, no line
/// editor, no prompt: a command is one typed line and its marker), or a person's
/// interactive shell (editor, echo, prompt, and hooks that mark every command line), and
/// the switches between them. Programs' commands are typed at the person's prompt then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Agent,
    /// `__ss_on` was typed: waiting for its mark.
    Entering,
    Interactive,
    /// `__ss_off` was typed: waiting for its ready marker.
    Leaving,
}

/// What a person's terminal gets on attaching: the screen as it is (bytes that draw it),
/// and the session's notices for them.
pub(in crate::session::shell) type FirstView = (Vec<u8>, Vec<String>);

impl Machine {
    /// A person attaches: what their terminal shows first (the screen as it is), what the
    /// session tells them, and the switch to interactive mode if the shell is at rest.
    pub(in crate::session::shell) fn attach(&mut self) -> Result<(FirstView, Effects)> {
        if self.closed {
            return Err(Error::Closed {
                session: self.name.clone(),
            });
        }
        if !self.pty {
            return Err(Error::InvalidCommand {
                session: self.name.clone(),
                reason: "attaching needs a terminal, and this session's shell runs on plain \
                         pipes; open it with a PTY (the default)"
                    .into(),
            });
        }
        self.console.attach();
        let mut notices = Vec::new();
        if matches!(self.life, Life::Ready(_)) && self.flavor == ShellFlavor::Posix {
            notices.push(UNTRACKED_SHELL.to_string());
        }
        if let (Mode::Agent, Some((command, _))) = (self.mode, self.commands.running()) {
            let source = self.commands.running_source().unwrap_or("api");
            notices.push(format!(
                "{command:?} (from {source}) is running: your keys go to it; your prompt \
                 comes back when it ends"
            ));
        }
        let mut fx = Effects::default();
        self.enter_if_attached(&mut fx);
        Ok(((self.terminal.formatted_with_history(), notices), fx))
    }

    /// A person detached: with nobody left, the shell goes back to the agent path as soon
    /// as it is at its prompt (a person's command still running keeps it until it ends).
    pub(in crate::session::shell) fn detach(&mut self) -> Effects {
        let mut fx = Effects::default();
        self.console.detach();
        self.leave_if_unattached(&mut fx);
        fx
    }

    /// Keys from the terminal `source`: to the shell, which gives them to whatever reads
    /// its terminal (the line editor, or a running command, a program's included); held
    /// while the shell changes modes.
    pub(in crate::session::shell) fn keys(&mut self, source: &str, keys: &[u8]) -> Result<Effects> {
        let mut fx = Effects::default();
        let input = match &self.life {
            Life::Ready(live) => live.input.clone(),
            _ => {
                return Err(Error::Disconnected {
                    session: self.name.clone(),
                    detail: "the shell is not reachable right now (reconnecting or \
                             restarting): those keys were not sent; type them again in a moment"
                        .into(),
                })
            }
        };
        match self.mode {
            Mode::Interactive => self.console.keys_sent(source, keys),
            Mode::Agent if self.is_running() => self.typed_extra = true,
            Mode::Agent | Mode::Entering | Mode::Leaving => {
                if !self.console.hold(source, keys) {
                    return Err(Error::InvalidCommand {
                        session: self.name.clone(),
                        reason: "too many keys typed before the shell's prompt came back; \
                                 those were dropped"
                            .into(),
                    });
                }
                return Ok(fx);
            }
        }
        fx.keys.push((input, keys.to_vec()));
        Ok(fx)
    }

    /// A program's command in interactive mode: the keys that type it at the person's
    /// prompt, or why not now (waiting is bounded by [`ECHO_WAIT`]: the driver looks again
    /// at least that often).
    pub(super) fn at_the_prompt(&self, command: &str) -> std::result::Result<String, Refusal> {
        if self.flavor == ShellFlavor::Posix {
            return Err(Refusal::Fail(Error::UntrackedTerminal {
                session: self.name.clone(),
            }));
        }
        let Some(at) = self.console.prompt() else {
            // Between a line's end and the next prompt: in a moment.
            return Err(Refusal::Wait);
        };
        // A person's keys still on their way back (the echo), or their Enter not yet
        // answered by a start mark or a prompt: typing now could land in their line or in
        // the command it starts. Their shell's next output decides, in a moment. Keys that
        // are never echoed (Esc, Ctrl-X: the start of a longer key) leave the line editor
        // in the middle of a key sequence, where a paste would be misread: a person typing.
        let silent = self
            .console
            .unechoed_for()
            .is_some_and(|since| since >= ECHO_WAIT);
        if self.console.unechoed_for().is_some() && !silent {
            return Err(Refusal::Wait);
        }
        if self.console.typed() {
            let line = self.terminal.text_after(at);
            if line.is_empty() && self.console.entered() && !silent {
                return Err(Refusal::Wait);
            }
            if !line.is_empty() || silent {
                return Err(Refusal::Fail(Error::HumanBusy {
                    session: self.name.clone(),
                    terminal: self.console.typist().into(),
                    command: if line.is_empty() {
                        "keys that show nothing yet".into()
                    } else {
                        line
                    },
                    typing: true,
                    running_for: std::time::Duration::ZERO,
                }));
            }
        }
        paste_keys(command).ok_or_else(|| {
            Refusal::Fail(Error::InvalidCommand {
                session: self.name.clone(),
                reason: "while a person is attached, commands are typed at their prompt, and \
                         this one holds control characters a terminal cannot paste; write them \
                         as escapes (printf '\\033'), or run it after they detach"
                    .into(),
            })
        })
    }

    /// The marks of interactive mode (and the ready marker that ends it).
    pub(super) fn interactive_event(&mut self, event: Event, fx: &mut Effects) {
        match (self.mode, event) {
            (Mode::Entering, Event::Interactive { cwd }) => {
                self.cwd = String::from_utf8_lossy(&cwd).into_owned();
                self.mode = Mode::Interactive;
                let held = self.console.take_held();
                if let (false, Life::Ready(live)) = (held.is_empty(), &self.life) {
                    fx.keys.push((live.input.clone(), held));
                }
            }
            (Mode::Interactive, Event::Prompt) => {
                if self.is_running() && !self.console.output_open() {
                    // A program's line that ran nothing (blank, a comment): no hook fired.
                    self.finish(Outcome::Untracked, fx);
                }
                self.console.prompt_shown(self.terminal.cursor());
                self.leave_if_unattached(fx);
            }
            (Mode::Interactive, Event::CommandStart { text }) => {
                let mut text = String::from_utf8_lossy(&text).into_owned();
                if text.is_empty() {
                    // bash tells the exact text at the end (`CommandText`); until then the
                    // line as the screen shows it names the command.
                    if let Some(at) = self.console.prompt() {
                        text = self.terminal.text_after(at);
                    }
                }
                self.console.line_started();
                self.terminal.new_command();
                match (self.is_running(), self.console.human_running()) {
                    // The next line of what a person pasted.
                    (true, Some(_)) if !text.is_empty() => self.commands.extend_running(&text),
                    // The program's command typed at the prompt starts.
                    (true, _) => {}
                    (false, _) => {
                        let id = self.commands.begin_human(&text, self.console.typist());
                        self.console.human_started(id);
                        self.last_activity = SystemTime::now();
                    }
                }
            }
            // A program's command keeps the text it was given.
            (Mode::Interactive, Event::CommandText { text })
                if self.console.human_running().is_some() =>
            {
                self.commands
                    .set_running_text(&String::from_utf8_lossy(&text));
            }
            (Mode::Interactive, Event::CommandEnd { exit_code, cwd }) => {
                self.cwd = String::from_utf8_lossy(&cwd).into_owned();
                self.finish(Outcome::Exited(exit_code), fx);
                self.console.line_ended();
            }
            (Mode::Leaving, Event::Ready { cwd, .. }) => {
                self.cwd = String::from_utf8_lossy(&cwd).into_owned();
                self.mode = Mode::Agent;
                self.enter_if_attached(fx);
            }
            _ => {}
        }
    }

    /// Someone is attached and the shell is at rest on the agent path: switch it to
    /// interactive mode (a command running now keeps it until it ends).
    pub(super) fn enter_if_attached(&mut self, fx: &mut Effects) {
        if self.console.attached() == 0 || self.mode != Mode::Agent || self.is_running() {
            return;
        }
        let Life::Ready(live) = &self.life else {
            return;
        };
        let mut line = String::new();
        if std::mem::take(&mut self.typed_extra) {
            line.push('\x15');
        }
        line.push_str(&interactive_on_line(self.flavor));
        fx.keys.push((live.input.clone(), line.into_bytes()));
        self.editor_back = false;
        self.mode = Mode::Entering;
        if self.flavor == ShellFlavor::Posix {
            fx.terminal
                .push(TerminalEvent::Notice(UNTRACKED_SHELL.to_string()));
        }
    }

    /// Nobody is attached and the shell is at its prompt: back to the agent path.
    pub(super) fn leave_if_unattached(&mut self, fx: &mut Effects) {
        if self.console.attached() > 0 || self.mode != Mode::Interactive || self.is_running() {
            return;
        }
        let (Some(_), Life::Ready(live)) = (self.console.prompt(), &self.life) else {
            return;
        };
        fx.keys
            .push((live.input.clone(), INTERACTIVE_OFF_KEYS.as_bytes().to_vec()));
        self.console.leave_prompt();
        self.mode = Mode::Leaving;
    }

    /// Whether there is a shell ready to attach to: `Ok`, or what to do first (as for a
    /// command: wait, or start the shell whose start the caller now holds).
    pub(in crate::session::shell) fn shell_needed(&mut self) -> std::result::Result<(), Refusal> {
        if self.closed {
            return Err(Refusal::Fail(Error::Closed {
                session: self.name.clone(),
            }));
        }
        match &self.life {
            Life::Ready(_) => Ok(()),
            Life::Gone(Some(GoneCause::LinkLost)) => Err(Refusal::Wait),
            Life::Gone(_) => match self.claim_start() {
                Claim::Claimed { previous, .. } => Err(Refusal::NeedShell(previous)),
                Claim::InProgress | Claim::Ready => Err(Refusal::Wait),
            },
            Life::Starting { .. } | Life::Priming { .. } | Life::Detached(_) => Err(Refusal::Wait),
        }
    }

    /// The screen as bytes that draw it on another terminal.
    pub(in crate::session::shell) fn screen_formatted(&self) -> Vec<u8> {
        self.terminal.formatted()
    }

    /// Whether the shell's hooks report a person's commands.
    pub(in crate::session::shell) fn tracks_people(&self) -> bool {
        self.flavor != ShellFlavor::Posix
    }

    /// Whether the shell is interactive and reads a line at its prompt.
    pub(in crate::session::shell) fn at_prompt(&self) -> bool {
        self.mode == Mode::Interactive && self.console.prompt().is_some()
    }
}
