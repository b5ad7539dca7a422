//! [`ShellSession::attach`]: the session's terminal for a person, shared with the programs
//! that run commands in it. While anyone is attached the shell is interactive (its own line
//! editor, echo, prompt, history and completion), every command line a person runs is
//! tracked from the shell's own hooks, and programs' commands are typed at the person's
//! prompt for them to see. The switches and the rules of who may run what are the
//! [`Machine`](super::machine::Machine)'s.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::driver::Driver;
use super::effects::{Effects, Refusal};
use super::{spawn, ShellSession};
use crate::error::{Error, Result};
use crate::session::Session;

/// What an attached terminal receives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TerminalEvent {
    /// Bytes to write to the person's terminal, exactly as the shell's terminal printed
    /// them (the session's own marks removed).
    Output(Bytes),
    /// A message from the session, not from the shell: what runs, what was done to stop
    /// it, a lost connection. A front end shows it apart from the shell's output.
    Notice(String),
    /// The terminal is gone (the shell exited, the session was closed); nothing follows.
    Ended(String),
}

/// Options for [`ShellSession::attach`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct AttachOptions {
    /// Where the person is, recorded as the source of the commands they run (default
    /// `"attach"`; the browser front end says `"browser"`).
    pub source: Option<String>,
    /// Their terminal's size (columns, rows): the shell's terminal takes it.
    pub size: Option<(u16, u16)>,
}

impl AttachOptions {
    /// Options for a person at `source` with a terminal of `cols` × `rows`.
    pub fn new(source: impl Into<String>, cols: u16, rows: u16) -> Self {
        AttachOptions {
            source: Some(source.into()),
            size: Some((cols, rows)),
        }
    }
}

/// A person's view of, and keyboard into, a session's terminal; see
/// [`ShellSession::attach`]. Dropping it detaches.
pub struct Attachment {
    driver: Arc<Driver>,
    source: String,
    first: VecDeque<TerminalEvent>,
    events: broadcast::Receiver<TerminalEvent>,
    ended: bool,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("session", &self.driver.name)
            .field("source", &self.source)
            .finish()
    }
}

impl ShellSession {
    /// Attaches a person to the session's terminal. Their first event draws the screen as
    /// it is; from then on they see everything the terminal prints (programs' commands
    /// included, typed at their prompt), and what they [`send`](Attachment::send) goes to
    /// the terminal. Several people may attach at once; their keys all go to the one
    /// terminal.
    ///
    /// While anyone is attached, the shell runs with its line editor, echo, prompt and
    /// history, and each command line a person runs is recorded (text, exit code, cwd,
    /// start, duration, their source) from marks the shell's own hooks print, carrying the
    /// session's secret nonce: output can never forge one. A program's `exec` meanwhile
    /// is refused with [`Error::HumanBusy`] while a person's command runs or a person has
    /// typed part of a line, and reports what people ran as
    /// [`ExecOptions::human_activity`](crate::ExecOptions::human_activity) says. When the
    /// last person detaches, the shell goes back to the fast agent path at its next prompt,
    /// keeping cwd, variables, jobs and history.
    ///
    /// bash and zsh are tracked; a plain POSIX shell (dash) has no hooks: its person gets
    /// a notice, and programs' commands are refused while they are attached.
    ///
    /// ```no_run
    /// # async fn demo(s: ssh_session_core::ShellSession) -> ssh_session_core::Result<()> {
    /// use ssh_session_core::{AttachOptions, TerminalEvent};
    ///
    /// let mut terminal = s.attach(AttachOptions::new("attach", 80, 24)).await?;
    /// terminal.send(b"ls\r").await?;
    /// while let Some(event) = terminal.next().await {
    ///     match event {
    ///         TerminalEvent::Output(bytes) => print!("{}", String::from_utf8_lossy(&bytes)),
    ///         TerminalEvent::Notice(text) => eprintln!("[{text}]"),
    ///         TerminalEvent::Ended(why) => eprintln!("[{why}]"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`], a session without a PTY ([`Error::InvalidCommand`]), or no shell
    /// within the session's `exec_timeout` (reconnecting, disconnected).
    pub async fn attach(&self, options: AttachOptions) -> Result<Attachment> {
        let driver = &self.driver;
        ensure_shell(driver, Instant::now() + driver.config.exec_timeout).await?;
        if let Some((cols, rows)) = options.size {
            self.resize(cols, rows).await?;
        }
        let ((screen, notices), events) = driver.act(|m| match m.attach() {
            Ok((first, fx)) => (Ok((first, driver.subscribe_terminal())), fx),
            Err(e) => (Err(e), Effects::default()),
        })?;
        let mut first = VecDeque::new();
        first.push_back(TerminalEvent::Output(Bytes::from(screen)));
        first.extend(notices.into_iter().map(TerminalEvent::Notice));
        Ok(Attachment {
            driver: driver.clone(),
            source: options.source.unwrap_or_else(|| "attach".into()),
            first,
            events,
            ended: false,
        })
    }
}

/// Waits for (or starts) a shell, up to `deadline`.
async fn ensure_shell(driver: &Arc<Driver>, deadline: Instant) -> Result<()> {
    loop {
        let since = driver.watch();
        match driver.peek(|m| m.shell_needed()) {
            Ok(()) => return Ok(()),
            Err(Refusal::Fail(e)) => return Err(e),
            Err(Refusal::NeedShell(previous)) => {
                let notices = spawn::start_claimed(driver, previous, false).await?;
                driver.apply(|m| {
                    m.add_notices(notices);
                    Effects::default()
                });
            }
            Err(Refusal::Wait) => {
                if !driver.changed_before(deadline, since).await {
                    return Err(Error::Disconnected {
                        session: driver.name.clone(),
                        detail: "no shell became ready to attach to; check `ssh-session list` \
                                 for the session's status and try again"
                            .into(),
                    });
                }
            }
        }
    }
}

impl Attachment {
    /// The next thing to show, or `None` once the terminal ended. A person who fell far
    /// behind gets the screen as it is now instead of what they missed.
    pub async fn next(&mut self) -> Option<TerminalEvent> {
        if let Some(event) = self.first.pop_front() {
            return Some(event);
        }
        if self.ended {
            return None;
        }
        match self.events.recv().await {
            Ok(TerminalEvent::Ended(why)) => {
                self.ended = true;
                Some(TerminalEvent::Ended(why))
            }
            Ok(event) => Some(event),
            // Events are sent under the state's lock: taking the screen and starting
            // again from the newest event under it, the person misses nothing after the
            // screen and sees nothing from before it again.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let events = &mut self.events;
                let screen = self.driver.view(|m| {
                    *events = events.resubscribe();
                    m.screen_formatted()
                });
                Some(TerminalEvent::Output(Bytes::from(screen)))
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.ended = true;
                None
            }
        }
    }

    /// Types `keys` into the terminal: to the shell's line editor at its prompt, or to
    /// whatever runs (a person's command or a program's, so that a person can answer its
    /// password prompt or Ctrl-C it). Keys typed while the shell switches modes are held
    /// and typed once its prompt is there.
    ///
    /// # Errors
    /// The shell is not reachable now (reconnecting, restarting): the keys were not sent.
    pub async fn send(&self, keys: &[u8]) -> Result<()> {
        let source = self.source.as_str();
        self.driver.act(|m| match m.keys(source, keys) {
            Ok(fx) => (Ok(()), fx),
            Err(e) => (Err(e), Effects::default()),
        })
    }

    /// Resizes the terminal (with several people attached, the last resize wins).
    ///
    /// # Errors
    /// The shell is not reachable now (reconnecting, restarting), or the server refused
    /// the new size.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        super::resize(&self.driver, cols, rows).await
    }

    /// The screen as text, rows joined by newlines.
    pub fn screen(&self) -> String {
        self.driver.view(|m| m.screen())
    }

    /// Whether the shell tracks what people run (bash, zsh; not a plain POSIX shell).
    pub fn tracked(&self) -> bool {
        self.driver.view(|m| m.tracks_people())
    }

    /// Detaches (as dropping does).
    pub fn detach(self) {}

    /// Waits until the shell is interactive and at its prompt, up to `timeout`: keys sent
    /// then reach the line editor. Mostly for tests and scripted people.
    pub async fn wait_prompt(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let since = self.driver.watch();
            if self.driver.view(|m| m.at_prompt()) {
                return Ok(());
            }
            if !self.driver.changed_before(deadline, since).await {
                return Err(Error::ShellNotReady {
                    session: self.driver.name.clone(),
                    timeout,
                    last_output: self.screen(),
                });
            }
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.driver.apply(|m| m.detach());
    }
}
