//! Getting in, over raw HTTP/1.1 on loopback (what a hostile page or a curious local
//! program can send): no cookie, a spent link, a foreign `Origin`, a rebinding `Host`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::net::SocketAddr;

use ssh_session_core::SessionManager;
use ssh_session_web::{Web, WebOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server() -> (Web, SocketAddr) {
    let listener = ssh_session_web::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let web = Web::new(SessionManager::new(), addr, WebOptions::default()).unwrap();
    tokio::spawn(web.clone().serve(listener, std::future::pending()));
    (web, addr)
}

/// Sends one request (`headers` without Host unless given) and returns the response head.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, String)]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        req.push_str("Connection: close\r\n");
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // The head is all these checks need (a refused upgrade may keep the connection open).
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> u16 {
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

fn upgrade(origin: Option<String>, cookie: Option<String>) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Upgrade", "websocket".to_string()),
        ("Connection", "Upgrade".into()),
        ("Sec-WebSocket-Version", "13".into()),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".into()),
    ];
    if let Some(o) = origin {
        h.push(("Origin", o));
    }
    if let Some(c) = cookie {
        h.push(("Cookie", c));
    }
    h
}

#[tokio::test]
async fn without_the_cookie_nothing_opens_and_a_link_works_once() {
    let (web, addr) = server().await;
    let own = format!("http://{addr}");
    assert_eq!(status(&get(addr, "/", &[]).await), 401);
    assert_eq!(status(&get(addr, "/session/web", &[]).await), 401);
    let r = get(addr, "/session/web/ws", &upgrade(Some(own.clone()), None)).await;
    assert_eq!(status(&r), 401, "{r}");
    assert_eq!(
        status(
            &get(
                addr,
                "/",
                &[("Cookie", format!("ssh-session-{}=guess", addr.port()))]
            )
            .await
        ),
        401
    );

    let link = web.share(None, false).unwrap();
    let path = link.url.strip_prefix(&own).unwrap().to_string();
    let r = get(addr, &path, &[]).await;
    assert_eq!(status(&r), 303, "{r}");
    assert!(
        r.contains("location: /\r\n"),
        "redirects without the secret: {r}"
    );
    let set = r
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap()
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    let cookie = set
        .split_once(':')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(status(&get(addr, &path, &[]).await), 403, "a spent link");

    let index = get(addr, "/", &[("Cookie", cookie.clone())]).await;
    assert_eq!(status(&index), 200, "{index}");
    assert!(index.contains("frame-ancestors 'none'"), "{index}");
    // The cookie and the page's own origin get past every check to the session lookup.
    let r = get(
        addr,
        "/session/web/ws",
        &upgrade(Some(own.clone()), Some(cookie.clone())),
    )
    .await;
    assert_eq!(status(&r), 404, "{r}");
    // A page on another port of the same host is the same site, not the same origin.
    for foreign in [
        format!("http://127.0.0.1:{}", addr.port() + 1),
        format!("http://localhost:{}", addr.port()),
        "https://evil.test".to_string(),
        "null".to_string(),
    ] {
        let r = get(
            addr,
            "/session/web/ws",
            &upgrade(Some(foreign.clone()), Some(cookie.clone())),
        )
        .await;
        assert_eq!(status(&r), 403, "{foreign}: {r}");
    }
    let r = get(
        addr,
        "/session/web/ws",
        &upgrade(None, Some(cookie.clone())),
    )
    .await;
    assert_eq!(status(&r), 403, "no Origin: {r}");
    // DNS rebinding: another name for this address.
    let r = get(
        addr,
        "/",
        &[
            ("Host", format!("evil.test:{}", addr.port())),
            ("Cookie", cookie),
        ],
    )
    .await;
    assert_eq!(status(&r), 403, "{r}");
    assert_eq!(status(&get(addr, "/assets/xterm.js", &[]).await), 200);
    assert_eq!(status(&get(addr, "/assets/..%2Fsecret", &[]).await), 404);
}

#[tokio::test]
async fn a_link_to_a_session_that_does_not_exist_is_refused() {
    let (web, _) = server().await;
    let e = web.share(Some("nope"), false).unwrap_err();
    assert!(e.to_string().contains("no session named \"nope\""), "{e}");
}
