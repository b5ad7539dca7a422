//! Guard-rails for what an agent may do: which hosts, which commands, which tools.
//!
//! These are guard-rails against an agent's mistakes, **not a sandbox**: a shell can do
//! anything its user can, and a determined command can get past a pattern (an alias set up
//! earlier, a script written with an allowed editor, ...). Real isolation belongs on the
//! remote side: a restricted user, `ForceCommand`, sudoers, containers.

mod read_only;

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

    /// Whether files may be changed or tunnels opened (`what`): not on a read-only host.
    pub fn check_change(&self, what: &str) -> Result<(), String> {
        match &self.rule {
            Some(rule) if rule.read_only => Err(format!(
                "refused: this host is read-only in the server's policy, so {what} is not allowed; read files and run inspection commands only"
            )),
            _ => Ok(()),
        }
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
            read_only::check(command, &rule.extra_programs)
                .map_err(|why| format!("refused: this host is read-only in the server's policy ({why}); run inspection commands only"))?;
        }
        Ok(())
    }
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
        assert!(r.check_command("ps aux | grep nginx").is_ok());
        assert!(r.check_command("nginx -t").is_ok());
        let e = r.check_command("rm -rf /tmp/x").unwrap_err();
        assert!(e.contains("read-only") && e.contains("\"rm\""), "{e}");
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
