//! The browser terminal: a person joins a program's SSH session from a web page, on the
//! very shell the program (an agent through MCP, a script through the CLI daemon) uses.
//!
//! [`Web`] serves, over one [`SessionManager`]: an index of sessions at `/`, a terminal
//! page per session at `/session/NAME` (xterm.js, built into the binary), and its
//! WebSocket at `/session/NAME/ws`. It is safe by default: it binds loopback unless told
//! otherwise; every page and WebSocket needs a cookie that only a one-time login link
//! ([`Web::share`]) sets; the WebSocket also checks `Origin` against the server's own and
//! every request's `Host` against an allowlist (DNS rebinding). What a person runs there
//! is tracked with source `browser`, exactly like `ssh-session attach`.
//!
//! ```no_run
//! use ssh_session_core::SessionManager;
//! use ssh_session_web::{Web, WebOptions};
//!
//! # async fn demo() -> ssh_session_web::Result<()> {
//! let manager = SessionManager::new();
//! let listener = ssh_session_web::bind("127.0.0.1:0".parse().unwrap()).await?;
//! let web = Web::new(manager, listener.local_addr().unwrap(), WebOptions::default())?;
//! let link = web.share(None, false)?;
//! eprintln!("open {} (works once, until {:?})", link.url, link.expires_at);
//! web.serve(listener, std::future::pending()).await
//! # }
//! ```

mod assets;
mod auth;
mod error;
pub mod origin;
mod pages;
mod ws;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use ssh_session_core::{Session, SessionManager};

pub use auth::{constant_time_eq, generate_token};
pub use error::{Result, WebError};
pub use origin::Origin;

use auth::{Auth, Grant};
use pages::message;

/// How the browser terminal is served, besides its address.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WebOptions {
    /// `Host` names accepted besides the loopback names and the bound address.
    pub allowed_hosts: Vec<String>,
    /// Page origins (`scheme://host[:port]`) whose WebSocket is accepted besides the
    /// server's own, e.g. a TLS reverse proxy's `https://term.example.com`.
    pub allowed_origins: Vec<String>,
    /// How long a login link works (once).
    pub login_ttl: Duration,
    /// How long a browser stays logged in.
    pub cookie_ttl: Duration,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            login_ttl: Duration::from_secs(15 * 60),
            cookie_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// A login link: open it in a browser, once, before `expires_at`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Share {
    /// The link, with its one-time secret.
    pub url: String,
    /// When it stops working.
    pub expires_at: SystemTime,
    /// Whether it only lets its opener watch.
    pub read_only: bool,
}

/// The browser terminal over one [`SessionManager`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct Web {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    manager: SessionManager,
    /// `http://host:port`, for links.
    base: String,
    /// The cookie's name: cookies are shared by every port of a host, so two servers on
    /// one machine must not overwrite each other's.
    cookie: String,
    hosts: Vec<String>,
    origins: Vec<Origin>,
    auth: Auth,
}

/// Binds `addr` for [`Web::serve`], warning (on the log) when it is reachable from beyond
/// this machine.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Listen { addr, source })?;
    Ok(listener)
}

/// What to tell whoever serves on `addr`, if it is reachable from beyond this machine.
pub fn exposure_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "the browser terminal listens on {addr}, beyond this machine, over plain HTTP: \
             anyone on the way can read its login links and the keys typed. Prefer \
             127.0.0.1 with `ssh -L`, or put it behind a TLS proxy (and --allow-origin its \
             https:// origin)"
        )
    })
}

impl Web {
    /// The browser terminal of a server bound at `bound`, over `manager`'s sessions.
    ///
    /// # Errors
    /// An allowed origin that is not one.
    pub fn new(manager: SessionManager, bound: SocketAddr, options: WebOptions) -> Result<Web> {
        let origins = origin::parse_origins(&options.allowed_origins)?;
        if let Some(warning) = exposure_warning(bound) {
            tracing::warn!("{warning}");
        }
        // A link to 0.0.0.0 opens nothing in a browser; this machine's loopback does.
        let shown = if bound.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        } else {
            bound
        };
        Ok(Web {
            inner: Arc::new(Inner {
                manager,
                base: Origin::of_server(shown).to_string(),
                cookie: format!("ssh-session-{}", bound.port()),
                hosts: origin::allowed_hosts(bound, &options.allowed_hosts),
                origins,
                auth: Auth::new(options.login_ttl, options.cookie_ttl),
            }),
        })
    }

    /// `http://host:port` of the pages.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// A one-time login link to `session`'s terminal (or to the index with `None`);
    /// `read_only` logins watch and cannot type, resize or cancel.
    ///
    /// # Errors
    /// [`WebError::NoSuchSession`].
    pub fn share(&self, session: Option<&str>, read_only: bool) -> Result<Share> {
        let target = match session {
            Some(name) => {
                self.inner
                    .manager
                    .get(name)
                    .map_err(|_| WebError::NoSuchSession {
                        session: name.to_string(),
                    })?;
                format!("/session/{}", pages::encode_segment(name))
            }
            None => "/".to_string(),
        };
        let (token, expires_at) = self.inner.auth.issue(Grant { target, read_only });
        Ok(Share {
            url: format!("{}/login?token={token}", self.inner.base),
            expires_at,
            read_only,
        })
    }

    /// The pages and WebSocket, to serve on a listener of one's own (merge it into an
    /// existing router: its paths are `/`, `/login`, `/session/...` and `/assets/...`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/login", get(login))
            .route("/session/{name}", get(terminal))
            .route("/session/{name}/ws", get(socket))
            .route("/assets/{file}", get(assets::asset))
            .layer(middleware::from_fn_with_state(self.clone(), check_host))
            .with_state(self.clone())
    }

    /// Serves [`router`](Self::router) on `listener` until `shutdown` resolves.
    ///
    /// # Errors
    /// [`WebError::Serve`] if the server fails.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| WebError::Serve {
                detail: e.to_string(),
            })
    }

    /// `Some(read_only)` for a logged-in browser.
    fn visitor(&self, headers: &HeaderMap) -> Option<bool> {
        let cookies = headers.get_all(header::COOKIE);
        cookies.iter().find_map(|value| {
            let value = value.to_str().ok()?;
            let secret = auth::cookie_value(value, &self.inner.cookie)?;
            self.inner.auth.visitor(secret)
        })
    }
}

const NOT_LOGGED_IN: &str = "This browser is not logged in here. Open a login link: the one the \
    server printed when it started, one from the ssh_share tool, or from `ssh-session share \
    NAME`. Links work once.";

fn not_logged_in() -> Response {
    message(StatusCode::UNAUTHORIZED, "Not logged in", NOT_LOGGED_IN)
}

/// Middleware: refuses a request whose `Host` is not one of this server's names (a page
/// on another domain that resolves to this machine: DNS rebinding).
async fn check_host(State(web): State<Web>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if origin::host_allowed(host, &web.inner.hosts) {
        return next.run(request).await;
    }
    let shown: String = host.chars().take(100).collect();
    tracing::warn!(host = %shown, "refused a request for a Host this server does not answer to");
    let mut response = (
        StatusCode::FORBIDDEN,
        format!("Host {shown:?} is not this server's name; open it by 127.0.0.1 or localhost, or start it with --allow-host for that name\n"),
    )
        .into_response();
    pages::secure(response.headers_mut());
    response
}

#[derive(Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

/// `GET /login?token=T`: spends the token, sets the cookie, and redirects to the page
/// without the secret in its address.
async fn login(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let redeemed = q.token.as_deref().and_then(|t| web.inner.auth.redeem(t));
    let Some((grant, secret)) = redeemed else {
        if web.visitor(&headers).is_some() {
            // Logged in already (a reload, a second tab): the link's job is done.
            return redirect("/", None);
        }
        return message(
            StatusCode::FORBIDDEN,
            "This login link does not work",
            "It was used already, has expired, or was mistyped: links work once, for a \
             short time. Ask for a new one (the ssh_share tool, or `ssh-session share NAME`).",
        );
    };
    let cookie = format!(
        "{}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        web.inner.cookie,
        web.inner.auth.cookie_ttl().as_secs()
    );
    tracing::info!(target = %grant.target, read_only = grant.read_only, "a browser logged in");
    redirect(&grant.target, Some(cookie))
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, v);
    }
    pages::secure(h);
    response
}

/// `GET /`: the index of sessions.
async fn index(State(web): State<Web>, headers: HeaderMap) -> Response {
    if web.visitor(&headers).is_none() {
        return not_logged_in();
    }
    let mut sessions = web.inner.manager.list();
    sessions.sort_by(|a, b| a.name.cmp(&b.name));
    pages::index(&sessions)
}

fn no_such_session(name: &str) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "No such session",
        &format!(
            "There is no session named {name:?} (any more?). The index lists those there are."
        ),
    )
}

/// `GET /session/{name}`: the terminal page.
async fn terminal(
    State(web): State<Web>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(read_only) = web.visitor(&headers) else {
        return not_logged_in();
    };
    match web.inner.manager.get(&name) {
        Ok(session) => pages::terminal(&session.info(), read_only),
        Err(_) => no_such_session(&name),
    }
}

#[derive(Deserialize)]
struct SocketQuery {
    cols: Option<u16>,
    rows: Option<u16>,
    watch: Option<String>,
}

/// `GET /session/{name}/ws`: the terminal's WebSocket, for a logged-in page of this
/// server's own origin.
async fn socket(
    State(web): State<Web>,
    Path(name): Path<String>,
    Query(q): Query<SocketQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(forced_read_only) = web.visitor(&headers) else {
        return not_logged_in();
    };
    if let Err(refusal) = web.check_origin(&headers) {
        tracing::warn!("refused a WebSocket: {refusal}");
        let mut response = (StatusCode::FORBIDDEN, format!("{refusal}\n")).into_response();
        pages::secure(response.headers_mut());
        return response;
    }
    let session = match web.inner.manager.get(&name) {
        Ok(s) => s,
        Err(_) => return no_such_session(&name),
    };
    let size = match (q.cols, q.rows) {
        (Some(c), Some(r)) if c > 0 && r > 0 => Some((c, r)),
        _ => None,
    };
    let joined = ws::Joined {
        session,
        forced_read_only,
        read_only: q.watch.is_some_and(|w| w != "0"),
        size,
    };
    upgrade.on_upgrade(move |socket| ws::bridge(socket, joined))
}

impl Web {
    /// The WebSocket's `Origin` must be the page's own: `http://` + the `Host` it was
    /// asked for (checked against the allowlist already), or one the operator allowed.
    /// A browser always sends `Origin` on a WebSocket; a request without one is no page
    /// of ours.
    fn check_origin(&self, headers: &HeaderMap) -> std::result::Result<(), String> {
        let Some(value) = headers.get(header::ORIGIN) else {
            return Err(
                "a WebSocket without Origin is refused: only this server's own pages may open it"
                    .into(),
            );
        };
        let text = value
            .to_str()
            .map_err(|_| "an Origin that is not printable ASCII is refused".to_string())?;
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin = Origin::parse(text);
        let own = Origin::of_host("http", host);
        match origin {
            Some(o) if Some(&o) == own.as_ref() || self.inner.origins.contains(&o) => Ok(()),
            _ => {
                let shown: String = text.chars().take(200).collect();
                Err(format!(
                    "a WebSocket from the page at {shown} is refused: only this server's own pages may open one (start it with --allow-origin {shown} to allow that page)"
                ))
            }
        }
    }
}
