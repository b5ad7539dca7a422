//! The stdio transport: newline-delimited JSON-RPC on stdin/stdout, with a JSON-RPC parse
//! error for every line that is not JSON.
//!
//! rmcp's own line transport deliberately drops a line that is not valid JSON without a
//! word (rust-sdk issue #938: it fears an error storm with a peer that echoes replies), so
//! a client whose request was mangled waits for an answer that never comes. JSON-RPC 2.0
//! says such a message gets error -32700 with `id: null`. So stdin goes through
//! [`LineGate`] first: every complete line is checked to be UTF-8 JSON (`serde_json`);
//! valid lines go on to rmcp unchanged through an in-memory pipe, and the others are
//! answered here. The parse errors we send are themselves valid JSON, so a peer that
//! echoes them cannot start a storm. Because two writers now share stdout, rmcp's output
//! also goes through a pipe, and one task copies whole lines from either source, so a
//! reply is never cut into by another.

use rmcp::ServiceExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::error::{McpError, Result};
use crate::tools::SshSessionServer;

/// The longest line accepted, as rmcp's own transport (16 MiB): a longer one is discarded
/// and answered with an error instead of being buffered without bound.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Serves `server` over stdin/stdout until the client closes stdin, then closes every
/// session (persistent ones keep their remote tmux session).
pub async fn serve_stdio(server: SshSessionServer) -> Result<()> {
    serve_lines(server, tokio::io::stdin(), tokio::io::stdout()).await
}

/// [`serve_stdio`] over any byte streams (tests use in-memory pipes).
pub async fn serve_lines<R, W>(server: SshSessionServer, input: R, output: W) -> Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let manager = server.manager().clone();
    let (to_rmcp, rmcp_in) = tokio::io::duplex(64 * 1024);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(64 * 1024);
    let (errors_tx, errors_rx) = mpsc::channel(16);
    let gate = tokio::spawn(LineGate::new(input, to_rmcp, errors_tx).run());
    let writer = tokio::spawn(write_lines(from_rmcp, errors_rx, output));
    let outcome = match server.serve((rmcp_in, rmcp_out)).await {
        Ok(running) => running
            .waiting()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // The service is gone (and with it rmcp's ends of both pipes): stop reading stdin
    // (it may never reach EOF if the service ended for another reason), then let the
    // writer finish what it holds.
    gate.abort();
    let _ = writer.await;
    manager.shutdown_detaching_persistent().await;
    outcome.map_err(|detail| McpError::Transport { detail })
}

/// Reads lines from the client, passes JSON ones on to rmcp and reports the others.
struct LineGate<R, F> {
    input: BufReader<R>,
    forward: F,
    errors: mpsc::Sender<Vec<u8>>,
}

impl<R: AsyncRead + Unpin, F: AsyncWrite + Unpin> LineGate<R, F> {
    fn new(input: R, forward: F, errors: mpsc::Sender<Vec<u8>>) -> Self {
        LineGate {
            input: BufReader::new(input),
            forward,
            errors,
        }
    }

    async fn run(mut self) {
        let mut line = Vec::new();
        loop {
            line.clear();
            let eof = match self.read_line(&mut line).await {
                Ok(Line::Complete) => false,
                Ok(Line::Last) => true,
                Ok(Line::TooLong) => {
                    let reply = error_reply(
                        -32600,
                        &format!("Invalid Request: a message longer than {MAX_LINE_BYTES} bytes was discarded"),
                    );
                    if self.errors.send(reply).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!("reading stdin: {e}");
                    return;
                }
            };
            let text = trim_line(&line);
            if !text.is_empty() {
                let sent = match check_json(text) {
                    // rmcp frames by newline: a last line without one gets it here.
                    Ok(()) => self.forward_line(&line).await,
                    Err(reason) => {
                        tracing::debug!("answering an unparsable line: {reason}");
                        let reply = error_reply(-32700, &format!("Parse error: {reason}"));
                        self.errors.send(reply).await.is_ok()
                    }
                };
                if !sent {
                    return;
                }
            }
            if eof {
                // Dropping `forward` is rmcp's end of input.
                return;
            }
        }
    }

    async fn forward_line(&mut self, line: &[u8]) -> bool {
        let mut ok = self.forward.write_all(line).await.is_ok();
        if ok && !line.ends_with(b"\n") {
            ok = self.forward.write_all(b"\n").await.is_ok();
        }
        ok && self.forward.flush().await.is_ok()
    }

    /// One line into `buf`, newline included; never more than [`MAX_LINE_BYTES`] held.
    async fn read_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Line> {
        let mut too_long = false;
        loop {
            let available = self.input.fill_buf().await?;
            if available.is_empty() {
                return Ok(if too_long { Line::TooLong } else { Line::Last });
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let take = newline.map_or(available.len(), |i| i + 1);
            if !too_long && buf.len() + take > MAX_LINE_BYTES {
                too_long = true;
                buf.clear();
            }
            if !too_long {
                buf.extend_from_slice(&available[..take]);
            }
            self.input.consume(take);
            if newline.is_some() {
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
        }
    }
}

/// What [`LineGate::read_line`] found.
enum Line {
    /// A line ended by a newline.
    Complete,
    /// The input ended; the buffer holds what came after the last newline (maybe nothing).
    Last,
    /// Longer than [`MAX_LINE_BYTES`]: discarded.
    TooLong,
}

/// The line without its line ending, and without a UTF-8 byte-order mark (which rmcp
/// also ignores).
fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line)
}

/// Whether `text` is one JSON value in UTF-8, with the reason when it is not.
///
/// UTF-8 is checked first and on its own: `serde_json` parsing bytes does not validate
/// the strings it skips, and rmcp would then refuse the line as text anyway.
fn check_json(text: &[u8]) -> std::result::Result<(), String> {
    let text = std::str::from_utf8(text)
        .map_err(|e| format!("the line is not valid UTF-8 (byte {})", e.valid_up_to()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| format!("the line is not valid JSON ({e})"))
}

/// A JSON-RPC error response with `id: null`, newline-terminated.
fn error_reply(code: i32, message: &str) -> Vec<u8> {
    let reply = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    });
    let mut bytes = reply.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// Copies whole lines from rmcp and whole error replies to `output`, until rmcp's output
/// ends and no error reply is left.
async fn write_lines<R, W>(from_rmcp: R, mut errors: mpsc::Receiver<Vec<u8>>, mut output: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut from_rmcp = BufReader::new(from_rmcp);
    let mut line = Vec::new();
    let mut rmcp_open = true;
    let mut errors_open = true;
    while rmcp_open || errors_open {
        let chunk = tokio::select! {
            read = from_rmcp.read_until(b'\n', &mut line), if rmcp_open => {
                match read {
                    Ok(0) | Err(_) => {
                        rmcp_open = false;
                        continue;
                    }
                    Ok(_) => std::mem::take(&mut line),
                }
            }
            reply = errors.recv(), if errors_open => match reply {
                Some(reply) => reply,
                None => {
                    errors_open = false;
                    continue;
                }
            },
        };
        if output.write_all(&chunk).await.is_err() || output.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_as_utf8_json() {
        assert!(check_json(br#"{"a":"\u00e9"}"#).is_ok());
        assert!(check_json(b"{\"a\":\"\xc3\xa9\"}").is_ok());
        assert!(check_json(b"{\"a\":\"\xc3\x28\"}")
            .unwrap_err()
            .contains("UTF-8"));
        assert!(check_json(b"{\"a\":").unwrap_err().contains("JSON"));
        assert!(check_json(b"{} {}").unwrap_err().contains("JSON"));
        assert_eq!(trim_line(b"\xef\xbb\xbf{}\r\n"), b"{}");
    }

    #[test]
    fn replies_are_json_rpc_errors_with_a_null_id() {
        let reply = error_reply(-32700, "Parse error: x");
        assert_eq!(reply.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_default();
        assert_eq!(v["id"], serde_json::Value::Null);
        assert_eq!(v["error"]["code"], -32700);
    }
}
