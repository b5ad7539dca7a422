//! Persistent named shells: the [`Session`] trait and its implementation over any transport.

mod host_info;
mod output;
mod prompt;
mod shell;
mod stream;
mod types;

use async_trait::async_trait;

use crate::error::Result;
pub use host_info::{Disk, HostInfo};
pub use prompt::{SecretKind, SecretPrompt};
pub use shell::{
    AttachOptions, Attachment, Endpoint, Follow, FollowEvent, ShellSession, TerminalEvent,
};
pub use stream::{ExecStream, StreamEvent};
pub use types::{
    CommandState, ExecOptions, ExecResult, HistoryEntry, HumanActivity, HumanCommand, Interrupt,
    Notice, ReadOptions, ReconnectPolicy, SessionConfig, SessionInfo, SessionStatus, StatusEvent,
    StopReport,
};

/// A persistent shell on a remote host. The working directory, exported variables, shell
/// functions, aliases and background jobs persist from one command to the next, exactly as
/// in an interactive terminal, and every command reports its exact output and exit code.
///
/// Commands are serialized: concurrent `exec` calls queue in FIFO order. A command still
/// running when its `exec` returns owns the session until it ends or is interrupted; a new
/// `exec` meanwhile fails at once with [`Error::Busy`](crate::Error::Busy).
#[async_trait]
pub trait Session: Send + Sync {
    /// The session's name.
    fn name(&self) -> &str;

    /// A snapshot for listings.
    fn info(&self) -> SessionInfo;

    /// Runs `command` and waits for it, up to the timeout. If the timeout expires first,
    /// the result has [`CommandState::Running`] with the output so far, and the command
    /// keeps running.
    async fn exec(&self, command: &str, options: ExecOptions) -> Result<ExecResult>;

    /// Runs `command` and streams its output as it arrives. The stream ends with
    /// [`StreamEvent::Finished`]. Dropping the stream early leaves the command running, and
    /// what it prints from then on is returned by `read_output`.
    async fn exec_stream(&self, command: &str, options: ExecOptions) -> Result<ExecStream>;

    /// Output of the running (or last) command that is new since the previous result,
    /// waiting as `options` say.
    async fn read_output(&self, options: ReadOptions) -> Result<ExecResult>;

    /// Sends bytes to the running command's terminal (`b"y\n"`, a password, REPL input).
    async fn send_input(&self, input: &[u8]) -> Result<()>;

    /// Interrupts the running command.
    async fn interrupt(&self, how: Interrupt) -> Result<()>;

    /// The terminal screen as text, rows joined by newlines: what a person would see, e.g.
    /// inside `vim`, `less` or `top`.
    fn screen(&self) -> String;

    /// Resizes the terminal.
    async fn resize(&self, cols: u16, rows: u16) -> Result<()>;

    /// Commands run so far, oldest first (bounded by the configured limit).
    fn history(&self) -> Vec<HistoryEntry>;

    /// Stops the running command however it takes: Ctrl-C, then SIGTERM, then SIGKILL, a
    /// third of the configured stop deadline each; if it still runs, the shell itself is
    /// killed and replaced (cwd and exported variables restored). The report says which.
    async fn stop_command(&self) -> Result<StopReport>;

    /// Status changes from now on (connecting, connected, reconnecting n of N, error,
    /// closed), in order. A slow receiver skips old events rather than block the session.
    fn subscribe_status(&self) -> tokio::sync::broadcast::Receiver<StatusEvent>;

    /// Re-establishes the connection now (after automatic reconnection gave up, or to
    /// replace a connection that works but should not be trusted). Follows the policy's
    /// attempts and backoff.
    async fn reconnect(&self) -> Result<()>;

    /// Ends the shell and its connection. Idempotent.
    async fn close(&self) -> Result<()>;
}
