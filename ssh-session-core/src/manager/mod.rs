//! [`SessionManager`]: named sessions, shared safely between tasks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

mod connection;
mod many;
mod pool;
mod tunnels;

pub use connection::ConnectionInfo;
pub use many::ManyResult;

use crate::error::{Error, Result};
use crate::options::ConnectOptions;
use crate::session::{Endpoint, Session, SessionConfig, SessionInfo, SessionStatus, ShellSession};
use crate::transport::{Transport, TransportKind};
use pool::Pool;

/// Opens, finds, lists and closes named [`ShellSession`]s. `Send + Sync` and cheap to
/// clone: share one manager between any number of tasks. No lock is ever held across a
/// network round trip, so a slow connect or command on one session never blocks another.
///
/// Sessions to the same (transport, user, host, port, jump chain) share one SSH connection,
/// each on its own channel; concurrent opens share one handshake; when the server refuses
/// another channel (sshd `MaxSessions`) the session gets a new connection; a connection
/// closes with its last session.
#[derive(Clone, Default)]
pub struct SessionManager {
    inner: Arc<ManagerInner>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("sessions", &self.names())
            .field("connections", &self.connection_count())
            .finish()
    }
}

#[derive(Default)]
struct ManagerInner {
    slots: RwLock<BTreeMap<String, Slot>>,
    shut_down: AtomicBool,
    pool: Arc<Pool>,
    tunnels: crate::tunnel::Registry,
}

enum Slot {
    /// Reserved while connecting, so a second open of the same name fails at once.
    Opening {
        endpoint: Endpoint,
        transport: TransportKind,
        created: SystemTime,
    },
    Open(ShellSession),
}

/// A name reserved while its session opens. If the open is cancelled (its future
/// dropped: a caller's timeout, a client that went away), the name is freed again rather
/// than left reserved forever.
struct Reservation<'a> {
    manager: &'a SessionManager,
    name: &'a str,
    /// Cleared once the open finished and `settle` takes over the slot.
    armed: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut slots = self.manager.write();
        if matches!(slots.get(self.name), Some(Slot::Opening { .. })) {
            slots.remove(self.name);
        }
    }
}

/// Checks a session name: 1 to 64 characters from `A-Z a-z 0-9 . _ -`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { name: name.into() })
    }
}

impl SessionManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a session named `name` with the backend `connect.transport` chooses, on a
    /// pooled connection.
    pub async fn open(
        &self,
        name: &str,
        connect: ConnectOptions,
        config: SessionConfig,
    ) -> Result<ShellSession> {
        let endpoint = Endpoint {
            host: connect.host.clone(),
            user: connect.user.clone(),
            port: connect.port,
        };
        self.reserve(name, &endpoint, connect.transport)?;
        let mut reservation = Reservation {
            manager: self,
            name,
            armed: true,
        };
        let opened = self.open_pooled(name, &connect, endpoint, config).await;
        reservation.armed = false;
        self.settle(name, opened).await
    }

    async fn open_pooled(
        &self,
        name: &str,
        connect: &ConnectOptions,
        endpoint: Endpoint,
        config: SessionConfig,
    ) -> Result<ShellSession> {
        // A refused channel marks its connection full; the next lease is on another one.
        const ATTEMPTS: usize = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let lease = Arc::new(self.inner.pool.acquire(connect, name).await?);
            let transport: Arc<dyn Transport> = lease.clone();
            match ShellSession::start(name, endpoint.clone(), transport, config.clone()).await {
                Err(Error::ChannelRefused { .. }) if attempt < ATTEMPTS => lease.mark_full(),
                Ok(session) => {
                    // A lost connection is replaced through the pool: a dead one is never
                    // handed out again, and sessions cut off together share the new one.
                    let pool = self.inner.pool.clone();
                    let opts = connect.clone();
                    let holder = name.to_string();
                    session.set_reconnector(Arc::new(move || {
                        let pool = pool.clone();
                        let opts = opts.clone();
                        let holder = holder.clone();
                        Box::pin(async move {
                            let lease: Arc<dyn Transport> =
                                Arc::new(pool.acquire(&opts, &holder).await?);
                            Ok(lease)
                        })
                    }));
                    return Ok(session);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The persistent (tmux) sessions that survive on the host `connect` reaches, by name:
    /// open a session of one of these names with `persistent: true` to re-adopt it.
    pub async fn list_persistent(&self, connect: &ConnectOptions) -> Result<Vec<String>> {
        let lease = self
            .inner
            .pool
            .acquire(connect, "(list_persistent)")
            .await?;
        let names = crate::persistent::list(&lease).await;
        lease.close().await;
        names
    }

    /// Closes the session named `name` but leaves its persistent shell running remotely.
    pub async fn detach(&self, name: &str) -> Result<()> {
        let slot = self.write().remove(name);
        if slot.is_some() {
            self.inner.tunnels.close_session(name).await;
        }
        match slot {
            Some(Slot::Open(session)) => session.detach().await,
            Some(Slot::Opening { .. }) => Ok(()),
            None => Err(Error::UnknownSession {
                name: name.into(),
                existing: self.names(),
            }),
        }
    }

    /// How many SSH connections the pool holds open.
    pub fn connection_count(&self) -> usize {
        self.inner.pool.connections()
    }

    /// Every pooled SSH connection with its status and the sessions on it, oldest first.
    /// A lost connection stays listed while its sessions reconnect (status
    /// `Reconnecting { attempt, of }`) or after they gave up (`Error` with the cause), until
    /// they get a new one or close.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let statuses: BTreeMap<String, (SessionStatus, Option<(String, SystemTime)>)> = self
            .read()
            .iter()
            .filter_map(|(name, slot)| match slot {
                Slot::Open(session) => {
                    let info = session.info();
                    Some((name.clone(), (info.status, info.last_error)))
                }
                Slot::Opening { .. } => None,
            })
            .collect();
        self.inner
            .pool
            .snapshot()
            .into_iter()
            .map(|entry| ConnectionInfo::derive(entry, &statuses))
            .collect()
    }

    /// Opens a session named `name` over an already connected transport (any backend).
    pub async fn open_with_transport(
        &self,
        name: &str,
        endpoint: Endpoint,
        transport: Arc<dyn Transport>,
        config: SessionConfig,
    ) -> Result<ShellSession> {
        self.reserve(name, &endpoint, transport.kind())?;
        let mut reservation = Reservation {
            manager: self,
            name,
            armed: true,
        };
        let opened = ShellSession::start(name, endpoint, transport, config).await;
        reservation.armed = false;
        self.settle(name, opened).await
    }

    fn reserve(&self, name: &str, endpoint: &Endpoint, transport: TransportKind) -> Result<()> {
        validate_name(name)?;
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        let mut slots = self.write();
        if slots.contains_key(name) {
            return Err(Error::DuplicateName { name: name.into() });
        }
        slots.insert(
            name.into(),
            Slot::Opening {
                endpoint: endpoint.clone(),
                transport,
                created: SystemTime::now(),
            },
        );
        Ok(())
    }

    async fn settle(&self, name: &str, opened: Result<ShellSession>) -> Result<ShellSession> {
        let session = match opened {
            Ok(session) => session,
            Err(e) => {
                self.write().remove(name);
                return Err(e);
            }
        };
        let still_wanted = {
            let mut slots = self.write();
            let wanted = !self.inner.shut_down.load(Ordering::Acquire)
                && matches!(slots.get(name), Some(Slot::Opening { .. }));
            if wanted {
                slots.insert(name.into(), Slot::Open(session.clone()));
            }
            wanted
        };
        if !still_wanted {
            // Closed or shut down while connecting: don't leak the new connection.
            let _ = session.close().await;
            return Err(if self.inner.shut_down.load(Ordering::Acquire) {
                Error::ShutDown
            } else {
                Error::Closed {
                    session: name.into(),
                }
            });
        }
        Ok(session)
    }

    /// The session named `name`. An unknown name's error lists the existing ones.
    pub fn get(&self, name: &str) -> Result<ShellSession> {
        let slots = self.read();
        match slots.get(name) {
            Some(Slot::Open(session)) => Ok(session.clone()),
            _ => Err(Error::UnknownSession {
                name: name.into(),
                existing: slots.keys().cloned().collect(),
            }),
        }
    }

    /// The names of all sessions, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// A snapshot of every session (including ones still connecting), sorted by name.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.read()
            .iter()
            .map(|(name, slot)| match slot {
                Slot::Open(session) => session.info(),
                Slot::Opening {
                    endpoint,
                    transport,
                    created,
                } => SessionInfo {
                    created: *created,
                    last_activity: *created,
                    ..SessionInfo::new(name, endpoint, *transport)
                },
            })
            .collect()
    }

    /// Closes and forgets the session named `name` (a session still connecting is abandoned).
    pub async fn close(&self, name: &str) -> Result<()> {
        let slot = {
            let mut slots = self.write();
            match slots.remove(name) {
                Some(slot) => slot,
                None => {
                    return Err(Error::UnknownSession {
                        name: name.into(),
                        existing: slots.keys().cloned().collect(),
                    })
                }
            }
        };
        self.inner.tunnels.close_session(name).await;
        match slot {
            Slot::Open(session) => session.close().await,
            Slot::Opening { .. } => Ok(()),
        }
    }

    /// Closes every session and connection concurrently and refuses new ones. When it
    /// returns, no channel, connection or background task of this manager remains.
    pub async fn shutdown(&self) {
        self.inner.shut_down.store(true, Ordering::Release);
        self.inner.tunnels.close_all().await;
        let sessions: Vec<ShellSession> = std::mem::take(&mut *self.write())
            .into_values()
            .filter_map(|slot| match slot {
                Slot::Open(session) => Some(session),
                Slot::Opening { .. } => None,
            })
            .collect();
        futures::future::join_all(sessions.iter().map(|s| s.close())).await;
    }

    /// Like [`shutdown`](Self::shutdown), but persistent sessions are detached rather than
    /// killed: their remote shells keep running, so a later process (a restarted MCP server
    /// or CLI daemon) re-adopts them by opening the same names with `persistent: true`.
    pub async fn shutdown_detaching_persistent(&self) {
        let persistent: Vec<String> = self
            .list()
            .into_iter()
            .filter(|info| info.persistent)
            .map(|info| info.name)
            .collect();
        futures::future::join_all(persistent.iter().map(|name| self.detach(name))).await;
        self.shutdown().await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Slot>> {
        self.inner.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Slot>> {
        self.inner.slots.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn names() {
        for ok in ["a", "web-1", "db_2.prod", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65), "a;rm"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
