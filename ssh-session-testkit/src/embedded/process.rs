//! Starting the child for a session channel (in a PTY or with pipes) and
//! pumping its data to and from the channel.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use russh::server::Msg;
use russh::{ChannelWriteHalf, Pty};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::modes::{apply_modes, set_winsize};
use super::State;

/// What the client asked for before `shell`/`exec`.
pub(super) struct PtyRequest {
    pub(super) term: String,
    pub(super) cols: u32,
    pub(super) rows: u32,
    pub(super) pix_width: u32,
    pub(super) pix_height: u32,
    pub(super) modes: Vec<(Pty, u32)>,
}

/// A started child and the plumbing around it.
pub(super) struct Running {
    pub(super) child: Child,
    pub(super) pgid: i32,
    /// Client data for the child's stdin; dropping it closes stdin.
    pub(super) stdin: Option<mpsc::UnboundedSender<Bytes>>,
    /// A duplicate of the PTY master for resizing, independent of the
    /// halves owned by the pump tasks.
    pub(super) pty_control: Option<OwnedFd>,
    /// The output pumps: PTY, or stdout and stderr, to the channel.
    pub(super) pumps: JoinSet<()>,
    /// Bytes forwarded to the client so far, to tell draining from stuck.
    pub(super) forwarded: Arc<AtomicU64>,
}

/// Environment of children: what a login would set, nothing inherited from
/// the test process except `PATH` and the locale.
fn child_env(
    state: &State,
    term: Option<&str>,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOME".to_string(), state.home.display().to_string()),
        ("USER".to_string(), state.user.clone()),
        ("LOGNAME".to_string(), state.user.clone()),
        ("SHELL".to_string(), state.shell.display().to_string()),
        (
            "PATH".to_string(),
            std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into()),
        ),
    ];
    for var in ["LANG", "LC_ALL"] {
        if let Ok(v) = std::env::var(var) {
            env.push((var.to_string(), v));
        }
    }
    if let Some(term) = term.filter(|t| !t.is_empty()) {
        env.push(("TERM".to_string(), term.to_string()));
    }
    env.extend(extra.iter().cloned());
    env
}

/// Like sshd: a shell request starts a login shell (`-bash`), an exec
/// request runs `SHELL -c CMD`.
fn shell_args(
    state: &State,
    command: Option<&[u8]>,
) -> (String, Vec<&'static OsStr>, Option<Vec<u8>>) {
    let base = state
        .shell
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sh".into());
    match command {
        None => (format!("-{base}"), Vec::new(), None),
        Some(cmd) => (base, vec![OsStr::new("-c")], Some(cmd.to_vec())),
    }
}

pub(super) fn spawn_pty(
    state: &State,
    command: Option<&[u8]>,
    env: &[(String, String)],
    req: &PtyRequest,
    tx: &ChannelWriteHalf<Msg>,
) -> io::Result<Running> {
    let err = |e: pty_process::Error| io::Error::other(e.to_string());
    let (pty, pts) = pty_process::open().map_err(err)?;
    set_winsize(
        pty.as_raw_fd(),
        req.cols,
        req.rows,
        req.pix_width,
        req.pix_height,
    )?;
    apply_modes(pts.as_raw_fd(), &req.modes)?;
    // SAFETY: dup returns a new descriptor that we own exclusively.
    let pty_control = unsafe {
        let fd = libc::dup(pty.as_raw_fd());
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    let (arg0, args, cmd) = shell_args(state, command);
    let mut builder = pty_process::Command::new(&state.shell)
        .arg0(arg0)
        .args(args)
        .env_clear()
        .envs(child_env(state, Some(&req.term), env))
        .current_dir(&state.home)
        .kill_on_drop(true);
    if let Some(cmd) = cmd {
        builder = builder.arg(OsStr::from_bytes(&cmd));
    }
    // pty-process makes the child a session leader with the PTY as its
    // controlling terminal, so ^C typed into the PTY reaches the foreground job.
    let child = builder.spawn(pts).map_err(err)?;
    let pgid = group_of(&child)?;
    let (read, write) = pty.into_split();
    let forwarded = Arc::new(AtomicU64::new(0));
    let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
    let mut pumps = JoinSet::new();
    pumps.spawn(pump_out(read, tx.make_writer(), forwarded.clone()));
    // Not in `pumps`: stdin is not output, the drain must not wait for it.
    tokio::spawn(pump_in(write, stdin_rx));
    Ok(Running {
        child,
        pgid,
        stdin: Some(stdin_tx),
        pty_control: Some(pty_control),
        pumps,
        forwarded,
    })
}

pub(super) fn spawn_pipes(
    state: &State,
    command: Option<&[u8]>,
    env: &[(String, String)],
    tx: &ChannelWriteHalf<Msg>,
) -> io::Result<Running> {
    let (arg0, args, cmd) = shell_args(state, command);
    let mut builder = tokio::process::Command::new(&state.shell);
    builder
        .arg0(arg0)
        .args(args)
        .env_clear()
        .envs(child_env(state, None, env))
        .current_dir(&state.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so `signal` and shutdown reach its children too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cmd) = cmd {
        builder.arg(OsStr::from_bytes(&cmd));
    }
    let mut child = builder.spawn()?;
    let pgid = group_of(&child)?;
    let forwarded = Arc::new(AtomicU64::new(0));
    let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
    let mut pumps = JoinSet::new();
    if let Some(out) = child.stdout.take() {
        pumps.spawn(pump_out(out, tx.make_writer(), forwarded.clone()));
    }
    if let Some(err) = child.stderr.take() {
        pumps.spawn(pump_out(
            err,
            tx.make_writer_ext(Some(1)),
            forwarded.clone(),
        ));
    }
    if let Some(stdin) = child.stdin.take() {
        tokio::spawn(pump_in(stdin, stdin_rx));
    }
    Ok(Running {
        child,
        pgid,
        stdin: Some(stdin_tx),
        pty_control: None,
        pumps,
        forwarded,
    })
}

/// Child output to the channel. A PTY master reports the end of output as
/// EIO (all slave descriptors closed), so any read error ends the pump.
async fn pump_out(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    forwarded: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        forwarded.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.flush().await;
}

/// Client data to the child's stdin; returning drops (closes) the writer.
async fn pump_in(mut to: impl AsyncWrite + Unpin, mut from: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(data) = from.recv().await {
        if to.write_all(&data).await.is_err() {
            break;
        }
    }
}

/// The child's process group id (it leads its group). Checked to be
/// positive: `kill(-0, ..)` would signal the test process's own group.
fn group_of(child: &Child) -> io::Result<i32> {
    match child.id() {
        Some(pid) if pid > 0 => Ok(pid as i32),
        _ => Err(io::Error::other("child exited before it could be tracked")),
    }
}
