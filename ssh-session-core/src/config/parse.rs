//! A reader for OpenSSH client configuration files: lines, quoting, `Host`/`Match` blocks
//! and `Include` (with globs), flattened into settings in evaluation order.
//!
//! It knows the structure of the file, not the meaning of every keyword: evaluation lives in
//! [`super::fallback`]. Host patterns support `*`, `?` and `!` like OpenSSH's `match_pattern`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::expand::{expand_tilde, Local};
use crate::error::{Error, Result};

/// OpenSSH's limit on nested `Include`s (`READCONF_MAX_DEPTH`).
const MAX_INCLUDE_DEPTH: usize = 16;

/// A place in a configuration file, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)
    }
}

/// What must hold for a setting to apply.
#[derive(Clone, Debug)]
pub(crate) enum Cond {
    /// A `Host` line's patterns.
    Host(Vec<String>),
    /// A `Match` line's arguments, evaluated once per resolution (see `fallback`).
    Match { args: Vec<String>, at: Location },
}

/// One `Keyword arguments...` line with the conditions (indices into `conds`) it sits under.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Lower-case keyword.
    pub key: String,
    pub args: Vec<String>,
    pub at: Location,
    pub conds: Vec<usize>,
}

/// A `Host` line, kept for listing aliases.
#[derive(Clone, Debug)]
pub(crate) struct HostLine {
    pub patterns: Vec<String>,
    pub at: Location,
}

/// A configuration with its includes inlined, in the order OpenSSH reads it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ParsedConfig {
    pub conds: Vec<Cond>,
    pub entries: Vec<Entry>,
    pub hosts: Vec<HostLine>,
}

/// Reads `config_file`, or when it is `None` the files `ssh` reads by default: the user's
/// `~/.ssh/config` (if present) and then `/etc/ssh/ssh_config` (if present).
pub(crate) fn load(config_file: Option<&Path>, local: &Local) -> Result<ParsedConfig> {
    let mut parsed = ParsedConfig::default();
    let user_dir = local.home.join(".ssh");
    match config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
                detail: format!("cannot read the ssh config file {}: {e}", path.display()),
            })?;
            parse_into(&mut parsed, &text, path, &user_dir, &[], 0, local)?;
        }
        None => {
            let system_dir = Path::new("/etc/ssh");
            for (path, include_dir) in [
                (user_dir.join("config"), user_dir.as_path()),
                (system_dir.join("ssh_config"), system_dir),
            ] {
                match std::fs::read_to_string(&path) {
                    Ok(text) => parse_into(&mut parsed, &text, &path, include_dir, &[], 0, local)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::Config {
                            detail: format!("cannot read {}: {e}", path.display()),
                        })
                    }
                }
            }
        }
    }
    Ok(parsed)
}

/// Parses `text` (the contents of `file`) into `out`. `include_dir` is where relative
/// `Include` paths are looked up (`~/.ssh` for user files, `/etc/ssh` for system ones);
/// `outer` are the conditions of the block an `Include` of this file sat in.
pub(crate) fn parse_into(
    out: &mut ParsedConfig,
    text: &str,
    file: &Path,
    include_dir: &Path,
    outer: &[usize],
    depth: usize,
    local: &Local,
) -> Result<()> {
    let mut block: Option<usize> = None;
    for (index, raw) in text.lines().enumerate() {
        let at = Location {
            file: file.to_path_buf(),
            line: index + 1,
        };
        let Some((key, args)) = split_line(raw).map_err(|e| Error::Config {
            detail: format!("{at}: {e}"),
        })?
        else {
            continue;
        };
        let mut conds = outer.to_vec();
        conds.extend(block);
        match key.as_str() {
            "host" => {
                if args.is_empty() {
                    return Err(Error::Config {
                        detail: format!("{at}: `Host` needs at least one pattern"),
                    });
                }
                out.hosts.push(HostLine {
                    patterns: args.clone(),
                    at,
                });
                out.conds.push(Cond::Host(args));
                block = Some(out.conds.len() - 1);
            }
            "match" => {
                out.conds.push(Cond::Match { args, at });
                block = Some(out.conds.len() - 1);
            }
            "include" => {
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(Error::Config {
                        detail: format!(
                            "{at}: Include nested more than {MAX_INCLUDE_DEPTH} deep; is a file including itself?"
                        ),
                    });
                }
                for pattern in &args {
                    let mut path = expand_tilde(pattern, local)?;
                    if path.is_relative() {
                        path = include_dir.join(path);
                    }
                    for found in glob(&path) {
                        if found.is_dir() {
                            continue;
                        }
                        let text = std::fs::read_to_string(&found).map_err(|e| Error::Config {
                            detail: format!("{at}: cannot read included {}: {e}", found.display()),
                        })?;
                        parse_into(out, &text, &found, include_dir, &conds, depth + 1, local)?;
                    }
                }
            }
            _ => out.entries.push(Entry {
                key,
                args,
                at,
                conds,
            }),
        }
    }
    Ok(())
}

/// Splits a line into its lower-case keyword and arguments; `None` for blanks and comments.
/// Like OpenSSH: `Keyword value`, `Keyword=value`, double or single quotes group words,
/// backslash escapes a quote, a backslash or a space, an unquoted `#` word starts a comment.
pub(crate) fn split_line(line: &str) -> std::result::Result<Option<(String, Vec<String>)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let key = line[..end].to_ascii_lowercase();
    let mut rest = line[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) if matches!(chars.peek(), Some('\\' | '"' | '\'' | ' ')) => {
                    word.extend(chars.next());
                }
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(format!("unterminated {q} quote"));
        }
        args.push(word);
    }
    Ok(Some((key, args)))
}

/// `*` and `?` wildcard matching (OpenSSH `match_pattern`), case-sensitive like `ssh`.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether a `Host` line's patterns select `host`: some positive pattern matches and no
/// negated (`!pattern`) one does. Returns the positive pattern that matched.
pub(crate) fn host_patterns_match<'a>(patterns: &'a [String], host: &str) -> Option<&'a str> {
    let mut matched = None;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, host) {
                return None;
            }
        } else if matched.is_none() && wildcard_match(pattern, host) {
            matched = Some(pattern.as_str());
        }
    }
    matched
}

/// A `Match` criterion's comma-separated pattern list (OpenSSH `match_pattern_list`).
pub(crate) fn pattern_list_match(list: &str, text: &str) -> bool {
    let patterns: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
    host_patterns_match(&patterns, text).is_some()
}

/// True when a pattern names one host: no wildcard, no negation.
pub(crate) fn is_concrete(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '!'])
}

/// The existing paths matching `pattern` (absolute), sorted like glob(3). Wildcards `*` and
/// `?` may appear in any component; they do not match a leading `.` unless written.
pub(crate) fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::from("/")];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        if part == "/" {
            continue;
        }
        if !part.contains(['*', '?']) {
            current = current.into_iter().map(|p| p.join(&*part)).collect();
            continue;
        }
        let mut next = Vec::new();
        for dir in &current {
            let Ok(read) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in read.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if wildcard_match(&part, &name) {
                    next.push(dir.join(name));
                }
            }
        }
        current = next;
    }
    current.retain(|p| p.exists());
    current.sort();
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_openssh() {
        let (k, a) = split_line("  HostName=example.com ").unwrap().unwrap();
        assert_eq!(
            (k.as_str(), a),
            ("hostname", vec!["example.com".to_string()])
        );
        let (_, a) = split_line(r#"IdentityFile "/a b/key" c\ d # note"#)
            .unwrap()
            .unwrap();
        assert_eq!(a, vec!["/a b/key", "c d"]);
        let (k, a) = split_line("Host = web db").unwrap().unwrap();
        assert_eq!((k.as_str(), a.len()), ("host", 2));
        assert!(split_line("  # comment").unwrap().is_none());
        assert!(split_line("").unwrap().is_none());
        assert!(split_line("User \"open").is_err());
    }

    #[test]
    fn host_patterns() {
        let p = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(wildcard_match("*.example.com", "a.b.example.com"));
        assert!(wildcard_match("web?", "web1"));
        assert!(!wildcard_match("web?", "web12"));
        assert!(wildcard_match("*", ""));
        assert!(
            !wildcard_match("web", "WEB"),
            "ssh matches Host case-sensitively"
        );
        assert_eq!(
            host_patterns_match(&p("*.lan !db.lan"), "web.lan"),
            Some("*.lan")
        );
        assert_eq!(host_patterns_match(&p("*.lan !db.lan"), "db.lan"), None);
        assert_eq!(host_patterns_match(&p("!db.lan"), "web.lan"), None);
        assert_eq!(host_patterns_match(&p("* web"), "web"), Some("*"));
        assert!(pattern_list_match("a,b*,!bad", "box"));
        assert!(!pattern_list_match("a,b*,!bad", "bad"));
        assert!(is_concrete("web-1.lan") && !is_concrete("web*") && !is_concrete("!x"));
    }

    #[test]
    fn includes_resolve_relative_globs_and_nest_under_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).unwrap();
        std::fs::write(d.join("conf.d/b.conf"), "Host b\n  User bee\n").unwrap();
        std::fs::write(d.join("conf.d/a.conf"), "Host a\n  User ay\n").unwrap();
        std::fs::write(d.join("conf.d/.hidden"), "Host hidden\n").unwrap();
        std::fs::write(d.join("inner"), "Port 2200\n").unwrap();
        let main = "Include conf.d/*.conf\nHost web\n  Include inner\n  User w\n";
        let local = Local {
            home: d.to_path_buf(),
            user: "me".into(),
            uid: 1,
            hostname: "h".into(),
        };
        let mut parsed = ParsedConfig::default();
        parse_into(&mut parsed, main, &d.join("config"), d, &[], 0, &local).unwrap();
        let hosts: Vec<_> = parsed
            .hosts
            .iter()
            .map(|h| h.patterns[0].as_str())
            .collect();
        assert_eq!(
            hosts,
            ["a", "b", "web"],
            "sorted glob, hidden files skipped"
        );
        let port = parsed.entries.iter().find(|e| e.key == "port").unwrap();
        assert_eq!(port.at.file, d.join("inner"));
        // The included `Port` sits under `Host web`.
        assert!(matches!(&parsed.conds[port.conds[0]], Cond::Host(p) if p == &["web"]));
        assert_eq!(glob(&d.join("conf.d/*.conf")).len(), 2);
        assert!(glob(&d.join("missing/*")).is_empty());
    }

    #[test]
    fn include_loops_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("loop");
        std::fs::write(&file, format!("Include {}\n", file.display())).unwrap();
        let local = Local {
            home: dir.path().to_path_buf(),
            user: "me".into(),
            uid: 1,
            hostname: "h".into(),
        };
        let err = load(Some(&file), &local).unwrap_err();
        assert!(err.to_string().contains("Include nested"), "{err}");
    }
}
