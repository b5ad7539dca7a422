//! The OpenSSH backend on a real sshd: exec, PTY shells, resize, tunnels, cleanup, the
//! failures it must classify, and a whole `ShellSession` over it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh_session_core::transport::openssh::OpenSshTransport;
use ssh_session_core::transport::{
    run, Channel, ChannelEvent, PtyRequest, ShellRequest, Transport, TransportKind,
};
use ssh_session_core::{
    ConnectOptions, Endpoint, Error, ExecOptions, HostKeyPolicy, IdentityFile, Interrupt, JumpHost,
    Notice, ReadOptions, Session, SessionConfig, ShellSession,
};
use ssh_session_testkit::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Options for `sshd` on this file's backend.
fn opts(sshd: &Sshd) -> ConnectOptions {
    sshd.connect_options(TransportKind::OpenSsh)
}

async fn connect(opts: &ConnectOptions) -> OpenSshTransport {
    OpenSshTransport::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\nsshd log:\n{}", Sshd::shared().log()))
}

/// Reads the channel until it printed `needle` (10 s at most); returns all of it, `\r`s
/// removed.
async fn read_text(channel: &mut Channel, needle: &str) -> String {
    let mut seen = Vec::new();
    read_until(&mut channel.events, &mut seen, needle.as_bytes()).await;
    String::from_utf8_lossy(&seen).replace('\r', "")
}

/// Pids of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

#[tokio::test]
async fn exec_collects_stdout_stderr_and_exit_codes() {
    let t = connect(&opts(Sshd::shared())).await;
    assert_eq!(t.kind(), TransportKind::OpenSsh);
    assert!(!t.is_closed());
    let out = run(&t, "echo hi").await.unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.exit_status),
        (&b"hi\n"[..], Some(0))
    );
    let out = run(&t, "echo out; echo err >&2; exit 3").await.unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_status, Some(3));
    // The openssh crate reports 127 as an error; the channel must still say 127.
    let out = run(&t, "exit 127").await.unwrap();
    assert_eq!(out.exit_status, Some(127));
    // stdin reaches the command, and EOF ends it.
    let mut ch = t.open_exec("tr a-z A-Z", None).await.unwrap();
    ch.input.write(b"shout\n").await.unwrap();
    ch.input.eof().await.unwrap();
    assert_eq!(read_text(&mut ch, "SHOUT").await, "SHOUT\n");
    t.close().await;
    assert!(t.is_closed());
    assert!(
        run(&t, "true").await.is_err(),
        "closed transports refuse channels"
    );
}

#[tokio::test]
async fn pty_shell_has_term_size_and_no_echo_and_resizes() {
    let t = connect(&opts(Sshd::shared())).await;
    let pty = PtyRequest {
        term: "vt100".into(),
        cols: 123,
        rows: 45,
        echo: false,
    };
    let mut ch = t
        .open_shell(ShellRequest {
            pty: Some(pty.clone()),
            command: None,
        })
        .await
        .unwrap();
    ch.input
        .write(b"echo $TERM; stty size; tty; echo __DO''NE\n")
        .await
        .unwrap();
    let text = read_text(&mut ch, "__DONE").await;
    assert!(text.contains("vt100\n"), "{text:?}");
    assert!(text.contains("45 123\n"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(
        !text.contains("echo $TERM"),
        "the typed line was echoed: {text:?}"
    );
    assert!(
        !text.contains("ssh-session-tty"),
        "prelude leaked: {text:?}"
    );

    ch.input.resize(100, 30).await.unwrap();
    ch.input
        .write(b"stty size; echo __RE''SIZED\n")
        .await
        .unwrap();
    let text = read_text(&mut ch, "__RESIZED").await;
    assert!(text.contains("30 100\n"), "{text:?}");

    // Ctrl-C reaches the foreground job through the terminal (isig is on).
    // (Separate lines: interactive bash abandons the rest of a list after a Ctrl-C.)
    ch.input.write(b"sleep 30\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ch.input.write(b"\x03").await.unwrap();
    ch.input.write(b"echo status=$?\n").await.unwrap();
    let text = read_text(&mut ch, "status=130").await;
    assert!(text.contains("status=130"), "{text:?}");

    ch.input.write(b"exit 4\n").await.unwrap();
    let mut status = None;
    while let Some(event) = ch.events.recv().await {
        if let ChannelEvent::ExitStatus(s) = event {
            status = Some(s);
        }
    }
    assert_eq!(status, Some(4));
    t.close().await;
}

#[tokio::test]
async fn pty_exec_runs_a_command_and_plain_shells_work() {
    let t = connect(&opts(Sshd::shared())).await;
    let mut ch = t
        .open_exec("stty size; exit 5", Some(PtyRequest::default()))
        .await
        .unwrap();
    let text = read_text(&mut ch, "\n").await;
    assert_eq!(text, "50 200\n");
    let mut status = None;
    while let Some(event) = ch.events.recv().await {
        if let ChannelEvent::ExitStatus(s) = event {
            status = Some(s);
        }
    }
    assert_eq!(status, Some(5));

    // No PTY: plain pipes, separate stderr, and resize is refused clearly.
    let mut ch = t.open_shell(ShellRequest::default()).await.unwrap();
    ch.input.write(b"echo plain; tty; exit\n").await.unwrap();
    let text = read_text(&mut ch, "not a tty").await;
    assert!(text.starts_with("plain\n"), "{text:?}");
    let err = ch.input.resize(80, 24).await.unwrap_err();
    assert!(err.to_string().contains("no PTY"), "{err}");
    t.close().await;
}

#[tokio::test]
async fn direct_tcpip_reaches_the_server_banner() {
    let sshd = Sshd::shared();
    let t = connect(&opts(sshd)).await;
    let mut tunnel = t.open_direct_tcpip("127.0.0.1", sshd.port()).await.unwrap();
    let mut banner = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(10), tunnel.read_exact(&mut banner))
        .await
        .expect("banner within 10 s")
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    tunnel.write_all(b"SSH-2.0-test\r\n").await.unwrap();
    drop(tunnel);

    // A refused target reads as an error that says so, not as a silent EOF.
    let closed = ssh_session_testkit::free_port();
    let mut tunnel = t.open_direct_tcpip("127.0.0.1", closed).await.unwrap();
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(10), tunnel.read(&mut buf))
        .await
        .expect("an answer within 10 s");
    match read {
        Err(e) => assert!(e.to_string().contains("could not open a tunnel"), "{e}"),
        Ok(n) => assert_eq!(n, 0, "a refused tunnel must not deliver data"),
    }
    t.close().await;
}

#[tokio::test]
async fn close_leaves_no_ssh_process_behind() {
    let t = connect(&opts(Sshd::shared())).await;
    let ctl = t.control_path().to_path_buf();
    assert!(
        !processes_mentioning(&ctl).is_empty(),
        "the master runs with -S {}",
        ctl.display()
    );
    let mut shell = t
        .open_shell(ShellRequest {
            pty: Some(PtyRequest::default()),
            command: None,
        })
        .await
        .unwrap();
    shell.input.write(b"echo up\n").await.unwrap();
    read_text(&mut shell, "up").await;
    let _exec = t.open_exec("sleep 30", None).await.unwrap();
    let _tunnel = t
        .open_direct_tcpip("127.0.0.1", Sshd::shared().port())
        .await
        .unwrap();
    // Right after exec, /proc/PID/cmdline can read empty for a moment: poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes_mentioning(&ctl).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Shells and exec channels need no local process: only the master and `ssh -W`.
    assert_eq!(
        processes_mentioning(&ctl).len(),
        2,
        "the master and the -W client"
    );
    t.close().await;
    assert!(t.is_closed());
    assert_eq!(processes_mentioning(&ctl), Vec::<u32>::new());
    assert!(!ctl.exists(), "the control socket is removed");
    // The shell channel ends.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while shell.events.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the shell channel ended with the transport");
}

#[tokio::test]
async fn a_dead_master_is_noticed_at_once() {
    let t = connect(&opts(Sshd::shared())).await;
    let mut shell = t
        .open_shell(ShellRequest {
            pty: Some(PtyRequest::default()),
            command: None,
        })
        .await
        .unwrap();
    let master = processes_mentioning(t.control_path());
    assert_eq!(master.len(), 1, "only the master runs");
    // SAFETY: kill(2) on a process this test just found.
    unsafe { libc::kill(master[0] as libc::pid_t, libc::SIGKILL) };
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while shell.events.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the shell channel ends with the master");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !t.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(t.is_closed());
    let e = run(&t, "true").await.unwrap_err();
    assert!(e.to_string().contains("connection is closed"), "{e}");
    t.close().await;
}

#[tokio::test]
async fn dropping_the_transport_stops_the_master() {
    let t = connect(&opts(Sshd::shared())).await;
    let ctl = t.control_path().to_path_buf();
    drop(t);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&ctl).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(processes_mentioning(&ctl), Vec::<u32>::new());
}

#[tokio::test]
async fn config_aliases_are_resolved_by_openssh() {
    let sshd = Sshd::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "Host test-alias\n  HostName 127.0.0.1\n  Port {}\n  User {}\n",
            sshd.port(),
            sshd.user()
        ),
    )
    .unwrap();
    let mut o = opts(sshd).config_file(&config);
    o.host = "test-alias".into();
    let t = connect(&o).await;
    assert_eq!(
        run(&t, "echo via-alias").await.unwrap().stdout,
        b"via-alias\n"
    );
    t.close().await;
}

#[tokio::test]
async fn jump_hosts_get_the_same_credentials() {
    // Jump through the sshd to itself (as "localhost": OpenSSH refuses a hop equal to
    // the target). The hop's `ssh` (started by `-J`) must get the key and known_hosts from
    // the options, which only reach it through the generated config file.
    let sshd = Sshd::shared();
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    let entry = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    let pattern = format!("[127.0.0.1]:{}", sshd.port());
    let both = format!("{pattern},[localhost]:{}", sshd.port());
    std::fs::write(&known, entry.replace(&pattern, &both)).unwrap();
    let hop = JumpHost {
        host: "localhost".into(),
        port: Some(sshd.port()),
        user: Some(sshd.user()),
    };
    let o = opts(sshd).known_hosts(&known).proxy_jump(vec![hop]);
    let t = connect(&o).await;
    let out = run(&t, "echo $SSH_CONNECTION").await.unwrap();
    assert_eq!(out.exit_status, Some(0));
    assert!(!out.stdout.is_empty());
    t.close().await;
}

#[tokio::test]
async fn accept_new_records_an_unknown_host() {
    let sshd = Sshd::shared();
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, "").unwrap();
    let o = opts(sshd)
        .known_hosts(&known)
        .host_key_policy(HostKeyPolicy::AcceptNew);
    let t = connect(&o).await;
    t.close().await;
    let recorded = std::fs::read_to_string(&known).unwrap();
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", sshd.port())),
        "{recorded}"
    );
}

async fn failure(o: &ConnectOptions) -> Error {
    let started = Instant::now();
    let err = OpenSshTransport::connect(o)
        .await
        .expect_err("this connection must fail");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "failures are fast"
    );
    err
}

#[tokio::test]
async fn failures_are_classified() {
    let sshd = Sshd::shared();

    let mut o = opts(sshd);
    o.identities = vec![IdentityFile::new(sshd.unauthorized_key())];
    let e = failure(&o).await;
    match &e {
        Error::AuthFailed { tried, .. } => {
            assert!(
                tried.contains(&sshd.unauthorized_key().display().to_string()),
                "{e}"
            );
            assert!(tried.contains("Permission denied"), "ssh's words: {e}");
        }
        other => panic!("expected AuthFailed, got {other}"),
    }

    let e = failure(&opts(sshd).known_hosts(sshd.wrong_known_hosts())).await;
    match &e {
        Error::HostKeyChanged {
            file,
            line,
            fingerprint,
            ..
        } => {
            assert_eq!(file, sshd.wrong_known_hosts());
            assert_eq!(*line, 3);
            assert!(fingerprint.starts_with("SHA256:"), "{e}");
        }
        other => panic!("expected HostKeyChanged, got {other}"),
    }

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let e = failure(&opts(sshd).known_hosts(&empty)).await;
    match &e {
        Error::UnknownHostKey { file, .. } => assert_eq!(file, &empty),
        other => panic!("expected UnknownHostKey, got {other}"),
    }

    let closed = ssh_session_testkit::free_port();
    let e = failure(&opts(sshd).port(closed)).await;
    match &e {
        Error::Connect { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused, "{e}")
        }
        other => panic!("expected Connect, got {other}"),
    }

    let mut o = opts(sshd);
    o.ssh_program = "/nonexistent/ssh".into();
    let e = failure(&o).await;
    assert!(matches!(e, Error::SshProgram { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/ssh"), "{e}");

    let mut o = opts(sshd);
    o.extra_ssh_args = vec!["-o".into(), "NoSuchOption=1".into()];
    let e = failure(&o).await;
    assert!(matches!(e, Error::Config { .. }), "{e}");
}

async fn shell_session(name: &str, transport: Arc<dyn Transport>) -> ShellSession {
    let sshd = Sshd::shared();
    ssh_session_core::SessionManager::new()
        .open_with_transport(
            name,
            Endpoint::new(sshd.host(), sshd.user(), sshd.port()),
            transport,
            SessionConfig::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("start session: {e}"))
}

async fn exec(s: &ShellSession, command: &str) -> (String, Option<i32>) {
    let r = s
        .exec(command, ExecOptions::timeout(Duration::from_secs(20)))
        .await
        .unwrap_or_else(|e| panic!("exec {command:?}: {e}"));
    assert!(!r.is_running(), "{command:?} still running");
    (r.text().into_owned(), r.exit_code)
}

#[tokio::test]
async fn a_shell_session_works_over_openssh() {
    let t = connect(&opts(Sshd::shared())).await;
    let s = shell_session("over-openssh", Arc::new(t)).await;
    assert_eq!(s.info().transport, TransportKind::OpenSsh);
    assert_eq!(
        exec(&s, "cd /tmp; export A=1").await,
        (String::new(), Some(0))
    );
    assert_eq!(
        exec(&s, "pwd; echo $A").await,
        ("/tmp\n1\n".into(), Some(0))
    );
    assert_eq!(exec(&s, "false").await.1, Some(1));
    assert_eq!(exec(&s, "(exit 42)").await.1, Some(42));
    assert_eq!(exec(&s, "printf abc").await, ("abc".into(), Some(0)));

    let r = s
        .exec("sleep 30", ExecOptions::timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(r.is_running());
    let started = Instant::now();
    s.interrupt(Interrupt::Int).await.unwrap();
    let r = s
        .read_output(ReadOptions {
            wait: Duration::from_secs(10),
            return_on_output: false,
        })
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(130));
    assert!(started.elapsed() < Duration::from_secs(5));
    // TERM goes through an exec channel (the session signals the job's process group).
    let r = s
        .exec("sleep 30", ExecOptions::timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(r.is_running());
    s.interrupt(Interrupt::Term).await.unwrap();
    let r = s
        .read_output(ReadOptions {
            wait: Duration::from_secs(10),
            return_on_output: false,
        })
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(143));
    assert_eq!(
        exec(&s, "echo $A; pwd").await.0,
        "1\n/tmp\n",
        "state survives"
    );

    s.resize(90, 20).await.unwrap();
    assert_eq!(exec(&s, "stty size").await.0, "20 90\n");
    s.close().await.unwrap();
}

/// An sshd whose `ForceCommand` plays the account's login shell (see tests/shells.rs).
fn sshd_with_login_shell(shell: &str) -> (Sshd, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("login-shell");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -n \"$SSH_ORIGINAL_COMMAND\" ]; then exec {shell} -c \"$SSH_ORIGINAL_COMMAND\"; fi\nexec {shell} -l\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: format!("ForceCommand {}\n", wrapper.display()),
        ..Default::default()
    })
    .unwrap();
    (sshd, dir)
}

#[tokio::test]
async fn shells_are_real_shell_requests() {
    // A shell request runs the login shell itself (not bash from $SHELL), so dash is used
    // natively and fish is detected and replaced by a POSIX shell. (zsh is left to
    // tests/shells.rs: its prime can lose type-ahead on any backend, see the report.)
    for (shell, check, expect_fallback) in [
        ("/bin/dash", "echo ${BASH_VERSION:-none}", false),
        ("/usr/bin/fish", "echo ${BASH_VERSION:+bash}", true),
    ] {
        assert!(
            Path::new(shell).exists(),
            "{shell} is missing: run `bash .ci/run`"
        );
        let (sshd, _dir) = sshd_with_login_shell(shell);
        let t = connect(&opts(&sshd)).await;
        let s = ssh_session_core::SessionManager::new()
            .open_with_transport(
                "login-shell",
                Endpoint::new(sshd.host(), sshd.user(), sshd.port()),
                Arc::new(t),
                SessionConfig::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{shell}: {e}"));
        let r = s
            .exec(check, ExecOptions::timeout(Duration::from_secs(20)))
            .await
            .unwrap();
        let fell_back = r.notices.contains(&Notice::PosixFallback);
        assert_eq!(fell_back, expect_fallback, "{shell}: {:?}", r.notices);
        let expected = if expect_fallback { "bash\n" } else { "none\n" };
        assert_eq!(r.text(), expected, "{shell}");
        assert_eq!(exec(&s, "printf abc").await, ("abc".into(), Some(0)));
        s.close().await.unwrap();
    }
}
