//! `ssh -G`: running it, reading its `key value` lines, and turning them into a
//! [`ResolvedHost`]. The fallback parser produces the same [`Dump`] shape, so both resolvers
//! share [`to_resolved`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::expand::{are_default_identities, expand_path, expand_tilde, Local, Tokens};
use super::{ResolvedBy, ResolvedHost};
use crate::error::{Error, Result};
use crate::options::JumpHost;

/// How long `ssh -G` may take. It does not connect, but a `Match exec` command can hang.
const SSH_G_TIMEOUT: Duration = Duration::from_secs(10);

/// The `key value` lines printed by `ssh -G`, in order (keys lower-case, repeated keys kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dump(Vec<(String, String)>);

impl Dump {
    /// Parses `ssh -G` output. Lines without a value (none in practice) are kept with "".
    pub(super) fn parse(text: &str) -> Dump {
        Dump(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| match l.split_once(' ') {
                    Some((k, v)) => (k.to_ascii_lowercase(), v.trim().to_string()),
                    None => (l.trim().to_ascii_lowercase(), String::new()),
                })
                .collect(),
        )
    }

    /// Appends a line.
    pub(super) fn push(&mut self, key: &str, value: &str) {
        self.0.push((key.to_string(), value.to_string()));
    }

    /// The first value of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated key, in order.
    pub(super) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The outcome of running `ssh -G`.
pub(crate) enum SshG {
    /// It ran and printed the resolved configuration.
    Resolved(Dump),
    /// The program does not exist.
    NotInstalled,
}

/// Runs `ssh -G [-F file] [-p port] [-l user] -- host`.
pub(crate) async fn run_ssh_g(
    program: &Path,
    host: &str,
    user: Option<&str>,
    port: Option<u16>,
    config_file: Option<&Path>,
) -> Result<SshG> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("-G");
    if let Some(file) = config_file {
        cmd.arg("-F").arg(file);
    }
    if let Some(port) = port {
        cmd.arg("-p").arg(port.to_string());
    }
    if let Some(user) = user {
        cmd.arg("-l").arg(user);
    }
    cmd.arg("--").arg(host);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SshG::NotInstalled),
        Err(e) => {
            return Err(Error::SshProgram {
                program: program.to_path_buf(),
                detail: e.to_string(),
                source: Some(Box::new(e)),
            })
        }
    };
    let shown = shown_command(host, user, port, config_file);
    let output = tokio::time::timeout(SSH_G_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| Error::Config {
            detail: format!(
                "`{shown}` did not finish within {SSH_G_TIMEOUT:?}; a `Match exec` command in the config may be hanging"
            ),
        })?
        .map_err(|e| Error::SshProgram {
            program: program.to_path_buf(),
            detail: e.to_string(),
            source: Some(Box::new(e)),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // ssh -G also prints this harmless notice when stdin is not a terminal.
        let stderr: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("Pseudo-terminal will not be allocated"))
            .collect();
        return Err(Error::Config {
            detail: format!(
                "`{shown}` rejected the configuration ({}): {}; fix the file and check with `{shown}`",
                output.status,
                stderr.join(" / ").trim()
            ),
        });
    }
    Ok(SshG::Resolved(Dump::parse(&String::from_utf8_lossy(
        &output.stdout,
    ))))
}

fn shown_command(
    host: &str,
    user: Option<&str>,
    port: Option<u16>,
    config_file: Option<&Path>,
) -> String {
    let mut s = String::from("ssh -G");
    if let Some(f) = config_file {
        s += &format!(" -F {}", f.display());
    }
    if let Some(p) = port {
        s += &format!(" -p {p}");
    }
    if let Some(u) = user {
        s += &format!(" -l {u}");
    }
    s + " " + host
}

fn bool_value(dump: &Dump, key: &str) -> bool {
    matches!(dump.get(key), Some("yes" | "true"))
}

fn seconds(dump: &Dump, key: &str) -> Result<Option<Duration>> {
    match dump.get(key) {
        None | Some("none") | Some("0") => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(|s| Some(Duration::from_secs(s)))
            .map_err(|_| Error::Config {
                detail: format!("{key} {v:?} is not a number of seconds"),
            }),
    }
}

/// Converts a dump into a [`ResolvedHost`]: expands what `ssh -G` leaves unexpanded
/// (`IdentityFile` keeps `~` and `%` tokens), and parses numbers and lists.
pub(crate) fn to_resolved(
    dump: &Dump,
    alias: &str,
    from_config: bool,
    config_file: Option<&Path>,
    resolved_by: ResolvedBy,
    local: &Local,
) -> Result<ResolvedHost> {
    let host_name = dump.get("hostname").unwrap_or(alias).to_string();
    let port = match dump.get("port") {
        None => 22,
        Some(p) => p.parse().map_err(|_| Error::Config {
            detail: format!("port {p:?} is not a port number"),
        })?,
    };
    let user = dump.get("user").unwrap_or(&local.user).to_string();
    let proxy_jump_raw = dump.get("proxyjump").filter(|v| *v != "none");
    let proxy_jump = match proxy_jump_raw {
        None => Vec::new(),
        Some(v) => JumpHost::parse_chain(v).ok_or_else(|| Error::Config {
            detail: format!(
                "ProxyJump {v:?} for {alias} is not a comma-separated list of [user@]host[:port]"
            ),
        })?,
    };
    let host_key_alias = dump.get("hostkeyalias").map(str::to_string);
    let tokens = Tokens {
        host_name: &host_name,
        original_host: alias,
        port,
        remote_user: &user,
        proxy_jump: proxy_jump_raw.unwrap_or(""),
        host_key_alias: host_key_alias.as_deref(),
    };
    // `ssh -G` lists OpenSSH's default key files (~/.ssh/id_rsa, id_ecdsa, ...) whenever no
    // IdentityFile applies, whether or not they exist; ssh itself silently skips the missing
    // ones. So: defaults are kept only if the file exists (offering a missing default would
    // be an error for the caller), while explicitly configured files are all kept, existing
    // or not, so a mistyped IdentityFile fails loudly with the path instead of falling back
    // to some other key.
    let raw: Vec<String> = dump.all("identityfile").map(str::to_string).collect();
    let defaults = are_default_identities(&raw);
    let mut identity_files = Vec::new();
    for file in &raw {
        let path = expand_path("IdentityFile", file, &tokens, local)?;
        if (!defaults || path.exists()) && !identity_files.contains(&path) {
            identity_files.push(path);
        }
    }
    let mut user_known_hosts_files = Vec::new();
    for file in dump
        .all("userknownhostsfile")
        .flat_map(str::split_whitespace)
    {
        user_known_hosts_files.push(expand_tilde(file, local)?);
    }
    let identity_agent = match dump.get("identityagent") {
        None => None,
        Some(v @ ("none" | "SSH_AUTH_SOCK")) => Some(v.to_string()),
        Some(v) if v.starts_with('$') => Some(v.to_string()),
        Some(v) => Some(path_string(expand_tilde(v, local)?)),
    };
    let server_alive_count_max = match dump.get("serveralivecountmax") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| Error::Config {
            detail: format!("serveralivecountmax {v:?} is not a number"),
        })?),
    };
    Ok(ResolvedHost {
        alias: alias.to_string(),
        host_name,
        port,
        user,
        identity_files,
        identities_only: bool_value(dump, "identitiesonly"),
        proxy_jump,
        user_known_hosts_files,
        strict_host_key_checking: dump.get("stricthostkeychecking").map(|v| {
            // `ssh -G` prints `yes` as `true` and `no`/`off` as `false`: report the keywords.
            match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => "yes".to_string(),
                "false" | "no" | "off" => "no".to_string(),
                other => other.to_string(),
            }
        }),
        connect_timeout: seconds(dump, "connecttimeout")?,
        server_alive_interval: seconds(dump, "serveraliveinterval")?,
        server_alive_count_max,
        // ForwardAgent may also name a socket or variable: that still means forwarding.
        forward_agent: !matches!(dump.get("forwardagent"), None | Some("no" | "false")),
        compression: bool_value(dump, "compression"),
        proxy_command: dump
            .get("proxycommand")
            .filter(|v| *v != "none")
            .map(str::to_string),
        host_key_alias,
        identity_agent,
        from_config,
        config_file: config_file.map(Path::to_path_buf),
        resolved_by,
    })
}

fn path_string(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "host web\nuser deploy\nhostname 10.0.0.5\nport 2222\n\
        compression no\nidentitiesonly yes\nstricthostkeychecking true\n\
        serveralivecountmax 3\nserveraliveinterval 30\nidentityfile ~/.ssh/k_%h\n\
        identityfile /keys/second\nuserknownhostsfile /kh/one ~/kh_two\n\
        forwardagent no\nconnecttimeout none\nproxyjump a@b:22,c\n";

    fn local() -> Local {
        Local {
            home: "/home/me".into(),
            user: "me".into(),
            uid: 1000,
            hostname: "laptop".into(),
        }
    }

    #[test]
    fn ssh_g_output_converts() {
        let dump = Dump::parse(SAMPLE);
        assert_eq!(dump.all("identityfile").count(), 2);
        let r = to_resolved(&dump, "web", true, None, ResolvedBy::OpenSsh, &local()).unwrap();
        assert_eq!(
            (r.host_name.as_str(), r.port, r.user.as_str()),
            ("10.0.0.5", 2222, "deploy")
        );
        assert_eq!(
            r.identity_files,
            [
                PathBuf::from("/home/me/.ssh/k_10.0.0.5"),
                "/keys/second".into()
            ],
            "explicit files are expanded and kept even though they do not exist"
        );
        assert!(r.identities_only);
        assert_eq!(
            r.user_known_hosts_files,
            [PathBuf::from("/kh/one"), "/home/me/kh_two".into()]
        );
        assert_eq!(r.strict_host_key_checking.as_deref(), Some("yes"));
        assert_eq!(r.connect_timeout, None);
        assert_eq!(r.server_alive_interval, Some(Duration::from_secs(30)));
        assert_eq!(r.server_alive_count_max, Some(3));
        assert_eq!(r.proxy_jump.len(), 2);
        assert_eq!(r.proxy_jump[0].to_string(), "a@b:22");
        assert!(r.proxy_command.is_none() && !r.forward_agent && !r.compression);
    }

    #[test]
    fn missing_default_identities_are_dropped() {
        let dump = Dump::parse(
            "hostname h\nidentityfile ~/.ssh/id_rsa\nidentityfile ~/.ssh/id_ed25519\n\
             connecttimeout 7\nproxycommand none\nforwardagent /run/agent.sock\n",
        );
        let r = to_resolved(&dump, "h", false, None, ResolvedBy::OpenSsh, &local()).unwrap();
        assert!(r.identity_files.is_empty(), "{:?}", r.identity_files);
        assert_eq!(r.connect_timeout, Some(Duration::from_secs(7)));
        assert!(r.proxy_command.is_none());
        assert!(r.forward_agent);
        assert_eq!(r.port, 22);
    }

    #[test]
    fn bad_values_are_errors() {
        let dump = Dump::parse("hostname h\nproxyjump a:notaport\n");
        let e = to_resolved(&dump, "h", false, None, ResolvedBy::OpenSsh, &local()).unwrap_err();
        assert!(e.to_string().contains("ProxyJump"), "{e}");
    }
}
