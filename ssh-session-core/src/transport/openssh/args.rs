//! The `ssh` command lines this backend runs, and the config file for jump hosts.
//!
//! Two kinds of `ssh` process exist: the one ControlMaster (`ssh -M -N`), and a multiplexed
//! client per tunnel (`ssh -S CTL -W host:port`). Every other channel is opened by speaking
//! the multiplexing protocol to the master's socket directly.

use std::ffi::OsString;
use std::io;
use std::path::Path;

use tempfile::TempDir;

use crate::options::{ConnectOptions, HostKeyPolicy};

/// Unix socket paths are limited to 108 bytes on Linux and 104 on macOS/BSD.
const MAX_SOCKET_PATH: usize = 100;

/// Creates the private directory for the control socket, as short as possible: under `/tmp`
/// when it is writable (`$TMPDIR` can be long, e.g. on macOS), else under `$TMPDIR`.
pub(super) fn control_dir() -> io::Result<TempDir> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("ssh-ss-");
        b
    };
    let dir = builder.tempdir_in("/tmp").or_else(|_| builder.tempdir())?;
    let socket = dir.path().join("m");
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(io::Error::other(format!(
            "the control socket path {} is longer than {MAX_SOCKET_PATH} bytes (a unix socket \
             limit); make /tmp writable or set TMPDIR to a short directory",
            socket.display()
        )));
    }
    Ok(dir)
}

/// A path as an OpenSSH option value: `%` doubled (paths are token-expanded) and double
/// quotes around it when it has spaces (values are split on whitespace otherwise).
fn quoted(path: &Path) -> String {
    let text = path.display().to_string().replace('%', "%%");
    if text.contains(char::is_whitespace) {
        format!("\"{text}\"")
    } else {
        text
    }
}

fn opt(args: &mut Vec<OsString>, value: impl Into<OsString>) {
    args.push("-o".into());
    args.push(value.into());
}

/// Options every invocation shares: batch mode (never prompt), port, user.
fn common(opts: &ConnectOptions, args: &mut Vec<OsString>) {
    opt(args, "BatchMode=yes");
    args.push("-p".into());
    args.push(opts.port.to_string().into());
    args.push("-l".into());
    args.push(opts.user.clone().into());
}

/// The settings from [`ConnectOptions`] about trust and credentials, as `(keyword, value)`:
/// passed as `-o` to the master and, with jump hosts, written to a config file as well.
fn trust_settings(opts: &ConnectOptions) -> Vec<(&'static str, String)> {
    let check = match opts.host_key_policy {
        HostKeyPolicy::Strict => "yes",
        HostKeyPolicy::AcceptNew => "accept-new",
    };
    let mut settings = vec![
        ("BatchMode", "yes".to_string()),
        ("StrictHostKeyChecking", check.to_string()),
        ("UserKnownHostsFile", quoted(&opts.known_hosts)),
        (
            "ConnectTimeout",
            (opts.connect_timeout.as_secs_f64().ceil().max(1.0) as u64).to_string(),
        ),
    ];
    if let Some(interval) = opts.server_alive_interval {
        settings.push(("ServerAliveInterval", interval.as_secs().max(1).to_string()));
        settings.push((
            "ServerAliveCountMax",
            opts.server_alive_count_max.to_string(),
        ));
    }
    if !opts.identities.is_empty() {
        // Only the given keys: an agent full of keys would otherwise exhaust MaxAuthTries.
        settings.push(("IdentitiesOnly", "yes".into()));
        for identity in &opts.identities {
            settings.push(("IdentityFile", quoted(&identity.path)));
        }
    }
    if !opts.use_agent {
        settings.push(("IdentityAgent", "none".into()));
    }
    settings
}

/// The config file for a connection through jump hosts.
///
/// Why: `ssh -J` starts one more `ssh` per hop and passes it `-F` but none of our `-o`
/// options, so a hop would use other keys, another known_hosts file, and might prompt.
/// This file puts our settings first (OpenSSH keeps the first value it sees, so they win
/// over the user's, like `-o` does), then includes the user's configuration so aliases
/// and per-host settings still resolve. Every hop gets the target's credentials and trust
/// settings, as with the russh backend.
pub(super) fn jump_config(opts: &ConnectOptions) -> String {
    let mut text = String::from(
        "# Written by ssh-session for one connection through jump hosts: the connection\n\
         # options first, then the user's OpenSSH configuration.\n",
    );
    for (key, value) in trust_settings(opts) {
        text += &format!("{key} {value}\n");
    }
    match &opts.config_file {
        // `-F /dev/null` is exempt from ssh's permission check on config files, but an
        // `Include` of it is not (it is world-writable): nothing to include anyway.
        Some(file) if file == Path::new("/dev/null") => {}
        Some(file) => text += &format!("Include \"{}\"\n", file.display()),
        None => text += "Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n",
    }
    text
}

/// Whether the user's extra arguments bring their own proxy (`-J`, `ProxyJump`,
/// `ProxyCommand`), which rules out our no-fallback guard (ssh refuses `-J` together
/// with a `ProxyCommand`).
fn extra_has_proxy(opts: &ConnectOptions) -> bool {
    opts.extra_ssh_args.iter().any(|a| {
        let lower = a.to_ascii_lowercase();
        a.starts_with("-J") || lower.contains("proxyjump") || lower.contains("proxycommand")
    })
}

/// The ControlMaster: authenticates once, then serves every channel through `ctl`.
/// `config` replaces `opts.config_file` (see [`jump_config`]).
///
/// The control options come first and the user's extra arguments next, because OpenSSH
/// keeps the first value it sees: extra arguments can override anything derived from
/// [`ConnectOptions`] but cannot break the control socket. The master runs in the
/// foreground (no `-f`) as our child, so its exit is noticed at once.
pub(super) fn master(opts: &ConnectOptions, ctl: &Path, config: Option<&Path>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-M".into(), "-N".into(), "-S".into(), ctl.into()];
    // A user's `ControlPersist yes` would make the master fork away from us.
    opt(&mut args, "ControlPersist=no");
    args.extend(opts.extra_ssh_args.iter().map(OsString::from));
    if let Some(config) = config.or(opts.config_file.as_deref()) {
        args.push("-F".into());
        args.push(config.into());
    }
    common(opts, &mut args);
    for (key, value) in trust_settings(opts) {
        opt(&mut args, format!("{key}={value}"));
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    opt(
        &mut args,
        format!("Compression={}", yes_no(opts.compression)),
    );
    // The master forwards the agent only to sessions that ask for it (our shells do) and
    // only if this is on.
    opt(
        &mut args,
        format!("ForwardAgent={}", yes_no(opts.forward_agent)),
    );
    if !opts.proxy_jump.is_empty() {
        let hops: Vec<String> = opts.proxy_jump.iter().map(|h| h.to_string()).collect();
        args.push("-J".into());
        args.push(hops.join(",").into());
    }
    args.push("--".into());
    args.push(opts.host.clone().into());
    args
}

/// The start of a multiplexed client's command line (`ssh -S CTL ...`); the caller
/// appends `-W host:port`, `--` and the host.
///
/// `ProxyCommand=false` is a guard: if the master is gone, `ssh -S` would otherwise fall
/// back silently to a fresh, unmanaged connection; with it the fallback fails at once.
pub(super) fn client(opts: &ConnectOptions, ctl: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-S".into(), ctl.into()];
    opt(&mut args, "ControlMaster=no");
    if !extra_has_proxy(opts) {
        opt(&mut args, "ProxyCommand=false");
    }
    args.extend(opts.extra_ssh_args.iter().map(OsString::from));
    if let Some(config) = &opts.config_file {
        args.push("-F".into());
        args.push(config.into());
    }
    common(opts, &mut args);
    // Only real errors on stderr.
    opt(&mut args, "LogLevel=ERROR");
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{IdentityFile, JumpHost};

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn master_line_puts_control_first_and_host_last() {
        let mut opts = ConnectOptions::new("alias", "bob")
            .port(2222)
            .identity(IdentityFile::new("/k"))
            .config_file("/dev/null")
            .proxy_jump(vec![
                JumpHost::parse("a@b:1").unwrap(),
                JumpHost::parse("c").unwrap(),
            ]);
        opts.extra_ssh_args = vec!["-o".into(), "Ciphers=aes128-ctr".into()];
        let args = strings(&master(&opts, Path::new("/tmp/x/m"), None));
        assert_eq!(&args[..4], ["-M", "-N", "-S", "/tmp/x/m"]);
        let extra = args.iter().position(|a| a == "Ciphers=aes128-ctr").unwrap();
        let strict = args
            .iter()
            .position(|a| a == "StrictHostKeyChecking=yes")
            .unwrap();
        assert!(extra < strict, "extra arguments must take precedence");
        assert!(args.windows(2).any(|w| w == ["-J", "a@b:1,c"]));
        assert!(args.windows(2).any(|w| w == ["-o", "IdentityFile=/k"]));
        assert!(args.windows(2).any(|w| w == ["-F", "/dev/null"]));
        assert_eq!(&args[args.len() - 2..], ["--", "alias"]);
    }

    #[test]
    fn jump_config_puts_our_settings_before_the_users() {
        let opts = ConnectOptions::new("h", "u")
            .identity(IdentityFile::new("/keys/my key"))
            .known_hosts("/kh/100%");
        let text = jump_config(&opts);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines[0], "BatchMode yes");
        assert!(lines.contains(&"IdentityFile \"/keys/my key\""));
        assert!(lines.contains(&"UserKnownHostsFile /kh/100%%"));
        assert_eq!(lines[lines.len() - 2], "Include ~/.ssh/config");
        let text = jump_config(&opts.clone().config_file("/etc/my config"));
        assert!(text.ends_with("Include \"/etc/my config\"\n"));
        assert!(!jump_config(&opts.config_file("/dev/null")).contains("Include"));
    }

    #[test]
    fn client_line_has_guards() {
        let opts = ConnectOptions::new("h", "u");
        let args = strings(&client(&opts, Path::new("/tmp/x/m")));
        assert!(args.contains(&"ProxyCommand=false".to_string()));
        let mut opts = opts;
        opts.extra_ssh_args = vec!["-Jjump".into()];
        let args = strings(&client(&opts, Path::new("/tmp/x/m")));
        assert!(!args.contains(&"ProxyCommand=false".to_string()));
    }
}
