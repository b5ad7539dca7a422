//! Per-connection status: what the pool knows about a connection, combined with what its
//! sessions know (a dead connection is "reconnecting" exactly while its sessions are).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::pool::{EntrySnapshot, LinkState};
use crate::options::JumpHost;
use crate::session::SessionStatus;
use crate::transport::TransportKind;

/// One pooled SSH connection, for listings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// Unique within the manager; a replacement connection gets a new id.
    pub id: u64,
    /// Backend carrying it.
    pub transport: TransportKind,
    /// Remote user.
    pub user: String,
    /// Remote host.
    pub host: String,
    /// Remote port.
    pub port: u16,
    /// Jump hosts it goes through, in order.
    pub jumps: Vec<JumpHost>,
    /// Connecting, connected, reconnecting (attempt n of N, while its sessions try to get a
    /// new connection), error (they gave up: the last cause and when), or closed.
    pub status: SessionStatus,
    /// When its handshake completed.
    pub connected_since: Option<SystemTime>,
    /// The server refused more channels on it (sshd `MaxSessions`): new sessions go to
    /// another connection.
    pub full: bool,
    /// Names of the sessions on it, sorted, each once.
    pub sessions: Vec<String>,
}

type SessionStatuses = BTreeMap<String, (SessionStatus, Option<(String, SystemTime)>)>;

impl ConnectionInfo {
    pub(super) fn derive(entry: EntrySnapshot, sessions: &SessionStatuses) -> ConnectionInfo {
        let mut names = entry.holders.clone();
        names.sort();
        names.dedup();
        let status = match entry.state {
            LinkState::Connecting => SessionStatus::Connecting,
            LinkState::Live => SessionStatus::Connected,
            LinkState::Dead => dead_status(&names, sessions, entry.connected_at),
        };
        ConnectionInfo {
            id: entry.id,
            transport: entry.kind,
            user: entry.user,
            host: entry.host,
            port: entry.port,
            jumps: entry.jumps,
            status,
            connected_since: entry.connected_at,
            full: entry.full,
            sessions: names,
        }
    }
}

/// A lost connection is reconnecting while any of its sessions is (the furthest attempt
/// wins); else it is in error if a session gave up on it (or recorded an error since it
/// connected: an older one belongs to an earlier connection); else it is simply closed.
fn dead_status(
    names: &[String],
    sessions: &SessionStatuses,
    connected_at: Option<SystemTime>,
) -> SessionStatus {
    let mut reconnecting: Option<(u32, u32)> = None;
    let mut error: Option<(String, SystemTime)> = None;
    for name in names {
        let Some((status, last_error)) = sessions.get(name) else {
            continue;
        };
        match status {
            SessionStatus::Reconnecting { attempt, of } => {
                if reconnecting.is_none_or(|(a, _)| *attempt > a) {
                    reconnecting = Some((*attempt, *of));
                }
            }
            SessionStatus::Error { detail, at } => {
                if error.as_ref().is_none_or(|(_, t)| at > t) {
                    error = Some((detail.clone(), *at));
                }
            }
            _ => {
                let recent = last_error
                    .as_ref()
                    .filter(|(_, at)| connected_at.is_none_or(|c| *at >= c));
                if let Some((detail, at)) = recent {
                    if error.is_none() {
                        error = Some((detail.clone(), *at));
                    }
                }
            }
        }
    }
    match (reconnecting, error) {
        (Some((attempt, of)), _) => SessionStatus::Reconnecting { attempt, of },
        (None, Some((detail, at))) => SessionStatus::Error { detail, at },
        (None, None) => SessionStatus::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snapshot(state: LinkState, holders: &[&str]) -> EntrySnapshot {
        EntrySnapshot {
            id: 7,
            kind: TransportKind::Russh,
            user: "u".into(),
            host: "h".into(),
            port: 22,
            jumps: vec![],
            state,
            full: false,
            connected_at: None,
            holders: holders.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn live_and_connecting_come_from_the_pool() {
        let none = SessionStatuses::new();
        let live = ConnectionInfo::derive(snapshot(LinkState::Live, &["b", "a", "b"]), &none);
        assert_eq!(live.status, SessionStatus::Connected);
        assert_eq!(live.sessions, ["a", "b"]);
        let c = ConnectionInfo::derive(snapshot(LinkState::Connecting, &["a"]), &none);
        assert_eq!(c.status, SessionStatus::Connecting);
    }

    #[test]
    fn a_dead_connection_reports_its_sessions_progress() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut s = SessionStatuses::new();
        s.insert(
            "a".into(),
            (SessionStatus::Reconnecting { attempt: 1, of: 3 }, None),
        );
        s.insert(
            "b".into(),
            (SessionStatus::Reconnecting { attempt: 2, of: 3 }, None),
        );
        let info = ConnectionInfo::derive(snapshot(LinkState::Dead, &["a", "b"]), &s);
        assert_eq!(
            info.status,
            SessionStatus::Reconnecting { attempt: 2, of: 3 }
        );

        s.insert(
            "a".into(),
            (
                SessionStatus::Error {
                    detail: "refused".into(),
                    at: t0,
                },
                None,
            ),
        );
        s.remove("b");
        let info = ConnectionInfo::derive(snapshot(LinkState::Dead, &["a", "b"]), &s);
        assert_eq!(
            info.status,
            SessionStatus::Error {
                detail: "refused".into(),
                at: t0
            }
        );

        let info = ConnectionInfo::derive(snapshot(LinkState::Dead, &["gone"]), &s);
        assert_eq!(info.status, SessionStatus::Closed);

        // A connected session's last error from before this connection existed is history.
        let mut s = SessionStatuses::new();
        s.insert(
            "a".into(),
            (SessionStatus::Connected, Some(("old cut".into(), t0))),
        );
        let mut dead = snapshot(LinkState::Dead, &["a"]);
        dead.connected_at = Some(t0 + Duration::from_secs(5));
        assert_eq!(
            ConnectionInfo::derive(dead.clone(), &s).status,
            SessionStatus::Closed
        );
        dead.connected_at = Some(t0 - Duration::from_secs(5));
        assert!(matches!(
            ConnectionInfo::derive(dead, &s).status,
            SessionStatus::Error { .. }
        ));
    }
}
