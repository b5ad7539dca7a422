//! Guard-rails for what an agent may do: which hosts, which commands, which tools.
//!
//! These are guard-rails against an agent's mistakes, **not a sandbox**: a shell can do
//! anything its user can, and a determined command can get past a pattern (an alias set up
//! earlier, a script written with an allowed editor, ...). Real isolation belongs on the
//! remote side: a restricted user, `ForceCommand`, sudoers, containers.

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

/// `[policy]` in the config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Glob patterns a host must match to be connected to: the host as given (alias or
    /// name) or the name it resolves to. Empty (the default) allows every host.
    pub allowed_hosts: Vec<String>,
    /// Tools not offered at all, e.g. `["ssh_send_input"]`.
    pub disabled_tools: Vec<String>,
    /// Per-host rules; the first whose `pattern` matches the host applies.
    pub hosts: Vec<HostRule>,
}

/// `[[policy.hosts]]`: rules for the hosts matching `pattern`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HostRule {
    /// Glob matched against the host as given and the name it resolves to.
    pub pattern: String,
    /// Only inspection commands: each part of a pipeline or list must start with a
    /// program from the read-only list (plus `read_only_programs`), with no output
    /// redirection to files, no command substitution, and no input sent to programs.
    pub read_only: bool,
    /// Programs added to the read-only list for these hosts.
    pub read_only_programs: Vec<String>,
    /// If not empty, a command must match one of these globs (on the whole command line).
    pub allow: Vec<String>,
    /// A command matching any of these globs is refused.
    pub deny: Vec<String>,
}

/// Programs that only inspect (the options some have to write or run others are refused
/// in [`arguments_allowed`]). Deliberately absent: `sed`, `awk`, `xargs`, `command`, `env`
/// with arguments, shells and interpreters — each can run or write anything.
const READ_ONLY_PROGRAMS: &[&str] = &[
    "cat",
    "head",
    "tail",
    "less",
    "more",
    "ls",
    "ll",
    "tree",
    "stat",
    "file",
    "wc",
    "grep",
    "egrep",
    "fgrep",
    "rg",
    "sort",
    "uniq",
    "cut",
    "tr",
    "column",
    "diff",
    "cmp",
    "md5sum",
    "sha256sum",
    "pwd",
    "echo",
    "printf",
    "true",
    "false",
    "test",
    "[",
    "date",
    "uptime",
    "uname",
    "hostname",
    "whoami",
    "id",
    "groups",
    "env",
    "printenv",
    "which",
    "type",
    "ps",
    "pgrep",
    "top",
    "free",
    "df",
    "du",
    "lsblk",
    "mount",
    "ip",
    "ss",
    "netstat",
    "journalctl",
    "dmesg",
    "find",
    "realpath",
    "readlink",
    "basename",
    "dirname",
    "git",
    "systemctl",
    "docker",
    "kubectl",
    "cd",
];

/// Whether `args` keep `program` read-only: subcommands for the programs that also have
/// writing ones, and no option that writes a file or runs another program.
fn arguments_allowed(program: &str, args: &[&str]) -> bool {
    let sub = args.iter().find(|a| !a.starts_with('-')).copied();
    let any = |pred: &dyn Fn(&str) -> bool| args.iter().any(|a| pred(a));
    let operands = args.iter().filter(|a| !a.starts_with('-')).count();
    match program {
        "git" => {
            matches!(
                sub,
                Some(
                    "status"
                        | "log"
                        | "diff"
                        | "show"
                        | "branch"
                        | "remote"
                        | "rev-parse"
                        | "blame"
                )
            ) && !any(&|a| {
                a == "-c"
                    || a.starts_with("--output")
                    || a.starts_with("--ext-diff")
                    || a.starts_with("--exec-path")
                    || a.starts_with("--upload-pack")
            })
        }
        "systemctl" => matches!(
            sub,
            Some(
                "status"
                    | "show"
                    | "cat"
                    | "list-units"
                    | "list-unit-files"
                    | "list-timers"
                    | "is-active"
                    | "is-enabled"
                    | "is-failed"
            )
        ),
        "docker" => matches!(
            sub,
            Some("ps" | "logs" | "inspect" | "images" | "stats" | "version" | "info")
        ),
        "kubectl" => matches!(sub, Some("get" | "describe" | "logs" | "top" | "version")),
        "find" => !any(&|a| {
            a == "-delete"
                || a.starts_with("-exec")
                || a.starts_with("-ok")
                || a.starts_with("-fprint")
                || a == "-fls"
        }),
        "sort" => !any(&|a| {
            a.starts_with("-o") || a.starts_with("--output") || a.starts_with("--compress-program")
        }),
        "less" => !any(&|a| {
            a.starts_with("-o")
                || a.starts_with("-O")
                || a.starts_with("--log-file")
                || a.starts_with("--LOG-FILE")
        }),
        "tree" => !any(&|a| a.starts_with("-o")),
        "rg" => !any(&|a| a.starts_with("--pre")),
        "file" => !any(&|a| a == "-C" || a == "--compile"),
        "uniq" => operands <= 1,
        "ip" => !any(&|a| {
            matches!(
                a,
                "add"
                    | "del"
                    | "delete"
                    | "set"
                    | "change"
                    | "replace"
                    | "flush"
                    | "exec"
                    | "netns"
            )
        }),
        "journalctl" => !any(&|a| {
            a.starts_with("--vacuum")
                || matches!(
                    a,
                    "--rotate" | "--flush" | "--sync" | "--relinquish-var" | "--setup-keys"
                )
        }),
        "dmesg" => !any(&|a| {
            matches!(
                a,
                "-c" | "-C"
                    | "--clear"
                    | "--read-clear"
                    | "-D"
                    | "-E"
                    | "-n"
                    | "--console-off"
                    | "--console-on"
                    | "--console-level"
            )
        }),
        "date" => !any(&|a| a.starts_with("-s") || a.starts_with("--set")),
        "hostname" => args.iter().all(|a| {
            matches!(
                *a,
                "-f" | "-i"
                    | "-I"
                    | "-s"
                    | "-d"
                    | "-A"
                    | "--fqdn"
                    | "--short"
                    | "--domain"
                    | "--all-fqdns"
                    | "--ip-address"
                    | "--all-ip-addresses"
            )
        }),
        "env" | "mount" => args.is_empty(),
        _ => true,
    }
}

/// A compiled policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    allowed_hosts: Vec<GlobMatcher>,
    rules: Vec<CompiledRule>,
    /// Tools switched off.
    pub disabled_tools: Vec<String>,
}

#[derive(Clone, Debug)]
struct CompiledRule {
    pattern: GlobMatcher,
    read_only: bool,
    extra_programs: Vec<String>,
    allow: Vec<(String, GlobMatcher)>,
    deny: Vec<(String, GlobMatcher)>,
}

/// What applies to one session: fixed at connect time.
#[derive(Clone, Debug, Default)]
pub struct SessionRules {
    rule: Option<CompiledRule>,
}

fn glob(field: &str, pattern: &str) -> Result<GlobMatcher, String> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("policy: {field} pattern {pattern:?} is invalid: {e}"))
}

impl PolicyConfig {
    /// Checks and compiles the patterns.
    pub fn compile(&self) -> Result<Policy, String> {
        let allowed_hosts = self
            .allowed_hosts
            .iter()
            .map(|p| glob("allowed_hosts", p))
            .collect::<Result<_, _>>()?;
        let mut rules = Vec::new();
        for rule in &self.hosts {
            let list = |field: &str, patterns: &[String]| {
                patterns
                    .iter()
                    .map(|p| glob(field, p).map(|g| (p.clone(), g)))
                    .collect::<Result<Vec<_>, _>>()
            };
            rules.push(CompiledRule {
                pattern: glob("hosts.pattern", &rule.pattern)?,
                read_only: rule.read_only,
                extra_programs: rule.read_only_programs.clone(),
                allow: list("hosts.allow", &rule.allow)?,
                deny: list("hosts.deny", &rule.deny)?,
            });
        }
        for tool in &self.disabled_tools {
            if !crate::tools::TOOL_NAMES.contains(&tool.as_str()) {
                return Err(format!(
                    "policy: disabled_tools names {tool:?}, which is not a tool; the tools are {}",
                    crate::tools::TOOL_NAMES.join(", ")
                ));
            }
        }
        Ok(Policy {
            allowed_hosts,
            rules,
            disabled_tools: self.disabled_tools.clone(),
        })
    }
}

impl Policy {
    /// Whether `given` (as the caller wrote it) or `resolved` (the real host name) may be
    /// connected to; the error says which setting refuses it.
    pub fn check_host(&self, given: &str, resolved: &str) -> Result<(), String> {
        if self.allowed_hosts.is_empty()
            || self
                .allowed_hosts
                .iter()
                .any(|g| g.is_match(given) || g.is_match(resolved))
        {
            return Ok(());
        }
        Err(format!(
            "host {given:?} ({resolved}) is not in the server's policy.allowed_hosts; ask the user to allow it in the ssh-session-mcp config"
        ))
    }

    /// The rules for a session on this host.
    pub fn rules_for(&self, given: &str, resolved: &str) -> SessionRules {
        SessionRules {
            rule: self
                .rules
                .iter()
                .find(|r| r.pattern.is_match(given) || r.pattern.is_match(resolved))
                .cloned(),
        }
    }
}

impl SessionRules {
    /// Whether `input` may be typed into the running program. Typed input is a command line
    /// for a shell or REPL as much as a reply to a prompt, so a read-only host or one with
    /// an allow list refuses it, and deny patterns apply to it.
    pub fn check_input(&self, input: &str) -> Result<(), String> {
        let Some(rule) = &self.rule else {
            return Ok(());
        };
        if rule.read_only || !rule.allow.is_empty() {
            return Err(
                "refused by the server's policy: this host only runs allowed commands, so typing input into programs is refused"
                    .into(),
            );
        }
        if let Some((p, _)) = rule.deny.iter().find(|(_, g)| g.is_match(input.trim_end())) {
            return Err(format!(
                "refused by the server's policy: the input matches deny pattern {p:?}"
            ));
        }
        Ok(())
    }

    /// Whether `command` may run; the error names the rule that refuses it.
    pub fn check_command(&self, command: &str) -> Result<(), String> {
        let Some(rule) = &self.rule else {
            return Ok(());
        };
        if let Some((p, _)) = rule.deny.iter().find(|(_, g)| g.is_match(command)) {
            return Err(format!(
                "refused by the server's policy: the command matches deny pattern {p:?}"
            ));
        }
        if !rule.allow.is_empty() && !rule.allow.iter().any(|(_, g)| g.is_match(command)) {
            let patterns: Vec<&str> = rule.allow.iter().map(|(p, _)| p.as_str()).collect();
            return Err(format!(
                "refused by the server's policy: this host only allows commands matching {patterns:?}"
            ));
        }
        if rule.read_only {
            read_only_check(command, &rule.extra_programs)
                .map_err(|why| format!("refused: this host is read-only in the server's policy ({why}); run inspection commands only"))?;
        }
        Ok(())
    }
}

/// Splits a command line into simple commands on `|`, `;`, `&`, `&&`, `||` and newlines,
/// refusing what a splitter this simple cannot see through (substitutions, file output).
fn read_only_check(command: &str, extra: &[String]) -> Result<(), String> {
    if command.contains("$(")
        || command.contains('`')
        || command.contains("<(")
        || command.contains(">(")
    {
        return Err("command substitution is not allowed".into());
    }
    let mut segment = String::new();
    let mut segments = Vec::new();
    let mut chars = command.chars().peekable();
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        if c == '\\' && !single {
            // An escaped character is literal: it neither quotes nor separates.
            segment.push(c);
            if let Some(next) = chars.next() {
                segment.push(next);
            }
            prev = 'x';
            continue;
        }
        // `2>&1` and `&>file` are redirections, not the `&` that ends a command.
        let redirect_amp = c == '&' && (prev == '>' || chars.peek() == Some(&'>'));
        prev = c;
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '&' if redirect_amp => {}
            '|' | ';' | '&' | '\n' if !single && !double => {
                segments.push(std::mem::take(&mut segment));
                continue;
            }
            '>' if !single && !double => {
                // Only duplicating a descriptor (`2>&1`, `>&2`, `>&-`) and /dev/null are
                // harmless; `>&file` writes a file.
                let rest: String = chars.clone().collect();
                let rest = rest.trim_start_matches('>');
                let target = rest.strip_prefix('&').unwrap_or(rest).trim_start();
                let fd_dup = rest.starts_with('&')
                    && target
                        .chars()
                        .next()
                        .is_some_and(|t| t.is_ascii_digit() || t == '-');
                if !(fd_dup || target.starts_with("/dev/null")) {
                    return Err("output redirection to a file is not allowed".into());
                }
            }
            _ => {}
        }
        segment.push(c);
    }
    segments.push(segment);
    for segment in segments {
        let words: Vec<&str> = segment.split_whitespace().collect();
        let Some(mut program) = words.first().copied() else {
            continue;
        };
        let args = &words[1..];
        // `VAR=value program` and `sudo`/`env` prefixes are not looked through.
        if program.contains('=') {
            return Err(format!("{program:?}: variable assignments are not allowed"));
        }
        if let Some(name) = program.rsplit('/').next() {
            program = name;
        }
        let known = READ_ONLY_PROGRAMS.contains(&program) || extra.iter().any(|p| p == program);
        if !known {
            return Err(format!("{program:?} is not on the read-only list"));
        }
        if !arguments_allowed(program, args) {
            return Err(format!("{program} {} may write", args.join(" ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_rule: HostRule) -> SessionRules {
        let policy = PolicyConfig {
            hosts: vec![toml_rule],
            ..Default::default()
        }
        .compile()
        .unwrap();
        policy.rules_for("prod-1", "10.0.0.1")
    }

    #[test]
    fn hosts_are_checked_against_alias_and_name() {
        let p = PolicyConfig {
            allowed_hosts: vec!["*.example.com".into(), "lab-*".into()],
            ..Default::default()
        }
        .compile()
        .unwrap();
        assert!(p.check_host("lab-3", "10.0.0.3").is_ok());
        assert!(p.check_host("web", "web.example.com").is_ok());
        let e = p.check_host("evil", "evil.org").unwrap_err();
        assert!(e.contains("allowed_hosts"), "{e}");
        assert!(Policy::default().check_host("any", "any").is_ok());
    }

    #[test]
    fn allow_and_deny_patterns() {
        let r = rules(HostRule {
            pattern: "prod-*".into(),
            allow: vec!["systemctl *".into(), "ls*".into()],
            deny: vec!["*restart*".into()],
            ..Default::default()
        });
        assert!(r.check_command("ls -la /etc").is_ok());
        assert!(r.check_command("systemctl status nginx").is_ok());
        assert!(r
            .check_command("systemctl restart nginx")
            .unwrap_err()
            .contains("deny"));
        assert!(r
            .check_command("rm -rf /")
            .unwrap_err()
            .contains("only allows"));
        assert!(r.check_input("y\n").unwrap_err().contains("typing input"));
        let deny_only = rules(HostRule {
            pattern: "prod-*".into(),
            deny: vec!["*shutdown*".into()],
            ..Default::default()
        });
        assert!(deny_only.check_input("y\n").is_ok());
        assert!(deny_only
            .check_input("shutdown -h now\n")
            .unwrap_err()
            .contains("deny"));
    }

    #[test]
    fn read_only_hosts_allow_inspection_only() {
        let r = rules(HostRule {
            pattern: "prod-*".into(),
            read_only: true,
            read_only_programs: vec!["nginx".into()],
            ..Default::default()
        });
        for ok in [
            "ls -la /var/log",
            "ps aux | grep nginx | head -5",
            "cat /etc/os-release; uname -a",
            "journalctl -u nginx -n 50 2>&1",
            "ls /nope &>/dev/null || echo missing",
            "grep -r 'a|b' /etc > /dev/null && echo found",
            "git log --oneline | head",
            "systemctl status nginx",
            "/usr/bin/df -h",
            "nginx -t",
            "find /var/log -name '*.gz'",
        ] {
            assert!(
                r.check_command(ok).is_ok(),
                "{ok}: {:?}",
                r.check_command(ok)
            );
        }
        for bad in [
            "rm -rf /tmp/x",
            "echo hi > /etc/motd",
            "cat a >> b",
            "ls; rm x",
            "ls && shutdown now",
            "echo $(rm x)",
            "echo `rm x`",
            "sed -i s/a/b/ f",
            "find / -delete",
            "git push",
            "systemctl restart nginx",
            "FOO=1 ls",
            "env rm x",
            "ls | xargs rm",
            "echo \\\"; touch /x; echo \\\"",
            "cat f >&/tmp/x",
            "command rm -rf /tmp/x",
            "sed -n '1e id' f",
            "less -o /tmp/log f",
            "sort --compress-program=sh f",
            "git -c core.pager=sh log",
            "git log --output=/tmp/x",
            "ip netns exec ns rm x",
            "find / -fprint0 /tmp/x",
            "rg --pre sh x",
            "uniq in out",
            "journalctl --vacuum-time=1s",
            "date -s 2020-01-01",
            "hostname evil",
            "ls &> out.txt",
        ] {
            assert!(r.check_command(bad).is_err(), "{bad} passed");
        }
        assert!(r.check_input("y\n").unwrap_err().contains("typing input"));
    }

    #[test]
    fn unknown_tools_and_bad_patterns_are_config_errors() {
        let e = PolicyConfig {
            disabled_tools: vec!["ssh_teleport".into()],
            ..Default::default()
        }
        .compile()
        .unwrap_err();
        assert!(e.contains("ssh_teleport") && e.contains("ssh_exec"), "{e}");
    }
}
