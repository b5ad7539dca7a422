//! Streamable HTTP transport: `POST/GET/DELETE /mcp`, loopback by default, every request
//! authenticated with a bearer token (required; generated when not given); the browser
//! terminal ([`ssh_session_web`], cookie login) on the same listener.
//!
//! A request passes, in order: the `Origin` check ([`origin`]), the token, the body and
//! session checks ([`gate`]), then rmcp's service (which checks `Host`).

pub mod gate;
pub mod idle;
pub mod origin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::error::{McpError, Result};
use crate::tools::SshSessionServer;

/// A random token: 32 bytes from the OS generator, hex-encoded.
pub fn generate_token() -> String {
    ssh_session_web::generate_token()
}

/// How the HTTP mode is run, besides the address.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// The bearer token every request must carry (check it with [`check_token`]).
    pub token: String,
    /// `Host` headers accepted besides the loopback names and the bound address.
    pub allowed_hosts: Vec<String>,
    /// `Origin`s accepted besides loopback pages and the server's own address
    /// (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// MCP sessions alive at once; an `initialize` beyond it gets 503.
    pub max_sessions: usize,
    /// An MCP session without a request for this long is ended.
    pub session_idle_timeout: Duration,
}

impl HttpOptions {
    /// The options with `token` and the limits of `config`'s `[http]` table.
    pub fn new(token: String, config: &crate::config::HttpConfig) -> HttpOptions {
        HttpOptions {
            token,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_sessions: config.max_sessions,
            session_idle_timeout: Duration::from_secs(config.session_idle_timeout_s),
        }
    }
}

/// Binds `addr` and serves `server` at `/mcp` until `shutdown` resolves. Requests must
/// carry `Host` set to a loopback name, the bound address or one of
/// `options.allowed_hosts` (rmcp's defence against DNS rebinding), and an `Origin`, if any,
/// that [`origin::OriginPolicy`] allows. `ready` gets the bound address (useful with port 0).
pub async fn serve_http(
    server: SshSessionServer,
    addr: SocketAddr,
    options: HttpOptions,
    ready: impl FnOnce(SocketAddr, &ssh_session_web::Web),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    check_token(&options.token, "the token")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| McpError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| McpError::Listen { addr, source })?;
    let allowed_hosts = ssh_session_web::origin::allowed_hosts(bound, &options.allowed_hosts);
    // The browser terminal shares the listener, with its own cookie login (a page cannot
    // send the bearer token) and its own, stricter, Origin check.
    let mut web_options = ssh_session_web::WebOptions::default();
    web_options.allowed_hosts = options.allowed_hosts.clone();
    web_options.allowed_origins = options.allowed_origins.clone();
    let web = ssh_session_web::Web::new(server.manager().clone(), bound, web_options)?;
    let server = server.with_web(web.clone());
    let origins = Arc::new(origin::OriginPolicy::new(bound, &options.allowed_origins)?);
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts);
    config.cancellation_token = cancel.clone();
    let manager = server.manager().clone();
    // Idle sessions are ended by the tracker, which (unlike rmcp's `keep_alive`, which
    // counts messages only) never ends a session while a call of it is still running.
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = None;
    let sessions = Arc::new(sessions);
    let idle_tracker = Arc::new(idle::IdleTracker::new(options.session_idle_timeout));
    tokio::spawn(idle_tracker.clone().run(sessions.clone(), cancel.clone()));
    let gate = Arc::new(gate::Gate::new(
        sessions.clone(),
        idle_tracker,
        options.max_sessions,
        options.session_idle_timeout.as_secs(),
    ));
    let service = StreamableHttpService::new(move || Ok(server.clone()), sessions, config);
    let token = Arc::new(options.token);
    // The last layer added runs first.
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(gate, gate::gate))
        .layer(middleware::from_fn_with_state(token, require_token))
        .layer(middleware::from_fn_with_state(
            origins,
            origin::check_origin,
        ))
        .merge(web.router());
    ready(bound, &web);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            cancel.cancel();
        })
        .await;
    manager.shutdown_detaching_persistent().await;
    served.map_err(|e| McpError::Transport {
        detail: e.to_string(),
    })
}

/// Refuses any request without `Authorization: Bearer <token>` (compared in constant time).
async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 7235); the token is not.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "missing or wrong bearer token: send Authorization: Bearer <token> (see --token / --token-file)\n",
    )
        .into_response()
}

/// Refuses a token no client could send back as given, saying what is wrong with it and
/// where it came from (`source`: `--token`, `SSH_SESSION_MCP_TOKEN`, a file...). A
/// token must be at least 16 printable ASCII characters without spaces: HTTP trims
/// surrounding whitespace and cannot carry control characters or (reliably) non-ASCII.
pub fn check_token(token: &str, source: &str) -> Result<()> {
    let fail = |what: String| {
        Err(McpError::Config {
            detail: format!("{source} {what}"),
        })
    };
    if token.trim().is_empty() {
        return fail("is empty: give a token of at least 16 printable ASCII characters, or none at all to have one generated (see --token-file)".into());
    }
    if token.trim() != token {
        return fail(
            "has leading or trailing whitespace, which no HTTP client sends back: remove it".into(),
        );
    }
    let position = |i: usize| token[..i].chars().count() + 1;
    if let Some((i, c)) = token.char_indices().find(|(_, c)| c.is_control()) {
        return fail(format!(
            "contains a control character (U+{:04X}) at character {}: tokens must be printable ASCII",
            c as u32,
            position(i)
        ));
    }
    if let Some((i, c)) = token.char_indices().find(|(_, c)| !c.is_ascii()) {
        return fail(format!(
            "contains a character that is not ASCII ({c:?}) at character {}: tokens must be printable ASCII, which is all an HTTP header carries reliably",
            position(i)
        ));
    }
    if let Some(i) = token.find(' ') {
        return fail(format!(
            "contains a space at character {}: tokens must be printable ASCII without spaces",
            position(i)
        ));
    }
    let n = token.len();
    if n < 16 {
        return fail(format!(
            "must be at least 16 characters (it has {n}): a short token can be guessed"
        ));
    }
    Ok(())
}

use ssh_session_web::constant_time_eq;

#[cfg(test)]
mod tests {
    #[test]
    fn tokens() {
        let t = super::generate_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, super::generate_token());
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
        super::check_token(&t, "generated").unwrap();
    }

    #[test]
    fn unusable_tokens_say_why() {
        let why = |t: &str| super::check_token(t, "--token").unwrap_err().to_string();
        assert!(why("").contains("--token is empty"));
        assert!(why(" 0123456789abcdef").contains("whitespace"));
        assert!(why("0123456789abcdef\n").contains("whitespace"));
        assert!(why("0123456789abcdef\u{1b}x").contains("U+001B) at character 17"));
        assert!(why("0123456789abcdefé").contains("not ASCII ('é') at character 17"));
        assert!(why("0123456789 abcdef").contains("space at character 11"));
        assert!(why("0123456789").contains("16 characters (it has 10)"));
        super::check_token("0123456789abcdef", "--token").unwrap();
    }
}
