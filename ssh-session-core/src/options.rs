//! How to reach a host: address, user, credentials, host key policy, timeouts.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only keys already in known_hosts are accepted (OpenSSH `StrictHostKeyChecking=yes`).
    #[default]
    Strict,
    /// Unknown hosts are recorded and accepted; a changed key is still refused
    /// (`StrictHostKeyChecking=accept-new`).
    AcceptNew,
}

/// Everything needed to open an SSH connection.
#[derive(Clone)]
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
            agent_socket: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
            password: None,
            known_hosts: home_dir().join(".ssh").join("known_hosts"),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
        }
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
            .field("agent_socket", &self.agent_socket)
            .field("password", &self.password.as_ref().map(|_| "<callback>"))
            .field("known_hosts", &self.known_hosts)
            .field("host_key_policy", &self.host_key_policy)
            .field("connect_timeout", &self.connect_timeout)
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
