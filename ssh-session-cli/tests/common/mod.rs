//! Shared helpers: an isolated `ssh-session` environment per test (its own runtime dir,
//! socket and daemon) against the test kit's real sshd.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use ssh_session_testkit::Sshd;
use tempfile::TempDir;

/// Upper bound for any single CLI invocation in the tests (never a timing assertion).
pub(crate) const LIMIT: Duration = Duration::from_secs(90);

/// The built binary.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ssh-session"))
}

/// One test's private world: a runtime dir with the daemon's socket, isolated from the
/// user's ~/.ssh (no agent, /dev/null ssh config, the kit's known_hosts). Dropping it
/// stops the daemon (`daemon stop`, then SIGKILL if it is still there).
pub(crate) struct Env {
    pub dir: TempDir,
    pub runtime: PathBuf,
    pub socket: PathBuf,
    pub sshd: &'static Sshd,
    /// Extra environment for every invocation.
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub(crate) fn new() -> Env {
        let dir = tempfile::Builder::new().prefix("ssc-").tempdir().unwrap();
        let runtime = dir.path().join("rt");
        let socket = runtime.join("daemon.sock");
        Env {
            dir,
            runtime,
            socket,
            sshd: Sshd::shared(),
            vars: Vec::new(),
        }
    }

    /// Sets an environment variable for every later invocation.
    pub(crate) fn with(mut self, key: &str, value: &str) -> Env {
        self.vars.push((key.into(), value.into()));
        self
    }

    /// The environment every invocation gets: `None` removes a variable.
    pub(crate) fn vars(&self) -> Vec<(String, Option<String>)> {
        let set = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        let mut vars = vec![
            ("XDG_RUNTIME_DIR".to_string(), None),
            ("SSH_SESSION_RUNTIME_DIR".to_string(), None),
            ("SSH_AUTH_SOCK".to_string(), None),
            set("SSH_SESSION_SOCKET", self.socket.to_str().unwrap()),
            set("SSH_SESSION_SSH_CONFIG", "/dev/null"),
            set(
                "SSH_SESSION_KNOWN_HOSTS",
                self.sshd.known_hosts().to_str().unwrap(),
            ),
            set("SSH_SESSION_NO_AGENT", "1"),
            set("NO_COLOR", "1"),
        ];
        vars.extend(self.vars.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
        vars
    }

    /// A command with this environment's isolation applied.
    pub(crate) fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(bin());
        cmd.timeout(LIMIT);
        for (k, v) in self.vars() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    /// Runs `ssh-session ARGS` and returns its output, whatever the exit code.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs and requires success, returning stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ssh-session {args:?} failed: {}\nstdout: {}\nstderr: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Opens session `name` on the kit's sshd.
    pub(crate) fn connect(&self, name: &str) {
        let port = self.sshd.port().to_string();
        let user = self.sshd.user();
        let key = self.sshd.user_key().display().to_string();
        self.ok(&[
            "connect",
            name,
            "127.0.0.1",
            "-p",
            &port,
            "-l",
            &user,
            "-i",
            &key,
        ]);
    }

    /// The daemon's pid, if one answers.
    pub(crate) fn daemon_pid(&self) -> Option<u32> {
        let out = self.ok(&["daemon", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["pid"].as_u64().map(|p| p as u32)
    }

    /// The daemon's log, for failure messages.
    pub(crate) fn log(&self) -> String {
        let log = std::fs::read_to_string(self.socket.with_extension("log")).unwrap_or_default();
        format!("--- daemon log ---\n{log}")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let pid = std::fs::metadata(&self.socket)
            .ok()
            .and_then(|_| self.daemon_pid_quiet());
        let _ = self.cmd().args(["daemon", "stop"]).output();
        if let Some(pid) = pid {
            wait_until(Duration::from_secs(10), || !alive(pid));
            if alive(pid) {
                kill9(pid);
            }
        }
    }
}

impl Env {
    fn daemon_pid_quiet(&self) -> Option<u32> {
        let out = self
            .cmd()
            .args(["daemon", "status", "--json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["pid"].as_u64().map(|p| p as u32)
    }
}

/// Whether `pid` runs (a zombie does not count: it holds nothing any more).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// SIGKILL.
pub(crate) fn kill9(pid: u32) {
    // SAFETY: kill(2) on a pid the test got from the daemon it started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub(crate) fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The permission bits of `path`.
pub(crate) fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// stdout and stderr as text, for assertions and messages.
pub(crate) fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
