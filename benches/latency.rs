//! # ssh-session latency and throughput, measured side by side with OpenSSH
//!
//! One run starts one real OpenSSH `sshd` from the test kit (loopback, a throw-away HOME
//! whose `.bashrc` is empty, so no login script skews any row) and measures against it,
//! in this order. Sessions use the native russh backend unless a row says "OpenSSH
//! backend": `TransportKind::OpenSsh`, i.e. a ControlMaster (`ssh -M`) the library starts,
//! with the same key, known_hosts and no agent, and `-F /dev/null` so the user's
//! `~/.ssh/config` cannot interfere.
//!
//! 1. **exec round trip** on one persistent PTY session: `true` and `echo hi`, each after
//!    50 warm-up calls, 1000 timed calls (wall time of `Session::exec` per call).
//!
//!    1b. the same `true` (50 warm-up, 1000 timed) on a session over the **OpenSSH
//!    backend** (its own `OpenSshTransport`, opened like row 1's with
//!    `open_with_transport`, closed right after); ratio to row 1's p50, target ≤ 1.5×.
//! 2. **OpenSSH ControlMaster**: `ssh -S CTL host true`, 200 calls, one client process per
//!    call as a user or a shelling-out tool would do; compared with row 1's `true`.
//! 3. **a new exec channel per command** on the same russh connection that carries the
//!    session (`transport::run(.., "true")`), 300 calls: what the persistent shell saves.
//! 4. **connect → ready**: `SessionManager::open` (TCP, key exchange, auth, PTY, shell,
//!    priming) with a fresh name each time, then `close`, 30 times; against a cold
//!    `ssh host true` (no ControlMaster), 30 times. Each iteration also times a bare
//!    connect alone ("of which" row).
//!
//!    4b. the same **connect → ready over the OpenSSH backend** (30 times, 2 warm-up,
//!    with its own "of which: `OpenSshTransport::connect` alone" row); the ratio column
//!    holds row 4's russh figure.
//! 5. **output throughput** of `head -c N /dev/zero` (1 GB of NUL bytes by default)
//!    through the session's PTY with `exec_stream`, counting bytes without keeping them;
//!    against `ssh -tt` (the same path: a server-side PTY) and plain `ssh` (no PTY) as a
//!    reference, runs interleaved so load on the shared machine hits all three alike.
//! 6. **first byte** of a streaming command: `exec_stream("echo x; sleep 0.2")` to the
//!    first `StreamEvent::Output`, 50 times.
//! 7. **pooled session open**, for russh and then for the OpenSSH backend: a fresh
//!    `SessionManager` opens session 1 (untimed: it makes the connection), then sessions
//!    2..20 to the same host one after another, each `open` timed and every session kept
//!    open, so they all share session 1's connection on their own channels
//!    (`connection_count()` is reported, as is the count after `shutdown`); 5 such rounds
//!    after 1 warm-up round, 95 samples; target p50 ≤ 5 ms, ratio to the backend's
//!    connect → ready. Then where an open's time goes, 50 times each after 5 warm-up:
//!    `open_with_transport` alone on a fresh, unpooled connection each time ("session
//!    start alone"); and on one new bare connection of the same backend, first a login
//!    shell on a new PTY channel (the sessions' PTY) until `open_shell` returns and until
//!    its first output (the prompt: startup files read; the pooled open minus this is
//!    priming; the warm-up's figures, the connection's very first channel, are in the
//!    notes), then `bash -lc true` and `true` on exec channels without PTY (a login bash's
//!    startup cost; for russh the notes also say which HOME, `.bashrc` and /etc/profile.d
//!    the remote shell sees).
//!
//! Warm-ups are never part of the statistics; every number comes from this run. Every
//! call is bounded in time, and the sshd, the ControlMasters (the bench's own and the
//! OpenSSH backend's), all sessions and managers are shut down at the end of their row,
//! also when a row fails (a failed row is printed as `ERROR` with the reason); the last
//! line lists any process of the bench still running (expected: none).
//!
//! Environment: `SSH_SESSION_BENCH_QUICK=1` divides every N (and the default byte count)
//! by 10 for smoke runs (row 7: one round plus the warm-up round);
//! `SSH_SESSION_BENCH_BYTES=N` sets the throughput size.
//!
//! Run with `cargo bench -p ssh-session-benches`; the table goes to stdout, progress to
//! stderr.
//!
//! Code: this file holds the plan, the constants and the order of the rows; each group of
//! rows is built in its own module: `exec` (rows 1–3), `connect` (4, 4b), `streaming` (5,
//! 6), `pooled_rows` (7, measured by `pooled`); `openssh` drives the `ssh` client, `stats`
//! summarizes and prints, `report` writes the header and the machine facts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod connect;
mod exec;
mod openssh;
mod pooled;
mod pooled_rows;
mod report;
mod stats;
mod streaming;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ssh_session_core::transport::openssh::OpenSshTransport;
use ssh_session_core::transport::russh::RusshTransport;
use ssh_session_core::transport::{Transport, TransportKind};
use ssh_session_core::{ConnectOptions, Endpoint, SessionConfig, SessionManager, ShellSession};
use ssh_session_testkit::Sshd;

use report::{header, leftover_children, loadavg, login_shell, progress};
use stats::{markdown, Row};

/// Limit for any single latency call (exec, ssh process, connect).
const OP_LIMIT: Duration = Duration::from_secs(15);
/// Limit for one throughput transfer.
const STREAM_LIMIT: Duration = Duration::from_secs(300);
/// Default throughput size: 1 GB.
const DEFAULT_BYTES: u64 = 1_000_000_000;

/// Issue targets.
const EXEC_TARGET: Duration = Duration::from_micros(300);
/// ControlMaster p50 / our exec p50 must reach this.
const VS_CONTROLMASTER_TARGET: f64 = 20.0;
/// `SessionManager::open` p50.
const CONNECT_TARGET: Duration = Duration::from_millis(50);
/// Our PTY throughput / OpenSSH's (`ssh -tt`) must reach this.
const THROUGHPUT_TARGET: f64 = 0.8;
/// Time to the first streamed byte, p50.
const FIRST_BYTE_TARGET: Duration = Duration::from_millis(5);
/// OpenSSH backend exec p50 / russh exec p50 must stay at or below this.
const OPENSSH_EXEC_TARGET: f64 = 1.5;
/// `SessionManager::open` of a further session on a pooled connection, p50.
const POOLED_OPEN_TARGET: Duration = Duration::from_millis(5);

/// How much to measure, from the environment.
struct Plan {
    /// `SSH_SESSION_BENCH_QUICK=1`: every N divided by 10.
    quick: bool,
    /// Bytes per throughput transfer.
    bytes: u64,
}

impl Plan {
    /// Reads `SSH_SESSION_BENCH_QUICK` and `SSH_SESSION_BENCH_BYTES`.
    fn from_env() -> Result<Plan, String> {
        let quick =
            std::env::var("SSH_SESSION_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let bytes = match std::env::var("SSH_SESSION_BENCH_BYTES") {
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    format!("SSH_SESSION_BENCH_BYTES={v:?}: expected a positive byte count")
                })?,
            Err(_) if quick => DEFAULT_BYTES / 10,
            Err(_) => DEFAULT_BYTES,
        };
        Ok(Plan { quick, bytes })
    }

    /// `full` in a full run, a tenth of it (at least 1) in a quick one.
    fn n(&self, full: usize) -> usize {
        if self.quick {
            full.div_ceil(10)
        } else {
            full
        }
    }
}

/// Runs the bench on a multi-threaded tokio runtime; exits non-zero if it cannot run at all.
fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latency bench: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the sshd and the session, measures every row, cleans up, prints the table.
async fn bench() -> Result<(), String> {
    let plan = Plan::from_env()?;
    let load_before = loadavg();
    progress("starting sshd (test kit, loopback)");
    let sshd = Sshd::start().map_err(|e| format!("cannot start sshd: {e}"))?;
    let opts = connect_options(&sshd);
    let openssh_opts = openssh_options(&sshd);
    let transport = Arc::new(
        bounded(RusshTransport::connect(&opts), "connect")
            .await?
            .map_err(|e| e.to_string())?,
    );
    let manager = SessionManager::new();
    let dyn_transport: Arc<dyn Transport> = transport.clone();
    let session = bounded(
        manager.open_with_transport(
            "bench",
            endpoint(&sshd),
            dyn_transport,
            SessionConfig::default(),
        ),
        "open the bench session",
    )
    .await?
    .map_err(|e| e.to_string())?;

    let bench = Bench {
        plan: &plan,
        sshd: &sshd,
        opts: &opts,
        openssh_opts: &openssh_opts,
        manager: &manager,
        session: &session,
        transport: transport.as_ref(),
    };
    let rows = bench.all_rows().await;

    progress("cleaning up: sessions, connection, sshd");
    manager.shutdown().await;
    let sshd_port = sshd.port();
    let home = sshd.home().display().to_string();
    let shell = login_shell(&sshd.user());
    drop(sshd);

    println!("{}", header(&plan, sshd_port, &home, &shell, &load_before));
    println!();
    print!("{}", markdown(&rows));
    println!();
    println!(
        "load average after: {}; processes of this bench still running: {}",
        loadavg(),
        leftover_children()
    );
    Ok(())
}

/// What every measurement needs.
struct Bench<'a> {
    /// How much to measure.
    plan: &'a Plan,
    /// The one sshd every row runs against.
    sshd: &'a Sshd,
    /// How to connect to it with russh.
    opts: &'a ConnectOptions,
    /// How to connect to it with the OpenSSH backend.
    openssh_opts: &'a ConnectOptions,
    /// Holds the bench session; rows 1b, 4 and 4b open and close their sessions here too.
    manager: &'a SessionManager,
    /// The persistent session of rows 1, 5 and 6.
    session: &'a ShellSession,
    /// The connection carrying `session`, for row 3's exec channels.
    transport: &'a RusshTransport,
}

impl Bench<'_> {
    /// All rows in order; a failed measurement becomes an `ERROR` row and the rest go on.
    async fn all_rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        self.exec_rows(&mut rows).await;
        // Row 7 states each backend's pooled open as a share of its connect → ready.
        let connect = self.connect_rows(&mut rows).await;
        rows.extend(self.throughput_rows().await);
        rows.push(self.first_byte_row().await);
        rows.extend(
            self.pooled_rows("russh", self.opts, connect.russh, true)
                .await,
        );
        rows.extend(
            self.pooled_rows("OpenSSH backend", self.openssh_opts, connect.openssh, false)
                .await,
        );
        rows
    }
}

/// Awaits `fut` for at most [`OP_LIMIT`].
async fn bounded<T>(fut: impl Future<Output = T>, what: &str) -> Result<T, String> {
    tokio::time::timeout(OP_LIMIT, fut)
        .await
        .map_err(|_| format!("{what}: no answer within {OP_LIMIT:?}"))
}

/// A new connection with the backend `opts` asks for, bounded by [`OP_LIMIT`].
async fn connect_bare(opts: &ConnectOptions) -> Result<Arc<dyn Transport>, String> {
    Ok(match opts.transport {
        TransportKind::Russh => Arc::new(
            bounded(RusshTransport::connect(opts), "russh connect")
                .await?
                .map_err(|e| e.to_string())?,
        ),
        TransportKind::OpenSsh => Arc::new(
            bounded(OpenSshTransport::connect(opts), "OpenSSH connect")
                .await?
                .map_err(|e| e.to_string())?,
        ),
    })
}

/// Where the kit's sshd is, as a session reports it.
fn endpoint(sshd: &Sshd) -> Endpoint {
    Endpoint::new(sshd.host(), sshd.user(), sshd.port())
}

/// Connect options for the kit's sshd with the OpenSSH backend (its `ssh` gets `-F
/// /dev/null`, the key with `IdentitiesOnly`, strict known_hosts, no agent).
fn openssh_options(sshd: &Sshd) -> ConnectOptions {
    sshd.connect_options(TransportKind::OpenSsh)
        .connect_timeout(OP_LIMIT)
}

/// Connect options for the kit's sshd: its ed25519 user key and known_hosts, no agent.
fn connect_options(sshd: &Sshd) -> ConnectOptions {
    sshd.connect_options(TransportKind::Russh)
        .connect_timeout(OP_LIMIT)
}
