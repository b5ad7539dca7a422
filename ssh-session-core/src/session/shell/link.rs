//! The session's connection as its users see it: the status (connecting, connected,
//! reconnecting n of N, error, closed), the last failure, and how often it came back.

use std::time::SystemTime;

use crate::session::types::{SessionInfo, SessionStatus, StatusEvent};

pub(super) struct Link {
    /// The session's name, for its status events.
    name: String,
    status: SessionStatus,
    last_error: Option<(String, SystemTime)>,
    reconnects: u32,
    connected_since: Option<SystemTime>,
}

impl Link {
    pub(super) fn new(name: &str) -> Self {
        Link {
            name: name.to_string(),
            status: SessionStatus::Connecting,
            last_error: None,
            reconnects: 0,
            connected_since: None,
        }
    }

    pub(super) fn status(&self) -> &SessionStatus {
        &self.status
    }

    /// Changes the status; the event to send, if it changed. Nothing changes once closed.
    pub(super) fn set_status(&mut self, status: SessionStatus) -> Option<StatusEvent> {
        if self.status == status || self.status == SessionStatus::Closed {
            return None;
        }
        match &status {
            SessionStatus::Connected => self.connected_since = Some(SystemTime::now()),
            SessionStatus::Error { detail, at } => {
                self.last_error = Some((detail.clone(), *at));
            }
            _ => {}
        }
        self.status = status.clone();
        Some(StatusEvent {
            session: self.name.clone(),
            status,
            at: SystemTime::now(),
        })
    }

    /// The connection was lost: the failure to report, even once it is back.
    pub(super) fn note_lost(&mut self, cause: &str) {
        self.last_error = Some((format!("connection lost: {cause}"), SystemTime::now()));
    }

    pub(super) fn reconnected(&mut self) {
        self.reconnects += 1;
    }

    /// `base` with the connection's fields. `lost`: the connection is known dead though no
    /// reader noticed yet, which a listing shows as an error since `since`.
    pub(super) fn info(
        &self,
        base: SessionInfo,
        lost: Option<String>,
        since: SystemTime,
    ) -> SessionInfo {
        let status = match (&self.status, lost) {
            (SessionStatus::Connected, Some(detail)) => SessionStatus::Error { detail, at: since },
            (status, _) => status.clone(),
        };
        SessionInfo {
            status,
            last_error: self.last_error.clone(),
            reconnects: self.reconnects,
            connected_since: self.connected_since,
            ..base
        }
    }
}
