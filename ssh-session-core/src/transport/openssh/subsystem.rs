//! Subsystems (`sftp`) through the master's native multiplexing protocol: the master reads
//! and writes our pipes itself, so a file transfer never passes through a local process.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::channel::{Guard, Lease};

/// The subsystem's byte stream: the remote end's stdout to read, its stdin to write.
/// Dropping it ends the mux session, which makes the master close the channel.
pub(super) struct Subsystem {
    stdin: openssh::ChildStdin,
    stdout: openssh::ChildStdout,
    _guard: Arc<Guard>,
}

/// Starts subsystem `name` on `session` with piped stdio, under a supervisor that ends it
/// when the stream is dropped or the transport shuts down.
pub(super) async fn open(
    session: Arc<openssh::Session>,
    name: &str,
    lease: Lease,
) -> std::result::Result<Subsystem, openssh::Error> {
    use openssh::Stdio;
    let mut child = openssh::Session::to_subsystem(session, name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // A subsystem's stderr (sftp-server logs, when asked to) is of no use here; it
        // must not be inherited, which would write into our own stderr.
        .stderr(Stdio::null())
        .spawn()
        .await?;
    let (stdin, stdout) = (child.stdin().take(), child.stdout().take());
    let (guard, kill) = Guard::new();
    tokio::spawn(async move {
        let mut lease = lease;
        // Dropping the child (its mux connection) when told makes the master close the
        // channel; waiting reads the exit message once the server ends it.
        tokio::select! {
            _ = child.wait() => {}
            _ = kill.notified() => {}
            _ = lease.shut_down() => {}
        }
    });
    let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
        return Err(openssh::Error::ChildIo(io::Error::other(
            "the mux session has no pipes",
        )));
    };
    Ok(Subsystem {
        stdin,
        stdout,
        _guard: guard,
    })
}

impl AsyncRead for Subsystem {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for Subsystem {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}
