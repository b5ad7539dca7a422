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
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod openssh;
mod pooled;
mod stats;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ssh_session_core::transport::openssh::OpenSshTransport;
use ssh_session_core::transport::russh::RusshTransport;
use ssh_session_core::transport::{Transport, TransportKind};
use ssh_session_core::{
    ConnectOptions, Endpoint, ExecOptions, Interrupt, ReadOptions, Session, SessionConfig,
    SessionManager, ShellSession, StreamEvent,
};
use ssh_session_testkit::Sshd;

use openssh::ControlMaster;
use stats::{markdown, median, ms, times, Row, Stats, Verdict};

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
        let plan = self.plan;
        let mut rows = Vec::new();

        // 1. exec round trip on the persistent session.
        let (warm, n) = (plan.n(50), plan.n(1000));
        progress(&format!("1. session exec: {warm} warm-up + {n} each"));
        let exec_true = exec_samples(self.session, "true", b"", warm, n).await;
        let exec_true_p50 = exec_true.as_ref().ok().map(|s| s.p50);
        for (name, result) in [
            ("session exec `true`", exec_true),
            (
                "session exec `echo hi`",
                exec_samples(self.session, "echo hi", b"hi\n", warm, n).await,
            ),
        ] {
            rows.push(match result {
                Ok(s) => Row::latency(
                    name,
                    &s,
                    format!(
                        "persistent PTY shell (russh), warm-up {warm}; max {}",
                        ms(s.max)
                    ),
                )
                .target("p50 ≤ 0.3 ms", Verdict::check(s.p50 <= EXEC_TARGET)),
                Err(e) => Row::error(name, &e),
            });
        }

        // 1b. The same exec round trip on a session over the OpenSSH backend.
        progress(&format!(
            "1b. session exec over the OpenSSH backend: {warm} warm-up + {n}"
        ));
        let name = "session exec `true` (OpenSSH backend)";
        rows.push(match self.openssh_exec_samples(warm, n).await {
            Ok(s) => {
                let mut row = Row::latency(
                    name,
                    &s,
                    format!(
                        "persistent PTY shell over its own `OpenSshTransport` (a \
                         ControlMaster; the shell's channel opened through the master's \
                         socket), warm-up {warm}; max {}",
                        ms(s.max)
                    ),
                );
                match exec_true_p50 {
                    Some(russh) => {
                        let ratio = s.p50.as_secs_f64() / russh.as_secs_f64();
                        row.ratio = format!("{} of russh `true`", times(ratio));
                        row.target(
                            "p50 ≤ 1.5× russh exec",
                            Verdict::check(ratio <= OPENSSH_EXEC_TARGET),
                        )
                    }
                    None => row.target("p50 ≤ 1.5× russh exec", Verdict::Error),
                }
            }
            Err(e) => Row::error(name, &e),
        });

        // 2. OpenSSH ControlMaster, one client process per call.
        let (warm, n) = (plan.n(5), plan.n(200));
        progress(&format!("2. ControlMaster: {warm} warm-up + {n}"));
        let name = "OpenSSH ControlMaster `ssh -S ctl host true`";
        rows.push(match self.controlmaster_samples(warm, n).await {
            Ok((s, pid)) => {
                let mut row = Row::latency(
                    name,
                    &s,
                    format!(
                        "new `ssh` process per call over one master (pid {pid}); max {}",
                        ms(s.max)
                    ),
                );
                match exec_true_p50 {
                    Some(ours) => {
                        let ratio = s.p50.as_secs_f64() / ours.as_secs_f64();
                        row.ratio = format!("{} of session `true`", times(ratio));
                        row.target(
                            "≥ 20× session exec",
                            Verdict::check(ratio >= VS_CONTROLMASTER_TARGET),
                        )
                    }
                    None => row.target("≥ 20× session exec", Verdict::Error),
                }
            }
            Err(e) => Row::error(name, &e),
        });

        // 3. A new exec channel per command on the session's own connection.
        let (warm, n) = (plan.n(20), plan.n(300));
        progress(&format!(
            "3. exec channel per command: {warm} warm-up + {n}"
        ));
        let name = "new exec channel per command (`transport::run`)";
        let channel = pooled::exec_channel(self.transport, "true", warm, n).await;
        rows.push(match channel {
            Ok(s) => {
                let mut row = Row::latency(
                    name,
                    &s,
                    format!(
                        "same russh connection as the session, no PTY, `bash -c true` each; max {}",
                        ms(s.max)
                    ),
                );
                if let Some(ours) = exec_true_p50 {
                    row.ratio = format!(
                        "{} of session `true`",
                        times(s.p50.as_secs_f64() / ours.as_secs_f64())
                    );
                }
                row
            }
            Err(e) => Row::error(name, &e),
        });

        // 4. connect → ready, and a cold ssh for comparison.
        let (warm, n) = (plan.n(2), plan.n(30));
        progress(&format!(
            "4. connect → ready and cold ssh: {warm} warm-up + {n} each"
        ));
        let name = "connect → ready (`SessionManager::open`)";
        let open = self.open_samples(self.opts, warm, n).await;
        let open_p50 = open.as_ref().ok().map(|o| o.open.p50);
        match open {
            Ok(o) => {
                rows.push(
                    Row::latency(
                        name,
                        &o.open,
                        format!(
                            "TCP + kex + ed25519 auth + PTY + shell + priming, fresh name each; \
                             max {}; `close` afterwards (not in this row) p50 {}",
                            ms(o.open.max),
                            ms(o.close.p50)
                        ),
                    )
                    .target("p50 ≤ 50 ms", Verdict::check(o.open.p50 <= CONNECT_TARGET)),
                );
                let mut part = Row::latency(
                    "  of which: `RusshTransport::connect` alone",
                    &o.connect,
                    format!(
                        "TCP + kex + auth only, timed in the same iterations; the rest of \
                         connect → ready (≈ {} at p50) is channel + PTY + shell + priming",
                        ms(o.open.p50.saturating_sub(o.connect.p50))
                    ),
                );
                part.ratio = format!(
                    "{:.0} % of connect → ready",
                    100.0 * o.connect.p50.as_secs_f64() / o.open.p50.as_secs_f64()
                );
                rows.push(part);
            }
            Err(e) => rows.push(Row::error(name, &e)),
        }
        let name = "cold `ssh host true` (no ControlMaster)";
        rows.push(match self.cold_samples(warm, n).await {
            Ok(s) => {
                let mut row = Row::latency(
                    name,
                    &s,
                    format!(
                        "process + TCP + kex + auth + exec + teardown; max {}",
                        ms(s.max)
                    ),
                );
                if let Some(ours) = open_p50 {
                    row.ratio = format!(
                        "{} of connect → ready",
                        times(s.p50.as_secs_f64() / ours.as_secs_f64())
                    );
                }
                row
            }
            Err(e) => Row::error(name, &e),
        });

        // 4b. connect → ready over the OpenSSH backend.
        progress(&format!(
            "4b. connect → ready over the OpenSSH backend: {warm} warm-up + {n}"
        ));
        let name = "connect → ready (OpenSSH backend)";
        let openssh_open = self.open_samples(self.openssh_opts, warm, n).await;
        let openssh_open_p50 = openssh_open.as_ref().ok().map(|o| o.open.p50);
        match openssh_open {
            Ok(o) => {
                let mut row = Row::latency(
                    name,
                    &o.open,
                    format!(
                        "`SessionManager::open` with `TransportKind::OpenSsh`: `ssh -M` \
                         ControlMaster (process + TCP + kex + auth) + mux check + shell channel \
                         through the master + PTY + shell + priming, fresh name each; max {}; \
                         `close` afterwards (not in this row) p50 {}",
                        ms(o.open.max),
                        ms(o.close.p50)
                    ),
                );
                if let Some(russh) = open_p50 {
                    row.ratio = format!(
                        "{} of russh connect → ready ({})",
                        times(o.open.p50.as_secs_f64() / russh.as_secs_f64()),
                        ms(russh)
                    );
                }
                rows.push(row);
                let mut part = Row::latency(
                    "  of which: `OpenSshTransport::connect` alone",
                    &o.connect,
                    format!(
                        "master started and answering the mux protocol, timed in the same \
                         iterations; the rest (≈ {} at p50) is the shell channel + priming",
                        ms(o.open.p50.saturating_sub(o.connect.p50))
                    ),
                );
                part.ratio = format!(
                    "{:.0} % of connect → ready",
                    100.0 * o.connect.p50.as_secs_f64() / o.open.p50.as_secs_f64()
                );
                rows.push(part);
            }
            Err(e) => rows.push(Row::error(name, &e)),
        }

        // 5. Output throughput.
        rows.extend(self.throughput_rows().await);

        // 6. First byte of a streaming command.
        let (warm, n) = (plan.n(5), plan.n(50));
        progress(&format!("6. first byte: {warm} warm-up + {n}"));
        let name = "first byte `exec_stream(\"echo x; sleep 0.2\")`";
        rows.push(match self.first_byte_samples(warm, n).await {
            Ok(s) => Row::latency(
                name,
                &s,
                format!("call → first `StreamEvent::Output`; max {}", ms(s.max)),
            )
            .target("p50 ≤ 5 ms", Verdict::check(s.p50 <= FIRST_BYTE_TARGET)),
            Err(e) => Row::error(name, &e),
        });

        // 7. Further sessions on a pooled connection, and what one open is made of.
        rows.extend(self.pooled_rows("russh", self.opts, open_p50, true).await);
        rows.extend(
            self.pooled_rows(
                "OpenSSH backend",
                self.openssh_opts,
                openssh_open_p50,
                false,
            )
            .await,
        );
        rows
    }

    /// Row 7 for one backend: pooled opens, then on a bare connection of the same backend a
    /// login shell on a PTY channel to its prompt, and `true` / `bash -lc true` on exec
    /// channels, to show where the time of an open goes.
    async fn pooled_rows(
        &self,
        label: &str,
        opts: &ConnectOptions,
        connect_ready_p50: Option<Duration>,
        probe_environment: bool,
    ) -> Vec<Row> {
        let plan = self.plan;
        let (warm_rounds, rounds) = (1, plan.n(5));
        let per = pooled::SESSIONS_PER_ROUND;
        progress(&format!(
            "7. pooled open ({label}): {warm_rounds} warm-up + {rounds} round(s) of {per} sessions"
        ));
        let mut rows = Vec::new();
        let name = format!("pooled session open, 2nd..{per}th ({label})");
        let pooled = pooled::pooled_opens(opts, warm_rounds, rounds).await;
        let open_p50 = pooled.as_ref().ok().map(|p| p.open.p50);
        rows.push(match pooled {
            Ok(p) => {
                let shared = p.connections.iter().all(|&c| c == 1);
                let clean = p.left_after_shutdown.iter().all(|&c| c == 0);
                let mut row = Row::latency(
                    &name,
                    &p.open,
                    format!(
                        "fresh `SessionManager` per round; session 1 untimed (connect + open, \
                         p50 {}); sessions 2..{per} timed one after another and kept open; \
                         {rounds} round(s) + {warm_rounds} warm-up; `connection_count()` with \
                         {per} open: {:?}{}; after `shutdown`: {:?}{}; max {}",
                        ms(p.first.p50),
                        p.connections,
                        if shared {
                            ""
                        } else {
                            " (NOT one shared connection!)"
                        },
                        p.left_after_shutdown,
                        if clean {
                            ""
                        } else {
                            " (connections left open!)"
                        },
                        ms(p.open.max)
                    ),
                )
                .target(
                    "p50 ≤ 5 ms",
                    Verdict::check(p.open.p50 <= POOLED_OPEN_TARGET),
                );
                if let Some(ready) = connect_ready_p50 {
                    row.ratio = format!(
                        "{} of connect → ready",
                        times(p.open.p50.as_secs_f64() / ready.as_secs_f64())
                    );
                }
                row
            }
            Err(e) => Row::error(&name, &e),
        });

        let (warm, n) = (plan.n(5), plan.n(50));
        progress(&format!(
            "7. where a pooled open goes ({label}): {warm} warm-up + {n} each"
        ));
        // Measured in this order: the shell first, so that its warm-up is the first channel
        // of a brand-new connection; then the exec channels; then the unpooled starts (each
        // on its own new connection). Rows are shown in breakdown order.
        let shell = match connect_bare(opts).await {
            Ok(transport) => {
                let shell = pooled::shell_start(transport.as_ref(), warm, n).await;
                let bare_true = pooled::exec_channel(transport.as_ref(), "true", warm, n).await;
                let login =
                    pooled::exec_channel(transport.as_ref(), "bash -lc true", warm, n).await;
                let environment = if probe_environment {
                    format!(
                        "; remote {}",
                        pooled::remote_environment(transport.as_ref()).await
                    )
                } else {
                    String::new()
                };
                let _ = bounded(transport.close(), "close the bare connection").await;
                Ok((shell, bare_true, login, environment))
            }
            Err(e) => Err(e),
        };
        let started = pooled::session_start(opts, &endpoint(self.sshd), warm, n).await;

        let share = |p50: Duration| match open_p50 {
            Some(open) => format!(
                "{:.0} % of pooled open",
                100.0 * p50.as_secs_f64() / open.as_secs_f64()
            ),
            None => "—".into(),
        };
        let (shell, bare_true, login, environment) = match shell {
            Ok(measured) => measured,
            Err(e) => {
                let e = format!("bare connection: {e}");
                (Err(e.clone()), Err(e.clone()), Err(e), String::new())
            }
        };

        let name = "  of which: session start alone, unpooled";
        rows.push(match started {
            Ok(s) => {
                let mut row = Row::latency(
                    name,
                    &s,
                    format!(
                        "`open_with_transport` on a new bare {label} connection each time \
                         (connected untimed just before), then `close`: channel + PTY + login \
                         shell + priming, no pool, but also the first channel of a brand-new \
                         connection; pooled open − this ≈ {} at p50; max {}",
                        open_p50
                            .map(|o| signed_ms(o, s.p50))
                            .unwrap_or_else(|| "?".into()),
                        ms(s.max)
                    ),
                );
                row.ratio = share(s.p50);
                row
            }
            Err(e) => Row::error(name, &e),
        });

        let name = "  of which: login shell on a new PTY channel, to its prompt";
        rows.push(match shell {
            Ok(s) => {
                let mut row = Row::latency(
                    name,
                    &s.prompt,
                    format!(
                        "a session's start without priming, on one bare {label} connection: \
                         `open_shell` (channel + PTY + shell request{}) returns at p50 {}, the \
                         login shell's first output (its prompt: startup files read) comes at \
                         p50 {}; pooled open − this ≈ {} is priming (prime script typed into \
                         bash, ready marker, probe); the connection's very first channel, \
                         opened right after connect (warm-up, not counted): `open_shell` \
                         returned after {}, prompt after {}{}",
                        if label == "russh" {
                            ""
                        } else {
                            ", through the master's socket"
                        },
                        ms(s.opened.p50),
                        ms(s.prompt.p50),
                        open_p50
                            .map(|o| signed_ms(o, s.prompt.p50))
                            .unwrap_or_else(|| "?".into()),
                        ms(s.first_channel.0),
                        ms(s.first_channel.1),
                        if s.not_ended == 0 {
                            String::new()
                        } else {
                            format!(
                                "; {} of {} channels had not ended {:?} after `exit` \
                                 (closed, and left to the connection's close)",
                                s.not_ended,
                                warm + n,
                                pooled::END_WAIT
                            )
                        }
                    ),
                );
                row.ratio = share(s.prompt.p50);
                row
            }
            Err(e) => Row::error(name, &e),
        });

        let name = "  compare: exec channel `bash -lc true` (no PTY)";
        rows.push(match login {
            Ok(s) => {
                let baseline = match bare_true {
                    Ok(t) => format!(
                        "exec channel `true` (channel + `bash -c true`{}) p50 {}, so a \
                         non-interactive login bash's startup (/etc/profile, \
                         ~/.bash_profile or ~/.profile) costs ≈ {}",
                        if label == "russh" {
                            ""
                        } else {
                            ", native mux, no local process"
                        },
                        ms(t.p50),
                        signed_ms(s.p50, t.p50)
                    ),
                    Err(e) => format!("exec channel `true`: {e}"),
                };
                let mut row = Row::latency(
                    name,
                    &s,
                    format!("same bare connection; {baseline}{environment}"),
                );
                row.ratio = share(s.p50);
                row
            }
            Err(e) => Row::error(name, &e),
        });
        rows
    }

    /// Row 1b: a session over its own `OpenSshTransport`, opened like the bench session
    /// (`open_with_transport`), exec `true`; the session and its master are closed after.
    async fn openssh_exec_samples(&self, warm: usize, n: usize) -> Result<Stats, String> {
        let transport = connect_bare(self.openssh_opts).await?;
        let name = "bench-openssh";
        let opened = bounded(
            self.manager.open_with_transport(
                name,
                endpoint(self.sshd),
                transport.clone(),
                SessionConfig::default(),
            ),
            "open the OpenSSH session",
        )
        .await;
        let session = match opened {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => {
                let _ = bounded(transport.close(), "close the OpenSSH connection").await;
                return Err(e.to_string());
            }
            Err(e) => {
                let _ = bounded(transport.close(), "close the OpenSSH connection").await;
                return Err(e);
            }
        };
        let result = exec_samples(&session, "true", b"", warm, n).await;
        let _ = bounded(self.manager.close(name), "close the OpenSSH session").await;
        let _ = bounded(transport.close(), "close the OpenSSH connection").await;
        result
    }

    /// Row 2: starts a ControlMaster, times `ssh -S ctl host true`, shuts the master down.
    async fn controlmaster_samples(&self, warm: usize, n: usize) -> Result<(Stats, u32), String> {
        let mut master = ControlMaster::start(self.sshd).await?;
        let pid = master.pid().unwrap_or(0);
        let mut samples = Vec::with_capacity(n);
        for i in 0..warm + n {
            let took = master.run_true(OP_LIMIT).await?;
            if i >= warm {
                samples.push(took);
            }
        }
        master.stop();
        Ok((Stats::of(&samples).ok_or("no samples")?, pid))
    }

    /// Rows 4 and 4b: `SessionManager::open` to a ready session (timed), then `close`
    /// (timed apart). Each iteration first times a bare connect of the same backend (then
    /// closes it), so the open time can be split into connection and shell start.
    async fn open_samples(
        &self,
        opts: &ConnectOptions,
        warm: usize,
        n: usize,
    ) -> Result<OpenSamples, String> {
        let mut opens = Vec::with_capacity(n);
        let mut closes = Vec::with_capacity(n);
        let mut connects = Vec::with_capacity(n);
        for i in 0..warm + n {
            let start = Instant::now();
            let bare = connect_bare(opts).await?;
            let connected = start.elapsed();
            bounded(bare.close(), "close the bare connection").await?;

            let name = format!("bench-open-{}-{i}", opts.transport);
            let start = Instant::now();
            bounded(
                self.manager
                    .open(&name, opts.clone(), SessionConfig::default()),
                "open",
            )
            .await?
            .map_err(|e| e.to_string())?;
            let opened = start.elapsed();
            let start = Instant::now();
            bounded(self.manager.close(&name), "close")
                .await?
                .map_err(|e| e.to_string())?;
            let closed = start.elapsed();
            if i >= warm {
                connects.push(connected);
                opens.push(opened);
                closes.push(closed);
            }
        }
        Ok(OpenSamples {
            open: Stats::of(&opens).ok_or("no samples")?,
            close: Stats::of(&closes).ok_or("no samples")?,
            connect: Stats::of(&connects).ok_or("no samples")?,
        })
    }

    /// Row 4, OpenSSH: a cold `ssh host true` each time.
    async fn cold_samples(&self, warm: usize, n: usize) -> Result<Stats, String> {
        let mut samples = Vec::with_capacity(n);
        for i in 0..warm + n {
            let took = openssh::cold_true(self.sshd, OP_LIMIT).await?;
            if i >= warm {
                samples.push(took);
            }
        }
        Stats::of(&samples).ok_or_else(|| "no samples".into())
    }

    /// Row 5: throughput of ours (PTY), `ssh -tt` (PTY) and `ssh` (no PTY), interleaved.
    async fn throughput_rows(&self) -> Vec<Row> {
        let bytes = self.plan.bytes;
        let runs = if self.plan.quick { 1 } else { 3 };
        progress(&format!(
            "5. throughput: {runs} run(s) × 3 paths × {bytes} bytes"
        ));
        let command = format!("head -c {bytes} /dev/zero");
        let mut ours = Vec::new();
        let mut tty = Vec::new();
        let mut plain = Vec::new();
        let mut errors: [Option<String>; 3] = [None, None, None];
        for run in 0..runs {
            progress(&format!("   run {} / {runs}", run + 1));
            match self.session_stream(&command).await {
                Ok(t) => ours.push(t),
                Err(e) => errors[0] = Some(e),
            }
            for (tty_flag, out, err) in [(true, &mut tty, 1), (false, &mut plain, 2)] {
                match openssh::stream(self.sshd, tty_flag, &command, STREAM_LIMIT).await {
                    Ok(s) => out.push(Transfer {
                        bytes: s.bytes,
                        to_first_byte: s.to_first_byte,
                        transfer: s.transfer,
                    }),
                    Err(e) => errors[err] = Some(e),
                }
            }
        }
        let names = [
            "throughput: session PTY `exec_stream`",
            "throughput: OpenSSH `ssh -tt` (PTY, same path)",
            "throughput: OpenSSH `ssh` (no PTY, reference)",
        ];
        let notes = [
            "NULs from /dev/zero via the session's PTY, counted per `StreamEvent::Output`, not kept",
            "new `ssh -tt` per run, stdout read by the bench in 256 KiB reads and counted",
            "new `ssh` per run, exec channel without PTY, stdout counted",
        ];
        let sets = [&ours, &tty, &plain];
        let rate_of = |set: &Vec<Transfer>| -> Option<f64> {
            (!set.is_empty())
                .then(|| median(&set.iter().map(Transfer::mb_per_s).collect::<Vec<_>>()))
        };
        let ours_rate = rate_of(&ours);
        let mut rows = Vec::new();
        for i in 0..3 {
            let set = sets[i];
            if let Some(e) = &errors[i] {
                rows.push(Row::error(names[i], e));
                continue;
            }
            let Some(rate) = rate_of(set) else {
                rows.push(Row::error(names[i], "no runs"));
                continue;
            };
            let slowest = set
                .iter()
                .map(Transfer::mb_per_s)
                .fold(f64::INFINITY, f64::min);
            let short: Vec<String> = set
                .iter()
                .filter(|t| t.bytes != bytes)
                .map(|t| format!("received {} of {bytes} bytes!", t.bytes))
                .collect();
            let setup = median(
                &set.iter()
                    .map(|t| t.to_first_byte.as_secs_f64() * 1e3)
                    .collect::<Vec<_>>(),
            );
            let runs_text: Vec<String> =
                set.iter().map(|t| format!("{:.0}", t.mb_per_s())).collect();
            let mut row = Row {
                name: names[i].into(),
                p50: format!("{rate:.1} MB/s"),
                p90: format!("{slowest:.1} MB/s"),
                mean: "—".into(),
                n: format!("{} × {bytes} B", set.len()),
                ratio: "—".into(),
                target: "—".into(),
                verdict: Verdict::Info,
                notes: format!(
                    "{}; rate over first→last byte (MB = 10^6 B); p50 = median run, p90 column = \
                     slowest run; runs: {} MB/s; start → first byte p50 {setup:.1} ms{}",
                    notes[i],
                    runs_text.join(", "),
                    if short.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", short.join("; "))
                    }
                ),
            };
            if let Some(ours_rate) = ours_rate {
                match i {
                    0 => {
                        if let Some(tty_rate) = rate_of(&tty) {
                            let ratio = ours_rate / tty_rate;
                            row.ratio = format!("{} of `ssh -tt`", times(ratio));
                            row = row.target(
                                "≥ 0.8× OpenSSH same path",
                                Verdict::check(ratio >= THROUGHPUT_TARGET && short.is_empty()),
                            );
                        }
                    }
                    _ => row.ratio = format!("session = {} of this", times(ours_rate / rate)),
                }
            }
            rows.push(row);
        }
        rows
    }

    /// Row 5, ours: one `exec_stream` of `command`, counting bytes. On timeout the command
    /// is killed so the session stays usable for the next rows.
    async fn session_stream(&self, command: &str) -> Result<Transfer, String> {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + STREAM_LIMIT;
        let mut stream = bounded(
            self.session
                .exec_stream(command, ExecOptions::timeout(STREAM_LIMIT)),
            "exec_stream",
        )
        .await?
        .map_err(|e| e.to_string())?;
        let (mut bytes, mut first, mut last) = (0u64, None, start);
        let finished = loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(StreamEvent::Output(data))) => {
                    last = Instant::now();
                    first.get_or_insert(last);
                    bytes += data.len() as u64;
                }
                Ok(Some(StreamEvent::Finished(result))) => break result,
                Ok(None) => return Err("the stream ended without Finished".into()),
                Err(_) => {
                    drop(stream);
                    let _ = bounded(self.session.interrupt(Interrupt::Kill), "interrupt").await;
                    let _ = self
                        .session
                        .read_output(ReadOptions {
                            wait: Duration::from_secs(10),
                            return_on_output: false,
                        })
                        .await;
                    return Err(format!(
                        "not finished within {STREAM_LIMIT:?}: {bytes} bytes so far ({:.1} MB/s); killed",
                        bytes as f64 / start.elapsed().as_secs_f64() / 1e6
                    ));
                }
            }
        };
        if finished.exit_code != Some(0) || finished.output_bytes != bytes {
            return Err(format!(
                "exit {:?}, {} bytes reported, {bytes} streamed",
                finished.exit_code, finished.output_bytes
            ));
        }
        let first = first.unwrap_or(last);
        Ok(Transfer {
            bytes,
            to_first_byte: first - start,
            transfer: last - first,
        })
    }

    /// Row 6: time from the `exec_stream` call to the first non-empty output event.
    async fn first_byte_samples(&self, warm: usize, n: usize) -> Result<Stats, String> {
        let mut samples = Vec::with_capacity(n);
        for i in 0..warm + n {
            let start = Instant::now();
            let mut stream = bounded(
                self.session
                    .exec_stream("echo x; sleep 0.2", ExecOptions::timeout(OP_LIMIT)),
                "exec_stream",
            )
            .await?
            .map_err(|e| e.to_string())?;
            let mut first = None;
            loop {
                match bounded(stream.next(), "first byte").await? {
                    Some(StreamEvent::Output(data)) if data.is_empty() => {}
                    Some(StreamEvent::Output(data)) => {
                        if first.is_none() {
                            first = Some(start.elapsed());
                            if !data.starts_with(b"x") {
                                return Err(format!("first output was {data:?}, not \"x\""));
                            }
                        }
                    }
                    Some(StreamEvent::Finished(r)) if r.exit_code == Some(0) => break,
                    Some(StreamEvent::Finished(r)) => {
                        return Err(format!("exit {:?}", r.exit_code));
                    }
                    None => return Err("the stream ended without Finished".into()),
                }
            }
            let first = first.ok_or("finished without output")?;
            if i >= warm {
                samples.push(first);
            }
        }
        Stats::of(&samples).ok_or_else(|| "no samples".into())
    }
}

/// Rows 1 and 1b: `exec` wall time per call, output and exit code checked after each timing.
async fn exec_samples(
    session: &ShellSession,
    command: &str,
    expect: &[u8],
    warm: usize,
    n: usize,
) -> Result<Stats, String> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..warm + n {
        let start = Instant::now();
        let result = bounded(
            session.exec(command, ExecOptions::timeout(OP_LIMIT)),
            command,
        )
        .await?
        .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if result.is_running() || result.exit_code != Some(0) || result.output != expect {
            return Err(format!(
                "{command:?}: unexpected result {:?} exit {:?}",
                result.text(),
                result.exit_code
            ));
        }
        if i >= warm {
            samples.push(took);
        }
    }
    Stats::of(&samples).ok_or_else(|| "no samples".into())
}

/// Row 4's samples.
struct OpenSamples {
    /// `SessionManager::open` to a ready session.
    open: Stats,
    /// `SessionManager::close` right after.
    close: Stats,
    /// A bare connect of the same backend.
    connect: Stats,
}

/// One throughput transfer.
struct Transfer {
    /// Bytes received.
    bytes: u64,
    /// From the start of the call (or process) to the first byte.
    to_first_byte: Duration,
    /// From the first byte to the last.
    transfer: Duration,
}

impl Transfer {
    /// Rate over first→last byte, in 10^6 bytes per second.
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.transfer.as_secs_f64().max(1e-9) / 1e6
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

/// `a − b` in milliseconds, with a sign when negative.
fn signed_ms(a: Duration, b: Duration) -> String {
    if a >= b {
        ms(a - b)
    } else {
        format!("−{}", ms(b - a))
    }
}

/// A progress line on stderr (stdout holds only the results). Each line carries the seconds since the first one, so slow phases show.
fn progress(what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let since = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench {since:>6.1}s] {what}");
}

/// The header: when, where, with what, and the targets.
fn header(plan: &Plan, port: u16, home: &str, shell: &str, load: &str) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let openssh = std::process::Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let mode = if plan.quick {
        "QUICK (SSH_SESSION_BENCH_QUICK=1: every N / 10)"
    } else {
        "full"
    };
    format!(
        "## ssh-session latency bench — {date}\n\n\
         kernel {kernel}, {cpus} CPUs, {openssh}; load average at start: {load}; mode: {mode}\n\n\
         server: the test kit's OpenSSH sshd on 127.0.0.1:{port} (loopback), one sshd for all \
         rows; HOME={home} with an empty .bashrc; login shell {shell}. Session: russh, \
         TCP_NODELAY, PTY 200×50 xterm-256color, echo off; \"OpenSSH backend\" rows: \
         `TransportKind::OpenSsh` (a ControlMaster the library starts, `-F /dev/null`, every \
         channel opened through the master's socket). Throughput payload: {bytes} NUL \
         bytes from `head -c {bytes} /dev/zero`.\n\n\
         targets (issue): exec p50 ≤ {exec} ms; ≥ {cm}× faster than ControlMaster; connect→ready \
         ≤ {connect} ms; throughput ≥ {tp}× OpenSSH same path (PTY); first byte ≤ {fb} ms; \
         OpenSSH backend exec p50 ≤ {oe}× russh; pooled open (2nd..20th session) p50 ≤ {po} ms",
        date = utc_now(),
        bytes = plan.bytes,
        exec = EXEC_TARGET.as_secs_f64() * 1e3,
        cm = VS_CONTROLMASTER_TARGET,
        connect = CONNECT_TARGET.as_millis(),
        tp = THROUGHPUT_TARGET,
        fb = FIRST_BYTE_TARGET.as_millis(),
        oe = OPENSSH_EXEC_TARGET,
        po = POOLED_OPEN_TARGET.as_millis(),
    )
}

/// `date -u` as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The first three fields of /proc/loadavg (1, 5 and 15 minutes).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `user`'s login shell from /etc/passwd.
fn login_shell(user: &str) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() == 7 && f[0] == user)
                .map(|f| format!("{} ({user})", f[6]))
        })
        .unwrap_or_else(|| format!("? ({user})"))
}

/// This process's children that are still running (`comm(pid)`, zombies left out), or
/// `none`: every ssh client, ControlMaster and sshd the bench started must be gone.
fn leftover_children() -> String {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return "? (no /proc)".into();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("?", |(_, c)| c);
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if ppid == Some(me.as_str()) && state != Some("Z") {
            found.push(format!("{comm}({pid})"));
        }
    }
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}
