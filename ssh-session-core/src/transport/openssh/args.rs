//! The `ssh` command lines this backend runs, and the config file for jump hosts.
//!
//! Two kinds of `ssh` process exist: the one ControlMaster (`ssh -M -N`), and a multiplexed
//! client per tunnel (`ssh -S CTL -W host:port`). Every other channel is opened by speaking
//! the multiplexing protocol to the master's socket directly.

use std::ffi::OsString;
use std::fs::Permissions;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Once;

use tempfile::TempDir;

use crate::options::{ConnectOptions, HostKeyPolicy};

/// Unix socket paths are limited to 108 bytes on Linux and 104 on macOS/BSD.
const MAX_SOCKET_PATH: usize = 100;

/// The start of every control directory's name; the owning process's pid follows.
const DIR_PREFIX: &str = "ssh-ss-";

/// Creates the private directory for the control socket, as short as possible: under `/tmp`
/// when it is writable (`$TMPDIR` can be long, e.g. on macOS), else under `$TMPDIR`.
///
/// Mode 0700 from the start (created so, not changed after): the socket inside gives
/// whoever can reach it the use of an authenticated connection, without a password.
///
/// Named `ssh-ss-PID-RANDOM`: the directory is removed when its connection closes, but a
/// process killed with SIGKILL leaves it behind. The pid says whose it was, so the first
/// connection of each process sweeps away the leftovers of dead ones (see
/// [`remove_stale`]) and they cannot pile up.
pub(super) fn control_dir() -> io::Result<TempDir> {
    let prefix = format!("{DIR_PREFIX}{}-", std::process::id());
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix(&prefix).permissions(Permissions::from_mode(0o700));
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
    // Once per process: leftovers come from processes that died before this one started
    // or while it runs, and the next process to start sweeps those; once keeps a busy
    // server from listing /tmp on every connect.
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| {
        if let (Some(parent), Ok(meta)) = (dir.path().parent(), std::fs::metadata(dir.path())) {
            // The directory just made is ours: its owner is who we are.
            remove_stale(parent, meta.uid());
        }
    });
    Ok(dir)
}

/// The pid in a control directory's name (`ssh-ss-PID-RANDOM`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let (pid, random) = name.strip_prefix(DIR_PREFIX)?.split_once('-')?;
    if random.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` exists. `kill(pid, 0)` sends nothing; it fails with ESRCH only
/// when there is no such process (EPERM: it exists but is someone else's). Unlike
/// `/proc/PID` it also works where there is no /proc (macOS, BSD).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // pid 0 and negative pids name process groups, not a process.
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes, in `parent`, the control directories of processes that are gone.
///
/// Careful on purpose, since `/tmp` is shared: only directories (not symbolic links)
/// named by [`control_dir`]'s scheme, owned by `uid`, whose process no longer exists and
/// whose socket no longer answers (a process in another pid namespace sharing /tmp would
/// look dead). Inside, only what we put there and owned by `uid`: sockets and the jump
/// host `config` file; the directory itself goes only if that leaves it empty.
fn remove_stale(parent: &Path, uid: u32) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(owner_pid) else {
            continue;
        };
        if pid == std::process::id() || process_exists(pid) {
            continue;
        }
        let dir = entry.path();
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() && meta.uid() == uid => remove_leftovers(&dir, uid),
            _ => {}
        }
    }
}

fn remove_leftovers(dir: &Path, uid: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut ours = Vec::new();
    for entry in entries.flatten() {
        // Not following links: a link is never ours.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let kind = meta.file_type();
        let path = entry.path();
        if kind.is_socket() && UnixStream::connect(&path).is_ok() {
            return; // a master still serves it
        }
        if meta.uid() == uid && (kind.is_socket() || (kind.is_file() && path.ends_with("config"))) {
            ours.push(path);
        }
    }
    for path in ours {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir(dir);
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

#[cfg(test)]
mod control_dir_tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn the_control_dir_is_private_and_names_its_process() {
        let dir = control_dir().unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(owner_pid(&name), Some(std::process::id()), "{name}");
    }

    /// A directory as a killed process leaves it: the master's socket, maybe the jump
    /// host config.
    fn leftover(parent: &Path, name: &str) -> std::path::PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap();
        drop(UnixListener::bind(dir.join("m")).unwrap());
        std::fs::write(dir.join("config"), "BatchMode yes\n").unwrap();
        dir
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed_and_nothing_else() {
        let parent = tempfile::tempdir().unwrap();
        let dead = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        let ours = std::process::id();
        let stale = leftover(parent.path(), &format!("ssh-ss-{dead}-aaaaaa"));
        let live = leftover(parent.path(), &format!("ssh-ss-{ours}-bbbbbb"));
        // Something we did not put there: the directory stays, and so does it.
        let foreign = leftover(parent.path(), &format!("ssh-ss-{dead}-cccccc"));
        std::fs::write(foreign.join("notes"), "mine").unwrap();
        // Not our naming scheme (older versions, other programs): untouched.
        let old = leftover(parent.path(), "ssh-ss-dddddd");
        let other = leftover(parent.path(), &format!("other-{dead}-eeeeee"));
        // A master that still answers on its socket is alive, whatever its pid says
        // (another pid namespace sharing /tmp).
        let answering = parent.path().join(format!("ssh-ss-{dead}-ffffff"));
        std::fs::create_dir(&answering).unwrap();
        let _listener = UnixListener::bind(answering.join("m")).unwrap();

        let uid = std::fs::metadata(parent.path()).unwrap().uid();
        remove_stale(parent.path(), uid);

        assert!(!stale.exists(), "a dead process's directory is removed");
        assert!(
            live.join("m").exists(),
            "a live process's directory is kept"
        );
        assert!(foreign.join("notes").exists() && !foreign.join("m").exists());
        assert!(old.join("m").exists() && other.join("m").exists());
        assert!(answering.join("m").exists());
        // Another user's directory is never touched.
        let theirs = leftover(parent.path(), &format!("ssh-ss-{dead}-gggggg"));
        remove_stale(parent.path(), uid + 1);
        assert!(theirs.join("m").exists());
    }
}
