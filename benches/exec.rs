//! Rows 1–3: one command's round trip: on the persistent session (russh, then the OpenSSH
//! backend), through an OpenSSH ControlMaster, and on a new exec channel per command.

use std::time::{Duration, Instant};

use ssh_session_core::{ExecOptions, Session, SessionConfig, ShellSession};

use crate::openssh::ControlMaster;
use crate::report::progress;
use crate::stats::{ms, times, Row, Stats, Verdict};
use crate::{
    bounded, connect_bare, endpoint, pooled, Bench, EXEC_TARGET, OPENSSH_EXEC_TARGET, OP_LIMIT,
    VS_CONTROLMASTER_TARGET,
};

impl Bench<'_> {
    /// Rows 1, 1b, 2 and 3, in that order, onto `rows`; rows 1b–3 state their ratio to
    /// row 1's `true`.
    pub(crate) async fn exec_rows(&self, rows: &mut Vec<Row>) {
        let plan = self.plan;
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
        rows.push(self.openssh_exec_row(warm, n, exec_true_p50).await);
        rows.push(self.controlmaster_row(exec_true_p50).await);
        rows.push(self.exec_channel_row(exec_true_p50).await);
    }

    /// Row 1b: row 1's `true` on a session over the OpenSSH backend, against russh's p50.
    async fn openssh_exec_row(
        &self,
        warm: usize,
        n: usize,
        exec_true_p50: Option<Duration>,
    ) -> Row {
        progress(&format!(
            "1b. session exec over the OpenSSH backend: {warm} warm-up + {n}"
        ));
        let name = "session exec `true` (OpenSSH backend)";
        match self.openssh_exec_samples(warm, n).await {
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
        }
    }

    /// Row 2: OpenSSH ControlMaster, one client process per call, against row 1's `true`.
    async fn controlmaster_row(&self, exec_true_p50: Option<Duration>) -> Row {
        let (warm, n) = (self.plan.n(5), self.plan.n(200));
        progress(&format!("2. ControlMaster: {warm} warm-up + {n}"));
        let name = "OpenSSH ControlMaster `ssh -S ctl host true`";
        match self.controlmaster_samples(warm, n).await {
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
        }
    }

    /// Row 3: a new exec channel per command on the session's own connection, which is
    /// what the persistent shell saves.
    async fn exec_channel_row(&self, exec_true_p50: Option<Duration>) -> Row {
        let (warm, n) = (self.plan.n(20), self.plan.n(300));
        progress(&format!(
            "3. exec channel per command: {warm} warm-up + {n}"
        ));
        let name = "new exec channel per command (`transport::run`)";
        match pooled::exec_channel(self.transport, "true", warm, n).await {
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
        }
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
