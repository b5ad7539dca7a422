//! The stdio transport at the byte level: the built binary gets request lines that are not
//! JSON (invalid UTF-8, truncated, trailing garbage) between valid ones. Each bad line must
//! be answered with a JSON-RPC parse error (code -32700, id null) and the requests that
//! follow must be served as usual. No SSH server is needed: nothing here connects.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::{json, Value};

/// The server over stdio, its replies read line by line on a thread so that a missing
/// reply is a bounded wait and not a hang.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssh-session-mcp"))
            .args(["--no-agent", "--ssh-config", "/dev/null"])
            .args(["--known-hosts", "/dev/null"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-session-mcp");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            stdin: Some(stdin),
            lines,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// The next reply, parsed; fails after 10 s without one.
    fn reply(&self, after: &str) -> Value {
        match self.lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("reply to {after} is not JSON ({e}): {line:?}")),
            Err(RecvTimeoutError::Timeout) => panic!("no reply within 10 s to {after}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server exited after {after}"),
        }
    }

    /// The MCP handshake.
    fn initialize(&mut self) {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}});
        self.send(format!("{init}\n").as_bytes());
        let r = self.reply("initialize");
        assert_eq!(r["id"], 1, "{r}");
        assert!(r["result"]["serverInfo"].is_object(), "{r}");
        self.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    }

    /// Sends a bad line and checks the parse error it gets.
    fn expect_parse_error(&mut self, line: &[u8], what: &str) {
        self.send(line);
        let r = self.reply(what);
        assert_eq!(r["jsonrpc"], "2.0", "{what}: {r}");
        assert_eq!(r["id"], Value::Null, "{what}: id must be null: {r}");
        assert_eq!(r["error"]["code"], -32700, "{what}: {r}");
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("Parse error"), "{what}: {r}");
    }

    /// A ping with `id` is answered with an empty result.
    fn expect_ping(&mut self, id: u64) {
        self.send(
            format!(
                "{}\n",
                json!({"jsonrpc": "2.0", "id": id, "method": "ping"})
            )
            .as_bytes(),
        );
        let r = self.reply("ping");
        assert_eq!(r["id"], id, "{r}");
        assert!(r["result"].is_object(), "{r}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn malformed_lines_get_a_parse_error_and_the_server_keeps_serving() {
    let mut s = Server::start();
    s.initialize();

    s.expect_parse_error(b"\xff\xfe\x00garbage\n", "invalid UTF-8");
    s.expect_ping(2);
    s.expect_parse_error(
        b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/li\n",
        "truncated JSON",
    );
    // Well-formed JSON syntax whose string holds a byte that is not UTF-8.
    s.expect_parse_error(
        b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\",\"params\":{\"x\":\"\xc3\x28\"}}\n",
        "invalid UTF-8 inside a string",
    );
    s.expect_parse_error(
        b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"} }\n",
        "trailing garbage",
    );
    s.expect_parse_error(b"not json at all\r\n", "plain text with CRLF");
    // Empty lines are no messages: no reply at all, the next request is answered next.
    s.send(b"\n\r\n");
    s.expect_ping(6);

    // The next valid request is served in full.
    s.send(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}\n");
    let r = s.reply("tools/list");
    assert_eq!(r["id"], 7, "{r}");
    let tools = r["result"]["tools"].as_array().expect("tools");
    assert!(tools.iter().any(|t| t["name"] == "ssh_exec"), "{r}");

    // A line beyond the 16 MiB limit is discarded, not buffered, and said so.
    let mut huge = vec![b'x'; 17 * 1024 * 1024];
    huge.push(b'\n');
    s.send(&huge);
    let r = s.reply("a 17 MiB line");
    assert_eq!(
        (&r["id"], &r["error"]["code"]),
        (&Value::Null, &json!(-32600)),
        "{r}"
    );
    s.expect_ping(9);

    // A request split across writes is still one message (lines, not reads, are framed).
    s.send(b"{\"jsonrpc\":\"2.0\",");
    std::thread::sleep(Duration::from_millis(100));
    s.send(b"\"id\":8,\"method\":\"ping\"}\n");
    let r = s.reply("split ping");
    assert_eq!(r["id"], 8, "{r}");
}

#[test]
fn end_of_input_ends_the_server_cleanly_even_after_a_bad_line() {
    let mut s = Server::start();
    s.initialize();
    s.expect_parse_error(b"}{\n", "garbage");
    // A last line without its newline is still a line: answered, then the server ends.
    s.send(b"{\"jsonrpc\":\"2.0\",\"id\":");
    drop(s.stdin.take());
    let r = s.reply("an unterminated last line");
    assert_eq!(r["error"]["code"], -32700, "{r}");
    let status = {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running 10 s after EOF"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(status.success(), "{status}");
}
