//! The shell dies (exit, exec, kill): the result says so and the next command gets a new
//! shell with cwd and exported variables restored.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use ssh_session_core::{CommandState, Notice};
use ssh_session_testkit::prelude::*;

fn restarted(notices: &[Notice]) -> bool {
    notices
        .iter()
        .any(|n| matches!(n, Notice::ShellRestarted { .. }))
}

conformance! {
    async fn exit_is_reported_and_the_next_command_gets_a_restored_shell() {
        let (m, s) = session("exit").await;
        run(
            &s,
            "mkdir -p /tmp/ss-exit-test && cd /tmp/ss-exit-test && export KEPT='a b' && UNEXPORTED=1",
        )
        .await;
        run(&s, "sleep 100 &").await;
        let r = run(&s, "exit 3").await;
        assert_eq!(r.state, CommandState::ShellExited);
        assert_eq!(r.exit_code, Some(3));
        let r = run(&s, "pwd; echo \"$KEPT|${UNEXPORTED:-gone}\"; jobs | wc -l").await;
        assert_eq!(r.text(), "/tmp/ss-exit-test\na b|gone\n0\n");
        assert!(restarted(&r.notices), "{:?}", r.notices);
        let text = r.notices[0].to_string();
        assert!(
            text.contains("status 3") && text.contains("background jobs"),
            "{text}"
        );
        // Only the first command after the restart carries the notice.
        assert!(run(&s, "true").await.notices.is_empty());
        m.shutdown().await;
    }

    async fn exec_replacing_the_shell_is_reported() {
        let (m, s) = session("exec-true").await;
        run(&s, "cd /usr && export MARK=1").await;
        let r = run(&s, "exec true").await;
        assert_eq!(r.state, CommandState::ShellExited);
        let r = run(&s, "pwd; echo $MARK").await;
        assert_eq!(r.text(), "/usr\n1\n");
        assert!(restarted(&r.notices));
        m.shutdown().await;
    }

    async fn a_killed_shell_is_replaced() {
        let (m, s) = session("killed").await;
        let (_m2, killer) = session("killer").await;
        run(&s, "cd /var && export SURVIVES=yes").await;
        let pid = out(&s, "echo $$").await;
        run(&killer, &format!("kill -9 {}", pid.trim())).await;
        // Depending on when the channel's close arrives, the next command either reports the
        // dead shell or already runs on a new one; either way nothing is silently wrong.
        let mut r = run(&s, "pwd; echo $SURVIVES").await;
        if r.state == CommandState::ShellExited {
            r = run(&s, "pwd; echo $SURVIVES").await;
        }
        assert_eq!(r.text(), "/var\nyes\n");
        assert!(restarted(&r.notices));
        assert_ne!(out(&s, "echo $$").await, pid, "a new shell");
        m.shutdown().await;
    }

    async fn restored_variables_do_not_override_the_new_connection() {
        let (m, s) = session("ssh-vars").await;
        run(&s, "export SSH_CONNECTION=stale SSH_AUTH_SOCK=/stale/agent MINE=1").await;
        run(&s, "export WEIRD=\"a  b'c\\\"d \\$e
second line\"").await;
        run(&s, "exit").await;
        let r = run(&s, "echo \"$SSH_CONNECTION|$MINE|${SSH_AUTH_SOCK-unset}\"").await;
        assert!(!r.text().starts_with("stale"), "{:?}", r.text());
        // This connection has no agent: the stale socket is not restored.
        assert!(r.text().ends_with("|1|unset\n"), "{:?}", r.text());
        // Any value comes back exactly.
        assert_eq!(out(&s, "printf '%s' \"$WEIRD\"").await, "a  b'c\"d $e\nsecond line");
        m.shutdown().await;
    }
}
