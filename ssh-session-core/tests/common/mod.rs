//! Shared helpers: sessions on the test kit's real sshd (one per test binary).
#![allow(dead_code)]

use std::time::Duration;

use ssh_session_core::{
    ConnectOptions, ExecOptions, ExecResult, IdentityFile, ReadOptions, Session, SessionConfig,
    SessionManager, ShellSession, TransportKind,
};
use ssh_session_testkit::Sshd;

tokio::task_local! {
    /// The backend the current conformance test runs against.
    pub static TRANSPORT: TransportKind;
}

/// Runs each test body once per backend: `mod NAME { fn russh(); fn openssh(); }`.
/// Everything that builds options through [`opts`] inside the body uses that backend.
#[allow(unused_macros)]
macro_rules! conformance {
    ($( $(#[$meta:meta])* async fn $name:ident() $body:block )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread")]
            async fn russh() {
                crate::common::TRANSPORT
                    .scope(ssh_session_core::TransportKind::Russh, async $body)
                    .await
            }

            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread")]
            async fn openssh() {
                crate::common::TRANSPORT
                    .scope(ssh_session_core::TransportKind::OpenSsh, async $body)
                    .await
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use conformance;

/// The backend of the running conformance test (russh outside one).
pub fn transport() -> TransportKind {
    TRANSPORT.try_with(|k| *k).unwrap_or_default()
}

/// Connect options for `sshd` with its authorized ed25519 key, on the current backend,
/// isolated from the user's own ~/.ssh/config.
pub fn opts(sshd: &Sshd) -> ConnectOptions {
    ConnectOptions::new(sshd.host(), sshd.user())
        .port(sshd.port())
        .identity(IdentityFile::new(sshd.user_key()))
        .known_hosts(sshd.known_hosts())
        .use_agent(false)
        .config_file("/dev/null")
        .transport(transport())
}

/// A manager with one open session named `name` on the shared sshd.
pub async fn session(name: &str) -> (SessionManager, ShellSession) {
    let manager = SessionManager::new();
    let s = manager
        .open(name, opts(Sshd::shared()), SessionConfig::default())
        .await
        .expect("open session on the test sshd");
    (manager, s)
}

/// Runs a command that must finish within 20 s.
pub async fn run(s: &ShellSession, command: &str) -> ExecResult {
    let r = s
        .exec(command, ExecOptions::timeout(Duration::from_secs(20)))
        .await
        .unwrap_or_else(|e| panic!("exec {command:?}: {e}"));
    assert!(!r.is_running(), "{command:?} still running: {:?}", r.text());
    r
}

/// Runs a command and returns its output as text.
pub async fn out(s: &ShellSession, command: &str) -> String {
    run(s, command).await.text().into_owned()
}

/// Reads until the running command ends (bounded).
pub async fn finish(s: &ShellSession) -> ExecResult {
    s.read_output(ReadOptions {
        wait: Duration::from_secs(20),
        return_on_output: false,
    })
    .await
    .expect("read_output")
}

/// Polls the screen until it contains `needle` (bounded: 10 s), returning it.
pub async fn screen_with(s: &ShellSession, needle: &str) -> String {
    for _ in 0..200 {
        let screen = s.screen();
        if screen.contains(needle) {
            return screen;
        }
        let _ = s
            .read_output(ReadOptions {
                wait: Duration::from_millis(50),
                return_on_output: true,
            })
            .await;
    }
    panic!("screen never showed {needle:?}:\n{}", s.screen());
}
