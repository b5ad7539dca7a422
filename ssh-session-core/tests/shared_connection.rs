//! A persistent (tmux) session and a plain one sharing one pooled connection: when that
//! connection dies (its sshd process killed, or the link cut), both recover on the new one
//! with their state, and no command is lost or answered wrongly. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use ssh_session_core::{
    CommandState, ConnectOptions, ExecOptions, ReconnectPolicy, Session, SessionConfig,
    SessionManager, SessionStatus, ShellSession,
};
use ssh_session_testkit::prelude::*;

fn config(persistent: bool) -> SessionConfig {
    SessionConfig {
        persistent,
        reconnect: ReconnectPolicy {
            max_attempts: 8,
            initial_delay: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Waits (bounded: 30 s) until `s` has reconnected at least `reconnects` times and is up.
async fn recovered(s: &ShellSession, reconnects: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = s.info();
        if info.reconnects >= reconnects && info.status == SessionStatus::Connected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never reconnected ({} of {reconnects}): {:?}",
            info.name,
            info.reconnects,
            info.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `command`, which must finish within 20 s (a hang is the bug this file is about).
async fn must_finish(s: &ShellSession, command: &str) -> String {
    let r = s
        .exec(command, ExecOptions::timeout(Duration::from_secs(20)))
        .await
        .unwrap_or_else(|e| panic!("{}: exec {command:?}: {e}", s.name()));
    assert!(
        !r.is_running(),
        "{}: {command:?} never completed; output so far {:?}, session {:?}",
        s.name(),
        r.text(),
        s.info()
    );
    r.text().into_owned()
}

/// The two sessions of these tests, on one pooled connection, each with some state.
async fn pair(m: &SessionManager, o: &ConnectOptions, tag: &str) -> (ShellSession, ShellSession) {
    let main = m.open("main", o.clone(), config(false)).await.unwrap();
    // The tmux server is per user and per TMUX_TMPDIR: a name unique to this backend.
    let k = format!("k-{tag}-{}", backend());
    let k = m.open(&k, o.clone(), config(true)).await.unwrap();
    assert_eq!(m.connection_count(), 1, "{:?}", m.connections());
    must_finish(&main, "cd /usr && export MAIN_V=plain").await;
    must_finish(&k, "cd /var && export K_V=kept; K_LOCAL=local; sleep 300 &").await;
    (main, k)
}

async fn assert_states(main: &ShellSession, k: &ShellSession, round: u32) {
    let text = must_finish(k, "pwd; echo $K_V $K_LOCAL; jobs | grep -c sleep").await;
    assert_eq!(
        text, "/var\nkept local\n1\n",
        "persistent session, round {round}"
    );
    let text = must_finish(main, "pwd; echo $MAIN_V").await;
    assert_eq!(text, "/usr\nplain\n", "plain session, round {round}");
}

conformance! {
    async fn a_killed_shared_connection_leaves_neither_session_hung() {
        let isolated = IsolatedTmux::start();
        let sshd = &isolated.sshd;
        let m = SessionManager::new();
        let (main, k) = pair(&m, &sshd.connect_options(backend()), "kill").await;
        // The per-connection sshd process dies, as with `kill -9` of `sshd: root@pts/N`,
        // and the next command comes at once, before anyone noticed.
        assert_eq!(sshd.kill_connections(), 1);
        let early = isolated.dir().join("early");
        let r = k
            .exec(&format!("touch {}; pwd", early.display()), ExecOptions::timeout(Duration::from_secs(20)))
            .await
            .unwrap();
        // Either it ran on the new connection, or it is reported lost (its keys went to
        // the dead link): never a command that runs forever without being typed.
        match r.state {
            CommandState::Exited => {
                assert_eq!(r.text(), "/var\n");
                assert!(early.exists());
            }
            CommandState::LinkLost => assert_eq!(r.exit_code, None),
            ref other => panic!("{other:?}: {:?}, session {:?}", r.text(), k.info()),
        }
        recovered(&k, 1).await;
        recovered(&main, 1).await;
        // The command must really run in the pane: its side effect shows.
        let marker = isolated.dir().join("typed");
        must_finish(&k, &format!("touch {}", marker.display())).await;
        assert!(marker.exists(), "the command was never typed into the tmux pane");
        assert_states(&main, &k, 1).await;
        // Once more, with both sessions idle and recovered before the next command.
        assert_eq!(sshd.kill_connections(), 1);
        recovered(&k, 2).await;
        recovered(&main, 2).await;
        assert_states(&main, &k, 2).await;
        m.shutdown().await;
    }

    async fn a_shared_link_cut_twenty_times_recovers_both_sessions_every_time() {
        let isolated = IsolatedTmux::start();
        let sshd = &isolated.sshd;
        let dir = tempfile::tempdir().unwrap();
        let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
        let o = sshd.connect_options_via(&proxy, dir.path(), backend());
        let m = SessionManager::new();
        let (main, k) = pair(&m, &o, "cut").await;
        for round in 1..=20u32 {
            proxy.cut(if round % 2 == 0 { CutMode::Fin } else { CutMode::Reset }).await;
            recovered(&k, round).await;
            recovered(&main, round).await;
            assert_states(&main, &k, round).await;
            // Every command answers with its own output, in order.
            let text = must_finish(&k, &format!("echo k{round}")).await;
            assert_eq!(text, format!("k{round}\n"));
            let text = must_finish(&main, &format!("echo m{round}")).await;
            assert_eq!(text, format!("m{round}\n"));
        }
        assert!(m.connection_count() <= 1, "{:?}", m.connections());
        m.shutdown().await;
    }
}
