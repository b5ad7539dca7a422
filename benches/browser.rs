//! # The browser terminal: what a person in a page waits for, and what each page costs
//!
//! One run starts one test-kit OpenSSH `sshd` on loopback, one session, the browser
//! terminal (`ssh-session-web`) in this process on 127.0.0.1, and Debian's headless
//! Chromium over chromedriver; it measures, in the same run:
//!
//! 1. **keystroke → echo rendered in the page**: timed inside the page, from the key's
//!    `keydown` (capture phase, before xterm.js sees it) until xterm.js has put the echo
//!    into the DOM (a `MutationObserver` on its rows), so WebDriver's own overhead is not
//!    counted. Erased with a Backspace, not timed.
//! 2. **keystroke → echo at an attached client** (the library's `attach`, no browser) and
//! 3. **keystroke → echo over plain `ssh -tt host bash -i`**: the references. Neither
//!    includes drawing on a screen; row 1 does.
//! 4. **agent output → page**: from `exec("echo ...")` being called until the page's rows
//!    show the output (both clocks are this machine's wall clock: the page's
//!    `performance.timeOrigin + performance.now()`); against
//! 5. **agent output → attached client**, the same without the browser.
//! 6. **memory per attached browser**: this process's RSS (the server's side: the
//!    WebSocket, the attachment and its screen copy) before and after more browsers join,
//!    and the page's JS heap (Chromium's `performance.memory`).
//!
//! `SSH_SESSION_BENCH_QUICK=1` divides every N by 10. Run with
//! `cargo bench -p ssh-session-benches --bench browser` (needs `chromium` and
//! `chromium-driver`, which `.ci/run` installs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is its failure report

mod attached;
#[allow(dead_code)] // shared with the latency bench, which uses all of it
mod openssh;
#[allow(dead_code)] // shared with the latency bench, which uses all of it
mod stats;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use attached::{drain, n, until};
use serde_json::Value;
use ssh_session_core::{
    AttachOptions, ExecOptions, Session, SessionConfig, SessionManager, ShellSession, TransportKind,
};
use ssh_session_testkit::browser::{Browser, Key};
use ssh_session_testkit::Sshd;
use ssh_session_web::{Web, WebOptions};
use stats::{ms, Stats};

const INPUT: &str = "textarea.xterm-helper-textarea";
const WAIT: Duration = Duration::from_secs(20);

/// Installed in the page: every key's `keydown` time, and the time the rows' text next
/// changed after it; and, for `window.__seen(needle)`, when the rows first showed it.
const INSTRUMENT: &str = r#"
const rows = document.querySelector('.xterm-rows');
const input = document.querySelector('textarea.xterm-helper-textarea');
window.__keys = [];
window.__watch = null;
let pending = null;
input.addEventListener('keydown', (e) => {
  pending = { key: e.key, t0: performance.now(), before: rows.innerText, parsed: null };
}, true);
// The bytes of the echo have arrived and been parsed, before anything is drawn.
window.sshSessionTerminal.onWriteParsed(() => {
  if (pending && pending.parsed === null) pending.parsed = performance.now() - pending.t0;
});
new MutationObserver(() => {
  const now = performance.now();
  if (pending && rows.innerText !== pending.before) {
    window.__keys.push({ key: pending.key, ms: now - pending.t0, parsed: pending.parsed });
    pending = null;
  }
  const w = window.__watch;
  if (w && w.at === null && rows.innerText.includes(w.needle)) {
    w.at = performance.timeOrigin + now;
  }
}).observe(rows, { subtree: true, childList: true, characterData: true });
return true;
"#;

fn progress(what: &str) {
    eprintln!("[bench browser] {what}");
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// A browser logged in with a fresh link, on the session's page, at the shell's prompt.
async fn join(web: &Web, session: &str) -> Browser {
    let share = web.share(Some(session), false).unwrap();
    let browser = Browser::start().await;
    browser.goto(&share.url).await;
    browser.wait_for_text("#conn", "connected", WAIT).await;
    browser
        .wait_for(
            "const e = document.querySelector('.xterm-rows'); return e && /[$#] *$/m.test(e.innerText);",
            WAIT,
        )
        .await;
    browser
}

/// Keys typed into the page, one at a time; the in-page times of the typed ones: until the
/// echo was drawn, and until xterm.js had parsed it.
async fn page_keys(browser: &Browser, count: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut out = Vec::with_capacity(count);
    let mut parsed = Vec::with_capacity(count);
    for i in 0..count {
        let key = char::from(b'a' + (i % 26) as u8);
        for (typed, expect) in [
            (key.to_string(), 2 * i + 1),
            (Key::Backspace.to_string(), 2 * i + 2),
        ] {
            browser.type_text(INPUT, &typed).await;
            browser
                .wait_for(&format!("return window.__keys.length >= {expect};"), WAIT)
                .await;
        }
        let v = browser
            .execute(&format!("return window.__keys[{}];", 2 * i), vec![])
            .await;
        let secs = |field: &str| Duration::from_secs_f64(v[field].as_f64().unwrap_or(0.0) / 1000.0);
        out.push(secs("ms"));
        parsed.push(secs("parsed"));
    }
    (out, parsed)
}

async fn page_output(browser: &Browser, s: &ShellSession, count: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let needle = format!("web-{}", 100_000 + i);
        browser
            .execute(
                "window.__watch = { needle: arguments[0], at: null }; return true;",
                vec![Value::String(needle.clone())],
            )
            .await;
        let called = epoch_ms();
        // The typed command shows `$((...))`; only the output has the number.
        let r = s
            .exec(&format!("echo web-$((100000+{i}))"), ExecOptions::default())
            .await
            .unwrap();
        assert_eq!(r.text(), format!("{needle}\n"));
        let at = browser
            .wait_for("return window.__watch.at;", WAIT)
            .await
            .as_f64()
            .unwrap();
        out.push(Duration::from_secs_f64((at - called).max(0.0) / 1000.0));
    }
    out
}

fn row(name: &str, samples: &[Duration], reference: Option<(&str, &Stats)>) -> Stats {
    let st = Stats::of(samples).unwrap();
    let ratio = reference.map_or("—".to_string(), |(what, r)| {
        format!(
            "{:.2}× of {what}",
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
            "bench-web",
            sshd.connect_options(TransportKind::Russh),
            SessionConfig::default(),
        )
        .await
        .unwrap();
    let listener = ssh_session_web::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let bound = listener.local_addr().unwrap();
    let web = Web::new(m.clone(), bound, WebOptions::default()).unwrap();
    tokio::spawn(web.clone().serve(listener, std::future::pending()));

    let rss_before = rss_kib();
    let person = join(&web, "bench-web").await;
    person.execute(INSTRUMENT, vec![]).await;
    progress("keystroke → echo in the page");
    let (keys, parsed) = page_keys(&person, n(200)).await;
    progress("agent output → page");
    let shown = page_output(&person, &s, n(200)).await;

    progress("memory per browser");
    let rss_one = rss_kib();
    let extra = 3;
    let mut others = Vec::new();
    for _ in 0..extra {
        others.push(join(&web, "bench-web").await);
    }
    // The screens are sent and the sockets settled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_more = rss_kib();
    let heap = person
        .execute(
            "return performance.memory ? performance.memory.usedJSHeapSize : null;",
            vec![],
        )
        .await;
    for b in others {
        b.close().await;
    }
    person.close().await;

    progress("the references: attach, and plain ssh -tt");
    let mut a = s
        .attach(AttachOptions::new("attach", 120, 40))
        .await
        .unwrap();
    a.wait_prompt(Duration::from_secs(10)).await.unwrap();
    drain(&mut a);
    let mut attached_keys = Vec::new();
    for i in 0..n(200) {
        let key = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        a.send(&key).await.unwrap();
        until(&mut a, &key).await;
        attached_keys.push(t.elapsed());
        a.send(b"\x7f").await.unwrap();
        until(&mut a, b"\x08").await;
    }
    let mut attached_out = Vec::new();
    for i in 0..n(200) {
        drain(&mut a);
        let needle = format!("out-{}", 100_000 + i);
        let t = Instant::now();
        let command = format!("echo out-$((100000+{i}))");
        let (r, ()) = tokio::join!(s.exec(&command, ExecOptions::default()), async {
            until(&mut a, needle.as_bytes()).await;
            attached_out.push(t.elapsed());
        });
        assert_eq!(r.unwrap().text(), format!("{needle}\n"));
    }
    drop(a);
    let plain = openssh::keystroke_echo(&sshd, n(200), Duration::from_secs(10))
        .await
        .unwrap();

    println!(
        "\n{}, load average {}, Chromium {}, OpenSSH sshd on loopback\n",
        std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
        std::process::Command::new("chromium")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    );
    println!("| name | p50 | p90 | max | n | ratio |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let floor = Stats::of(&plain).unwrap();
    row(
        "keystroke → echo rendered in the page",
        &keys,
        Some(("plain `ssh -tt`", &floor)),
    );
    row(
        "keystroke → echo parsed by xterm.js in the page (received, not yet drawn)",
        &parsed,
        Some(("plain `ssh -tt`", &floor)),
    );
    row(
        "keystroke → echo at an attached client (`attach`, no screen)",
        &attached_keys,
        Some(("plain `ssh -tt`", &floor)),
    );
    row(
        "keystroke → echo over plain `ssh -tt host bash -i` (no screen)",
        &plain,
        None,
    );
    let out_ref = Stats::of(&attached_out).unwrap();
    row(
        "agent output → page (`exec` called → rows show it)",
        &shown,
        Some(("the attached client", &out_ref)),
    );
    row(
        "agent output → attached client (`exec` called → bytes received)",
        &attached_out,
        None,
    );
    println!(
        "\nserver RSS: {} KiB before any browser, {} KiB with one, {} KiB with {}: \
         {} KiB per further browser; the page's JS heap: {}",
        rss_before,
        rss_one,
        rss_more,
        1 + extra,
        rss_more.saturating_sub(rss_one) / extra as u64,
        heap.as_f64()
            .map_or("(not reported)".to_string(), |b| format!(
                "{:.1} MiB",
                b / 1048576.0
            ))
    );
    m.shutdown().await;
}
