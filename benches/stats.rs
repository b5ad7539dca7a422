//! Summary statistics of latency samples and the markdown table the bench prints.

use std::time::Duration;

/// p50, p90 and mean of a set of latency samples (warm-ups are never part of them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    /// Median (nearest rank).
    pub p50: Duration,
    /// 90th percentile (nearest rank).
    pub p90: Duration,
    /// Arithmetic mean.
    pub mean: Duration,
    /// Slowest sample.
    pub max: Duration,
    /// Number of samples.
    pub n: usize,
}

impl Stats {
    /// Summarizes `samples`; `None` if there are none.
    pub(crate) fn of(samples: &[Duration]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let total: Duration = sorted.iter().sum();
        Some(Stats {
            p50: nearest_rank(&sorted, 0.50),
            p90: nearest_rank(&sorted, 0.90),
            mean: total / sorted.len() as u32,
            max: sorted[sorted.len() - 1],
            n: sorted.len(),
        })
    }
}

/// The nearest-rank percentile `p` (0..=1) of sorted, non-empty samples.
fn nearest_rank(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of non-empty values (the lower middle one for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// A duration in milliseconds with precision suited to its size.
pub(crate) fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.3} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// `a − b` in milliseconds, with a sign when negative.
pub(crate) fn signed_ms(a: Duration, b: Duration) -> String {
    if a >= b {
        ms(a - b)
    } else {
        format!("−{}", ms(b - a))
    }
}

/// A ratio such as `27.4×`.
pub(crate) fn times(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.2}×")
    }
}

/// Whether a row met its target, missed it, or has none (a reference row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The target is met.
    Pass,
    /// The target is missed.
    Miss,
    /// No target applies.
    Info,
    /// The row could not be measured.
    Error,
}

impl Verdict {
    /// `Pass` if `ok`, else `Miss`.
    pub(crate) fn check(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Miss
        }
    }

    /// The text shown in the table's result column.
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Info => "—",
            Verdict::Error => "ERROR",
        }
    }
}

/// One line of the results table. Cells are preformatted text.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// What was measured.
    pub name: String,
    /// Median (for throughput rows: the median rate).
    pub p50: String,
    /// 90th percentile (for throughput rows: the slowest run's rate).
    pub p90: String,
    /// Mean.
    pub mean: String,
    /// Samples measured (warm-ups excluded).
    pub n: String,
    /// Comparison with a related row, where meaningful.
    pub ratio: String,
    /// The target for this row, if any.
    pub target: String,
    /// PASS/MISS against the target.
    pub verdict: Verdict,
    /// How it was measured, outliers, caveats.
    pub notes: String,
}

impl Row {
    /// A latency row from samples; ratio, target and verdict are filled in later.
    pub(crate) fn latency(name: &str, stats: &Stats, notes: String) -> Row {
        Row {
            name: name.into(),
            p50: ms(stats.p50),
            p90: ms(stats.p90),
            mean: ms(stats.mean),
            n: stats.n.to_string(),
            ratio: "—".into(),
            target: "—".into(),
            verdict: Verdict::Info,
            notes,
        }
    }

    /// A row for a measurement that failed, with the reason in the notes.
    pub(crate) fn error(name: &str, error: &str) -> Row {
        Row {
            name: name.into(),
            p50: "—".into(),
            p90: "—".into(),
            mean: "—".into(),
            n: "0".into(),
            ratio: "—".into(),
            target: "—".into(),
            verdict: Verdict::Error,
            notes: format!("ERROR: {error}"),
        }
    }

    /// Sets the target text and the verdict.
    pub(crate) fn target(mut self, target: &str, verdict: Verdict) -> Row {
        self.target = target.into();
        self.verdict = verdict;
        self
    }
}

/// Renders rows as a markdown table with aligned columns.
pub(crate) fn markdown(rows: &[Row]) -> String {
    let header = [
        "name", "p50", "p90", "mean", "n", "ratio", "target", "result", "notes",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.p50.clone(),
                r.p90.clone(),
                r.mean.clone(),
                r.n.clone(),
                r.ratio.clone(),
                r.target.clone(),
                r.verdict.label().to_string(),
                r.notes.replace('|', "\\|"),
            ]
        })
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    // The notes column is left ragged: padding it would only add trailing spaces.
    let widths: Vec<usize> = (0..9).map(|i| if i == 8 { 0 } else { width(i) }).collect();
    let line = |c: &[String]| {
        let padded: Vec<String> = c
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count()))))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = String::new();
    out += &line(&header.map(String::from));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat((*w).max(3))).collect();
    out += &format!("|-{}-|\n", rule.join("-|-"));
    for c in &cells {
        out += &line(c);
        out.push('\n');
    }
    out
}
