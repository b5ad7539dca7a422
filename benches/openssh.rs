//! The OpenSSH client side of the comparison: one `ssh` process per call, as a user (or a
//! tool that shells out) would run it, plus a ControlMaster that is always shut down.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ssh_session_testkit::Sshd;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// The client binary (Debian's `openssh-client`).
const SSH: &str = "ssh";

/// An `ssh` command for the bench's sshd that reads none of the user's own configuration.
/// `before` go ahead of the kit's arguments (e.g. `-S ctl`, `-tt`); the host follows them.
fn ssh(sshd: &Sshd, before: &[&str], remote: Option<&str>) -> Command {
    let mut cmd = Command::new(SSH);
    cmd.args(before)
        .args(sshd.ssh_args())
        .arg(sshd.host())
        .args(remote)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `cmd` to completion within `limit`; fails on a non-zero exit, showing stderr.
async fn run_checked(mut cmd: Command, limit: Duration, what: &str) -> Result<Vec<u8>, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| format!("{what}: no answer within {limit:?}"))?
        .map_err(|e| format!("{what}: cannot run {SSH}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {} ({})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// One cold `ssh host true`: a new process, TCP connection, key exchange and
/// authentication, and a new `bash -c true` on the server. Returns its wall time.
pub(crate) async fn cold_true(sshd: &Sshd, limit: Duration) -> Result<Duration, String> {
    let cmd = ssh(sshd, &[], Some("true"));
    let start = Instant::now();
    run_checked(cmd, limit, "cold ssh true").await?;
    Ok(start.elapsed())
}

/// What one streaming `ssh host 'head -c N /dev/zero'` delivered.
pub(crate) struct Streamed {
    /// Bytes read from ssh's stdout.
    pub bytes: u64,
    /// From spawning ssh to the first byte (connection set-up included).
    pub to_first_byte: Duration,
    /// From the first byte to the last one: what the rate is computed over.
    pub transfer: Duration,
}

/// Runs `command` through a new `ssh` (with `-tt` when `tty`) and counts what arrives on
/// its stdout, without keeping it. Bounded by `limit` (the process is killed after it).
pub(crate) async fn stream(
    sshd: &Sshd,
    tty: bool,
    command: &str,
    limit: Duration,
) -> Result<Streamed, String> {
    let flags: &[&str] = if tty { &["-tt"] } else { &[] };
    let mut cmd = ssh(sshd, flags, Some(command));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {SSH}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let counting = async {
        let mut buf = vec![0u8; 256 << 10];
        let (mut bytes, mut first, mut last) = (0u64, None, start);
        loop {
            let n = stdout.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            last = Instant::now();
            first.get_or_insert(last);
            bytes += n as u64;
        }
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err).await;
        let status = child.wait().await.map_err(|e| e.to_string())?;
        // `ssh -tt` reports "Connection to ... closed." on stderr: that is not an error.
        if !status.success() {
            return Err(format!("ssh {status}: {}", err.trim()));
        }
        let first = first.unwrap_or(last);
        Ok(Streamed {
            bytes,
            to_first_byte: first - start,
            transfer: last - first,
        })
    };
    tokio::time::timeout(limit, counting)
        .await
        .map_err(|_| format!("not finished within {limit:?} (ssh killed)"))?
}

/// Keystroke → echo through plain `ssh -tt host bash -i`, what a person gets from OpenSSH:
/// `count` times, one key written to ssh's stdin until its echo comes back on stdout (then
/// erased with a backspace, not timed). Bounded by `limit` per key.
#[allow(dead_code)] // the shared bench's; the latency bench includes this module too
pub(crate) async fn keystroke_echo(
    sshd: &Sshd,
    count: usize,
    limit: Duration,
) -> Result<Vec<Duration>, String> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = ssh(sshd, &["-tt"], Some("bash --norc -i"));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {SSH}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut seen = Vec::new();
    // Reads until `needle` arrived after `from`; returns where it ended.
    async fn until(
        stdout: &mut tokio::process::ChildStdout,
        seen: &mut Vec<u8>,
        from: usize,
        needle: &[u8],
        limit: Duration,
    ) -> Result<usize, String> {
        let mut buf = [0u8; 4096];
        let found = async {
            loop {
                if let Some(at) = seen[from..].windows(needle.len()).position(|w| w == needle) {
                    return Ok(from + at + needle.len());
                }
                let n = stdout.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("ssh ended".to_string());
                }
                seen.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(limit, found).await.map_err(|_| {
            format!(
                "no {:?} within {limit:?}: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&seen[from..])
            )
        })?
    }
    let io = |e: std::io::Error| e.to_string();
    stdin
        .write_all(b"PS1='>>> '; echo ready-$((40+2))\r")
        .await
        .map_err(io)?;
    let mut at = until(&mut stdout, &mut seen, 0, b"ready-42", limit * 10).await?;
    // The prompt after it: keys typed from now on are read by the line editor.
    at = until(&mut stdout, &mut seen, at, b">>> ", limit).await?;
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let key = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        stdin.write_all(&key).await.map_err(io)?;
        at = until(&mut stdout, &mut seen, at, &key, limit).await?;
        times.push(t.elapsed());
        stdin.write_all(b"\x7f").await.map_err(io)?;
        at = until(&mut stdout, &mut seen, at, b"\x08", limit).await?;
    }
    let _ = stdin.write_all(b"exit\r").await;
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Ok(times)
}

/// An OpenSSH ControlMaster for the bench's sshd. Dropping it sends `-O exit`, and kills
/// the master if it is still there, so no master outlives the bench.
pub(crate) struct ControlMaster<'a> {
    /// The server the master is connected to.
    sshd: &'a Sshd,
    /// The control socket (`-S`).
    ctl: PathBuf,
    /// The master's pid, from `ssh -O check`.
    pid: Option<u32>,
    /// Whether [`ControlMaster::stop`] already ran.
    stopped: bool,
}

impl<'a> ControlMaster<'a> {
    /// Starts `ssh -M -S CTL -o ControlPersist=yes -fN ... host` and waits until
    /// `ssh -O check` answers. CTL is short and in /tmp: a unix socket path is limited to
    /// 108 bytes, and OpenSSH adds a random suffix while it sets the socket up.
    pub(crate) async fn start(sshd: &'a Sshd) -> Result<ControlMaster<'a>, String> {
        let ctl = PathBuf::from(format!("/tmp/ssb-{}.ctl", std::process::id()));
        let _ = std::fs::remove_file(&ctl);
        let ctl_arg = ctl.display().to_string();
        let mut master = ControlMaster {
            sshd,
            ctl,
            pid: None,
            stopped: false,
        };
        let mut cmd = ssh(
            sshd,
            &["-M", "-S", &ctl_arg, "-o", "ControlPersist=yes", "-fN"],
            None,
        );
        // `-f` forks a background master that keeps inherited pipes open, so wait for the
        // parent's status only and give the master nothing to hold.
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let status = tokio::time::timeout(Duration::from_secs(15), cmd.status())
            .await
            .map_err(|_| "ControlMaster did not start within 15 s".to_string())?
            .map_err(|e| format!("cannot run {SSH}: {e}"))?;
        if !status.success() {
            return Err(format!("ControlMaster start failed: {status}"));
        }
        let mut check = ssh(sshd, &["-S", &ctl_arg, "-O", "check"], None);
        check.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = tokio::time::timeout(Duration::from_secs(5), check.output())
            .await
            .map_err(|_| "ssh -O check hung".to_string())?
            .map_err(|e| e.to_string())?;
        // "Master running (pid=1234)" on stderr.
        let text = String::from_utf8_lossy(&out.stderr);
        master.pid = text
            .split("pid=")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|pid| pid.trim().parse().ok());
        if !out.status.success() || master.pid.is_none() {
            return Err(format!("ControlMaster not running: {}", text.trim()));
        }
        Ok(master)
    }

    /// The master's pid, as `ssh -O check` reported it.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// One `ssh -S CTL host true` over the master: a new client process per call, no new
    /// connection. Returns its wall time.
    pub(crate) async fn run_true(&self, limit: Duration) -> Result<Duration, String> {
        let ctl = self.ctl.display().to_string();
        let cmd = ssh(self.sshd, &["-S", &ctl], Some("true"));
        let start = Instant::now();
        run_checked(cmd, limit, "ssh -S ctl true").await?;
        Ok(start.elapsed())
    }

    /// Sends `-O exit`, then makes sure the master process is gone and the socket removed.
    /// Blocking (it runs from `Drop` too) and bounded: a master that does not leave within
    /// 2 s is killed.
    pub(crate) fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let _ = std::process::Command::new(SSH)
            .args(["-S", &self.ctl.display().to_string(), "-O", "exit"])
            .args(self.sshd.ssh_args())
            .arg(self.sshd.host())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = self.pid {
            let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists() && !zombie(pid);
            let deadline = Instant::now() + Duration::from_secs(2);
            while alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive() {
                // SAFETY: kill(2) with a pid we were told is our ControlMaster.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        let _ = std::fs::remove_file(&self.ctl);
    }
}

impl Drop for ControlMaster<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `pid` is a zombie (exited, not yet reaped: it holds nothing any more).
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(false)
}
