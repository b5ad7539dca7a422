//! The reader of a shell channel: feeds its bytes into the session state, notices how the
//! channel ended, and asks for a reconnection when the connection went with it.

use super::*;

impl Inner {
    /// Makes `channel` the session's shell: a new generation (so events of any earlier
    /// channel are ignored from now on) and a pump feeding its output into the state.
    pub(super) fn adopt_channel(self: &Arc<Self>, channel: crate::transport::Channel) {
        let generation = {
            let mut st = self.lock();
            st.generation += 1;
            st.shell = Some(Shell {
                input: channel.input.clone(),
            });
            st.exit_status = None;
            st.exit_seen = false;
            st.generation
        };
        let pump = tokio::spawn(pump(Arc::downgrade(self), generation, channel.events));
        self.pumps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pump);
    }
}

/// Reads one shell channel until it closes, feeding its bytes into the session state.
/// Holds only a weak reference so a dropped session is not kept alive by its reader.
pub(super) async fn pump(weak: Weak<Inner>, generation: u64, mut events: Box<dyn EventSource>) {
    while let Some(event) = events.recv().await {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let mut deliveries = Vec::new();
        {
            let mut st = inner.lock();
            match event {
                ChannelEvent::Stdout(data) => st.on_output(generation, &data, &mut deliveries),
                ChannelEvent::Stderr(data) => st.on_stderr(generation, &data, &mut deliveries),
                ChannelEvent::ExitStatus(code) if st.generation == generation => {
                    st.exit_status = Some(code as i32);
                    st.exit_seen = true;
                }
                ChannelEvent::ExitSignal(sig) if st.generation == generation => {
                    st.exit_status = None;
                    st.exit_seen = true;
                    st.death = Some(format!("the shell was killed by SIG{sig}"));
                }
                _ => {}
            }
        }
        inner.deliver(deliveries).await;
        inner.notify();
    }
    let Some(inner) = weak.upgrade() else {
        return;
    };
    // A channel that ends without an exit status or signal was either cut with its
    // connection or (with some servers and the OpenSSH mux) lost its shell silently. Ask
    // the connection itself; this costs a round trip only on this rare path.
    let unexplained = !inner.lock().exit_seen;
    let link_lost = unexplained && !connection_alive(inner.transport()).await;
    let mut deliveries = Vec::new();
    let link_lost = {
        let mut st = inner.lock();
        let killed = st.death.clone().filter(|d| d.contains("killed"));
        let lost = st.on_closed(generation, link_lost, &mut deliveries);
        if let Some(killed) = killed {
            st.death = Some(killed);
        }
        lost
    };
    inner.deliver(deliveries).await;
    inner.notify();
    if link_lost && !inner.closed.load(Ordering::Acquire) {
        let _ = inner
            .reconnect_requests
            .send("the connection was lost".into());
    }
}
