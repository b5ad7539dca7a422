//! The embedded russh server, driven by the OpenSSH client and by a russh
//! client (which can send terminal modes, window changes and signals).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ssh, text, wait_dead};
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Pty, Sig};
use ssh_session_testkit::EmbeddedServer;

const LIMIT: Duration = Duration::from_secs(20);

fn ssh_args(s: &EmbeddedServer) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-p",
        &s.port().to_string(),
        "-i",
        &s.user_key().display().to_string(),
        "-o",
        &format!("UserKnownHostsFile={}", s.known_hosts().display()),
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        &format!("User={}", s.user()),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// Runs the OpenSSH client off the runtime's worker threads, which the
/// embedded server needs.
async fn run_ssh(args: Vec<String>, stdin: &[u8]) -> std::process::Output {
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || ssh(&args, &stdin, LIMIT))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_runs_a_command_in_a_pty() {
    let server = EmbeddedServer::start().await.unwrap();
    let mut args = ssh_args(&server);
    args.extend(["-tt".into(), server.host().into(), "echo hi; exit".into()]);
    let out = run_ssh(args, b"").await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_drives_an_interactive_shell() {
    let server = EmbeddedServer::start().await.unwrap();
    let mut args = ssh_args(&server);
    args.extend(["-tt".into(), server.host().into()]);
    let out = run_ssh(args, b"echo hi_$((20+1)); exit\n").await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hi_21"), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_exec_without_pty() {
    let server = EmbeddedServer::start().await.unwrap();
    let mut args = ssh_args(&server);
    args.extend([server.host().into(), "echo $((1+2))".into()]);
    let out = run_ssh(args.clone(), b"").await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "3\n");

    // Exit codes, stderr as extended data, the kit's HOME.
    let last = args.len() - 1;
    args[last] = "echo to-err >&2; echo $HOME; exit 7".into();
    let out = run_ssh(args.clone(), b"").await;
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stderr), "to-err\n");
    assert_eq!(text(&out.stdout), format!("{}\n", server.home().display()));

    // Client EOF closes the command's stdin.
    args[last] = "cat; echo end".into();
    let out = run_ssh(args, b"hello\n").await;
    assert_eq!(text(&out.stdout), "hello\nend\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_keys_are_refused() {
    let server = EmbeddedServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("stranger");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let mut args = common::with_key(ssh_args(&server), &key);
    args.extend([server.host().into(), "echo no".into()]);
    let out = run_ssh(args, b"").await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
}

struct TrustingClient;

impl client::Handler for TrustingClient {
    type Error = russh::Error;
    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn connect(server: &EmbeddedServer) -> client::Handle<TrustingClient> {
    let config = Arc::new(client::Config {
        nodelay: true,
        ..Default::default()
    });
    let mut handle = client::connect(config, (server.host(), server.port()), TrustingClient)
        .await
        .unwrap();
    let key = russh::keys::load_secret_key(server.user_key(), None).unwrap();
    let auth = handle
        .authenticate_publickey(
            server.user(),
            PrivateKeyWithHashAlg::new(Arc::new(key), None),
        )
        .await
        .unwrap();
    assert!(auth.success());
    handle
}

/// A PTY shell with echo off, as this project's clients request it.
async fn shell(handle: &client::Handle<TrustingClient>) -> russh::Channel<client::Msg> {
    let ch = handle.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[(Pty::ECHO, 0)])
        .await
        .unwrap();
    ch.request_shell(true).await.unwrap();
    ch
}

/// Collects channel output until it contains `pattern`.
async fn read_until(ch: &mut russh::Channel<client::Msg>, pattern: &str) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + LIMIT;
    while !seen.contains(pattern) {
        let msg = tokio::time::timeout_at(deadline.into(), ch.wait()).await;
        match msg {
            Ok(Some(ChannelMsg::Data { data })) => seen += &String::from_utf8_lossy(&data),
            Ok(Some(_)) => {}
            Ok(None) => panic!("channel closed before {pattern:?}; got {seen:?}"),
            Err(_) => panic!("no {pattern:?} within {LIMIT:?}; got {seen:?}"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_honours_echo_off_window_change_and_ctrl_c() {
    let server = EmbeddedServer::start().await.unwrap();
    let handle = connect(&server).await;
    let mut ch = shell(&handle).await;

    ch.data(&b"printf '%s_%s\\n' MARK 1; stty size; echo TERM=$TERM\n"[..])
        .await
        .unwrap();
    let out = read_until(&mut ch, "TERM=xterm").await;
    assert!(out.contains("MARK_1"), "{out:?}");
    assert!(!out.contains("printf"), "echo is on: {out:?}");
    assert!(out.contains("24 80"), "{out:?}");

    ch.window_change(100, 30, 0, 0).await.unwrap();
    ch.data(&b"stty size\n"[..]).await.unwrap();
    read_until(&mut ch, "30 100").await;

    // ^C reaches the foreground job through the controlling terminal.
    let started = Instant::now();
    ch.data(&b"sleep 30\n"[..]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ch.data(&b"\x03"[..]).await.unwrap();
    ch.data(&b"echo after_$((1+1))\n"[..]).await.unwrap();
    read_until(&mut ch, "after_2").await;
    assert!(started.elapsed() < Duration::from_secs(10));

    ch.data(&b"exit 3\n"[..]).await.unwrap();
    let mut status = None;
    let mut closed = false;
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => closed = true,
            _ => {}
        }
    }
    assert_eq!(status, Some(3));
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_request_reaches_the_command() {
    let server = EmbeddedServer::start().await.unwrap();
    let handle = connect(&server).await;
    let mut ch = handle.channel_open_session().await.unwrap();
    ch.exec(true, "sleep 30; echo not-reached").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    ch.signal(Sig::TERM).await.unwrap();
    let mut signal = None;
    let deadline = Instant::now() + LIMIT;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline.into(), ch.wait()).await {
        match msg {
            ChannelMsg::ExitSignal { signal_name, .. } => signal = Some(signal_name),
            ChannelMsg::Data { data } => panic!("unexpected output {data:?}"),
            _ => {}
        }
    }
    assert!(matches!(signal, Some(Sig::TERM)), "{signal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_are_fast() {
    // Nagle's algorithm would show up as ~40 ms per round trip.
    let server = EmbeddedServer::start().await.unwrap();
    let handle = connect(&server).await;
    let mut ch = shell(&handle).await;
    ch.data(&b"PS1=; echo ready\n"[..]).await.unwrap();
    read_until(&mut ch, "ready").await;
    let n = 50;
    let started = Instant::now();
    for i in 0..n {
        ch.data(format!("echo r_{i}\n").as_bytes()).await.unwrap();
        read_until(&mut ch, &format!("r_{i}\r\n")).await;
    }
    let each = started.elapsed() / n;
    eprintln!("embedded server PTY round trip: {each:?}");
    assert!(each < Duration::from_millis(20), "{each:?} per round trip");
}

/// Starts `sleep` through the server and returns its pid and the channel.
async fn start_sleeper(
    handle: &client::Handle<TrustingClient>,
) -> (u32, russh::Channel<client::Msg>) {
    let mut ch = handle.channel_open_session().await.unwrap();
    ch.exec(true, "echo pid=$$; exec sleep 100").await.unwrap();
    let out = read_until(&mut ch, "\n").await;
    let pid = out.trim().trim_start_matches("pid=").parse().unwrap();
    (pid, ch)
}

async fn assert_ends(ch: &mut russh::Channel<client::Msg>) {
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while ch.wait().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the client was not disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_disconnects_clients_and_kills_children() {
    let server = EmbeddedServer::start().await.unwrap();
    let handle = connect(&server).await;
    let (pid, mut ch) = start_sleeper(&handle).await;
    let port = server.port();
    server.shutdown().await;
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "child {pid} survived shutdown"
    );
    assert_ends(&mut ch).await;
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_kills_children_and_disconnects_clients() {
    let server = EmbeddedServer::start().await.unwrap();
    let handle = connect(&server).await;
    let (pid, mut ch) = start_sleeper(&handle).await;
    let dir = server.dir().to_path_buf();
    drop(server);
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "child {pid} survived drop"
    );
    assert_ends(&mut ch).await;
    assert!(!dir.exists());
}
