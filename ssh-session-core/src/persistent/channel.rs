//! The [`Channel`](crate::transport::Channel) halves of a tmux attachment: input through a
//! control-mode client, output from the pane's log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::script;
use crate::error::{Error, Result};
use crate::transport::{ChannelEvent, ChannelInput, EventSource, Signal};

/// Bytes per `send-keys` command (each byte is three characters of command text).
const KEYS_PER_COMMAND: usize = 512;

/// Input to the pane: `send-keys -H` and `resize-window` on a control-mode client.
pub(crate) struct TmuxInput {
    pub(crate) control: Arc<dyn ChannelInput>,
    /// The log-reading channel, closed with the attachment.
    pub(crate) reader: Arc<dyn ChannelInput>,
    pub(crate) pane: String,
    pub(crate) window: String,
    pub(crate) pane_pid: u32,
    pub(crate) host: String,
    /// The persistent session's name, for messages.
    pub(crate) name: String,
    /// Set when the control client has ended (`%exit`, or its channel closed).
    pub(crate) ended: Arc<AtomicBool>,
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

    async fn command(&self, text: &str) -> Result<()> {
        self.check()?;
        self.control.write(text.as_bytes()).await
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

    /// Signals the pane's shell (what an SSH `signal` request reaches on a plain channel).
    async fn signal(&self, signal: Signal) -> Result<()> {
        self.command(&format!(
            "run-shell -b \"kill -s {} {}\"\n",
            signal.name(),
            self.pane_pid
        ))
        .await
    }

    /// Detaches: closes the control client and the log reader. The tmux session stays.
    async fn close(&self) -> Result<()> {
        self.ended.store(true, Ordering::Release);
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
                    tracing::warn!(error = %block.join(" / "), "tmux refused a command");
                    block.clear();
                } else if line.starts_with("%end") {
                    block.clear();
                } else if line.starts_with("%exit") {
                    ended.store(true, Ordering::Release);
                } else if !line.starts_with('%') && block.len() < 16 {
                    block.push(line);
                }
            }
        }
        ended.store(true, Ordering::Release);
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
