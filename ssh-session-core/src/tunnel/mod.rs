//! Port forwarding on a session's connection: local (`ssh -L`), dynamic SOCKS5 (`ssh -D`)
//! and remote (`ssh -R`), with byte counts, that keep working across reconnects.
//!
//! A tunnel belongs to a session, not to one connection: every connection through a local
//! or SOCKS tunnel opens its channel on the session's connection *of the moment*, so after
//! a reconnect new connections simply go over the new link (the ones open when the old
//! link died die with it, as with `ssh -L`). A remote forward is asked for again on the
//! new connection as soon as the session is back. Listening addresses default to loopback.
//!
//! ```no_run
//! use ssh_session_core::tunnel::TunnelSpec;
//! # async fn demo(manager: ssh_session_core::SessionManager) -> ssh_session_core::Result<()> {
//! // Reach the host's PostgreSQL on a free local port.
//! let t = manager.open_tunnel("db", TunnelSpec::local(None, "127.0.0.1:5432")).await?;
//! println!("psql -h 127.0.0.1 -p {}", t.listen.rsplit(':').next().unwrap_or_default());
//! manager.close_tunnel(&t.id).await?;
//! # Ok(())
//! # }
//! ```

mod listen;
mod relay;
mod remote;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::session::{Session, ShellSession};

/// Which way a tunnel goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TunnelKind {
    /// A local port whose connections go to `target` as seen from the host (`ssh -L`).
    Local,
    /// A local SOCKS5 proxy whose connections go wherever the client asks, from the host
    /// (`ssh -D`).
    Socks,
    /// A port on the host whose connections come back to `target` as seen from here
    /// (`ssh -R`).
    Remote,
}

impl TunnelKind {
    /// `local`, `socks` or `remote`.
    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::Local => "local",
            TunnelKind::Socks => "socks",
            TunnelKind::Remote => "remote",
        }
    }
}

impl std::str::FromStr for TunnelKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "local" | "L" => Ok(TunnelKind::Local),
            "socks" | "dynamic" | "D" => Ok(TunnelKind::Socks),
            "remote" | "R" => Ok(TunnelKind::Remote),
            other => Err(format!(
                "unknown tunnel kind {other:?}: use \"local\", \"socks\" or \"remote\""
            )),
        }
    }
}

/// What to open: the kind, where to listen and where to connect, as `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelSpec {
    /// Which way.
    pub kind: TunnelKind,
    /// Where to listen (on this machine for local and SOCKS, on the host for remote);
    /// default `127.0.0.1:0`, a free loopback port.
    pub listen: Option<String>,
    /// Where connections go (from the host for local, from here for remote); none for SOCKS.
    pub target: Option<String>,
}

impl TunnelSpec {
    /// `ssh -L [listen:]target`.
    pub fn local(listen: Option<&str>, target: &str) -> Self {
        TunnelSpec {
            kind: TunnelKind::Local,
            listen: listen.map(Into::into),
            target: Some(target.into()),
        }
    }

    /// `ssh -D [listen]`.
    pub fn socks(listen: Option<&str>) -> Self {
        TunnelSpec {
            kind: TunnelKind::Socks,
            listen: listen.map(Into::into),
            target: None,
        }
    }

    /// `ssh -R [listen:]target`.
    pub fn remote(listen: Option<&str>, target: &str) -> Self {
        TunnelSpec {
            kind: TunnelKind::Remote,
            listen: listen.map(Into::into),
            target: Some(target.into()),
        }
    }
}

/// A tunnel as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelInfo {
    /// Its id (`t1`, `t2`...), to close it by.
    pub id: String,
    /// The session it belongs to.
    pub session: String,
    /// Which way.
    pub kind: TunnelKind,
    /// Where it listens, `HOST:PORT` with the port actually bound.
    pub listen: String,
    /// Where connections go (`None` for SOCKS: where each client asks).
    pub target: Option<String>,
    /// Bytes from the listening side's clients to the target.
    pub bytes_out: u64,
    /// Bytes from the target back to them.
    pub bytes_in: u64,
    /// Connections carried so far.
    pub connections: u64,
    /// The last failure (a connection the host refused, a remote forward not yet
    /// re-established after a reconnect), if any.
    pub last_error: Option<String>,
}

/// `host:port` split, `[v6]:port` included; the error says what was expected.
pub(crate) fn parse_addr(what: &str, s: &str) -> std::result::Result<(String, u16), String> {
    let bad = || format!("{what} {s:?} is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080)");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// `HOST:PORT`, bracketing an IPv6 host.
pub(crate) fn join_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// After a failed `accept` (out of file descriptors, say): a pause, so the loop does not
/// spin while the cause lasts; connections wait in the backlog meanwhile.
pub(crate) async fn accept_failed() {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// The counters and the last failure of one tunnel, shared with its tasks.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) connections: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Where it listens now, if that changed since it opened (a remote forward whose port
    /// the host still held after a reconnect).
    moved: Mutex<Option<String>>,
}

impl Stats {
    pub(crate) fn failed(&self, e: impl std::fmt::Display) {
        tracing::debug!(target: "ssh_session_core::tunnel", "{e}");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    pub(crate) fn moved(&self, listen: String) {
        *self.moved.lock().unwrap_or_else(|p| p.into_inner()) = Some(listen);
    }

    fn listen(&self) -> Option<String> {
        self.moved.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One open tunnel: what it is, its counters, and the tasks that serve it.
struct Open {
    info: TunnelInfo,
    stats: Arc<Stats>,
    stop: Stopper,
}

/// Ends a tunnel's tasks: aborting them closes its listener and connections; a remote
/// forward is cancelled on the server too.
pub(crate) struct Stopper {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    remote: Option<remote::Forwarded>,
}

impl Stopper {
    async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(forwarded) = self.remote {
            forwarded.cancel().await;
        }
    }
}

/// Every tunnel of a session manager.
#[derive(Default)]
pub(crate) struct Registry {
    open: Mutex<BTreeMap<u64, Open>>,
    next: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens `spec` on `session`.
    pub(crate) async fn open(&self, session: ShellSession, spec: TunnelSpec) -> Result<TunnelInfo> {
        let name = session.name().to_string();
        let invalid = |reason: String| Error::InvalidCommand {
            session: name.clone(),
            reason,
        };
        let listen = spec.listen.as_deref().unwrap_or("127.0.0.1:0");
        let (listen_host, listen_port) = parse_addr("listen address", listen).map_err(invalid)?;
        let target = match (&spec.kind, &spec.target) {
            (TunnelKind::Socks, Some(_)) => {
                return Err(invalid(
                    "a SOCKS tunnel has no target: each client names its own".into(),
                ))
            }
            (TunnelKind::Socks, None) => None,
            (_, None) => {
                return Err(invalid(format!(
                    "a {} tunnel needs a target HOST:PORT",
                    spec.kind.name()
                )))
            }
            (_, Some(t)) => Some(parse_addr("target", t).map_err(invalid)?),
        };
        let stats = Arc::new(Stats::default());
        let (listen, stop) = match (spec.kind, target.clone()) {
            (TunnelKind::Remote, Some(target)) => {
                remote::open(&session, (&listen_host, listen_port), target, stats.clone()).await?
            }
            (kind, target) => {
                listen::open(
                    &session,
                    (&listen_host, listen_port),
                    kind,
                    target,
                    stats.clone(),
                )
                .await?
            }
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let info = TunnelInfo {
            id: format!("t{n}"),
            session: name,
            kind: spec.kind,
            listen,
            target: target.map(|(h, p)| join_addr(&h, p)),
            bytes_out: 0,
            bytes_in: 0,
            connections: 0,
            last_error: None,
        };
        self.lock().insert(
            n,
            Open {
                info: info.clone(),
                stats,
                stop,
            },
        );
        Ok(info)
    }

    /// Every tunnel, oldest first, with its counters now.
    pub(crate) fn list(&self) -> Vec<TunnelInfo> {
        self.lock()
            .values()
            .map(|t| TunnelInfo {
                bytes_out: t.stats.bytes_out.load(Ordering::Relaxed),
                bytes_in: t.stats.bytes_in.load(Ordering::Relaxed),
                connections: t.stats.connections.load(Ordering::Relaxed),
                last_error: t.stats.last_error(),
                listen: t.stats.listen().unwrap_or_else(|| t.info.listen.clone()),
                ..t.info.clone()
            })
            .collect()
    }

    /// Closes tunnel `id`.
    pub(crate) async fn close(&self, id: &str) -> Result<()> {
        let found = id
            .strip_prefix('t')
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|n| self.lock().remove(&n));
        match found {
            Some(open) => {
                open.stop.stop().await;
                Ok(())
            }
            None => Err(Error::UnknownTunnel {
                id: id.to_string(),
                existing: self.lock().values().map(|t| t.info.id.clone()).collect(),
            }),
        }
    }

    /// Closes every tunnel of `session` (it is closing).
    pub(crate) async fn close_session(&self, session: &str) {
        let gone: Vec<Open> = {
            let mut open = self.lock();
            let ids: Vec<u64> = open
                .iter()
                .filter(|(_, t)| t.info.session == session)
                .map(|(n, _)| *n)
                .collect();
            ids.iter().filter_map(|n| open.remove(n)).collect()
        };
        for t in gone {
            t.stop.stop().await;
        }
    }

    /// Closes every tunnel.
    pub(crate) async fn close_all(&self) {
        let gone: Vec<Open> = std::mem::take(&mut *self.lock()).into_values().collect();
        for t in gone {
            t.stop.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_clear_errors() {
        assert_eq!(
            parse_addr("t", "127.0.0.1:80"),
            Ok(("127.0.0.1".into(), 80))
        );
        assert_eq!(parse_addr("t", "[::1]:8080"), Ok(("::1".into(), 8080)));
        assert_eq!(
            parse_addr("t", "db.internal:5432"),
            Ok(("db.internal".into(), 5432))
        );
        for bad in ["80", ":80", "host:", "host:99999", "host:x", "a b:1"] {
            let e = parse_addr("target", bad).unwrap_err();
            assert!(e.contains("HOST:PORT") && e.contains(bad), "{e}");
        }
        assert_eq!(join_addr("::1", 1), "[::1]:1");
        assert_eq!(join_addr("h", 2), "h:2");
    }

    #[test]
    fn kinds_parse_by_name_and_by_ssh_letter() {
        assert_eq!("L".parse(), Ok(TunnelKind::Local));
        assert_eq!("socks".parse(), Ok(TunnelKind::Socks));
        assert_eq!("R".parse(), Ok(TunnelKind::Remote));
        assert!("x".parse::<TunnelKind>().unwrap_err().contains("local"));
    }
}
