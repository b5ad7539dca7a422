//! Authentication through a real ssh-agent, and the password callback's wiring.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ssh_session_core::{ConnectOptions, Error, SessionConfig, SessionManager};
use ssh_session_testkit::prelude::*;

/// An ssh-agent holding the kit's authorized key, killed on drop.
struct Agent {
    pid: String,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(key: &std::path::Path) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let out = Command::new("ssh-agent")
            .arg("-a")
            .arg(&socket)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let pid = text
            .split("SSH_AGENT_PID=")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .unwrap_or_else(|| panic!("ssh-agent output: {text}"))
            .to_string();
        let added = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .unwrap();
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        Agent {
            pid,
            socket,
            _dir: dir,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_from_the_ssh_agent_are_used() {
    let sshd = Sshd::shared();
    let agent = Agent::start(sshd.user_key());
    let options = ConnectOptions::new(sshd.host(), sshd.user())
        .port(sshd.port())
        .known_hosts(sshd.known_hosts())
        .agent_socket(&agent.socket)
        .identity(ssh_session_core::IdentityFile::new(sshd.unauthorized_key()));
    let m = SessionManager::new();
    let s = m
        .open("via-agent", options, SessionConfig::default())
        .await
        .unwrap();
    assert_eq!(out(&s, "echo agent-ok").await, "agent-ok\n");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_callback_is_asked_once_keys_fail() {
    let sshd = Sshd::shared();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let mut options = sshd.connect_options(backend()).password_callback(Arc::new(
        move |user: &str, host: &str| {
            assert_eq!(host, "127.0.0.1");
            assert!(!user.is_empty());
            counter.fetch_add(1, Ordering::SeqCst);
            Some("not-the-password".to_string())
        },
    ));
    options.identities = vec![ssh_session_core::IdentityFile::new(sshd.unauthorized_key())];
    let m = SessionManager::new();
    let e = m
        .open("pw", options, SessionConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AuthFailed { .. }), "{e}");
    assert!(e.to_string().contains("password"), "{e}");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}
