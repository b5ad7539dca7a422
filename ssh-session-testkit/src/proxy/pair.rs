//! One proxied connection: the client socket, its upstream socket, and the
//! forwarding between them under the current faults.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{CutMode, Faults, Registration};

/// The most one read takes from a socket.
const CHUNK: usize = 16 * 1024;
/// Chunks queued between the read and write side of one direction. With a
/// delay they wait here, so this bounds the memory a pair can hold
/// (`CHUNK * QUEUE` per direction); beyond it the proxy stops reading and
/// TCP flow control pushes back on the sender.
const QUEUE: usize = 64;
/// Reads made to discard what a peer already sent before a FIN close
/// (see [`finish`]), so a peer that keeps sending cannot keep us looping.
const DRAIN_READS: usize = 64;

/// How a pair ended, which decides how its sockets are closed.
enum End {
    /// Both directions forwarded their FIN: close normally.
    Done,
    /// A socket failed (upstream unreachable, a peer reset, a write
    /// failed): reset both sides, as a transparent path would.
    Failed,
    /// [`FaultProxy::cut`](super::FaultProxy::cut).
    Cut(CutMode),
}

/// Runs one pair until it ends or is cut; `_registration` keeps it counted
/// as live until this future is dropped.
pub(super) async fn run(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    cut: oneshot::Receiver<CutMode>,
    _registration: Registration,
) {
    let mut server = None;
    let end = tokio::select! {
        // If the sender is dropped unsent the pattern fails and select
        // keeps waiting on forwarding alone.
        Ok(mode) = cut => End::Cut(mode),
        result = forward(&mut client, &mut server, upstream, faults) => match result {
            Ok(()) => End::Done,
            Err(_) => End::Failed,
        },
    };
    // Forwarding has been dropped, so nothing else touches the sockets.
    let sockets = std::iter::once(&client).chain(server.as_ref());
    match end {
        End::Done => {}
        End::Failed | End::Cut(CutMode::Reset) => sockets.for_each(reset),
        End::Cut(CutMode::Fin) => sockets.for_each(finish),
    }
}

/// Connects upstream and forwards both directions until both have passed
/// on their FIN, or one fails.
async fn forward(
    client: &mut TcpStream,
    server: &mut Option<TcpStream>,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    let server = server.insert(TcpStream::connect(upstream).await?);
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    tokio::try_join!(
        pump(client_read, server_write, faults.clone()),
        pump(server_read, client_write, faults),
    )?;
    Ok(())
}

/// A chunk read from one side and when it may be written to the other;
/// `None` stands for the FIN.
type Chunk = (Instant, Option<Bytes>);

/// Forwards one direction. Reading and writing are decoupled by a bounded
/// queue so that a delay holds chunks back without holding back reads,
/// which keeps the delay a latency and not a throughput limit.
async fn pump(
    from: ReadHalf<'_>,
    to: WriteHalf<'_>,
    faults: watch::Receiver<Faults>,
) -> io::Result<()> {
    let (queue, queued) = mpsc::channel(QUEUE);
    tokio::try_join!(
        read_side(from, queue, faults.clone()),
        write_side(queued, to, faults),
    )?;
    Ok(())
}

async fn read_side(
    mut from: ReadHalf<'_>,
    queue: mpsc::Sender<Chunk>,
    mut faults: watch::Receiver<Faults>,
) -> io::Result<()> {
    let mut buf = BytesMut::new();
    loop {
        // While blackholed, bytes (and a FIN) stay in the kernel, which
        // gives the sender real TCP back-pressure.
        unblocked(&mut faults).await;
        buf.reserve(CHUNK);
        let n = from.read_buf(&mut buf).await?;
        quick_ack(from.as_ref());
        let due = Instant::now() + faults.borrow().delay;
        let data = (n > 0).then(|| buf.split().freeze());
        // A closed queue means the write side failed; its error ends the pair.
        if queue.send((due, data)).await.is_err() || n == 0 {
            return Ok(());
        }
    }
}

async fn write_side(
    mut queued: mpsc::Receiver<Chunk>,
    mut to: WriteHalf<'_>,
    mut faults: watch::Receiver<Faults>,
) -> io::Result<()> {
    while let Some((due, data)) = queued.recv().await {
        // Skipped when due, which is always the case without a delay, to
        // save a timer registration per chunk.
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        unblocked(&mut faults).await;
        match data {
            Some(bytes) => to.write_all(&bytes).await?,
            None => {
                to.shutdown().await?;
                break;
            }
        }
    }
    Ok(())
}

/// Returns once no blackhole is on.
async fn unblocked(faults: &mut watch::Receiver<Faults>) {
    // Fails only if the sender is gone, which cannot happen while a pair
    // runs: its registration holds the shared state that owns the sender.
    let _ = faults.wait_for(|f| !f.blackhole).await;
}

/// Makes the coming close abortive: with `SO_LINGER` 0, `close` sends an
/// RST instead of a FIN (and does not block).
fn reset(socket: &TcpStream) {
    // tokio's own setter needs a newer tokio than the workspace requires.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd belongs to `socket`, borrowed for the call, and the
    // option value is a properly sized `linger`.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Sends a FIN now, then discards what the peer had already sent: the
/// kernel answers a close with unread bytes pending by an RST, which would
/// turn the orderly close the test asked for into a reset.
fn finish(socket: &TcpStream) {
    let fd = socket.as_raw_fd();
    let mut scratch = [0u8; CHUNK];
    // SAFETY: the fd belongs to `socket`, borrowed for the calls, and
    // `recv` writes at most `scratch.len()` bytes into `scratch`.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
        for _ in 0..DRAIN_READS {
            let n = libc::recv(
                fd,
                scratch.as_mut_ptr().cast(),
                scratch.len(),
                libc::MSG_DONTWAIT,
            );
            if n <= 0 {
                break;
            }
        }
    }
}

/// Acknowledges what was just read at once, as the client does (see the core's
/// `QuickAckStream`): otherwise sshd's Nagle-held second packet during login waits for our
/// delayed ACK (40 ms), and every connect through the proxy is ~40 ms slower than without it.
/// `TCP_QUICKACK` is not sticky, so it is re-armed after every read.
#[cfg(target_os = "linux")]
fn quick_ack(socket: &TcpStream) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a correctly sized option value; failure is harmless.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_socket: &TcpStream) {}
