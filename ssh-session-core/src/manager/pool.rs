//! Connection pooling: sessions to the same (transport, user, host, port, jump chain) share
//! one SSH connection, each on its own channel.
//!
//! Rules: concurrent opens of the same key share one handshake; a connection the server
//! refuses more channels on (sshd `MaxSessions`, 10 by default) is marked full and the next
//! open gets a new connection; a dead connection is never handed out again; the connection
//! closes when its last lease is released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::sync::OnceCell;

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
                    transport: transport.clone(),
                    entry,
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

/// A session's share of a pooled connection. It is a [`Transport`] itself, so sessions
/// don't know they are pooled: `close()` releases the share, and the connection closes
/// with its last share.
pub(crate) struct Lease {
    transport: Arc<dyn Transport>,
    entry: Arc<Entry>,
    holder: String,
    pool: Weak<Pool>,
    released: AtomicBool,
}

impl Lease {
    /// The server refused a channel on this connection: hand out no more shares of it.
    pub(crate) fn mark_full(&self) {
        self.entry.full.store(true, Ordering::Release);
    }

    /// A share of another connection to the same place, for one short-lived channel.
    async fn sibling(&self) -> Result<Lease> {
        self.mark_full();
        let pool = self.pool.upgrade().ok_or(Error::ShutDown)?;
        pool.acquire(&self.entry.opts, &self.holder).await
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("transport", &self.transport)
            .finish()
    }
}

#[async_trait]
impl Transport for Lease {
    fn kind(&self) -> TransportKind {
        self.transport.kind()
    }

    fn describe(&self) -> String {
        self.transport.describe()
    }

    async fn open_shell(&self, request: ShellRequest) -> Result<Channel> {
        let result = self.transport.open_shell(request).await;
        if let Err(Error::ChannelRefused { .. }) = &result {
            self.mark_full();
        }
        result
    }

    async fn open_exec(&self, command: &str, pty: Option<PtyRequest>) -> Result<Channel> {
        match self.transport.open_exec(command, pty.clone()).await {
            Err(Error::ChannelRefused { .. }) if !self.transport.is_closed() => {
                // A full connection must still let its sessions signal their commands:
                // run the short exec on a sibling connection and hold that share until
                // the channel ends.
                let sibling = self.sibling().await?;
                let channel = sibling.transport.open_exec(command, pty).await;
                match channel {
                    Ok(channel) => Ok(Channel {
                        input: channel.input,
                        events: Box::new(HeldEvents {
                            events: channel.events,
                            lease: Some(sibling),
                        }),
                    }),
                    Err(e) => {
                        sibling.close().await;
                        Err(e)
                    }
                }
            }
            other => other,
        }
    }

    async fn open_direct_tcpip(&self, host: &str, port: u16) -> Result<Box<dyn TunnelStream>> {
        self.transport.open_direct_tcpip(host, port).await
    }

    fn is_closed(&self) -> bool {
        self.released.load(Ordering::Acquire) || self.transport.is_closed()
    }

    async fn close(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(pool) = self.pool.upgrade() {
            pool.release(&self.entry, &self.holder).await;
        } else {
            self.transport.close().await;
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
            release_later(&self.pool, self.entry.clone(), self.holder.clone());
        }
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
