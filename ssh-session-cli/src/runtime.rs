//! Where the daemon's socket, lock and log live, and keeping that directory private.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cli::Global;
use crate::error::CliError;

/// The daemon's files. The lock and log sit next to the socket and share its stem, so
/// several daemons (one per `--socket`) can share a directory.
#[derive(Clone, Debug)]
pub(crate) struct Paths {
    /// The directory holding them: ours, and writable by nobody else.
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
    pub(crate) fn resolve(global: &Global) -> Result<Paths, CliError> {
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

    /// Creates the directory (0700) if it does not exist, and otherwise checks that only
    /// we can put files in it: it must be ours and not writable by group or others, or
    /// someone else could replace our socket. An existing directory is never chmodded:
    /// it may be `$HOME` or `/tmp` (`--socket ~/x.sock`), whose mode is not ours to change.
    pub(crate) fn ensure_private_dir(&self) -> Result<(), CliError> {
        let err = |detail: String| CliError::RuntimeDir {
            path: self.dir.clone(),
            detail,
        };
        if let Some(parent) = self.dir.parent() {
            // Missing parents are ours to create, private like the directory itself.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| err(format!("cannot create its parent: {e}")))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            // Ours, just made: make its mode exactly 0700 whatever the umask took away.
            Ok(()) => {
                return std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| err(format!("cannot make it private (chmod 700): {e}")));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(format!("cannot create it: {e}"))),
        }
        // Not followed: a symlink planted where our directory should be (another user can
        // create /tmp/ssh-session-UID first) could be retargeted after the check.
        let meta = std::fs::symlink_metadata(&self.dir)
            .map_err(|e| err(format!("cannot stat it: {e}")))?;
        if meta.file_type().is_symlink() {
            return Err(err(
                "it is a symlink, which could be retargeted after this check; remove it or choose another with --runtime-dir or --socket".into(),
            ));
        }
        if !meta.is_dir() {
            return Err(err(
                "it is not a directory; choose another with --runtime-dir or --socket".into(),
            ));
        }
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            return Err(err(format!(
                "it is owned by uid {}, not by you (uid {uid}), so its owner could replace the \
                 daemon's socket; choose a directory of your own with --runtime-dir or --socket",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(err(format!(
                "it is writable by {} (mode {:o}), so someone else could replace the daemon's \
                 socket; choose a private directory with --runtime-dir or --socket, or make \
                 this one private with `chmod go-w {}`",
                if meta.mode() & 0o002 != 0 {
                    "others"
                } else {
                    "its group"
                },
                meta.mode() & 0o7777,
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// The last `lines` lines of the daemon log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
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
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, CliError> {
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
    fn private_dir_is_created_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/rt");
        let p = Paths::resolve(&global(&["--runtime-dir", dir.to_str().unwrap()])).unwrap();
        p.ensure_private_dir().unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(dir.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        // Idempotent.
        p.ensure_private_dir().unwrap();
    }

    #[test]
    fn an_existing_directory_is_used_as_it_is_never_chmodded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("home");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("x.sock");
        let p = Paths::resolve(&global(&["--socket", socket.to_str().unwrap()])).unwrap();
        p.ensure_private_dir().unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let p = Paths::resolve(&global(&["--runtime-dir", link.to_str().unwrap()])).unwrap();
        let e = p.ensure_private_dir().unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [0o1777, 0o775, 0o757] {
            let dir = tmp.path().join(format!("shared{mode:o}"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let socket = dir.join("x.sock");
            let p = Paths::resolve(&global(&["--socket", socket.to_str().unwrap()])).unwrap();
            let e = p.ensure_private_dir().unwrap_err().to_string();
            assert!(e.contains("writable by") && e.contains("--socket"), "{e}");
            assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, mode);
        }
    }
}
