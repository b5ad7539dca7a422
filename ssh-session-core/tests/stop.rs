//! Stopping a command that will not stop: Ctrl-C, SIGTERM, SIGKILL, then the shell itself.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use ssh_session_core::{
    CommandState, Error, ExecOptions, Notice, Session, SessionConfig, SessionManager,
};
use ssh_session_testkit::prelude::*;

fn config() -> SessionConfig {
    SessionConfig {
        stop_deadline: Duration::from_millis(1500),
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
