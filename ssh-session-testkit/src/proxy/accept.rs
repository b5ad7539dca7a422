//! The listening side of the proxy: accepting pairs, and stopping and
//! resuming listening for [`FaultProxy::refuse_new`](super::FaultProxy::refuse_new).
//!
//! Refusing means `shutdown(2)` on the listening socket, which makes it stop
//! listening but keeps its port. The catch is tokio: a registered socket
//! that reports a hang-up, as this one then does, is marked closed for good,
//! and once it listens again `accept()` would spin on `EAGAIN` forever. So
//! the socket itself is kept outside tokio, and tokio gets a duplicate of it
//! that is deregistered *before* the shutdown and replaced by a fresh one
//! after `listen(2)`. The accept task does all of it, so the registration
//! is never dropped under a pending accept.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::{pair, Registration, Shared};

/// Port collisions with other processes are possible (see [`crate::free_port`]).
const BIND_ATTEMPTS: usize = 3;
/// Backlog for `listen(2)` when listening resumes (tokio's default).
const BACKLOG: libc::c_int = 1024;
/// Pause after an unexpected accept error (e.g. `EMFILE`), so a persistent
/// error does not turn the accept loop into a busy loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The latest [`FaultProxy::refuse_new`](super::FaultProxy::refuse_new)
/// call; `seq` lets each caller recognise when its request has been handled.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RefuseRequest {
    pub(super) seq: u64,
    pub(super) refuse: bool,
}

/// The last request the accept task carried out, and its error if any.
#[derive(Debug, Clone, Default)]
pub(super) struct Applied {
    pub(super) seq: u64,
    pub(super) error: Option<String>,
}

/// Binds a listening socket on `127.0.0.1`, on an explicitly chosen port
/// rather than port 0: the kernel keeps an explicit port reserved while the
/// socket is not listening, but releases an automatically chosen one, and
/// `listen(2)` would then pick a different port.
pub(super) fn bind_loopback() -> io::Result<std::net::TcpListener> {
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        match std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, crate::free_port())) {
            Ok(listener) => {
                // Shared with every duplicate handed to tokio, which needs it.
                listener.set_nonblocking(true)?;
                return Ok(listener);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("cannot bind the proxy port")))
}

/// Registers `socket` with tokio and returns the accept loop to spawn.
pub(super) fn run(
    socket: std::net::TcpListener,
    shared: Arc<Shared>,
    upstream: SocketAddr,
    requests: watch::Receiver<RefuseRequest>,
    applied: watch::Sender<Applied>,
) -> io::Result<impl Future<Output = ()> + Send + 'static> {
    let accepting = register(&socket)?;
    Ok(accept_loop(
        socket,
        Some(accepting),
        shared,
        upstream,
        requests,
        applied,
    ))
}

/// Accepts connections and runs a pair task for each, and carries out
/// refuse requests. `accepting` is `None` while refusing.
///
/// The pair tasks live in a JoinSet owned by this task, so aborting it
/// (drop, shutdown) aborts them all and nothing is left behind.
async fn accept_loop(
    socket: std::net::TcpListener,
    mut accepting: Option<TcpListener>,
    shared: Arc<Shared>,
    upstream: SocketAddr,
    mut requests: watch::Receiver<RefuseRequest>,
    applied: watch::Sender<Applied>,
) {
    let mut pairs = JoinSet::new();
    let faults = shared.faults.subscribe();
    loop {
        tokio::select! {
            // While refusing this yields `None` at once, which disables it.
            Some(accepted) = async {
                match &accepting {
                    Some(listener) => Some(listener.accept().await),
                    None => None,
                }
            } => match accepted {
                Ok((client, _)) => {
                    let id = shared.accepted.fetch_add(1, Ordering::Relaxed);
                    let (cut, cut_rx) = oneshot::channel();
                    shared.pairs().insert(id, Some(cut));
                    // Created before the task, so the entry is removed even
                    // if the task is aborted before it first runs.
                    let registration = Registration { shared: shared.clone(), id };
                    pairs.spawn(pair::run(client, upstream, faults.clone(), cut_rx, registration));
                }
                Err(e) => {
                    tracing::warn!("fault proxy: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            changed = requests.changed() => {
                if changed.is_err() {
                    return; // the FaultProxy is gone
                }
                let request = *requests.borrow_and_update();
                let error = set_refusing(&socket, &mut accepting, request.refuse).err();
                applied.send_replace(Applied {
                    seq: request.seq,
                    error: error.map(|e| e.to_string()),
                });
            }
            // Reaps finished pairs so the set does not grow without bound.
            Some(_) = pairs.join_next(), if !pairs.is_empty() => {}
        }
    }
}

/// Stops or resumes listening; see the module docs for why the tokio
/// registration is dropped first and made anew.
fn set_refusing(
    socket: &std::net::TcpListener,
    accepting: &mut Option<TcpListener>,
    refuse: bool,
) -> io::Result<()> {
    match (refuse, accepting.is_some()) {
        (true, true) => {
            *accepting = None;
            if let Err(e) = listen(socket, false) {
                *accepting = Some(register(socket)?);
                return Err(e);
            }
            Ok(())
        }
        (false, false) => {
            listen(socket, true)?;
            match register(socket) {
                Ok(listener) => {
                    *accepting = Some(listener);
                    Ok(())
                }
                Err(e) => {
                    // Not left listening with nobody to accept.
                    let _ = listen(socket, false);
                    Err(e)
                }
            }
        }
        _ => Ok(()), // already so
    }
}

/// A fresh tokio registration for a duplicate of `socket`.
fn register(socket: &std::net::TcpListener) -> io::Result<TcpListener> {
    TcpListener::from_std(socket.try_clone()?)
}

/// Listens again (`listen`) or stops listening (`shutdown(SHUT_RD)` on a
/// listening socket, Linux-specific) on `socket`'s port.
fn listen(socket: &std::net::TcpListener, on: bool) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    // SAFETY: `fd` is the listening socket owned by `socket`, which is
    // borrowed for the duration of the call.
    let rc = unsafe {
        if on {
            libc::listen(fd, BACKLOG)
        } else {
            libc::shutdown(fd, libc::SHUT_RD)
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
