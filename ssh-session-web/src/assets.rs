//! The files the pages load, all inside the binary: xterm.js as `build.rs` installed it
//! from the npm registry (pinned by `assets/package-lock.json`), and this crate's own page
//! script and style sheet. Nothing is fetched from anywhere at run time.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// (name under `/assets/`, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "xterm.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/xterm.js")),
    ),
    (
        "xterm.css",
        "text/css; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/xterm.css")),
    ),
    (
        "addon-fit.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/addon-fit.js")),
    ),
    (
        "terminal.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/terminal.js"),
    ),
    (
        "web.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/web.css"),
    ),
];

/// `GET /assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let Some((_, kind, bytes)) = FILES.iter().find(|(name, _, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let mut response = (StatusCode::OK, *bytes).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    crate::pages::secure(h);
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn xterm_is_built_in() {
        let (_, _, js) = super::FILES[0];
        assert!(js.len() > 100_000, "xterm.js is {} bytes", js.len());
        let text = String::from_utf8_lossy(js);
        assert!(text.contains("Terminal"), "not xterm.js");
    }
}
