//! Dropped links, stalled links, refused reconnects and killed servers: the session recovers
//! by itself, restores cwd and exported variables, never returns a wrong result, and reports
//! its status changes in order. Real sshd, real faults (a proxy of ours on loopback, real
//! process kills), for both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use ssh_session_core::{
    CommandState, ConnectOptions, Error, ExecOptions, ReadOptions, ReconnectPolicy, Session,
    SessionConfig, SessionManager, SessionStatus, ShellSession, StatusEvent,
};
use ssh_session_testkit::prelude::*;
use tokio::sync::broadcast::Receiver;

/// Connect options that go through a fault proxy in front of `sshd`, with a 1 s × 2
/// keepalive so a stalled link is noticed in seconds.
async fn proxied(sshd: &Sshd, dir: &std::path::Path) -> (FaultProxy, ConnectOptions) {
    let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
    // The host key is recorded for the proxy's address, which is what the client sees.
    let mut o = sshd.connect_options_via(&proxy, dir, backend());
    o.server_alive_interval = Some(Duration::from_secs(1));
    o.server_alive_count_max = 2;
    o.connect_timeout = Duration::from_secs(3);
    (proxy, o)
}

fn fast_policy(max_attempts: u32) -> SessionConfig {
    SessionConfig {
        reconnect: ReconnectPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(100),
            factor: 2.0,
            max_delay: Duration::from_secs(1),
            jitter: 0.2,
        },
        ..Default::default()
    }
}

/// Collects status events until `done` says stop (bounded: 30 s).
async fn events_until(
    events: &mut Receiver<StatusEvent>,
    done: impl Fn(&SessionStatus) -> bool,
) -> Vec<StatusEvent> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(event)) => {
                let stop = done(&event.status);
                seen.push(event);
                if stop {
                    return seen;
                }
            }
            other => panic!("status events stopped ({other:?}) after {seen:?}"),
        }
    }
}

fn connected(s: &SessionStatus) -> bool {
    *s == SessionStatus::Connected
}

/// The events of one recovery: reconnecting 1, 2, ... in order, then connected.
fn assert_recovery(events: &[StatusEvent]) {
    let mut expected_attempt = 1;
    for e in &events[..events.len() - 1] {
        match e.status {
            SessionStatus::Reconnecting { attempt, .. } => {
                assert_eq!(attempt, expected_attempt, "{events:?}");
                expected_attempt += 1;
            }
            ref other => panic!("unexpected {other:?} in {events:?}"),
        }
    }
    assert!(expected_attempt > 1, "no reconnecting event: {events:?}");
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
}

/// The state a session must still have after every recovery.
async fn assert_state(s: &ShellSession) {
    let r = s
        .exec(
            "echo \"$KEPT\"; pwd",
            ExecOptions::timeout(Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(r.text(), "kept value\n/usr/share\n", "{:?}", r.notices);
}

async fn recovering_session(
    sshd: &Sshd,
    dir: &std::path::Path,
    max: u32,
) -> (SessionManager, ShellSession, FaultProxy) {
    let (proxy, o) = proxied(sshd, dir).await;
    let m = SessionManager::new();
    let s = m.open("flaky", o, fast_policy(max)).await.unwrap();
    run(&s, "cd /usr/share && export KEPT='kept value'").await;
    (m, s, proxy)
}

conformance! {
    async fn cut_connections_recover_twenty_times() {
        let sshd = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (m, s, proxy) = recovering_session(&sshd, dir.path(), 5).await;
        let mut events = s.subscribe_status();
        for i in 0..20 {
            let mode = if i % 2 == 0 { CutMode::Reset } else { CutMode::Fin };
            proxy.cut(mode).await;
            assert_recovery(&events_until(&mut events, connected).await);
            assert_state(&s).await;
        }
        assert!(s.info().reconnects >= 20);
        m.shutdown().await;
    }

    async fn stalled_links_are_detected_by_keepalive_twenty_times() {
        let sshd = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (m, s, proxy) = recovering_session(&sshd, dir.path(), 5).await;
        let mut events = s.subscribe_status();
        for _ in 0..20 {
            proxy.blackhole(true);
            // No FIN, no RST: only the keepalive can tell.
            let lost = events_until(&mut events, |s| matches!(s, SessionStatus::Reconnecting { .. })).await;
            assert_eq!(lost.len(), 1, "{lost:?}");
            // The old connection is dead; let the new one through.
            proxy.cut(CutMode::Reset).await;
            proxy.blackhole(false);
            let rest = events_until(&mut events, connected).await;
            assert!(rest.last().is_some_and(|e| connected(&e.status)), "{rest:?}");
            assert_state(&s).await;
        }
        m.shutdown().await;
    }

    async fn delays_never_produce_wrong_results() {
        let sshd = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (m, s, proxy) = recovering_session(&sshd, dir.path(), 5).await;
        for i in 0..20u64 {
            proxy.delay(Duration::from_millis(5 * (i % 4)));
            let r = s.exec(&format!("echo {i}"), ExecOptions::timeout(Duration::from_secs(20))).await.unwrap();
            assert_eq!(r.text(), format!("{i}\n"));
        }
        proxy.delay(Duration::ZERO);
        assert_eq!(s.info().reconnects, 0, "a slow link is not a dead one");
        m.shutdown().await;
    }

    async fn refused_reconnects_back_off_and_recover_twenty_times() {
        let sshd = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (m, s, proxy) = recovering_session(&sshd, dir.path(), 8).await;
        let mut events = s.subscribe_status();
        for _ in 0..20 {
            proxy.refuse_new(true).await.unwrap();
            proxy.cut(CutMode::Reset).await;
            // Refused at least once before the server comes back.
            let first = events_until(&mut events, |s| matches!(s, SessionStatus::Reconnecting { attempt: 2, .. })).await;
            // The lost connection stays listed, reconnecting with its session.
            let during = m.connections();
            assert!(
                during.iter().any(|c| matches!(c.status, SessionStatus::Reconnecting { of: 8, .. })
                    && c.sessions == ["flaky"]),
                "{during:?}"
            );
            proxy.refuse_new(false).await.unwrap();
            let mut all = first;
            all.extend(events_until(&mut events, connected).await);
            assert_recovery(&all);
            assert_state(&s).await;
        }
        m.shutdown().await;
    }

    async fn max_attempts_are_honoured_then_reconnect_on_demand() {
        let sshd = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (m, s, proxy) = recovering_session(&sshd, dir.path(), 3).await;
        let before = m.connections();
        assert_eq!(before.len(), 1, "{before:?}");
        assert_eq!(before[0].status, SessionStatus::Connected);
        assert_eq!(before[0].sessions, ["flaky"]);
        assert!(before[0].connected_since.is_some());
        let mut events = s.subscribe_status();
        proxy.refuse_new(true).await.unwrap();
        proxy.cut(CutMode::Reset).await;
        let seen = events_until(&mut events, |s| matches!(s, SessionStatus::Error { .. })).await;
        let attempts: Vec<u32> = seen
            .iter()
            .filter_map(|e| match e.status {
                SessionStatus::Reconnecting { attempt, of } => {
                    assert_eq!(of, 3);
                    Some(attempt)
                }
                _ => None,
            })
            .collect();
        assert_eq!(attempts, [1, 2, 3], "{seen:?}");
        // Growing delays: at least the configured backoff (minus jitter) between attempts.
        let gap = |a: usize, b: usize| seen[b].at.duration_since(seen[a].at).unwrap();
        assert!(gap(1, 2) >= Duration::from_millis(80 * 2 / 2), "{seen:?}");
        let SessionStatus::Error { detail, .. } = &seen.last().unwrap().status else { unreachable!() };
        assert!(detail.contains("3 reconnect attempts"), "{detail}");
        assert!(s.info().last_error.is_some());
        // The lost connection is listed in error, with the session's cause.
        let lost = m.connections();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(lost[0].id, before[0].id);
        assert!(
            matches!(&lost[0].status, SessionStatus::Error { detail: d, .. } if d == detail),
            "{lost:?}"
        );
        let e = s.exec("true", ExecOptions::timeout(Duration::from_secs(2))).await.unwrap_err();
        assert!(matches!(e, Error::Disconnected { .. }) && e.to_string().contains("connect it again"), "{e}");
        // The server is back: a manual reconnect restores everything.
        proxy.refuse_new(false).await.unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(proxy.addr()).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The proxy may take a moment to listen again under load: a caller retries too.
        let mut result = s.reconnect().await;
        for _ in 0..5 {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            result = s.reconnect().await;
        }
        result.unwrap();
        assert_state(&s).await;
        // Replaced: one live connection with a new id, the dead one released.
        let after = m.connections();
        assert_eq!(after.len(), 1, "{after:?}");
        assert_ne!(after[0].id, before[0].id);
        assert_eq!(after[0].status, SessionStatus::Connected);
        assert_eq!(after[0].sessions, ["flaky"]);
        m.shutdown().await;
        assert!(m.connections().is_empty());
    }

    async fn a_command_in_flight_is_reported_lost_never_finished() {
        let sshd = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (m, s, proxy) = recovering_session(&sshd, dir.path(), 5).await;
        let mut events = s.subscribe_status();
        let r = s.exec("sleep 3; echo done", ExecOptions::timeout(Duration::from_millis(200))).await.unwrap();
        assert!(r.is_running());
        proxy.cut(CutMode::Reset).await;
        let r = s.read_output(ReadOptions { wait: Duration::from_secs(20), ..Default::default() }).await.unwrap();
        assert_eq!(r.state, CommandState::LinkLost);
        assert_eq!(r.exit_code, None);
        assert!(!r.text().contains("done"));
        events_until(&mut events, connected).await;
        // The first command after recovery says what happened.
        let r = s.exec("echo after", ExecOptions::timeout(Duration::from_secs(20))).await.unwrap();
        assert_eq!(r.text(), "after\n");
        let notes: Vec<String> = r.notices.iter().map(|n| n.to_string()).collect();
        assert!(notes.iter().any(|n| n.contains("connection was lost")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("background jobs")), "{notes:?}");
        m.shutdown().await;
    }

    async fn killed_sshd_processes_and_a_full_restart_are_survived() {
        let sshd = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (m, s, _proxy) = recovering_session(&sshd, dir.path(), 20).await;
        let mut events = s.subscribe_status();
        // Kill the sshd processes serving our connection, three times.
        for _ in 0..3 {
            kill_children(sshd.pid());
            events_until(&mut events, connected).await;
            assert_state(&s).await;
        }
        // A full restart: the listener and every connection die; a new sshd starts on the
        // same port with the same keys (20 attempts ≈ 18 s: sshd starts slowly under load).
        let config = sshd.dir().join("sshd_config");
        let mut restarted = restart_sshd(sshd.pid(), sshd.port(), &config).await;
        let recovered = events_until(&mut events, connected).await;
        assert!(recovered.len() >= 2, "{recovered:?}");
        assert_state(&s).await;
        m.shutdown().await;
        kill_children(restarted.id());
        let _ = restarted.kill();
        let _ = restarted.wait();
    }
}

/// Replaces the sshd `pid` by a new one on the same port with the same config and keys.
/// The session's reconnects keep the old master forking: it is frozen first (SIGSTOP) so no
/// child can be forked holding the listening socket, which would make the new sshd fail to
/// bind. The new one is started again until it really listens (bounded).
async fn restart_sshd(pid: u32, port: u16, config: &std::path::Path) -> std::process::Child {
    let signal = |sig: &str, pid: u32| {
        let _ = std::process::Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .stderr(std::process::Stdio::null())
            .status();
    };
    signal("-STOP", pid);
    kill_children(pid);
    signal("-KILL", pid);
    for _ in 0..20 {
        let mut child = std::process::Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..50 {
            if let Ok(Some(_)) = child.try_wait() {
                break; // It could not bind yet: try again.
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the restarted sshd never listened on port {port}");
}

/// SIGKILL every direct child of `pid` (sshd's per-connection processes).
fn kill_children(pid: u32) {
    let me = pid.to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if rest.split(' ').nth(1) == Some(me.as_str()) {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(entry.file_name())
                .status();
        }
    }
}
