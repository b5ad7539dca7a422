//! Following a command live (what the CLI streams and the MCP server reports progress on):
//! every byte once and in order, ticks while it is quiet, the timeout, and a follower
//! dropped midway leaving the rest to `read_output`. Real sshd, both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use ssh_session_core::{
    CommandState, ExecOptions, FollowEvent, ReadOptions, Session, SessionConfig, SessionManager,
};
use ssh_session_testkit::prelude::*;

conformance! {
    async fn output_arrives_piece_by_piece_and_the_result_has_all_of_it() {
        let (m, s) = session("follow").await;
        let mut f = s
            .follow("for i in 1 2 3; do echo line$i; sleep 0.2; done; exit_code=4; (exit $exit_code)", ExecOptions::timeout(Duration::from_secs(20)))
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut pieces = 0;
        let mut ticks = 0;
        while let Some(event) = f.next(Some(Duration::from_millis(50))).await.unwrap() {
            match event {
                FollowEvent::Output(bytes) => {
                    pieces += 1;
                    seen.extend_from_slice(&bytes);
                }
                FollowEvent::Tick => ticks += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(String::from_utf8_lossy(&seen), "line1\nline2\nline3\n");
        assert!(pieces >= 3, "output came as it was printed, not at the end: {pieces}");
        assert!(ticks >= 2, "quiet stretches tick: {ticks}");
        let r = f.into_result();
        assert_eq!((r.state.clone(), r.exit_code), (CommandState::Exited, Some(4)));
        assert_eq!(r.text(), "line1\nline2\nline3\n");
        assert_eq!(r.output_bytes, 18);
        m.shutdown().await;
    }

    async fn a_timeout_ends_the_follow_not_the_command_and_read_goes_on_exactly() {
        let (m, s) = session("follow-timeout").await;
        let started = Instant::now();
        let mut f = s
            .follow("echo first; sleep 1; echo second", ExecOptions::timeout(Duration::from_millis(400)))
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(event) = f.next(None).await.unwrap() {
            if let FollowEvent::Output(bytes) = event {
                seen.extend_from_slice(&bytes);
            }
        }
        assert!(started.elapsed() < Duration::from_millis(1000), "returned at the timeout");
        assert_eq!(seen, b"first\n");
        let r = f.into_result();
        assert!(r.is_running());
        assert_eq!(r.text(), "first\n");
        // The rest is read_output's, without the bytes already followed.
        let rest = s
            .read_output(ReadOptions { wait: Duration::from_secs(20), return_on_output: false })
            .await
            .unwrap();
        assert_eq!(rest.text(), "second\n");
        assert_eq!(rest.exit_code, Some(0));
        // While it ran, the session was busy for everyone else.
        m.shutdown().await;
    }

    async fn a_follower_dropped_midway_leaves_the_rest_to_read_output() {
        let (m, s) = session("follow-drop").await;
        let mut f = s
            .follow("echo one; sleep 0.3; echo two", ExecOptions::timeout(Duration::from_secs(20)))
            .await
            .unwrap();
        match f.next(None).await.unwrap() {
            Some(FollowEvent::Output(bytes)) => assert_eq!(bytes, b"one\n"),
            other => panic!("{other:?}"),
        }
        drop(f);
        let e = s.exec("true", ExecOptions::timeout(Duration::from_secs(5))).await.unwrap_err();
        assert!(matches!(e, ssh_session_core::Error::Busy { .. }), "{e}");
        let rest = s
            .read_output(ReadOptions { wait: Duration::from_secs(20), return_on_output: false })
            .await
            .unwrap();
        assert_eq!((rest.text().as_ref(), rest.exit_code), ("two\n", Some(0)));
        m.shutdown().await;
    }

    async fn what_a_follower_keeps_is_bounded_head_and_tail() {
        let config = SessionConfig { max_output_bytes: 64 << 10, ..Default::default() };
        let m = SessionManager::new();
        let s = m.open("follow-big", Sshd::shared().connect_options(backend()), config).await.unwrap();
        // 1 MB between a head and a tail line, printed in many pieces.
        let mut f = s
            .follow(
                "echo head; head -c 1000000 /dev/zero | tr '\\0' x; echo; echo tail",
                ExecOptions::timeout(Duration::from_secs(20)),
            )
            .await
            .unwrap();
        let mut streamed = 0u64;
        while let Some(event) = f.next(None).await.unwrap() {
            if let FollowEvent::Output(bytes) = event {
                streamed += bytes.len() as u64;
            }
        }
        let r = f.into_result();
        let printed = 5 + 1_000_000 + 1 + 5;
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.output_bytes, printed);
        // A follower slower than the command by more than the session's buffer misses the
        // middle, counted, never silently: what it kept plus what was dropped is all of it.
        assert!(streamed <= printed);
        assert!(r.output.len() <= 64 << 10, "{} bytes kept", r.output.len());
        assert_eq!(r.output.len() as u64 + r.dropped_bytes, printed);
        assert!(r.output.starts_with(b"head\nxxx"));
        assert!(r.output.ends_with(b"xxx\ntail\n"));
        m.shutdown().await;
    }
}
