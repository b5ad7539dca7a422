//! Rows 4 and 4b: connect → ready (`SessionManager::open`) for russh, a cold `ssh host
//! true` for comparison, and the same open over the OpenSSH backend; each split into
//! the bare connect and the rest.

use std::time::{Duration, Instant};

use ssh_session_core::{ConnectOptions, SessionConfig};

use crate::report::progress;
use crate::stats::{ms, times, Row, Stats, Verdict};
use crate::{bounded, connect_bare, openssh, Bench, CONNECT_TARGET, OP_LIMIT};

/// The connect → ready p50 of each backend (`None` if its row failed), which row 7
/// compares pooled opens with.
pub(crate) struct ConnectReady {
    /// Row 4: russh.
    pub(crate) russh: Option<Duration>,
    /// Row 4b: the OpenSSH backend.
    pub(crate) openssh: Option<Duration>,
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

impl Bench<'_> {
    /// Rows 4 (russh, its "of which" row, cold `ssh`) and 4b (OpenSSH backend and its
    /// "of which" row), in that order, onto `rows`.
    pub(crate) async fn connect_rows(&self, rows: &mut Vec<Row>) -> ConnectReady {
        let (warm, n) = (self.plan.n(2), self.plan.n(30));
        progress(&format!(
            "4. connect → ready and cold ssh: {warm} warm-up + {n} each"
        ));
        let russh = self.russh_connect_rows(rows, warm, n).await;
        rows.push(self.cold_ssh_row(warm, n, russh).await);
        progress(&format!(
            "4b. connect → ready over the OpenSSH backend: {warm} warm-up + {n}"
        ));
        let openssh = self.openssh_connect_rows(rows, warm, n, russh).await;
        ConnectReady { russh, openssh }
    }

    /// Row 4 for russh and its "of which: connect alone" row; returns the open's p50.
    async fn russh_connect_rows(
        &self,
        rows: &mut Vec<Row>,
        warm: usize,
        n: usize,
    ) -> Option<Duration> {
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
                part.ratio = share_of_open(&o);
                rows.push(part);
            }
            Err(e) => rows.push(Row::error(name, &e)),
        }
        open_p50
    }

    /// Row 4's comparison: a cold `ssh host true`, against russh's connect → ready.
    async fn cold_ssh_row(&self, warm: usize, n: usize, open_p50: Option<Duration>) -> Row {
        let name = "cold `ssh host true` (no ControlMaster)";
        match self.cold_samples(warm, n).await {
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
        }
    }

    /// Row 4b: connect → ready over the OpenSSH backend and its "of which: connect
    /// alone" row, against russh's `open_p50`; returns this open's p50.
    async fn openssh_connect_rows(
        &self,
        rows: &mut Vec<Row>,
        warm: usize,
        n: usize,
        open_p50: Option<Duration>,
    ) -> Option<Duration> {
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
                part.ratio = share_of_open(&o);
                rows.push(part);
            }
            Err(e) => rows.push(Row::error(name, &e)),
        }
        openssh_open_p50
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
}

/// The ratio column of an "of which: connect alone" row: the bare connect's share of
/// the open, at p50.
fn share_of_open(o: &OpenSamples) -> String {
    format!(
        "{:.0} % of connect → ready",
        100.0 * o.connect.p50.as_secs_f64() / o.open.p50.as_secs_f64()
    )
}
