//! The [`Channel`](crate::transport::Channel) halves of a tmux attachment: input through a
//! control-mode client, output from the pane's log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use super::script;
use crate::error::{Error, Result};
use crate::transport::{ChannelEvent, ChannelInput, EventSource};

/// Bytes per `send-keys` command (each byte is three characters of command text).
const KEYS_PER_COMMAND: usize = 512;

/// How long tmux may take to confirm a command (it answers in well under a millisecond
/// when it works at all).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The control client's replies, matched to the commands written to it.
///
/// tmux answers every command line of a control client, in order, with a `%begin` ...
/// `%end` (or `%error`) block. A write counts as typed only once its last line is
/// answered: a write that a dying link swallowed is never mistaken for keys the shell
/// received (its command would wait forever for a marker that cannot come).
#[derive(Debug, Default)]
pub(crate) struct Acks {
    state: Mutex<AckState>,
}

#[derive(Debug, Default)]
struct AckState {
    waiting: VecDeque<Waiting>,
    /// The control client has ended: nothing will be answered any more.
    ended: bool,
}

#[derive(Debug)]
struct Waiting {
    /// Replies still due for this write (one per command line).
    remaining: usize,
    /// The first `%error` among them.
    error: Option<String>,
    done: Option<oneshot::Sender<std::result::Result<(), String>>>,
}

impl Acks {
    fn lock(&self) -> std::sync::MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a write of `lines` command lines; `None` if the client has ended.
    fn expect(&self, lines: usize) -> Option<oneshot::Receiver<std::result::Result<(), String>>> {
        let mut st = self.lock();
        if st.ended {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        st.waiting.push_back(Waiting {
            remaining: lines.max(1),
            error: None,
            done: Some(tx),
        });
        Some(rx)
    }

    /// One reply arrived: `%end` (`error: None`) or `%error` with its text.
    fn reply(&self, error: Option<String>) {
        let mut st = self.lock();
        let Some(front) = st.waiting.front_mut() else {
            return;
        };
        if front.error.is_none() {
            front.error = error;
        }
        front.remaining -= 1;
        if front.remaining == 0 {
            if let Some(mut w) = st.waiting.pop_front() {
                if let Some(done) = w.done.take() {
                    let _ = done.send(w.error.map_or(Ok(()), Err));
                }
            }
        }
    }

    /// The client ended: every write still waiting fails (its waiter's channel closes).
    fn end(&self) {
        let mut st = self.lock();
        st.ended = true;
        st.waiting.clear();
    }
}

/// Input to the pane: `send-keys -H` and `resize-window` on a control-mode client.
pub(crate) struct TmuxInput {
    pub(crate) control: Arc<dyn ChannelInput>,
    /// The log-reading channel, closed with the attachment.
    pub(crate) reader: Arc<dyn ChannelInput>,
    pub(crate) pane: String,
    pub(crate) window: String,
    pub(crate) host: String,
    /// The persistent session's name, for messages.
    pub(crate) name: String,
    /// Set when the control client has ended (`%exit`, or its channel closed).
    pub(crate) ended: Arc<AtomicBool>,
    /// The control client's replies to our commands.
    pub(crate) acks: Arc<Acks>,
    /// Keeps each write's registration and its bytes in the same order on the wire.
    pub(crate) order: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TmuxInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmuxInput")
            .field("name", &self.name)
            .field("pane", &self.pane)
            .field("host", &self.host)
            .finish()
    }
}

impl TmuxInput {
    fn check(&self) -> Result<()> {
        if self.ended.load(Ordering::Acquire) {
            return Err(Error::Disconnected {
                session: self.name.clone(),
                detail: format!(
                    "the tmux control client for pane {} on {} has ended (the tmux session is gone, or the connection was lost)",
                    self.pane, self.host
                ),
            });
        }
        Ok(())
    }

    /// Writes command lines to the control client and waits until tmux has answered the
    /// last of them.
    async fn command(&self, text: &str) -> Result<()> {
        self.check()?;
        let lines = text.bytes().filter(|&b| b == b'\n').count();
        let answered = {
            let _order = self.order.lock().await;
            let answered = self.acks.expect(lines).ok_or_else(|| self.gone())?;
            if let Err(e) = self.control.write(text.as_bytes()).await {
                // The control client's input is broken, and the write registered above will
                // never be answered: every later reply would be matched to the wrong write.
                self.ended.store(true, Ordering::Release);
                self.acks.end();
                return Err(e);
            }
            answered
        };
        match tokio::time::timeout(ACK_TIMEOUT, answered).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(refused))) => Err(Error::ChannelRefused {
                host: self.host.clone(),
                what: format!("input for the persistent shell {:?}", self.name),
                detail: format!("tmux refused it: {refused}"),
            }),
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => Err(Error::Disconnected {
                session: self.name.clone(),
                detail: format!(
                    "tmux on {} did not confirm input for pane {} within {ACK_TIMEOUT:?}",
                    self.host, self.pane
                ),
            }),
        }
    }

    fn gone(&self) -> Error {
        Error::Disconnected {
            session: self.name.clone(),
            detail: format!(
                "the tmux control client for pane {} on {} ended before confirming the input (the connection was lost, or the tmux session is gone)",
                self.pane, self.host
            ),
        }
    }
}

#[async_trait]
impl ChannelInput for TmuxInput {
    /// Types `data` into the pane, byte for byte, in one write to the control client (so
    /// one call's bytes are never interleaved with another's).
    async fn write(&self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.command(&script::send_keys(&self.pane, data, KEYS_PER_COMMAND))
            .await
    }

    /// Does nothing: a persistent shell must not end because one client stopped typing.
    /// End the shell by typing `exit`, or with [`kill`](super::TmuxShell::kill).
    async fn eof(&self) -> Result<()> {
        Ok(())
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let (cols, rows) = (cols.max(1), rows.max(1));
        self.command(&format!(
            "resize-window -t {} -x {cols} -y {rows}\n",
            self.window
        ))
        .await
    }

    /// Detaches: closes the control client and the log reader. The tmux session stays.
    async fn close(&self) -> Result<()> {
        self.ended.store(true, Ordering::Release);
        self.acks.end();
        let a = self.control.close().await;
        let b = self.reader.close().await;
        a.and(b)
    }
}

/// The pane's output: the log reader's stdout after its header, counted into `offset`.
pub(crate) struct TmuxEvents {
    pub(crate) inner: Box<dyn EventSource>,
    /// Bytes that arrived with the header line.
    pub(crate) pending: Option<Bytes>,
    pub(crate) offset: Arc<AtomicU64>,
    pub(crate) done: bool,
}

#[async_trait]
impl EventSource for TmuxEvents {
    async fn recv(&mut self) -> Option<ChannelEvent> {
        if let Some(data) = self.pending.take() {
            self.offset.fetch_add(data.len() as u64, Ordering::AcqRel);
            return Some(ChannelEvent::Stdout(data));
        }
        if self.done {
            return None;
        }
        loop {
            match self.inner.recv().await {
                Some(ChannelEvent::Stdout(data)) => {
                    self.offset.fetch_add(data.len() as u64, Ordering::AcqRel);
                    return Some(ChannelEvent::Stdout(data));
                }
                Some(ChannelEvent::Stderr(data)) => {
                    tracing::debug!(stderr = %String::from_utf8_lossy(&data), "tmux log reader");
                }
                // The reader script's own status says nothing about the shell.
                Some(ChannelEvent::ExitStatus(_)) | Some(ChannelEvent::ExitSignal(_)) => {}
                Some(ChannelEvent::Eof) => return Some(ChannelEvent::Eof),
                None => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

/// Reads the setup script's header line (bounded by `timeout`); returns it and the pane
/// bytes that followed it in the same packet.
pub(crate) async fn read_header(
    events: &mut Box<dyn EventSource>,
    timeout: Duration,
) -> std::result::Result<(String, Bytes), String> {
    let mut buf = BytesMut::new();
    let mut stderr = Vec::new();
    let read = async {
        loop {
            if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line = buf.split_to(nl + 1);
                let line = String::from_utf8_lossy(&line[..nl]).trim().to_string();
                return Ok((line, buf.split().freeze()));
            }
            match events.recv().await {
                Some(ChannelEvent::Stdout(d)) => buf.extend_from_slice(&d),
                Some(ChannelEvent::Stderr(d)) => stderr.extend_from_slice(&d),
                Some(_) => {}
                None => {
                    return Err(format!(
                        "the setup command ended early: {}{}",
                        String::from_utf8_lossy(&buf).trim(),
                        String::from_utf8_lossy(&stderr).trim()
                    ))
                }
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer from the setup command within {timeout:?}"
        )),
    }
}

/// Waits for the control client to attach (`%session-changed`: typing before it would be
/// lost), then drains its replies in the background, logging `%error` blocks, and sets
/// `ended` when the client exits.
pub(crate) async fn start_control(
    mut events: Box<dyn EventSource>,
    ended: Arc<AtomicBool>,
    acks: Arc<Acks>,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let mut lines = Lines::default();
    let attached = async {
        loop {
            match events.recv().await {
                Some(ChannelEvent::Stdout(d)) => {
                    for line in lines.push(&d) {
                        if line.starts_with("%session-changed") {
                            return Ok(());
                        }
                        if line.starts_with("%exit") {
                            return Err(format!("the control client exited: {line}"));
                        }
                    }
                }
                Some(ChannelEvent::Stderr(d)) => lines.stderr.extend_from_slice(&d),
                Some(_) => {}
                None => {
                    return Err(format!(
                        "the control client ended: {}",
                        String::from_utf8_lossy(&lines.stderr).trim()
                    ))
                }
            }
        }
    };
    match tokio::time::timeout(timeout, attached).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(format!(
                "the control client did not attach within {timeout:?}"
            ))
        }
    }
    tokio::spawn(async move {
        // A reply is `%begin`, its output lines, then `%end` or `%error`.
        let mut block: Vec<String> = Vec::new();
        while let Some(event) = events.recv().await {
            let ChannelEvent::Stdout(d) = event else {
                continue;
            };
            for line in lines.push(&d) {
                if line.starts_with("%begin") {
                    block.clear();
                } else if line.starts_with("%error") {
                    let error = block.join(" / ");
                    tracing::warn!(%error, "tmux refused a command");
                    acks.reply(Some(error));
                    block.clear();
                } else if line.starts_with("%end") {
                    acks.reply(None);
                    block.clear();
                } else if line.starts_with("%exit") {
                    ended.store(true, Ordering::Release);
                    acks.end();
                } else if !line.starts_with('%') && block.len() < 16 {
                    block.push(line);
                }
            }
        }
        ended.store(true, Ordering::Release);
        acks.end();
    });
    Ok(())
}

/// Splits a byte stream into lines.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    stderr: Vec<u8>,
}

impl Lines {
    fn push(&mut self, data: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            out.push(String::from_utf8_lossy(&line[..nl]).trim_end().to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Acks;

    #[test]
    fn replies_confirm_writes_in_order_and_an_ended_client_fails_the_rest() {
        let acks = Acks::default();
        let mut two_lines = acks.expect(2).unwrap();
        let mut one = acks.expect(1).unwrap();
        acks.reply(None);
        assert!(
            two_lines.try_recv().is_err(),
            "one of its two lines is still unanswered"
        );
        acks.reply(Some("no such pane".into()));
        assert_eq!(two_lines.try_recv().unwrap(), Err("no such pane".into()));
        assert!(one.try_recv().is_err());
        let late = acks.expect(1).unwrap();
        acks.reply(None);
        assert_eq!(one.try_recv().unwrap(), Ok(()));
        acks.end();
        assert!(
            late.blocking_recv().is_err(),
            "a write still waiting fails when the client ends"
        );
        assert!(
            acks.expect(1).is_none(),
            "nothing is registered after the end"
        );
    }
}
