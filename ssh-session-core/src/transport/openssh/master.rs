//! The ControlMaster process: started, watched and stopped by us.
//!
//! We run `ssh -M -N` ourselves rather than through `openssh::SessionBuilder`, because the
//! builder always runs the program named `ssh`, forks the master away (`-f`, so its death
//! can only be noticed by polling) and accepts no arbitrary options. Our master stays our
//! child: a task waits on it, so [`Master::is_gone`] is a flag read, never a round trip.
//! The `openssh` crate then attaches to its socket (`Session::resume_mux`) for the native
//! multiplexing protocol.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Keep at most this much of the master's stderr (the tail matters for messages).
const LOG_LIMIT: usize = 64 << 10;
/// After SIGTERM, how long the master gets to exit before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

/// How the local `ssh` program is run.
pub(super) struct Program<'a> {
    /// The `ssh` binary.
    pub path: &'a Path,
    /// Arguments.
    pub args: Vec<OsString>,
    /// `Some(socket)`: use this agent; `None` with `use_agent == false`: no agent at all.
    pub agent_socket: Option<&'a Path>,
    /// Whether ssh may use an agent.
    pub use_agent: bool,
}

impl Program<'_> {
    /// A `Command` for it, in its own process group: a Ctrl-C typed in the terminal that
    /// runs our program must not kill the connection (SIGINT goes to the whole foreground
    /// group). Killed if its handle is dropped.
    pub(super) fn command(&self) -> Command {
        let mut cmd = Command::new(self.path);
        cmd.args(&self.args).process_group(0).kill_on_drop(true);
        match (self.agent_socket, self.use_agent) {
            (Some(socket), true) => {
                cmd.env("SSH_AUTH_SOCK", socket);
            }
            (_, false) => {
                cmd.env_remove("SSH_AUTH_SOCK");
            }
            _ => {}
        }
        cmd
    }
}

/// Channel-open failures the master reported ("channel 3: open failed: connect failed:
/// Connection refused"): how many so far, and the last one. A tunnel that ends before
/// its first byte uses them to say why, since its own `ssh -W` client is told nothing.
#[derive(Default)]
pub(super) struct OpenFailures {
    count: AtomicUsize,
    last: Mutex<String>,
}

impl OpenFailures {
    /// How many failures the master has reported.
    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// The last failure's text.
    pub(super) fn last(&self) -> String {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, line: &str) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = line.to_string();
        self.count.fetch_add(1, Ordering::AcqRel);
    }
}

/// The running master. Dropping it stops the process.
pub(super) struct Master {
    gone: Arc<AtomicBool>,
    exited: watch::Receiver<bool>,
    log: Arc<Mutex<String>>,
    failures: Arc<OpenFailures>,
    stop: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
    ctl: PathBuf,
    pid: u32,
}

impl Master {
    /// Starts the master. Fails only if the program cannot be run at all.
    pub(super) fn spawn(program: &Program<'_>, ctl: &Path) -> std::io::Result<Master> {
        let mut child = program
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take();
        let pid = child.id().unwrap_or(0);
        let gone = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(String::new()));
        let failures = Arc::new(OpenFailures::default());
        let stop = Arc::new(Notify::new());
        let (exited_tx, exited) = watch::channel(false);
        let task = tokio::spawn(supervise(
            child,
            stderr,
            log.clone(),
            failures.clone(),
            stop.clone(),
            gone.clone(),
            exited_tx,
        ));
        Ok(Master {
            gone,
            exited,
            log,
            failures,
            stop,
            task: Mutex::new(Some(task)),
            ctl: ctl.to_path_buf(),
            pid,
        })
    }

    /// Whether the master process has exited (or is being stopped).
    pub(super) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// The master's pid and its exit flag, for channels that signal it (SIGWINCH).
    pub(super) fn handle(&self) -> (u32, Arc<AtomicBool>) {
        (self.pid, self.gone.clone())
    }

    /// What the master printed on stderr so far (the tail).
    pub(super) fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The channel-open failures it reported.
    pub(super) fn failures(&self) -> Arc<OpenFailures> {
        self.failures.clone()
    }

    /// Waits until the control socket accepts clients (`Ok(true)`), or the master exits
    /// (`Ok(false)`: read [`log`](Self::log) for why). The socket appears only once the
    /// master is authenticated and listening (ssh binds a temporary name and renames it),
    /// so its existence is the readiness signal; polling it every 2 ms costs nothing next
    /// to a connection's ~100 ms and needs no cooperation from ssh.
    pub(super) async fn ready(&self) -> bool {
        let mut exited = self.exited.clone();
        loop {
            if *exited.borrow_and_update() {
                // Let the supervisor finish collecting stderr first.
                return false;
            }
            if self.ctl.exists() {
                return true;
            }
            tokio::select! {
                _ = exited.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
        }
    }

    /// Stops the master (SIGTERM, then SIGKILL) and waits until it is gone and reaped.
    pub(super) async fn stop(&self) {
        self.gone.store(true, Ordering::Release);
        self.stop.notify_one();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        // The supervisor kills the process; `kill_on_drop` covers a runtime shutting down.
        self.stop.notify_one();
    }
}

/// Owns the master process: collects its stderr, notices its exit, stops it on request.
async fn supervise(
    mut child: Child,
    stderr: Option<ChildStderr>,
    log: Arc<Mutex<String>>,
    failures: Arc<OpenFailures>,
    stop: Arc<Notify>,
    gone: Arc<AtomicBool>,
    exited: watch::Sender<bool>,
) {
    let reader = stderr.map(|stderr| tokio::spawn(collect(stderr, log.clone(), failures)));
    let status = tokio::select! {
        status = child.wait() => status.ok(),
        _ = stop.notified() => terminate(&mut child).await,
    };
    gone.store(true, Ordering::Release);
    // ssh's last words arrive around its exit; a ProxyCommand or jump-host ssh it started
    // may hold the pipe open a little longer, so wait briefly rather than for EOF.
    if let Some(reader) = reader {
        let _ = tokio::time::timeout(Duration::from_millis(300), reader).await;
    }
    tracing::debug!(?status, "ssh ControlMaster exited");
    let _ = exited.send(true);
}

/// SIGTERM lets ssh remove its socket and close the connection; SIGKILL if it lingers.
async fn terminate(child: &mut Child) -> Option<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own, not yet reaped child: the pid cannot be reused.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(TERM_GRACE, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    }
}

/// Appends stderr lines to `log` (bounded) and to the debug log.
async fn collect(stderr: ChildStderr, log: Arc<Mutex<String>>, failures: Arc<OpenFailures>) {
    // Bytes, not `lines()`: a non-UTF-8 line must not stop the draining (a full pipe would
    // block ssh).
    let mut reader = BufReader::new(stderr);
    let mut raw = Vec::new();
    while matches!(reader.read_until(b'\n', &mut raw).await, Ok(n) if n > 0) {
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        raw.clear();
        tracing::debug!(target: "ssh_session_core::openssh", "ssh master: {line}");
        if line.contains("open failed") {
            failures.record(&line);
        }
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        log.push_str(&line);
        log.push('\n');
        if log.len() > LOG_LIMIT {
            let cut = log.len() - LOG_LIMIT / 2;
            let cut = (cut..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(0);
            log.drain(..cut);
        }
    }
}
