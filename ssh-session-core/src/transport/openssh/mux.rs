//! Session channels (shells, PTY commands) opened by speaking the multiplexing protocol to
//! the master's socket ourselves, with a local pseudo-terminal standing in for the user's
//! terminal when a PTY is wanted.
//!
//! Why a local PTY: the master builds the remote PTY request from the client's stdin. It
//! reads the terminal modes with `tcgetattr` and the size with `TIOCGWINSZ` on that file
//! descriptor, and on SIGWINCH it re-reads the size and sends a `window-change`. Given a
//! pipe, all of that fails: the remote PTY starts with every mode off (no Ctrl-C, no
//! line editing) and 0×0. So we open a local PTY, give it the modes and size we want, and
//! pass its slave as stdin; the master sees a real terminal, exactly as with an
//! interactive `ssh`. Once the session is open (the master has read the modes) the local
//! slave is switched to raw, so our bytes reach the remote side unchanged. Output comes
//! back on a plain pipe. The request is a real `shell` (or `exec`) request, so the remote
//! side runs the account's login shell just as for `ssh host`.

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openssh_mux_client::{Connection, NonZeroByteSlice, Session, SessionStatus};
use tokio::sync::oneshot;

use super::channel::{supervise_mux, Events, Exit, Guard, Lease, Opened, Reader, Writer};
use crate::transport::PtyRequest;

/// Resizes a PTY channel: sets the local PTY's size, then SIGWINCH tells the master to send
/// the new size (it re-reads the size of every PTY channel, as it does for `ssh -S`
/// clients, which relay their own SIGWINCH to it the same way).
pub(super) struct Window {
    pty: OwnedFd,
    master_pid: u32,
    master_gone: Arc<AtomicBool>,
}

impl Window {
    /// Sets the size; the remote foreground job gets SIGWINCH from the remote kernel.
    pub(super) fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        if self.master_gone.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closed",
            ));
        }
        set_size(self.pty.as_raw_fd(), cols, rows)?;
        // SAFETY: kill(2) has no memory effects. The pid is our master child, checked alive
        // just above; should it be reaped and reused in between, SIGWINCH is ignored by
        // default.
        if unsafe { libc::kill(self.master_pid as libc::pid_t, libc::SIGWINCH) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The master process, for [`Window`].
pub(super) struct MasterRef {
    pub pid: u32,
    pub gone: Arc<AtomicBool>,
}

/// Opens a session channel running `command` (a login shell when `None`), on a PTY when
/// `request` is given, else on plain pipes. `forward_agent` asks for agent forwarding
/// (which the master grants only when started with it).
pub(super) async fn open(
    ctl: &Path,
    master: MasterRef,
    request: Option<&PtyRequest>,
    command: Option<&str>,
    forward_agent: bool,
    lease: Lease,
) -> Result<(Opened, Option<Window>), String> {
    let io_err = |what: &str, e: io::Error| format!("{what}: {e}");
    let term = request.map(|r| r.term.as_str()).unwrap_or("");
    let term = NonZeroByteSlice::new(term.as_bytes()).ok_or("TERM must not contain a NUL byte")?;
    let cmd = NonZeroByteSlice::new(command.unwrap_or("").as_bytes())
        .ok_or("the command must not contain a NUL byte")?;
    let pipe = || io::pipe().map_err(|e| io_err("cannot create a pipe", e));
    let (out_read, out_write) = pipe()?;
    // With a PTY the remote side has one output stream: stderr shares the stdout pipe.
    let (err_read, err_write) = match request {
        Some(_) => (
            None,
            out_write
                .try_clone()
                .map_err(|e| io_err("cannot create a pipe", e))?,
        ),
        None => {
            let (r, w) = pipe()?;
            (Some(r), w)
        }
    };
    let (stdin, remote_stdin, local_pty): (Writer, OwnedFd, Option<Pty>) = match request {
        Some(request) => {
            let (pty, pts) =
                pty_process::open().map_err(|e| format!("cannot open a local PTY: {e}"))?;
            set_size(pty.as_raw_fd(), request.cols, request.rows)
                .map_err(|e| io_err("cannot size the local PTY", e))?;
            set_modes(pts.as_raw_fd(), request.echo)
                .map_err(|e| io_err("cannot set PTY modes", e))?;
            // Our own handle on the slave: set to raw once the master has read its modes.
            let pts = pts
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| io_err("cannot keep the local PTY", e))?;
            let resize_fd = pty
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| io_err("cannot keep the local PTY", e))?;
            (Box::new(pty), pts, Some(Pty(resize_fd)))
        }
        None => {
            let (r, w) = pipe()?;
            let w = tokio::net::unix::pipe::Sender::from_owned_fd(OwnedFd::from(w))
                .map_err(|e| io_err("cannot write to the session", e))?;
            (Box::new(w), OwnedFd::from(r), None)
        }
    };

    // An empty command is a shell request.
    let session = Session::builder()
        .tty(request.is_some())
        .agent(forward_agent)
        .term(Cow::Borrowed(term))
        .cmd(Cow::Borrowed(cmd))
        .build();
    let fds = [
        remote_stdin.as_raw_fd(),
        out_write.as_raw_fd(),
        err_write.as_raw_fd(),
    ];
    let established = Connection::connect(ctl)
        .await
        .map_err(|e| format!("the ControlMaster refused the connection: {e}"))?
        .open_new_session(&session, &fds)
        .await
        .map_err(|e| format!("the ControlMaster could not open the session: {e}"))?;
    if local_pty.is_some() {
        // The master has read the modes and size; from now on bytes must pass unchanged.
        make_raw(remote_stdin.as_raw_fd())
            .map_err(|e| io_err("cannot switch the local PTY to raw", e))?;
    }
    // The master holds its own copies; ours would keep the streams from ever ending.
    drop((remote_stdin, out_write, err_write));

    let reader = |r: io::PipeReader| -> Result<Reader, String> {
        let r = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(r))
            .map_err(|e| io_err("cannot read the session's output", e))?;
        Ok(Box::new(r))
    };
    let stdout = reader(out_read)?;
    let stderr = err_read.map(reader).transpose()?;

    let (guard, kill) = Guard::new();
    let (exit_tx, exit) = oneshot::channel();
    let (drained_tx, drained) = oneshot::channel();
    let wait = async move {
        let mut session = established;
        loop {
            match session.wait().await {
                Ok(SessionStatus::Exited { exit_value }) => return exit_value,
                Ok(SessionStatus::TtyAllocFail(same)) => {
                    tracing::warn!("the server refused a PTY; the channel runs without one");
                    session = same;
                }
                Err((e, _)) => {
                    tracing::debug!("mux session ended without an exit status: {e}");
                    return None;
                }
            }
        }
    };
    tokio::spawn(supervise_mux(wait, drained, kill, lease, exit_tx));
    let exit = Exit {
        drained: drained_tx,
        status: exit,
    };
    let events = Events::new(stdout, stderr, exit, guard.clone());
    let window = local_pty.map(|Pty(fd)| Window {
        pty: fd,
        master_pid: master.pid,
        master_gone: master.gone,
    });
    Ok((
        Opened {
            stdin,
            events,
            guard,
        },
        window,
    ))
}

/// A duplicate of the local PTY's master side, kept for resizing.
struct Pty(OwnedFd);

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_size(fd: RawFd, cols: u16, rows: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows.max(1),
        ws_col: cols.max(1),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: a valid fd and a pointer to a live winsize.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) })
}

/// A new PTY's modes are the kernel's cooked defaults (isig, icanon, icrnl, onlcr...);
/// only echo is changed as asked (sessions turn it off), and UTF-8 input is declared.
fn set_modes(fd: RawFd, echo: bool) -> io::Result<()> {
    // SAFETY: termios is plain data; tcgetattr fills it from a valid fd.
    let mut modes: libc::termios = unsafe { std::mem::zeroed() };
    check(unsafe { libc::tcgetattr(fd, &mut modes) })?;
    let echo_flags = libc::ECHO | libc::ECHOE | libc::ECHOK | libc::ECHONL;
    if echo {
        modes.c_lflag |= libc::ECHO | libc::ECHOE | libc::ECHOK;
    } else {
        modes.c_lflag &= !echo_flags;
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
    {
        modes.c_iflag |= libc::IUTF8;
    }
    // SAFETY: as above.
    check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &modes) })
}

/// Raw mode for the local side, so every byte we write reaches the remote PTY as is.
fn make_raw(fd: RawFd) -> io::Result<()> {
    // SAFETY: as in `set_modes`.
    let mut modes: libc::termios = unsafe { std::mem::zeroed() };
    check(unsafe { libc::tcgetattr(fd, &mut modes) })?;
    unsafe { libc::cfmakeraw(&mut modes) };
    check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &modes) })
}
