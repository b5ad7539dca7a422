//! The manager's side of [port forwarding](crate::tunnel): tunnels are opened on a named
//! session, listed across all sessions, and closed with their session.

use super::SessionManager;
use crate::error::Result;
use crate::tunnel::{TunnelInfo, TunnelSpec};

impl SessionManager {
    /// Opens a tunnel on session `session`'s connection (see [`tunnel`](crate::tunnel)).
    /// It lasts until [`close_tunnel`](Self::close_tunnel) or until the session closes,
    /// and keeps working across the session's reconnects.
    pub async fn open_tunnel(&self, session: &str, spec: TunnelSpec) -> Result<TunnelInfo> {
        let session = self.get(session)?;
        self.inner.tunnels.open(session, spec).await
    }

    /// Every open tunnel, oldest first, with its byte counts now.
    pub fn tunnels(&self) -> Vec<TunnelInfo> {
        self.inner.tunnels.list()
    }

    /// Closes tunnel `id` (as listed): its listener and its connections.
    pub async fn close_tunnel(&self, id: &str) -> Result<()> {
        self.inner.tunnels.close(id).await
    }
}
