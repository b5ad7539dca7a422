//! The vocabulary of the [`Machine`](super::machine::Machine)'s transitions: why a shell
//! ended, the effects the driver commits once the lock is released, and the answers to
//! its questions (may a command begin, who starts the shell, has it answered its prime).

use std::fmt;
use std::sync::Arc;
use std::task::Waker;

use super::attach::TerminalEvent;
use crate::error::Error;
use crate::protocol::Nonce;
use crate::session::stream::Sink;
use crate::session::types::StatusEvent;
use crate::transport::ChannelInput;

/// Why a shell ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GoneCause {
    /// It exited with this status (`exit 3`, `exec true`).
    Exited(i32),
    /// It was killed by this signal.
    Signalled(String),
    /// Its channel closed without saying why, while the connection stayed up.
    ChannelClosed,
    /// The connection carrying it was lost.
    LinkLost,
    /// It was killed on purpose, because its command would not stop.
    Replaced,
    /// It was killed on purpose, because it no longer answered: a command had sent its
    /// output nowhere (`exec >/dev/null`) or broken what the session types into it.
    Unresponsive,
    /// A persistent shell's tmux session was gone when the session came back for it.
    TmuxGone,
    /// The session was closed.
    Closed,
}

impl fmt::Display for GoneCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoneCause::Exited(code) => write!(f, "the shell exited with status {code}"),
            GoneCause::Signalled(sig) => write!(f, "the shell was killed by SIG{sig}"),
            GoneCause::ChannelClosed => f.write_str("the shell's channel was closed"),
            GoneCause::LinkLost => f.write_str("the connection was lost"),
            GoneCause::Replaced => {
                f.write_str("the shell was killed because its command would not stop")
            }
            GoneCause::Unresponsive => f.write_str(
                "the shell was killed because it stopped answering (a command sent its output \
                 nowhere or changed the variables the session relies on)",
            ),
            GoneCause::TmuxGone => {
                f.write_str("the persistent shell's tmux session was gone after reconnecting")
            }
            GoneCause::Closed => f.write_str("the session was closed"),
        }
    }
}

/// What `Machine::claim_start` found.
pub(super) enum Claim {
    /// The caller now owns the start and must end it with `opened` or `start_failed`.
    /// `previous`: why the last shell ended (for the caller's notice); `resume`: a
    /// persistent shell to re-attach rather than a new one to start.
    Claimed {
        previous: Option<GoneCause>,
        resume: bool,
    },
    /// Another task is starting the shell: wait for it.
    InProgress,
    /// There is a shell already.
    Ready,
}

/// How a freshly opened channel is to be used.
pub(super) enum Opening {
    /// A new shell: prime it with this nonce.
    Prime(Nonce),
    /// A persistent shell re-attached: its stream continues where it stopped.
    Resume,
}

/// Where a start in progress stands, for the task that claimed it.
pub(super) enum PrimeVerdict {
    /// Still waiting for the shell's answer.
    Waiting,
    /// Primed and ready for commands.
    Ready,
    /// zsh answered, but the probe line typed after its prime has not come back: its line
    /// editor may have lost the line's newline, so that the next line typed would become
    /// its arguments. The claimer ends that line and types the probe again
    /// (`spawn::wait_verdict`).
    Syncing,
    /// The probe ran but the ready marker did not: the shell is not POSIX.
    NotPosix,
    /// The channel ended before the shell got ready.
    Ended(GoneCause),
}

/// Why `begin_command` did not start the command.
pub(super) enum Refusal {
    /// Wait for a change (a start in progress, a reconnection), then try again.
    Wait,
    /// There is no shell: the caller claimed the start of a new one and must start it,
    /// then try again. `previous` is why the last one ended.
    NeedShell(Option<GoneCause>),
    /// The command cannot run now (busy, closed, disconnected, invalid).
    Fail(Error),
}

/// A command that was begun: type `line` into `input`, then report `typed` or
/// `typing_failed`.
pub(super) struct Begun {
    pub(super) id: u64,
    pub(super) line: String,
    pub(super) input: Arc<dyn ChannelInput>,
    pub(super) sink: Option<Arc<Sink>>,
}

/// What `Machine::begin_close` hands over: the shell's input and whether it was idle.
pub(super) type ClosingShell = Option<(Arc<dyn ChannelInput>, bool)>;

/// What a transition requires of the outside world, committed after the lock is released.
#[must_use = "effects must be committed once the state lock is released"]
#[derive(Default)]
pub(super) struct Effects {
    /// Stream consumers with new events.
    pub(super) wakers: Vec<Waker>,
    /// Status changes, in order.
    pub(super) status: Vec<StatusEvent>,
    /// The link under this shell channel generation was lost: start reconnecting.
    pub(super) reconnect: Option<u64>,
    /// A stream consumer is far behind: the channel reader waits for it.
    pub(super) backpressure: Option<Arc<Sink>>,
    /// Keys to type into a shell, in order (a person's, or a switch between the agent path
    /// and interactive mode).
    pub(super) keys: Vec<(Arc<dyn ChannelInput>, Vec<u8>)>,
    /// What the people attached to the terminal see, in order.
    pub(super) terminal: Vec<TerminalEvent>,
}
