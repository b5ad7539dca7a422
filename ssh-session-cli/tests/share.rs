//! `ssh-session share`: the daemon serves the browser terminal over its own sessions, and
//! the links it prints log a browser in once (raw HTTP here; the page itself is tested in
//! real Chromium by the MCP server's browser tests, over the same `ssh-session-web`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{text, wait_until, Env};

/// One HTTP/1.1 GET: (status, head, body).
fn get(url: &str, cookie: Option<&str>) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").expect("an http:// link");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\n{cookie}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn share_prints_a_link_that_logs_a_browser_in_once() {
    let env = Env::new();
    env.connect("shared");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["share", "shared", "--json"])).unwrap();
    let url = json["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{json}");
    assert!(url.contains("/login?token="), "{json}");
    assert_eq!(json["read_only"], false);
    assert!(
        json["expires_at"].as_str().unwrap().ends_with('Z'),
        "{json}"
    );

    // Nothing without the cookie.
    let base = &url[..url.find("/login").unwrap()];
    let (status, _, _) = get(&format!("{base}/session/shared"), None);
    assert_eq!(status, 401);

    let (status, head, _) = get(url, None);
    assert_eq!(status, 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/session/shared"), "{head}");
    let set_cookie = header(&head, "set-cookie").unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap();
    let (status, _, page) = get(&format!("{base}/session/shared"), Some(cookie));
    assert_eq!(status, 200);
    assert!(page.contains("shared"), "{page}");
    // The index lists the daemon's sessions.
    let (status, _, index) = get(&format!("{base}/"), Some(cookie));
    assert_eq!(status, 200);
    assert!(index.contains("/session/shared"), "{index}");

    // A link works once.
    let (status, _, _) = get(url, None);
    assert_eq!(status, 403);

    // The plain form prints the link alone on stdout, on the same server.
    let out = env.run(&["share", "shared", "--read-only"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let second = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(second.starts_with(base), "{second} on {base}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("works once"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn share_refuses_an_unknown_session_and_open_starts_the_browser() {
    let env = Env::new();
    env.connect("here");
    let out = env.run(&["share", "nowhere"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nowhere"), "{stderr}");
    assert!(out.stdout.is_empty());

    // --open runs $BROWSER with the link.
    let opened = env.dir.path().join("opened");
    let browser = env.dir.path().join("browser");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env
        .cmd()
        .env("BROWSER", &browser)
        .args(["share", "here", "--open"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let url = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim_end()
        .to_string();
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&opened)
            .is_ok_and(|o| o == url)),
        "the browser got {:?}, the link is {url}",
        std::fs::read_to_string(&opened)
    );

    // A browser that cannot start is an error that still leaves the link printed.
    let out = env
        .cmd()
        .env("BROWSER", "/nonexistent/browser")
        .args(["share", "here", "--open"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("/login?token="));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BROWSER"),
        "{:?}",
        text(&out)
    );
}
