//! The values a session takes and returns.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use crate::transport::{PtyRequest, TransportKind};

/// How a session's shell is set up and how much it may hold.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The PTY to run the shell in (default 200×50 `xterm-256color`, echo off). `None` runs
    /// the shell on plain pipes: no terminal (bytes exactly as written), stderr merged into
    /// stdout by the shell (`exec 2>&1`) so their order is kept, interrupts by signal only,
    /// no full-screen programs.
    pub pty: Option<PtyRequest>,
    /// Default `exec` timeout: after it the call returns with the command still running
    /// (default 30 s).
    pub exec_timeout: Duration,
    /// Output kept per command, head and tail; the middle is dropped and counted (default 8 MiB).
    pub max_output_bytes: usize,
    /// How long a new shell may take to run its login scripts and answer (default 15 s).
    pub prime_timeout: Duration,
    /// Commands remembered in the session's history (default 1000).
    pub history_limit: usize,
    /// What to do when the connection is lost (default: 3 attempts with backoff).
    pub reconnect: ReconnectPolicy,
    /// How long [`Session::stop_command`](crate::Session::stop_command) tries Ctrl-C, SIGTERM
    /// and SIGKILL before it kills the shell itself (default 30 s).
    pub cancel_deadline: Duration,
    /// Run the shell inside a remote tmux session named after the session (default off).
    /// A lost connection then re-attaches: running commands, background jobs, cwd, env and
    /// history survive, and output printed meanwhile is replayed exactly once. Opening a
    /// session whose tmux session survived (e.g. after this process restarted) re-adopts
    /// it. Needs tmux on the remote host (a clear error says so) and a PTY.
    pub persistent: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            pty: Some(PtyRequest::default()),
            exec_timeout: Duration::from_secs(30),
            max_output_bytes: 8 << 20,
            prime_timeout: Duration::from_secs(15),
            history_limit: 1000,
            reconnect: ReconnectPolicy::default(),
            cancel_deadline: Duration::from_secs(30),
            persistent: false,
        }
    }
}

/// Automatic reconnection after a lost connection: attempt 1 at once, then exponential
/// backoff (`initial_delay`, times `factor` per attempt, capped at `max_delay`, each delay
/// randomised by ±`jitter`), at most `max_attempts` attempts; then the session's status is
/// [`SessionStatus::Error`] with the last cause, and [`Session::reconnect`](crate::Session::reconnect)
/// tries again on demand.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// Attempts before giving up (default 3; 0 disables automatic reconnection).
    pub max_attempts: u32,
    /// Delay before the second attempt (default 500 ms).
    pub initial_delay: Duration,
    /// Growth of the delay per attempt (default 2).
    pub factor: f64,
    /// Largest delay (default 10 s).
    pub max_delay: Duration,
    /// Random spread of each delay, as a fraction (default 0.2 = ±20 %), so that many
    /// clients cut off together do not reconnect in lockstep.
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(500),
            factor: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl ReconnectPolicy {
    /// The pause before attempt `attempt` (1-based) with jitter `unit` in `[-1, 1]`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let base = self.initial_delay.as_secs_f64() * self.factor.powi(attempt as i32 - 2);
        let capped = base.min(self.max_delay.as_secs_f64());
        let spread = 1.0 + self.jitter.clamp(0.0, 1.0) * unit.clamp(-1.0, 1.0);
        Duration::from_secs_f64((capped * spread).max(0.0))
    }
}

/// Options for one command.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Return after this long even if the command still runs (default: the session's
    /// `exec_timeout`). The command keeps running; use `read_output` to follow it.
    pub timeout: Option<Duration>,
    /// Who issued the command, recorded in history (default `"api"`). Commands a person
    /// ran at an attached terminal since this source's previous command are reported to
    /// it as `human_activity` says.
    pub source: Option<String>,
    /// What to do when people ran commands in the session's terminal since this source's
    /// previous command (default [`HumanActivity::Report`]).
    pub human_activity: HumanActivity,
}

impl ExecOptions {
    /// Options with this timeout.
    pub fn timeout(timeout: Duration) -> Self {
        ExecOptions {
            timeout: Some(timeout),
            ..Default::default()
        }
    }
}

/// What a command does when it finds that a person ran commands in the session's terminal
/// (through [`ShellSession::attach`](crate::ShellSession::attach)) since its source's
/// previous command: the working directory, files or jobs it assumes may have changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HumanActivity {
    /// Run, and say nothing.
    Ignore,
    /// Run, with a [`Notice::HumanActivity`] listing them (the default).
    #[default]
    Report,
    /// Do not run: fail once with [`Error::HumanActivity`](crate::Error::HumanActivity)
    /// listing them. They count as seen, so the same command issued again runs.
    RefuseOnce,
}

/// A command a person ran in the session's terminal, as its shell reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HumanCommand {
    /// The command line, as the shell's history recorded it.
    pub command: String,
    /// Its exit code (`None` if it still runs, or its end was not seen).
    pub exit_code: Option<i32>,
    /// The working directory it left the shell in.
    pub cwd: String,
    /// When it started.
    pub started_at: SystemTime,
    /// How long it ran (`None` while it runs).
    pub duration: Option<Duration>,
    /// Its output, shortened to its first and last kilobyte or so.
    pub output: String,
    /// The terminal it was typed at (`"attach"`, `"browser"`, ...).
    pub source: String,
}

/// `` `make` (exit 2, in "/src") ``: how messages list what a person ran.
impl std::fmt::Display for HumanCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self.exit_code.map_or("?".to_string(), |c| c.to_string());
        write!(f, "`{}` (exit {code}, in {:?})", self.command, self.cwd)
    }
}

/// Options for reading a running (or the last) command's output.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Wait up to this long for the command to finish (default: don't wait).
    pub wait: Duration,
    /// Return as soon as any new output arrives instead of waiting for completion.
    pub return_on_output: bool,
}

/// How a command stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandState {
    /// Still running: read its output, send input, or interrupt it.
    Running,
    /// Finished; `exit_code` holds its status.
    Exited,
    /// The shell itself ended while running it (`exit`, `exec`, killed); `exit_code` holds
    /// the shell's status if known. The next command starts a new shell.
    ShellExited,
    /// The connection was lost while it ran: its outcome is unknown (it may have been
    /// killed with the shell, or finished unseen). Never a normal result.
    LinkLost,
    /// It would not stop: Ctrl-C, SIGTERM and SIGKILL all failed within the stop deadline,
    /// so the shell was killed and replaced (see the result's notices).
    Killed,
    /// Its shell stopped reporting on it: the marker that ends every command could not come
    /// back (`exec >/dev/null`, `exec bash`, our variables unset), so an interrupt found the
    /// shell itself waiting and primed it again. The shell and its state are kept; the exit
    /// code is unknown. The next command runs normally.
    Untracked,
}

impl CommandState {
    /// A short lower-case name: `running`, `exited`, `shell_exited`, `link_lost`, `killed`,
    /// `untracked`.
    pub fn name(&self) -> &'static str {
        match self {
            CommandState::Running => "running",
            CommandState::Exited => "exited",
            CommandState::ShellExited => "shell_exited",
            CommandState::LinkLost => "link_lost",
            CommandState::Killed => "killed",
            CommandState::Untracked => "untracked",
        }
    }
}

/// Something the caller should know about how a result came to be.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The previous shell had ended, so a new one was started first. The working directory
    /// and exported variables were restored; background jobs and shell-local state
    /// (unexported variables, functions, aliases) were lost.
    ShellRestarted {
        /// Why the previous shell ended.
        reason: String,
    },
    /// The login shell is not POSIX; `/bin/sh` (bash if present) runs instead.
    PosixFallback,
    /// The connection was lost and re-established before this command.
    Reconnected {
        /// Why the connection was lost.
        cause: String,
        /// Attempts it took.
        attempts: u32,
    },
    /// People ran these commands in the session's terminal since this source's previous
    /// command (see [`HumanActivity`]); the shell is now in `cwd`.
    HumanActivity {
        /// The commands, oldest first.
        commands: Vec<HumanCommand>,
        /// The working directory now.
        cwd: String,
    },
    /// A new shell could not go back to the previous working directory (it was removed, or
    /// is no longer accessible): it starts in `now` instead.
    CwdNotRestored {
        /// The directory the previous shell was in.
        wanted: String,
        /// Where the new shell is.
        now: String,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::ShellRestarted { reason } => write!(
                f,
                "the previous shell ended ({reason}); a new shell was started with the working \
                 directory and exported variables restored; background jobs, unexported \
                 variables, functions and aliases were lost"
            ),
            Notice::PosixFallback => f.write_str(
                "the login shell is not a POSIX shell; commands run in bash (or sh) instead",
            ),
            Notice::Reconnected { cause, attempts } => write!(
                f,
                "the connection was lost ({cause}) and re-established after {attempts} attempt(s)"
            ),
            Notice::HumanActivity { commands, cwd } => {
                write!(
                    f,
                    "a person ran {} command(s) in this session's terminal since your last \
                     command (the shell is now in {cwd:?}):",
                    commands.len()
                )?;
                for c in commands {
                    write!(f, " {c};")?;
                }
                Ok(())
            }
            Notice::CwdNotRestored { wanted, now } => write!(
                f,
                "the previous working directory {wanted:?} could not be entered again (removed, \
                 or no longer accessible); the shell is in {now:?}"
            ),
        }
    }
}

/// The outcome of `exec` or `read_output`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExecResult {
    /// The command line as given.
    pub command: String,
    /// Output as the terminal showed it (stdout and stderr interleaved), exact bytes with
    /// the PTY's `\r\n` turned back into the program's `\n`. For `read_output`, only what is
    /// new since the previous result.
    pub output: Vec<u8>,
    /// The exit code; `None` while running (or if the shell died without one).
    pub exit_code: Option<i32>,
    /// Running, exited, or the shell exited.
    pub state: CommandState,
    /// The shell's working directory after the command (the last known one while running).
    pub cwd: String,
    /// Time since the command started.
    pub duration: Duration,
    /// Bytes the command has printed in total.
    pub output_bytes: u64,
    /// Bytes of this result's range that were dropped to bound memory (0 if none).
    pub dropped_bytes: u64,
    /// Things that happened on the way (shell restarted...).
    pub notices: Vec<Notice>,
    /// While running: the password or passphrase prompt its output ends with, if any —
    /// it waits for a secret (answer with `send_input`, or let a person at the terminal
    /// type it) rather than working.
    pub waiting_for: Option<crate::session::SecretPrompt>,
}

impl ExecResult {
    /// A result with no output, for unit tests.
    #[cfg(test)]
    pub(crate) fn empty(command: &str) -> Self {
        ExecResult {
            command: command.to_string(),
            output: Vec::new(),
            exit_code: None,
            state: CommandState::Running,
            cwd: String::new(),
            duration: Duration::ZERO,
            output_bytes: 0,
            dropped_bytes: 0,
            notices: Vec::new(),
            waiting_for: None,
        }
    }

    /// The output as text (invalid UTF-8 replaced), for display.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.output)
    }

    /// Whether the command still runs.
    pub fn is_running(&self) -> bool {
        self.state == CommandState::Running
    }

    /// Whether output was dropped.
    pub fn truncated(&self) -> bool {
        self.dropped_bytes > 0
    }
}

/// A stronger or weaker way to stop the running command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// Ctrl-C: SIGINT to the foreground job, as a terminal would.
    Int,
    /// Ctrl-D: end of input for a program reading the terminal.
    Eof,
    /// SIGTERM to the foreground process group.
    Term,
    /// SIGKILL to the foreground process group.
    Kill,
}

impl Interrupt {
    /// The name it goes by: `INT`, `EOF`, `TERM` or `KILL`.
    pub fn signal_name(self) -> &'static str {
        match self {
            Interrupt::Int => "INT",
            Interrupt::Eof => "EOF",
            Interrupt::Term => "TERM",
            Interrupt::Kill => "KILL",
        }
    }
}

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.signal_name())
    }
}

impl std::str::FromStr for Interrupt {
    type Err = String;

    /// Accepts `INT`, `TERM`, `KILL` and `EOF`, in any case, with or without a `SIG`
    /// prefix, and the keys that send them: `^C`/`C-c`/`ctrl-c` and `^D`/`C-d`/`ctrl-d`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let upper = s.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        match name {
            "INT" | "^C" | "C-C" | "CTRL-C" => Ok(Interrupt::Int),
            "EOF" | "^D" | "C-D" | "CTRL-D" => Ok(Interrupt::Eof),
            "TERM" => Ok(Interrupt::Term),
            "KILL" => Ok(Interrupt::Kill),
            _ => Err(format!(
                "unknown signal {s:?}: use INT (Ctrl-C), TERM, KILL or EOF (Ctrl-D)"
            )),
        }
    }
}

/// A session's connection state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    /// Connecting and starting the shell.
    Connecting,
    /// Ready for commands.
    Connected,
    /// The connection was lost; reconnecting. Commands wait (up to their timeout).
    Reconnecting {
        /// This attempt, from 1.
        attempt: u32,
        /// The most attempts that will be made.
        of: u32,
    },
    /// Broken; `detail` says why.
    Error {
        /// What went wrong.
        detail: String,
        /// When.
        at: SystemTime,
    },
    /// Closed by the caller.
    Closed,
}

impl SessionStatus {
    /// A short lower-case name: connecting, connected, error, closed.
    pub fn name(&self) -> &'static str {
        match self {
            SessionStatus::Connecting => "connecting",
            SessionStatus::Connected => "connected",
            SessionStatus::Reconnecting { .. } => "reconnecting",
            SessionStatus::Error { .. } => "error",
            SessionStatus::Closed => "closed",
        }
    }
}

/// One command in a session's history.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// The command line.
    pub command: String,
    /// Its exit code (`None` while running or if the shell died).
    pub exit_code: Option<i32>,
    /// When it started.
    pub started_at: SystemTime,
    /// How long it ran (`None` while running).
    pub duration: Option<Duration>,
    /// Who issued it (`"api"`, `"mcp"`, `"cli"`, ...), or the terminal a person typed it
    /// at (`"attach"`, `"browser"`).
    pub source: String,
    /// The working directory it left the shell in (`None` while running or if unknown).
    pub cwd: Option<String>,
}

/// A snapshot of a session, for listings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's name.
    pub name: String,
    /// Remote host.
    pub host: String,
    /// Remote user.
    pub user: String,
    /// Remote port.
    pub port: u16,
    /// Backend carrying it.
    pub transport: TransportKind,
    /// Connection state.
    pub status: SessionStatus,
    /// When it was opened.
    pub created: SystemTime,
    /// When a command last started or produced output.
    pub last_activity: SystemTime,
    /// Commands run so far.
    pub command_count: u64,
    /// Last known working directory.
    pub cwd: String,
    /// The command running now, if any.
    pub running: Option<String>,
    /// Who issued it: a program's source (`"mcp"`, `"cli"`...) or a person's terminal
    /// (`"attach"`, `"browser"`...).
    pub running_source: Option<String>,
    /// Whether it is a person's, typed at the session's terminal (theirs to stop).
    pub running_by_person: bool,
    /// People attached to the session's terminal now.
    pub attached: usize,
    /// The last failure (a lost connection, even one since re-established; a reconnect that
    /// gave up...) and when it happened.
    pub last_error: Option<(String, SystemTime)>,
    /// Successful reconnections so far.
    pub reconnects: u32,
    /// When the current connection was established.
    pub connected_since: Option<SystemTime>,
    /// Whether the shell lives in a remote tmux session.
    pub persistent: bool,
    /// Whether a surviving persistent shell was re-adopted when the session was opened.
    pub resumed: bool,
}

impl SessionInfo {
    /// A snapshot of a session that has not connected yet.
    pub(crate) fn new(
        name: &str,
        endpoint: &crate::session::Endpoint,
        transport: TransportKind,
    ) -> Self {
        let now = SystemTime::now();
        SessionInfo {
            name: name.to_string(),
            host: endpoint.host.clone(),
            user: endpoint.user.clone(),
            port: endpoint.port,
            transport,
            status: SessionStatus::Connecting,
            created: now,
            last_activity: now,
            command_count: 0,
            cwd: String::new(),
            running: None,
            running_source: None,
            running_by_person: false,
            attached: 0,
            last_error: None,
            reconnects: 0,
            connected_since: None,
            persistent: false,
            resumed: false,
        }
    }
}

/// A change of a session's status, as sent to [`Session::subscribe_status`](crate::Session::subscribe_status).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusEvent {
    /// The session.
    pub session: String,
    /// Its new status.
    pub status: SessionStatus,
    /// When it changed.
    pub at: SystemTime,
}

/// What [`Session::stop_command`](crate::Session::stop_command) had to do.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StopReport {
    /// The signals tried, in order (`"INT"`, `"TERM"`, `"KILL"`).
    pub tried: Vec<&'static str>,
    /// Whether the shell itself had to be killed and replaced (background jobs lost).
    pub shell_replaced: bool,
    /// Whether the connection had to be dropped and made again, because the shell could not
    /// be replaced over it.
    pub connection_restarted: bool,
    /// Each step taken, in words, in order (also shown to everyone attached as it happens).
    pub steps: Vec<String>,
    /// The final result of the command.
    pub result: ExecResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_parse_the_ways_people_write_them() {
        for (text, how) in [
            ("INT", Interrupt::Int),
            ("sigint", Interrupt::Int),
            ("^C", Interrupt::Int),
            ("ctrl-c", Interrupt::Int),
            ("TERM", Interrupt::Term),
            ("SIGKILL", Interrupt::Kill),
            ("eof", Interrupt::Eof),
            ("C-d", Interrupt::Eof),
        ] {
            assert_eq!(text.parse::<Interrupt>(), Ok(how), "{text}");
            assert_eq!(how.signal_name().parse::<Interrupt>(), Ok(how));
        }
        let e = "HUP".parse::<Interrupt>().unwrap_err();
        assert!(e.contains("HUP") && e.contains("INT"), "{e}");
    }

    #[test]
    fn state_names_are_snake_case() {
        assert_eq!(CommandState::ShellExited.name(), "shell_exited");
        assert_eq!(CommandState::LinkLost.name(), "link_lost");
        assert_eq!(
            SessionStatus::Reconnecting { attempt: 1, of: 2 }.name(),
            "reconnecting"
        );
    }
}
