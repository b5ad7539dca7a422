//! What the streamable HTTP mode checks between the token and rmcp's service:
//!
//! - a POST body that is not JSON gets 400 with a JSON-RPC parse error (-32700), and JSON
//!   that is no JSON-RPC message 400 with -32600 (rmcp answers both with 415, which says
//!   the media type is wrong; a wrong `Content-Type` still gets rmcp's 415);
//! - an `initialize` that would open more MCP sessions than `[http] max_sessions` gets 503
//!   (rmcp keeps every session until it idles out: 12,000 initializes in 5 s held 650 MB);
//! - every exchange of a session is reported to the [`IdleTracker`], which ends sessions
//!   that have none for the idle timeout;
//! - `DELETE` of an MCP session that does not exist (never did, closed, expired) gets 404,
//!   as the specification asks of any request naming an ended session; a successful one
//!   204, since the session is gone when rmcp answers (rmcp says 202 Accepted).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::SessionManager;

use super::idle::{Exchange, IdleTracker};

/// The largest POST body read (rmcp's own limit): beyond it, 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

const SESSION_HEADER: &str = "mcp-session-id";

/// The state of the gate: rmcp's session table and the limits.
#[derive(Debug)]
pub struct Gate {
    sessions: Arc<LocalSessionManager>,
    idle_tracker: Arc<IdleTracker>,
    max_sessions: usize,
    /// The idle timeout, for messages ("30 min", "2 s").
    idle: String,
    /// Held from counting the sessions until rmcp has created the new one, so concurrent
    /// `initialize`s cannot all see room for one more.
    opening: tokio::sync::Mutex<()>,
    /// Set while initializes are being refused, so a flood of them logs one warning.
    full: std::sync::atomic::AtomicBool,
}

impl Gate {
    /// A gate in front of `sessions`, reporting their activity to `idle_tracker`.
    pub fn new(
        sessions: Arc<LocalSessionManager>,
        idle_tracker: Arc<IdleTracker>,
        max_sessions: usize,
        idle_secs: u64,
    ) -> Gate {
        Gate {
            sessions,
            idle_tracker,
            max_sessions,
            idle: match idle_secs {
                s if s % 60 == 0 => format!("{} min", s / 60),
                s => format!("{s} s"),
            },
            opening: tokio::sync::Mutex::new(()),
            full: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Middleware: see the module documentation.
pub async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    match *request.method() {
        Method::POST => post(&gate, request, next).await,
        Method::DELETE => delete(&gate, request, next).await,
        _ => in_session(&gate, request, next).await,
    }
}

/// Runs a request of an existing session (if it names one) as one exchange of it.
async fn in_session(gate: &Gate, request: Request, next: Next) -> Response {
    let exchange = session_id(&request).and_then(|id| gate.idle_tracker.begin(id));
    let response = next.run(request).await;
    hold_until_sent(response, exchange)
}

fn session_id(request: &Request) -> Option<&str> {
    request.headers().get(SESSION_HEADER)?.to_str().ok()
}

/// A streamed answer (SSE) counts as activity until its last byte is sent; any other is
/// complete already.
fn hold_until_sent(response: Response, exchange: Option<Exchange>) -> Response {
    let Some(exchange) = exchange else {
        return response;
    };
    let streamed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !streamed {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &exchange;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

async fn post(gate: &Gate, request: Request, next: Next) -> Response {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        // rmcp's 415 says what is expected.
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let message = match serde_json::from_slice::<ClientJsonRpcMessage>(&bytes) {
        Ok(message) => message,
        Err(e) => return refuse_body(&bytes, &e),
    };
    let opens_session = !parts.headers.contains_key(SESSION_HEADER)
        && matches!(&message, ClientJsonRpcMessage::Request(r)
            if matches!(r.request, ClientRequest::InitializeRequest(_)));
    let request = Request::from_parts(parts, Body::from(bytes));
    if !opens_session {
        return in_session(gate, request, next).await;
    }
    let _opening = gate.opening.lock().await;
    let open = gate.sessions.sessions.read().await.len();
    if open >= gate.max_sessions {
        if !gate.full.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(open, "refusing MCP initializes: max_sessions reached");
        }
        let text = format!(
            "too many MCP sessions: {open} are open, the limit is max_sessions = {} ([http] in the configuration file). End unused ones (HTTP DELETE with their Mcp-Session-Id), wait for idle ones to expire ({} without a request), or raise the limit\n",
            gate.max_sessions, gate.idle
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response();
    }
    gate.full.store(false, std::sync::atomic::Ordering::Relaxed);
    let response = next.run(request).await;
    let exchange = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|id| gate.idle_tracker.opened(id.into()));
    hold_until_sent(response, exchange)
}

async fn delete(gate: &Gate, request: Request, next: Next) -> Response {
    let Some(id) = request.headers().get(SESSION_HEADER) else {
        // rmcp's 400 says the header is required.
        return next.run(request).await;
    };
    let id = id.to_str().unwrap_or_default().to_string();
    let known = gate
        .sessions
        .has_session(&id.as_str().into())
        .await
        .unwrap_or(false);
    if !known {
        let shown: String = id.chars().take(100).collect();
        let text = format!(
            "no MCP session {shown:?}: it was ended, or expired after {} without a request, or never existed; send initialize to start a new one\n",
            gate.idle
        );
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
        gate.idle_tracker.forget(&id);
    }
    response
}

/// The whole body, or the response refusing it (413 beyond [`MAX_BODY_BYTES`]).
async fn read_body(body: Body) -> Result<Bytes, Response> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}\n"),
            )
                .into_response()
        })?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes\n"),
            )
                .into_response());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.into())
}

/// 400 with a JSON-RPC error: -32700 if `bytes` is not JSON, else -32600 (with the
/// message's `id` when it has a usable one).
fn refuse_body(bytes: &[u8], error: &serde_json::Error) -> Response {
    let value = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok());
    let (code, message, id) = match value {
        None => {
            let why = match std::str::from_utf8(bytes) {
                Err(e) => format!("the body is not valid UTF-8 (byte {})", e.valid_up_to()),
                Ok(_) => format!("the body is not valid JSON ({error})"),
            };
            (
                -32700,
                format!("Parse error: {why}"),
                serde_json::Value::Null,
            )
        }
        Some(value) => {
            let id = match value.get("id") {
                Some(id @ (serde_json::Value::String(_) | serde_json::Value::Number(_))) => {
                    id.clone()
                }
                _ => serde_json::Value::Null,
            };
            (
                -32600,
                format!("Invalid Request: not a JSON-RPC 2.0 message of MCP ({error})"),
                id,
            )
        }
    };
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message},
    });
    let mut response = (StatusCode::BAD_REQUEST, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refused(bytes: &[u8]) -> serde_json::Value {
        let e = serde_json::from_slice::<ClientJsonRpcMessage>(bytes).unwrap_err();
        let response = refuse_body(bytes, &e);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn bodies_are_refused_with_the_right_json_rpc_code() {
        let r = refused(b"{\"jsonrpc\":").await;
        assert_eq!(
            (r["error"]["code"].as_i64(), &r["id"]),
            (Some(-32700), &serde_json::Value::Null)
        );
        let r = refused(b"\"\xff\"").await;
        assert!(
            r["error"]["message"].as_str().unwrap().contains("UTF-8"),
            "{r}"
        );
        let r = refused(br#"{"id":"a","method":1}"#).await;
        assert_eq!(
            (r["error"]["code"].as_i64(), r["id"].as_str()),
            (Some(-32600), Some("a"))
        );
        let r = refused(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).await;
        assert_eq!(r["error"]["code"].as_i64(), Some(-32600), "{r}");
    }
}
