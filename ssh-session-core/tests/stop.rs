//! Stopping a command that will not stop: Ctrl-C, SIGTERM, SIGKILL, then the shell itself.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use ssh_session_core::{
    AttachOptions, CommandState, Error, ExecOptions, Notice, Session, SessionConfig,
    SessionManager, TerminalEvent, TransportKind,
};
use ssh_session_testkit::prelude::*;
use ssh_session_testkit::{CutMode, FaultProxy};

fn config() -> SessionConfig {
    SessionConfig {
        cancel_deadline: Duration::from_millis(1500),
        ..Default::default()
    }
}

conformance! {
    async fn a_command_that_yields_to_a_signal_is_stopped_without_replacing_the_shell() {
        let m = SessionManager::new();
        let s = m.open("stop", Sshd::shared().connect_options(backend()), config()).await.unwrap();
        run(&s, "cd /tmp && export KEEP=1").await;
        let r = s.exec("trap '' INT; sleep 60", ExecOptions::timeout(Duration::from_millis(200))).await.unwrap();
        assert!(r.is_running());
        let report = s.stop_command().await.unwrap();
        assert_eq!(report.tried, ["INT", "TERM"], "INT is ignored, TERM works");
        assert!(!report.shell_replaced);
        assert_eq!(report.result.exit_code, Some(143));
        assert_eq!(out(&s, "echo $KEEP; jobs | wc -l").await, "1\n0\n");
        assert!(matches!(s.stop_command().await, Err(Error::NotRunning { .. })));
        m.shutdown().await;
    }

    async fn a_wedged_shell_is_replaced_and_the_caller_told() {
        let m = SessionManager::new();
        let s = m.open("wedged", Sshd::shared().connect_options(backend()), config()).await.unwrap();
        run(&s, "cd /usr && export KEEP=yes").await;
        // The shell's own stdout goes nowhere: no marker can ever come back, and there is
        // no foreground job for a signal to stop.
        let r = s.exec("exec >/dev/null; echo hidden", ExecOptions::timeout(Duration::from_millis(300))).await.unwrap();
        assert!(r.is_running());
        let report = s.stop_command().await.unwrap();
        // The foreground is the shell itself: no signal can help, the first step finds that
        // out, primes the shell again, gets no answer and replaces it.
        assert_eq!(report.tried, ["INT"]);
        assert!(report.shell_replaced);
        assert_eq!(report.result.state, CommandState::Killed);
        assert_eq!(report.result.exit_code, None);
        let r = run(&s, "pwd; echo $KEEP").await;
        assert_eq!(r.text(), "/usr\nyes\n");
        assert!(r.notices.iter().any(|n| matches!(n, Notice::ShellRestarted { reason } if reason.contains("stopped answering"))), "{:?}", r.notices);
        m.shutdown().await;
    }
}

conformance! {
    async fn a_command_that_ignores_int_and_term_ends_in_kill() {
        let m = SessionManager::new();
        let s = m.open("stop-kill", Sshd::shared().connect_options(backend()), config()).await.unwrap();
        run(&s, "cd /tmp && export KEEP=1").await;
        let r = s.exec("trap '' INT TERM; sleep 600", ExecOptions::timeout(Duration::from_millis(200))).await.unwrap();
        assert!(r.is_running());
        let report = s.stop_command().await.unwrap();
        assert_eq!(report.tried, ["INT", "TERM", "KILL"]);
        assert!(!report.shell_replaced && !report.connection_restarted);
        assert_eq!(report.result.exit_code, Some(137));
        assert_eq!(report.steps.len(), 3, "{:?}", report.steps);
        assert!(report.steps[2].contains("SIGKILL"), "{:?}", report.steps);
        assert_eq!(out(&s, "pwd; echo $KEEP").await, "/tmp\n1\n");
        m.shutdown().await;
    }

    async fn a_command_whose_shell_sends_its_output_away_ends_in_the_fallback() {
        let m = SessionManager::new();
        let s = m.open("stop-away", Sshd::shared().connect_options(backend()), config()).await.unwrap();
        run(&s, "cd /usr && export KEEP=yes").await;
        let r = s.exec("exec >/dev/null; sleep 600", ExecOptions::timeout(Duration::from_millis(300))).await.unwrap();
        assert!(r.is_running());
        let report = s.stop_command().await.unwrap();
        // Ctrl-C ends the sleep, but the shell's marker goes nowhere; SIGTERM then finds
        // the shell itself in the foreground, which does not answer a new prime: replaced.
        assert_eq!(report.tried, ["INT", "TERM"], "{:?}", report.steps);
        assert!(report.shell_replaced, "{:?}", report.steps);
        assert_eq!(report.result.state, CommandState::Killed);
        assert!(report.steps.iter().any(|s| s.contains("replaced")), "{:?}", report.steps);
        assert_eq!(out(&s, "pwd; echo $KEEP").await, "/usr\nyes\n");
        m.shutdown().await;
    }

    async fn a_connection_that_cannot_replace_the_shell_is_made_again() {
        let sshd = Sshd::shared();
        let dir = tempfile::tempdir().unwrap();
        let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
        let o = sshd.connect_options_via(&proxy, dir.path(), backend());
        let m = SessionManager::new();
        let config = SessionConfig { prime_timeout: Duration::from_secs(2), ..config() };
        let s = m.open("stop-link", o, config).await.unwrap();
        run(&s, "cd /usr && export KEEP=yes").await;
        // Someone attached hears every step, as it happens.
        let mut a = s.attach(AttachOptions::new("attach", 80, 24)).await.unwrap();
        a.wait_prompt(Duration::from_secs(10)).await.unwrap();
        let r = s.exec("sleep 600", ExecOptions::timeout(Duration::from_millis(300))).await.unwrap();
        assert!(r.is_running());
        // Nothing gets through any more: no signal, no new shell.
        proxy.blackhole(true);
        let stopping = {
            let s = s.clone();
            tokio::spawn(async move { s.stop_command().await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut told = Vec::new();
        while !told.iter().any(|t: &String| t.contains("dropping the connection")) {
            match tokio::time::timeout_at(deadline, a.next()).await {
                Ok(Some(TerminalEvent::Notice(n))) => told.push(n),
                Ok(Some(_)) => {}
                other => panic!("{other:?}; told {told:?}"),
            }
        }
        // The network heals; the stalled connection is gone for good.
        proxy.blackhole(false);
        proxy.cut(CutMode::Reset).await;
        let report = tokio::time::timeout(Duration::from_secs(60), stopping).await.unwrap().unwrap().unwrap();
        assert!(report.connection_restarted, "{:?}", report.steps);
        assert_eq!(report.tried, ["INT", "TERM", "KILL"]);
        assert!(!report.result.is_running());
        assert_eq!(report.steps.len(), told.len() + 1, "{:?} / {told:?}", report.steps);
        drop(a);
        assert_eq!(out(&s, "pwd; echo $KEEP").await, "/usr\nyes\n");
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_cannot_stop_a_persons_command_and_people_see_its_steps() {
    let m = SessionManager::new();
    let s = m
        .open(
            "stop-person",
            Sshd::shared().connect_options(TransportKind::Russh),
            config(),
        )
        .await
        .unwrap();
    let mut a = s
        .attach(AttachOptions::new("attach", 80, 24))
        .await
        .unwrap();
    a.wait_prompt(Duration::from_secs(10)).await.unwrap();
    a.send(b"sleep 600\r").await.unwrap();
    let refused = loop {
        match s.stop_command().await {
            Err(Error::NotRunning { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            other => break other,
        }
    };
    match refused {
        Err(e @ Error::HumanBusy { .. }) => assert!(e.to_string().contains("sleep 600"), "{e}"),
        other => panic!("{other:?}"),
    }
    // The person stops it themselves.
    a.send(b"\x03").await.unwrap();
    a.wait_prompt(Duration::from_secs(10)).await.unwrap();
    // A program's command is the program's to stop; the person sees each step.
    let r = s
        .exec(
            "trap '' INT; sleep 60",
            ExecOptions::timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert!(r.is_running());
    let report = s.stop_command().await.unwrap();
    assert_eq!(report.result.exit_code, Some(143));
    let mut told = Vec::new();
    while told.len() < report.steps.len() {
        match tokio::time::timeout(Duration::from_secs(10), a.next()).await {
            Ok(Some(TerminalEvent::Notice(n))) => told.push(n),
            Ok(Some(_)) => {}
            other => panic!("{other:?}; told {told:?}"),
        }
    }
    assert_eq!(told, report.steps);
    drop(a);
    m.shutdown().await;
}
