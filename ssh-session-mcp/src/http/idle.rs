//! Ending idle MCP sessions of the HTTP mode.
//!
//! rmcp can end a session itself (`SessionConfig::keep_alive`), but it counts only
//! messages: a tool call that runs longer than the timeout without progress notifications
//! (a 40-minute build) had its session, and so its answer, cut off. Here a session is idle
//! only while no HTTP exchange of it is in progress (a POST awaiting its answer, an open
//! GET stream) and none has been for the whole timeout; a sweeper then closes it, and its
//! client gets 404 and initializes again, as the specification says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::SessionId;

/// The activity of every MCP session opened through the gate.
#[derive(Debug)]
pub struct IdleTracker {
    timeout: Duration,
    sessions: Mutex<HashMap<SessionId, Activity>>,
}

#[derive(Debug)]
struct Activity {
    /// Exchanges under way.
    in_flight: usize,
    /// When the last one ended (or the session started).
    since: Instant,
}

/// One HTTP exchange of a session: it counts as activity until dropped.
#[derive(Debug)]
pub struct Exchange {
    tracker: Arc<IdleTracker>,
    id: SessionId,
}

impl IdleTracker {
    /// Sessions idle for `timeout` are to be ended.
    pub fn new(timeout: Duration) -> IdleTracker {
        IdleTracker {
            timeout,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Activity>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session, whose first exchange (the `initialize`) is under way.
    pub fn opened(self: &Arc<Self>, id: SessionId) -> Exchange {
        let activity = Activity {
            in_flight: 1,
            since: Instant::now(),
        };
        self.lock().insert(id.clone(), activity);
        Exchange {
            tracker: self.clone(),
            id,
        }
    }

    /// An exchange of session `id` begins; `None` for a session not tracked (unknown or
    /// ended: rmcp answers it with 404), so bogus ids take no memory.
    pub fn begin(self: &Arc<Self>, id: &str) -> Option<Exchange> {
        let mut sessions = self.lock();
        let id = sessions.get_key_value(id)?.0.clone();
        if let Some(activity) = sessions.get_mut(&id) {
            activity.in_flight += 1;
        }
        Some(Exchange {
            tracker: self.clone(),
            id,
        })
    }

    /// Forgets a session that was ended (DELETE).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Closes every session idle for the timeout, and forgets those rmcp ended itself.
    pub async fn sweep(&self, manager: &LocalSessionManager) {
        let live: Vec<SessionId> = manager.sessions.read().await.keys().cloned().collect();
        for id in self.take_expired(&live) {
            tracing::info!(session = %id, "ending an idle MCP session");
            if let Err(e) = manager.close_session(&id).await {
                tracing::warn!(session = %id, "could not end an idle MCP session: {e}");
            }
        }
    }

    /// Forgets the sessions not in `live`, and removes and returns those idle for the
    /// timeout.
    fn take_expired(&self, live: &[SessionId]) -> Vec<SessionId> {
        let mut sessions = self.lock();
        sessions.retain(|id, _| live.contains(id));
        let expired: Vec<SessionId> = sessions
            .iter()
            .filter(|(_, a)| a.in_flight == 0 && a.since.elapsed() >= self.timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            sessions.remove(id);
        }
        expired
    }

    /// Sweeps a few times per timeout until `cancel` fires.
    pub async fn run(
        self: Arc<Self>,
        manager: Arc<LocalSessionManager>,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let period = (self.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => self.sweep(&manager).await,
            }
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(activity) = self.tracker.lock().get_mut(&self.id) {
            activity.in_flight = activity.in_flight.saturating_sub(1);
            activity.since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sessions_without_exchanges_for_the_timeout_expire() {
        let tracker = Arc::new(IdleTracker::new(Duration::from_millis(50)));
        let live: Vec<SessionId> = ["busy".into(), "idle".into(), "later".into()].into();
        let busy = tracker.opened("busy".into());
        drop(tracker.opened("idle".into()));
        drop(tracker.opened("gone".into()));
        assert!(
            tracker.begin("unknown").is_none(),
            "bogus ids are not tracked"
        );
        assert!(
            tracker.take_expired(&live).is_empty(),
            "nothing idle for 50 ms yet"
        );
        assert!(
            !tracker.lock().contains_key("gone"),
            "ended elsewhere: forgotten"
        );
        std::thread::sleep(Duration::from_millis(60));
        drop(tracker.opened("later".into()));
        let again = tracker.begin("busy");
        assert_eq!(tracker.take_expired(&live), vec![SessionId::from("idle")]);
        // The busy session's clock starts when its last exchange ends.
        drop(busy);
        drop(again);
        assert!(tracker.take_expired(&live).is_empty());
        assert_eq!(tracker.lock()["busy"].in_flight, 0);
        std::thread::sleep(Duration::from_millis(60));
        let mut expired = tracker.take_expired(&live);
        expired.sort();
        assert_eq!(
            expired,
            vec![SessionId::from("busy"), SessionId::from("later")]
        );
    }
}
