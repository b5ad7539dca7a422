//! `~`, `${VAR}` and `%` token expansion as OpenSSH does it, and the local facts it needs.
//!
//! OpenSSH takes `~` and `%d` from the passwd entry of the current uid, not from `$HOME`, so
//! this module does the same: a path resolved here names the file `ssh` itself would use.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The identity files `ssh -G` lists when no `IdentityFile` applies, as it prints them
/// (unexpanded). Recent OpenSSH versions list a subset of these.
const DEFAULT_IDENTITY_FILES: [&str; 7] = [
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
];

/// True when every entry is one of OpenSSH's built-in default identity files, i.e. when no
/// `IdentityFile` was configured and `ssh` filled in its defaults.
pub(crate) fn are_default_identities(files: &[String]) -> bool {
    !files.is_empty()
        && files
            .iter()
            .all(|f| DEFAULT_IDENTITY_FILES.contains(&f.as_str()))
}

/// The default identity files, unexpanded, as the fallback parser reports them.
pub(crate) fn default_identity_files() -> Vec<String> {
    DEFAULT_IDENTITY_FILES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Facts about the local side used by `~` and `%` expansion.
#[derive(Clone, Debug)]
pub(crate) struct Local {
    /// Home directory from the passwd entry (`$HOME` if there is none).
    pub home: PathBuf,
    /// Login name from the passwd entry (`$USER` if there is none).
    pub user: String,
    /// Numeric user id.
    pub uid: u32,
    /// Full local host name (`%l`).
    pub hostname: String,
}

impl Local {
    /// The current process's user and host.
    pub(super) fn current() -> Local {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let (user, home) = passwd_entry(uid)
            .unwrap_or_else(|| (crate::options::local_user(), crate::options::home_dir()));
        Local {
            home,
            user,
            uid,
            hostname: local_hostname(),
        }
    }
}

fn passwd_entry(uid: libc::uid_t) -> Option<(String, PathBuf)> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value to be overwritten by getpwuid_r.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and `buf.len()` is the
        // real size of the buffer the strings are written into.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        // SAFETY: on success both fields point to NUL-terminated strings inside `buf`.
        let (name, dir) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
        return Some((
            name.to_string_lossy().into_owned(),
            PathBuf::from(OsStr::from_bytes(dir.to_bytes())),
        ));
    }
}

fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Expands a leading `~` or `~/` to the passwd home directory. `~user/` is refused: it is
/// rare in client configs and needs another passwd lookup; write the absolute path instead.
pub(crate) fn expand_tilde(value: &str, local: &Local) -> Result<PathBuf> {
    if value == "~" {
        return Ok(local.home.clone());
    }
    if let Some(rest) = value.strip_prefix("~/") {
        return Ok(local.home.join(rest));
    }
    if value.starts_with('~') {
        return Err(Error::Config {
            detail: format!(
                "{value:?}: `~user/` paths are not supported by ssh-session; write the absolute path"
            ),
        });
    }
    Ok(PathBuf::from(value))
}

/// The connection facts `%` tokens expand to.
#[derive(Clone, Debug)]
pub(crate) struct Tokens<'a> {
    /// `%h`: the real host name after `HostName`.
    pub host_name: &'a str,
    /// `%n`: the host as given on the command line (the alias).
    pub original_host: &'a str,
    /// `%p`.
    pub port: u16,
    /// `%r`.
    pub remote_user: &'a str,
    /// `%j`: the `ProxyJump` value, empty when none.
    pub proxy_jump: &'a str,
    /// `%k`: `HostKeyAlias` if set, else the original host.
    pub host_key_alias: Option<&'a str>,
}

/// Expands `%` tokens and `${VAR}` in the value of `keyword`, as OpenSSH does for
/// `IdentityFile`, `UserKnownHostsFile` and `IdentityAgent`. Tokens that need OpenSSH's own
/// state (`%C` is a hash of the connection, `%T` the tunnel device) are refused with an error
/// that names them rather than guessed.
pub(crate) fn expand_tokens(
    keyword: &str,
    value: &str,
    t: &Tokens<'_>,
    local: &Local,
) -> Result<String> {
    let unsupported = |what: String| {
        Error::Config {
        detail: format!(
            "{keyword} {value:?}: {what} cannot be expanded by ssh-session; write the path without it"
        ),
    }
    };
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let Some(token) = chars.next() else {
                    return Err(unsupported("a trailing `%`".into()));
                };
                match token {
                    '%' => out.push('%'),
                    'd' => out.push_str(&local.home.to_string_lossy()),
                    'h' => out.push_str(t.host_name),
                    'i' => out.push_str(&local.uid.to_string()),
                    'k' => out.push_str(t.host_key_alias.unwrap_or(t.original_host)),
                    'L' => out.push_str(local.hostname.split('.').next().unwrap_or("")),
                    'l' => out.push_str(&local.hostname),
                    'n' => out.push_str(t.original_host),
                    'p' => out.push_str(&t.port.to_string()),
                    'r' => out.push_str(t.remote_user),
                    'u' => out.push_str(&local.user),
                    'j' => out.push_str(t.proxy_jump),
                    other => return Err(unsupported(format!("the token %{other}"))),
                }
            }
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let var = std::env::var(&name).map_err(|_| Error::Config {
                    detail: format!(
                        "{keyword} {value:?}: the environment variable {name} is not set"
                    ),
                })?;
                out.push_str(&var);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `~` then `%`/`${}` expansion, OpenSSH's order for file names.
pub(crate) fn expand_path(
    keyword: &str,
    value: &str,
    t: &Tokens<'_>,
    local: &Local,
) -> Result<PathBuf> {
    let tilde = expand_tilde(value, local)?;
    let expanded = expand_tokens(keyword, &tilde.to_string_lossy(), t, local)?;
    Ok(PathBuf::from(expanded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        Local {
            home: "/home/me".into(),
            user: "me".into(),
            uid: 1000,
            hostname: "laptop.lan".into(),
        }
    }

    fn tokens() -> Tokens<'static> {
        Tokens {
            host_name: "10.0.0.5",
            original_host: "web",
            port: 2222,
            remote_user: "deploy",
            proxy_jump: "bastion",
            host_key_alias: None,
        }
    }

    #[test]
    fn tokens_expand() {
        let p = expand_path(
            "IdentityFile",
            "~/.ssh/k_%r@%h:%p_%n_%k",
            &tokens(),
            &local(),
        );
        assert_eq!(
            p.unwrap(),
            PathBuf::from("/home/me/.ssh/k_deploy@10.0.0.5:2222_web_web")
        );
        let s = expand_tokens("X", "%d/%u/%i/%L/%l/%j/%%", &tokens(), &local()).unwrap();
        assert_eq!(s, "/home/me/me/1000/laptop/laptop.lan/bastion/%");
    }

    #[test]
    fn unsupported_tokens_are_refused_by_name() {
        let e = expand_tokens("IdentityFile", "~/.ssh/%C", &tokens(), &local()).unwrap_err();
        assert!(e.to_string().contains("%C"), "{e}");
        assert!(expand_tilde("~bob/x", &local()).is_err());
    }

    #[test]
    fn default_identities_are_recognised() {
        assert!(are_default_identities(&default_identity_files()));
        assert!(are_default_identities(&["~/.ssh/id_ed25519".into()]));
        assert!(!are_default_identities(&[
            "~/.ssh/id_rsa".into(),
            "/keys/work".into()
        ]));
        assert!(!are_default_identities(&[]));
    }
}
