//! Which `Host` and `Origin` a request may carry: one implementation for every front end
//! that serves HTTP (the MCP server's `/mcp` and the browser terminal).
//!
//! `Host` is checked against an allowlist (loopback names, the bound address, what the
//! operator adds): a page on an attacker's domain that resolves to 127.0.0.1 (DNS
//! rebinding) sends its own domain there. `Origin` names the page a browser request comes
//! from; a page on *another port* of 127.0.0.1 is the same *site* (ports don't make one), so
//! SameSite cookies reach us from it, and only an exact origin check keeps it out.

use std::net::{IpAddr, SocketAddr};

use crate::error::{Result, WebError};

/// A web origin: scheme, host (lower case, IPv6 in brackets) and port (the scheme's
/// default filled in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (one trailing `/` tolerated); `None` for anything
    /// else, including the opaque origin `null`.
    pub fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(rest)?;
        let port = match port {
            None => default_port,
            Some(p) => p,
        };
        Some(Origin { scheme, host, port })
    }

    /// The origin of the pages a server bound at `bound` serves over plain HTTP.
    pub fn of_server(bound: SocketAddr) -> Origin {
        let host = match bound.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        Origin {
            scheme: "http".into(),
            host,
            port: bound.port(),
        }
    }

    /// The origin of a page served over `scheme` to a request whose `Host` header is
    /// `host` (what the browser's address bar shows), or `None` if it is malformed.
    pub fn of_host(scheme: &str, host: &str) -> Option<Origin> {
        Origin::parse(&format!("{scheme}://{host}"))
    }

    /// Whether the host is this machine: `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        if self.host == "localhost" {
            return true;
        }
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// `host[:port]` → (lower-case host, IPv6 in brackets; port if given), `None` if malformed.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        (format!("[{}]", addr.to_ascii_lowercase()), after)
    } else {
        let end = text.find(':').unwrap_or(text.len());
        (text[..end].to_ascii_lowercase(), &text[end..])
    };
    let valid_host = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if !(host.starts_with('[') || valid_host(&host)) {
        return None;
    }
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => None,
        None => return None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// Parses operator-given origins (`--allow-origin`), naming the first that is not one.
pub fn parse_origins(texts: &[String]) -> Result<Vec<Origin>> {
    texts
        .iter()
        .map(|text| {
            Origin::parse(text).ok_or_else(|| WebError::Config {
                detail: format!(
                    "--allow-origin {text:?} is not an origin: write it as a browser sends it, scheme://host[:port], e.g. https://app.example.com"
                ),
            })
        })
        .collect()
}

/// The `Host` names a server bound at `bound` answers to: the loopback names, the bound
/// address, and `extra` (`--allow-host`), without ports. rmcp takes the same list for
/// `/mcp`.
pub fn allowed_hosts(bound: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let own = bound.ip().to_string();
    if !hosts.contains(&own) {
        hosts.push(own);
    }
    hosts.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
    hosts
}

/// Whether a `Host` header (`name[:port]`) names one of `allowed` (as [`allowed_hosts`]
/// lists them).
pub fn host_allowed(header: &str, allowed: &[String]) -> bool {
    let Some((host, _)) = split_host_port(header.trim()) else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    allowed.iter().any(|a| a.eq_ignore_ascii_case(bare))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_like_a_browser_sends_them() {
        let o = Origin::parse("HTTPS://Example.COM").unwrap();
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("https", "example.com", 443)
        );
        assert_eq!(Origin::parse("http://[::1]:3000").unwrap().host, "[::1]");
        assert_eq!(Origin::parse("http://a.test:81").unwrap().port, 81);
        for bad in [
            "null",
            "a.test",
            "ftp://a.test",
            "http://",
            "http://a.test:",
            "http://a.test:x",
            "http://a.test/path",
            "http://a b",
            "http://[zz]",
            "http://a.test:99999",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_page_is_same_origin_only_on_the_same_host_and_port() {
        let own = Origin::of_host("http", "127.0.0.1:8080").unwrap();
        assert_eq!(Origin::parse("http://127.0.0.1:8080"), Some(own.clone()));
        assert_ne!(Origin::parse("http://127.0.0.1:8081"), Some(own.clone()));
        assert_ne!(Origin::parse("http://localhost:8080"), Some(own.clone()));
        assert_eq!(
            Origin::of_server("[::1]:9".parse().unwrap()).to_string(),
            "http://[::1]:9"
        );
        assert!(Origin::parse("http://127.8.0.1").unwrap().is_loopback());
        assert!(!Origin::parse("http://127.0.0.1.nip.io")
            .unwrap()
            .is_loopback());
    }

    #[test]
    fn hosts_are_checked_without_their_port() {
        let allowed = allowed_hosts("127.0.0.1:9000".parse().unwrap(), &["Box.LAN".into()]);
        for ok in [
            "127.0.0.1:9000",
            "localhost",
            "LOCALHOST:1",
            "[::1]:9000",
            "box.lan:9000",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.test:9000",
            "127.0.0.1.nip.io:9000",
            "",
            "[zz]",
            "box.lan.evil",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn a_bad_allowed_origin_is_named() {
        let e = parse_origins(&["app.test".into()]).unwrap_err();
        assert!(e.to_string().contains("\"app.test\""), "{e}");
    }
}
