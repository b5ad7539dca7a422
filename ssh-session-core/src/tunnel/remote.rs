//! Remote tunnels (`-R`): the server listens, and each connection it accepts comes back
//! through the session's connection to a relay of ours on loopback, which connects to the
//! target here and counts the bytes.
//!
//! After a reconnect the forward is asked for again on the new connection, on the same
//! port. The server may still hold that port for the old connection: after a stalled
//! (not reset) link, sshd keeps the old connection's process until it notices, which
//! with its default `ClientAliveInterval 0` is never. So the same port is tried for
//! [`SAME_PORT_FOR`], and then a free one is taken, which the tunnel's listing shows and
//! its last error explains.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

use super::{join_addr, relay::relay, Stats, Stopper};
use crate::error::{Error, Result};
use crate::session::{Session, SessionStatus, ShellSession};
use crate::transport::Transport;

/// How long the same port is asked for again after a reconnect before another is taken.
const SAME_PORT_FOR: Duration = Duration::from_secs(10);
/// The pause between two asks.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Where the server listens for us now (the port may change after a reconnect).
struct Listening {
    host: String,
    port: Mutex<u16>,
    relay: SocketAddr,
}

impl Listening {
    fn port(&self) -> u16 {
        *self.port.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A forward the server holds for us, to cancel when the tunnel closes.
pub(super) struct Forwarded {
    session: ShellSession,
    listening: Arc<Listening>,
}

impl Forwarded {
    pub(super) async fn cancel(self) {
        // A session already closed took its connection, and the forward, with it.
        if !self.session.is_closed() {
            let l = &self.listening;
            let _ = self
                .session
                .transport()
                .cancel_remote(&l.host, l.port())
                .await;
        }
    }
}

/// A transport's identity: a reconnect hands the session a new one.
fn identity(t: &Arc<dyn Transport>) -> usize {
    Arc::as_ptr(t).cast::<()>() as usize
}

pub(super) async fn open(
    session: &ShellSession,
    (host, port): (&str, u16),
    (target_host, target_port): (String, u16),
    stats: Arc<Stats>,
) -> Result<(String, Stopper)> {
    let local_error = |e: std::io::Error| Error::InvalidCommand {
        session: session.name().to_string(),
        reason: format!("cannot listen on this machine's loopback for a remote tunnel: {e}"),
    };
    let relay_listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(local_error)?;
    let relay_addr = relay_listener.local_addr().map_err(local_error)?;
    let status = session.subscribe_status();
    let transport = session.transport();
    let bound = transport.forward_remote(host, port, relay_addr).await?;
    let listening = Arc::new(Listening {
        host: host.to_string(),
        port: Mutex::new(bound),
        relay: relay_addr,
    });

    let accept_stats = stats.clone();
    let accept = tokio::spawn(async move {
        // Owned by this task: aborting it (closing the tunnel) ends every connection.
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = relay_listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let Ok((incoming, _)) = accepted else {
                super::accept_failed().await;
                continue;
            };
            let _ = incoming.set_nodelay(true);
            let (stats, target_host) = (accept_stats.clone(), target_host.clone());
            connections.spawn(async move {
                match TcpStream::connect((target_host.as_str(), target_port)).await {
                    Ok(target) => {
                        let _ = target.set_nodelay(true);
                        relay(incoming, target, &stats).await;
                    }
                    Err(e) => stats.failed(format!(
                        "a connection to the remote tunnel could not reach {} here: {e}",
                        join_addr(&target_host, target_port)
                    )),
                }
            });
        }
    });
    let watch = tokio::spawn(watch(
        session.clone(),
        status,
        identity(&transport),
        listening.clone(),
        stats,
    ));
    Ok((
        join_addr(host, bound),
        Stopper {
            tasks: vec![accept, watch],
            remote: Some(Forwarded {
                session: session.clone(),
                listening,
            }),
        },
    ))
}

/// Asks for the forward again each time the session is connected over a new link.
async fn watch(
    session: ShellSession,
    mut status: tokio::sync::broadcast::Receiver<crate::session::StatusEvent>,
    mut holder: usize,
    listening: Arc<Listening>,
    stats: Arc<Stats>,
) {
    loop {
        match status.recv().await {
            Ok(event) if event.status == SessionStatus::Closed => return,
            Ok(event) if event.status != SessionStatus::Connected => continue,
            // Connected, or events missed: look at which link the session has now.
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
        let transport = session.transport();
        if identity(&transport) == holder || session.is_closed() {
            continue;
        }
        if re_establish(&session, &transport, &listening, &stats).await {
            holder = identity(&transport);
        }
    }
}

/// The same port for a while, then any; whether the server listens again.
async fn re_establish(
    session: &ShellSession,
    transport: &Arc<dyn Transport>,
    l: &Listening,
    stats: &Stats,
) -> bool {
    let old = l.port();
    let deadline = tokio::time::Instant::now() + SAME_PORT_FOR;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match transport.forward_remote(&l.host, old, l.relay).await {
            Ok(_) => return true,
            Err(e) => last = e.to_string(),
        }
        if session.is_closed() || transport.is_closed() {
            return false;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    match transport.forward_remote(&l.host, 0, l.relay).await {
        Ok(port) => {
            *l.port.lock().unwrap_or_else(|p| p.into_inner()) = port;
            let now = join_addr(&l.host, port);
            stats.moved(now.clone());
            stats.failed(format!(
                "after the reconnect the host still held {} (its old connection's sshd has not noticed the loss: {last}); the tunnel now listens on {now}",
                join_addr(&l.host, old)
            ));
            true
        }
        Err(e) => {
            stats.failed(format!(
                "the remote forward from {} was not re-established after the reconnect: {e}",
                join_addr(&l.host, old)
            ));
            false
        }
    }
}
