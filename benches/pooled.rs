//! Row 7: session opens on a pooled connection, and the parts one is made of (a session
//! start without the pool, a login shell on a PTY channel up to its prompt, a login `bash`
//! on an exec channel) measured apart.

use std::time::{Duration, Instant};

use ssh_session_core::transport::{self, ChannelEvent, PtyRequest, ShellRequest, Transport};
use ssh_session_core::{ConnectOptions, Endpoint, SessionConfig, SessionManager};

use crate::stats::Stats;
use crate::{bounded, connect_bare};

/// Sessions per round: the first one is opened untimed (it makes the connection), the
/// others are timed and share it.
pub(crate) const SESSIONS_PER_ROUND: usize = 20;

/// What the pooled-open rounds measured.
pub(crate) struct PooledOpens {
    /// `SessionManager::open` of sessions 2..=20 of every timed round.
    pub open: Stats,
    /// The untimed first open of each timed round (connect included), for the notes.
    pub first: Stats,
    /// `connection_count()` with all sessions of a round open, per timed round.
    pub connections: Vec<usize>,
    /// `connection_count()` after each round's `shutdown`, per round (warm-up included).
    pub left_after_shutdown: Vec<usize>,
}

/// `warm_rounds + rounds` rounds, each with a fresh [`SessionManager`]: session 1 opened
/// untimed, sessions 2..=20 opened one after another (timed, all kept open, so they share
/// session 1's connection), then `shutdown`, which closes them all and the connection.
/// The manager is shut down also when an open fails.
pub(crate) async fn pooled_opens(
    opts: &ConnectOptions,
    warm_rounds: usize,
    rounds: usize,
) -> Result<PooledOpens, String> {
    let mut opens = Vec::with_capacity(rounds * (SESSIONS_PER_ROUND - 1));
    let mut firsts = Vec::with_capacity(rounds);
    let mut connections = Vec::with_capacity(rounds);
    let mut left_after_shutdown = Vec::with_capacity(warm_rounds + rounds);
    for round in 0..warm_rounds + rounds {
        let manager = SessionManager::new();
        let measured = one_round(&manager, opts, round).await;
        bounded(manager.shutdown(), "shutdown of a pooled round").await?;
        left_after_shutdown.push(manager.connection_count());
        let (first, times, count) = measured?;
        if round >= warm_rounds {
            firsts.push(first);
            opens.extend(times);
            connections.push(count);
        }
    }
    Ok(PooledOpens {
        open: Stats::of(&opens).ok_or("no samples")?,
        first: Stats::of(&firsts).ok_or("no samples")?,
        connections,
        left_after_shutdown,
    })
}

/// One round: the first open's time, the others' times, and the connections then open.
async fn one_round(
    manager: &SessionManager,
    opts: &ConnectOptions,
    round: usize,
) -> Result<(Duration, Vec<Duration>, usize), String> {
    let mut first = Duration::ZERO;
    let mut times = Vec::with_capacity(SESSIONS_PER_ROUND - 1);
    for k in 1..=SESSIONS_PER_ROUND {
        let name = format!("pool-{round}-{k}");
        let start = Instant::now();
        bounded(
            manager.open(&name, opts.clone(), SessionConfig::default()),
            "pooled open",
        )
        .await?
        .map_err(|e| format!("open {name}: {e}"))?;
        let took = start.elapsed();
        if k == 1 {
            first = took;
        } else {
            times.push(took);
        }
    }
    Ok((first, times, manager.connection_count()))
}

/// `ShellSession` start alone: `open_with_transport` on a fresh, unpooled connection of
/// the backend `opts` asks for (connected untimed just before), then `close`; `warm + n`
/// times. Against [`pooled_opens`] it shows what the pool costs; against [`shell_start`]
/// what priming costs.
pub(crate) async fn session_start(
    opts: &ConnectOptions,
    endpoint: &Endpoint,
    warm: usize,
    n: usize,
) -> Result<Stats, String> {
    let manager = SessionManager::new();
    let measured = async {
        let mut samples = Vec::with_capacity(n);
        for i in 0..warm + n {
            let transport = connect_bare(opts).await?;
            let name = format!("start-{i}");
            let start = Instant::now();
            let opened = bounded(
                manager.open_with_transport(
                    &name,
                    endpoint.clone(),
                    transport.clone(),
                    SessionConfig::default(),
                ),
                "open_with_transport",
            )
            .await;
            let took = start.elapsed();
            match opened {
                Ok(Ok(_)) => bounded(manager.close(&name), "close")
                    .await?
                    .map_err(|e| e.to_string())?,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(e) => {
                    let _ = bounded(transport.close(), "close the connection").await;
                    return Err(e);
                }
            }
            if i >= warm {
                samples.push(took);
            }
        }
        Stats::of(&samples).ok_or_else(|| "no samples".to_string())
    }
    .await;
    let _ = bounded(manager.shutdown(), "shutdown").await;
    measured
}

/// A bare login shell on a PTY channel, the way a session starts one, without priming.
pub(crate) struct ShellStart {
    /// Until `open_shell` returns: channel open + PTY + shell request (OpenSSH backend:
    /// whatever `OpenSshTransport::open_shell` does before it returns).
    pub opened: Stats,
    /// Until the shell's first output, its prompt: the login shell has read its startup
    /// files and waits for input.
    pub prompt: Stats,
    /// The very first iteration (a warm-up, not in the statistics): the connection's first
    /// channel: (until `open_shell` returned, until the prompt).
    pub first_channel: (Duration, Duration),
    /// Channels whose event stream had not ended [`END_WAIT`] after `exit`.
    pub not_ended: usize,
}

/// How long [`shell_start`] waits for a shell channel to end after `exit`.
pub(crate) const END_WAIT: Duration = Duration::from_secs(2);

/// Opens a login shell with the sessions' default PTY on `transport`, waits for its
/// first output (the prompt), ends it with `exit` and closes the channel; `warm + n`
/// times.
pub(crate) async fn shell_start(
    transport: &dyn Transport,
    warm: usize,
    n: usize,
) -> Result<ShellStart, String> {
    let mut opened = Vec::with_capacity(n);
    let mut prompt = Vec::with_capacity(n);
    let mut first_channel = (Duration::ZERO, Duration::ZERO);
    let mut not_ended = 0;
    for i in 0..warm + n {
        let start = Instant::now();
        let request = ShellRequest {
            pty: Some(PtyRequest::default()),
            command: None,
        };
        let mut channel = bounded(transport.open_shell(request), "open_shell")
            .await?
            .map_err(|e| format!("open_shell: {e}"))?;
        let open_took = start.elapsed();
        let first = async {
            loop {
                match channel.events.recv().await {
                    Some(ChannelEvent::Stdout(b) | ChannelEvent::Stderr(b)) if b.is_empty() => {}
                    Some(ChannelEvent::Stdout(_) | ChannelEvent::Stderr(_)) => {
                        return Ok(start.elapsed())
                    }
                    Some(other) => {
                        return Err(format!("the shell ended before a prompt: {other:?}"))
                    }
                    None => return Err("the channel closed before a prompt".to_string()),
                }
            }
        };
        let first = bounded(first, "the shell's first prompt")
            .await
            .and_then(|r| r);
        // End the shell with `exit` and wait, briefly, for its channel to end, then close
        // the channel, so no shell outlives its sample (the bare connection's close ends any
        // left). In this order: a russh channel closed from our side first never reports
        // its end.
        let _ = bounded(channel.input.write(b"exit\n"), "exit the shell").await;
        let ended = tokio::time::timeout(END_WAIT, async {
            while channel.events.recv().await.is_some() {}
        })
        .await;
        if ended.is_err() {
            not_ended += 1;
        }
        let _ = bounded(channel.input.close(), "close the shell channel").await;
        let first = first?;
        if i == 0 {
            first_channel = (open_took, first);
        }
        if i >= warm {
            opened.push(open_took);
            prompt.push(first);
        }
    }
    Ok(ShellStart {
        opened: Stats::of(&opened).ok_or("no samples")?,
        prompt: Stats::of(&prompt).ok_or("no samples")?,
        first_channel,
        not_ended,
    })
}

/// Rows 3 and 7: `transport::run(transport, command)` (a new exec channel, no PTY),
/// `warm + n` times; each must exit 0.
pub(crate) async fn exec_channel(
    transport: &dyn Transport,
    command: &str,
    warm: usize,
    n: usize,
) -> Result<Stats, String> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..warm + n {
        let start = Instant::now();
        let out = bounded(transport::run(transport, command), "exec channel")
            .await?
            .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if out.exit_status != Some(0) {
            return Err(format!(
                "exec channel {command:?}: exit {:?}, stderr {:?}",
                out.exit_status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if i >= warm {
            samples.push(took);
        }
    }
    Stats::of(&samples).ok_or_else(|| "no samples".into())
}

/// What the remote login shell starts with: `$HOME`, what is in it, the size of its
/// `.bashrc`, and the scripts /etc/profile sources. One exec channel, for the notes.
pub(crate) async fn remote_environment(transport: &dyn Transport) -> String {
    const PROBE: &str = "printf 'HOME=%s holding [%s], .bashrc %s bytes; /etc/profile.d: [%s]' \
        \"$HOME\" \"$(ls -A \"$HOME\" | tr '\\n' ' ' | sed 's/ $//')\" \
        \"$(wc -c < \"$HOME/.bashrc\" 2>/dev/null || echo none)\" \
        \"$(ls /etc/profile.d 2>/dev/null | tr '\\n' ' ' | sed 's/ $//')\"";
    match bounded(transport::run(transport, PROBE), "environment probe").await {
        Ok(Ok(out)) if out.exit_status == Some(0) => {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
        Ok(Ok(out)) => format!("environment probe: exit {:?}", out.exit_status),
        Ok(Err(e)) => format!("environment probe: {e}"),
        Err(e) => e,
    }
}
