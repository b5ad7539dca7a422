//! Remote forwarding (`ssh -R`) on the native backend: the server opens a
//! `forwarded-tcpip` channel per connection to a port we asked it to listen on, and each
//! is relayed to the local address registered for that port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use russh::client::ChannelOpenHandle;
use russh::client::Msg;

/// The local relay of each remote port the server listens on for us.
#[derive(Clone, Default)]
pub(super) struct Forwards(Arc<Mutex<HashMap<u32, SocketAddr>>>);

impl Forwards {
    pub(super) fn add(&self, port: u32, relay: SocketAddr) {
        self.lock().insert(port, relay);
    }

    /// Registers `port` unless another forward has it; whether it was registered now.
    pub(super) fn try_add(&self, port: u32, relay: SocketAddr) -> bool {
        let mut map = self.lock();
        if map.contains_key(&port) {
            return false;
        }
        map.insert(port, relay);
        true
    }

    pub(super) fn remove(&self, port: u32) {
        self.lock().remove(&port);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, SocketAddr>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection the server accepted on `port`: relayed to its local address, or
    /// refused (dropping `reply` rejects it) if we never asked for that port.
    pub(super) async fn incoming(
        &self,
        channel: russh::Channel<Msg>,
        port: u32,
        reply: ChannelOpenHandle,
    ) {
        let Some(relay) = self.lock().get(&port).copied() else {
            drop(reply);
            return;
        };
        reply.accept().await;
        tokio::spawn(async move {
            let Ok(mut local) = tokio::net::TcpStream::connect(relay).await else {
                // The channel closes when dropped: the remote client sees the refusal.
                return;
            };
            let _ = local.set_nodelay(true);
            let mut remote = channel.into_stream();
            let _ = tokio::io::copy_bidirectional(&mut remote, &mut local).await;
        });
    }
}
