//! What people see: tables, colours (only on a terminal, never with `NO_COLOR`), the
//! connect spinner, and error lines.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use crate::protocol::{HistoryView, HostView, SessionView};

/// Whether to colour what goes to stdout (`out`) or stderr.
pub(crate) fn colour(stdout: bool) -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if stdout {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    }
}

/// `text` in the ANSI colour `code` when `on`.
pub(crate) fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Prints an error (and what to do, which the message carries) on stderr. Control
/// characters in it are made visible: a message can quote a host's reply or a name as
/// typed, and neither may recolour or retitle the terminal.
pub(crate) fn error(message: &str) {
    let label = paint(colour(false), "1;31", "error:");
    eprintln!("ssh-session: {label} {}", escape_controls(message));
}

/// `text` with its control characters written as visible escapes (`\x1b`, `\x07`,
/// `\u{9b}`), newlines and tabs kept: for log files and message lines, where an escape
/// sequence from a remote host or a pasted name must not reach a terminal, or sit in a
/// file as colour codes.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    let is_control = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.contains(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !is_control(c) => out.push(c),
            c if c.is_ascii() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// A plain-text table with left-aligned columns; the header is bold on a terminal.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(visible_len(cell));
        }
    }
    let bold = colour(true);
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(w - visible_len(cell) + 2));
            }
        }
        out.push('\n');
    };
    let head = header
        .iter()
        .map(|h| paint(bold, "1", h))
        .collect::<Vec<_>>();
    line(head, &mut out);
    for row in rows {
        line(row.clone(), &mut out);
    }
    out
}

/// Characters shown, ANSI colour sequences excluded.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// A table cell or field value from the remote side: control characters escaped and
/// line ends shown as `⏎`, so that it stays on its line and cannot drive the terminal.
fn cell(text: &str) -> String {
    escape_controls(&text.replace('\n', "⏎").replace('\t', " ")).into_owned()
}

/// The `ls` table.
pub(crate) fn sessions_table(sessions: &[SessionView]) -> String {
    let on = colour(true);
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let status = match s.status.as_str() {
                "connected" => paint(on, "32", &s.status),
                "error" | "closed" => paint(on, "31", &s.status),
                _ => paint(on, "33", &s.status),
            };
            vec![
                s.name.clone(),
                cell(&format!("{}@{}:{}", s.user, s.host, s.port)),
                status,
                s.command_count.to_string(),
                ago(s.last_activity_ms),
                cell(&s.cwd),
                cell(s.running.as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "TARGET", "STATUS", "CMDS", "ACTIVE", "CWD", "RUNNING",
        ],
        &rows,
    )
}

/// The `status` details.
pub(crate) fn session_details(s: &SessionView) -> String {
    let mut out = String::new();
    // Values come from the remote side (a cwd, a person's command line): one line each,
    // with no control sequence reaching the terminal.
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<14}{}\n", cell(&v)));
    field("name", s.name.clone());
    field("target", format!("{}@{}:{}", s.user, s.host, s.port));
    field("transport", s.transport.clone());
    let detail = s
        .status_detail
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    field("status", format!("{}{detail}", s.status));
    field("persistent", s.persistent.to_string());
    field("cwd", s.cwd.clone());
    field("commands", s.command_count.to_string());
    field("running", s.running.clone().unwrap_or_else(|| "-".into()));
    field("created", ago(s.created_ms));
    field("last active", ago(s.last_activity_ms));
    field("reconnects", s.reconnects.to_string());
    if let Some(e) = &s.last_error {
        field("last error", e.clone());
    }
    out
}

/// The `history` table.
pub(crate) fn history_table(entries: &[HistoryView]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .enumerate()
        .map(|(i, h)| {
            vec![
                (i + 1).to_string(),
                h.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                h.duration_ms
                    .map(|d| human(Duration::from_millis(d)))
                    .unwrap_or_else(|| "running".into()),
                ago(h.started_ms),
                cell(&h.source),
                h.cwd.as_deref().map_or_else(|| "-".into(), cell),
                cell(&h.command),
            ]
        })
        .collect();
    table(
        &["#", "EXIT", "TOOK", "STARTED", "FROM", "CWD", "COMMAND"],
        &rows,
    )
}

/// The `hosts` table.
pub(crate) fn hosts_table(hosts: &[HostView]) -> String {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.alias.clone(),
                dash(h.host_name.clone()),
                dash(h.user.clone()),
                dash(h.port.map(|p| p.to_string())),
                dash(h.proxy_jump.clone()),
            ]
        })
        .collect();
    table(&["ALIAS", "HOSTNAME", "USER", "PORT", "PROXYJUMP"], &rows)
}

/// A duration for people, the one way the CLI shows any: `850 ms`, `2.52 s`, `12.3 s`,
/// `1 min 3 s`, `2 h 10 min`, `3 d 4 h`. Three significant digits below a minute (trailing
/// zeros dropped: `5 s`), then the two largest whole units; each step rounds to the
/// nearest, so 59.96 s reads `1 min`, never `60.0 s`.
pub(crate) fn human(d: Duration) -> String {
    // Integer arithmetic on microseconds: rounding at each boundary is then exact.
    let micros = d.as_micros();
    let rounded = |unit: u128| (micros + unit / 2) / unit;
    let ms = rounded(1_000);
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    let centis = rounded(10_000);
    if centis < 1_000 {
        return format!("{} s", decimal(centis, 100));
    }
    let decis = rounded(100_000);
    if decis < 600 {
        return format!("{} s", decimal(decis, 10));
    }
    let secs = rounded(1_000_000);
    let (big, small, units) = if secs < 3_600 {
        (secs / 60, secs % 60, ("min", "s"))
    } else if secs < 86_400 {
        (secs / 3_600, secs % 3_600 / 60, ("h", "min"))
    } else {
        (secs / 86_400, secs % 86_400 / 3_600, ("d", "h"))
    };
    if small == 0 {
        format!("{big} {}", units.0)
    } else {
        format!("{big} {} {small} {}", units.0, units.1)
    }
}

/// `n / scale` with its decimals, trailing zeros dropped: (252, 100) is `2.52`, (50, 10)
/// is `5`.
fn decimal(n: u128, scale: u128) -> String {
    let places = scale.ilog10() as usize;
    let fraction = format!("{:0places$}", n % scale);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        (n / scale).to_string()
    } else {
        format!("{}.{fraction}", n / scale)
    }
}

/// How long ago a unix time in milliseconds was, in whole seconds: `5 s ago`, `2 min 5 s
/// ago`; under a second (or a time in the future, from another clock) is `just now`.
fn ago(unix_ms: u64) -> String {
    let then = SystemTime::UNIX_EPOCH + Duration::from_millis(unix_ms);
    match SystemTime::now().duration_since(then) {
        Ok(d) if d >= Duration::from_secs(1) => {
            format!("{} ago", human(Duration::from_secs(d.as_secs())))
        }
        _ => "just now".into(),
    }
}

/// A spinner on stderr while something slow happens, only when stderr is a terminal.
/// Drop it (or call [`Spinner::stop`]) to erase it.
pub(crate) struct Spinner {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    /// Starts spinning with `message`, if stderr is a terminal.
    pub(crate) fn start(message: String) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner { task: None };
        }
        let task = tokio::spawn(async move {
            const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
            for frame in FRAMES.iter().cycle() {
                eprint!("\r{frame} {message}");
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
        });
        Spinner { task: Some(task) }
    }

    /// Stops and erases the spinner.
    pub(crate) fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_visible_text() {
        let t = table(
            &["A", "B"],
            &[
                vec!["\x1b[32mlong-cell\x1b[0m".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        // The second column starts at the same visible position on every line.
        let col = |l: &str| {
            let plain = String::from_utf8(strip(l.as_bytes())).unwrap();
            plain.rfind(|c: char| c != ' ').unwrap()
        };
        assert_eq!(col(lines[1]), col(lines[2]));
    }

    fn strip(b: &[u8]) -> Vec<u8> {
        let s = std::str::from_utf8(b).unwrap();
        let mut out = String::new();
        let mut esc = false;
        for c in s.chars() {
            match (esc, c) {
                (false, '\x1b') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out.into_bytes()
    }

    #[test]
    fn human_durations() {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        let cases = [
            (Duration::ZERO, "0 ms"),
            (Duration::from_micros(400), "0 ms"),
            (ms(340), "340 ms"),
            (ms(850), "850 ms"),
            (Duration::from_micros(999_600), "1 s"),
            (ms(1200), "1.2 s"),
            (Duration::from_nanos(2_516_745_955), "2.52 s"),
            (secs(5), "5 s"),
            (Duration::from_micros(9_996_000), "10 s"),
            (ms(12_345), "12.3 s"),
            (ms(59_960), "1 min"),
            (secs(63), "1 min 3 s"),
            (ms(63_700), "1 min 4 s"),
            (secs(185), "3 min 5 s"),
            (secs(3600), "1 h"),
            (secs(7800), "2 h 10 min"),
            (secs(90_000), "1 d 1 h"),
            (secs(3 * 86_400), "3 d"),
        ];
        for (d, want) in cases {
            assert_eq!(human(d), want, "{d:?}");
        }
        // Never Rust's debug form, whatever the value.
        assert_eq!(human(Duration::MAX), "213503982334601 d 7 h");
    }

    #[test]
    fn ago_is_whole_seconds_or_just_now() {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        let unix_ms = |d: Duration| u64::try_from(d.as_millis()).unwrap();
        assert_eq!(ago(unix_ms(now)), "just now");
        // In the future (another clock): not a negative age.
        assert_eq!(ago(unix_ms(now + Duration::from_secs(60))), "just now");
        let then = ago(unix_ms(now - Duration::from_secs(125)));
        assert!(then == "2 min 5 s ago" || then == "2 min 6 s ago", "{then}");
    }

    #[test]
    fn control_characters_are_made_visible() {
        assert!(matches!(
            escape_controls("plain é\tline\n"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("\x1b[31mred\x1b]0;t\x07\r\u{9b}2J\x7f"),
            r"\x1b[31mred\x1b]0;t\x07\x0d\u{9b}2J\x7f"
        );
    }

    #[test]
    fn remote_text_stays_on_its_line_and_cannot_drive_the_terminal() {
        // A person's command line and a cwd come from the remote shell.
        assert_eq!(
            cell("for i in 1 2\ndo echo \x1b[2J$i; done"),
            r"for i in 1 2⏎do echo \x1b[2J$i; done"
        );
        assert_eq!(cell("/srv/a\tb"), "/srv/a b");
        let mut view = SessionView {
            name: "s".into(),
            host: "h".into(),
            user: "u".into(),
            port: 22,
            transport: "russh".into(),
            status: "connected".into(),
            status_detail: None,
            created_ms: 0,
            last_activity_ms: 0,
            command_count: 1,
            cwd: "/tmp/\x1b]0;pwned\x07".into(),
            running: Some("sleep 5\nrm -rf x".into()),
            last_error: None,
            reconnects: 0,
            persistent: false,
        };
        for shown in [sessions_table(&[view.clone()]), session_details(&view)] {
            assert!(
                !shown.contains('\x1b') && !shown.contains('\x07'),
                "{shown:?}"
            );
            assert!(shown.contains("sleep 5⏎rm -rf x"), "{shown}");
        }
        view.running = None;
        assert_eq!(sessions_table(&[view]).lines().count(), 2);
    }

    #[test]
    fn no_colour_means_plain() {
        assert_eq!(paint(false, "31", "x"), "x");
        assert_eq!(paint(true, "31", "x"), "\x1b[31mx\x1b[0m");
    }
}
