//! The daemon: holds a [`SessionManager`] and serves clients on a private Unix socket.
//!
//! One tokio task per client connection, so a long request (a streaming `exec`, an
//! `attach`) never delays another client; the manager never holds a lock across a network
//! round trip, and neither does anything here. The daemon owns its socket path through an
//! `flock` on the lock file next to it: whoever holds the lock may remove a stale socket
//! (left by a daemon that crashed) and bind a new one; a second daemon started at the
//! same time leaves, and one started while the previous one stops waits for its lock.

mod attach;
mod handler;
mod remote;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssh_session_core::SessionManager;
use tokio::net::UnixListener;
use tokio::sync::{watch, Notify};

use crate::error::CliError;
use crate::output::{escape_controls, human};
use crate::runtime::Paths;

/// How long a new daemon waits for the lock of one that is stopping (closing its
/// sessions) before giving up. Well under the client's 15 s start timeout.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// How long a stopped daemon waits for `daemon stop` requests to be answered.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// State shared by every connection task.
pub(crate) struct Daemon {
    /// The sessions.
    pub manager: SessionManager,
    /// Open client connections and the last time anything happened, for the idle exit.
    activity: Activity,
    /// Woken to stop the daemon (`daemon stop`, SIGTERM).
    stop: Notify,
    /// Set once the daemon stops: requests arriving after it are answered `ShuttingDown`
    /// (the client then retries against a new daemon) rather than half served.
    stopping: AtomicBool,
    /// Becomes true once every session is closed or detached.
    stopped: watch::Sender<bool>,
    /// `daemon stop` requests not answered yet: the runtime is not torn down under them.
    answering: watch::Sender<usize>,
    /// The uid allowed to connect: ours.
    uid: u32,
    /// The browser terminal, started by the first `share`: a daemon nobody shares from
    /// opens no TCP port.
    web: tokio::sync::OnceCell<ssh_session_web::Web>,
}

struct Activity {
    clients: AtomicUsize,
    last: Mutex<Instant>,
}

/// Counts a client connection for as long as it lives.
pub(crate) struct ClientGuard {
    daemon: Arc<Daemon>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.daemon.touch();
        self.daemon.activity.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a `daemon stop` request until its answer is written.
pub(crate) struct AnswerGuard<'a>(&'a Daemon);

impl Drop for AnswerGuard<'_> {
    fn drop(&mut self) {
        self.0.answering.send_modify(|n| *n -= 1);
    }
}

impl Daemon {
    /// Notes activity, postponing the idle exit.
    pub(crate) fn touch(&self) {
        *self.activity.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn client(self: &Arc<Self>) -> ClientGuard {
        self.activity.clients.fetch_add(1, Ordering::AcqRel);
        self.touch();
        ClientGuard {
            daemon: self.clone(),
        }
    }

    /// Whether the daemon is stopping: new requests must not start.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Stops the daemon for a client's `daemon stop` and returns once every session is
    /// closed (persistent ones detached: their remote shells survive for a later daemon
    /// to re-adopt). The socket no longer accepts by then; it is removed and the lock
    /// released once the answer is written. Idempotent.
    pub(crate) async fn stop_for_client(&self) -> AnswerGuard<'_> {
        self.answering.send_modify(|n| *n += 1);
        let guard = AnswerGuard(self);
        self.request_stop();
        let mut stopped = self.stopped.subscribe();
        let _ = stopped.wait_for(|done| *done).await;
        guard
    }

    /// Asks [`serve`] to stop; it stops accepting at once, then closes the sessions.
    fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_one();
    }

    /// The browser terminal over this daemon's sessions, serving on a free loopback port
    /// from the first call until the daemon stops.
    pub(crate) async fn web(&self) -> Result<&ssh_session_web::Web, ssh_session_web::WebError> {
        self.web
            .get_or_try_init(|| async {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                let listener = ssh_session_web::bind(addr).await?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| ssh_session_web::WebError::Listen { addr, source })?;
                let web = ssh_session_web::Web::new(
                    self.manager.clone(),
                    bound,
                    ssh_session_web::WebOptions::default(),
                )?;
                let mut stopped = self.stopped.subscribe();
                let serving = web.clone().serve(listener, async move {
                    let _ = stopped.wait_for(|done| *done).await;
                });
                tokio::spawn(async move {
                    if let Err(e) = serving.await {
                        tracing::warn!("{e}");
                    }
                });
                tracing::info!(url = web.base_url(), "browser terminal serving");
                Ok(web)
            })
            .await
    }

    fn idle_for(&self) -> Option<Duration> {
        let busy =
            self.activity.clients.load(Ordering::Acquire) > 0 || !self.manager.names().is_empty();
        let last = *self.activity.last.lock().unwrap_or_else(|p| p.into_inner());
        (!busy).then(|| last.elapsed())
    }
}

/// Runs the daemon in this process until `daemon stop`, a signal, or `idle_timeout` with
/// no sessions and no clients. Returns `Ok` also when another daemon already serves the
/// socket (two clients auto-started one at the same time); `foreground` makes that an
/// error instead, since a person asked for this one.
///
/// The order of the way out matters to a client that starts a new daemon right away
/// (`daemon stop && ssh-session connect ...`): the listener is closed first (connecting
/// is refused, so the client starts a new daemon), the sessions are closed, and the
/// socket is unlinked only right before the lock is released; the new daemon waits for
/// that lock (bounded) instead of leaving.
pub(crate) fn run(paths: Paths, idle_timeout: Duration, foreground: bool) -> Result<(), CliError> {
    init_logging();
    paths.ensure_private_dir()?;
    let lock = match take_lock(&paths)? {
        Lock::Held(file) => file,
        Lock::Served => {
            tracing::info!(socket = %paths.socket.display(), "another daemon serves this socket; leaving");
            return if foreground {
                Err(CliError::RuntimeDir {
                    path: paths.dir.clone(),
                    detail: format!(
                        "a daemon is already running on {}; stop it with `ssh-session daemon stop`",
                        paths.socket.display()
                    ),
                })
            } else {
                Ok(())
            };
        }
    };
    // We hold the lock, so a socket still there belongs to a daemon that died; anything
    // else at that path is not ours to delete.
    remove_stale_socket(&paths)?;
    let (listener, bound) = bind_private(&paths)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the tokio runtime", e));
    let result = runtime.and_then(|runtime| {
        let result = runtime.block_on(serve(listener, &paths.socket, idle_timeout));
        // Sessions' background tasks end with the runtime.
        runtime.shutdown_timeout(Duration::from_secs(2));
        result
    });
    remove_own_socket(&paths, bound);
    drop(lock);
    result
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    socket: &Path,
    idle_timeout: Duration,
) -> Result<(), CliError> {
    let listener =
        UnixListener::from_std(listener).map_err(|e| CliError::io("listening on the socket", e))?;
    let daemon = Arc::new(Daemon {
        manager: SessionManager::new(),
        activity: Activity {
            clients: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        },
        stop: Notify::new(),
        stopping: AtomicBool::new(false),
        stopped: watch::channel(false).0,
        answering: watch::channel(0).0,
        // SAFETY: geteuid has no preconditions.
        uid: unsafe { libc::geteuid() },
        web: tokio::sync::OnceCell::new(),
    });
    tracing::info!(
        socket = %socket.display(),
        pid = std::process::id(),
        version = crate::protocol::CRATE_VERSION,
        idle_timeout = human(idle_timeout),
        "daemon listening"
    );
    tokio::spawn(on_signals(daemon.clone()));
    // Checking a few times per idle period is precise enough and costs nothing. The check
    // runs in this loop, so no client can be accepted between the decision and the close.
    let tick = (idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut idle_check = tokio::time::interval(tick);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let guard = daemon.client();
                    tokio::spawn(handler::serve_client(daemon.clone(), stream, guard));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = daemon.stop.notified() => break,
            _ = idle_check.tick() => {
                if daemon.idle_for().is_some_and(|idle_for| idle_for >= idle_timeout) {
                    tracing::info!(idle_timeout = human(idle_timeout), "idle without sessions; exiting");
                    break;
                }
            }
        }
    }
    // Stop accepting before anything else: from now on connecting is refused, and a
    // client starts a new daemon, which waits for our lock.
    daemon.stopping.store(true, Ordering::Release);
    drop(listener);
    daemon.manager.shutdown_detaching_persistent().await;
    daemon.stopped.send_replace(true);
    let mut answering = daemon.answering.subscribe();
    let _ = tokio::time::timeout(ANSWER_WAIT, answering.wait_for(|n| *n == 0)).await;
    tracing::info!("daemon stopped");
    Ok(())
}

/// Removes a socket left at our path by a daemon that died. Only a socket is removed,
/// never followed through a symlink: `SSH_SESSION_SOCKET=~/notes.txt` must not delete
/// the notes.
fn remove_stale_socket(paths: &Paths) -> Result<(), CliError> {
    let err = |detail: String| CliError::RuntimeDir {
        path: paths.dir.clone(),
        detail,
    };
    let meta = match std::fs::symlink_metadata(&paths.socket) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(format!("cannot stat {}: {e}", paths.socket.display()))),
    };
    if !meta.file_type().is_socket() {
        return Err(err(format!(
            "{} exists and is {}, not a socket; it is left alone. Choose another socket path \
             (--socket or SSH_SESSION_SOCKET), or move that file away",
            paths.socket.display(),
            file_kind(&meta)
        )));
    }
    match std::fs::remove_file(&paths.socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(format!(
            "cannot remove the stale socket {}: {e}",
            paths.socket.display()
        ))),
        _ => Ok(()),
    }
}

/// Removes our socket on the way out, if the path still holds the very socket we bound
/// (device and inode): never a file someone put there since.
fn remove_own_socket(paths: &Paths, bound: SocketId) {
    let ours = std::fs::symlink_metadata(&paths.socket)
        .is_ok_and(|m| m.file_type().is_socket() && socket_id(&m) == bound);
    if ours {
        let _ = std::fs::remove_file(&paths.socket);
    }
}

/// A socket file's device and inode.
type SocketId = (u64, u64);

fn socket_id(meta: &std::fs::Metadata) -> SocketId {
    (meta.dev(), meta.ino())
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// Binds the socket with mode 0600. The umask covers the moment between bind and chmod
/// (the private directory already keeps others out; this is the second fence). Runs
/// before the runtime's threads exist, so the process-wide umask change is safe.
fn bind_private(paths: &Paths) -> Result<(std::os::unix::net::UnixListener, SocketId), CliError> {
    let err = |what: &str, e: std::io::Error| CliError::RuntimeDir {
        path: paths.dir.clone(),
        detail: format!("{what} {}: {e}", paths.socket.display()),
    };
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(&paths.socket);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| err("cannot listen on", e))?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("cannot chmod 600", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| err("cannot make non-blocking", e))?;
    let meta = std::fs::symlink_metadata(&paths.socket).map_err(|e| err("cannot stat", e))?;
    Ok((listener, socket_id(&meta)))
}

/// The outcome of [`take_lock`].
enum Lock {
    /// Ours: we own the socket path.
    Held(File),
    /// Another daemon holds it and serves the socket.
    Served,
}

/// Takes the daemon lock. While another process holds it, a daemon that serves the
/// socket means we are a duplicate ([`Lock::Served`]); one that does not is stopping
/// (it closes its listener first and releases the lock last), so we wait for it, up to
/// [`LOCK_WAIT`].
fn take_lock(paths: &Paths) -> Result<Lock, CliError> {
    let err = |detail: String| CliError::RuntimeDir {
        path: paths.dir.clone(),
        detail,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&paths.lock)
        .map_err(|e| {
            err(format!(
                "cannot open the lock file {}: {e}",
                paths.lock.display()
            ))
        })?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Lock::Held(file));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err(format!("cannot lock {}: {e}", paths.lock.display())));
        }
        if serves(&paths.socket) {
            return Ok(Lock::Served);
        }
        if Instant::now() >= deadline {
            return Err(err(format!(
                "another process has held {} for {} without serving {}; if no \
                 ssh-session daemon is stopping, find it with `fuser {}` and stop it",
                paths.lock.display(),
                human(LOCK_WAIT),
                paths.socket.display(),
                paths.lock.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a daemon accepts connections on `socket`.
fn serves(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// SIGTERM and SIGINT close the sessions cleanly before exiting.
async fn on_signals(daemon: Arc<Daemon>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; SIGTERM will not close sessions cleanly");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    daemon.request_stop();
}

/// Logs to stderr: the log file for a daemon a client started, the terminal for one run
/// by hand. Never in colour, so the file holds plain text either way.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SSH_SESSION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .with_ansi(false)
        .try_init();
}

/// Stderr with control characters made visible. `with_ansi(false)` keeps the formatter's
/// own colours out, but tracing escapes only an event's message, not its fields: a user
/// name or a host's reply logged as a field would otherwise reach the file raw.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter writes each event whole, in one call, so `buf` is complete text.
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(escape_controls(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
