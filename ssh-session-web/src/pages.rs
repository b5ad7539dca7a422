//! The HTML pages: the index of sessions and one terminal page per session. Every piece
//! of text from elsewhere (session names, hosts, commands, error details) is escaped, and
//! the pages load nothing but this server's own files.

use std::fmt::Write as _;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ssh_session_core::{SessionInfo, SessionStatus};

/// What every page response carries: no framing by other sites (clickjacking a Cancel or
/// a keystroke), scripts and connections only from here, no `Referer` to leak a path.
/// xterm.js writes its own `<style>` elements, hence inline styles.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; font-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Escapes text for HTML content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment (everything but RFC 3986's unreserved characters).
pub(crate) fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A page response with the security headers.
pub(crate) fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(h);
    response
}

/// Adds the headers every response of this server carries.
pub(crate) fn secure(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn shell(title: &str, body: &str, refresh: bool) -> String {
    let refresh = if refresh {
        "<meta http-equiv=\"refresh\" content=\"3\">"
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/assets/web.css\"></head>\
         <body>{body}</body></html>\n",
        escape(title)
    )
}

/// A short refusal or failure page: what happened and what to do.
pub(crate) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<main class=\"message\"><h1>{}</h1><p>{}</p></main>",
        escape(title),
        escape(text)
    );
    page(status, shell(title, &body, false))
}

/// The status as a person reads it.
pub(crate) fn status_text(status: &SessionStatus) -> String {
    match status {
        SessionStatus::Reconnecting { attempt, of } => format!("reconnecting {attempt} of {of}"),
        SessionStatus::Error { detail, .. } => format!("error: {detail}"),
        other => other.name().to_string(),
    }
}

/// Who runs what, as a person reads it: `agent (mcp): make` or `person (browser): vim`.
pub(crate) fn running_text(info: &SessionInfo) -> Option<String> {
    let command = info.running.as_deref()?;
    let source = info.running_source.as_deref().unwrap_or("api");
    let who = if info.running_by_person {
        "person"
    } else {
        "agent"
    };
    Some(format!("{who} ({source}): {command}"))
}

/// The index: every session, its host, status, what runs and who watches.
pub(crate) fn index(sessions: &[SessionInfo]) -> Response {
    let mut rows = String::new();
    for s in sessions {
        let _ = write!(
            rows,
            "<tr><td><a href=\"/session/{}\">{}</a></td><td>{}</td><td class=\"status {}\">{}</td>\
             <td>{}</td><td>{}</td></tr>",
            encode_segment(&s.name),
            escape(&s.name),
            escape(&format!("{}@{}:{}", s.user, s.host, s.port)),
            escape(s.status.name()),
            escape(&status_text(&s.status)),
            escape(&running_text(s).unwrap_or_else(|| "—".into())),
            s.attached,
        );
    }
    let table = if sessions.is_empty() {
        "<p>No sessions yet: open one (ssh_connect, or ssh-session open), and it appears here.</p>"
            .to_string()
    } else {
        format!(
            "<table><thead><tr><th>Session</th><th>Host</th><th>Status</th><th>Running</th>\
             <th>People attached</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let body = format!("<main class=\"index\"><h1>ssh-session</h1>{table}</main>");
    page(StatusCode::OK, shell("ssh-session", &body, true))
}

/// One session's terminal page; `terminal.js` connects it.
pub(crate) fn terminal(info: &SessionInfo, read_only: bool) -> Response {
    let name = escape(&info.name);
    let host = escape(&format!("{}@{}:{}", info.user, info.host, info.port));
    let watch = if read_only {
        "<label title=\"this login only watches\"><input type=\"checkbox\" id=\"watch\" checked disabled> read-only</label>"
    } else {
        "<label title=\"watch without typing\"><input type=\"checkbox\" id=\"watch\"> read-only</label>"
    };
    let body = format!(
        "<header id=\"bar\"><a href=\"/\" title=\"all sessions\">sessions</a>\
         <strong id=\"name\">{name}</strong><span id=\"host\">{host}</span>\
         <span id=\"conn\" class=\"state connecting\">connecting…</span>\
         <span id=\"running\" class=\"idle\">idle</span><span class=\"grow\"></span>{watch}\
         <button id=\"cancel\" type=\"button\" disabled title=\"stop the running command: Ctrl-C, then TERM, then KILL\">Cancel</button></header>\
         <div id=\"notice\" role=\"status\" aria-live=\"polite\"></div>\
         <main id=\"terminal\" data-session=\"{name}\" data-path=\"/session/{}\" data-read-only=\"{}\"></main>\
         <link rel=\"stylesheet\" href=\"/assets/xterm.css\">\
         <script src=\"/assets/xterm.js\"></script><script src=\"/assets/addon-fit.js\"></script>\
         <script src=\"/assets/terminal.js\"></script>",
        encode_segment(&info.name),
        u8::from(read_only),
    );
    page(
        StatusCode::OK,
        shell(&format!("{} — ssh-session", info.name), &body, false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_elsewhere_cannot_become_markup() {
        assert_eq!(
            escape("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
        assert_eq!(encode_segment("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(encode_segment("web-1.x_~"), "web-1.x_~");
    }
}
