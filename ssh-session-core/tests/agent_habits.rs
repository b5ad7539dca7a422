//! What agents do to their own shell (issue #11, found by adversarial testing): each habit
//! must leave every later result exact, and a shell whose marker can no longer come back
//! must be recoverable through the session's own calls. On bash, zsh and dash where the
//! habit applies; the signal paths on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use ssh_session_core::{
    CommandState, ExecOptions, Interrupt, Session, SessionConfig, SessionManager, ShellSession,
};
use ssh_session_testkit::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shell {
    Bash,
    Zsh,
    Dash,
}

const ALL: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Dash];

/// A session whose login shell is `shell` (bash is the test sshd's own), with a short stop
/// deadline so that the recovery paths stay quick.
struct On {
    manager: SessionManager,
    s: ShellSession,
    _sshd: Option<(Sshd, tempfile::TempDir)>,
}

async fn open(shell: Shell) -> On {
    let (sshd, options) = login_shell_server(match shell {
        Shell::Bash => "bash",
        Shell::Zsh => "/usr/bin/zsh",
        Shell::Dash => "/bin/dash",
    });
    let manager = SessionManager::new();
    let config = SessionConfig {
        cancel_deadline: Duration::from_secs(3),
        prime_timeout: Duration::from_secs(6),
        ..Default::default()
    };
    let s = manager
        .open(&format!("{shell:?}"), options, config)
        .await
        .unwrap();
    On {
        manager,
        s,
        _sshd: sshd,
    }
}

fn short(ms: u64) -> ExecOptions {
    ExecOptions::timeout(Duration::from_millis(ms))
}

/// The session answers exactly again.
async fn exact(s: &ShellSession, shell: Shell) {
    let r = run(s, "echo x1; (exit 3)").await;
    assert_eq!(
        (r.text().as_ref(), r.exit_code),
        ("x1\n", Some(3)),
        "{shell:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn noclobber_keeps_results_exact_and_the_env_snapshot_fresh() {
    for shell in ALL {
        let on = open(shell).await;
        let s = &on.s;
        run(s, "set -o noclobber").await;
        exact(s, shell).await;
        run(s, "export NC=fresh").await;
        // A new shell restores the exports saved after the last command.
        let r = run(s, "exit 0").await;
        assert_eq!(r.state, CommandState::ShellExited, "{shell:?}");
        assert_eq!(out(s, "echo $NC").await, "fresh\n", "{shell:?}");
        on.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_input_a_command_did_not_read_never_reaches_the_next_one() {
    for shell in ALL {
        let on = open(shell).await;
        let s = &on.s;
        // A partial line.
        assert!(s.exec("sleep 1", short(100)).await.unwrap().is_running());
        s.send_input(b"garbage").await.unwrap();
        assert_eq!(finish(s).await.exit_code, Some(0), "{shell:?}");
        exact(s, shell).await;
        // Ctrl-C the terminal does not take as one.
        run(s, "stty intr undef").await;
        assert!(s.exec("sleep 30", short(100)).await.unwrap().is_running());
        s.interrupt(Interrupt::Int).await.unwrap();
        s.interrupt(Interrupt::Term).await.unwrap();
        assert_eq!(finish(s).await.exit_code, Some(143), "{shell:?}");
        run(s, "stty intr '^C'").await;
        exact(s, shell).await;
        if shell != Shell::Dash {
            // A complete line: it would run as a command of its own, outside any policy.
            let leak = format!("/tmp/ss-leak-{}-{shell:?}", std::process::id());
            assert!(s.exec("sleep 1", short(100)).await.unwrap().is_running());
            s.send_input(format!("touch {leak}\n").as_bytes())
                .await
                .unwrap();
            assert_eq!(finish(s).await.exit_code, Some(0), "{shell:?}");
            exact(s, shell).await;
            assert!(!std::path::Path::new(&leak).exists(), "{shell:?} ran it");
        }
        on.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_echo_switched_back_on_never_shows_the_protocol() {
    for shell in ALL {
        let on = open(shell).await;
        let s = &on.s;
        for habit in ["stty sane", "stty echo", "reset"] {
            run(s, habit).await;
            exact(s, shell).await;
            exact(s, shell).await;
            let r = run(s, "printf 'a\\tb\\n'\necho 'two\nlines'").await;
            assert_eq!(r.text(), "a\tb\ntwo\nlines\n", "{shell:?} after {habit}");
        }
        on.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tracing_shows_the_commands_and_none_of_the_plumbing() {
    for shell in ALL {
        let on = open(shell).await;
        let s = &on.s;
        run(s, "set -x").await;
        for _ in 0..2 {
            let r = run(s, "echo x1").await;
            let text = r.text();
            assert!(!text.contains("__ss"), "{shell:?}: {text:?}");
            assert!(text.ends_with("x1\n"), "{shell:?}: {text:?}");
            assert!(text.contains("+ echo x1"), "{shell:?} traces: {text:?}");
        }
        run(s, "set +x").await;
        exact(s, shell).await;
        run(s, "set -v").await;
        let r = run(s, "echo x1").await;
        assert!(!r.text().contains("__ss"), "{shell:?}: {:?}", r.text());
        assert!(r.text().ends_with("x1\n"), "{shell:?}: {:?}", r.text());
        run(s, "set +v").await;
        exact(s, shell).await;
        on.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_editor_switched_on_is_switched_off_again() {
    for shell in [Shell::Bash, Shell::Zsh] {
        let on = open(shell).await;
        let s = &on.s;
        for editor in ["set -o emacs", "set -o vi"] {
            run(s, editor).await;
            let r = run(
                s,
                "printf 'all:\\n\\techo hi\\n' >/dev/null; echo 'a\tb' | od -An -c",
            )
            .await;
            assert!(
                r.text().contains("\\t"),
                "{shell:?} {editor}: the TAB was eaten: {:?}",
                r.text()
            );
            let long = "y".repeat(3000);
            let r = run(s, &format!("echo {long} | wc -c")).await;
            assert_eq!(r.text().trim(), "3001", "{shell:?} {editor}");
            assert!(
                !r.output.windows(4).any(|w| w == b"\x1b[?2"),
                "{shell:?}: bracketed paste"
            );
            exact(s, shell).await;
        }
        // Ctrl-C right after the editor came back on: the prompt hook still answers.
        run(s, "set -o emacs").await;
        assert!(s.exec("sleep 30", short(200)).await.unwrap().is_running());
        s.interrupt(Interrupt::Int).await.unwrap();
        assert_eq!(finish(s).await.exit_code, Some(130), "{shell:?}");
        exact(s, shell).await;
        on.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eval_alias_or_function_cannot_hijack_commands() {
    for shell in ALL {
        let on = open(shell).await;
        let s = &on.s;
        run(s, "alias eval='echo HIJACKED'").await;
        exact(s, shell).await;
        run(s, "unalias eval").await;
        if shell != Shell::Dash {
            run(s, "eval() { echo HIJACKED; }").await;
            exact(s, shell).await;
            run(s, "unset -f eval").await;
        }
        on.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_hook_set_by_a_command_does_not_survive_it() {
    let on = open(Shell::Bash).await;
    let s = &on.s;
    run(s, "PROMPT_COMMAND='echo X'").await;
    assert!(s.exec("sleep 30", short(200)).await.unwrap().is_running());
    s.interrupt(Interrupt::Int).await.unwrap();
    assert_eq!(finish(s).await.exit_code, Some(130));
    exact(s, Shell::Bash).await;
    run(s, "PS0='zero'").await;
    exact(s, Shell::Bash).await;
    on.manager.shutdown().await;
}

/// Runs `habit` (after which a marker can never come back), then recovers with `how`, and checks
/// that the session answers exactly again and says how the command ended.
async fn recovers(s: &ShellSession, shell: Shell, habit: &str, how: Interrupt) {
    let mut r = s.exec(habit, short(1000)).await.unwrap();
    if !r.is_running() {
        // `readonly __ss_id` ends normally; the next command can no longer report.
        r = s.exec("echo x1", short(1000)).await.unwrap();
    }
    assert!(r.is_running(), "{shell:?} {habit}: {:?}", r.text());
    s.interrupt(how).await.unwrap();
    let r = finish(s).await;
    assert!(
        matches!(r.state, CommandState::Untracked | CommandState::Killed),
        "{shell:?} {habit}: {:?}",
        r.state
    );
    exact(s, shell).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_whose_marker_cannot_come_back_is_recovered_by_an_interrupt() {
    for shell in ALL {
        let on = open(shell).await;
        let s = &on.s;
        run(s, "cd /usr && export KEEP=yes").await;
        // The replaced shell's own habits last: what follows runs in the new shell.
        for habit in [
            "unset __ss_a __ss_b",
            "exec >/dev/null",
            "readonly __ss_id",
            "exec sh",
            "exec bash",
        ] {
            recovers(s, shell, habit, Interrupt::Int).await;
            assert_eq!(
                out(s, "pwd; echo $KEEP").await,
                "/usr\nyes\n",
                "{shell:?} {habit}"
            );
        }
        on.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_shell_gets_nothing_meant_for_the_old_one() {
    // Found by the property test: echo back on, then a shell replaced after an interrupt;
    // the new zsh took the Ctrl-U meant for the old terminal as a byte of the command. That
    // depends on how fast the new zsh sets up its terminal; the machine's unit test
    // `typed_input_erases_a_partial_line_in_the_same_shell_only` pins the cause.
    for shell in ALL {
        let on = open(shell).await;
        let s = &on.s;
        run(s, "stty sane").await;
        run(s, "set -u").await;
        recovers(s, shell, "exec >/dev/null", Interrupt::Int).await;
        exact(s, shell).await;
        on.manager.shutdown().await;
    }
}

conformance! {
    async fn kill_recovers_a_shell_whose_output_goes_nowhere() {
        let (m, s) = session("kill-wedged").await;
        recovers(&s, Shell::Bash, "exec >/dev/null", Interrupt::Kill).await;
        recovers(&s, Shell::Bash, "exec bash", Interrupt::Term).await;
        m.shutdown().await;
    }

    async fn term_with_the_shell_in_the_foreground_spares_background_jobs() {
        let (m, s) = session("term-read").await;
        // (An interactive shell also reports the jobs it starts: the pids are the last line.)
        let listed = out(&s, "sleep 1000 & a=$!; sleep 1000 & echo $a $!").await;
        let pids = listed.lines().last().unwrap().to_string();
        let r = s.exec("read x", short(300)).await.unwrap();
        assert!(r.is_running());
        s.interrupt(Interrupt::Term).await.unwrap();
        let r = finish(&s).await;
        assert_ne!(r.exit_code, Some(0), "read was interrupted: {:?}", r.text());
        assert_eq!(out(&s, &format!("kill -0 {pids} && echo alive")).await, "alive\n");
        run(&s, &format!("kill {pids}")).await;
        m.shutdown().await;
    }
}

conformance! {
    async fn closing_during_a_command_says_the_session_closed() {
        let (m, s) = session("close-running").await;
        let running = {
            let s = s.clone();
            tokio::spawn(async move { s.exec("sleep 30", ExecOptions::timeout(Duration::from_secs(20))).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.close().await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap();
        assert!(matches!(r, Err(ssh_session_core::Error::Closed { .. })), "{r:?}");
        m.shutdown().await;
    }

    async fn closing_ends_background_jobs_but_not_nohup_ones() {
        let (m, s) = session("close-jobs").await;
        let listed = out(&s, "sleep 1001 & a=$!; nohup sleep 1002 >/dev/null 2>&1 & echo $a $!").await;
        let pids: Vec<String> = listed.lines().last().unwrap().split(' ').map(str::to_string).collect();
        s.close().await.unwrap();
        let (m2, probe) = session("close-jobs-probe").await;
        let mut alive = String::new();
        for _ in 0..50 {
            alive = out(&probe, &format!("kill -0 {} 2>/dev/null && echo job; kill -0 {} && echo nohup", pids[0], pids[1])).await;
            if alive == "nohup\n" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(alive, "nohup\n", "the job ends with the session, the nohup one stays");
        run(&probe, &format!("kill {}", pids[1])).await;
        m2.shutdown().await;
        m.shutdown().await;
    }

    async fn a_new_shell_says_when_it_cannot_go_back_to_the_old_cwd() {
        let (m, s) = session("cwd-gone").await;
        let dir = format!("/tmp/ss-cwd-gone-{}", std::process::id());
        run(&s, &format!("mkdir -p {dir}-{0} && cd {dir}-{0} && rmdir {dir}-{0}", backend() as u8)).await;
        assert_eq!(run(&s, "exit 0").await.state, CommandState::ShellExited);
        let r = run(&s, "pwd").await;
        let now = r.text().trim().to_string();
        assert!(
            r.notices.iter().any(|n| matches!(n, ssh_session_core::Notice::CwdNotRestored { wanted, now: n } if wanted.starts_with(&dir) && *n == now)),
            "{:?}",
            r.notices
        );
        m.shutdown().await;
    }
}

conformance! {
    async fn ctrl_c_works_on_a_connection_with_no_channel_to_spare() {
        // MaxSessions 1: the shell holds the connection's only channel, and the look at the
        // terminal needs another one (the transport may or may not find it elsewhere).
        // Ctrl-C is typed before that look and must work either way.
        let sshd = Sshd::start_with(SshdOptions { max_sessions: 1, ..Default::default() }).unwrap();
        let m = SessionManager::new();
        let s = m.open("full", sshd.connect_options(backend()), SessionConfig::default()).await.unwrap();
        assert!(s.exec("sleep 30", short(200)).await.unwrap().is_running());
        s.interrupt(Interrupt::Int).await.unwrap();
        assert_eq!(finish(&s).await.exit_code, Some(130));
        assert_eq!(out(&s, "echo x1").await, "x1\n");
        m.shutdown().await;
    }
}
