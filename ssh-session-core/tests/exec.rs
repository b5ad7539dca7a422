//! Commands on a persistent shell: exact output, exit codes and state, on a real sshd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use ssh_session_core::{CommandState, ExecOptions, Session};
use ssh_session_testkit::prelude::*;

conformance! {
    async fn state_persists_between_commands() {
        let (m, s) = session("state").await;
        // Known from the shell's ready marker, before any command.
        let initial = s.info().cwd;
        assert!(initial.starts_with('/'), "{initial:?}");
        assert_eq!(out(&s, "pwd").await, format!("{initial}\n"));
        run(&s, "cd /tmp && mkdir -p ss-state-test && cd ss-state-test").await;
        assert_eq!(out(&s, "pwd").await, "/tmp/ss-state-test\n");
        run(&s, "export GREETING='hello world'; LOCALVAR=local").await;
        assert_eq!(
            out(&s, "echo \"$GREETING/$LOCALVAR\"").await,
            "hello world/local\n"
        );
        run(&s, "greet() { echo \"hi $1\"; }").await;
        assert_eq!(out(&s, "greet there").await, "hi there\n");
        run(&s, "alias ll='echo aliased'").await;
        assert_eq!(out(&s, "ll").await, "aliased\n");
        run(&s, "sleep 30 &").await;
        let jobs = out(&s, "jobs").await;
        assert!(jobs.contains("sleep 30"), "background job lost: {jobs:?}");
        run(&s, "kill %1; wait 2>/dev/null; cd /").await;
        m.shutdown().await;
    }

    async fn exit_codes_and_cwd_are_reported() {
        let (m, s) = session("codes").await;
        let r = run(&s, "false").await;
        assert_eq!((r.exit_code, r.state), (Some(1), CommandState::Exited));
        // `$?` carries over into the next command, as in a terminal.
        assert_eq!(out(&s, "echo $?").await, "1\n");
        assert_eq!(
            run(&s, "exit_with() { return $1; }; exit_with 42")
                .await
                .exit_code,
            Some(42)
        );
        assert_eq!(run(&s, "sh -c 'exit 255'").await.exit_code, Some(255));
        let r = run(&s, "ls /definitely/not/here").await;
        assert_eq!(r.exit_code, Some(2));
        assert!(
            r.text().contains("No such file"),
            "stderr is shown: {:?}",
            r.text()
        );
        let r = run(&s, "cd /usr/share").await;
        assert_eq!(r.cwd, "/usr/share");
        // A syntax error is an error result, never a hang.
        let r = run(&s, "if then fi )").await;
        assert_eq!(r.exit_code, Some(2));
        let r = run(&s, "echo 'unterminated").await;
        assert_ne!(r.exit_code, Some(0));
        m.shutdown().await;
    }

    async fn output_is_exact() {
        let (m, s) = session("exact").await;
        // No final newline stays exact; the command line is never echoed.
        assert_eq!(out(&s, "printf abc").await, "abc");
        assert_eq!(out(&s, "true").await, "");
        assert_eq!(out(&s, "printf 'a\\n\\nb\\n\\n'").await, "a\n\nb\n\n");
        // CR, CRLF and tabs written by the program survive the PTY.
        assert_eq!(out(&s, "printf 'x\\r\\ny\\rz\\tw'").await, "x\r\ny\rz\tw");
        // Quotes, unicode, multi-line scripts and heredocs.
        assert_eq!(
            out(&s, "echo \"it's\" 'a \"quote\"' $'tab\\there'").await,
            "it's a \"quote\" tab\there\n"
        );
        assert_eq!(
            out(&s, "echo 'héllo wörld ✓ 日本'").await,
            "héllo wörld ✓ 日本\n"
        );
        let script = "for i in 1 2 3; do\n  echo \"line $i\"\ndone\nif true; then\n  echo yes\nfi";
        assert_eq!(out(&s, script).await, "line 1\nline 2\nline 3\nyes\n");
        let heredoc = "cat <<'EOF'\n$HOME is literal\n  indented\t'quoted'\nEOF";
        assert_eq!(
            out(&s, heredoc).await,
            "$HOME is literal\n  indented\t'quoted'\n"
        );
        // History expansion stays off: `!` is just a character.
        assert_eq!(out(&s, "echo 'wow!' !!").await, "wow! !!\n");
        // A long single line (above the 4095-byte canonical TTY limit).
        let long = "x".repeat(20_000);
        assert_eq!(
            out(&s, &format!("echo {long} | wc -c")).await.trim(),
            "20001"
        );
        // Control characters inside the command reach the program intact.
        assert_eq!(
            out(&s, "printf '%s' '\x01\x03\x15\x7f' | od -An -tx1")
                .await
                .trim(),
            "01 03 15 7f"
        );
        m.shutdown().await;
    }

    async fn spoofed_markers_and_prompts_do_not_end_a_command() {
        let (m, s) = session("spoof").await;
        let fake = "__ss00000000000000000000000000000000D1;0;/__ss00000000000000000000000000000000E";
        let r = run(
            &s,
            &format!("echo '{fake}'; echo '$ '; echo '# '; sleep 0.2; echo after"),
        )
        .await;
        assert_eq!(r.text(), format!("{fake}\n$ \n# \nafter\n"));
        // The shell's own variables and history never reveal a complete marker.
        let r = run(&s, "set; declare -f; history").await;
        assert_eq!(r.exit_code, Some(0));
        let r = run(&s, "echo next").await;
        assert_eq!(r.text(), "next\n");
        m.shutdown().await;
    }

    async fn binary_output_is_preserved_as_bytes() {
        let (m, s) = session("binary").await;
        let r = run(&s, "head -c 256 /dev/zero | tr '\\0' 'A' >/dev/null; printf '\\000\\001\\377\\n\\r\\n\\033[0m'").await;
        assert_eq!(r.output, b"\x00\x01\xff\n\r\n\x1b[0m");
        // Every byte value, through the terminal, comes back unchanged.
        let r = run(
            &s,
            "i=0; while [ $i -lt 256 ]; do printf \"\\\\$(printf %o $i)\"; i=$((i+1)); done",
        )
        .await;
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(r.output, all);
        m.shutdown().await;
    }

    async fn history_records_commands() {
        let (m, s) = session("history").await;
        run(&s, "echo one").await;
        run(&s, "false").await;
        let h = s.history();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].command, "echo one");
        assert_eq!(h[0].exit_code, Some(0));
        assert_eq!(h[1].exit_code, Some(1));
        assert_eq!(h[1].source, "api");
        assert!(h[0].duration.is_some() && h[0].started_at <= h[1].started_at);
        // The shell's own history holds the user's commands, not our plumbing.
        let shell_history = out(&s, "history").await;
        assert!(shell_history.contains("echo one"), "{shell_history}");
        assert!(!shell_history.contains("__ss_c="), "{shell_history}");
        let info = s.info();
        assert_eq!(info.command_count, 3);
        m.shutdown().await;
    }

    async fn pty_has_term_and_size_and_resizes() {
        let (m, s) = session("pty").await;
        assert_eq!(out(&s, "echo $TERM").await, "xterm-256color\n");
        assert_eq!(out(&s, "stty size").await, "50 200\n");
        s.resize(100, 30).await.unwrap();
        assert_eq!(out(&s, "stty size").await, "30 100\n");
        let r = s.exec("tput cols", ExecOptions::default()).await.unwrap();
        assert_eq!(r.text(), "100\n");
        m.shutdown().await;
    }
}
