//! What every session test needs, written once: connect options for the kit's sshd on
//! either backend, the macro that runs a test once per backend, and small helpers that
//! run a command or read a channel with a bound, so no test can hang.
//!
//! ```no_run
//! use ssh_session_testkit::prelude::*;
//!
//! conformance! {
//!     async fn cwd_persists() {
//!         let (m, s) = session("doc").await;
//!         run(&s, "cd /tmp").await;
//!         assert_eq!(out(&s, "pwd").await, "/tmp\n");
//!         m.shutdown().await;
//!     }
//! }
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use ssh_session_core::transport::{ChannelEvent, EventSource};
use ssh_session_core::{
    ConnectOptions, ExecOptions, ExecResult, IdentityFile, ReadOptions, Session, SessionConfig,
    SessionManager, ShellSession,
};

use crate::{FaultProxy, Sshd};

tokio::task_local! {
    /// The backend the current [`conformance!`](crate::conformance) test runs against.
    pub static BACKEND: TransportKind;
}

/// The backend of the running [`conformance!`](crate::conformance) test (russh outside
/// one).
pub fn backend() -> TransportKind {
    BACKEND.try_with(|k| *k).unwrap_or_default()
}

/// Runs each test body once per backend: `async fn NAME() { .. }` becomes a module `NAME`
/// with the tests `russh` and `openssh`. Inside the body, [`backend`] (and so
/// [`Sshd::connect_options`] with it) names the backend under test.
#[macro_export]
macro_rules! conformance {
    ($( $(#[$meta:meta])* async fn $name:ident() $body:block )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread")]
            async fn russh() {
                $crate::harness::BACKEND
                    .scope($crate::harness::TransportKind::Russh, async $body)
                    .await
            }

            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread")]
            async fn openssh() {
                $crate::harness::BACKEND
                    .scope($crate::harness::TransportKind::OpenSsh, async $body)
                    .await
            }
        }
    )*};
}

pub use ssh_session_core::TransportKind;

impl Sshd {
    /// Options for this server with its authorized ed25519 key on `kind`, isolated from
    /// the user's own `~/.ssh/config` and agent.
    pub fn connect_options(&self, kind: TransportKind) -> ConnectOptions {
        ConnectOptions::new(self.host(), self.user())
            .port(self.port())
            .identity(IdentityFile::new(self.user_key()))
            .known_hosts(self.known_hosts())
            .use_agent(false)
            .config_file("/dev/null")
            .transport(kind)
    }

    /// [`connect_options`](Self::connect_options) through `proxy` (which forwards to this
    /// server): its port, and a known_hosts file for it written into `dir`.
    pub fn connect_options_via(
        &self,
        proxy: &FaultProxy,
        dir: &Path,
        kind: TransportKind,
    ) -> ConnectOptions {
        let known = self
            .known_hosts_for_port(proxy.port(), dir)
            .expect("write a known_hosts file for the proxy");
        self.connect_options(kind)
            .port(proxy.port())
            .known_hosts(known)
    }
}

/// An sshd whose users get `shell` (an absolute path) as their login shell: a
/// `ForceCommand` wrapper runs it exactly where sshd would run the login shell, with the
/// client's exec command handed to `shell -c` as a login shell would. Keep the directory
/// (it holds the wrapper) as long as the server.
pub fn sshd_with_login_shell(shell: &str) -> (Sshd, tempfile::TempDir) {
    assert!(
        Path::new(shell).exists(),
        "{shell} is missing: run `bash .ci/run` (it installs the test dependencies)"
    );
    let dir = tempfile::tempdir().expect("a temp dir for the login-shell wrapper");
    let wrapper = dir.path().join("login-shell");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -n \"$SSH_ORIGINAL_COMMAND\" ]; then exec {shell} -c \"$SSH_ORIGINAL_COMMAND\"; fi\nexec {shell} -l\n"
        ),
    )
    .expect("write the login-shell wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("make the wrapper executable");
    let sshd = Sshd::start_with(crate::SshdOptions {
        extra_config: format!("ForceCommand {}\n", wrapper.display()),
        ..Default::default()
    })
    .expect("start an sshd");
    (sshd, dir)
}

/// Connect options (on the current [`backend`]) for a server whose login shell is `shell`:
/// the shared server for `"bash"` (its own), else a [`sshd_with_login_shell`] one, returned
/// too so that the caller keeps it as long as the session.
pub fn login_shell_server(shell: &str) -> (Option<(Sshd, tempfile::TempDir)>, ConnectOptions) {
    let own = (shell != "bash").then(|| sshd_with_login_shell(shell));
    let options = match &own {
        Some((sshd, _)) => sshd.connect_options(backend()),
        None => Sshd::shared().connect_options(backend()),
    };
    (own, options)
}

impl Sshd {
    /// The address it listens on, e.g. for a [`FaultProxy`] in front of it.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port()))
    }
}

/// An sshd whose logins get a tmux server of their own (`TMUX_TMPDIR` in a temp dir),
/// killed when this is dropped, pass or fail: tmux servers outlive the sshd that started
/// them, and persistent-session tests must not share one.
#[derive(Debug)]
pub struct IsolatedTmux {
    /// The server; sessions on it keep their tmux in [`dir`](Self::dir).
    pub sshd: Sshd,
    tmpdir: tempfile::TempDir,
}

impl IsolatedTmux {
    /// Starts the sshd (panics with sshd's own error if it cannot).
    pub fn start() -> IsolatedTmux {
        let tmpdir = tempfile::tempdir().expect("a temp dir for tmux");
        let sshd = Sshd::start_with(crate::SshdOptions {
            extra_config: format!("SetEnv TMUX_TMPDIR={}\n", tmpdir.path().display()),
            ..Default::default()
        })
        .expect("start sshd");
        IsolatedTmux { sshd, tmpdir }
    }

    /// The directory its tmux server lives in (also a scratch directory the remote
    /// shells can write to).
    pub fn dir(&self) -> &Path {
        self.tmpdir.path()
    }
}

impl Drop for IsolatedTmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", "ssh-session", "kill-server"])
            .env("TMUX_TMPDIR", self.tmpdir.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A manager with one open session named `name` on the shared sshd, on the current
/// [`backend`].
pub async fn session(name: &str) -> (SessionManager, ShellSession) {
    let manager = SessionManager::new();
    let s = manager
        .open(
            name,
            Sshd::shared().connect_options(backend()),
            SessionConfig::default(),
        )
        .await
        .expect("open a session on the test sshd");
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

/// Runs a command (within 20 s) and returns its output as text.
pub async fn out(s: &ShellSession, command: &str) -> String {
    run(s, command).await.text().into_owned()
}

/// Reads until the running command ends (bounded: 20 s).
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

/// Reads a channel's output (stdout, and stderr on a channel without a PTY) into `buf`
/// until it holds `needle` (10 s at most); panics with what arrived if the channel ends
/// or the time is up first.
pub async fn read_until(events: &mut Box<dyn EventSource>, buf: &mut Vec<u8>, needle: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    // Search only what is new (plus an overlap): big outputs stay linear.
    let mut from = 0;
    while find(&buf[from..], needle).is_none() {
        from = buf.len().saturating_sub(needle.len());
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(ChannelEvent::Stdout(d) | ChannelEvent::Stderr(d))) => {
                buf.extend_from_slice(&d)
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!(
                "channel ended before {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(buf)
            ),
            Err(_) => panic!(
                "no {:?} within 10 s; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(buf)
            ),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Everything a session test usually imports.
pub mod prelude {
    pub use super::{
        backend, finish, login_shell_server, out, read_until, run, screen_with, session,
        sshd_with_login_shell, IsolatedTmux,
    };
    pub use crate::conformance;
    pub use crate::{CutMode, FaultProxy, Sshd, SshdOptions};
}
