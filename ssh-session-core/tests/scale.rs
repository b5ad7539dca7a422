//! Volume and concurrency: huge output in bounded memory, parallel sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use ssh_session_core::{ExecOptions, Session, SessionConfig, SessionManager};
use ssh_session_testkit::prelude::*;

conformance! {
    async fn fifty_megabytes_of_output_stay_bounded() {
        let (m, s) = session("big").await;
        let r = s
            .exec(
                "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 50000000; echo; echo END",
                ExecOptions::timeout(Duration::from_secs(120)),
            )
            .await
            .unwrap();
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.output_bytes, 50_000_000 + 5);
        assert_eq!(r.output.len(), 8 << 20, "kept exactly the configured cap");
        assert_eq!(r.dropped_bytes, r.output_bytes - (8 << 20) as u64);
        assert!(r
            .output
            .starts_with(b"0123456789abcdefghijklmnopqrstuvwxyz\n"));
        assert!(r.output.ends_with(b"\nEND\n"));
        assert_eq!(out(&s, "echo still-here").await, "still-here\n");
        m.shutdown().await;
    }

    async fn six_sessions_run_in_parallel_and_stay_isolated() {
        let m = SessionManager::new();
        let mut opened = Vec::new();
        for i in 0..6 {
            let s = m
                .open(
                    &format!("par{i}"),
                    Sshd::shared().connect_options(backend()),
                    SessionConfig::default(),
                )
                .await
                .unwrap();
            opened.push(s);
        }
        for (i, s) in opened.iter().enumerate() {
            run(s, &format!("export WHO={i}; cd /tmp")).await;
        }
        let started = Instant::now();
        let tasks: Vec<_> = opened
            .iter()
            .cloned()
            .map(|s| tokio::spawn(async move { out(&s, "sleep 1; echo $WHO").await }))
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), format!("{i}\n"));
        }
        let elapsed = started.elapsed();
        // Six 1-second commands one after another would take 6 s.
        assert!(
            elapsed < Duration::from_secs(4),
            "not parallel: {elapsed:?}"
        );
        assert_eq!(m.list().len(), 6);
        m.shutdown().await;
    }

    async fn a_slow_command_never_blocks_another_session() {
        let m = SessionManager::new();
        let slow = m
            .open("slow", Sshd::shared().connect_options(backend()), SessionConfig::default())
            .await
            .unwrap();
        let fast = m
            .open("fast", Sshd::shared().connect_options(backend()), SessionConfig::default())
            .await
            .unwrap();
        let r = slow
            .exec("sleep 30", ExecOptions::timeout(Duration::from_millis(100)))
            .await
            .unwrap();
        assert!(r.is_running());
        let waiter = {
            let slow = slow.clone();
            tokio::spawn(async move {
                slow.read_output(ssh_session_core::ReadOptions {
                    wait: Duration::from_secs(30),
                    return_on_output: false,
                })
                .await
            })
        };
        for _ in 0..20 {
            assert_eq!(out(&fast, "echo quick").await, "quick\n");
        }
        assert!(m
            .list()
            .iter()
            .any(|i| i.name == "slow" && i.running.as_deref() == Some("sleep 30")));
        slow.interrupt(ssh_session_core::Interrupt::Int)
            .await
            .unwrap();
        assert_eq!(waiter.await.unwrap().unwrap().exit_code, Some(130));
        m.shutdown().await;
    }
}
