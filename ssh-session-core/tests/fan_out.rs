//! One command on many sessions at once (`SessionManager::exec_many`), with one host's
//! link blackholed by the kit's proxy: the others' results are not held up.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use ssh_session_core::{
    CommandState, ErrorKind, ExecOptions, Session, SessionConfig, SessionManager,
};
use ssh_session_testkit::prelude::*;

conformance! {
    async fn twenty_sessions_with_one_host_blackholed() {
        let sshd = Sshd::shared();
        let m = SessionManager::new();
        let mut names = Vec::new();
        for i in 0..19 {
            let name = format!("fan-{i}");
            m.open(&name, sshd.connect_options(backend()), SessionConfig::default())
                .await
                .unwrap();
            names.push(name);
        }
        // The twentieth host is reached through a proxy that will swallow every byte.
        let dir = tempfile::tempdir().unwrap();
        let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
        let via = sshd.connect_options_via(&proxy, dir.path(), backend());
        m.open("fan-dark", via, SessionConfig::default()).await.unwrap();
        names.insert(7, "fan-dark".to_string());
        names.push("fan-unknown".to_string());
        names.push("fan-3".to_string()); // listed twice: runs once

        let all = m
            .exec_many(&names, "echo \"$((6 * 7)) from $$\"", ExecOptions::timeout(Duration::from_secs(20)))
            .await;
        assert_eq!(all.len(), 21, "each name once, in order");
        let pids: std::collections::HashSet<String> = all[..20]
            .iter()
            .map(|r| {
                let out = r.result.as_ref().unwrap();
                assert_eq!(out.exit_code, Some(0), "{}", r.session);
                let text = out.text();
                assert!(text.starts_with("42 from "), "{}: {text:?}", r.session);
                text.into_owned()
            })
            .collect();
        assert_eq!(pids.len(), 20, "twenty different shells answered");
        assert_eq!(all[7].session, "fan-dark");
        let e = all[20].result.as_ref().unwrap_err();
        assert_eq!((all[20].session.as_str(), e.kind()), ("fan-unknown", ErrorKind::UnknownSession));

        // Now the dark host stops answering: the others answer at once, it at its timeout.
        proxy.blackhole(true);
        let started = Instant::now();
        let all = m
            .exec_many(&names[..20], "echo ok", ExecOptions::timeout(Duration::from_secs(3)))
            .await;
        let took = started.elapsed();
        for r in &all {
            if r.session == "fan-dark" {
                match &r.result {
                    Ok(out) => assert_eq!(out.state, CommandState::Running, "{out:?}"),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}"),
                }
            } else {
                let out = r.result.as_ref().unwrap();
                assert_eq!((out.text().as_ref(), out.exit_code), ("ok\n", Some(0)), "{}", r.session);
            }
        }
        // Its timeout plus the grace period at the most; never the others' problem.
        assert!(took < Duration::from_secs(3 + 5 + 5), "took {took:?}");
        proxy.blackhole(false);
        drop(proxy);
        m.shutdown().await;
    }
}

conformance! {
    async fn host_info_in_one_round_trip_even_while_a_command_runs() {
        let (m, s) = session("hostinfo").await;
        // The shell is busy: host_info does not need it.
        let busy = s.exec("sleep 5", ExecOptions::timeout(Duration::from_millis(50))).await.unwrap();
        assert!(busy.is_running());
        let info = s.host_info().await.unwrap();
        let uname = std::process::Command::new("uname").arg("-sr").output().unwrap();
        assert_eq!(info.kernel, String::from_utf8_lossy(&uname.stdout).trim(), "loopback: this machine");
        assert!(!info.os.is_empty() && !info.arch.is_empty(), "{info:?}");
        assert_eq!(info.cpus, std::thread::available_parallelism().ok().map(|n| n.get() as u32));
        assert!(info.load.is_some() && info.uptime.is_some(), "{info:?}");
        assert!(info.memory_total.unwrap() >= info.memory_available.unwrap());
        let root = info.disks.iter().find(|d| d.mount == "/").expect("the root file system");
        assert!(root.size > 0 && root.used <= root.size, "{root:?}");
        s.interrupt(ssh_session_core::Interrupt::Int).await.unwrap();
        m.shutdown().await;
    }

    async fn host_info_with_a_fish_login_shell() {
        let (sshd, _dir) = sshd_with_login_shell("/usr/bin/fish");
        let m = SessionManager::new();
        let s = m.open("hostinfo-fish", sshd.connect_options(backend()), SessionConfig::default()).await.unwrap();
        let info = s.host_info().await.unwrap();
        assert!(info.kernel.starts_with("Linux") && info.cpus.is_some() && !info.disks.is_empty(), "{info:?}");
        m.shutdown().await;
    }
}
