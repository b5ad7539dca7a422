//! What the [`Machine`](super::machine::Machine)'s transitions return: the effects the
//! driver commits once the lock is released, and the answers to its questions (may a
//! command begin, who starts the shell, has the shell answered its prime).

use std::sync::Arc;
use std::task::Waker;

use super::machine::GoneCause;
use crate::error::Error;
use crate::protocol::Nonce;
use crate::session::stream::Sink;
use crate::session::types::StatusEvent;
use crate::transport::ChannelInput;

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
}
