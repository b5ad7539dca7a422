//! A fault-injecting TCP proxy on loopback, for testing how clients behave
//! when the network between them and the server breaks.
//!
//! Keepalive, timeout and reconnect logic can only be tested against a link
//! that actually fails, and the usual tools for that (`iptables`, `tc netem`)
//! need root and change the whole machine. [`FaultProxy`] sits between a
//! client and one upstream (typically an [`Sshd`](crate::Sshd)) and breaks
//! only the connections that go through it, on command from the test:
//! reset or close them, stall them, slow them down, or refuse new ones.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use ssh_session_testkit::{CutMode, FaultProxy, Sshd};
//!
//! let sshd = Sshd::shared();
//! let proxy = FaultProxy::start(([127, 0, 0, 1], sshd.port()).into()).await?;
//! // ... connect a client to 127.0.0.1:proxy.port() ...
//! proxy.blackhole(true); // the link stalls; keepalives go unanswered
//! proxy.cut(CutMode::Reset).await; // then the flow is reset
//! # Ok(())
//! # }
//! ```

mod accept;
mod pair;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use accept::{Applied, RefuseRequest};

/// [`FaultProxy::delay`] is capped so that `now + delay` cannot overflow.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// How [`FaultProxy::cut`] ends connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Abortive close (`SO_LINGER` 0, then close): both peers receive an RST,
    /// so their next read or write fails with `ECONNRESET`. This is what a
    /// crashed or rebooted peer, or a firewall resetting the flow, looks like.
    Reset,
    /// Orderly close: both peers receive a FIN, so their reads return
    /// end-of-file, as when the server closes the connection. Bytes the
    /// proxy received but had not forwarded yet are discarded.
    Fin,
}

/// The fault settings of live pairs, published to every pair task through a
/// `watch` channel so that a change reaches them at once, without polling.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    blackhole: bool,
    delay: Duration,
}

/// Live pairs by id. The sender tells the pair to end and how; the first
/// [`FaultProxy::cut`] that reaches a pair takes it.
type Pairs = HashMap<u64, Option<oneshot::Sender<CutMode>>>;

/// State shared by the [`FaultProxy`] handle, its accept task and every
/// connection task.
#[derive(Debug)]
struct Shared {
    faults: watch::Sender<Faults>,
    pairs: Mutex<Pairs>,
    /// Notified each time a pair leaves `pairs`, for `cut` and `shutdown`
    /// to wait on.
    gone: Notify,
    accepted: AtomicU64,
}

impl Shared {
    fn pairs(&self) -> MutexGuard<'_, Pairs> {
        // A panic elsewhere cannot leave the map half-updated: every
        // critical section is a single insert, remove or iteration.
        self.pairs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `done` holds for the set of live pairs.
    async fn wait_until(&self, done: impl Fn(&Pairs) -> bool) {
        loop {
            // Registered before checking, so a pair leaving between the
            // check and the await still wakes us.
            let gone = self.gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            let finished = {
                let pairs = self.pairs();
                done(&pairs)
            };
            if finished {
                return;
            }
            gone.await;
        }
    }
}

/// A pair's entry in [`Shared::pairs`], removed when the pair's task ends or
/// is aborted (the future is dropped either way, even if never polled).
#[derive(Debug)]
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.pairs().remove(&self.id);
        self.shared.gone.notify_waiters();
    }
}

/// A TCP proxy on `127.0.0.1:<free port>` that forwards every connection to
/// one upstream address and injects faults on command.
///
/// Each accepted connection gets its own connection to the upstream (a
/// *pair*); bytes are forwarded in both directions in order, and a FIN from
/// either side is passed on (half-close works). Both sockets of a pair have
/// `TCP_NODELAY` set, so the proxy adds no Nagle delay of its own. If the
/// upstream cannot be reached, or a peer resets its side, the other side is
/// reset too, as if the path were transparent.
///
/// The fault controls take effect on all live pairs immediately, and on
/// pairs accepted later for as long as they stay on. [`blackhole`](Self::blackhole)
/// and [`delay`](Self::delay) are plain functions; [`cut`](Self::cut),
/// [`refuse_new`](Self::refuse_new) and [`shutdown`](Self::shutdown) are
/// async because they return only once the change has been carried out.
///
/// Dropping the proxy stops listening and aborts every task it started;
/// the sockets of live pairs are then closed by the kernel in the ordinary
/// way (FIN, or RST where unread bytes remain). [`shutdown`](Self::shutdown)
/// does the same but waits until it is all done.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    /// Requests to the accept task, which owns the listening socket.
    refuse: watch::Sender<RefuseRequest>,
    /// What the accept task has carried out; closed once it has ended.
    applied: watch::Receiver<Applied>,
    /// `None` after shutdown.
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl FaultProxy {
    /// Starts listening on `127.0.0.1:<free port>` and forwarding every
    /// connection to `upstream`, which must be a loopback address: the kit
    /// never sends test traffic off the machine.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("FaultProxy upstream must be a loopback address, not {upstream}"),
            ));
        }
        let listener = accept::bind_loopback()?;
        let addr = listener.local_addr()?;
        let (faults, _) = watch::channel(Faults::default());
        let (refuse, requests) = watch::channel(RefuseRequest::default());
        let (applied_tx, applied) = watch::channel(Applied::default());
        let shared = Arc::new(Shared {
            faults,
            pairs: Mutex::new(HashMap::new()),
            gone: Notify::new(),
            accepted: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept::run(
            listener,
            shared.clone(),
            upstream,
            requests,
            applied_tx,
        )?);
        Ok(FaultProxy {
            addr,
            upstream,
            shared,
            refuse,
            applied,
            accept_task: Mutex::new(Some(task)),
        })
    }

    /// The port the proxy listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address the proxy listens on: `127.0.0.1:`[`port`](Self::port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Ends every live pair now, on both sides, and returns once they are
    /// closed, so the peers already have their RST or FIN in flight.
    ///
    /// Pairs accepted afterwards are not affected: a cut is an event, not a
    /// state (use [`refuse_new`](Self::refuse_new) to keep new ones out).
    pub async fn cut(&self, mode: CutMode) {
        let ids: Vec<u64> = {
            let mut pairs = self.shared.pairs();
            for cut in pairs.values_mut() {
                if let Some(cut) = cut.take() {
                    let _ = cut.send(mode);
                }
            }
            pairs.keys().copied().collect()
        };
        self.shared
            .wait_until(|pairs| ids.iter().all(|id| !pairs.contains_key(id)))
            .await;
    }

    /// Stalls every pair while `on`: nothing is forwarded in either
    /// direction, and no FIN or RST is sent, so both peers see a link that
    /// silently stopped working (a dead route, or a NAT that forgot the
    /// flow). Connections accepted meanwhile are stalled too.
    ///
    /// Bytes are *held back*, not dropped: the proxy stops reading, so they
    /// wait in kernel socket buffers and, once those fill up, the sender's
    /// writes block, exactly as with a real stalled TCP link. When the
    /// blackhole is lifted, everything held back is delivered in order,
    /// like the retransmissions of a real link that recovers. Dropping the
    /// bytes instead would leave a hole in the stream, which no network can
    /// do to a TCP connection (an SSH connection would then die of a MAC
    /// error instead of a timeout). To simulate a flow that never comes
    /// back, follow the blackhole with [`cut`](Self::cut).
    ///
    /// At most one chunk per direction already being written when the
    /// blackhole comes on is still delivered.
    pub fn blackhole(&self, on: bool) {
        self.shared.faults.send_if_modified(|f| {
            let changed = f.blackhole != on;
            f.blackhole = on;
            changed
        });
    }

    /// Delays every chunk of bytes by `delay` in both directions (so a round
    /// trip through the proxy takes at least twice `delay` more), keeping
    /// their order; `Duration::ZERO` turns the delay off. The delay is
    /// counted from when the proxy reads a chunk, so a change applies to
    /// bytes read from then on. Capped at one hour.
    pub fn delay(&self, delay: Duration) {
        let delay = delay.min(MAX_DELAY);
        self.shared.faults.send_if_modified(|f| {
            let changed = f.delay != delay;
            f.delay = delay;
            changed
        });
    }

    /// Refuses new connections while `on`; live pairs keep working.
    /// Returns once the change is in effect.
    ///
    /// The proxy stops listening (`shutdown(2)` on the listening socket,
    /// which keeps its port reserved), so the kernel answers a new SYN with
    /// an RST and `connect()` fails with `ECONNREFUSED`, exactly as for a
    /// server that is down. (Accepting and then resetting would let
    /// `connect()` succeed, because the kernel completes the handshake
    /// before the proxy sees the connection.) Connections that had
    /// completed the handshake but were not accepted yet are reset.
    /// Turning it off listens again on the same port.
    ///
    /// Errors come from those system calls and are not expected. After
    /// [`shutdown`](Self::shutdown) this does nothing: everything is
    /// refused anyway.
    pub async fn refuse_new(&self, on: bool) -> io::Result<()> {
        let mut seq = 0;
        self.refuse.send_modify(|request| {
            request.seq += 1;
            request.refuse = on;
            seq = request.seq;
        });
        let mut applied = self.applied.clone();
        // A later request may overtake this one; its result is the one
        // that counts, since it decides the state.
        let result = match applied.wait_for(|a| a.seq >= seq).await {
            Ok(applied) => applied.error.clone(),
            Err(_) => None,
        };
        match result {
            Some(error) => Err(io::Error::other(error)),
            None => Ok(()),
        }
    }

    /// How many pairs are live: accepted and not closed yet, including
    /// ones still connecting upstream or stalled by a blackhole.
    pub fn connections(&self) -> usize {
        self.shared.pairs().len()
    }

    /// How many connections the proxy has accepted since it started.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Stops listening, closes every pair and waits until all the proxy's
    /// tasks have ended. Afterwards new connections are refused and the
    /// fault controls do nothing. Sockets are closed the ordinary way (FIN,
    /// or RST where unread bytes remain); use [`cut`](Self::cut) first to
    /// choose.
    pub async fn shutdown(&self) {
        let task = self
            .accept_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
            // Resolves once the task's future is dropped, and with it the
            // listening socket and the JoinSet, which aborts every pair task.
            let _ = task.await;
        }
        self.shared.wait_until(|pairs| pairs.is_empty()).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let task = self
            .accept_task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}
