//! Row 7's table rows: the pooled open against the backend's connect → ready, then the
//! parts an open is made of, each as a share of it. The measurements are in
//! [`crate::pooled`].

use std::time::Duration;

use ssh_session_core::ConnectOptions;

use crate::pooled::{
    exec_channel, pooled_opens, remote_environment, session_start, shell_start, ShellStart,
    END_WAIT, SESSIONS_PER_ROUND,
};
use crate::report::progress;
use crate::stats::{ms, signed_ms, times, Row, Stats, Verdict};
use crate::{bounded, connect_bare, endpoint, Bench, POOLED_OPEN_TARGET};

impl Bench<'_> {
    /// Row 7 for one backend: pooled opens, then on a bare connection of the same backend a
    /// login shell on a PTY channel to its prompt, and `true` / `bash -lc true` on exec
    /// channels, to show where the time of an open goes.
    pub(crate) async fn pooled_rows(
        &self,
        label: &str,
        opts: &ConnectOptions,
        connect_ready_p50: Option<Duration>,
        probe_environment: bool,
    ) -> Vec<Row> {
        let (row, open_p50) = self.pooled_open_row(label, opts, connect_ready_p50).await;
        let mut rows = vec![row];
        rows.extend(
            self.open_breakdown_rows(label, opts, open_p50, probe_environment)
                .await,
        );
        rows
    }

    /// Row 7's first row: sessions 2..20 opened on session 1's connection, against the
    /// backend's connect → ready. Returns the row and its p50 (`None` if it failed).
    async fn pooled_open_row(
        &self,
        label: &str,
        opts: &ConnectOptions,
        connect_ready_p50: Option<Duration>,
    ) -> (Row, Option<Duration>) {
        let (warm_rounds, rounds) = (1, self.plan.n(5));
        let per = SESSIONS_PER_ROUND;
        progress(&format!(
            "7. pooled open ({label}): {warm_rounds} warm-up + {rounds} round(s) of {per} sessions"
        ));
        let name = format!("pooled session open, 2nd..{per}th ({label})");
        let pooled = pooled_opens(opts, warm_rounds, rounds).await;
        let open_p50 = pooled.as_ref().ok().map(|p| p.open.p50);
        let row = match pooled {
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
        };
        (row, open_p50)
    }

    /// Row 7's "of which" and "compare" rows: where a pooled open (p50 `open_p50`) goes.
    async fn open_breakdown_rows(
        &self,
        label: &str,
        opts: &ConnectOptions,
        open_p50: Option<Duration>,
        probe_environment: bool,
    ) -> Vec<Row> {
        let (warm, n) = (self.plan.n(5), self.plan.n(50));
        progress(&format!(
            "7. where a pooled open goes ({label}): {warm} warm-up + {n} each"
        ));
        // Measured in this order: the shell first, so that its warm-up is the first channel
        // of a brand-new connection; then the exec channels; then the unpooled starts (each
        // on its own new connection). Rows are shown in breakdown order.
        let parts = match bare_connection_parts(opts, warm, n, probe_environment).await {
            Ok(parts) => parts,
            Err(e) => BareParts::failed(&format!("bare connection: {e}")),
        };
        let started = session_start(opts, &endpoint(self.sshd), warm, n).await;
        vec![
            session_start_row(label, started, open_p50),
            shell_prompt_row(label, parts.shell, open_p50, warm + n),
            login_bash_row(
                label,
                parts.login,
                parts.bare_true,
                &parts.environment,
                open_p50,
            ),
        ]
    }
}

/// What [`bare_connection_parts`] measured on one bare connection.
struct BareParts {
    /// A login shell on a new PTY channel, to its prompt.
    shell: Result<ShellStart, String>,
    /// `true` on an exec channel.
    bare_true: Result<Stats, String>,
    /// `bash -lc true` on an exec channel.
    login: Result<Stats, String>,
    /// `; remote …` from [`remote_environment`] for the notes, or empty.
    environment: String,
}

impl BareParts {
    /// Every part failed with `error` (the bare connection could not be made).
    fn failed(error: &str) -> BareParts {
        BareParts {
            shell: Err(error.to_string()),
            bare_true: Err(error.to_string()),
            login: Err(error.to_string()),
            environment: String::new(),
        }
    }
}

/// On one new bare connection of the backend `opts` asks for: [`shell_start`], then
/// [`exec_channel`] with `true` and with `bash -lc true`, then (if `probe_environment`)
/// [`remote_environment`]; the connection is closed after. `Err` only if it cannot connect.
async fn bare_connection_parts(
    opts: &ConnectOptions,
    warm: usize,
    n: usize,
    probe_environment: bool,
) -> Result<BareParts, String> {
    let transport = connect_bare(opts).await?;
    let shell = shell_start(transport.as_ref(), warm, n).await;
    let bare_true = exec_channel(transport.as_ref(), "true", warm, n).await;
    let login = exec_channel(transport.as_ref(), "bash -lc true", warm, n).await;
    let environment = if probe_environment {
        format!("; remote {}", remote_environment(transport.as_ref()).await)
    } else {
        String::new()
    };
    let _ = bounded(transport.close(), "close the bare connection").await;
    Ok(BareParts {
        shell,
        bare_true,
        login,
        environment,
    })
}

/// The ratio column of row 7's breakdown rows: `p50` as a share of the pooled open's.
fn share_of_pooled_open(p50: Duration, open_p50: Option<Duration>) -> String {
    match open_p50 {
        Some(open) => format!(
            "{:.0} % of pooled open",
            100.0 * p50.as_secs_f64() / open.as_secs_f64()
        ),
        None => "—".into(),
    }
}

/// "of which: session start alone, unpooled", from [`session_start`].
fn session_start_row(
    label: &str,
    started: Result<Stats, String>,
    open_p50: Option<Duration>,
) -> Row {
    let name = "  of which: session start alone, unpooled";
    match started {
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
            row.ratio = share_of_pooled_open(s.p50, open_p50);
            row
        }
        Err(e) => Row::error(name, &e),
    }
}

/// "of which: login shell on a new PTY channel, to its prompt", from [`shell_start`] run
/// `channels` times (warm-up included).
fn shell_prompt_row(
    label: &str,
    shell: Result<ShellStart, String>,
    open_p50: Option<Duration>,
    channels: usize,
) -> Row {
    let name = "  of which: login shell on a new PTY channel, to its prompt";
    match shell {
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
                            s.not_ended, channels, END_WAIT
                        )
                    }
                ),
            );
            row.ratio = share_of_pooled_open(s.prompt.p50, open_p50);
            row
        }
        Err(e) => Row::error(name, &e),
    }
}

/// "compare: exec channel `bash -lc true` (no PTY)", with `true` on an exec channel as the
/// baseline that tells a login bash's startup cost apart.
fn login_bash_row(
    label: &str,
    login: Result<Stats, String>,
    bare_true: Result<Stats, String>,
    environment: &str,
    open_p50: Option<Duration>,
) -> Row {
    let name = "  compare: exec channel `bash -lc true` (no PTY)";
    match login {
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
            row.ratio = share_of_pooled_open(s.p50, open_p50);
            row
        }
        Err(e) => Row::error(name, &e),
    }
}
