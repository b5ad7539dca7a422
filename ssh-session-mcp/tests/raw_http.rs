//! Streamable HTTP at the protocol level: the built binary with `--http`, spoken to with
//! raw HTTP/1.1 over a TCP socket, so every status code, header and body byte is the
//! server's own. Covers the `Origin` check (before the token, telling nothing about it),
//! malformed bodies, `DELETE` of an MCP session, the cap on live MCP sessions, idle expiry,
//! and tokens refused at startup. No SSH server is needed: nothing here connects.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TOKEN: &str = "raw-http-token-0123456789";

/// A running `ssh-session-mcp --http 127.0.0.1:0`.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// The browser terminal's login link, as printed at start.
    login: String,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssh-session-mcp"))
            .args([
                "--no-agent",
                "--ssh-config",
                "/dev/null",
                "--known-hosts",
                "/dev/null",
            ])
            .args(["--http", "127.0.0.1:0", "--token", TOKEN])
            .args(extra)
            .env_remove("SSH_SESSION_MCP_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ssh-session-mcp");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let addr = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("the server exited before listening: {seen}");
            }
            seen.push_str(&line);
            if let Some(url) = line
                .trim()
                .strip_prefix("ssh-session-mcp: listening on http://")
            {
                break url.trim_end_matches("/mcp").parse().unwrap();
            }
        };
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let login = line
            .split_whitespace()
            .find(|w| w.contains("/login?token="))
            .unwrap_or_else(|| panic!("no login link after listening: {line}"))
            .to_string();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Server { child, addr, login }
    }

    /// One request on a fresh connection; `headers` are added to Host, Content-Length and
    /// Connection: close.
    fn request(&self, method: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.request_to(method, "/mcp", headers, body)
    }

    /// [`request`](Self::request) to another path.
    fn request_to(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .expect("a complete response within 10 s");
        Response::parse(&raw)
    }

    /// A JSON-RPC POST with the right token, the right media types and `extra` headers.
    fn post(&self, body: &Value, extra: &[(&str, &str)]) -> Response {
        let auth = format!("Bearer {TOKEN}");
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        headers.extend_from_slice(extra);
        self.request("POST", &headers, body.to_string().as_bytes())
    }

    /// `initialize` then `notifications/initialized`; returns the MCP session id.
    fn initialize(&self) -> String {
        let r = self.post(&initialize_request(), &[]);
        assert_eq!(r.status, 200, "initialize: {r:?}");
        let id = r
            .header("mcp-session-id")
            .expect("Mcp-Session-Id")
            .to_string();
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let r = self.post(&note, &[("Mcp-Session-Id", &id)]);
        assert_eq!(r.status, 202, "initialized: {r:?}");
        id
    }

    /// A ping inside MCP session `id`.
    fn ping(&self, id: &str) -> Response {
        let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
        self.post(&ping, &[("Mcp-Session-Id", id)])
    }

    fn delete(&self, id: &str) -> Response {
        let auth = format!("Bearer {TOKEN}");
        self.request(
            "DELETE",
            &[("Authorization", &auth), ("Mcp-Session-Id", id)],
            b"",
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn initialize_request() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw-http", "version": "1"}}})
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn parse(raw: &[u8]) -> Response {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end: {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as one JSON value (plain JSON, or the last `data:` event of an SSE body).
    fn json(&self) -> Value {
        let text = self
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or(&self.body);
        serde_json::from_str(text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&body[..eol]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 4 + size..];
    }
}

#[test]
fn origin_is_checked_first_and_loopback_or_listed_origins_pass() {
    let s = Server::start(&["--allow-origin", "https://app.example.test"]);
    let own = format!("http://{}", s.addr);
    for origin in [
        None,
        Some("http://localhost:5173"),
        Some("http://127.0.0.1:8080"),
        Some("http://[::1]:3000"),
        Some("https://localhost"),
        Some(own.as_str()),
        Some("https://app.example.test"),
    ] {
        let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("Origin", *o)).collect();
        let r = s.post(&initialize_request(), &headers);
        assert_eq!(r.status, 200, "Origin {origin:?} must be allowed: {r:?}");
    }
    for origin in [
        "http://evil.example.test",
        "http://localhost.evil.example.test",
        "http://127.0.0.1.nip.io",
        "https://app.example.test:8443",
        "http://app.example.test",
        "null",
        "not an origin",
    ] {
        let r = s.post(&initialize_request(), &[("Origin", origin)]);
        assert_eq!(r.status, 403, "Origin {origin:?} must be refused: {r:?}");
        assert!(
            r.body.contains(origin) && r.body.contains("--allow-origin"),
            "the refusal names the origin and the way to allow it: {r:?}"
        );
        // Without the token, or with a wrong one: the same answer, so a page learns
        // nothing about the token.
        for auth in [None, Some("Bearer wrong-wrong-wrong-wrong")] {
            let mut headers = vec![("Origin", origin), ("Content-Type", "application/json")];
            headers.extend(auth.map(|a| ("Authorization", a)));
            let refused = s.request(
                "POST",
                &headers,
                initialize_request().to_string().as_bytes(),
            );
            assert_eq!(
                (refused.status, &refused.body),
                (403, &r.body),
                "{origin}, {auth:?}"
            );
        }
    }
    // The token is still required from an allowed origin.
    let headers = [
        ("Origin", "http://localhost:5173"),
        ("Content-Type", "application/json"),
    ];
    let r = s.request(
        "POST",
        &headers,
        initialize_request().to_string().as_bytes(),
    );
    assert_eq!(r.status, 401, "{r:?}");
}

#[test]
fn the_browser_terminal_shares_the_listener_with_its_own_login() {
    let server = Server::start(&[]);
    // Pages need the cookie; the bearer token is not it.
    let bearer = format!("Bearer {TOKEN}");
    let r = server.request_to("GET", "/", &[("Authorization", &bearer)], b"");
    assert_eq!(r.status, 401, "{r:?}");
    let path = server
        .login
        .strip_prefix(&format!("http://{}", server.addr))
        .unwrap()
        .to_string();
    let r = server.request_to("GET", &path, &[], b"");
    assert_eq!(r.status, 303, "{r:?}");
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = server.request_to("GET", "/", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 200, "{r:?}");
    // ...and the cookie is not the bearer token: /mcp still wants the token.
    let r = server.request_to("POST", "/mcp", &[("Cookie", &cookie)], b"{}");
    assert_eq!(r.status, 401, "{r:?}");
    // A second --web makes no sense beside --http.
    let out = Command::new(env!("CARGO_BIN_EXE_ssh-session-mcp"))
        .args(["--http", "127.0.0.1:0", "--token", TOKEN, "--web"])
        .env_remove("SSH_SESSION_MCP_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--web with --http"), "{err}");
}

#[test]
fn stdio_with_web_serves_the_browser_terminal_on_a_free_loopback_port() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssh-session-mcp"))
        .args(["--no-agent", "--ssh-config", "/dev/null", "--web"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let link = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:") && w.contains("/login?token="))
        .unwrap_or_else(|| panic!("no login link on stderr: {line}"));
    let (addr, path) = link
        .strip_prefix("http://")
        .unwrap()
        .split_once('/')
        .unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let r = Response::parse(&raw);
    assert_eq!(r.status, 303, "{r:?}");
    assert!(
        r.header("set-cookie").unwrap().contains("HttpOnly"),
        "{r:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_bad_allow_origin_is_refused_at_startup() {
    let out = Command::new(env!("CARGO_BIN_EXE_ssh-session-mcp"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--allow-origin",
            "app.example.test",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--allow-origin") && stderr.contains("app.example.test"),
        "{stderr}"
    );
}

#[test]
fn malformed_json_is_a_400_parse_error_and_a_wrong_content_type_415() {
    let s = Server::start(&[]);
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    for body in [
        &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"meth"[..],
        b"\xff\xfe",
        b"",
        b"{} {}",
    ] {
        let r = s.request("POST", &headers, body);
        assert_eq!(r.status, 400, "{body:?}: {r:?}");
        let j = r.json();
        assert_eq!(
            (j["jsonrpc"].as_str(), &j["id"], &j["error"]["code"]),
            (Some("2.0"), &Value::Null, &json!(-32700)),
            "{body:?}: {r:?}"
        );
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{r:?}"
        );
    }
    // Valid JSON that is no JSON-RPC message: Invalid Request, with its id when it has one.
    for (body, id) in [
        (json!({"hello": 1}), Value::Null),
        (json!({"id": 5, "method": 7}), json!(5)),
    ] {
        let r = s.request("POST", &headers, body.to_string().as_bytes());
        assert_eq!(r.status, 400, "{body}: {r:?}");
        let j = r.json();
        assert_eq!(
            (&j["error"]["code"], &j["id"]),
            (&json!(-32600), &id),
            "{body}: {r:?}"
        );
    }
    let wrong_type = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "text/plain"),
        ("Accept", "application/json, text/event-stream"),
    ];
    let r = s.request(
        "POST",
        &wrong_type,
        initialize_request().to_string().as_bytes(),
    );
    assert_eq!(r.status, 415, "{r:?}");
    // And the server still works.
    let id = s.initialize();
    assert_eq!(s.ping(&id).status, 200);
}

#[test]
fn delete_ends_an_mcp_session_and_unknown_ones_are_404() {
    let s = Server::start(&[]);
    let id = s.initialize();
    let r = s.ping(&id);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["id"], 9, "{r:?}");
    let r = s.delete(&id);
    assert_eq!(r.status, 204, "DELETE of a live session: {r:?}");
    let r = s.ping(&id);
    assert_eq!(r.status, 404, "a deleted session is gone: {r:?}");
    let r = s.delete(&id);
    assert_eq!(r.status, 404, "DELETE of a deleted session: {r:?}");
    assert!(r.body.contains("initialize"), "{r:?}");
    let r = s.delete("no-such-session");
    assert_eq!(r.status, 404, "DELETE of an unknown session: {r:?}");
    let auth = format!("Bearer {TOKEN}");
    let r = s.request("DELETE", &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 400, "DELETE without Mcp-Session-Id: {r:?}");
    // DELETE needs the token like everything else.
    let r = s.request("DELETE", &[("Mcp-Session-Id", &id)], b"");
    assert_eq!(r.status, 401, "{r:?}");
}

#[test]
fn live_mcp_sessions_are_capped_and_idle_ones_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mcp.toml");
    std::fs::write(
        &config,
        "[http]\nmax_sessions = 3\nsession_idle_timeout_s = 2\n",
    )
    .unwrap();
    let s = Server::start(&["--config", config.to_str().unwrap()]);
    let ids: Vec<String> = (0..3).map(|_| s.initialize()).collect();
    let r = s.post(&initialize_request(), &[]);
    assert_eq!(
        r.status, 503,
        "a 4th session beyond max_sessions = 3: {r:?}"
    );
    assert!(
        r.body.contains("max_sessions = 3") && r.body.contains("DELETE") && r.body.contains("2 s"),
        "the refusal says why and what to do: {r:?}"
    );
    // The sessions in use are unaffected, and closing one makes room.
    assert_eq!(s.ping(&ids[0]).status, 200);
    assert_eq!(s.delete(&ids[1]).status, 204);
    let fourth = s.initialize();

    // Idle sessions expire after 2 s; one used every 500 ms stays alive past that.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(s.ping(&fourth).status, 200, "an active session expired");
        std::thread::sleep(Duration::from_millis(500));
    }
    for id in [&ids[0], &ids[2]] {
        assert_eq!(s.ping(id).status, 404, "idle for 4 s > 2 s: expired");
    }
    // Their room is free again: two more fit beside `fourth`, the next does not.
    s.initialize();
    s.initialize();
    assert_eq!(s.post(&initialize_request(), &[]).status, 503);
}

/// Starts the server with a token from `how` and returns its exit status and stderr.
fn start_with_bad_token(args: &[&str], env: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ssh-session-mcp"));
    cmd.args(["--no-agent", "--http", "127.0.0.1:0"])
        .args(args)
        .env_remove("SSH_SESSION_MCP_TOKEN")
        .stdin(Stdio::null());
    if let Some(v) = env {
        cmd.env("SSH_SESSION_MCP_TOKEN", v);
    }
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("{args:?} / {env:?}: still running after 10 s, the token was accepted: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.success(), err)
}

#[test]
fn tokens_that_cannot_work_are_refused_at_startup() {
    let long = "0123456789abcdef0123";
    let padded = format!("  {long} ");
    let bell = format!("{long}\x07x");
    let tab = format!("{long}\tx");
    let non_ascii = format!("{long}é");
    for (token, says) in [
        ("", "empty"),
        ("   ", "empty"),
        (padded.as_str(), "whitespace"),
        (bell.as_str(), "control character"),
        (tab.as_str(), "control character"),
        (non_ascii.as_str(), "ASCII"),
        ("short", "16"),
    ] {
        let (ok, err) = start_with_bad_token(&["--token", token], None);
        assert!(!ok, "--token {token:?} accepted");
        assert!(
            err.contains("--token") && err.contains(says),
            "--token {token:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
        // (A token file is named so that an ignored variable cannot touch the real one.)
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let (ok, err) =
            start_with_bad_token(&["--token-file", file.to_str().unwrap()], Some(token));
        assert!(!ok, "SSH_SESSION_MCP_TOKEN={token:?} accepted");
        assert!(
            err.contains("SSH_SESSION_MCP_TOKEN") && err.contains(says),
            "SSH_SESSION_MCP_TOKEN={token:?}: {err}"
        );
    }
    // A token file: surrounding whitespace (a trailing newline) is fine, a control
    // character inside is not.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{long}\x1b[0m\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, err) = start_with_bad_token(&["--token-file", file.to_str().unwrap()], None);
    assert!(
        !ok && err.contains("control character") && err.contains(file.to_str().unwrap()),
        "{err}"
    );
}
