//! End-to-end: the built `ssh-session` binary, its daemon, and a real OpenSSH sshd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod common;

use common::{text, Env};

#[test]
fn two_execs_share_cwd_and_env() {
    let env = Env::new();
    env.connect("web");
    env.ok(&[
        "exec",
        "web",
        "--",
        "cd",
        "/tmp",
        "&&",
        "export",
        "CLI_VAR=kept",
    ]);
    let out = env.ok(&["exec", "web", "--", "pwd; echo $CLI_VAR"]);
    assert_eq!(out, "/tmp\nkept\n");
    let history = env.ok(&["history", "web", "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 2);
    assert_eq!(entries[0]["source"], "cli");
    assert_eq!(entries[1]["exit_code"], 0);
    // The table's durations read `3 ms` or `1.2 s`, with a space before the unit.
    let table = env.ok(&["history", "web"]);
    let took: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|row| row.split("  ").filter(|c| !c.is_empty()).nth(2).unwrap())
        .collect();
    assert!(
        took.iter()
            .all(|t| t.trim().ends_with(" ms") || t.trim().ends_with(" s")),
        "{table}"
    );
}

#[test]
fn exit_codes_propagate() {
    let env = Env::new();
    env.connect("codes");
    assert_eq!(
        env.run(&["exec", "codes", "--", "false"]).status.code(),
        Some(1)
    );
    assert_eq!(
        env.run(&["exec", "codes", "--", "sh -c 'exit 42'"])
            .status
            .code(),
        Some(42)
    );
    // `exit 3` ends the session's shell itself: its status is the command's, stderr says
    // so, and the next command gets a new shell.
    let out = env.run(&["exec", "codes", "--", "exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("shell of session codes exited"),
        "{:?}",
        text(&out)
    );
    let out = env.run(&["exec", "codes", "--", "echo", "again"]);
    assert_eq!(
        (out.status.code(), text(&out).0.as_str()),
        (Some(0), "again\n")
    );
}

#[test]
fn timeout_exits_124_and_read_gets_the_rest() {
    let env = Env::new();
    env.connect("slow");
    let out = env.run(&[
        "exec",
        "slow",
        "--timeout",
        "1s",
        "--",
        "echo start; sleep 3; echo end; (exit 7)",
    ]);
    let (first, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(124), "{first} {stderr}");
    assert!(stderr.contains("still running"), "{stderr}");
    // How long, for people: `1.01 s`, not Rust's `1.0104s`.
    assert!(stderr.contains(" s so far"), "{stderr}");
    assert!(stderr.contains("ssh-session read slow"), "{stderr}");
    // A busy session refuses another command, clearly.
    let busy = env.run(&["exec", "slow", "--", "true"]);
    assert_eq!(busy.status.code(), Some(67));
    assert!(text(&busy).1.contains("busy"), "{:?}", text(&busy));
    let rest = env.run(&["read", "slow", "--wait", "60s"]);
    let (second, stderr) = text(&rest);
    assert_eq!(rest.status.code(), Some(7), "{second} {stderr}");
    // Every byte exactly once across the two invocations.
    assert_eq!(format!("{first}{second}"), "start\nend\n");
}

#[test]
fn send_and_interrupt_reach_the_running_command() {
    let env = Env::new();
    env.connect("io");
    let out = env.run(&[
        "exec",
        "io",
        "--timeout",
        "500ms",
        "--",
        "read x; echo got-$x",
    ]);
    assert_eq!(out.status.code(), Some(124));
    env.ok(&["send", "io", r"abc\n"]);
    let out = env.run(&["read", "io", "--wait", "60s"]);
    assert_eq!(text(&out).0, "got-abc\n");
    assert_eq!(out.status.code(), Some(0));

    let out = env.run(&["exec", "io", "--timeout", "500ms", "--", "sleep 60"]);
    assert_eq!(out.status.code(), Some(124));
    env.ok(&["interrupt", "io", "--signal", "INT"]);
    let out = env.run(&["read", "io", "--wait", "60s"]);
    assert_eq!(out.status.code(), Some(130), "{:?}", text(&out));
    // Nothing runs now: send and interrupt say so.
    let out = env.run(&["interrupt", "io"]);
    assert_eq!(out.status.code(), Some(67));
    assert!(
        text(&out).1.contains("no running command"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn listings_are_json_for_scripts() {
    let env = Env::new();
    let empty = env.ok(&["ls", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&empty).unwrap(),
        serde_json::json!([])
    );
    env.connect("a1");
    env.connect("b2");
    let list: serde_json::Value = serde_json::from_str(&env.ok(&["ls", "--json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1", "b2"]);
    assert_eq!(list[0]["status"], "connected");
    assert_eq!(list[0]["port"], env.sshd.port());
    let table = env.ok(&["ls"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("a1") && table.contains("connected"),
        "{table}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "b2", "--json"])).unwrap();
    assert_eq!(status["name"], "b2");
    env.ok(&["close", "a1"]);
    let list: serde_json::Value = serde_json::from_str(&env.ok(&["ls", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn screen_shows_the_terminal() {
    let env = Env::new();
    env.connect("scr");
    env.ok(&["exec", "scr", "--", "printf 'top-line\\n'"]);
    let screen = env.ok(&["read", "scr", "--screen"]);
    assert!(screen.contains("top-line"), "{screen}");
}

#[test]
fn hosts_and_connect_use_the_ssh_config() {
    let env = Env::new();
    let config = env.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host kit-alias\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n",
            env.sshd.port(),
            env.sshd.user(),
            env.sshd.user_key().display(),
            env.sshd.known_hosts().display()
        ),
    )
    .unwrap();
    let env = env.with("SSH_SESSION_SSH_CONFIG", config.to_str().unwrap());
    let hosts: serde_json::Value = serde_json::from_str(&env.ok(&["hosts", "--json"])).unwrap();
    assert_eq!(hosts[0]["alias"], "kit-alias");
    assert_eq!(hosts[0]["port"], env.sshd.port());
    env.ok(&["connect", "aliased", "kit-alias"]);
    assert_eq!(
        env.ok(&["exec", "aliased", "--", "echo", "via-alias"]),
        "via-alias\n"
    );
}

#[test]
fn bad_inputs_give_clear_errors_and_distinct_codes() {
    let env = Env::new();
    // An invalid name is refused before any daemon is started.
    let out = env.run(&["exec", "no way", "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out).1.contains("invalid session name"),
        "{:?}",
        text(&out)
    );
    assert!(!env.socket.exists());

    env.connect("dup");
    let out = env.run(&["exec", "ghost", "--", "true"]);
    assert_eq!(out.status.code(), Some(65));
    let stderr = text(&out).1;
    assert!(
        stderr.contains("no session named \"ghost\"") && stderr.contains("dup"),
        "{stderr}"
    );

    let port = env.sshd.port().to_string();
    let out = env.run(&["connect", "dup", "127.0.0.1", "-p", &port]);
    assert_eq!(out.status.code(), Some(66));
    assert!(text(&out).1.contains("already exists"), "{:?}", text(&out));

    let closed = ssh_session_testkit::free_port().to_string();
    let out = env.run(&["connect", "nowhere", "127.0.0.1", "-p", &closed]);
    assert_eq!(out.status.code(), Some(68), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("cannot connect to 127.0.0.1"),
        "{:?}",
        text(&out)
    );

    let key = env.sshd.unauthorized_key().display().to_string();
    let out = env.run(&["connect", "badkey", "127.0.0.1", "-p", &port, "-i", &key]);
    assert_eq!(out.status.code(), Some(69), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("authentication failed"),
        "{:?}",
        text(&out)
    );

    let out = env.run(&["send", "dup", r"\q"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out).1.contains("--raw"), "{:?}", text(&out));

    // The daemon is still fine after all that.
    assert_eq!(env.ok(&["exec", "dup", "--", "echo", "ok"]), "ok\n");
    let list: serde_json::Value = serde_json::from_str(&env.ok(&["ls", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    for needle in ["Examples:", "124", "Ctrl-]", "SSH_SESSION_SOCKET", "72"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn a_killed_exec_client_leaves_the_command_running() {
    let env = Env::new();
    env.connect("bg");
    let mut client = std::process::Command::new(common::bin());
    for (k, v) in env.vars() {
        match v {
            Some(v) => client.env(k, v),
            None => client.env_remove(k),
        };
    }
    let mut client = client
        .args(["exec", "bg", "--", "read go; echo done-$go"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = common::wait_until(common::LIMIT, || {
        let s: serde_json::Value =
            serde_json::from_str(&env.ok(&["status", "bg", "--json"])).unwrap();
        !s["running"].is_null()
    });
    assert!(running, "the command never started\n{}", env.log());
    // SAFETY: signalling the child this test spawned.
    unsafe { libc::kill(client.id() as libc::pid_t, libc::SIGINT) };
    client.wait().unwrap();
    env.ok(&["send", "bg", r"late\n"]);
    let out = env.run(&["read", "bg", "--wait", "60s"]);
    assert_eq!(text(&out).0, "done-late\n");
    assert_eq!(out.status.code(), Some(0));
}

/// `exec ... | head -1`: the closed pipe ends the command quietly with 141 (128 +
/// SIGPIPE, as a local producer would), and the session goes on.
#[test]
fn a_closed_stdout_ends_exec_quietly() {
    use std::process::{Command, Stdio};
    let env = Env::new();
    env.connect("pipe");
    let mut exec = Command::new(common::bin());
    for (k, v) in env.vars() {
        match v {
            Some(v) => exec.env(k, v),
            None => exec.env_remove(k),
        };
    }
    // Far more output than the pipe holds: writes go on after `head` has left.
    let mut exec = exec
        .args(["exec", "pipe", "--", "seq", "1", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let head = Command::new("head")
        .arg("-1")
        .stdin(Stdio::from(exec.stdout.take().unwrap()))
        .output()
        .unwrap();
    let out = exec.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout), "1\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(
        stderr.is_empty(),
        "a closed stdout is not worth a message: {stderr}"
    );
    // The command itself was not stopped; once it ends the session serves again.
    env.run(&["read", "pipe", "--wait", "60s"]);
    assert_eq!(env.ok(&["exec", "pipe", "--", "echo", "ok"]), "ok\n");
}

/// The agent is the one of the shell that runs `connect`, not of the shell that started
/// the daemon (which here had none).
#[test]
fn connect_uses_the_clients_ssh_agent() {
    let env = Env::new().with("SSH_SESSION_NO_AGENT", "0");
    let agent_socket = env.dir.path().join("agent.sock");
    /// Kills the agent however the test ends.
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Agent(
        std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&agent_socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run ssh-agent"),
    );
    assert!(common::wait_until(common::LIMIT, || agent_socket.exists()));
    let added = std::process::Command::new("ssh-add")
        .arg(env.sshd.user_key())
        .env("SSH_AUTH_SOCK", &agent_socket)
        .output()
        .unwrap();
    assert!(added.status.success(), "{:?}", text(&added));

    // The daemon starts without an agent in its environment...
    assert_eq!(env.run(&["status", "ghost"]).status.code(), Some(65));
    let port = env.sshd.port().to_string();
    let user = env.sshd.user();
    let connect = |name: &str, agent: Option<&std::path::Path>| {
        let mut cmd = env.cmd();
        if let Some(agent) = agent {
            cmd.env("SSH_AUTH_SOCK", agent);
        }
        // No -i: only the agent holds the authorized key.
        cmd.args(["connect", name, "127.0.0.1", "-p", &port, "-l", &user])
            .output()
            .unwrap()
    };
    // ...so a client without one cannot log in,
    let out = connect("noagent", None);
    assert_eq!(out.status.code(), Some(69), "{:?}", text(&out));
    // and one with an agent logs in with its keys.
    let out = connect("agent", Some(&agent_socket));
    assert!(out.status.success(), "{:?}\n{}", text(&out), env.log());
    assert_eq!(
        env.ok(&["exec", "agent", "--", "echo", "via-agent"]),
        "via-agent\n"
    );
}

/// `connect -- -web HOST` used to open a session that no other command could name: clap
/// reads `exec -web` as options, and `exec -- -web` as the command line. Such names are
/// refused where they are made, before any daemon starts, with what to do instead.
#[test]
fn a_session_name_starting_with_a_dash_is_refused_at_connect() {
    let env = Env::new();
    let port = env.sshd.port().to_string();
    let out = env.run(&["connect", "-p", &port, "--", "-web", "127.0.0.1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("session names cannot start with '-'") && stderr.contains("\"web\""),
        "{stderr}"
    );
    assert!(
        !env.socket.exists(),
        "a refused name must not start a daemon"
    );
    // A dash inside a name is fine, and that session is usable by every command.
    env.connect("web-1");
    assert_eq!(env.ok(&["exec", "web-1", "--", "echo", "ok"]), "ok\n");
}

/// The daemon keeps the same rule for a client that does not check names itself.
#[test]
fn the_daemon_refuses_a_leading_dash_from_any_client() {
    use std::io::{BufRead, BufReader, Write};
    let env = Env::new();
    env.connect("first");
    let mut stream = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    let hello = serde_json::json!({"protocol": 5, "version": env!("CARGO_PKG_VERSION")});
    let connect = serde_json::json!({
        "op": "connect",
        "name": "-web",
        "spec": {"target": "127.0.0.1", "port": env.sshd.port(), "identities": [],
                 "persistent": false, "no_agent": true},
    });
    writeln!(stream, "{hello}\n{connect}").unwrap();
    let mut lines = BufReader::new(stream).lines();
    let their_hello = lines.next().unwrap().unwrap();
    assert!(their_hello.contains("\"hello\""), "{their_hello}");
    let answer: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(answer["kind"], "error", "{answer}");
    assert_eq!(answer["error"], "invalid", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("cannot start with '-'"),
        "{answer}"
    );
}

/// The daemon's log is a file: no colours, and no escape sequence from anything it logs
/// (a user name, a host's reply) reaches it raw, nor an error line on stderr.
#[test]
fn no_escape_sequences_reach_the_log_or_error_lines() {
    let env = Env::new().with("SSH_SESSION_LOG", "debug");
    env.connect("plain");
    env.ok(&["exec", "plain", "--", "printf '\\033[31mred\\033[0m\\n'"]);
    let port = env.sshd.port().to_string();
    let key = env.sshd.user_key().display().to_string();
    let evil = "\x1b[31mevil\x1b]0;title\x07";
    let out = env.run(&[
        "connect",
        "esc",
        "127.0.0.1",
        "-p",
        &port,
        "-l",
        evil,
        "-i",
        &key,
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr:?}");
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\x07'),
        "{stderr:?}"
    );
    assert!(
        stderr.contains("evil"),
        "the name is still shown: {stderr:?}"
    );
    env.ok(&["close", "plain"]);
    let log = std::fs::read_to_string(env.socket.with_extension("log")).unwrap();
    assert!(log.contains("evil"), "the attempt is logged: {log}");
    assert!(!log.contains('\x1b') && !log.contains('\x07'), "{log:?}");
}

/// A key file that is not one (here endless zeros) is refused by the library; the CLI
/// shows that message as a sentence naming the file, with the authentication exit code.
#[test]
fn an_identity_that_is_not_a_key_file_gives_a_clean_error() {
    let env = Env::new();
    let port = env.sshd.port().to_string();
    let user = env.sshd.user();
    let out = env.run(&[
        "connect",
        "zero",
        "127.0.0.1",
        "-p",
        &port,
        "-l",
        &user,
        "-i",
        "/dev/zero",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.starts_with("ssh-session: error: ") && stderr.contains("/dev/zero"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for debug in ["Some(", "Os {", "kind:", "Error {", "\\\""] {
        assert!(!stderr.contains(debug), "{debug:?} in {stderr}");
    }
    // The daemon is fine afterwards.
    env.connect("after");
}

#[test]
fn an_interrupt_recovers_a_shell_that_stopped_reporting() {
    let env = Env::new();
    env.connect("wedge");
    env.ok(&["exec", "wedge", "--", "cd /tmp"]);
    let out = env.run(&[
        "exec",
        "wedge",
        "--timeout",
        "1s",
        "--",
        "unset __ss_a __ss_b",
    ]);
    assert_eq!(out.status.code(), Some(124), "{:?}", text(&out));
    env.ok(&["interrupt", "wedge", "--signal", "KILL"]);
    let out = env.run(&["read", "wedge", "--wait", "60s"]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("stopped reporting"), "{stderr}");
    assert!(stderr.contains("exit code is unknown"), "{stderr}");
    assert_eq!(out.status.code(), Some(125), "unknown outcome");
    // The same shell answers again, with its state.
    let out = env.run(&["exec", "wedge", "--", "pwd"]);
    assert_eq!(text(&out).0, "/tmp\n");
    assert_eq!(out.status.code(), Some(0));
}
