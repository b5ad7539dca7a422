//! [`ExecStream`]: a command's output as it arrives, ending with its final event.
//!
//! The session pushes events into a [`Sink`] while it holds its state lock, so the order of
//! events is the order of the transitions that made them: a final event can never overtake
//! output that came before it, whichever task ends the command (the channel reader, a stop,
//! a close). Memory stays bounded because the channel reader waits for the consumer when
//! more than [`HIGH_WATER`] bytes are queued, which in turn stops reading the SSH channel.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{Notify, OwnedMutexGuard};

use super::types::ExecResult;

/// Queued output above which the channel reader waits for the consumer.
const HIGH_WATER: usize = 1 << 20;

/// An item of [`ExecStream`].
#[derive(Clone, Debug)]
pub enum StreamEvent {
    /// Output as it arrived.
    Output(Bytes),
    /// The command ended. `output` is empty: every byte was already streamed.
    Finished(ExecResult),
}

/// The queue between the session and one [`ExecStream`].
#[derive(Debug, Default)]
pub(crate) struct Sink {
    state: Mutex<SinkState>,
    space: Notify,
}

#[derive(Debug, Default)]
struct SinkState {
    queue: VecDeque<StreamEvent>,
    queued_bytes: usize,
    /// The final event was pushed: nothing more will come.
    finished: bool,
    /// The consumer dropped the stream.
    dropped: bool,
    /// Output bytes the consumer took out.
    consumed: u64,
    waker: Option<Waker>,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `event`; returns the consumer's waker, to be woken once the caller released
    /// its own locks. Events after the final one, or for a dropped stream, are discarded.
    pub(crate) fn push(&self, event: StreamEvent) -> Option<Waker> {
        let mut st = self.lock();
        if st.finished || st.dropped {
            return None;
        }
        match &event {
            StreamEvent::Output(bytes) => st.queued_bytes += bytes.len(),
            StreamEvent::Finished(_) => st.finished = true,
        }
        st.queue.push_back(event);
        st.waker.take()
    }

    /// `Some(bytes the consumer took)` once the stream was dropped: the rest of the output
    /// is then `read_output`'s, from exactly that byte.
    pub(crate) fn dropped(&self) -> Option<u64> {
        let st = self.lock();
        st.dropped.then_some(st.consumed)
    }

    /// Waits while more than [`HIGH_WATER`] bytes wait for the consumer.
    pub(crate) async fn wait_for_space(&self) {
        loop {
            let notified = self.space.notified();
            {
                let st = self.lock();
                if st.dropped || st.queued_bytes <= HIGH_WATER {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// The output of a command as a [`Stream`] of [`StreamEvent`]s, ending with
/// [`StreamEvent::Finished`] whatever ends the command (it exits, is stopped, its shell
/// dies, its link is lost, the session closes).
pub struct ExecStream {
    sink: Arc<Sink>,
    // Holds the session's command queue until the stream ends, so queued commands wait.
    turn: Option<OwnedMutexGuard<()>>,
}

impl std::fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStream")
            .field("sink", &self.sink)
            .field("holds_turn", &self.turn.is_some())
            .finish()
    }
}

impl ExecStream {
    pub(crate) fn new(sink: Arc<Sink>, turn: OwnedMutexGuard<()>) -> Self {
        ExecStream {
            sink,
            turn: Some(turn),
        }
    }
}

impl Stream for ExecStream {
    type Item = StreamEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        let mut st = self.sink.lock();
        match st.queue.pop_front() {
            Some(event) => {
                let done = match &event {
                    StreamEvent::Output(bytes) => {
                        st.queued_bytes -= bytes.len();
                        st.consumed += bytes.len() as u64;
                        false
                    }
                    StreamEvent::Finished(_) => true,
                };
                let below = st.queued_bytes <= HIGH_WATER;
                drop(st);
                if below {
                    self.sink.space.notify_waiters();
                }
                if done {
                    self.turn = None;
                }
                Poll::Ready(Some(event))
            }
            None if st.finished => {
                drop(st);
                self.turn = None;
                Poll::Ready(None)
            }
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for ExecStream {
    fn drop(&mut self) {
        self.sink.lock().dropped = true;
        self.sink.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn events_come_out_in_order_and_end_after_the_final_one() {
        let sink = Arc::new(Sink::default());
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let mut stream = ExecStream::new(sink.clone(), turn.clone().lock_owned().await);
        let _ = sink.push(StreamEvent::Output(Bytes::from_static(b"ab")));
        let _ = sink.push(StreamEvent::Finished(ExecResult::empty("c")));
        let _ = sink.push(StreamEvent::Output(Bytes::from_static(b"late")));
        assert!(matches!(stream.next().await, Some(StreamEvent::Output(b)) if &b[..] == b"ab"));
        assert!(turn.try_lock().is_err(), "the turn is held until the end");
        assert!(matches!(
            stream.next().await,
            Some(StreamEvent::Finished(_))
        ));
        assert!(turn.try_lock().is_ok(), "the final event frees the turn");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_stream_reports_what_was_consumed_and_releases_the_writer() {
        let sink = Arc::new(Sink::default());
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let mut stream = ExecStream::new(sink.clone(), turn.lock_owned().await);
        let big = Bytes::from(vec![0u8; HIGH_WATER + 1]);
        let _ = sink.push(StreamEvent::Output(Bytes::from_static(b"xyz")));
        let _ = sink.push(StreamEvent::Output(big));
        assert!(stream.next().await.is_some());
        let waiting = tokio::spawn({
            let sink = sink.clone();
            async move { sink.wait_for_space().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "over the high-water mark the writer waits"
        );
        drop(stream);
        waiting.await.unwrap();
        assert_eq!(sink.dropped(), Some(3));
    }
}
