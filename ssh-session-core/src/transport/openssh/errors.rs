//! Turning what `ssh` printed on stderr into the crate's [`Error`]s.
//!
//! OpenSSH reports failures only as text, so this is pattern matching on its messages
//! (stable for many releases). Every error carries ssh's own words as well.

use std::io;
use std::path::PathBuf;

use crate::error::Error;
use crate::options::ConnectOptions;

/// The meaningful part of ssh's stderr for a message: trimmed, `\r` removed, the long
/// "@@@ WARNING" banner lines dropped.
pub(super) fn clean(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| l.trim_end_matches('\r').trim())
        .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Classifies a failed connection from the master's stderr.
pub(super) fn classify(opts: &ConnectOptions, stderr: &str) -> Error {
    let host = opts.host.clone();
    let port = opts.port;
    let said = clean(stderr);
    let said = if said.is_empty() {
        "ssh exited without a message".to_string()
    } else {
        said
    };
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("HOST KEY HAS CHANGED")
    {
        let (file, line) = offending_entry(stderr).unwrap_or((opts.known_hosts.clone(), 0));
        return Error::HostKeyChanged {
            host,
            port,
            fingerprint: fingerprint(stderr).unwrap_or_else(|| "not shown by ssh".into()),
            file,
            line,
        };
    }
    if stderr.contains("Host key verification failed")
        || (stderr.contains("host key is known for") && stderr.contains("No "))
    {
        return Error::UnknownHostKey {
            host,
            port,
            fingerprint: fingerprint(stderr)
                .unwrap_or_else(|| "fingerprint not shown by ssh in strict mode".into()),
            file: opts.known_hosts.clone(),
        };
    }
    if stderr.contains("Permission denied") || stderr.contains("Too many authentication failures") {
        return Error::AuthFailed {
            user: opts.user.clone(),
            host,
            port,
            tried: tried(opts, stderr, &said),
        };
    }
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("timed out") {
        return Error::ConnectTimeout {
            host,
            port,
            timeout: opts.connect_timeout,
        };
    }
    let connect_kind = [
        ("connection refused", io::ErrorKind::ConnectionRefused),
        ("could not resolve hostname", io::ErrorKind::NotFound),
        ("no route to host", io::ErrorKind::Other),
        ("network is unreachable", io::ErrorKind::Other),
        ("name or service not known", io::ErrorKind::NotFound),
    ];
    if let Some((_, kind)) = connect_kind.iter().find(|(text, _)| lower.contains(text)) {
        return Error::Connect {
            host,
            port,
            source: io::Error::new(*kind, said),
        };
    }
    let config_words = [
        "bad configuration option",
        "can't open user config file",
        "garbage at end of line",
        "unsupported option",
        "missing argument",
        "terminating, ",
        "bad owner or permissions",
    ];
    if config_words.iter().any(|w| lower.contains(w)) {
        return Error::Config {
            detail: format!(
                "ssh refused its configuration: {said}; check ConnectOptions::extra_ssh_args and \
                 the ssh config file ({})",
                opts.config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.ssh/config".into())
            ),
        };
    }
    Error::Ssh {
        host,
        port,
        detail: format!("ssh failed: {said}"),
        source: None,
    }
}

/// `Offending ED25519 key in /path/known_hosts:3` → (`/path/known_hosts`, 3).
fn offending_entry(stderr: &str) -> Option<(PathBuf, usize)> {
    stderr.lines().find_map(|line| {
        let line = line.trim_end_matches('\r').trim();
        let rest = line.strip_prefix("Offending ")?;
        let (_, location) = rest.split_once(" key in ")?;
        let (file, number) = location.rsplit_once(':')?;
        Some((PathBuf::from(file), number.trim().parse().ok()?))
    })
}

/// The first `SHA256:...` fingerprint ssh printed (the one the server sent).
fn fingerprint(stderr: &str) -> Option<String> {
    let start = stderr.find("SHA256:")?;
    let print: String = stderr[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "+/=:".contains(*c))
        .collect();
    Some(print)
}

/// What was offered, for [`Error::AuthFailed`]: the keys, the agent, what the server
/// accepts, and ssh's own warnings (unreadable or encrypted keys).
fn tried(opts: &ConnectOptions, stderr: &str, said: &str) -> String {
    let mut parts = Vec::new();
    if opts.identities.is_empty() {
        parts.push("the keys OpenSSH finds in its config and ~/.ssh".to_string());
    } else {
        let keys: Vec<String> = opts
            .identities
            .iter()
            .map(|id| {
                let mut text = id.path.display().to_string();
                if id.passphrase.is_some() {
                    text += " (encrypted: the OpenSSH backend cannot type its passphrase; \
                             load it into ssh-agent or use the russh transport)";
                }
                text
            })
            .collect();
        parts.push(format!("public keys {}", keys.join(", ")));
    }
    if opts.use_agent {
        parts.push("the ssh-agent's keys".into());
    }
    if opts.password.is_some() {
        parts.push("no password: the OpenSSH backend runs ssh in batch mode".into());
    }
    let mut text = parts.join(" and ");
    // "user@host: Permission denied (publickey,password)." names what the server accepts.
    if let Some(methods) = stderr
        .split("Permission denied (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
    {
        text += &format!("; the server accepts: {methods}");
    }
    text += &format!("; ssh said: {said}");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ConnectOptions {
        ConnectOptions::new("127.0.0.1", "me")
            .port(2200)
            .known_hosts("/kh")
    }

    #[test]
    fn changed_key_names_file_and_line() {
        let stderr =
            "@@@@@@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n\
            The fingerprint for the ED25519 key sent by the remote host is\r\n\
            SHA256:abcDEF+/12.\r\nPlease contact your system administrator.\r\n\
            Add correct host key in /tmp/k h/known_hosts to get rid of this message.\r\n\
            Offending ED25519 key in /tmp/k h/known_hosts:3\r\n  remove with:\r\n\
            Host key verification failed.\r\n";
        match classify(&opts(), stderr) {
            Error::HostKeyChanged {
                file,
                line,
                fingerprint,
                ..
            } => {
                assert_eq!(file, PathBuf::from("/tmp/k h/known_hosts"));
                assert_eq!(line, 3);
                assert_eq!(fingerprint, "SHA256:abcDEF+/12");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_failures() {
        let o = opts();
        let unknown = "No ED25519 host key is known for [127.0.0.1]:2200 and you have requested strict checking.\r\nHost key verification failed.\r\n";
        assert!(matches!(
            classify(&o, unknown),
            Error::UnknownHostKey { .. }
        ));
        let denied = "me@127.0.0.1: Permission denied (publickey,password).\r\n";
        match classify(&o, denied) {
            Error::AuthFailed { tried, .. } => {
                assert!(
                    tried.contains("the server accepts: publickey,password"),
                    "{tried}"
                )
            }
            other => panic!("{other:?}"),
        }
        let refused = "ssh: connect to host 127.0.0.1 port 2200: Connection refused\r\n";
        match classify(&o, refused) {
            Error::Connect { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused)
            }
            other => panic!("{other:?}"),
        }
        let timeout = "ssh: connect to host 10.1.1.1 port 22: Connection timed out\r\n";
        assert!(matches!(
            classify(&o, timeout),
            Error::ConnectTimeout { .. }
        ));
        let config = "command-line line 0: Bad configuration option: nosuch\r\n";
        assert!(matches!(classify(&o, config), Error::Config { .. }));
        assert!(matches!(classify(&o, ""), Error::Ssh { .. }));
    }
}
