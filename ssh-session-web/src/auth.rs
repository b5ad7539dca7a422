//! Getting in: one-time login links and the session cookies they turn into.
//!
//! A link carries a random token that works once, for a short time; opening it sets an
//! `HttpOnly`, `SameSite=Strict` cookie (no script reads it; no other site's page sends it)
//! and redirects to the same page without the token, so the secret leaves the address bar,
//! the history and any `Referer`. Both secrets are 256 bits from the OS generator and live
//! only in this process's memory: a restart logs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Outstanding login links kept at most; the oldest goes first. A program asking for
/// links in a loop cannot grow the server without bound.
const MAX_LOGINS: usize = 64;
/// Browsers logged in at most; the one that logged in first is logged out first.
const MAX_VISITORS: usize = 256;

/// A random secret: 32 bytes from the OS generator, hex-encoded.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in constant time (for equal lengths), so timing tells nothing about
/// how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a login link lets its opener do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The page it opens (`/` or `/session/NAME`).
    pub target: String,
    /// Watching only: keys and resizes from this browser are dropped by the server.
    pub read_only: bool,
}

struct Login {
    grant: Grant,
    expires: Instant,
}

struct Visitor {
    read_only: bool,
    expires: Instant,
}

/// The login links handed out and the browsers logged in.
pub(crate) struct Auth {
    login_ttl: Duration,
    cookie_ttl: Duration,
    logins: Mutex<Vec<(String, Login)>>,
    visitors: Mutex<HashMap<String, Visitor>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets themselves are never shown, even in a debug dump.
        f.debug_struct("Auth")
            .field("login_ttl", &self.login_ttl)
            .field("cookie_ttl", &self.cookie_ttl)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub(crate) fn new(login_ttl: Duration, cookie_ttl: Duration) -> Auth {
        Auth {
            login_ttl,
            cookie_ttl,
            logins: Mutex::new(Vec::new()),
            visitors: Mutex::new(HashMap::new()),
        }
    }

    /// A new one-time token for `grant`, and when it stops working.
    pub(crate) fn issue(&self, grant: Grant) -> (String, SystemTime) {
        let token = generate_token();
        let mut logins = lock(&self.logins);
        let now = Instant::now();
        logins.retain(|(_, l)| l.expires > now);
        if logins.len() >= MAX_LOGINS {
            logins.remove(0);
        }
        logins.push((
            token.clone(),
            Login {
                grant,
                expires: now + self.login_ttl,
            },
        ));
        (token, SystemTime::now() + self.login_ttl)
    }

    /// Spends a token: its grant and a new cookie value, or `None` if it is unknown, used
    /// or expired.
    pub(crate) fn redeem(&self, token: &str) -> Option<(Grant, String)> {
        let grant = {
            let mut logins = lock(&self.logins);
            let now = Instant::now();
            let i = logins.iter().position(|(t, l)| {
                constant_time_eq(t.as_bytes(), token.as_bytes()) && l.expires > now
            })?;
            logins.remove(i).1.grant
        };
        let cookie = generate_token();
        let mut visitors = lock(&self.visitors);
        let now = Instant::now();
        visitors.retain(|_, v| v.expires > now);
        if visitors.len() >= MAX_VISITORS {
            if let Some(oldest) = visitors
                .iter()
                .min_by_key(|(_, v)| v.expires)
                .map(|(k, _)| k.clone())
            {
                visitors.remove(&oldest);
            }
        }
        visitors.insert(
            cookie.clone(),
            Visitor {
                read_only: grant.read_only,
                expires: now + self.cookie_ttl,
            },
        );
        Some((grant, cookie))
    }

    /// The logged-in browser a cookie value belongs to: `Some(read_only)`, or `None`.
    pub(crate) fn visitor(&self, cookie: &str) -> Option<bool> {
        // A hash lookup by a 256-bit random value: what its timing could reveal is
        // nothing a guess can use.
        let visitors = lock(&self.visitors);
        visitors
            .get(cookie)
            .filter(|v| v.expires > Instant::now())
            .map(|v| v.read_only)
    }

    /// How long a cookie lasts.
    pub(crate) fn cookie_ttl(&self) -> Duration {
        self.cookie_ttl
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds valid data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The value of cookie `name` in a `Cookie` request header, if present.
pub(crate) fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            target: "/session/web".into(),
            read_only: false,
        }
    }

    #[test]
    fn a_token_works_once_and_its_cookie_logs_in() {
        let auth = Auth::new(Duration::from_secs(60), Duration::from_secs(60));
        let (token, expires) = auth.issue(grant());
        assert!(expires > SystemTime::now());
        assert_eq!(token.len(), 64);
        assert!(auth.redeem("0".repeat(64).as_str()).is_none());
        let (g, cookie) = auth.redeem(&token).unwrap();
        assert_eq!(g, grant());
        assert!(auth.redeem(&token).is_none(), "a second use");
        assert_eq!(auth.visitor(&cookie), Some(false));
        assert_eq!(auth.visitor(&token), None);
        assert_eq!(auth.visitor(""), None);
    }

    #[test]
    fn expired_tokens_and_cookies_do_not_work() {
        let auth = Auth::new(Duration::ZERO, Duration::from_secs(60));
        let (token, _) = auth.issue(grant());
        assert!(auth.redeem(&token).is_none());
        let auth = Auth::new(Duration::from_secs(60), Duration::ZERO);
        let (token, _) = auth.issue(Grant {
            read_only: true,
            ..grant()
        });
        let (_, cookie) = auth.redeem(&token).unwrap();
        assert_eq!(auth.visitor(&cookie), None);
    }

    #[test]
    fn outstanding_tokens_are_bounded() {
        let auth = Auth::new(Duration::from_secs(60), Duration::from_secs(60));
        let first = auth.issue(grant()).0;
        for _ in 0..MAX_LOGINS {
            auth.issue(grant());
        }
        assert!(auth.redeem(&first).is_none(), "the oldest went first");
        assert_eq!(lock(&auth.logins).len(), MAX_LOGINS);
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = "a=1; ssh-session-80=abc ; b=2";
        assert_eq!(cookie_value(h, "ssh-session-80"), Some("abc"));
        assert_eq!(cookie_value(h, "ssh-session"), None);
        assert_eq!(cookie_value("", "a"), None);
    }
}
