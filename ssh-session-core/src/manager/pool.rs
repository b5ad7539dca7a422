//! Connection pooling: sessions to the same (transport, user, host, port, jump chain) share
//! one SSH connection, each on its own channel.
//!
//! Rules: concurrent opens of the same key share one handshake; a connection the server
//! refuses more channels on (sshd `MaxSessions`, 10 by default) is marked full and the
//! refused open is retried on another connection (a new one if none has room), as many
//! times as a burst needs, up to [`ROOM_ATTEMPTS`]; a dead connection is never handed out
//! again; the connection closes when its last lease is released.
//!
//! Why a refusal is judged before it is retried: a server that refuses *every* session
//! channel (`MaxSessions 0`, a `Match` block) must be reported, not answered with one new
//! connection per retry. A refusal proves a connection full only if the server accepted a
//! channel on it; since the answers to a burst of opens reach their waiters in any order,
//! that is decided once every open sent on the connection has its answer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{watch, OnceCell};

use crate::error::{Error, Result};
use crate::options::{ConnectOptions, JumpHost};
use crate::transport::openssh::OpenSshTransport;
use crate::transport::russh::RusshTransport;
use crate::transport::{
    Channel, ChannelEvent, EventSource, PtyRequest, ShellRequest, Transport, TransportKind,
    TunnelStream,
};

/// What makes two connections interchangeable: the same place, reached the same way, and
/// trusted and authenticated the same way (a caller with a stricter known_hosts file must
/// never ride on a connection someone else verified).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    kind: TransportKind,
    user: String,
    host: String,
    port: u16,
    jumps: Vec<JumpHost>,
    known_hosts: std::path::PathBuf,
    policy: crate::options::HostKeyPolicy,
    identities: Vec<std::path::PathBuf>,
    config_file: Option<std::path::PathBuf>,
}

impl PoolKey {
    pub(crate) fn of(opts: &ConnectOptions) -> Self {
        PoolKey {
            kind: opts.transport,
            user: opts.user.clone(),
            host: opts.host.clone(),
            port: opts.port,
            jumps: opts.proxy_jump.clone(),
            known_hosts: opts.known_hosts.clone(),
            policy: opts.host_key_policy,
            identities: opts.identities.iter().map(|i| i.path.clone()).collect(),
            config_file: opts.config_file.clone(),
        }
    }
}

/// One pooled connection (or one being established).
struct Entry {
    /// Stable for the connection's life, so listings can tell a replacement from the original.
    id: u64,
    key: PoolKey,
    /// How it was made, to make a sibling when it is full.
    opts: ConnectOptions,
    transport: OnceCell<Arc<dyn Transport>>,
    leases: AtomicUsize,
    full: AtomicBool,
    /// The server accepted a session channel on it at least once: a later refusal means
    /// it is full, not that it refuses sessions.
    accepted: AtomicBool,
    /// Channel opens sent on it and not answered yet (see the module docs).
    pending: watch::Sender<usize>,
    /// Who holds the leases (session names; one per lease, so duplicates are possible).
    holders: Mutex<Vec<String>>,
    /// When the handshake completed.
    connected_at: Mutex<Option<SystemTime>>,
}

impl Entry {
    fn usable(&self) -> bool {
        !self.full.load(Ordering::Acquire) && self.transport.get().is_none_or(|t| !t.is_closed())
    }
}

/// Opens a new connection with the backend `opts` asks for.
pub(crate) async fn connect(opts: &ConnectOptions) -> Result<Arc<dyn Transport>> {
    Ok(match opts.transport {
        TransportKind::Russh => Arc::new(RusshTransport::connect(opts).await?),
        TransportKind::OpenSsh => Arc::new(OpenSshTransport::connect(opts).await?),
    })
}

/// Where a pooled connection stands, as the pool sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// Handshake in progress.
    Connecting,
    /// Up.
    Live,
    /// Lost or closed, but still leased (its sessions are reconnecting or gave up).
    Dead,
}

/// A snapshot of one pooled connection.
#[derive(Clone, Debug)]
pub(crate) struct EntrySnapshot {
    pub id: u64,
    pub kind: TransportKind,
    pub user: String,
    pub host: String,
    pub port: u16,
    pub jumps: Vec<JumpHost>,
    pub state: LinkState,
    pub full: bool,
    pub connected_at: Option<SystemTime>,
    pub holders: Vec<String>,
}

/// The pool. Cheap to share; its lock is held only to pick or create an entry, never
/// across a handshake or any other network round trip.
#[derive(Default)]
pub(crate) struct Pool {
    entries: Mutex<HashMap<PoolKey, Vec<Arc<Entry>>>>,
    next_id: AtomicU64,
}

impl Pool {
    /// A lease for `holder` (a session name) on a live connection for `opts`, connecting
    /// if none is usable.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        opts: &ConnectOptions,
        holder: &str,
    ) -> Result<Lease> {
        let key = PoolKey::of(opts);
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let list = entries.entry(key.clone()).or_default();
            list.retain(|e| e.usable() || e.leases.load(Ordering::Acquire) > 0);
            let entry = match list.iter().find(|e| e.usable()) {
                Some(e) => e.clone(),
                None => {
                    let e = Arc::new(Entry {
                        id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
                        key,
                        opts: opts.clone(),
                        transport: OnceCell::new(),
                        leases: AtomicUsize::new(0),
                        full: AtomicBool::new(false),
                        accepted: AtomicBool::new(false),
                        pending: watch::Sender::new(0),
                        holders: Mutex::new(Vec::new()),
                        connected_at: Mutex::new(None),
                    });
                    list.push(e.clone());
                    e
                }
            };
            entry.leases.fetch_add(1, Ordering::AcqRel);
            lock(&entry.holders).push(holder.to_string());
            entry
        };
        // Counted from here: if this future is dropped mid-handshake (a cancelled connect),
        // the guard gives the share back.
        let mut pending = PendingShare {
            pool: Arc::downgrade(self),
            entry: Some(entry.clone()),
            holder: holder.to_string(),
        };
        // Everyone who picked this entry waits on the same handshake.
        let handshake = entry.transport.get_or_try_init(|| async {
            let transport = connect(opts).await?;
            *lock(&entry.connected_at) = Some(SystemTime::now());
            Ok(transport)
        });
        match handshake.await {
            Ok(transport) => {
                pending.entry = None;
                Ok(Lease {
                    home: Mutex::new(Home {
                        entry: entry.clone(),
                        transport: transport.clone(),
                        opens: 0,
                    }),
                    holder: holder.to_string(),
                    pool: Arc::downgrade(self),
                    released: AtomicBool::new(false),
                })
            }
            Err(e) => {
                pending.entry = None;
                self.release(&entry, holder).await;
                Err(e)
            }
        }
    }

    async fn release(&self, entry: &Arc<Entry>, holder: &str) {
        {
            let mut holders = lock(&entry.holders);
            if let Some(i) = holders.iter().position(|h| h == holder) {
                holders.remove(i);
            }
        }
        if entry.leases.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if entry.leases.load(Ordering::Acquire) > 0 {
                return; // Someone picked it up meanwhile.
            }
            if let Some(list) = entries.get_mut(&entry.key) {
                list.retain(|e| !Arc::ptr_eq(e, entry));
                if list.is_empty() {
                    entries.remove(&entry.key);
                }
            }
        }
        if let Some(transport) = entry.transport.get() {
            transport.close().await;
        }
    }

    /// Every connection the pool holds, established or not, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<EntrySnapshot> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<EntrySnapshot> = entries
            .values()
            .flatten()
            .map(|e| EntrySnapshot {
                id: e.id,
                kind: e.key.kind,
                user: e.key.user.clone(),
                host: e.key.host.clone(),
                port: e.key.port,
                jumps: e.key.jumps.clone(),
                state: match e.transport.get() {
                    None => LinkState::Connecting,
                    Some(t) if t.is_closed() => LinkState::Dead,
                    Some(_) => LinkState::Live,
                },
                full: e.full.load(Ordering::Acquire),
                connected_at: *lock(&e.connected_at),
                holders: lock(&e.holders).clone(),
            })
            .collect();
        list.sort_by_key(|e| e.id);
        list
    }

    /// Live connections (for listings and tests).
    pub(crate) fn connections(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .values()
            .flatten()
            .filter(|e| e.transport.get().is_some_and(|t| !t.is_closed()))
            .count()
    }
}

/// How many connections one open may try before giving up on a server that keeps
/// refusing for lack of room. Each try after the first is on a connection that has not
/// refused this open yet, so a burst of N opens against `MaxSessions M` needs about N / M:
/// 64 covers 640 at once with sshd's default of 10. The bound is only there so that a
/// server whose limit keeps shifting cannot keep an open retrying forever.
pub(crate) const ROOM_ATTEMPTS: usize = 64;

/// How long a refused open waits for the other answers on its connection before it
/// judges the refusal (they normally arrive within the same round trip).
const ANSWERS_WAIT: Duration = Duration::from_secs(10);

/// Whether `e` is the server saying "no more session channels on this connection" (sshd
/// `MaxSessions`), as opposed to a refused PTY, shell or tunnel, which another
/// connection would not change. The two backends word it differently: russh fails the
/// channel open itself; OpenSSH's ControlMaster answers its mux client with "Session open
/// refused by peer" exactly when the server refused the channel open.
fn no_room(e: &Error) -> bool {
    matches!(e, Error::ChannelRefused { what, detail, .. }
        if what == "a session channel" || detail.contains("Session open refused by peer"))
}

/// The outcome of one channel open on one connection.
enum Attempt<T> {
    Opened(T),
    /// Refused for lack of room on a connection that accepted channels: try another.
    Full(Error),
    /// Refused on a connection that never accepted a session channel: the server refuses
    /// sessions, and another connection would be refused too.
    Refused(Error),
    /// Any other error (including a connection lost meanwhile): returned as is.
    Failed(Error),
}

/// Takes back an entry's count of unanswered opens, also when the open is cancelled.
struct Unanswered<'a>(&'a Entry);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        self.0.pending.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Opens a channel with `open` on `transport` (the connection of `entry`) and judges a
/// refusal.
async fn attempt<T, F, Fut>(entry: &Entry, transport: Arc<dyn Transport>, open: &F) -> Attempt<T>
where
    F: Fn(Arc<dyn Transport>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    entry.pending.send_modify(|n| *n += 1);
    let unanswered = Unanswered(entry);
    let result = open(transport.clone()).await;
    if result.is_ok() {
        // Before the count drops: whoever sees the count reach zero sees this too.
        entry.accepted.store(true, Ordering::Release);
    }
    drop(unanswered);
    match result {
        Ok(channel) => Attempt::Opened(channel),
        Err(e) if no_room(&e) && !transport.is_closed() => {
            // Full or refusing, it must not get more opens while we find out which.
            entry.full.store(true, Ordering::Release);
            let mut answers = entry.pending.subscribe();
            let _ = tokio::time::timeout(ANSWERS_WAIT, answers.wait_for(|n| *n == 0)).await;
            if entry.accepted.load(Ordering::Acquire) {
                Attempt::Full(e)
            } else {
                Attempt::Refused(e)
            }
        }
        Err(e) => Attempt::Failed(e),
    }
}

/// The error for a server that refused a session channel on a connection where it had
/// accepted none.
fn refuses_sessions(e: Error) -> Error {
    match e {
        Error::ChannelRefused { host, what, detail } => Error::ChannelRefused {
            detail: format!(
                "{detail} (it accepted no session channel on this connection, not even the \
                 first, so it refuses shells and commands for this login: check MaxSessions \
                 in {host}'s sshd_config, where 0 forbids sessions, and any Match block \
                 that applies to this user)"
            ),
            host,
            what,
        },
        other => other,
    }
}

/// The error for an open refused on [`ROOM_ATTEMPTS`] connections, each already full.
fn out_of_room(e: Error, tries: usize) -> Error {
    match e {
        Error::ChannelRefused { host, what, detail } => Error::ChannelRefused {
            detail: format!(
                "{detail} (refused on {tries} connections in a row, each already full: the \
                 server allows too few sessions per connection for this many at once; raise \
                 MaxSessions in {host}'s sshd_config, or open fewer sessions at the same time)"
            ),
            host,
            what,
        },
        other => other,
    }
}

/// The connection a lease is on. A lease refused for lack of room before it has any
/// channel moves to the connection that accepted it.
struct Home {
    entry: Arc<Entry>,
    transport: Arc<dyn Transport>,
    /// Channel opens started on this connection through this lease.
    opens: usize,
}

/// A session's share of a pooled connection. It is a [`Transport`] itself, so sessions
/// don't know they are pooled: `close()` releases the share, and the connection closes
/// with its last share.
pub(crate) struct Lease {
    home: Mutex<Home>,
    holder: String,
    pool: Weak<Pool>,
    released: AtomicBool,
}

impl Lease {
    /// The server refused a channel on this connection: hand out no more shares of it.
    pub(crate) fn mark_full(&self) {
        lock(&self.home).entry.full.store(true, Ordering::Release);
    }

    fn transport(&self) -> Arc<dyn Transport> {
        lock(&self.home).transport.clone()
    }

    /// Gives up this lease's share to whoever takes its connection over.
    fn into_home(self) -> (Arc<Entry>, Arc<dyn Transport>) {
        self.released.store(true, Ordering::Release);
        let home = lock(&self.home);
        (home.entry.clone(), home.transport.clone())
    }

    /// Opens a channel with `open`, on this lease's connection or, if the server has no
    /// room left there, on another one: each connection found full is marked so, and the
    /// next try goes to one with room (a new one if needed), up to [`ROOM_ATTEMPTS`].
    async fn open_channel<F, Fut>(&self, open: F) -> Result<Channel>
    where
        F: Fn(Arc<dyn Transport>) -> Fut,
        Fut: Future<Output = Result<Channel>>,
    {
        match self.open_with_room(open).await? {
            (channel, None) => Ok(channel),
            (channel, Some((entry, other))) => Ok(self.settle(&entry, other, channel)),
        }
    }

    /// What [`open_channel`](Lease::open_channel) does, for any kind of channel: the
    /// opened one, and the other connection's lease with this lease's own entry when it
    /// had to go there.
    async fn open_with_room<T, F, Fut>(&self, open: F) -> Result<(T, Option<(Arc<Entry>, Lease)>)>
    where
        F: Fn(Arc<dyn Transport>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let (entry, transport) = {
            let mut home = lock(&self.home);
            home.opens += 1;
            (home.entry.clone(), home.transport.clone())
        };
        let mut refusal = match attempt(&entry, transport, &open).await {
            Attempt::Opened(channel) => return Ok((channel, None)),
            Attempt::Full(e) => e,
            Attempt::Refused(e) => return Err(refuses_sessions(e)),
            Attempt::Failed(e) => return Err(e),
        };
        let pool = self.pool.upgrade().ok_or(Error::ShutDown)?;
        for tries in 1.. {
            if tries >= ROOM_ATTEMPTS {
                return Err(out_of_room(refusal, tries));
            }
            let other = pool.acquire(&entry.opts, &self.holder).await?;
            let (other_entry, other_transport) = {
                let home = lock(&other.home);
                (home.entry.clone(), home.transport.clone())
            };
            match attempt(&other_entry, other_transport, &open).await {
                Attempt::Opened(channel) => return Ok((channel, Some((entry, other)))),
                Attempt::Full(e) => {
                    other.close().await;
                    refusal = e;
                }
                Attempt::Refused(e) => {
                    other.close().await;
                    return Err(refuses_sessions(e));
                }
                Attempt::Failed(e) => {
                    other.close().await;
                    return Err(e);
                }
            }
        }
        unreachable!("the loop above only ends by returning")
    }

    /// `channel` was opened on `other` after `started_on` (this lease's connection) had no
    /// room. If this lease had nothing else on that connection, it moves over to `other`'s:
    /// listings then show the session where its channel is, and the full connection can
    /// close with its other sessions. Otherwise (a session's second channel, e.g. an exec
    /// to signal a command) the channel holds `other`'s share until it ends.
    fn settle(&self, started_on: &Arc<Entry>, other: Lease, channel: Channel) -> Channel {
        let mut home = lock(&self.home);
        let alone = Arc::ptr_eq(&home.entry, started_on) && home.opens == 1;
        if !alone || self.released.load(Ordering::Acquire) {
            drop(home);
            return Channel {
                input: channel.input,
                events: Box::new(HeldEvents {
                    events: channel.events,
                    lease: Some(other),
                }),
            };
        }
        let (entry, transport) = other.into_home();
        let old = std::mem::replace(
            &mut *home,
            Home {
                entry,
                transport,
                opens: 1,
            },
        );
        drop(home);
        // As a task: a release can close a connection, and a cancelled caller must not
        // leave that half done.
        release_later(&self.pool, old.entry, self.holder.clone());
        channel
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("transport", &self.transport())
            .finish()
    }
}

#[async_trait]
impl Transport for Lease {
    fn kind(&self) -> TransportKind {
        self.transport().kind()
    }

    fn describe(&self) -> String {
        self.transport().describe()
    }

    async fn open_shell(&self, request: ShellRequest) -> Result<Channel> {
        self.open_channel(|t| {
            let request = request.clone();
            async move { t.open_shell(request).await }
        })
        .await
    }

    /// A full connection still lets its sessions signal their commands: the short exec
    /// goes to another connection (see [`open_channel`](Lease::open_channel)).
    async fn open_exec(&self, command: &str, pty: Option<PtyRequest>) -> Result<Channel> {
        self.open_channel(|t| {
            let pty = pty.clone();
            async move { t.open_exec(command, pty).await }
        })
        .await
    }

    async fn open_direct_tcpip(&self, host: &str, port: u16) -> Result<Box<dyn TunnelStream>> {
        self.transport().open_direct_tcpip(host, port).await
    }

    /// Like a signalling exec, an SFTP channel on a full connection goes to another one,
    /// whose share it holds until it is dropped.
    async fn open_subsystem(&self, name: &str) -> Result<Box<dyn TunnelStream>> {
        let opened = self
            .open_with_room(|t| async move { t.open_subsystem(name).await })
            .await?;
        Ok(match opened {
            (stream, None) => stream,
            (stream, Some((_, other))) => Box::new(HeldStream {
                stream,
                _lease: other,
            }),
        })
    }

    async fn forward_remote(
        &self,
        host: &str,
        port: u16,
        relay: std::net::SocketAddr,
    ) -> Result<u16> {
        self.transport().forward_remote(host, port, relay).await
    }

    async fn cancel_remote(&self, host: &str, port: u16) -> Result<()> {
        self.transport().cancel_remote(host, port).await
    }

    fn is_closed(&self) -> bool {
        self.released.load(Ordering::Acquire) || self.transport().is_closed()
    }

    async fn close(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let (entry, transport) = {
            let home = lock(&self.home);
            (home.entry.clone(), home.transport.clone())
        };
        if let Some(pool) = self.pool.upgrade() {
            pool.release(&entry, &self.holder).await;
        } else {
            transport.close().await;
        }
    }
}

/// Gives a share back from `Drop`, where nothing can be awaited: the release (which may
/// close the connection) runs as a task, if a runtime is still there to run it.
fn release_later(pool: &Weak<Pool>, entry: Arc<Entry>, holder: String) {
    let (Some(pool), Ok(runtime)) = (pool.upgrade(), tokio::runtime::Handle::try_current()) else {
        return;
    };
    runtime.spawn(async move { pool.release(&entry, &holder).await });
}

/// A share counted by `acquire` whose handshake has not finished yet.
struct PendingShare {
    pool: Weak<Pool>,
    /// `None` once the share became a [`Lease`] or was given back.
    entry: Option<Arc<Entry>>,
    holder: String,
}

impl Drop for PendingShare {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            release_later(&self.pool, entry, std::mem::take(&mut self.holder));
        }
    }
}

impl Drop for Lease {
    /// A lease dropped without `close` (its owner was cancelled or forgot) still gives its
    /// share back, so the connection closes with its last user and listings stay true.
    fn drop(&mut self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            let entry = lock(&self.home).entry.clone();
            release_later(&self.pool, entry, self.holder.clone());
        }
    }
}

/// A stream opened on a sibling connection; dropping it gives that share back (the
/// lease's own `Drop`).
struct HeldStream {
    stream: Box<dyn TunnelStream>,
    _lease: Lease,
}

impl tokio::io::AsyncRead for HeldStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for HeldStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Events of a channel opened on a sibling connection; releases that share at the end.
struct HeldEvents {
    events: Box<dyn EventSource>,
    lease: Option<Lease>,
}

#[async_trait]
impl EventSource for HeldEvents {
    async fn recv(&mut self) -> Option<ChannelEvent> {
        let event = self.events.recv().await;
        if event.is_none() {
            if let Some(lease) = self.lease.take() {
                lease.close().await;
            }
        }
        event
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(what: &str, detail: &str) -> Error {
        Error::ChannelRefused {
            host: "db1".into(),
            what: what.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn only_a_refused_channel_open_is_a_lack_of_room() {
        // The words each backend uses when sshd's MaxSessions is reached (seen on both).
        assert!(no_room(&refused(
            "a session channel",
            "Failed to open channel (ConnectFailed)"
        )));
        assert!(no_room(&refused(
            "a shell",
            "the ControlMaster could not open the session: Server refused the request: \
             Session open refused by peer."
        )));
        // A refused PTY, shell request or tunnel is the same on any connection.
        assert!(!no_room(&refused("a PTY", "Failed to open channel")));
        assert!(!no_room(&refused(
            "a tunnel to db:5432",
            "administratively prohibited"
        )));
        assert!(!no_room(&Error::ShutDown));
    }

    #[test]
    fn refusal_errors_name_the_host_and_what_to_change() {
        for e in [
            refuses_sessions(refused("a shell", "no")),
            out_of_room(refused("a shell", "no"), ROOM_ATTEMPTS),
        ] {
            let text = e.to_string();
            assert!(matches!(e, Error::ChannelRefused { .. }), "{text}");
            assert!(
                text.starts_with("db1: the server refused a shell: no ("),
                "{text}"
            );
            assert!(text.contains("MaxSessions in db1's sshd_config"), "{text}");
        }
    }
}
