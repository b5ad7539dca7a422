//! Whole-process latency of `ssh-session exec NAME -- true` against OpenSSH's
//! `ssh -S ctl host true` over a ControlMaster, on the same real sshd in the same run.
//!
//! Both sides pay a process start per command, as a shell user or a script would; ours
//! goes to the daemon's already-open session, OpenSSH's opens a new channel (and a new
//! remote `bash -c true`) on the master's connection. The samples are interleaved (ours,
//! then theirs, N times) so that noise on this shared machine hits both alike.
//!
//! Run: `cargo bench -p ssh-session-cli --bench cli_exec`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssh_session_testkit::Sshd;

/// Samples per side.
const N: usize = 100;
/// Unmeasured rounds first (page cache, daemon and master warm).
const WARMUP: usize = 5;
/// Ours must take at most this fraction of the ControlMaster time (p50).
const TARGET_RATIO: f64 = 0.5;

fn main() {
    let sshd = Sshd::start().expect("start the test kit's sshd");
    let dir = tempfile::Builder::new()
        .prefix("ssb-cli-")
        .tempdir()
        .unwrap();
    let ours = Ours::connect(&sshd, dir.path());
    let master = Master::start(&sshd, dir.path());
    for _ in 0..WARMUP {
        ours.exec_true();
        master.run_true();
    }
    let (mut a, mut b) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for _ in 0..N {
        a.push(ours.exec_true());
        b.push(master.run_true());
    }
    let (ours_stats, cm_stats) = (Stats::of(&mut a), Stats::of(&mut b));
    let ratio = ours_stats.p50.as_secs_f64() / cm_stats.p50.as_secs_f64();
    let verdict = if ratio <= TARGET_RATIO {
        "PASS"
    } else {
        "MISS"
    };
    println!("\n### `ssh-session exec` vs OpenSSH ControlMaster (whole process, N={N})\n");
    println!("| command | p50 | p90 | ratio (p50) | target | verdict |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| `ssh-session exec NAME -- true` | {} | {} | {ratio:.2}× | ≤ {TARGET_RATIO}× ControlMaster | {verdict} |",
        ms(ours_stats.p50),
        ms(ours_stats.p90)
    );
    println!(
        "| `ssh -S ctl host true` (ControlMaster) | {} | {} | 1.00× | | |",
        ms(cm_stats.p50),
        ms(cm_stats.p90)
    );
    println!(
        "\nsshd: OpenSSH on 127.0.0.1 with the test kit's empty remote HOME ({}); \
         ssh-session built with the bench profile.",
        sshd.home().display()
    );
}

/// The CLI with its own daemon and one session named `bench`.
struct Ours {
    socket: PathBuf,
    known_hosts: PathBuf,
}

impl Ours {
    fn connect(sshd: &Sshd, dir: &Path) -> Ours {
        let ours = Ours {
            socket: dir.join("rt").join("d.sock"),
            known_hosts: sshd.known_hosts().to_path_buf(),
        };
        let port = sshd.port().to_string();
        let key = sshd.user_key().display().to_string();
        let user = sshd.user();
        ours.run(&[
            "connect",
            "bench",
            "127.0.0.1",
            "-p",
            &port,
            "-l",
            &user,
            "-i",
            &key,
        ]);
        ours
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ssh-session"));
        cmd.env("SSH_SESSION_SOCKET", &self.socket)
            .env("SSH_SESSION_SSH_CONFIG", "/dev/null")
            .env("SSH_SESSION_KNOWN_HOSTS", &self.known_hosts)
            .env("SSH_SESSION_NO_AGENT", "1")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) {
        let out = self.command().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ssh-session {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn exec_true(&self) -> Duration {
        let mut cmd = self.command();
        cmd.args(["exec", "bench", "--", "true"]);
        timed(cmd, "ssh-session exec")
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.command().args(["daemon", "stop"]).output();
    }
}

/// An OpenSSH ControlMaster, as the workspace's latency bench sets it up: a short
/// control path (108-byte socket limit), `ControlPersist`, `-fN`; `-O exit` on drop.
struct Master {
    ctl: PathBuf,
    args: Vec<String>,
    host: String,
}

impl Master {
    fn start(sshd: &Sshd, dir: &Path) -> Master {
        let master = Master {
            ctl: dir.join("cm.ctl"),
            args: sshd.ssh_args(),
            host: sshd.host().to_string(),
        };
        let status = master
            .ssh(&["-M", "-o", "ControlPersist=yes", "-fN"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run ssh");
        assert!(status.success(), "ControlMaster did not start: {status}");
        let check = master.ssh(&["-O", "check"]).output().unwrap();
        assert!(
            check.status.success(),
            "ControlMaster not running: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        master
    }

    fn ssh(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-S")
            .arg(&self.ctl)
            .args(extra)
            .args(&self.args)
            .arg(&self.host)
            .stdin(Stdio::null());
        cmd
    }

    fn run_true(&self) -> Duration {
        let mut cmd = self.ssh(&[]);
        cmd.arg("true");
        timed(cmd, "ssh -S ctl true")
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self
            .ssh(&["-O", "exit"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `cmd` to completion, panicking on failure, and returns its wall time.
fn timed(mut cmd: Command, what: &str) -> Duration {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{what}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// Nearest-rank percentiles.
struct Stats {
    p50: Duration,
    p90: Duration,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Stats {
        samples.sort_unstable();
        let rank = |p: f64| {
            let r = (p * samples.len() as f64).ceil() as usize;
            samples[r.clamp(1, samples.len()) - 1]
        };
        Stats {
            p50: rank(0.5),
            p90: rank(0.9),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
