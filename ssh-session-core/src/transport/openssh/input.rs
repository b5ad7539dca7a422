//! The sending half of a channel: stdin, EOF, resize, close.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::channel::{Guard, Writer};
use super::mux::Window;
use crate::error::{Error, Result};
use crate::transport::ChannelInput;

/// The sending half. Writes go to the pipe (or local PTY) the master reads, flushed at once.
pub(super) struct Input {
    stdin: tokio::sync::Mutex<Option<Writer>>,
    guard: Arc<Guard>,
    /// The channel's PTY, if it has one.
    window: Option<Window>,
    host: String,
    port: u16,
}

impl Input {
    pub(super) fn new(
        stdin: Writer,
        guard: Arc<Guard>,
        window: Option<Window>,
        host: String,
        port: u16,
    ) -> Self {
        Input {
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            guard,
            window,
            host,
            port,
        }
    }

    fn gone(&self, why: impl fmt::Display) -> Error {
        Error::Ssh {
            host: self.host.clone(),
            port: self.port,
            detail: format!("the channel is closed ({why})"),
            source: None,
        }
    }

    fn refused(&self, what: &str, detail: impl Into<String>) -> Error {
        Error::ChannelRefused {
            host: self.host.clone(),
            what: what.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenSshInput")
            .field("host", &self.host)
            .field("pty", &self.window.is_some())
            .finish()
    }
}

#[async_trait]
impl ChannelInput for Input {
    async fn write(&self, data: &[u8]) -> Result<()> {
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(self.gone("its input was already closed"));
        };
        pipe.write_all(data).await.map_err(|e| self.gone(e))?;
        pipe.flush().await.map_err(|e| self.gone(e))
    }

    async fn eof(&self) -> Result<()> {
        if let Some(mut pipe) = self.stdin.lock().await.take() {
            // Closing our end is the EOF: the master reads it and sends SSH EOF.
            let _ = pipe.shutdown().await;
        }
        Ok(())
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let what = "a window size change";
        let Some(window) = &self.window else {
            return Err(self.refused(what, "this channel has no PTY"));
        };
        window
            .resize(cols, rows)
            .map_err(|e| self.refused(what, e.to_string()))
    }

    /// Ends the local side: the channel's mux session is dropped (a tunnel's `ssh -W`
    /// client killed). The master then closes the SSH channel; with a PTY the remote
    /// processes get SIGHUP, without one a remote process may outlive the channel (it sees
    /// EOF and a broken pipe; sessions signal their remote process groups themselves).
    async fn close(&self) -> Result<()> {
        self.stdin.lock().await.take();
        self.guard.kill();
        Ok(())
    }
}
