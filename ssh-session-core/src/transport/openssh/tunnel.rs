//! `direct-tcpip` tunnels: `ssh -S CTL -W host:port` as one byte stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

use super::channel::{Guard, Spawned};
use super::master::OpenFailures;

/// The tunnel's stream: the client's stdout to read, its stdin to write. Dropping it kills
/// the client, which makes the master close the forwarded channel.
pub(super) struct Tunnel {
    stdout: ChildStdout,
    /// `None` once shut down: closing the pipe is what tells `ssh -W` our side ended
    /// (tokio's `ChildStdin::poll_shutdown` only flushes, leaving the peer waiting).
    stdin: Option<ChildStdin>,
    _guard: Arc<Guard>,
    /// Whether any byte arrived: an EOF before the first one may be a refused open.
    got_data: bool,
    failures: Arc<OpenFailures>,
    failures_at_open: usize,
    target: String,
}

impl Tunnel {
    pub(super) fn new(spawned: Spawned, failures: Arc<OpenFailures>, target: String) -> Self {
        tokio::spawn(drain(spawned.stderr));
        Tunnel {
            stdout: spawned.stdout,
            stdin: Some(spawned.stdin),
            _guard: spawned.guard,
            got_data: false,
            failures_at_open: failures.count(),
            failures,
            target,
        }
    }
}

/// The client's own stderr has only ssh's errors; log them, and keep the pipe flowing.
async fn drain(stderr: ChildStderr) {
    let mut lines = BufReader::new(stderr).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        tracing::debug!(
            target: "ssh_session_core::openssh",
            "ssh -W: {}",
            String::from_utf8_lossy(&line).trim_end()
        );
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stdout).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if buf.filled().len() > before {
                self.got_data = true;
            } else if !self.got_data && self.failures.count() > self.failures_at_open {
                // The master reported a failed channel open while this tunnel had not
                // received anything: most likely this one (the server refused it).
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!(
                        "the server could not open a tunnel to {}: {} (is AllowTcpForwarding \
                         on, and is the target listening?)",
                        self.target,
                        self.failures.last()
                    ),
                )));
            }
        }
        polled
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(stdin) = self.stdin.as_mut() {
            std::task::ready!(Pin::new(stdin).poll_flush(cx))?;
        }
        self.stdin = None;
        Poll::Ready(Ok(()))
    }
}
