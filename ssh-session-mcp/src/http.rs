//! Streamable HTTP transport: `POST/GET/DELETE /mcp`, loopback by default, every request
//! authenticated with a bearer token (required; generated when not given).

use std::net::SocketAddr;
use std::sync::Arc;

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
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Binds `addr` and serves `server` at `/mcp` until `shutdown` resolves. Requests must
/// carry `Host` set to a loopback name, the bound address or one of `extra_allowed_hosts`
/// (rmcp's defence against DNS rebinding). `ready` gets the bound address (useful with
/// port 0).
pub async fn serve_http(
    server: SshSessionServer,
    addr: SocketAddr,
    token: String,
    extra_allowed_hosts: Vec<String>,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| McpError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| McpError::Listen { addr, source })?;
    let mut allowed_hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    allowed_hosts.push(bound.ip().to_string());
    allowed_hosts.extend(extra_allowed_hosts);
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts);
    config.cancellation_token = cancel.clone();
    let manager = server.manager().clone();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let token = Arc::new(token);
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(token, require_token));
    ready(bound);
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

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
    }
}
