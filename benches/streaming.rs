//! Rows 5 and 6: output streamed with `exec_stream`: throughput through the session's PTY
//! against OpenSSH's `ssh -tt` and plain `ssh`, and the time to a command's first byte.

use std::time::{Duration, Instant};

use futures::StreamExt;
use ssh_session_core::{ExecOptions, Interrupt, ReadOptions, Session, StreamEvent};

use crate::report::progress;
use crate::stats::{median, ms, times, Row, Stats, Verdict};
use crate::{
    bounded, openssh, Bench, FIRST_BYTE_TARGET, OP_LIMIT, STREAM_LIMIT, THROUGHPUT_TARGET,
};

/// Row 5's three paths, in table order: the session's PTY, `ssh -tt`, plain `ssh`.
const NAMES: [&str; 3] = [
    "throughput: session PTY `exec_stream`",
    "throughput: OpenSSH `ssh -tt` (PTY, same path)",
    "throughput: OpenSSH `ssh` (no PTY, reference)",
];

/// What each of [`NAMES`] measures, for its notes.
const NOTES: [&str; 3] = [
    "NULs from /dev/zero via the session's PTY, counted per `StreamEvent::Output`, not kept",
    "new `ssh -tt` per run, stdout read by the bench in 256 KiB reads and counted",
    "new `ssh` per run, exec channel without PTY, stdout counted",
];

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

impl Bench<'_> {
    /// Row 5: throughput of ours (PTY), `ssh -tt` (PTY) and `ssh` (no PTY), interleaved.
    pub(crate) async fn throughput_rows(&self) -> Vec<Row> {
        let bytes = self.plan.bytes;
        let runs = if self.plan.quick { 1 } else { 3 };
        progress(&format!(
            "5. throughput: {runs} run(s) × 3 paths × {bytes} bytes"
        ));
        let (sets, errors) = self.transfers(bytes, runs).await;
        // From every transfer that succeeded, even if another run of the path failed, so
        // one failed run does not take the other paths' ratios with it.
        let ours_rate = median_rate(&sets[0]);
        let tty_rate = median_rate(&sets[1]);
        (0..3)
            .map(|i| match &errors[i] {
                Some(e) => Row::error(NAMES[i], e),
                None => throughput_row(i, &sets[i], bytes, ours_rate, tty_rate),
            })
            .collect()
    }

    /// `runs` rounds of one transfer of `bytes` per path, in [`NAMES`] order, so load on the
    /// shared machine hits all three alike. Per path: the transfers that succeeded, and the
    /// last error, if any.
    async fn transfers(
        &self,
        bytes: u64,
        runs: usize,
    ) -> ([Vec<Transfer>; 3], [Option<String>; 3]) {
        let command = format!("head -c {bytes} /dev/zero");
        let mut sets: [Vec<Transfer>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut errors: [Option<String>; 3] = [None, None, None];
        for run in 0..runs {
            progress(&format!("   run {} / {runs}", run + 1));
            match self.session_stream(&command).await {
                Ok(t) => sets[0].push(t),
                Err(e) => errors[0] = Some(e),
            }
            for (tty_flag, path) in [(true, 1), (false, 2)] {
                match openssh::stream(self.sshd, tty_flag, &command, STREAM_LIMIT).await {
                    Ok(s) => sets[path].push(Transfer {
                        bytes: s.bytes,
                        to_first_byte: s.to_first_byte,
                        transfer: s.transfer,
                    }),
                    Err(e) => errors[path] = Some(e),
                }
            }
        }
        (sets, errors)
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

    /// Row 6: the first byte of a streaming command.
    pub(crate) async fn first_byte_row(&self) -> Row {
        let (warm, n) = (self.plan.n(5), self.plan.n(50));
        progress(&format!("6. first byte: {warm} warm-up + {n}"));
        let name = "first byte `exec_stream(\"echo x; sleep 0.2\")`";
        match self.first_byte_samples(warm, n).await {
            Ok(s) => Row::latency(
                name,
                &s,
                format!("call → first `StreamEvent::Output`; max {}", ms(s.max)),
            )
            .target("p50 ≤ 5 ms", Verdict::check(s.p50 <= FIRST_BYTE_TARGET)),
            Err(e) => Row::error(name, &e),
        }
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

/// The median rate of `set`'s runs, `None` if it has none.
fn median_rate(set: &[Transfer]) -> Option<f64> {
    (!set.is_empty()).then(|| median(&set.iter().map(Transfer::mb_per_s).collect::<Vec<_>>()))
}

/// Row 5's row for path `i` (see [`NAMES`]): the median run's rate, the slowest run's,
/// every run in the notes, and for the session the ratio to `ssh -tt`, which the target
/// is about; the OpenSSH rows state the session's rate as a share of theirs.
fn throughput_row(
    i: usize,
    set: &[Transfer],
    bytes: u64,
    ours_rate: Option<f64>,
    tty_rate: Option<f64>,
) -> Row {
    let Some(rate) = median_rate(set) else {
        return Row::error(NAMES[i], "no runs");
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
    let runs_text: Vec<String> = set.iter().map(|t| format!("{:.0}", t.mb_per_s())).collect();
    let mut row = Row {
        name: NAMES[i].into(),
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
            NOTES[i],
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
                if let Some(tty_rate) = tty_rate {
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
    row
}
