//! What the bench prints around its table: the header (when, on what machine, against
//! which server, the targets), progress lines, and the facts about the machine
//! and its processes that the header and the last line report.

use std::time::Instant;

use crate::{
    Plan, CONNECT_TARGET, EXEC_TARGET, FIRST_BYTE_TARGET, OPENSSH_EXEC_TARGET, POOLED_OPEN_TARGET,
    THROUGHPUT_TARGET, VS_CONTROLMASTER_TARGET,
};

/// A progress line on stderr (stdout holds only the results). Each line carries the seconds since the first one, so slow phases show.
pub(crate) fn progress(what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let since = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench {since:>6.1}s] {what}");
}

/// The header: when, where, with what, and the targets.
pub(crate) fn header(plan: &Plan, port: u16, home: &str, shell: &str, load: &str) -> String {
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
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `user`'s login shell from /etc/passwd.
pub(crate) fn login_shell(user: &str) -> String {
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
pub(crate) fn leftover_children() -> String {
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
