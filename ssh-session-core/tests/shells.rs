//! Login shells other than bash: zsh and dash work natively; fish (not POSIX) falls back
//! to a POSIX shell; a host where no POSIX shell can start fails clearly instead of hanging.
//!
//! Each case runs its own sshd whose `ForceCommand` stands in for the user's login shell:
//! sshd runs it exactly where it would run the login shell, with the client's exec command
//! in `$SSH_ORIGINAL_COMMAND`, which the wrapper hands to `SHELL -c` as a login shell would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use ssh_session_core::{
    Error, ExecOptions, Interrupt, Notice, Session, SessionConfig, SessionManager,
};
use ssh_session_testkit::prelude::*;

fn require(program: &str) {
    assert!(
        std::path::Path::new(program).exists(),
        "{program} is missing: run `bash .ci/run` (it installs the test dependencies)"
    );
}

async fn exercise(s: &ssh_session_core::ShellSession) {
    assert_eq!(
        out(s, "printf abc").await,
        "abc",
        "no newline added, no prompt padding"
    );
    run(s, "cd /tmp && export V='x y'").await;
    assert_eq!(out(s, "echo \"$V\"; pwd").await, "x y\n/tmp\n");
    assert_eq!(run(s, "false").await.exit_code, Some(1));
    assert_eq!(out(s, "printf '%s\\n' 'it'\\''s' | cat").await, "it's\n");
    assert_eq!(
        out(s, "printf '%s' '\x01\x7f' | od -An -tx1").await.trim(),
        "01 7f"
    );
    let r = s
        .exec("sleep 30", ExecOptions::timeout(Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(r.is_running());
    s.interrupt(Interrupt::Int).await.unwrap();
    let r = finish(s).await;
    assert_eq!(r.exit_code, Some(130), "Ctrl-C reported: {:?}", r.text());
    assert_eq!(out(s, "echo alive").await, "alive\n");
}

async fn open(
    sshd: &Sshd,
) -> (
    SessionManager,
    Result<ssh_session_core::ShellSession, Error>,
) {
    let m = SessionManager::new();
    let config = SessionConfig {
        prime_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let s = m
        .open("shell", sshd.connect_options(backend()), config)
        .await;
    (m, s)
}

conformance! {
    async fn zsh_login_shell() {
        require("/usr/bin/zsh");
        let (sshd, _dir) = sshd_with_login_shell("/usr/bin/zsh");
        let (m, s) = open(&sshd).await;
        let s = s.unwrap();
        assert!(out(&s, "echo $ZSH_VERSION").await.trim().len() > 2);
        exercise(&s).await;
        m.shutdown().await;
    }

    async fn dash_login_shell() {
        require("/bin/dash");
        let (sshd, _dir) = sshd_with_login_shell("/bin/dash");
        let (m, s) = open(&sshd).await;
        let s = s.unwrap();
        assert_eq!(out(&s, "echo ${BASH_VERSION:-none}").await, "none\n");
        exercise(&s).await;
        m.shutdown().await;
    }

    async fn fish_login_shell_falls_back_to_posix() {
        require("/usr/bin/fish");
        let (sshd, _dir) = sshd_with_login_shell("/usr/bin/fish");
        let (m, s) = open(&sshd).await;
        let s = s.unwrap();
        let r = run(&s, "echo $0").await;
        assert!(
            r.notices.contains(&Notice::PosixFallback),
            "{:?}",
            r.notices
        );
        assert!(r.notices[0].to_string().contains("not a POSIX shell"));
        exercise(&s).await;
        m.shutdown().await;
    }

    async fn no_posix_shell_at_all_is_a_clear_error() {
        require("/usr/bin/fish");
        // Every request, the fallback's exec included, lands in an interactive fish.
        let sshd = Sshd::start_with(SshdOptions {
            extra_config: "ForceCommand /usr/bin/fish -i\n".into(),
            ..Default::default()
        })
        .unwrap();
        let started = std::time::Instant::now();
        let (m, s) = open(&sshd).await;
        let e = s.unwrap_err();
        assert!(matches!(e, Error::NonPosixShell { .. }), "{e}");
        assert!(e.to_string().contains("not a POSIX shell"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(30), "no hang");
        assert!(m.list().is_empty());
    }
}
