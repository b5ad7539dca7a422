//! Where the daemon's socket, lock and log live, and keeping that directory private.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cli::Global;
use crate::error::CliError;

/// The daemon's files. The lock and log sit next to the socket and share its stem, so
/// several daemons (one per `--socket`) can share a directory.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The directory holding them (mode 0700, owned by us).
    pub dir: PathBuf,
    /// The Unix socket clients connect to (mode 0600).
    pub socket: PathBuf,
    /// Held (flock) by the running daemon: whoever holds it owns the socket path.
    pub lock: PathBuf,
    /// The daemon's stdout/stderr when started in the background.
    pub log: PathBuf,
}

impl Paths {
    /// The paths `global` asks for: `--socket`, else `--runtime-dir`/daemon.sock, else
    /// `$XDG_RUNTIME_DIR/ssh-session/daemon.sock`, else `/tmp/ssh-session-UID/daemon.sock`.
    pub fn resolve(global: &Global) -> Result<Paths, CliError> {
        let socket = match (&global.socket, &global.runtime_dir) {
            (Some(socket), _) => absolute(socket)?,
            (None, Some(dir)) => absolute(dir)?.join("daemon.sock"),
            (None, None) => default_dir().join("daemon.sock"),
        };
        let dir = socket
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        // sun_path holds 108 bytes including the NUL.
        if socket.as_os_str().len() > 107 {
            return Err(CliError::RuntimeDir {
                path: dir,
                detail: format!(
                    "the socket path {} is longer than the 107 bytes a Unix socket allows; \
                     use a shorter --socket or --runtime-dir",
                    socket.display()
                ),
            });
        }
        Ok(Paths {
            lock: socket.with_extension("lock"),
            log: socket.with_extension("log"),
            dir,
            socket,
        })
    }

    /// Creates the directory (0700) if needed and checks that nobody else can use it: it
    /// must be ours, and group/other bits are removed. A directory owned by another user
    /// is refused: whoever owns it could replace our socket.
    pub fn ensure_private_dir(&self) -> Result<(), CliError> {
        let err = |detail: String| CliError::RuntimeDir {
            path: self.dir.clone(),
            detail,
        };
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
        {
            Ok(()) => {}
            Err(e) => return Err(err(format!("cannot create it: {e}"))),
        }
        let meta = std::fs::metadata(&self.dir).map_err(|e| err(format!("cannot stat it: {e}")))?;
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            return Err(err(format!(
                "it is owned by uid {}, not by you (uid {uid}); choose another with --runtime-dir",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| err(format!("cannot make it private (chmod 700): {e}")))?;
        }
        Ok(())
    }

    /// The last `lines` lines of the daemon log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        if tail.is_empty() {
            "(empty)".into()
        } else {
            tail
        }
    }
}

fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("ssh-session"),
        // SAFETY: geteuid has no preconditions.
        None => PathBuf::from(format!("/tmp/ssh-session-{}", unsafe { libc::geteuid() })),
    }
}

/// `path` made absolute against the current directory (the daemon runs elsewhere).
pub fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path).map_err(|e| CliError::io(format!("resolving {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn global(args: &[&str]) -> Global {
        let mut all = vec!["ssh-session"];
        all.extend_from_slice(args);
        all.push("ls");
        crate::cli::Cli::parse_from(all).global
    }

    #[test]
    fn socket_option_decides_every_path() {
        let p = Paths::resolve(&global(&["--socket", "/run/x/s.sock"])).unwrap();
        assert_eq!(p.socket, PathBuf::from("/run/x/s.sock"));
        assert_eq!(p.lock, PathBuf::from("/run/x/s.lock"));
        assert_eq!(p.log, PathBuf::from("/run/x/s.log"));
        assert_eq!(p.dir, PathBuf::from("/run/x"));
        let p = Paths::resolve(&global(&["--runtime-dir", "/run/y"])).unwrap();
        assert_eq!(p.socket, PathBuf::from("/run/y/daemon.sock"));
    }

    #[test]
    fn overlong_socket_paths_are_refused() {
        let long = format!("/tmp/{}/s.sock", "d".repeat(120));
        assert!(Paths::resolve(&global(&["--socket", &long])).is_err());
    }

    #[test]
    fn private_dir_is_created_0700_and_fixed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rt");
        let p = Paths::resolve(&global(&["--runtime-dir", dir.to_str().unwrap()])).unwrap();
        p.ensure_private_dir().unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.ensure_private_dir().unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }
}
