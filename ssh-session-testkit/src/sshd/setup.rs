//! Writing, validating and launching the sshd configuration.

use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{SshdOptions, SFTP_SERVER, SSHD};
use crate::keys::KeySpec;
use crate::spawner::{kill_tree, spawn_tied};

/// How long sshd may take to start listening before we give up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A key for `ssh-keygen` named `name` in `dir`.
pub(super) fn spec<'a>(
    dir: &Path,
    name: &str,
    type_args: &'a [&'a str],
    pass: &'a str,
) -> KeySpec<'a> {
    KeySpec {
        path: dir.join(name),
        type_args,
        passphrase: pass,
    }
}

/// The sshd_config text; see [`SshdOptions::extra_config`] for overrides.
pub(super) fn config_text(dir: &Path, home: &Path, port: u16, opts: &SshdOptions) -> String {
    let p = |name: &str| format!("\"{}\"", dir.join(name).display());
    let sftp = if Path::new(SFTP_SERVER).exists() {
        SFTP_SERVER
    } else {
        "internal-sftp"
    };
    let defaults = [
        format!("Port {port}"),
        "ListenAddress 127.0.0.1".to_string(),
        format!("HostKey {}", p("host_key")),
        format!("AuthorizedKeysFile {}", p("authorized_keys")),
        format!("PidFile {}", p("sshd.pid")),
        "PasswordAuthentication no".into(),
        "KbdInteractiveAuthentication no".into(),
        "PubkeyAuthentication yes".into(),
        "PermitRootLogin prohibit-password".into(),
        "StrictModes no".into(),
        "UsePAM no".into(),
        "AllowTcpForwarding yes".into(),
        "PrintMotd no".into(),
        "PrintLastLog no".into(),
        format!("Subsystem sftp {sftp}"),
        format!("MaxSessions {}", opts.max_sessions),
        "MaxStartups 200".into(),
        "MaxAuthTries 20".into(),
        format!("SetEnv \"HOME={}\"", home.display()),
    ];
    let (extra, extra_env) = split_setenv(&opts.extra_config);
    let overridden = top_level_keywords(&extra);
    let mut text = String::from("# Written by ssh-session-testkit.\n");
    for line in defaults {
        let keyword = line.split_whitespace().next().unwrap_or("").to_lowercase();
        // The kit must know where sshd listens. sshd keeps only the first `SetEnv` line,
        // so the caller's variables join the kit's HOME on that one line.
        if keyword == "setenv" {
            text += &line;
            for value in &extra_env {
                text.push(' ');
                text += value;
            }
            text.push('\n');
            continue;
        }
        let pinned = matches!(keyword.as_str(), "port" | "listenaddress");
        if pinned || !overridden.contains(&keyword) {
            text += &line;
            text.push('\n');
        }
    }
    text += &extra;
    text.push('\n');
    text
}

/// `config` without its top-level `SetEnv` lines, and those lines' values.
fn split_setenv(config: &str) -> (String, Vec<String>) {
    let mut rest = String::new();
    let mut env = Vec::new();
    let mut in_match = false;
    for line in config.lines() {
        let trimmed = line.trim_start();
        let keyword = trimmed
            .split([' ', '\t', '='])
            .next()
            .unwrap_or("")
            .to_lowercase();
        in_match |= keyword == "match";
        if keyword == "setenv" && !in_match {
            let value = trimmed[keyword.len()..].trim_start_matches([' ', '\t', '=']);
            env.push(value.trim_end().to_string());
        } else {
            rest += line;
            rest.push('\n');
        }
    }
    (rest, env)
}

/// Lower-cased keywords of `config` lines before its first `Match`.
fn top_level_keywords(config: &str) -> Vec<String> {
    config
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split([' ', '\t', '='])
                .next()
                .unwrap_or("")
                .to_lowercase()
        })
        .take_while(|k| k != "match")
        .collect()
}

/// `sshd -t`: a bad config fails here with sshd's own explanation rather
/// than as a timeout later.
pub(super) fn validate(config: &Path) -> io::Result<()> {
    let out = Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(config)
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "sshd -t -f {} rejected the config ({}): {}{}",
            config.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ),
    ))
}

/// Starts sshd and waits until it listens. A port taken by someone else is
/// reported as `AddrInUse` so the caller can retry on another port.
pub(super) fn launch(dir: &Path, config: &Path, port: u16) -> io::Result<Child> {
    let log_path = dir.join("sshd.log");
    let mut log = std::fs::File::create(&log_path)?;
    writeln!(log, "# sshd -D -e -f {} (port {port})", config.display())?;
    let mut cmd = Command::new(SSHD);
    cmd.arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = spawn_tied(cmd)?;
    let listening = format!("Server listening on 127.0.0.1 port {port}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(status) = child.try_wait()? {
            let kind = if log.contains("Address already in use") {
                io::ErrorKind::AddrInUse
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(
                kind,
                format!("sshd exited during start-up ({status}); log:\n{log}"),
            ));
        }
        // The log line proves that *our* sshd bound the port; the connect
        // proves that it accepts.
        if log.contains(&listening)
            && TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), READY_TIMEOUT)
                .is_ok()
        {
            return Ok(child);
        }
        if Instant::now() > deadline {
            kill_tree(child.id());
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("sshd did not accept connections on port {port} within {READY_TIMEOUT:?}; log:\n{log}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setenv_lines_join_the_kits_single_setenv_line() {
        let opts = SshdOptions {
            extra_config: "SetEnv A=1\nMaxStartups 5\nSetEnv=B=2 C=3\nMatch User x\n  SetEnv D=4\n"
                .into(),
            ..Default::default()
        };
        let text = config_text(Path::new("/d"), Path::new("/h"), 2222, &opts);
        let setenv: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().to_lowercase().starts_with("setenv"))
            .collect();
        // sshd honours only the first top-level SetEnv; the Match block's own stays.
        assert_eq!(setenv, ["SetEnv \"HOME=/h\" A=1 B=2 C=3", "  SetEnv D=4"]);
        assert!(text.contains("MaxStartups 5") && !text.contains("MaxStartups 200"));
    }
}
