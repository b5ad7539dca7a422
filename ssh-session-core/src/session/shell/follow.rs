//! Following a command until it ends or its timeout, output piece by piece: what every
//! front end that shows a command live needs (the CLI streams its output, the MCP server
//! reports progress), in one place.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::driver::Driver;
use super::{reconnect, ShellSession};
use crate::error::Result;
use crate::session::output::OutputBuffer;
use crate::session::types::{ExecOptions, ExecResult, Notice};

/// What [`Follow::next`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FollowEvent {
    /// New output, exactly as the command printed it.
    Output(Vec<u8>),
    /// The tick passed without output; the command still runs.
    Tick,
}

/// A command followed until it ends or its timeout; see [`ShellSession::follow`].
///
/// Dropping it stops following, not the command: what it prints from then on is
/// `read_output`'s, from the first byte `next` did not return.
pub struct Follow {
    driver: Arc<Driver>,
    deadline: Instant,
    output: OutputBuffer,
    /// Bytes the steps' own results had dropped (on top of what `output` drops).
    dropped: u64,
    notices: Vec<Notice>,
    /// The latest step's result, its output moved into `output`.
    last: ExecResult,
    /// Output of the first step, handed out by the first `next`.
    pending: Option<Vec<u8>>,
    ended: bool,
}

impl ShellSession {
    /// Waits until the session is connected (not reconnecting), up to `timeout`.
    ///
    /// # Errors
    /// [`Error::Reconnecting`](crate::Error::Reconnecting) if it still reconnects at the
    /// deadline, [`Error::Disconnected`](crate::Error::Disconnected) if reconnection gave up.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        reconnect::wait_connected(&self.driver, Instant::now() + timeout).await
    }

    /// Starts `command` and returns as soon as it is typed (waiting first, within the
    /// timeout, for the session to be ready). Follow it with [`Follow::next`] until it ends
    /// or the timeout (counted from when it was typed) expires; then
    /// [`Follow::into_result`] has everything it printed, bounded like any result.
    ///
    /// ```no_run
    /// # async fn demo(s: ssh_session_core::ShellSession) -> ssh_session_core::Result<()> {
    /// use std::time::Duration;
    /// use ssh_session_core::{ExecOptions, FollowEvent};
    ///
    /// let mut make = s.follow("make", ExecOptions::timeout(Duration::from_secs(600))).await?;
    /// while let Some(event) = make.next(Some(Duration::from_secs(1))).await? {
    ///     match event {
    ///         FollowEvent::Output(bytes) => print!("{}", String::from_utf8_lossy(&bytes)),
    ///         FollowEvent::Tick => eprintln!("still running after {:?}", make.elapsed()),
    ///         _ => {}
    ///     }
    /// }
    /// let result = make.into_result();
    /// println!("exit code {:?}", result.exit_code);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn follow(&self, command: &str, options: ExecOptions) -> Result<Follow> {
        let driver = &self.driver;
        let timeout = options.timeout.unwrap_or(driver.config.exec_timeout);
        let (_turn, _) = driver.begin(command, &options, false).await?;
        let deadline = Instant::now() + timeout;
        let mut first = driver.wait_result(Instant::now(), false).await?;
        let output = OutputBuffer::new(driver.config.max_output_bytes);
        let bytes = std::mem::take(&mut first.output);
        let mut follow = Follow {
            driver: driver.clone(),
            deadline,
            output,
            dropped: 0,
            notices: Vec::new(),
            ended: false,
            pending: None,
            last: first.clone(),
        };
        follow.absorb(first, &bytes);
        follow.pending = (!bytes.is_empty()).then_some(bytes);
        Ok(follow)
    }
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("session", &self.driver.name)
            .field("command", &self.last.command)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Follow {
    /// The next piece of output, or [`FollowEvent::Tick`] once `tick` passed without any;
    /// `None` once the command has ended or the timeout expired.
    pub async fn next(&mut self, tick: Option<Duration>) -> Result<Option<FollowEvent>> {
        if let Some(bytes) = self.pending.take() {
            return Ok(Some(FollowEvent::Output(bytes)));
        }
        let now = Instant::now();
        if self.ended || now >= self.deadline {
            self.ended = true;
            return Ok(None);
        }
        let until = tick.map_or(self.deadline, |t| (now + t).min(self.deadline));
        let mut step = self.driver.wait_result(until, true).await?;
        let bytes = std::mem::take(&mut step.output);
        self.absorb(step, &bytes);
        if !bytes.is_empty() {
            return Ok(Some(FollowEvent::Output(bytes)));
        }
        if self.ended || Instant::now() >= self.deadline {
            self.ended = true;
            return Ok(None);
        }
        Ok(Some(FollowEvent::Tick))
    }

    fn absorb(&mut self, mut step: ExecResult, bytes: &[u8]) {
        self.output.push(bytes);
        self.dropped += step.dropped_bytes;
        self.notices.append(&mut step.notices);
        self.ended = !step.is_running();
        self.last = step;
    }

    /// The notices so far (what people ran at the terminal before it, a restarted
    /// shell...): a front end can show them before the output. The result repeats them.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// How long the command has run.
    pub fn elapsed(&self) -> Duration {
        self.last.duration
    }

    /// Bytes the command printed so far.
    pub fn output_bytes(&self) -> u64 {
        self.last.output_bytes.max(self.output.total())
    }

    /// The last output seen (at most `max` bytes), e.g. for a progress message.
    pub fn tail(&self, max: usize) -> Vec<u8> {
        let (bytes, _) = self
            .output
            .read_from(self.output.total().saturating_sub(max as u64));
        bytes
    }

    /// The result so far: every byte followed (the head and tail kept, the middle dropped
    /// and counted, as in any result), every step's notices, the latest state.
    pub fn result(&self) -> ExecResult {
        let (output, dropped) = self.output.read_from(0);
        ExecResult {
            output,
            dropped_bytes: self.dropped + dropped,
            notices: self.notices.clone(),
            ..self.last.clone()
        }
    }

    /// [`result`](Self::result), consuming the follower.
    pub fn into_result(self) -> ExecResult {
        self.result()
    }
}
