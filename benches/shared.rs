//! # A terminal that a person and programs share: what it costs
//!
//! One run starts one test-kit OpenSSH `sshd` on loopback (HOME with an empty `.bashrc`,
//! login shell bash) and measures, in the same run:
//!
//! 1. **exec round trip, nobody attached**: `exec("true")`, the reference (as in the
//!    latency bench).
//! 2. **keystroke → echo** at an attached client: one key typed at the person's prompt
//!    until the attachment receives its echo (then erased with a backspace, not timed).
//! 3. **exec round trip with one person attached**: `exec("true")`, which is then typed at
//!    the person's prompt (bracketed paste) and tracked by the shell's hooks.
//! 4. **program output → attached client**: from `exec("echo <n>")` being called until the
//!    attachment receives the output.
//! 5. **exec round trip after the person detached**: back on the agent path.
//! 6. **keystroke → echo over plain OpenSSH** (`ssh -tt host bash -i`, the same key and
//!    backspace): the floor a person knows, against which row 2 is compared.
//!
//! `SSH_SESSION_BENCH_QUICK=1` divides every N by 10. Run with
//! `cargo bench -p ssh-session-benches --bench shared`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is its failure report

mod attached;
#[allow(dead_code)] // shared with the latency bench, which uses all of it
mod openssh;
#[allow(dead_code)] // shared with the latency bench, which uses all of it
mod stats;

use std::time::{Duration, Instant};

use attached::{drain, n, until};
use ssh_session_core::{
    AttachOptions, ExecOptions, Session, SessionConfig, SessionManager, ShellSession, TransportKind,
};
use ssh_session_testkit::Sshd;
use stats::{ms, Stats};

/// A progress line on stderr (stdout holds only the results).
fn progress(what: &str) {
    eprintln!("[bench shared] {what}");
}

/// One line of a command's output, for the header.
fn machine(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

async fn exec_true(s: &ShellSession, count: usize) -> Vec<Duration> {
    for _ in 0..20 {
        s.exec("true", ExecOptions::default()).await.unwrap();
    }
    let mut v = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let r = s.exec("true", ExecOptions::default()).await.unwrap();
        v.push(t.elapsed());
        assert_eq!(r.exit_code, Some(0));
    }
    v
}

fn row(name: &str, samples: &[Duration], reference: Option<&Stats>) -> Stats {
    let st = Stats::of(samples).unwrap();
    let ratio = reference.map_or("—".to_string(), |r| {
        format!(
            "{:.2}× of exec, nobody attached",
            st.p50.as_secs_f64() / r.p50.as_secs_f64()
        )
    });
    println!(
        "| {name} | {} | {} | {} | {} | {ratio} |",
        ms(st.p50),
        ms(st.p90),
        ms(st.max),
        st.n
    );
    st
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sshd = Sshd::start().unwrap();
    let m = SessionManager::new();
    let s = m
        .open(
            "bench-shared",
            sshd.connect_options(TransportKind::Russh),
            SessionConfig::default(),
        )
        .await
        .unwrap();
    progress("exec, nobody attached");
    let alone = exec_true(&s, n(500)).await;

    let mut a = s
        .attach(AttachOptions::new("attach", 120, 40))
        .await
        .unwrap();
    a.wait_prompt(Duration::from_secs(10)).await.unwrap();
    drain(&mut a);
    progress("keystroke → echo");
    let mut keys = Vec::new();
    for i in 0..n(300) {
        // A different key each time, so an earlier echo never counts.
        let key = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        a.send(&key).await.unwrap();
        until(&mut a, &key).await;
        keys.push(t.elapsed());
        a.send(b"\x7f").await.unwrap();
        until(&mut a, b"\x08").await;
    }
    progress("exec with one person attached");
    drain(&mut a);
    let with_person = exec_true(&s, n(300)).await;
    progress("program output → attached client");
    let mut shown = Vec::new();
    for i in 0..n(300) {
        drain(&mut a);
        let needle = format!("out-{}", 100_000 + i);
        let t = Instant::now();
        // The echo of the typed command shows `$((...))`; only the output has the number.
        let command = format!("echo out-$((100000+{i}))");
        let (r, ()) = tokio::join!(s.exec(&command, ExecOptions::default()), async {
            until(&mut a, needle.as_bytes()).await;
            shown.push(t.elapsed());
        });
        assert_eq!(r.unwrap().text(), format!("{needle}\n"));
    }
    drop(a);
    progress("exec after the person detached");
    let after = exec_true(&s, n(500)).await;
    progress("keystroke → echo over plain ssh -tt");
    let plain = openssh::keystroke_echo(&sshd, n(300), Duration::from_secs(10))
        .await
        .unwrap();

    println!(
        "\n{}, load average {}, bash 5.2, OpenSSH sshd on loopback\n",
        machine("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("| name | p50 | p90 | max | n | ratio |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let reference = row("exec `true`, nobody attached", &alone, None);
    let floor = Stats::of(&plain).unwrap();
    let keys_row = row(
        "keystroke → echo at the attached client",
        &keys,
        Some(&reference),
    );
    row(
        "exec `true`, one person attached",
        &with_person,
        Some(&reference),
    );
    row(
        "program output → attached client (`exec` called → output shown)",
        &shown,
        Some(&reference),
    );
    row(
        "exec `true`, after the person detached",
        &after,
        Some(&reference),
    );
    row(
        "keystroke → echo over plain `ssh -tt host bash -i` (OpenSSH)",
        &plain,
        Some(&reference),
    );
    println!(
        "\nkeystroke → echo, attached / plain OpenSSH: {:.2}× (p50)",
        keys_row.p50.as_secs_f64() / floor.p50.as_secs_f64()
    );
    m.shutdown().await;
}
