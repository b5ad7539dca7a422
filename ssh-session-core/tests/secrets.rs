//! A command waiting at a password prompt says so, instead of a silent timeout; the
//! answer typed into it is not echoed (the agent path's terminal has echo off).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use ssh_session_core::{CommandState, ExecOptions, ReadOptions, SecretKind, Session};
use ssh_session_testkit::prelude::*;

conformance! {
    async fn a_password_prompt_is_reported_and_answered() {
        let (m, s) = session("secret").await;
        let r = s
            .exec(
                "printf '[sudo] password for deploy: '; read -s pw; echo; echo \"got ${#pw} characters\"",
                ExecOptions::timeout(Duration::from_millis(500)),
            )
            .await
            .unwrap();
        assert_eq!(r.state, CommandState::Running);
        let p = r.waiting_for.expect("the prompt is reported");
        assert_eq!((p.kind, p.text.as_str()), (SecretKind::Password, "[sudo] password for deploy:"));
        // Still known on a later read with nothing new.
        let again = s.read_output(ReadOptions::default()).await.unwrap();
        assert!(again.output.is_empty() && again.waiting_for.is_some(), "{again:?}");

        s.send_input(b"hunter2\n").await.unwrap();
        let done = s
            .read_output(ReadOptions { wait: Duration::from_secs(20), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(done.exit_code, Some(0));
        assert!(done.waiting_for.is_none());
        assert_eq!(done.text(), "\ngot 7 characters\n");
        assert!(!done.text().contains("hunter2"), "never echoed");

        // An ordinary question is not a secret.
        let r = s
            .exec("printf 'Continue? [y/N] '; read a", ExecOptions::timeout(Duration::from_millis(300)))
            .await
            .unwrap();
        assert!(r.is_running() && r.waiting_for.is_none(), "{r:?}");
        s.send_input(b"n\n").await.unwrap();
        finish(&s).await;
        m.shutdown().await;
    }
}
