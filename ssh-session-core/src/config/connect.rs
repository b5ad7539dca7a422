//! From a [`ResolvedHost`] to [`ConnectOptions`], refusing what this library will not do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{resolve_host, ResolvedHost};
use crate::error::{Error, Result};
use crate::options::{ConnectOptions, HostKeyPolicy, IdentityFile};
use crate::transport::TransportKind;

impl ResolvedHost {
    /// The host key policy `StrictHostKeyChecking` asks for, if it was reported.
    ///
    /// `yes` and OpenSSH's default `ask` (this library never prompts) map to
    /// [`HostKeyPolicy::Strict`], `accept-new` to [`HostKeyPolicy::AcceptNew`].
    ///
    /// # Errors
    /// `no`/`off` is refused: it accepts any key, including an attacker's.
    pub fn host_key_policy(&self) -> Result<Option<HostKeyPolicy>> {
        let Some(value) = self.strict_host_key_checking.as_deref() else {
            return Ok(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "yes" | "true" | "ask" => Ok(Some(HostKeyPolicy::Strict)),
            "accept-new" => Ok(Some(HostKeyPolicy::AcceptNew)),
            "no" | "false" | "off" => Err(Error::Config {
                detail: format!(
                    "host {}: `StrictHostKeyChecking no` in {} is refused by ssh-session: it \
                     would accept any host key, including an attacker's. Use \
                     `StrictHostKeyChecking accept-new` (records a new host's key, still refuses \
                     a changed one) or add the key to known_hosts (ssh-keyscan -p {} {} >> {})",
                    self.alias,
                    self.config_name(),
                    self.port,
                    self.host_name,
                    self.known_hosts_file()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "~/.ssh/known_hosts".into()),
                ),
            }),
            other => Err(Error::Config {
                detail: format!(
                    "host {}: unknown StrictHostKeyChecking value {other:?} in {}; use yes, ask or accept-new",
                    self.alias,
                    self.config_name()
                ),
            }),
        }
    }

    /// The known_hosts file to use: the first `UserKnownHostsFile` that exists, else the first.
    pub fn known_hosts_file(&self) -> Option<&Path> {
        self.user_known_hosts_files
            .iter()
            .find(|p| p.exists())
            .or_else(|| self.user_known_hosts_files.first())
            .map(PathBuf::as_path)
    }

    fn config_name(&self) -> String {
        match &self.config_file {
            Some(f) => f.display().to_string(),
            None => "the ssh config".into(),
        }
    }

    /// Sets on `opts` everything the configuration decides: host, port, user, identity
    /// files (replacing `opts.identities` when the config names any), known_hosts, host key
    /// policy, timeouts and keepalives, agent forwarding and socket (`IdentityAgent`),
    /// compression, jump hosts and the config file. Passwords, the agent choice otherwise
    /// and the transport stay as given.
    ///
    /// With the OpenSSH transport `host` is set to the alias, so that `ssh` applies the
    /// configuration (a `ProxyCommand` included) itself.
    ///
    /// # Errors
    /// [`Error::Config`] for `StrictHostKeyChecking no`, for a `ProxyCommand` with the russh
    /// transport (which cannot run one), and for an `IdentityAgent $VAR` that is not set.
    pub fn apply_to(&self, mut opts: ConnectOptions) -> Result<ConnectOptions> {
        let policy = self.host_key_policy()?;
        opts.host = self.host_name.clone();
        if let Some(command) = &self.proxy_command {
            if opts.transport == TransportKind::Russh {
                return Err(Error::Config {
                    detail: format!(
                        "host {}: `ProxyCommand {command}` in {} is not supported by the native \
                         russh transport. Connect with the OpenSSH transport (\"openssh\"), \
                         which runs it; or, if it is `ssh -W %h:%p BASTION`, replace it with \
                         `ProxyJump BASTION`",
                        self.alias,
                        self.config_name()
                    ),
                });
            }
            opts.host = self.alias.clone();
        }
        opts.port = self.port;
        opts.user = self.user.clone();
        if !self.identity_files.is_empty() {
            opts.identities = self.identity_files.iter().map(IdentityFile::new).collect();
        }
        if let Some(known_hosts) = self.known_hosts_file() {
            opts.known_hosts = known_hosts.to_path_buf();
        }
        if let Some(policy) = policy {
            opts.host_key_policy = policy;
        }
        if let Some(timeout) = self.connect_timeout {
            opts.connect_timeout = timeout;
        }
        opts.server_alive_interval = self.server_alive_interval;
        if let Some(max) = self.server_alive_count_max {
            opts.server_alive_count_max = max;
        }
        opts.forward_agent = self.forward_agent;
        opts.compression = self.compression;
        opts.proxy_jump = self.proxy_jump.clone();
        if let Some(file) = &self.config_file {
            opts.config_file = Some(file.clone());
        }
        match self.identity_agent.as_deref() {
            None | Some("SSH_AUTH_SOCK") => {}
            Some("none") => opts.use_agent = false,
            Some(var) if var.starts_with('$') => {
                let name = var.trim_start_matches('$').trim_matches(['{', '}']);
                let socket = std::env::var_os(name).ok_or_else(|| Error::Config {
                    detail: format!(
                        "host {}: IdentityAgent {var} names an environment variable that is not set",
                        self.alias
                    ),
                })?;
                opts = opts.agent_socket(socket);
            }
            Some(path) => opts = opts.agent_socket(path),
        }
        opts.identities_only = self.identities_only;
        if opts.transport == TransportKind::OpenSsh {
            // The OpenSSH backend lets ssh apply the configuration itself: give it the
            // alias, or it would read the config a second time for the HostName.
            opts.host = self.alias.clone();
        }
        Ok(opts)
    }
}

impl ConnectOptions {
    /// Options for `host` (an alias or `[user@]host[:port]`) as `ssh host` would connect,
    /// read from `config_file` (`None`: `~/.ssh/config` and `/etc/ssh/ssh_config`), for the
    /// default russh transport. See [`resolve_host`] and [`ResolvedHost::apply_to`].
    ///
    /// ```no_run
    /// # async fn demo() -> ssh_session_core::Result<()> {
    /// let opts = ssh_session_core::ConnectOptions::from_ssh_config("web", None).await?;
    /// println!("{}@{}:{}", opts.user, opts.host, opts.port);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration (with `ssh`'s message), for
    /// `StrictHostKeyChecking no` and for `ProxyCommand`.
    pub async fn from_ssh_config(host: &str, config_file: Option<&Path>) -> Result<ConnectOptions> {
        let resolved = resolve_host(host, config_file).await?;
        resolved.apply_to(ConnectOptions::new(
            resolved.host_name.clone(),
            resolved.user.clone(),
        ))
    }
}

/// Whose ssh-agent a connection offers keys from, unless the config names an
/// `IdentityAgent` (which always wins, as it does for `ssh`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Agent {
    /// This process's `SSH_AUTH_SOCK`.
    #[default]
    Inherited,
    /// The agent listening on this socket: the one of whoever asked for the connection
    /// (a daemon serves clients whose agents are not its own).
    Socket(PathBuf),
    /// Whoever asked has no agent: offer none.
    Missing,
}

/// A host as a person or an agent names it — a `~/.ssh/config` alias or
/// `[user@]host[:port]` — with the overrides a command line, tool call or server
/// configuration adds. Every front end (MCP server, CLI) resolves hosts through this, so
/// they agree; the overrides win over the config.
///
/// ```no_run
/// use std::time::Duration;
/// use ssh_session_core::{HostKeyPolicy, HostSpec};
///
/// # async fn demo() -> ssh_session_core::Result<()> {
/// let options = HostSpec::new("deploy@web:2222")
///     .identity_file("/home/me/.ssh/deploy_key")
///     .host_key_policy(HostKeyPolicy::AcceptNew)
///     .connect_timeout(Duration::from_secs(5))
///     .resolve()
///     .await?;
/// # let _ = options;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct HostSpec {
    /// Alias or `[user@]host[:port]`.
    pub host: String,
    /// Overrides the user.
    pub user: Option<String>,
    /// Overrides the port.
    pub port: Option<u16>,
    /// Keys tried first, before the config's `IdentityFile`s (as `ssh -i` does).
    pub identity_files: Vec<PathBuf>,
    /// The backend. Chosen before the config is applied: a `ProxyCommand` host works
    /// with [`TransportKind::OpenSsh`] only.
    pub transport: TransportKind,
    /// The OpenSSH client configuration (`None`: `~/.ssh/config`; `/dev/null`: none).
    pub config_file: Option<PathBuf>,
    /// Overrides the known_hosts file.
    pub known_hosts: Option<PathBuf>,
    /// Overrides the host key policy.
    pub host_key_policy: Option<HostKeyPolicy>,
    /// Whose agent to offer.
    pub agent: Agent,
    /// `Some(false)`: no agent at all, whatever the config says.
    pub use_agent: Option<bool>,
    /// Overrides the connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Overrides the keepalive interval.
    pub server_alive_interval: Option<Duration>,
    /// Overrides how many keepalives may go unanswered.
    pub server_alive_count_max: Option<u32>,
}

impl HostSpec {
    /// A spec for `host` with no overrides.
    pub fn new(host: impl Into<String>) -> Self {
        HostSpec {
            host: host.into(),
            ..Default::default()
        }
    }

    /// Overrides the user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Overrides the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Adds a key to try before the config's.
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity_files.push(path.into());
        self
    }

    /// Chooses the backend.
    pub fn transport(mut self, kind: TransportKind) -> Self {
        self.transport = kind;
        self
    }

    /// Reads this OpenSSH client configuration instead of `~/.ssh/config`.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Uses this known_hosts file.
    pub fn known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts = Some(path.into());
        self
    }

    /// Uses this host key policy.
    pub fn host_key_policy(mut self, policy: HostKeyPolicy) -> Self {
        self.host_key_policy = Some(policy);
        self
    }

    /// Offers keys from this agent (unless the config names an `IdentityAgent`).
    pub fn agent(mut self, agent: Agent) -> Self {
        self.agent = agent;
        self
    }

    /// `false`: no agent at all, whatever the config says.
    pub fn use_agent(mut self, yes: bool) -> Self {
        self.use_agent = Some(yes);
        self
    }

    /// Limits TCP connect, handshake and authentication together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Sends a keepalive after this long without traffic.
    pub fn server_alive_interval(mut self, interval: Duration) -> Self {
        self.server_alive_interval = Some(interval);
        self
    }

    /// Declares the link dead after this many unanswered keepalives.
    pub fn server_alive_count_max(mut self, count: u32) -> Self {
        self.server_alive_count_max = Some(count);
        self
    }

    /// The connect options `ssh` would use for this host, with the overrides applied.
    ///
    /// # Errors
    /// As [`ResolvedHost::apply_to`]; an empty host is a [`Error::Config`] too.
    pub async fn resolve(&self) -> Result<ConnectOptions> {
        if self.host.trim().is_empty() {
            return Err(Error::Config {
                detail: "no host given: name a ~/.ssh/config alias or [user@]host[:port]".into(),
            });
        }
        let resolved = resolve_host(&self.host, self.config_file.as_deref()).await?;
        let mut base = ConnectOptions::new(resolved.host_name.clone(), resolved.user.clone())
            .transport(self.transport);
        match &self.agent {
            Agent::Inherited => {}
            Agent::Socket(path) => base = base.agent_socket(path),
            Agent::Missing => {
                base.agent_socket = None;
                base.use_agent = false;
            }
        }
        let mut opts = resolved.apply_to(base)?;
        if let Some(user) = &self.user {
            opts.user = user.clone();
        }
        if let Some(port) = self.port {
            opts.port = port;
        }
        if !self.identity_files.is_empty() {
            let configured = std::mem::take(&mut opts.identities);
            opts.identities = self
                .identity_files
                .iter()
                .map(IdentityFile::new)
                .chain(
                    configured
                        .into_iter()
                        .filter(|c| !self.identity_files.contains(&c.path)),
                )
                .collect();
        }
        if let Some(known_hosts) = &self.known_hosts {
            opts.known_hosts = known_hosts.clone();
        }
        if let Some(policy) = self.host_key_policy {
            opts.host_key_policy = policy;
        }
        if self.use_agent == Some(false) {
            opts.use_agent = false;
        }
        if let Some(timeout) = self.connect_timeout {
            opts.connect_timeout = timeout;
        }
        if let Some(interval) = self.server_alive_interval {
            opts.server_alive_interval = Some(interval);
        }
        if let Some(count) = self.server_alive_count_max {
            opts.server_alive_count_max = count;
        }
        Ok(opts)
    }
}
