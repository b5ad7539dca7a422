//! `~/.ssh/config` support: resolve a host alias the way `ssh` would, list the aliases a
//! config defines, and turn a resolved host into [`ConnectOptions`](crate::ConnectOptions).
//!
//! The authority is the local OpenSSH client: `ssh -G HOST` prints the configuration `ssh`
//! would use for HOST after evaluating everything (`Host` and `Match` blocks, `Include`,
//! tokens, defaults) without connecting. Where `ssh` is not installed a built-in parser takes
//! over; it handles `Host` patterns (`*`, `?`, `!`), `Include` with globs, first-value-wins
//! and simple `Match` criteria (`all`, `host`, `originalhost`, `user`, `localuser`), and
//! refuses with [`Error::Config`] what it cannot evaluate exactly (`Match exec`, `%C`...)
//! rather than guess a user or key.
//!
//! ```no_run
//! use ssh_session_core::{config, ConnectOptions};
//!
//! # async fn demo() -> ssh_session_core::Result<()> {
//! // Everything `ssh web` would use: HostName, Port, User, IdentityFile, ProxyJump...
//! let web = config::resolve_host("web", None).await?;
//! println!("{} -> {}@{}:{}", web.alias, web.user, web.host_name, web.port);
//!
//! // Or straight to connection options (explicit user/port win over the config).
//! let options = ConnectOptions::from_ssh_config("deploy@web:2222", None).await?;
//! # let _ = options;
//! for alias in config::list_host_aliases(None).await? {
//!     println!("{} ({:?})", alias.alias, alias.host_name);
//! }
//! # Ok(())
//! # }
//! ```

mod connect;

pub use connect::{Agent, HostSpec};
mod dump;
mod expand;
mod fallback;
mod parse;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{stream, StreamExt};

use crate::error::{Error, Result};
use crate::options::JumpHost;
use dump::{run_ssh_g, to_resolved, Dump, SshG};
use expand::Local;
use parse::{host_patterns_match, is_concrete, ParsedConfig};

/// How many `ssh -G` run at once when listing aliases.
const LIST_CONCURRENCY: usize = 8;

/// Which resolver produced a [`ResolvedHost`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolvedBy {
    /// The local OpenSSH client (`ssh -G`): exact.
    OpenSsh,
    /// The built-in parser, used where `ssh` is not installed.
    Parser,
}

/// Everything the SSH client configuration says about one host.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedHost {
    /// The host as given, without `user@` and `:port` (an alias or a host name).
    pub alias: String,
    /// The real host name or address to connect to (`HostName`, else the alias).
    pub host_name: String,
    /// `Port` (22 by default; an explicit `:port` wins).
    pub port: u16,
    /// `User` (the local user by default; an explicit `user@` wins).
    pub user: String,
    /// `IdentityFile`s, `~` and `%` tokens expanded. Explicitly configured files are kept
    /// even if missing; OpenSSH's defaults (`~/.ssh/id_*`) only when they exist.
    pub identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly`.
    pub identities_only: bool,
    /// `ProxyJump` hops, in order; empty for a direct connection.
    pub proxy_jump: Vec<JumpHost>,
    /// `UserKnownHostsFile` entries, expanded.
    pub user_known_hosts_files: Vec<PathBuf>,
    /// `StrictHostKeyChecking`: `yes`, `no` (also for `off`), `ask` (OpenSSH's default) or
    /// `accept-new`. (`ssh -G` itself prints `yes` as `true` and `no` as `false`.)
    pub strict_host_key_checking: Option<String>,
    /// `ConnectTimeout`; `None` when unset.
    pub connect_timeout: Option<Duration>,
    /// `ServerAliveInterval`; `None` when unset or 0.
    pub server_alive_interval: Option<Duration>,
    /// `ServerAliveCountMax`.
    pub server_alive_count_max: Option<u32>,
    /// `ForwardAgent` (true also when it names a socket).
    pub forward_agent: bool,
    /// `Compression`.
    pub compression: bool,
    /// `ProxyCommand`, with its `%` tokens unexpanded; `None` when unset or `none`.
    pub proxy_command: Option<String>,
    /// `HostKeyAlias`: the name looked up in known_hosts instead of the host name.
    pub host_key_alias: Option<String>,
    /// `IdentityAgent`: `none`, `SSH_AUTH_SOCK`, `$VARIABLE` or an expanded socket path.
    pub identity_agent: Option<String>,
    /// True when a `Host` block with a pattern other than a lone `*` matched the alias. An
    /// unknown alias is not an error for OpenSSH (it is taken as a host name); this lets a
    /// caller add "no such Host alias in ~/.ssh/config" when the name then fails to resolve.
    /// `Match` blocks are not counted.
    pub from_config: bool,
    /// The configuration file given to the resolver (`None`: the default files).
    pub config_file: Option<PathBuf>,
    /// Which resolver answered.
    pub resolved_by: ResolvedBy,
}

/// A concrete `Host` entry of a configuration (no `*`, `?` or `!`), for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostAlias {
    /// The alias, as written after `Host`.
    pub alias: String,
    /// Where it connects. With `ssh` installed every field comes from `ssh -G` and is
    /// exact (defaults included); without it, from the alias's `Host` blocks only.
    pub host_name: Option<String>,
    /// The remote user.
    pub user: Option<String>,
    /// The port.
    pub port: Option<u16>,
    /// The `ProxyJump` value as written (`None` for a direct connection).
    pub proxy_jump: Option<String>,
    /// The file holding the first `Host` line naming it.
    pub file: PathBuf,
    /// That line's number (1-based).
    pub line: usize,
}

/// How to evaluate a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ConfigResolver {
    /// `ssh -G` with the `ssh` found on `PATH`; the built-in parser if it is not installed.
    #[default]
    Auto,
    /// `ssh -G` with this program; an error if it cannot be run.
    OpenSsh(PathBuf),
    /// The built-in parser only (no process is started).
    Parser,
}

/// Resolves `host` (an alias or `[user@]host[:port]`) through `config_file` (`None`: the
/// files `ssh` reads by default) with [`ConfigResolver::Auto`].
///
/// # Errors
/// [`Error::Config`] when the configuration is invalid (with `ssh`'s own message), uses what
/// the fallback parser cannot evaluate, or `host` is malformed.
pub async fn resolve_host(host: &str, config_file: Option<&Path>) -> Result<ResolvedHost> {
    ConfigResolver::Auto.resolve(host, config_file).await
}

/// Lists the concrete `Host` aliases of `config_file` (`None`: the default files), following
/// `Include`, in file order without duplicates, with [`ConfigResolver::Auto`].
pub async fn list_host_aliases(config_file: Option<&Path>) -> Result<Vec<HostAlias>> {
    ConfigResolver::Auto.list_aliases(config_file).await
}

impl ConfigResolver {
    fn program(&self) -> Option<PathBuf> {
        match self {
            ConfigResolver::Auto => Some(PathBuf::from("ssh")),
            ConfigResolver::OpenSsh(p) => Some(p.clone()),
            ConfigResolver::Parser => None,
        }
    }

    fn not_installed(&self, program: PathBuf) -> Result<()> {
        match self {
            ConfigResolver::OpenSsh(_) => Err(Error::SshProgram {
                program,
                detail: "no such program".into(),
                source: None,
            }),
            _ => Ok(()),
        }
    }

    /// Resolves `host` (an alias or `[user@]host[:port]`; explicit user and port win over
    /// the configuration). See [`resolve_host`].
    pub async fn resolve(&self, host: &str, config_file: Option<&Path>) -> Result<ResolvedHost> {
        let target = split_target(host)?;
        let (name, user, port) = (target.host.as_str(), target.user.as_deref(), target.port);
        let local = Local::current();
        if let Some(program) = self.program() {
            match run_ssh_g(&program, name, user, port, config_file).await? {
                SshG::Resolved(dump) => {
                    let from_config = match parse::load(config_file, &local) {
                        Ok(cfg) => names_host(&cfg, name),
                        // The parser could not read what ssh could: guess from HostName.
                        Err(_) => dump.get("hostname").is_some_and(|h| h != name),
                    };
                    let by = ResolvedBy::OpenSsh;
                    return to_resolved(&dump, name, from_config, config_file, by, &local);
                }
                SshG::NotInstalled => self.not_installed(program)?,
            }
        }
        let cfg = parse::load(config_file, &local)?;
        let request = fallback::Request {
            host: name,
            user,
            port,
        };
        let dump = fallback::evaluate(&cfg, &request, &local)?;
        let from_config = names_host(&cfg, name);
        to_resolved(
            &dump,
            name,
            from_config,
            config_file,
            ResolvedBy::Parser,
            &local,
        )
    }

    /// Lists the concrete `Host` aliases. See [`list_host_aliases`].
    pub async fn list_aliases(&self, config_file: Option<&Path>) -> Result<Vec<HostAlias>> {
        let local = Local::current();
        let cfg = parse::load(config_file, &local)?;
        let mut aliases: Vec<HostAlias> = Vec::new();
        for line in &cfg.hosts {
            for pattern in &line.patterns {
                if is_concrete(pattern) && !aliases.iter().any(|a| &a.alias == pattern) {
                    aliases.push(HostAlias {
                        alias: pattern.clone(),
                        host_name: None,
                        user: None,
                        port: None,
                        proxy_jump: None,
                        file: line.at.file.clone(),
                        line: line.at.line,
                    });
                }
            }
        }
        if let (Some(program), Some(first)) = (self.program(), aliases.first()) {
            // Probe with one alias: if ssh is missing, don't try fifty times.
            match run_ssh_g(&program, &first.alias, None, None, config_file).await? {
                SshG::NotInstalled => self.not_installed(program)?,
                SshG::Resolved(first_dump) => {
                    // Owned inputs: a closure borrowing them makes the future `Send` only
                    // for one lifetime, which callers that spawn it cannot use.
                    let names: Vec<String> = aliases[1..].iter().map(|a| a.alias.clone()).collect();
                    let file = config_file.map(Path::to_path_buf);
                    let rest: Vec<Result<SshG>> =
                        stream::iter(names)
                            .map(|alias| {
                                let (program, file) = (program.clone(), file.clone());
                                async move {
                                    run_ssh_g(&program, &alias, None, None, file.as_deref()).await
                                }
                            })
                            .buffered(LIST_CONCURRENCY)
                            .collect()
                            .await;
                    let mut dumps = vec![first_dump];
                    for r in rest {
                        match r? {
                            SshG::Resolved(d) => dumps.push(d),
                            SshG::NotInstalled => self.not_installed(program.clone())?,
                        }
                    }
                    if dumps.len() == aliases.len() {
                        for (alias, dump) in aliases.iter_mut().zip(&dumps) {
                            fill_from_dump(alias, dump);
                        }
                        return Ok(aliases);
                    }
                }
            }
        }
        for alias in &mut aliases {
            let details = fallback::block_details(&cfg, &alias.alias);
            alias.host_name = details.get("hostname").cloned();
            alias.user = details.get("user").cloned();
            alias.port = details.get("port").and_then(|p| p.parse().ok());
            alias.proxy_jump = details.get("proxyjump").filter(|v| *v != "none").cloned();
        }
        Ok(aliases)
    }
}

fn fill_from_dump(alias: &mut HostAlias, dump: &Dump) {
    alias.host_name = dump.get("hostname").map(str::to_string);
    alias.user = dump.get("user").map(str::to_string);
    alias.port = dump.get("port").and_then(|p| p.parse().ok());
    alias.proxy_jump = dump
        .get("proxyjump")
        .filter(|v| *v != "none")
        .map(str::to_string);
}

/// True when a `Host` line selects `host` through a pattern other than a lone `*`.
fn names_host(cfg: &ParsedConfig, host: &str) -> bool {
    cfg.hosts
        .iter()
        .any(|h| host_patterns_match(&h.patterns, host).is_some_and(|p| p != "*"))
}

/// `[user@]host[:port]`, checked so it cannot be taken for an `ssh` option.
fn split_target(spec: &str) -> Result<JumpHost> {
    let bad = |why: &str| Error::Config {
        detail: format!("{spec:?} is not a host alias or [user@]host[:port]: {why}"),
    };
    let target = JumpHost::parse(spec).ok_or_else(|| bad("cannot parse it"))?;
    if target.host.starts_with('-') {
        return Err(bad("a host cannot start with '-'"));
    }
    let invalid = |s: &str| s.chars().any(|c| c.is_whitespace() || c.is_control());
    if invalid(&target.host) || target.user.as_deref().is_some_and(invalid) {
        return Err(bad("it contains spaces or control characters"));
    }
    Ok(target)
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
