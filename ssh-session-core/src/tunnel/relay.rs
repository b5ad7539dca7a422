//! Copying one tunnelled connection both ways while counting its bytes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Stats;

/// A stream that adds what is read from it to a counter, as it is read: a listing shows
/// a long transfer's bytes while it runs, not only once it ends.
struct Counted<'a, S> {
    inner: S,
    count: &'a AtomicU64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Size of each direction's buffer: large enough for bulk transfers to run at the link's
/// speed (tokio's default 8 KiB costs a wakeup per 8 KiB).
const BUFFER: usize = 256 << 10;

/// Copies between `client` (the listening side) and `target` until both directions end,
/// counting bytes each way into `stats`; a failure is recorded as the tunnel's last one
/// (with OpenSSH a refused target shows only here, as the first read failing).
pub(super) async fn relay<A, B>(client: A, target: B, stats: &Stats)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    stats.connections.fetch_add(1, Ordering::Relaxed);
    let mut client = Counted {
        inner: client,
        count: &stats.bytes_out,
    };
    let mut target = Counted {
        inner: target,
        count: &stats.bytes_in,
    };
    if let Err(e) =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut target, BUFFER, BUFFER).await
    {
        stats.failed(e);
    }
}
