//! The real-OpenSSH test server: it starts, accepts exactly its keys, and
//! never outlives its owner or the test process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ssh, text, wait_dead, with_key};
use ssh_session_testkit::{Sshd, SshdOptions};

const LIMIT: Duration = Duration::from_secs(30);

fn run(sshd: &Sshd, args: Vec<String>, command: &str) -> std::process::Output {
    let mut args = args;
    args.push(sshd.host().to_string());
    args.push(command.to_string());
    ssh(&args, b"", LIMIT)
}

#[test]
fn ssh_runs_a_command_through_the_shared_sshd() {
    let sshd = Sshd::shared();
    let out = run(sshd, sshd.ssh_args(), "echo ok");
    assert!(
        out.status.success(),
        "stderr: {}\nlog:\n{}",
        text(&out.stderr),
        sshd.log()
    );
    assert_eq!(text(&out.stdout), "ok\n");
    assert_eq!(sshd.host(), "127.0.0.1");
    assert!(
        std::ptr::eq(sshd, Sshd::shared()),
        "shared() must return one instance"
    );
}

#[test]
fn remote_home_is_the_kit_home_with_an_empty_bashrc() {
    let sshd = Sshd::shared();
    let out = run(
        sshd,
        sshd.ssh_args(),
        "echo $HOME; wc -c < ~/.bashrc; whoami",
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let expected = format!("{}\n0\n{}\n", sshd.home().display(), sshd.user());
    assert_eq!(text(&out.stdout), expected);
}

#[test]
fn rsa_and_ecdsa_keys_are_authorized() {
    let sshd = Sshd::shared();
    for key in [sshd.user_key_rsa(), sshd.user_key_ecdsa()] {
        let out = run(sshd, with_key(sshd.ssh_args(), key), "echo ok");
        assert!(
            out.status.success(),
            "{}: {}",
            key.display(),
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "ok\n");
    }
}

#[test]
fn unauthorized_key_is_refused() {
    let sshd = Sshd::shared();
    let out = run(
        sshd,
        with_key(sshd.ssh_args(), sshd.unauthorized_key()),
        "echo ok",
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn encrypted_key_opens_only_with_its_passphrase() {
    let sshd = Sshd::shared();
    let (key, passphrase) = sshd.encrypted_user_key();
    let public = |pass: &str| {
        Command::new("ssh-keygen")
            .args(["-y", "-P", pass, "-f"])
            .arg(key)
            .output()
            .unwrap()
    };
    let good = public(passphrase);
    assert!(good.status.success(), "{}", text(&good.stderr));
    assert!(text(&good.stdout).starts_with("ssh-ed25519 "));
    assert!(!public("wrong").status.success());
    // And its public half is authorized.
    let authorized = std::fs::read_to_string(sshd.dir().join("authorized_keys")).unwrap();
    let b64 = text(&good.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(authorized.contains(&b64));
}

#[test]
fn known_hosts_files_have_the_right_and_the_wrong_key() {
    let sshd = Sshd::shared();
    let right = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    assert!(right.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", sshd.port())));

    let wrong_file = sshd.wrong_known_hosts();
    let wrong = std::fs::read_to_string(wrong_file).unwrap();
    let lines: Vec<&str> = wrong.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with('#') && lines[1].starts_with('#'));
    assert_ne!(lines[2], right.trim_end());

    let mut args = sshd.ssh_args();
    let i = args
        .iter()
        .position(|a| a.starts_with("UserKnownHostsFile="))
        .unwrap();
    args[i] = format!("UserKnownHostsFile={}", wrong_file.display());
    let out = run(sshd, args, "echo ok");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("IDENTIFICATION HAS CHANGED"), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3", wrong_file.display())),
        "{stderr}"
    );
}

#[test]
fn two_instances_coexist_and_drop_kills_the_process() {
    let a = Sshd::start().unwrap();
    let b = Sshd::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    for s in [&a, &b] {
        let out = run(s, s.ssh_args(), "echo $SSH_CONNECTION");
        assert!(out.status.success(), "{}\n{}", text(&out.stderr), s.log());
        assert!(text(&out.stdout)
            .trim_end()
            .ends_with(&format!("127.0.0.1 {}", s.port())));
    }
    // A session in progress must die with its sshd, not linger as an orphan.
    let mut args = a.ssh_args();
    args.extend([a.host().to_string(), "echo started; sleep 60".to_string()]);
    let mut client = Command::new("ssh")
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(client.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "started\n");

    let (pid, dir) = (a.pid(), a.dir().to_path_buf());
    drop(a);
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "sshd {pid} survived drop"
    );
    assert!(!dir.exists(), "temp dir {} survived drop", dir.display());
    let started = std::time::Instant::now();
    client.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the session outlived sshd"
    );

    let out = run(&b, b.ssh_args(), "echo still");
    assert_eq!(text(&out.stdout), "still\n");
}

#[test]
fn sshd_survives_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG fires when the forking *thread* exits; the kit forks
    // from a thread that lives as long as the process.
    let sshd = std::thread::spawn(|| Sshd::start().unwrap())
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = run(&sshd, sshd.ssh_args(), "echo alive");
    assert_eq!(text(&out.stdout), "alive\n", "{}", sshd.log());
}

#[test]
fn options_set_max_sessions_and_override_defaults() {
    let opts = SshdOptions {
        max_sessions: 7,
        // MaxStartups is one of the kit's defaults; this must replace it.
        extra_config: "MaxStartups 5\nX11Forwarding no".into(),
        ..Default::default()
    };
    let sshd = Sshd::start_with(opts).unwrap();
    let config = std::fs::read_to_string(sshd.dir().join("sshd_config")).unwrap();
    assert!(config.contains("MaxSessions 7\n"));
    assert_eq!(config.matches("MaxStartups").count(), 1, "{config}");
    let out = Command::new("/usr/sbin/sshd")
        .args(["-T", "-C", "user=root,host=localhost,addr=127.0.0.1", "-f"])
        .arg(sshd.dir().join("sshd_config"))
        .output()
        .unwrap();
    let effective = text(&out.stdout);
    assert!(effective.contains("maxsessions 7"), "{effective}");
    assert!(effective.contains("maxstartups 5:"), "{effective}");
}

#[test]
fn invalid_config_is_reported_with_sshds_explanation() {
    let opts = SshdOptions {
        extra_config: "NoSuchKeyword yes".into(),
        ..Default::default()
    };
    let err = Sshd::start_with(opts).unwrap_err().to_string();
    assert!(err.contains("NoSuchKeyword"), "{err}");
}

#[test]
fn custom_home_is_used() {
    let home = tempfile::tempdir().unwrap();
    let opts = SshdOptions {
        home: Some(home.path().join("h")),
        ..Default::default()
    };
    let sshd = Sshd::start_with(opts).unwrap();
    assert_eq!(sshd.home(), home.path().join("h"));
    let out = run(&sshd, sshd.ssh_args(), "echo $HOME");
    assert_eq!(
        text(&out.stdout).trim_end(),
        home.path().join("h").display().to_string()
    );
}

fn run_child(mode: &str) -> (u32, std::path::PathBuf) {
    let out = Command::new(env!("CARGO_BIN_EXE_shared-sshd-child"))
        .arg(mode)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("PID "))
        .unwrap_or_else(|| panic!("no PID line: {stdout} {}", text(&out.stderr)));
    let mut words = line.split_whitespace();
    let pid = words.nth(1).unwrap().parse().unwrap();
    let dir = words.nth(1).unwrap().into();
    (pid, dir)
}

#[test]
fn shared_sshd_is_cleaned_up_when_the_test_binary_exits() {
    let (pid, dir) = run_child("exit");
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "shared sshd {pid} outlived its process"
    );
    assert!(!dir.exists(), "{} was not removed at exit", dir.display());
}

#[test]
fn shared_sshd_dies_when_the_test_process_is_killed() {
    let (pid, dir) = run_child("abort");
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "shared sshd {pid} outlived an aborted process"
    );
    // No atexit on abort: the directory is left behind; tidy up.
    let _ = std::fs::remove_dir_all(dir);
}
