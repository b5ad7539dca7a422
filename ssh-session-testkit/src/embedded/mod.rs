//! An in-process SSH server (russh) that serves local shells, for machines
//! without OpenSSH.

mod channel;
mod handler;
mod modes;
mod process;
mod signals;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server;
use russh::{MethodKind, MethodSet};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::keys::{random_ed25519, write_key_pair};
use handler::ConnectionHandler;

/// How long [`EmbeddedServer::shutdown`] waits for connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// An embedded SSH server (russh server side) on `127.0.0.1:<free port>`.
///
/// It authenticates exactly one public key ([`user_key`](Self::user_key),
/// generated at start, for any user name) and, for each session channel,
/// spawns a local shell in a PTY (`pty-req` + `shell`) or runs
/// `SHELL -c CMD` for exec requests (with or without a PTY), forwarding data
/// both ways. `window-change` resizes the PTY, the pty-req terminal modes are
/// applied (clients rely on `ECHO=0` turning echo off), client EOF closes the
/// child's stdin (for a PTY it does nothing, as with OpenSSH), the `signal`
/// request signals the child's process group, and when the child exits the
/// server sends `exit-status` (or `exit-signal`), then EOF and close.
///
/// The shell is `$SHELL` if set and present, else `/bin/bash`, else
/// `/bin/sh`; a shell request starts it as a login shell, like sshd. The
/// child gets a clean environment (`HOME`, `USER`, `LOGNAME`, `SHELL`,
/// `PATH`, `TERM` from the pty-req, plus `env` requests) and starts in
/// [`home`](Self::home), a temp dir with an empty `.bashrc`, so the user's
/// own (possibly slow or noisy) start-up files never run.
///
/// It runs on the tokio runtime that called [`start`](Self::start). Code that
/// blocks that runtime's threads (e.g. `std::process::Command::output` in a
/// `current_thread` test) starves the server; use a multi-thread runtime or
/// async process APIs.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let server = ssh_session_testkit::EmbeddedServer::start().await?;
/// println!("ssh -p {} -i {} {}@{}", server.port(), server.user_key().display(),
///          server.user(), server.host());
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EmbeddedServer {
    dir: TempDir,
    port: u16,
    user_key: PathBuf,
    known_hosts: PathBuf,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

/// What connection and channel tasks share with the server.
#[derive(Debug)]
struct State {
    authorized: PublicKey,
    user: String,
    home: PathBuf,
    shell: PathBuf,
    /// Process groups of running children, killed on shutdown.
    children: Mutex<HashSet<i32>>,
    /// Connection and channel tasks.
    tasks: Mutex<JoinSet<()>>,
    /// Set to `true` once, on shutdown.
    shutdown: watch::Sender<bool>,
}

impl State {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished tasks so a long benchmark does not accumulate them.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    fn kill_children(&self) {
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for &pgid in children.iter() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl EmbeddedServer {
    /// Generates a host key and one client key in a temp dir, binds
    /// 127.0.0.1:0 and starts serving on the current tokio runtime.
    pub async fn start() -> io::Result<EmbeddedServer> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-embedded-")
            .tempdir()?;
        let host_key = random_ed25519("ssh-session-testkit host")?;
        let client_key = random_ed25519("ssh-session-testkit user")?;
        write_key_pair(&host_key, &dir.path().join("host_key"))?;
        let user_key = dir.path().join("user_key");
        write_key_pair(&client_key, &user_key)?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        std::fs::write(home.join(".bashrc"), "")?;

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let host_public = host_key
            .public_key()
            .to_openssh()
            .map_err(io::Error::other)?;
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_public}\n"))?;

        let config = Arc::new(server::Config {
            keys: vec![host_key],
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            // A test server needs no protection against timing attacks, and
            // OpenSSH's first "none" probe would otherwise cost a second.
            auth_rejection_time: Duration::from_millis(20),
            auth_rejection_time_initial: Some(Duration::ZERO),
            // Idle sessions are normal in tests; they end with the server.
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        });
        let (shutdown, _) = watch::channel(false);
        let state = Arc::new(State {
            authorized: client_key.public_key().clone(),
            user: crate::current_user(),
            home,
            shell: pick_shell(),
            children: Mutex::new(HashSet::new()),
            tasks: Mutex::new(JoinSet::new()),
            shutdown,
        });
        let accept = tokio::spawn(accept_loop(listener, config, state.clone()));
        Ok(EmbeddedServer {
            dir,
            port,
            user_key,
            known_hosts,
            state,
            accept,
        })
    }

    /// Always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The current user's name; the server accepts any name, and children
    /// run as the user running the server.
    pub fn user(&self) -> String {
        self.state.user.clone()
    }

    /// The client's private key file (OpenSSH format, ed25519, no
    /// passphrase, mode 0600), with its `.pub` next to it.
    pub fn user_key(&self) -> &Path {
        &self.user_key
    }

    /// A known_hosts file with the line `[127.0.0.1]:PORT ssh-ed25519 ...`.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The `HOME` and working directory of children: a temp dir with an
    /// empty `.bashrc`.
    pub fn home(&self) -> &Path {
        &self.state.home
    }

    /// The temp dir holding keys, known_hosts and the home.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops accepting, disconnects clients, kills child processes and waits
    /// (a few seconds at most) for the server's tasks to end.
    pub async fn shutdown(self) {
        self.begin_shutdown();
        let mut tasks =
            std::mem::take(&mut *self.state.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
    }

    fn begin_shutdown(&self) {
        self.state.shutdown.send_replace(true);
        self.accept.abort();
        self.state.kill_children();
    }
}

impl Drop for EmbeddedServer {
    /// Stops accepting and kills the children at once. Connection tasks are
    /// left a short grace period to send a disconnect (so clients notice
    /// promptly instead of waiting on a silent socket) and are then aborted.
    fn drop(&mut self) {
        self.begin_shutdown();
        let mut tasks =
            std::mem::take(&mut *self.state.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
                        while tasks.join_next().await.is_some() {}
                    })
                    .await;
                    tasks.abort_all();
                });
            }
            Err(_) => tasks.abort_all(),
        }
    }
}

/// `$SHELL` if it exists, else bash, else sh.
fn pick_shell() -> PathBuf {
    std::env::var_os("SHELL")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.exists())
        .or_else(|| Some(PathBuf::from("/bin/bash")).filter(|p| p.exists()))
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// Resolves once shutdown has been requested (also if it already was).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // Err means the sender is gone, which also means the server is gone.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn accept_loop(listener: TcpListener, config: Arc<server::Config>, state: Arc<State>) {
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!("embedded server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        // Without it every small packet waits for the peer's delayed ACK.
        let _ = socket.set_nodelay(true);
        state.spawn(serve_connection(config.clone(), socket, state.clone()));
    }
}

async fn serve_connection(config: Arc<server::Config>, socket: TcpStream, state: Arc<State>) {
    let mut shutdown = state.shutdown.subscribe();
    let handler = ConnectionHandler {
        state: state.clone(),
    };
    let session = tokio::select! {
        s = server::run_stream(config, socket, handler) => match s {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("embedded server: handshake failed: {e}");
                return;
            }
        },
        _ = stopped(&mut shutdown) => return,
    };
    let handle = session.handle();
    tokio::select! {
        result = session => {
            if let Err(e) = result {
                tracing::debug!("embedded server: connection ended: {e}");
            }
        }
        _ = stopped(&mut shutdown) => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "server shutting down".into(), "en".into())
                .await;
        }
    }
}
