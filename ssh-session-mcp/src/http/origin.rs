//! The `Origin` check of the streamable HTTP mode (origins parse as
//! [`ssh_session_web::origin`] parses them, one implementation for both front ends). A browser tells which page a request
//! comes from in `Origin`; the MCP specification says servers MUST validate it, or any web
//! page the user opens could drive a local server (DNS rebinding, or a plain cross-site
//! POST). Requests without `Origin` (command-line and SDK clients) are not from a page and
//! pass; pages on this machine (`localhost`, `127.0.0.0/8`, `[::1]`, any port) and the
//! server's own address pass; any other page only when named with `--allow-origin`.
//!
//! The check runs before the bearer token's, and its refusal is the same whatever token the
//! request carries, so a page learns nothing about the token from it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ssh_session_web::Origin;

use crate::error::Result;

/// The origins a server accepts besides loopback ones.
#[derive(Debug)]
pub struct OriginPolicy {
    own: Origin,
    extra: Vec<Origin>,
}

impl OriginPolicy {
    /// The policy of a server bound at `bound`, with `--allow-origin` values `extra`
    /// (refused, naming the value, if one is not an origin).
    pub fn new(bound: SocketAddr, extra: &[String]) -> Result<OriginPolicy> {
        Ok(OriginPolicy {
            own: Origin::of_server(bound),
            extra: ssh_session_web::origin::parse_origins(extra)?,
        })
    }

    /// Whether a request with `Origin: text` may go on.
    pub fn allows(&self, text: &str) -> bool {
        Origin::parse(text)
            .is_some_and(|o| o.is_loopback() || o == self.own || self.extra.contains(&o))
    }
}

/// Middleware: refuses a request whose `Origin` the policy does not allow, with 403 and a
/// plain-text body saying what was refused and how to allow it.
pub async fn check_origin(
    State(policy): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(value) = request.headers().get(header::ORIGIN) else {
        return next.run(request).await;
    };
    let refusal = match value.to_str() {
        Ok(text) if policy.allows(text) => return next.run(request).await,
        Ok("null") => "Origin null (a sandboxed or local-file page) is refused; it cannot be allowed, as any page can send it (--allow-origin takes a scheme://host[:port] origin)".to_string(),
        Ok(text) => {
            let shown: String = text.chars().take(200).collect();
            format!(
                "Origin {shown} is not allowed: only pages on this machine (localhost, 127.0.0.1, [::1]) or this server may call it. To allow that page, start the server with --allow-origin {shown}"
            )
        }
        Err(_) => "the Origin header is not printable ASCII and is refused (--allow-origin takes a scheme://host[:port] origin)".to_string(),
    };
    tracing::warn!(origin = ?value, "refused a request from a web page whose Origin is not allowed");
    (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{refusal}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OriginPolicy {
        OriginPolicy::new(
            "10.1.2.3:8765".parse().unwrap(),
            &[
                "https://App.Example.test/".into(),
                "http://tools.test:8080".into(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn loopback_own_and_listed_origins_pass() {
        let p = policy();
        for ok in [
            "http://localhost:5173",
            "https://localhost",
            "http://127.0.0.1:1",
            "http://127.9.9.9",
            "http://[::1]:8080",
            "http://10.1.2.3:8765",
            "https://app.example.test",
            "https://app.example.test:443",
            "http://tools.test:8080",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "http://10.1.2.3:8766",
            "https://10.1.2.3:8765",
            "http://app.example.test",
            "http://tools.test",
            "http://localhost.evil.test",
            "http://127.0.0.1.nip.io",
            "http://[::2]",
            "null",
            "",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
    }

    #[test]
    fn a_bad_allow_origin_is_named() {
        let e =
            OriginPolicy::new("127.0.0.1:1".parse().unwrap(), &["app.test".into()]).unwrap_err();
        assert!(e.to_string().contains("\"app.test\""), "{e}");
    }
}
