//! Local (`-L`) and SOCKS5 (`-D`) tunnels: a listener here, and for each connection a
//! `direct-tcpip` channel on the session's current connection.

use std::sync::Arc;

use fast_socks5::server::Socks5ServerProtocol;
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::net::{TcpListener, TcpStream};

use super::{join_addr, relay::relay, Stats, Stopper, TunnelKind};
use crate::error::{Error, Result};
use crate::session::{Session, ShellSession};

/// How long a SOCKS client has to say where it wants to go.
const SOCKS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// Binds `listen` and serves it until stopped. The address actually bound, and the stopper.
pub(super) async fn open(
    session: &ShellSession,
    (host, port): (&str, u16),
    kind: TunnelKind,
    target: Option<(String, u16)>,
    stats: Arc<Stats>,
) -> Result<(String, Stopper)> {
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::InvalidCommand {
            session: session.name().to_string(),
            reason: format!(
                "cannot listen on {}: {e}; choose another port (0 picks a free one)",
                join_addr(host, port)
            ),
        })?;
    let bound = listener
        .local_addr()
        .map(|a| join_addr(&a.ip().to_string(), a.port()))
        .unwrap_or_else(|_| join_addr(host, port));
    let session = session.clone();
    let task = tokio::spawn(async move {
        // Owned by this task: aborting it (closing the tunnel) ends every connection.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let Ok((client, _)) = accepted else {
                super::accept_failed().await;
                continue;
            };
            if session.is_closed() {
                return;
            }
            let _ = client.set_nodelay(true);
            let (session, stats, target) = (session.clone(), stats.clone(), target.clone());
            connections.spawn(async move {
                match (kind, target) {
                    (TunnelKind::Socks, _) => socks(&session, client, &stats).await,
                    (_, Some((host, port))) => forward(&session, client, &host, port, &stats).await,
                    (_, None) => {}
                }
            });
        }
    });
    Ok((
        bound,
        Stopper {
            tasks: vec![task],
            remote: None,
        },
    ))
}

/// One `-L` connection: a channel to `host:port` on the session's connection now.
async fn forward(session: &ShellSession, client: TcpStream, host: &str, port: u16, stats: &Stats) {
    match session.transport().open_direct_tcpip(host, port).await {
        Ok(channel) => relay(client, channel, stats).await,
        Err(e) => stats.failed(e),
    }
}

/// One SOCKS5 connection: the client names the target, then the channel is relayed.
async fn socks(session: &ShellSession, client: TcpStream, stats: &Stats) {
    // No authentication, as `ssh -D`: the listener is on loopback by default, and
    // anyone who may connect to it may use the session's host.
    // A client that connects and says nothing must not hold a task for ever.
    let handshake = async {
        let proto = Socks5ServerProtocol::accept_no_auth(client)
            .await
            .map_err(|e| format!("a SOCKS client failed its handshake: {e}"))?;
        proto
            .read_command()
            .await
            .map_err(|e| format!("a SOCKS client sent a bad request: {e}"))
    };
    let (proto, command, target) = match tokio::time::timeout(SOCKS_HANDSHAKE, handshake).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return stats.failed(e),
        Err(_) => return stats.failed("a SOCKS client sent no request within 10 s"),
    };
    if command != Socks5Command::TCPConnect {
        let _ = proto.reply_error(&ReplyError::CommandNotSupported).await;
        return stats.failed(format!(
            "a SOCKS client asked for {command:?}; only CONNECT is carried"
        ));
    }
    let (host, port) = match &target {
        TargetAddr::Ip(addr) => (addr.ip().to_string(), addr.port()),
        TargetAddr::Domain(host, port) => (host.clone(), *port),
    };
    match session.transport().open_direct_tcpip(&host, port).await {
        Ok(channel) => {
            let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
            if let Ok(client) = proto.reply_success(unspecified).await {
                relay(client, channel, stats).await;
            }
        }
        Err(e) => {
            let _ = proto.reply_error(&ReplyError::HostUnreachable).await;
            stats.failed(e);
        }
    }
}
