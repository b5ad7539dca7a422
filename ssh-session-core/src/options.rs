//! How to reach a host: address, user, credentials, host key policy, timeouts.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::transport::TransportKind;

/// A callback asked for a password when key and agent authentication fail. It receives
/// `(user, host)` and returns the password, or `None` to give up. The password is used once
/// and never stored.
pub type PasswordCallback = Arc<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

/// A private key file and, if it is encrypted, its passphrase (kept in memory only).
#[derive(Clone)]
pub struct IdentityFile {
    /// Path of the OpenSSH-format private key.
    pub path: PathBuf,
    /// Passphrase for an encrypted key.
    pub passphrase: Option<String>,
}

impl IdentityFile {
    /// An unencrypted key file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        IdentityFile {
            path: path.into(),
            passphrase: None,
        }
    }

    /// An encrypted key file and its passphrase.
    pub fn with_passphrase(path: impl Into<PathBuf>, passphrase: impl Into<String>) -> Self {
        IdentityFile {
            path: path.into(),
            passphrase: Some(passphrase.into()),
        }
    }
}

impl fmt::Debug for IdentityFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityFile")
            .field("path", &self.path)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What to do with the server's host key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HostKeyPolicy {
    /// Only keys already in known_hosts are accepted (OpenSSH `StrictHostKeyChecking=yes`).
    #[default]
    Strict,
    /// Unknown hosts are recorded and accepted; a changed key is still refused
    /// (`StrictHostKeyChecking=accept-new`).
    AcceptNew,
}

/// One hop of a `ProxyJump` chain: `[user@]host[:port]`, or a `~/.ssh/config` alias.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JumpHost {
    /// Host name, address or config alias.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// User, if given.
    pub user: Option<String>,
}

impl JumpHost {
    /// Parses one `[user@]host[:port]` hop (IPv6 in brackets: `[::1]:22`).
    pub fn parse(spec: &str) -> Option<JumpHost> {
        let spec = spec.trim().trim_start_matches("ssh://");
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner.split_once(']')?;
            (h, after.strip_prefix(':').map(str::parse).transpose().ok()?)
        } else if rest.matches(':').count() == 1 {
            let (h, p) = rest.split_once(':')?;
            (h, Some(p.parse().ok()?))
        } else {
            (rest, None)
        };
        if host.is_empty() || user.as_deref() == Some("") {
            return None;
        }
        Some(JumpHost {
            host: host.to_string(),
            port,
            user,
        })
    }

    /// Parses a comma-separated `ProxyJump` value; `none` means no jump.
    pub fn parse_chain(value: &str) -> Option<Vec<JumpHost>> {
        if value.trim().eq_ignore_ascii_case("none") || value.trim().is_empty() {
            return Some(Vec::new());
        }
        value.split(',').map(JumpHost::parse).collect()
    }
}

impl fmt::Display for JumpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Everything needed to open an SSH connection. Start from [`ConnectOptions::new`] (or
/// [`from_ssh_config`](ConnectOptions::from_ssh_config)) and set what differs with the
/// builder methods, one per field and named after it:
///
/// ```
/// use std::time::Duration;
/// use ssh_session_core::{ConnectOptions, HostKeyPolicy, IdentityFile, TransportKind};
///
/// let options = ConnectOptions::new("db.internal", "deploy")
///     .port(2222)
///     .identity(IdentityFile::new("/home/me/.ssh/id_ed25519"))
///     .host_key_policy(HostKeyPolicy::AcceptNew)
///     .connect_timeout(Duration::from_secs(5))
///     .server_alive_interval(Some(Duration::from_secs(10)))
///     .transport(TransportKind::OpenSsh);
/// assert_eq!(options.port, 2222);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Host name or address.
    pub host: String,
    /// TCP port (22).
    pub port: u16,
    /// Remote user (default: the local `$USER`).
    pub user: String,
    /// Private keys to offer, in order. Empty means the default `~/.ssh/id_*` files.
    pub identities: Vec<IdentityFile>,
    /// Offer the ssh-agent's keys first (default: true).
    pub use_agent: bool,
    /// Offer only the agent keys that match `identities` (OpenSSH `IdentitiesOnly`): with
    /// dozens of keys in an agent, a server may close the connection before the right one.
    pub identities_only: bool,
    /// The agent's socket (default: `$SSH_AUTH_SOCK` when the options are created).
    pub agent_socket: Option<PathBuf>,
    /// Asked for a password when keys fail; none by default.
    pub password: Option<PasswordCallback>,
    /// The known_hosts file (default `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    /// What to do with an unknown host key (default strict).
    pub host_key_policy: HostKeyPolicy,
    /// Limit for TCP connect, handshake and authentication together (default 10 s).
    pub connect_timeout: Duration,
    /// Which backend to use (default [`TransportKind::Russh`]).
    pub transport: TransportKind,
    /// Hosts to tunnel through, in order (`ProxyJump`); empty for a direct connection.
    pub proxy_jump: Vec<JumpHost>,
    /// The OpenSSH client configuration file (default `~/.ssh/config`). Used to resolve
    /// aliases, and passed to `ssh -F` by the OpenSSH backend. `/dev/null` ignores it.
    pub config_file: Option<PathBuf>,
    /// OpenSSH backend: the `ssh` program to run (default `ssh`, found on `PATH`).
    pub ssh_program: PathBuf,
    /// OpenSSH backend: extra arguments for every `ssh` invocation (`-o Key=Value`...).
    pub extra_ssh_args: Vec<String>,
    /// Request compression (default off: it slows loopback and LAN links).
    pub compression: bool,
    /// Forward the local ssh-agent to the host (default off).
    pub forward_agent: bool,
    /// Health probe: send a keepalive after this long without traffic (OpenSSH
    /// `ServerAliveInterval`; default 30 s, down to 1 s). A link that answers nothing for
    /// `interval × server_alive_count_max` is declared dead and the session reconnects.
    pub server_alive_interval: Option<Duration>,
    /// Give up after this many unanswered keepalives (`ServerAliveCountMax`, default 3).
    pub server_alive_count_max: u32,
}

impl ConnectOptions {
    /// Options for `user@host:22` with the defaults above.
    pub fn new(host: impl Into<String>, user: impl Into<String>) -> Self {
        ConnectOptions {
            host: host.into(),
            port: 22,
            user: user.into(),
            identities: Vec::new(),
            use_agent: true,
            identities_only: false,
            agent_socket: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
            password: None,
            known_hosts: home_dir().join(".ssh").join("known_hosts"),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            transport: TransportKind::Russh,
            proxy_jump: Vec::new(),
            config_file: None,
            ssh_program: PathBuf::from("ssh"),
            extra_ssh_args: Vec::new(),
            compression: false,
            forward_agent: false,
            server_alive_interval: Some(Duration::from_secs(30)),
            server_alive_count_max: 3,
        }
    }

    /// Chooses the backend.
    pub fn transport(mut self, kind: TransportKind) -> Self {
        self.transport = kind;
        self
    }

    /// Tunnels through these hosts, in order.
    pub fn proxy_jump(mut self, hops: Vec<JumpHost>) -> Self {
        self.proxy_jump = hops;
        self
    }

    /// Uses this OpenSSH client configuration file instead of `~/.ssh/config`.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Adds a private key to offer.
    pub fn identity(mut self, identity: IdentityFile) -> Self {
        self.identities.push(identity);
        self
    }

    /// Uses this known_hosts file.
    pub fn known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts = path.into();
        self
    }

    /// Sets the host key policy.
    pub fn host_key_policy(mut self, policy: HostKeyPolicy) -> Self {
        self.host_key_policy = policy;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Enables or disables the ssh-agent.
    pub fn use_agent(mut self, yes: bool) -> Self {
        self.use_agent = yes;
        self
    }

    /// Uses the ssh-agent listening on this socket.
    pub fn agent_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent_socket = Some(path.into());
        self.use_agent = true;
        self
    }

    /// Sets the password callback.
    pub fn password_callback(mut self, callback: PasswordCallback) -> Self {
        self.password = Some(callback);
        self
    }

    /// Sets the remote user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Offers only the agent keys that match the identities (OpenSSH `IdentitiesOnly`).
    pub fn identities_only(mut self, yes: bool) -> Self {
        self.identities_only = yes;
        self
    }

    /// OpenSSH backend: runs this `ssh` program.
    pub fn ssh_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.ssh_program = program.into();
        self
    }

    /// OpenSSH backend: passes these extra arguments to every `ssh` invocation.
    pub fn extra_ssh_args(mut self, args: Vec<String>) -> Self {
        self.extra_ssh_args = args;
        self
    }

    /// Requests compression.
    pub fn compression(mut self, yes: bool) -> Self {
        self.compression = yes;
        self
    }

    /// Forwards the local ssh-agent to the host.
    pub fn forward_agent(mut self, yes: bool) -> Self {
        self.forward_agent = yes;
        self
    }

    /// Sends a keepalive after this long without traffic (`None`: never).
    pub fn server_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.server_alive_interval = interval;
        self
    }

    /// Declares the link dead after this many unanswered keepalives.
    pub fn server_alive_count_max(mut self, count: u32) -> Self {
        self.server_alive_count_max = count;
        self
    }

    /// The key files to offer: the configured ones, or the existing default `~/.ssh/id_*`.
    pub(crate) fn effective_identities(&self) -> Vec<IdentityFile> {
        if !self.identities.is_empty() {
            return self.identities.clone();
        }
        let ssh = home_dir().join(".ssh");
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|f| ssh.join(f))
            .filter(|p| p.exists())
            .map(IdentityFile::new)
            .collect()
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("identities", &self.identities)
            .field("use_agent", &self.use_agent)
            .field("identities_only", &self.identities_only)
            .field("agent_socket", &self.agent_socket)
            .field("password", &self.password.as_ref().map(|_| "<callback>"))
            .field("known_hosts", &self.known_hosts)
            .field("host_key_policy", &self.host_key_policy)
            .field("connect_timeout", &self.connect_timeout)
            .field("transport", &self.transport)
            .field("proxy_jump", &self.proxy_jump)
            .field("config_file", &self.config_file)
            .field("ssh_program", &self.ssh_program)
            .field("extra_ssh_args", &self.extra_ssh_args)
            .field("compression", &self.compression)
            .field("forward_agent", &self.forward_agent)
            .field("server_alive_interval", &self.server_alive_interval)
            .field("server_alive_count_max", &self.server_alive_count_max)
            .finish()
    }
}

/// The local user's home directory (`$HOME`, else `/`).
pub(crate) fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The local user name (`$USER`, else `$LOGNAME`, else `root`).
pub fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_string())
}

#[cfg(test)]
mod tests {
    use super::JumpHost;

    #[test]
    fn jump_hosts_parse() {
        let j = JumpHost::parse("alice@bastion.example:2222").unwrap();
        assert_eq!(
            (j.user.as_deref(), j.host.as_str(), j.port),
            (Some("alice"), "bastion.example", Some(2222))
        );
        let j = JumpHost::parse("[::1]:22").unwrap();
        assert_eq!((j.host.as_str(), j.port), ("::1", Some(22)));
        assert_eq!(JumpHost::parse("alias").unwrap().to_string(), "alias");
        assert_eq!(
            JumpHost::parse("u@[::1]:2").unwrap().to_string(),
            "u@[::1]:2"
        );
        let chain = JumpHost::parse_chain("a, b@c:3").unwrap();
        assert_eq!(chain.len(), 2);
        assert!(JumpHost::parse_chain("none").unwrap().is_empty());
        assert!(JumpHost::parse("@host").is_none());
        assert!(JumpHost::parse("host:notaport").is_none());
    }
}
