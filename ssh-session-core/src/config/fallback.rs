//! Evaluates a parsed configuration for one host when `ssh -G` is not available.
//!
//! OpenSSH rules reproduced: the first value of a keyword wins (command-line `-l`/`-p` come
//! first), `IdentityFile` accumulates, `ProxyJump`/`ProxyCommand` exclude each other, a
//! `Match` line is evaluated once where it stands with the `HostName`/`User` set so far.
//! Anything this cannot evaluate exactly (`Match exec`, `canonical`, `final`, `localnetwork`,
//! `tagged`, hostname canonicalisation, unknown `%` tokens) is an error naming the file and
//! line, never a silent guess: a wrong `User` or key would be worse than no answer.

use std::collections::HashMap;

use super::dump::Dump;
use super::expand::{default_identity_files, expand_path, Local, Tokens};
use super::parse::{host_patterns_match, pattern_list_match, Cond, Location, ParsedConfig};
use crate::error::{Error, Result};

/// Keywords whose first value wins and that the resolver uses.
const SINGLE: [&str; 15] = [
    "hostname",
    "port",
    "user",
    "proxyjump",
    "proxycommand",
    "userknownhostsfile",
    "stricthostkeychecking",
    "connecttimeout",
    "serveraliveinterval",
    "serveralivecountmax",
    "forwardagent",
    "compression",
    "identitiesonly",
    "hostkeyalias",
    "identityagent",
];

/// What `ssh` was asked for: the host as given and explicit `-l`/`-p`.
#[derive(Clone, Debug)]
pub(crate) struct Request<'a> {
    pub host: &'a str,
    pub user: Option<&'a str>,
    pub port: Option<u16>,
}

fn unsupported(at: &Location, what: &str) -> Error {
    Error::Config {
        detail: format!(
            "{at}: {what} cannot be evaluated without the OpenSSH client; install openssh-client \
             (ssh-session then asks `ssh -G`, which evaluates it exactly) or remove it from the config"
        ),
    }
}

/// Evaluates `cfg` for `req` and returns the result in the shape of `ssh -G` output, so that
/// both resolvers share one conversion.
pub(crate) fn evaluate(cfg: &ParsedConfig, req: &Request<'_>, local: &Local) -> Result<Dump> {
    let mut single: HashMap<&str, (String, Location)> = HashMap::new();
    let mut identity_files: Vec<String> = Vec::new();
    let mut match_cache: HashMap<usize, bool> = HashMap::new();
    let cli = Location {
        file: "command line".into(),
        line: 0,
    };
    if let Some(user) = req.user {
        single.insert("user", (user.to_string(), cli.clone()));
    }
    if let Some(port) = req.port {
        single.insert("port", (port.to_string(), cli));
    }
    'entries: for entry in &cfg.entries {
        for &c in &entry.conds {
            let holds = match &cfg.conds[c] {
                Cond::Host(patterns) => host_patterns_match(patterns, req.host).is_some(),
                Cond::Match { args, at } => match match_cache.get(&c) {
                    Some(&v) => v,
                    None => {
                        let v = eval_match(args, at, req, &single, local)?;
                        match_cache.insert(c, v);
                        v
                    }
                },
            };
            if !holds {
                continue 'entries;
            }
        }
        let key = entry.key.as_str();
        let value = entry.args.join(" ");
        if key == "identityfile" {
            if value.is_empty() {
                return Err(Error::Config {
                    detail: format!("{}: IdentityFile needs a path", entry.at),
                });
            }
            identity_files.push(value);
        } else if key == "canonicalizehostname" && !matches!(value.as_str(), "no" | "false") {
            return Err(unsupported(&entry.at, "CanonicalizeHostname"));
        } else if let Some(&k) = SINGLE.iter().find(|&&k| k == key) {
            let other = match k {
                "proxyjump" => Some("proxycommand"),
                "proxycommand" => Some("proxyjump"),
                _ => None,
            };
            if other.is_some_and(|o| single.contains_key(o)) {
                continue;
            }
            single.entry(k).or_insert_with(|| (value, entry.at.clone()));
        }
    }
    to_dump(req, single, identity_files, local)
}

/// One `Match` line: every criterion must hold (`!` negates one).
fn eval_match(
    args: &[String],
    at: &Location,
    req: &Request<'_>,
    single: &HashMap<&str, (String, Location)>,
    local: &Local,
) -> Result<bool> {
    if args.is_empty() {
        return Err(Error::Config {
            detail: format!("{at}: `Match` needs a criterion (all, host, user...)"),
        });
    }
    // `Match host` sees the HostName set so far (with %h expanded), like ssh's first pass.
    let host = match single.get("hostname") {
        Some((h, _)) => h.replace("%h", req.host).to_ascii_lowercase(),
        None => req.host.to_string(),
    };
    let user = single
        .get("user")
        .map(|(u, _)| u.clone())
        .unwrap_or_else(|| local.user.clone());
    let mut i = 0;
    let mut result = true;
    while i < args.len() {
        let criterion = args[i].to_ascii_lowercase();
        let (negate, name) = match criterion.strip_prefix('!') {
            Some(n) => (true, n.to_string()),
            None => (false, criterion.clone()),
        };
        if name == "all" {
            i += 1;
            result &= !negate;
            continue;
        }
        let subject = match name.as_str() {
            "host" => host.as_str(),
            "originalhost" => req.host,
            "user" => user.as_str(),
            "localuser" => local.user.as_str(),
            other => return Err(unsupported(at, &format!("`Match {other}`"))),
        };
        let Some(list) = args.get(i + 1) else {
            return Err(Error::Config {
                detail: format!("{at}: `Match {name}` needs a pattern list"),
            });
        };
        result &= pattern_list_match(list, subject) != negate;
        i += 2;
    }
    Ok(result)
}

fn parse_seconds(value: &str, at: &Location, key: &str) -> Result<u64> {
    convtime(value).ok_or_else(|| Error::Config {
        detail: format!("{at}: {key} {value:?} is not a time (seconds, or e.g. 1m30s)"),
    })
}

/// OpenSSH time format: `90`, `1m30s`, `2h`, units s m h d w.
pub(crate) fn convtime(value: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return None,
        };
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        number.clear();
    }
    if !number.is_empty() {
        total = total.checked_add(number.parse().ok()?)?;
    } else if value.is_empty() {
        return None;
    }
    Some(total)
}

fn to_dump(
    req: &Request<'_>,
    mut single: HashMap<&str, (String, Location)>,
    mut identity_files: Vec<String>,
    local: &Local,
) -> Result<Dump> {
    let mut dump = Dump::default();
    let mut take = |k: &str| single.remove(k);
    let host_name = match take("hostname") {
        Some((h, at)) => {
            if h.replace("%%", "").replace("%h", "").contains('%') {
                return Err(unsupported(&at, &format!("the token in HostName {h:?}")));
            }
            h.replace("%h", req.host)
                .replace("%%", "%")
                .to_ascii_lowercase()
        }
        None => req.host.to_ascii_lowercase(),
    };
    let port = match take("port") {
        Some((p, at)) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| Error::Config {
                detail: format!("{at}: Port {p:?} is not a port number (1-65535)"),
            })?,
        None => 22,
    };
    let user = match take("user") {
        Some((u, at)) if u.contains('%') => {
            return Err(unsupported(&at, &format!("the token in User {u:?}")))
        }
        Some((u, _)) => u,
        None => local.user.clone(),
    };
    let proxy_jump = take("proxyjump").map(|(v, _)| v).filter(|v| v != "none");
    let host_key_alias = take("hostkeyalias").map(|(v, _)| v);
    let tokens = Tokens {
        host_name: &host_name,
        original_host: req.host,
        port,
        remote_user: &user,
        proxy_jump: proxy_jump.as_deref().unwrap_or(""),
        host_key_alias: host_key_alias.as_deref(),
    };
    dump.push("host", req.host);
    dump.push("hostname", &host_name);
    dump.push("port", &port.to_string());
    dump.push("user", &user);
    if identity_files.is_empty() {
        identity_files = default_identity_files();
    }
    for file in &identity_files {
        dump.push("identityfile", file);
    }
    let known_hosts = match take("userknownhostsfile") {
        Some((v, _)) => v,
        None => "~/.ssh/known_hosts ~/.ssh/known_hosts2".into(),
    };
    let mut expanded = Vec::new();
    for file in known_hosts.split_whitespace() {
        let path = expand_path("UserKnownHostsFile", file, &tokens, local)?;
        expanded.push(path.to_string_lossy().into_owned());
    }
    dump.push("userknownhostsfile", &expanded.join(" "));
    if let Some((v, _)) = take("identityagent") {
        let v = match v.as_str() {
            "none" | "SSH_AUTH_SOCK" => v,
            _ if v.starts_with('$') => v,
            _ => expand_path("IdentityAgent", &v, &tokens, local)?
                .to_string_lossy()
                .into_owned(),
        };
        dump.push("identityagent", &v);
    }
    for (key, default) in [("connecttimeout", None), ("serveraliveinterval", Some("0"))] {
        match take(key) {
            Some((v, _)) if v == "none" => dump.push(key, "none"),
            Some((v, at)) => dump.push(key, &parse_seconds(&v, &at, key)?.to_string()),
            None => dump.push(key, default.unwrap_or("none")),
        }
    }
    if let Some((v, at)) = take("serveralivecountmax") {
        v.parse::<u32>().map_err(|_| Error::Config {
            detail: format!("{at}: ServerAliveCountMax {v:?} is not a number"),
        })?;
        dump.push("serveralivecountmax", &v);
    } else {
        dump.push("serveralivecountmax", "3");
    }
    for (key, default) in [
        ("stricthostkeychecking", "ask"),
        ("forwardagent", "no"),
        ("compression", "no"),
        ("identitiesonly", "no"),
    ] {
        let v = take(key).map(|(v, _)| v.to_ascii_lowercase());
        dump.push(key, v.as_deref().unwrap_or(default));
    }
    if let Some(pj) = &proxy_jump {
        dump.push("proxyjump", pj);
    }
    if let Some((pc, _)) = take("proxycommand").filter(|(v, _)| v != "none") {
        dump.push("proxycommand", &pc);
    }
    if let Some(alias) = &host_key_alias {
        dump.push("hostkeyalias", alias);
    }
    Ok(dump)
}

/// Details of one alias from its `Host` blocks alone (first value wins, `Match` blocks are
/// not evaluated), for listings when `ssh` is not available.
pub(crate) fn block_details(cfg: &ParsedConfig, alias: &str) -> HashMap<String, String> {
    let mut found = HashMap::new();
    'entries: for entry in &cfg.entries {
        for &c in &entry.conds {
            match &cfg.conds[c] {
                Cond::Host(patterns) if host_patterns_match(patterns, alias).is_some() => {}
                _ => continue 'entries,
            }
        }
        found
            .entry(entry.key.clone())
            .or_insert_with(|| entry.args.join(" "));
    }
    found
}

#[cfg(test)]
#[path = "fallback_tests.rs"]
mod tests;
