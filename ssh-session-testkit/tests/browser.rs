//! The headless-Chromium harness against a tiny page served from loopback: keys (plain,
//! Enter, Tab, Ctrl-C) arrive as the page's keydown events, the wait helpers see what the
//! page shows, and no Chromium process outlives its `Browser`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ssh_session_testkit::browser::Key;
use ssh_session_testkit::Browser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper limit for anything that should happen; only reached on failure.
const LIMIT: Duration = Duration::from_secs(10);

/// Logs every keydown (wherever focus is) into `window.keys`. `#term` is styled like
/// xterm.js's helper textarea (zero size, off screen, transparent), which is where a
/// terminal page takes its keyboard input; `#rows` holds text with U+00A0 for spaces, as
/// xterm.js's DOM renderer writes it.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>keys</title>
<style>
  #term { padding: 0; border: 0; margin: 0; position: absolute; opacity: 0; left: -9999em;
          top: 0; width: 0; height: 0; z-index: -5; white-space: nowrap; overflow: hidden;
          resize: none; }
</style></head>
<body>
<textarea id="t"></textarea>
<textarea id="term"></textarea>
<div id="rows">$&nbsp;echo&nbsp;hi</div>
<script>
  window.keys = [];
  document.addEventListener('keydown', (e) => {
    window.keys.push({ key: e.key, ctrl: e.ctrlKey, target: e.target.id });
  }, true);
  setTimeout(() => { document.title = 'ready'; }, 200);
</script>
</body></html>"#;

/// Serves `PAGE` for every request on a loopback port and returns its base URL.
async fn serve_page() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Only the end of the request head matters: every path gets the page.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Starts a browser and says how long that took, since every browser test pays it.
async fn timed_start() -> Browser {
    let started = Instant::now();
    let browser = Browser::start().await;
    eprintln!("Browser::start took {:?}", started.elapsed());
    browser
}

/// The keydowns the page recorded since the last call, as (key, ctrlKey, target id).
async fn take_keys(browser: &Browser) -> Vec<(String, bool, String)> {
    let v = browser
        .execute("const k = window.keys; window.keys = []; return k;", vec![])
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_string(),
                k["ctrl"].as_bool().unwrap(),
                k["target"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn keys(expected: &[(&str, bool, &str)]) -> Vec<(String, bool, String)> {
    expected
        .iter()
        .map(|&(k, c, t)| (k.to_string(), c, t.to_string()))
        .collect()
}

/// Processes whose command line mentions the browser's directory (the parent of its
/// profile): Chromium passes `--user-data-dir=<dir>/profile` to every helper it starts,
/// and its crashpad handlers (which daemonize) get `--database=<dir>/config/...`.
fn processes_using(profile: &Path) -> String {
    let dir = profile.parent().unwrap();
    let out = std::process::Command::new("pgrep")
        .arg("-a")
        .arg("-f")
        .arg(dir)
        .output()
        .expect("pgrep (procps) is needed to check for leaked Chromium processes");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn artifacts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_text_and_screenshot() {
    let url = serve_page().await;
    let browser = timed_start().await;
    let profile = browser.profile_dir();
    assert!(
        !processes_using(&profile).is_empty(),
        "Chromium should be running with {}",
        profile.display()
    );

    browser.goto(&format!("{url}/page")).await;
    assert_eq!(browser.current_url().await, format!("{url}/page"));
    assert_eq!(
        browser
            .wait_for("return document.title === 'ready' && document.title", LIMIT)
            .await,
        json!("ready")
    );

    browser.type_text("#t", "ab").await;
    browser.press("#t", Key::Enter).await;
    browser.type_text("#t", "\u{E004}").await; // Tab
    assert_eq!(
        take_keys(&browser).await,
        keys(&[
            ("a", false, "t"),
            ("b", false, "t"),
            ("Enter", false, "t"),
            ("Tab", false, "t"),
        ])
    );
    assert_eq!(
        browser
            .execute("return document.getElementById('t').value", vec![])
            .await,
        json!("ab\n")
    );

    // Ctrl-C, released explicitly: the "d" after it is typed without Ctrl.
    browser.type_text("#t", "\u{E009}c\u{E009}d").await;
    assert_eq!(
        take_keys(&browser).await,
        keys(&[("Control", true, "t"), ("c", true, "t"), ("d", false, "t")])
    );
    // Left pressed at the end of the string, Ctrl is released there, so the next call
    // starts without it.
    browser.type_text("#t", &(Key::Control + "c")).await;
    browser.type_text("#t", "e").await;
    assert_eq!(
        take_keys(&browser).await,
        keys(&[("Control", true, "t"), ("c", true, "t"), ("e", false, "t")])
    );

    // An invisible, zero-size textarea like xterm.js's still takes keys.
    browser
        .type_text("#term", &(Key::Control + "c" + &Key::Control))
        .await;
    assert_eq!(
        take_keys(&browser).await,
        keys(&[("Control", true, "term"), ("c", true, "term")])
    );

    let rows = browser.wait_for_text("#rows", "$ echo hi", LIMIT).await;
    assert_eq!(rows, "$ echo hi");
    assert!(browser.page_text().await.contains("$ echo hi"));
    assert_eq!(
        browser
            .execute(
                "return arguments[0] + arguments[1]",
                vec![json!(2), json!(3)]
            )
            .await,
        json!(5)
    );

    let shot = artifacts_dir().join("browser-keys.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        shot.display()
    );

    browser.close().await;
    assert_eq!(
        processes_using(&profile),
        "",
        "Chromium processes outlived the Browser"
    );
    assert!(!profile.exists(), "the profile directory should be removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_browsers_at_once() {
    let url = serve_page().await;
    let started = Instant::now();
    let (one, two) = tokio::join!(Browser::start(), Browser::start());
    eprintln!("two Browser::start at once took {:?}", started.elapsed());
    assert_ne!(one.chromedriver_pid(), two.chromedriver_pid());
    assert_ne!(one.profile_dir(), two.profile_dir());

    let (url_one, url_two) = (format!("{url}/one"), format!("{url}/two"));
    tokio::join!(one.goto(&url_one), two.goto(&url_two));
    tokio::join!(one.type_text("#t", "first"), two.type_text("#t", "second"));
    let value = "return document.getElementById('t').value";
    assert_eq!(one.execute(value, vec![]).await, json!("first"));
    assert_eq!(two.execute(value, vec![]).await, json!("second"));
    assert_eq!(one.current_url().await, url_one);
    assert_eq!(two.current_url().await, url_two);

    // Dropped without `close`: killing chromedriver must take Chromium with it.
    let profiles = [one.profile_dir(), two.profile_dir()];
    drop(one);
    drop(two);
    for profile in &profiles {
        assert_eq!(
            processes_using(profile),
            "",
            "Chromium processes outlived the Browser"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "waiting for \"nope\"\n--- text of \"#rows\" ---\n$ echo hi")]
async fn wait_for_text_reports_what_it_saw() {
    let url = serve_page().await;
    let browser = Browser::start().await;
    browser.goto(&url).await;
    browser
        .wait_for_text("#rows", "nope", Duration::from_millis(200))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "last result: null (does the script `return` its value?)")]
async fn wait_for_reports_a_missing_return() {
    let url = serve_page().await;
    let browser = Browser::start().await;
    browser.goto(&url).await;
    let _: Value = browser
        .wait_for("window.keys.length > 0", Duration::from_millis(200))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_dies_with_a_killed_chromedriver() {
    // What happens when the test process is killed outright: the kernel kills
    // chromedriver (parent-death signal), and Chromium must follow on its own.
    let browser = Browser::start().await;
    let profile = browser.profile_dir();
    let status = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(browser.chromedriver_pid().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = processes_using(&profile);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Chromium outlived its chromedriver:\n{left}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
