//! The server's configuration: a TOML file (every key optional, unknown keys refused so a
//! typo is an error and not a silently ignored setting), then flags and environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use ssh_session_core::{HostKeyPolicy, ReconnectPolicy, TransportKind};

use crate::error::{McpError, Result};
use crate::policy::{Policy, PolicyConfig};

/// Everything the server can be told. `Config::default()` is what runs without a file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Backend for new sessions: `"russh"` (default) or `"openssh"`.
    pub transport: String,
    /// The OpenSSH client config for host aliases (default `~/.ssh/config`).
    pub ssh_config: Option<PathBuf>,
    /// known_hosts file (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// `"strict"` (unknown hosts refused) or `"accept-new"` (recorded on first use); unset,
    /// the ssh config's `StrictHostKeyChecking` decides (strict if it says nothing). A
    /// changed host key is always refused.
    pub host_key_policy: Option<String>,
    /// Offer the ssh-agent's keys (default true).
    pub use_agent: bool,
    /// Limit for connecting and authenticating, in milliseconds (default 10000).
    pub connect_timeout_ms: u64,
    /// Default `ssh_exec` timeout in milliseconds (default 30000); after it the command
    /// keeps running and the result says `running: true`.
    pub exec_timeout_ms: u64,
    /// Default cap on returned output, in characters (default 30000).
    pub max_output_chars: usize,
    /// Keepalive probe interval in seconds (default 30; 1 at the least); the link is
    /// declared dead after `keepalive_count_max` unanswered probes (default 3).
    pub keepalive_interval_s: u64,
    /// See `keepalive_interval_s`.
    pub keepalive_count_max: u32,
    /// Automatic reconnection.
    pub reconnect: ReconnectConfig,
    /// Hosts, commands and tools allowed.
    pub policy: PolicyConfig,
    /// `--http` mode only.
    pub http: HttpConfig,
    /// Local directories `ssh_upload` and `ssh_download` may use, besides the client's MCP
    /// roots (`~` expands). With neither, local paths are refused.
    pub local_dirs: Vec<PathBuf>,
    /// Let `ssh_tunnel_open` listen on addresses other than loopback (default false): a
    /// SOCKS proxy on `0.0.0.0` would open the host's network to everyone who can reach
    /// this machine (or, for a remote tunnel, the host's).
    pub allow_public_tunnels: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            transport: "russh".into(),
            ssh_config: None,
            known_hosts: None,
            host_key_policy: None,
            use_agent: true,
            connect_timeout_ms: 10_000,
            exec_timeout_ms: 30_000,
            max_output_chars: 30_000,
            keepalive_interval_s: 30,
            keepalive_count_max: 3,
            reconnect: ReconnectConfig::default(),
            policy: PolicyConfig::default(),
            http: HttpConfig::default(),
            local_dirs: Vec::new(),
            allow_public_tunnels: false,
        }
    }
}

/// `[http]`: limits of the streamable HTTP mode.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// MCP sessions (one per `initialize`) alive at once (default 64); an `initialize`
    /// beyond it is refused with 503 until one ends (DELETE) or expires.
    pub max_sessions: usize,
    /// An MCP session with no HTTP request for this many seconds (none started, none still
    /// answering or streaming) is ended (default 1800); its client gets 404 and initializes
    /// again. SSH sessions are not affected.
    pub session_idle_timeout_s: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_sessions: 64,
            session_idle_timeout_s: 30 * 60,
        }
    }
}

/// `[reconnect]`: exponential backoff after a lost connection.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectConfig {
    /// Attempts before the session's status becomes `error` (default 3; 0 turns it off).
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds (default 500).
    pub initial_delay_ms: u64,
    /// Growth per attempt (default 2.0).
    pub factor: f64,
    /// Largest delay in milliseconds (default 10000).
    pub max_delay_ms: u64,
    /// Random spread of each delay, as a fraction (default 0.2).
    pub jitter: f64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        let p = ReconnectPolicy::default();
        ReconnectConfig {
            max_attempts: p.max_attempts,
            initial_delay_ms: p.initial_delay.as_millis() as u64,
            factor: p.factor,
            max_delay_ms: p.max_delay.as_millis() as u64,
            jitter: p.jitter,
        }
    }
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| McpError::Config {
            detail: format!("cannot read {}: {e}", path.display()),
        })?;
        Config::parse(&text).map_err(|e| McpError::Config {
            detail: format!("{}: {e}", path.display()),
        })
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Refuses values that cannot work, saying which and why; returns the compiled policy.
    pub fn check(&self) -> std::result::Result<Policy, String> {
        self.transport_kind()?;
        self.key_policy()?;
        if self.keepalive_interval_s == 0 || self.keepalive_count_max == 0 {
            return Err("keepalive_interval_s and keepalive_count_max must be at least 1".into());
        }
        if !(self.reconnect.factor >= 1.0 && (0.0..=1.0).contains(&self.reconnect.jitter)) {
            return Err("reconnect.factor must be ≥ 1 and reconnect.jitter within 0..1".into());
        }
        if self.http.max_sessions == 0 || self.http.session_idle_timeout_s == 0 {
            return Err(
                "http.max_sessions and http.session_idle_timeout_s must be at least 1".into(),
            );
        }
        if self.max_output_chars < crate::render::MIN_CHARS {
            return Err(format!(
                "max_output_chars must be at least {}",
                crate::render::MIN_CHARS
            ));
        }
        self.policy.compile()
    }

    /// The configured backend.
    pub fn transport_kind(&self) -> std::result::Result<TransportKind, String> {
        self.transport.parse()
    }

    /// The configured host key policy, if one is set.
    pub fn key_policy(&self) -> std::result::Result<Option<HostKeyPolicy>, String> {
        match self.host_key_policy.as_deref() {
            None => Ok(None),
            Some("strict") => Ok(Some(HostKeyPolicy::Strict)),
            Some("accept-new") => Ok(Some(HostKeyPolicy::AcceptNew)),
            Some(other) => Err(format!(
                "host_key_policy {other:?} is not one of \"strict\", \"accept-new\""
            )),
        }
    }

    /// The reconnect policy for new sessions.
    pub fn reconnect_policy(&self) -> ReconnectPolicy {
        let r = &self.reconnect;
        ReconnectPolicy {
            max_attempts: r.max_attempts,
            initial_delay: Duration::from_millis(r.initial_delay_ms),
            factor: r.factor,
            max_delay: Duration::from_millis(r.max_delay_ms),
            jitter: r.jitter,
        }
    }
}

/// `~/x` → `$HOME/x`.
pub fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        Config::default().check().unwrap();
    }

    #[test]
    fn a_full_file_parses() {
        let c = Config::parse(
            r#"
            transport = "openssh"
            host_key_policy = "accept-new"
            exec_timeout_ms = 5000
            max_output_chars = 10000
            [reconnect]
            max_attempts = 5
            [policy]
            allowed_hosts = ["*.example.com", "localhost"]
            disabled_tools = ["ssh_send_input"]
            [[policy.hosts]]
            pattern = "prod-*"
            read_only = true
            deny = ["rm *"]
            [http]
            max_sessions = 8
            session_idle_timeout_s = 60
            "#,
        )
        .unwrap();
        assert_eq!(c.transport_kind().unwrap(), TransportKind::OpenSsh);
        assert_eq!(c.reconnect_policy().max_attempts, 5);
        assert_eq!(c.policy.hosts[0].deny, ["rm *"]);
        assert_eq!(
            (c.http.max_sessions, c.http.session_idle_timeout_s),
            (8, 60)
        );
    }

    #[test]
    fn mistakes_are_named() {
        let e = Config::parse("transprot = \"russh\"").unwrap_err();
        assert!(e.contains("transprot"), "{e}");
        let e = Config::parse("transport = \"telnet\"").unwrap_err();
        assert!(e.contains("telnet"), "{e}");
        let e = Config::parse("[policy]\nallowed_hosts = [\"[\"]").unwrap_err();
        assert!(e.contains("allowed_hosts"), "{e}");
        let e = Config::parse("[http]\nmax_sessions = 0").unwrap_err();
        assert!(e.contains("max_sessions"), "{e}");
        let e = Config::parse("max_output_chars = 5").unwrap_err();
        assert!(e.contains("max_output_chars"), "{e}");
    }
}
