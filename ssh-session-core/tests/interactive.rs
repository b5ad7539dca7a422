//! Long-running and interactive commands: timeouts, reading on, input, interrupts,
//! full-screen programs, queueing and the busy rule, on a real sshd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use futures::StreamExt;
use ssh_session_core::{
    CommandState, Error, ExecOptions, Interrupt, ReadOptions, Session, StreamEvent,
};
use ssh_session_testkit::prelude::*;

fn quick(ms: u64) -> ExecOptions {
    ExecOptions::timeout(Duration::from_millis(ms))
}

conformance! {
    async fn timeout_returns_running_then_read_collects_the_exit_code() {
        let (m, s) = session("timeout").await;
        let r = s
            .exec(
                "echo start; sleep 1; echo end; exit_code() { return 7; }; exit_code",
                quick(300),
            )
            .await
            .unwrap();
        assert_eq!(r.state, CommandState::Running);
        assert_eq!(r.exit_code, None);
        assert_eq!(r.text(), "start\n");
        // Busy: a new command fails at once, naming the running one.
        let busy = s.exec("echo nope", quick(5000)).await.unwrap_err();
        match &busy {
            Error::Busy { command, .. } => assert!(command.contains("sleep 1")),
            other => panic!("expected Busy, got {other}"),
        }
        assert!(busy.to_string().contains("interrupt"), "{busy}");
        let r = finish(&s).await;
        assert_eq!(r.state, CommandState::Exited);
        assert_eq!(r.exit_code, Some(7));
        assert_eq!(r.text(), "end\n", "only output not returned before");
        // Reading again returns nothing new and the same final state.
        let again = s.read_output(ReadOptions::default()).await.unwrap();
        assert_eq!((again.text().as_ref(), again.exit_code), ("", Some(7)));
        assert_eq!(out(&s, "echo free").await, "free\n");
        m.shutdown().await;
    }

    async fn read_can_return_on_new_output() {
        let (m, s) = session("follow").await;
        let r = s
            .exec(
                "for i in 1 2 3; do echo tick $i; sleep 0.3; done",
                quick(50),
            )
            .await
            .unwrap();
        let mut seen = r.text().into_owned();
        let mut reads = 0;
        while !seen.contains("tick 3") {
            reads += 1;
            assert!(reads < 100, "never saw tick 3: {seen:?}");
            let r = s
                .read_output(ReadOptions {
                    wait: Duration::from_secs(5),
                    return_on_output: true,
                })
                .await
                .unwrap();
            seen.push_str(&r.text());
        }
        assert_eq!(seen, "tick 1\ntick 2\ntick 3\n");
        assert_eq!(finish(&s).await.exit_code, Some(0));
        m.shutdown().await;
    }

    async fn input_reaches_a_program_waiting_on_stdin() {
        let (m, s) = session("stdin").await;
        let r = s
            .exec(
                "printf 'name? '; read name; echo \"hello $name\"",
                quick(300),
            )
            .await
            .unwrap();
        assert!(r.is_running());
        assert_eq!(r.text(), "name? ");
        s.send_input(b"world\n").await.unwrap();
        let r = finish(&s).await;
        assert_eq!((r.text().as_ref(), r.exit_code), ("hello world\n", Some(0)));
        // A read with nothing running is refused with directions.
        let e = s.send_input(b"x").await.unwrap_err();
        assert!(matches!(e, Error::NotRunning { .. }), "{e}");
        // A program reading until EOF gets it from Ctrl-D.
        let r = s.exec("cat | wc -l", quick(300)).await.unwrap();
        assert!(r.is_running());
        s.send_input(b"a\nb\n").await.unwrap();
        s.interrupt(Interrupt::Eof).await.unwrap();
        let r = finish(&s).await;
        assert_eq!((r.text().trim(), r.exit_code), ("2", Some(0)));
        m.shutdown().await;
    }

    async fn a_repl_can_be_driven() {
        let (m, s) = session("repl").await;
        let r = s.exec("python3 -q -i", quick(500)).await.unwrap();
        assert!(r.is_running());
        s.send_input(b"x = 6 * 7\nprint('answer', x)\n")
            .await
            .unwrap();
        let mut seen = String::new();
        for _ in 0..100 {
            let r = s
                .read_output(ReadOptions {
                    wait: Duration::from_millis(200),
                    return_on_output: true,
                })
                .await
                .unwrap();
            seen.push_str(&r.text());
            if seen.contains("answer 42") {
                break;
            }
        }
        assert!(seen.contains("answer 42"), "{seen:?}");
        s.send_input(b"exit()\n").await.unwrap();
        assert_eq!(finish(&s).await.exit_code, Some(0));
        m.shutdown().await;
    }

    async fn interrupts_stop_the_foreground_job_and_keep_the_shell() {
        let (m, s) = session("interrupt").await;
        run(&s, "cd /tmp; export KEEP=yes").await;
        for (how, code) in [
            (Interrupt::Int, 130),
            (Interrupt::Term, 143),
            (Interrupt::Kill, 137),
        ] {
            let started = Instant::now();
            let r = s.exec("sleep 60", quick(200)).await.unwrap();
            assert!(r.is_running());
            s.interrupt(how).await.unwrap();
            let r = finish(&s).await;
            assert_eq!(r.exit_code, Some(code), "{how:?}");
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{how:?} did not stop sleep"
            );
            // The shell and its state survive.
            assert_eq!(out(&s, "echo $KEEP; pwd").await, "yes\n/tmp\n");
        }
        // A program that ignores SIGINT still yields to SIGKILL.
        let r = s.exec("trap '' INT; sleep 60", quick(200)).await.unwrap();
        assert!(r.is_running());
        s.interrupt(Interrupt::Int).await.unwrap();
        let still = s
            .read_output(ReadOptions {
                wait: Duration::from_millis(300),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(still.is_running(), "trapped INT should not stop it");
        s.interrupt(Interrupt::Kill).await.unwrap();
        assert_eq!(finish(&s).await.exit_code, Some(137));
        // Interrupting when idle says so.
        assert!(matches!(
            s.interrupt(Interrupt::Int).await,
            Err(Error::NotRunning { .. })
        ));
        m.shutdown().await;
    }

    async fn full_screen_programs_show_their_screen() {
        let (m, s) = session("screen").await;
        let file = format!("/tmp/ss-screen-test-{}.txt", backend());
        run(&s, &format!("seq 1 500 > {file}")).await;
        let r = s
            .exec(&format!("less {file}"), quick(500))
            .await
            .unwrap();
        assert!(r.is_running());
        let screen = screen_with(&s, "49").await;
        assert!(screen.starts_with("1\n2\n3\n"), "{screen}");
        s.send_input(b"G").await.unwrap();
        let screen = screen_with(&s, "500").await;
        assert!(!screen.contains("\n2\n"), "scrolled to the end: {screen}");
        s.send_input(b"q").await.unwrap();
        assert_eq!(finish(&s).await.exit_code, Some(0));
        // vi: type text, read it off the screen, quit without saving.
        let r = s
            .exec(&format!("vi /tmp/ss-screen-vi-{}.txt", backend()), quick(500))
            .await
            .unwrap();
        assert!(r.is_running());
        s.send_input(b"ihello from the agent\x1b").await.unwrap();
        screen_with(&s, "hello from the agent").await;
        s.send_input(b":q!\r").await.unwrap();
        assert_eq!(finish(&s).await.exit_code, Some(0));
        assert_eq!(out(&s, "echo back").await, "back\n");
        m.shutdown().await;
    }

    async fn concurrent_execs_queue_in_order() {
        let (m, s) = session("queue").await;
        // Per backend: both variants of this test run at the same time on one sshd.
        let file = format!("/tmp/ss-queue-order-{}", backend());
        run(&s, &format!("rm -f {file}")).await;
        let mut tasks = Vec::new();
        for i in 0..5 {
            let s = s.clone();
            let file = file.clone();
            tasks.push(tokio::spawn(async move {
                let r = s
                    .exec(
                        &format!("echo {i} >> {file}; sleep 0.1; echo done {i}"),
                        quick(20_000),
                    )
                    .await
                    .unwrap();
                (i, r)
            }));
            // Start them in a known order.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            let (i, r) = t.await.unwrap();
            assert_eq!(r.text(), format!("done {i}\n"), "outputs never interleave");
        }
        assert_eq!(out(&s, &format!("cat {file}")).await, "0\n1\n2\n3\n4\n");
        m.shutdown().await;
    }

    async fn output_streams_as_it_arrives() {
        let (m, s) = session("stream").await;
        let mut stream = s
            .exec_stream("echo first; sleep 0.5; echo second", ExecOptions::default())
            .await
            .unwrap();
        let mut chunks = Vec::new();
        let mut first_while_running = false;
        while let Some(event) = stream.next().await {
            match event {
                StreamEvent::Output(bytes) => {
                    if String::from_utf8_lossy(&bytes).contains("first") {
                        first_while_running = s.info().running.is_some();
                    }
                    chunks.push(bytes);
                }
                StreamEvent::Finished(r) => {
                    assert_eq!(r.exit_code, Some(0));
                    assert!(r.output.is_empty());
                    break;
                }
            }
        }
        assert!(
            first_while_running,
            "the first line arrived before the command ended"
        );
        assert_eq!(chunks.concat(), b"first\nsecond\n");
        assert_eq!(out(&s, "echo after").await, "after\n");
        m.shutdown().await;
    }

    async fn a_dropped_stream_leaves_the_rest_to_read_output() {
        let (m, s) = session("dropped").await;
        let mut stream = s
            .exec_stream("echo first; sleep 0.3; echo queued; sleep 0.5; echo after; (exit 5)", ExecOptions::default())
            .await
            .unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("first") {
            match stream.next().await {
                Some(StreamEvent::Output(bytes)) => seen.extend_from_slice(&bytes),
                other => panic!("{other:?}"),
            }
        }
        // "queued" arrives while nobody polls the stream: it waits in the stream's queue
        // and is dropped with it, unseen by the caller.
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(stream);
        // Every byte once: what the caller took is not repeated, nothing else is lost.
        let r = s
            .read_output(ReadOptions {
                wait: Duration::from_secs(10),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(seen, b"first\n");
        assert_eq!(r.text(), "queued\nafter\n");
        assert_eq!(r.exit_code, Some(5));
        m.shutdown().await;
    }
}
