//! Persistent (tmux) sessions through real link cuts and a client "restart" (a new
//! manager), for both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use ssh_session_core::{
    AttachOptions, CommandState, ConnectOptions, ExecOptions, ReadOptions, ReconnectPolicy,
    Session, SessionConfig, SessionManager, SessionStatus,
};
use ssh_session_testkit::prelude::*;

fn persistent() -> SessionConfig {
    SessionConfig {
        persistent: true,
        reconnect: ReconnectPolicy {
            max_attempts: 8,
            initial_delay: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn proxied(sshd: &Sshd, dir: &std::path::Path) -> (FaultProxy, ConnectOptions) {
    let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
    let o = sshd.connect_options_via(&proxy, dir, backend());
    (proxy, o)
}

async fn wait_connected(s: &ssh_session_core::ShellSession, reconnects: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(s.info().reconnects >= reconnects && s.info().status == SessionStatus::Connected) {
        assert!(
            Instant::now() < deadline,
            "never reconnected: {:?}",
            s.info().status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

conformance! {
    async fn a_running_command_survives_dropped_links_with_its_output_and_exit_code() {
        let isolated = IsolatedTmux::start();
        let sshd = &isolated.sshd;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, o) = proxied(sshd, dir.path()).await;
        let m = SessionManager::new();
        // The remote tmux server is per user and shared by every test sshd on this machine:
        // names unique to this run and backend.
        let name = format!("keep-{}-{}", backend(), std::process::id());
        let s = m.open(&name, o, persistent()).await.unwrap();
        assert!(s.info().persistent);
        run(&s, "cd /tmp; export V=exported; U=unexported; sleep 300 &").await;
        run(&s, "echo marker-for-history").await;
        for round in 1..=5u32 {
            let r = s
                .exec(
                    "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done; (exit 7)",
                    ExecOptions::timeout(Duration::from_millis(200)),
                )
                .await
                .unwrap();
            assert!(r.is_running());
            let mut seen = r.text().into_owned();
            proxy.cut(if round % 2 == 0 { CutMode::Fin } else { CutMode::Reset }).await;
            wait_connected(&s, round).await;
            let r = s
                .read_output(ReadOptions { wait: Duration::from_secs(20), ..Default::default() })
                .await
                .unwrap();
            seen.push_str(&r.text());
            // Nothing lost, nothing twice, and the real exit code — not "lost".
            assert_eq!(seen, "line1\nline2\nline3\nline4\nline5\n", "round {round}");
            assert_eq!((r.state, r.exit_code), (CommandState::Exited, Some(7)));
        }
        let r = run(&s, "pwd; echo $V $U; jobs | grep -c sleep; history | grep -c 'echo marker-for-history$'").await;
        assert_eq!(r.text(), "/tmp\nexported unexported\n1\n1\n");
        m.shutdown().await;
        // Closing kills the remote tmux session.
        let m2 = SessionManager::new();
        assert!(!m2.list_persistent(&sshd.connect_options(backend())).await.unwrap().contains(&name));
    }

    async fn a_new_client_re_adopts_a_surviving_shell() {
        let isolated = IsolatedTmux::start();
        let sshd = &isolated.sshd;
        let name = format!("adopt-{}-{}", backend(), std::process::id());
        let first = SessionManager::new();
        let s = first.open(&name, sshd.connect_options(backend()), persistent()).await.unwrap();
        assert!(!s.info().resumed);
        run(&s, "cd /var; LOCAL=only-in-this-shell; sleep 300 &").await;
        // The client goes away without closing the remote shell (like a restart).
        first.detach(&name).await.unwrap();
        drop(first);

        let second = SessionManager::new();
        assert!(second.list_persistent(&sshd.connect_options(backend())).await.unwrap().contains(&name));
        let s = second.open(&name, sshd.connect_options(backend()), persistent()).await.unwrap();
        assert!(s.info().resumed);
        let r = run(&s, "pwd; echo $LOCAL; jobs | grep -c sleep").await;
        assert_eq!(r.text(), "/var\nonly-in-this-shell\n1\n");
        second.close(&name).await.unwrap();
        assert!(!second.list_persistent(&sshd.connect_options(backend())).await.unwrap().contains(&name));
    }
}

conformance! {
    async fn a_wedged_persistent_shell_is_replaced_not_re_attached() {
        let isolated = IsolatedTmux::start();
        let sshd = &isolated.sshd;
        let name = format!("wedge-{}-{}", backend(), std::process::id());
        let m = SessionManager::new();
        let config = SessionConfig {
            cancel_deadline: Duration::from_millis(1500),
            ..persistent()
        };
        let s = m.open(&name, sshd.connect_options(backend()), config).await.unwrap();
        run(&s, "cd /usr && export KEEP=yes").await;
        // No marker can come back from this shell: only replacing it helps, and closing a
        // tmux attachment only detaches, so the wedged shell itself must go.
        let r = s
            .exec("exec >/dev/null 2>&1; echo hidden", ExecOptions::timeout(Duration::from_millis(300)))
            .await
            .unwrap();
        assert!(r.is_running());
        let report = s.stop_command().await.unwrap();
        assert!(report.shell_replaced);
        assert_eq!(report.result.state, CommandState::Killed);
        let r = run(&s, "pwd; echo $KEEP").await;
        assert_eq!(r.text(), "/usr\nyes\n");
        m.shutdown().await;
    }
}

conformance! {
    async fn a_host_without_tmux_is_refused_clearly_and_the_manager_keeps_working() {
        // Commands on this sshd see a PATH with every program of /usr/bin except tmux.
        let bin = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir("/usr/bin").unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != "tmux" {
                std::os::unix::fs::symlink(entry.path(), bin.path().join(entry.file_name()))
                    .unwrap();
            }
        }
        let sshd = Sshd::start_with(SshdOptions {
            extra_config: format!("SetEnv PATH={}:/usr/sbin:/sbin\n", bin.path().display()),
            ..Default::default()
        })
        .unwrap();
        let m = SessionManager::new();
        let e = m.open("keep", sshd.connect_options(backend()), persistent()).await.unwrap_err();
        assert!(
            matches!(e, ssh_session_core::Error::TmuxMissing { .. }),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains("install") && text.contains("without persistent mode"), "{text}");
        assert!(m.names().is_empty(), "a failed open leaves no session behind");
        let e = m.list_persistent(&sshd.connect_options(backend())).await.unwrap_err();
        assert!(matches!(e, ssh_session_core::Error::TmuxMissing { .. }), "{e:?}");
        // The name is free again and an ordinary session works on the same host.
        let s = m.open("keep", sshd.connect_options(backend()), SessionConfig::default()).await.unwrap();
        assert_eq!(out(&s, "echo fine").await, "fine\n");
        m.shutdown().await;
    }
}

conformance! {
    async fn a_persons_commands_are_tracked_through_a_dropped_link() {
        let isolated = IsolatedTmux::start();
        let sshd = &isolated.sshd;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, o) = proxied(sshd, dir.path()).await;
        let m = SessionManager::new();
        let name = format!("person-{}-{}", backend(), std::process::id());
        let s = m.open(&name, o, persistent()).await.unwrap();
        let a = s.attach(AttachOptions::new("attach", 100, 30)).await.unwrap();
        a.wait_prompt(Duration::from_secs(10)).await.unwrap();
        a.send(b"cd /tmp && export P=1\r").await.unwrap();
        a.wait_prompt(Duration::from_secs(10)).await.unwrap();
        // The link drops while the person's command runs; it ends meanwhile, in tmux.
        a.send(b"sleep 1; (exit 4)\r").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.history().iter().any(|e| e.command == "sleep 1; (exit 4)") {
            assert!(Instant::now() < deadline, "{:?}", s.history());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy.cut(CutMode::Reset).await;
        wait_connected(&s, 1).await;
        a.wait_prompt(Duration::from_secs(20)).await.unwrap();
        a.send(b"false\r").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let people = loop {
            let people: Vec<_> = s.history().into_iter().filter(|e| e.source == "attach").collect();
            if people.len() == 3 && people.iter().all(|e| e.duration.is_some()) {
                break people;
            }
            assert!(Instant::now() < deadline, "{people:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let codes: Vec<_> = people.iter().map(|e| (e.command.as_str(), e.exit_code)).collect();
        assert_eq!(
            codes,
            [("cd /tmp && export P=1", Some(0)), ("sleep 1; (exit 4)", Some(4)), ("false", Some(1))]
        );
        drop(a);
        assert_eq!(out(&s, "pwd; echo $P").await, "/tmp\n1\n");
        m.shutdown().await;
    }
}
