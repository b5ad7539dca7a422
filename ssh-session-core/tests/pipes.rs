//! A session without a PTY: the shell runs on plain pipes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use ssh_session_core::{Error, ExecOptions, Interrupt, Session, SessionConfig, SessionManager};
use ssh_session_testkit::prelude::*;

conformance! {
    async fn a_pipe_session_keeps_state_and_reports_exactly() {
        let m = SessionManager::new();
        let config = SessionConfig {
            pty: None,
            ..Default::default()
        };
        let s = m.open("pipes", Sshd::shared().connect_options(backend()), config).await.unwrap();
        run(&s, "cd /tmp && export P=1").await;
        let r = run(&s, "echo \"$P\"; pwd; printf 'a\\r\\nb'").await;
        // No terminal: bytes arrive exactly as written, CRs included.
        assert_eq!(r.text(), "1\n/tmp\na\r\nb");
        assert_eq!(r.cwd, "/tmp");
        assert_eq!(run(&s, "false").await.exit_code, Some(1));
        let r = run(&s, "echo to-stderr >&2; sleep 0.1").await;
        assert_eq!(r.text(), "to-stderr\n", "stderr is part of the output");
        assert_eq!(out(&s, "tty >/dev/null || echo no-tty").await, "no-tty\n");
        // Interrupts go to the command's processes; Ctrl-D needs a terminal.
        let r = s
            .exec("sleep 30", ExecOptions::timeout(Duration::from_millis(200)))
            .await
            .unwrap();
        assert!(r.is_running());
        assert!(matches!(
            s.interrupt(Interrupt::Eof).await,
            Err(Error::InvalidCommand { .. })
        ));
        s.interrupt(Interrupt::Term).await.unwrap();
        let r = finish(&s).await;
        assert_eq!(r.exit_code, Some(143));
        // The shell's job notice belongs to the killed command, not to the next one.
        assert_eq!(r.text(), "Terminated\n");
        assert_eq!(out(&s, "echo $P").await, "1\n");
        m.shutdown().await;
    }
}
