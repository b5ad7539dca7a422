//! # Recovery and persistent-mode figures, measured against a real sshd
//!
//! One run starts one test-kit OpenSSH `sshd` on loopback (HOME with an empty `.bashrc`) and
//! a fault proxy of ours in front of it, then measures:
//!
//! 1. **blackhole detection**: with a 1 s × 3 keepalive, the time from the link going silent
//!    (the proxy stops forwarding: no FIN, no RST) to the session reporting `reconnecting`.
//! 2. **cut → usable**: the time from a cut link (RST) to the first successful `exec` on
//!    the recovered session (detection, reconnect, new shell with cwd/env restored), next
//!    to a plain `SessionManager::open` for comparison.
//! 3. **persistent-mode exec**: `exec("true")` round trips on a session whose shell lives in
//!    remote tmux, next to a plain PTY session.
//!
//! Targets from the reconnect issue: persistent exec p50 ≤ 2 ms; recovery ≤ backoff delay +
//! one connect (attempt 1 has no delay). `SSH_SESSION_BENCH_QUICK=1` divides every N by 10.
//! Run with `cargo bench -p ssh-session-benches --bench recovery`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use ssh_session_core::{
    ConnectOptions, ExecOptions, ReconnectPolicy, Session, SessionConfig, SessionManager,
    SessionStatus, TransportKind,
};
use ssh_session_testkit::{CutMode, FaultProxy, Sshd};

/// Percentiles of a sample.
fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.9), *v.last().unwrap())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn n(full: usize) -> usize {
    if std::env::var("SSH_SESSION_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0") {
        full.div_ceil(10)
    } else {
        full
    }
}

/// Options through `proxy` to `sshd`, with the host key recorded for the proxy's port.
fn proxied(sshd: &Sshd, proxy: &FaultProxy, dir: &std::path::Path) -> ConnectOptions {
    sshd.connect_options_via(proxy, dir, TransportKind::Russh)
        .server_alive_interval(Some(Duration::from_secs(1)))
        .server_alive_count_max(3)
        .connect_timeout(Duration::from_secs(5))
}

async fn wait_status(
    s: &ssh_session_core::ShellSession,
    want: fn(&SessionStatus) -> bool,
) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if want(&s.info().status) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "status never changed: {:?}",
            s.info().status
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn exec_samples(s: &ssh_session_core::ShellSession, count: usize) -> Vec<Duration> {
    for _ in 0..50 {
        s.exec("true", ExecOptions::default()).await.unwrap();
    }
    let mut v = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let r = s.exec("true", ExecOptions::default()).await.unwrap();
        v.push(t.elapsed());
        assert_eq!(r.exit_code, Some(0));
    }
    v
}

#[tokio::main]
async fn main() {
    let sshd = Sshd::start().expect("sshd");
    let dir = tempfile::tempdir().unwrap();
    let upstream = format!("127.0.0.1:{}", sshd.port()).parse().unwrap();
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let opts = proxied(&sshd, &proxy, dir.path());
    let manager = SessionManager::new();
    let config = SessionConfig {
        reconnect: ReconnectPolicy {
            max_attempts: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let s = manager
        .open("recovery", opts.clone(), config.clone())
        .await
        .unwrap();
    s.exec("cd /tmp && export BENCH=1", ExecOptions::default())
        .await
        .unwrap();
    let mut rows = Vec::new();

    // 1. Blackhole detection.
    let mut detect = Vec::new();
    for _ in 0..n(10) {
        let start = Instant::now();
        proxy.blackhole(true);
        let seen = wait_status(&s, |st| matches!(st, SessionStatus::Reconnecting { .. })).await;
        detect.push(seen - start);
        proxy.cut(CutMode::Reset).await;
        proxy.blackhole(false);
        wait_status(&s, |st| *st == SessionStatus::Connected).await;
    }
    let (p50, p90, max) = percentiles(detect);
    rows.push(format!(
        "| blackhole detected (keepalive 1 s × 3) | {} | {} | {} | ≤ 3 s + 1 interval | russh keepalives; no FIN/RST reaches the client |",
        ms(p50), ms(p90), ms(max)
    ));

    // 2. Cut → usable, against a plain open.
    let mut recover = Vec::new();
    let mut events = s.subscribe_status();
    let mut phases: Vec<(Duration, Duration)> = Vec::new();
    for _ in 0..n(30) {
        while events.try_recv().is_ok() {}
        let start = Instant::now();
        proxy.cut(CutMode::Reset).await;
        loop {
            match s
                .exec("echo $BENCH", ExecOptions::timeout(Duration::from_secs(30)))
                .await
            {
                Ok(r) if r.text() == "1\n" => break,
                Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        recover.push(start.elapsed());
        // When the loss was noticed and when the session was connected again.
        let (mut lost, mut back) = (None, None);
        while let Ok(e) = events.try_recv() {
            let at = e.at.duration_since(std::time::UNIX_EPOCH).unwrap();
            match e.status {
                SessionStatus::Reconnecting { attempt: 1, .. } => lost = lost.or(Some(at)),
                SessionStatus::Connected => back = Some(at),
                _ => {}
            }
        }
        if let (Some(l), Some(b)) = (lost, back) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            let t0 = now - start.elapsed();
            phases.push((l.saturating_sub(t0), b.saturating_sub(l)));
        }
    }
    let (r50, r90, rmax) = percentiles(recover);
    if !phases.is_empty() {
        let (d50, _, _) = percentiles(phases.iter().map(|p| p.0).collect());
        let (c50, _, _) = percentiles(phases.iter().map(|p| p.1).collect());
        eprintln!(
            "[recovery] p50: loss noticed after {}, reconnected {} later",
            ms(d50),
            ms(c50)
        );
    }
    let mut opens = Vec::new();
    for i in 0..n(30) {
        // A manager of its own: the recovering session's connection must not be pooled in.
        let fresh = SessionManager::new();
        let t = Instant::now();
        fresh
            .open(&format!("plain{i}"), opts.clone(), SessionConfig::default())
            .await
            .unwrap();
        opens.push(t.elapsed());
        fresh.shutdown().await;
    }
    let (o50, o90, omax) = percentiles(opens);
    let ratio = r50.as_secs_f64() / o50.as_secs_f64();
    rows.push(format!(
        "| cut (RST) → first good exec, cwd/env restored | {} | {} | {} | ≤ 0 ms backoff + one connect (next row): {:.2}× ({:+.1} ms) {} | attempt 1 has no delay; then a new connection, a shell with cwd/env restored, and the first exec |",
        ms(r50), ms(r90), ms(rmax), ratio,
        (r50.as_secs_f64() - o50.as_secs_f64()) * 1e3,
        if ratio <= 1.0 { "PASS" } else { "MISS" }
    ));
    rows.push(format!(
        "| for comparison: one full connect → ready (`open`, no pooling) | {} | {} | {} | — | through the same proxy |",
        ms(o50), ms(o90), ms(omax)
    ));

    // 3. Persistent mode exec, next to a plain PTY session.
    let direct = opts
        .clone()
        .port(sshd.port())
        .known_hosts(sshd.known_hosts());
    let name = format!("bench-{}", std::process::id());
    let plain = manager
        .open("pty", direct.clone(), SessionConfig::default())
        .await
        .unwrap();
    let persistent = manager
        .open(
            &name,
            direct,
            SessionConfig {
                persistent: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (pp50, pp90, ppmax) = percentiles(exec_samples(&persistent, n(1000)).await);
    let (d50, d90, dmax) = percentiles(exec_samples(&plain, n(1000)).await);
    rows.push(format!(
        "| persistent (tmux) exec `true` | {} | {} | {} | p50 ≤ 2 ms: {} | pipe-pane + tail -f out, control-mode send-keys in |",
        ms(pp50), ms(pp90), ms(ppmax), if pp50 <= Duration::from_millis(2) { "PASS" } else { "MISS" }
    ));
    rows.push(format!(
        "| plain PTY exec `true` (same run) | {} | {} | {} | — | {:.1}× faster than persistent |",
        ms(d50),
        ms(d90),
        ms(dmax),
        pp50.as_secs_f64() / d50.as_secs_f64()
    ));
    manager.shutdown().await;
    proxy.shutdown().await;

    println!("## ssh-session recovery bench (russh, loopback sshd, HOME with empty .bashrc)\n");
    println!("| name | p50 | p90 | max | target | notes |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
