//! The daemon: holds a [`SessionManager`] and serves clients on a private Unix socket.
//!
//! One tokio task per client connection, so a long request (a streaming `exec`, an
//! `attach`) never delays another client; the manager never holds a lock across a network
//! round trip, and neither does anything here. The daemon owns its socket path through an
//! `flock` on the lock file next to it: whoever holds the lock may remove a stale socket
//! (left by a daemon that crashed) and bind a new one, and a second daemon started at the
//! same time simply leaves.

mod attach;
mod handler;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssh_session_core::SessionManager;
use tokio::net::UnixListener;
use tokio::sync::Notify;

use crate::error::CliError;
use crate::runtime::Paths;

/// State shared by every connection task.
pub struct Daemon {
    /// The sessions.
    pub manager: SessionManager,
    /// The socket and friends, to remove the socket on the way out.
    pub paths: Paths,
    /// Open client connections and the last time anything happened, for the idle exit.
    activity: Activity,
    /// Woken to stop the daemon (`daemon stop`, idle, SIGTERM).
    stop: Notify,
    /// The uid allowed to connect: ours.
    uid: u32,
}

struct Activity {
    clients: AtomicUsize,
    last: Mutex<Instant>,
}

/// Counts a client connection for as long as it lives.
pub struct ClientGuard {
    daemon: Arc<Daemon>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.daemon.touch();
        self.daemon.activity.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Daemon {
    /// Notes activity, postponing the idle exit.
    pub fn touch(&self) {
        *self.activity.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn client(self: &Arc<Self>) -> ClientGuard {
        self.activity.clients.fetch_add(1, Ordering::AcqRel);
        self.touch();
        ClientGuard {
            daemon: self.clone(),
        }
    }

    /// Closes every session (persistent ones are detached, so their remote shells survive
    /// for a later daemon to re-adopt), removes the socket and lets [`run`] return. Idempotent.
    pub async fn shut_down(&self) {
        self.manager.shutdown_detaching_persistent().await;
        let _ = std::fs::remove_file(&self.paths.socket);
        self.stop.notify_one();
    }

    fn idle_for(&self) -> Option<Duration> {
        let busy =
            self.activity.clients.load(Ordering::Acquire) > 0 || !self.manager.names().is_empty();
        let last = *self.activity.last.lock().unwrap_or_else(|p| p.into_inner());
        (!busy).then(|| last.elapsed())
    }
}

/// Runs the daemon in this process until `daemon stop`, a signal, or `idle_timeout` with
/// no sessions and no clients. Returns `Ok` also when another daemon already owns the
/// socket (two clients auto-started one at the same time); `foreground` makes that an
/// error instead, since a person asked for this one.
pub fn run(paths: Paths, idle_timeout: Duration, foreground: bool) -> Result<(), CliError> {
    init_logging();
    paths.ensure_private_dir()?;
    let Some(lock) = take_lock(&paths)? else {
        tracing::info!(socket = %paths.socket.display(), "another daemon owns this socket; leaving");
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
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the tokio runtime", e))?;
    let result = runtime.block_on(serve(paths, idle_timeout));
    // Sessions' background tasks end with the runtime; the lock goes with the process.
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(lock);
    result
}

async fn serve(paths: Paths, idle_timeout: Duration) -> Result<(), CliError> {
    // We hold the lock, so a socket file still there belongs to a daemon that died.
    let _ = std::fs::remove_file(&paths.socket);
    let listener = bind_private(&paths)?;
    let daemon = Arc::new(Daemon {
        manager: SessionManager::new(),
        paths: paths.clone(),
        activity: Activity {
            clients: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        },
        stop: Notify::new(),
        // SAFETY: geteuid has no preconditions.
        uid: unsafe { libc::geteuid() },
    });
    tracing::info!(
        socket = %paths.socket.display(),
        pid = std::process::id(),
        version = crate::protocol::CRATE_VERSION,
        ?idle_timeout,
        "daemon listening"
    );
    tokio::spawn(idle_watch(daemon.clone(), idle_timeout));
    tokio::spawn(on_signals(daemon.clone()));
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
        }
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// Binds the socket with mode 0600. The umask covers the moment between bind and chmod
/// (the 0700 directory already keeps others out; this is the second fence).
fn bind_private(paths: &Paths) -> Result<UnixListener, CliError> {
    let err = |what: &str, e: std::io::Error| CliError::RuntimeDir {
        path: paths.dir.clone(),
        detail: format!("{what} {}: {e}", paths.socket.display()),
    };
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(&paths.socket);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| err("cannot listen on", e))?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("cannot chmod 600", e))?;
    Ok(listener)
}

/// Takes the daemon lock without waiting; `None` if another daemon holds it.
fn take_lock(paths: &Paths) -> Result<Option<File>, CliError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&paths.lock)
        .map_err(|e| CliError::RuntimeDir {
            path: paths.dir.clone(),
            detail: format!("cannot open the lock file {}: {e}", paths.lock.display()),
        })?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(CliError::RuntimeDir {
            path: paths.dir.clone(),
            detail: format!("cannot lock {}: {e}", paths.lock.display()),
        })
    }
}

/// Stops the daemon once it has had no session and no client for `idle`.
async fn idle_watch(daemon: Arc<Daemon>, idle: Duration) {
    // Checking a few times per idle period is precise enough and costs nothing.
    let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        if daemon.idle_for().is_some_and(|idle_for| idle_for >= idle) {
            tracing::info!(?idle, "idle without sessions; exiting");
            daemon.shut_down().await;
            return;
        }
    }
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
    daemon.shut_down().await;
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SSH_SESSION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
