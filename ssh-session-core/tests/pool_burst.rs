//! A burst of concurrent opens to one host whose sshd allows few channels per connection
//! (`MaxSessions`): every open must succeed, on as many connections as it takes, and a
//! server that refuses every session channel must be reported as such, quickly. Real sshd,
//! both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::collections::HashSet;
use std::time::Duration;

use ssh_session_core::{SessionConfig, SessionManager};
use ssh_session_testkit::prelude::*;

/// Only a guard against a hang (a hung open is a failure, not a slow pass).
const HANG_GUARD: Duration = Duration::from_secs(240);

fn sshd_with(max_sessions: u32) -> Sshd {
    Sshd::start_with(SshdOptions {
        max_sessions,
        ..Default::default()
    })
    .expect("start sshd")
}

/// Connections sshd accepted so far (one "Accepted publickey" line per authentication).
fn accepted(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

/// Opens `count` sessions at once through one manager, checks that each runs its own
/// shell, and closes them all.
async fn burst(sshd: &Sshd, count: usize, config: SessionConfig) {
    let m = SessionManager::new();
    let opens = (0..count).map(|i| {
        let m = m.clone();
        let o = sshd.connect_options(backend());
        let config = config.clone();
        async move {
            m.open(&format!("b{i}"), o, config)
                .await
                .map_err(|e| format!("b{i}: {e}"))
        }
    });
    let results = tokio::time::timeout(HANG_GUARD, futures::future::join_all(opens))
        .await
        .expect("the burst of opens hung");
    let failed: Vec<String> = results.iter().filter_map(|r| r.clone().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {count} opens failed; first: {}",
        failed.len(),
        failed[0]
    );

    // Each session has its own shell: `$$` is a pid, and no two are the same.
    let sessions: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    let pids = futures::future::join_all(sessions.iter().map(|s| out(s, "echo $$"))).await;
    let mut seen = HashSet::new();
    for (i, pid) in pids.iter().enumerate() {
        let pid: u32 = pid
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("b{i}: `echo $$` printed {pid:?}"));
        assert!(
            seen.insert(pid),
            "b{i}: pid {pid} answered for two sessions"
        );
    }

    let closes = (0..count).map(|i| {
        let m = m.clone();
        async move { m.close(&format!("b{i}")).await }
    });
    for r in futures::future::join_all(closes).await {
        r.unwrap();
    }
    assert_eq!(m.connection_count(), 0, "{:?}", m.connections());
}

conformance! {
    /// The numbers: 200 at once against `MaxSessions 64` needs four connections,
    /// and the fourth is only made after three rounds of refusals.
    async fn two_hundred_opens_with_max_sessions_64() {
        let sshd = sshd_with(64);
        burst(&sshd, 200, SessionConfig::default()).await;
    }

    /// Many more refusal rounds than connections in the case: 60 at once against
    /// `MaxSessions 8` needs eight connections.
    async fn sixty_opens_with_max_sessions_8() {
        let sshd = sshd_with(8);
        burst(&sshd, 60, SessionConfig::default()).await;
    }

    /// A server that refuses every session channel (`MaxSessions 0`) is a real refusal: it
    /// is reported with the host and what to change, after a bounded number of new
    /// connections rather than one per retry forever.
    async fn a_server_refusing_every_session_is_reported() {
        let sshd = sshd_with(0);
        let m = SessionManager::new();
        let before = accepted(&sshd);
        let e = tokio::time::timeout(
            HANG_GUARD,
            m.open("refused", sshd.connect_options(backend()), SessionConfig::default()),
        )
        .await
        .expect("the open hung")
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains(sshd.host()), "{text}");
        assert!(text.contains("MaxSessions"), "{text}");
        let used = accepted(&sshd) - before;
        assert!(used <= 4, "{used} connections for one refused open: {text}");
        assert_eq!(m.connection_count(), 0);
        assert!(m.names().is_empty());

        // A burst against it: every open is refused, and the opens refused together share
        // each new connection instead of making one each.
        let before = accepted(&sshd);
        let opens = (0..20).map(|i| {
            let m = m.clone();
            let o = sshd.connect_options(backend());
            async move { m.open(&format!("r{i}"), o, SessionConfig::default()).await }
        });
        let results = tokio::time::timeout(HANG_GUARD, futures::future::join_all(opens))
            .await
            .expect("the burst of refused opens hung");
        for r in results {
            let text = r.unwrap_err().to_string();
            assert!(text.contains("MaxSessions"), "{text}");
        }
        let used = accepted(&sshd) - before;
        assert!(used <= 10, "{used} connections for 20 refused opens");
        assert_eq!(m.connection_count(), 0);
    }

    /// Persistent (tmux) sessions open two channels each, both execs: with `MaxSessions 3`
    /// the second session's second channel is refused on a connection that accepted its
    /// first, and goes to another connection. One at a time: a burst of a dozen persistent
    /// opens at once often fails with "tmux server exited unexpectedly" even with
    /// `MaxSessions 100` (no refusal at all), which is a matter for the tmux side, not the
    /// pool.
    async fn persistent_sessions_with_max_sessions_3() {
        let tmux = tempfile::tempdir().unwrap();
        let sshd = Sshd::start_with(SshdOptions {
            max_sessions: 3,
            extra_config: format!("SetEnv TMUX_TMPDIR={}\n", tmux.path().display()),
            ..Default::default()
        })
        .expect("start sshd");
        let config = SessionConfig { persistent: true, ..Default::default() };
        let m = SessionManager::new();
        let mut pids = HashSet::new();
        for i in 0..4 {
            let s = m
                .open(&format!("p{i}"), sshd.connect_options(backend()), config.clone())
                .await
                .unwrap_or_else(|e| panic!("p{i}: {e}"));
            let pid = out(&s, "echo $$").await;
            assert!(pids.insert(pid.clone()), "p{i}: pid {pid:?} answered twice");
        }
        assert!(m.connection_count() >= 2, "{:?}", m.connections());
        m.shutdown().await;
        assert_eq!(m.connection_count(), 0, "{:?}", m.connections());
        let _ = std::process::Command::new("tmux")
            .args(["-L", "ssh-session", "kill-server"])
            .env("TMUX_TMPDIR", tmux.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
