//! Remote tunnels (`-R`): the server listens, and each connection it accepts comes back
//! through the session's connection to a relay of ours on loopback, which connects to the
//! target here and counts the bytes. After a reconnect the forward is asked for again, on
//! the same port, on the new connection.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::{join_addr, relay::relay, Stats, Stopper};
use crate::error::{Error, Result};
use crate::session::{Session, SessionStatus, ShellSession};

/// A forward the server holds for us, to cancel when the tunnel closes.
pub(super) struct Forwarded {
    session: ShellSession,
    host: String,
    port: u16,
}

impl Forwarded {
    pub(super) async fn cancel(self) {
        // A session already closed took its connection, and the forward, with it.
        if !self.session.is_closed() {
            let _ = self
                .session
                .transport()
                .cancel_remote(&self.host, self.port)
                .await;
        }
    }
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
    let mut status = session.subscribe_status();
    let bound = session
        .transport()
        .forward_remote(host, port, relay_addr)
        .await?;

    let accept_stats = stats.clone();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((incoming, _)) = relay_listener.accept().await else {
                continue;
            };
            let _ = incoming.set_nodelay(true);
            let (stats, target_host) = (accept_stats.clone(), target_host.clone());
            tokio::spawn(async move {
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

    let watched = session.clone();
    let listen_host = host.to_string();
    let watch = tokio::spawn(async move {
        let mut lost = false;
        loop {
            let event = match status.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            match event.status {
                SessionStatus::Closed => return,
                SessionStatus::Connected if lost => {
                    lost = false;
                    if let Err(e) = watched
                        .transport()
                        .forward_remote(&listen_host, bound, relay_addr)
                        .await
                    {
                        stats.failed(format!(
                            "the remote forward from {} was not re-established after the reconnect: {e}",
                            join_addr(&listen_host, bound)
                        ));
                    }
                }
                SessionStatus::Connected => {}
                _ => lost = true,
            }
        }
    });
    Ok((
        join_addr(host, bound),
        Stopper {
            tasks: vec![accept, watch],
            remote: Some(Forwarded {
                session: session.clone(),
                host: host.to_string(),
                port: bound,
            }),
        },
    ))
}
