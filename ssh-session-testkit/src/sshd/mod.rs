//! A real OpenSSH `sshd` on loopback, with throw-away keys, for tests.

mod setup;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, OnceLock};

use tempfile::TempDir;

use crate::keys::{public_line, ssh_keygen_all};
use crate::spawner::{children, command_name, descendants, kill_tree};
use setup::{config_text, launch, spec, validate};

const SSHD: &str = "/usr/sbin/sshd";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
const PASSPHRASE: &str = "testkit passphrase";
/// Port collisions with other processes are possible (see [`crate::free_port`]).
const START_ATTEMPTS: usize = 3;

/// How to configure an [`Sshd`]. `SshdOptions::default()` is what
/// [`Sshd::start`] uses.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// `MaxSessions`: channels allowed per connection. OpenSSH's default (10)
    /// is too low for tests that open many sessions over one connection.
    pub max_sessions: u32,
    /// Lines appended to `sshd_config`. sshd keeps the *first* value it sees
    /// for a keyword, so for any top-level keyword set here the kit leaves
    /// out its own default line; this is how tests override e.g.
    /// `MaxStartups` or `AllowTcpForwarding`. `Match` blocks work too.
    /// `Port` and `ListenAddress` are never replaced (the kit must know
    /// where sshd listens), and `SetEnv` lines add to the kit's
    /// `SetEnv HOME=...`; set the home with [`home`](Self::home).
    pub extra_config: String,
    /// The remote `HOME`; `None` makes an empty one in the temp dir (see
    /// [`Sshd::home`]). A given directory is created if missing and
    /// otherwise used as is.
    pub home: Option<PathBuf>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            max_sessions: 100,
            extra_config: String::new(),
            home: None,
        }
    }
}

/// A real OpenSSH sshd on `127.0.0.1:<free port>`, with generated ed25519
/// host key and user key in a TempDir.
///
/// It accepts public-key logins for the current user (tests run as root)
/// with [`user_key`](Sshd::user_key), [`user_key_rsa`](Sshd::user_key_rsa),
/// [`user_key_ecdsa`](Sshd::user_key_ecdsa) or
/// [`encrypted_user_key`](Sshd::encrypted_user_key), and nothing else.
/// Dropping it kills sshd and every connection process it forked.
///
/// ```no_run
/// let sshd = ssh_session_testkit::Sshd::shared();
/// let out = std::process::Command::new("ssh")
///     .args(sshd.ssh_args())
///     .arg(sshd.host())
///     .arg("echo ok")
///     .output()
///     .unwrap();
/// assert_eq!(out.stdout, b"ok\n");
/// ```
#[derive(Debug)]
pub struct Sshd {
    dir: TempDir,
    port: u16,
    user: String,
    home: PathBuf,
    user_key: PathBuf,
    user_key_rsa: PathBuf,
    user_key_ecdsa: PathBuf,
    encrypted_user_key: PathBuf,
    unauthorized_key: PathBuf,
    known_hosts: PathBuf,
    wrong_known_hosts: PathBuf,
    log: PathBuf,
    pid: u32,
    child: Mutex<Child>,
}

static SHARED: OnceLock<Result<Sshd, String>> = OnceLock::new();

impl Sshd {
    /// Starts an sshd with [`SshdOptions::default`].
    pub fn start() -> io::Result<Sshd> {
        Self::start_with(SshdOptions::default())
    }

    /// Starts an sshd: generates keys, writes and validates `sshd_config`,
    /// runs `/usr/sbin/sshd -D -e -f CONFIG` and waits until it accepts TCP
    /// connections. Errors carry sshd's own output (validation or log).
    pub fn start_with(opts: SshdOptions) -> io::Result<Sshd> {
        if !Path::new(SSHD).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{SSHD} not found: install openssh-server (apt-get install -y openssh-server)"
                ),
            ));
        }
        // sshd refuses to start without its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::Builder::new().prefix("testkit-sshd-").tempdir()?;
        let d = dir.path().to_path_buf();
        let ed = ["-t", "ed25519"];
        let specs = [
            spec(&d, "host_key", &ed, ""),
            spec(&d, "other_host_key", &ed, ""),
            spec(&d, "user_key", &ed, ""),
            spec(&d, "user_key_rsa", &["-t", "rsa", "-b", "2048"], ""),
            spec(&d, "user_key_ecdsa", &["-t", "ecdsa"], ""),
            spec(&d, "user_key_encrypted", &ed, PASSPHRASE),
            spec(&d, "unauthorized_key", &ed, ""),
        ];
        ssh_keygen_all(&specs)?;
        // russh's key parser (ssh-key) refuses about one ECDSA key in 256 with "length
        // invalid" (RustCrypto/SSH#350): a test of every key type must not fail by chance,
        // so draw again until it parses. Users with such a key get a clear error.
        for _ in 0..20 {
            let path = d.join("user_key_ecdsa");
            let text = std::fs::read_to_string(&path)?;
            if russh::keys::decode_secret_key(&text, None).is_ok() {
                break;
            }
            std::fs::remove_file(&path)?;
            std::fs::remove_file(d.join("user_key_ecdsa.pub"))?;
            ssh_keygen_all(&[spec(&d, "user_key_ecdsa", &["-t", "ecdsa"], "")])?;
        }
        let mut authorized = String::new();
        for name in [
            "user_key",
            "user_key_rsa",
            "user_key_ecdsa",
            "user_key_encrypted",
        ] {
            authorized += &public_line(&d.join(format!("{name}.pub")))?;
            authorized.push('\n');
        }
        std::fs::write(d.join("authorized_keys"), authorized)?;

        let home = match opts.home.clone() {
            Some(home) => {
                std::fs::create_dir_all(&home)?;
                home
            }
            None => {
                let home = d.join("home");
                std::fs::create_dir_all(&home)?;
                std::fs::write(home.join(".bashrc"), "")?;
                home
            }
        };

        let host_key = public_line(&d.join("host_key.pub"))?;
        let other_key = public_line(&d.join("other_host_key.pub"))?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = crate::free_port();
            let config = d.join("sshd_config");
            std::fs::write(&config, config_text(&d, &home, port, &opts))?;
            validate(&config)?;
            let pattern = format!("[127.0.0.1]:{port}");
            std::fs::write(d.join("known_hosts"), format!("{pattern} {host_key}\n"))?;
            std::fs::write(
                d.join("wrong_known_hosts"),
                format!(
                    "# ssh-session-testkit: the entry below is NOT this server's host key,\n\
                     # so clients must report a changed host key on line 3.\n\
                     {pattern} {other_key}\n"
                ),
            )?;
            match launch(&d, &config, port) {
                Ok(child) => return Ok(Self::new(dir, home, port, child)),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("sshd did not start")))
    }

    fn new(dir: TempDir, home: PathBuf, port: u16, child: Child) -> Sshd {
        let d = dir.path();
        Sshd {
            port,
            user: crate::current_user(),
            home,
            user_key: d.join("user_key"),
            user_key_rsa: d.join("user_key_rsa"),
            user_key_ecdsa: d.join("user_key_ecdsa"),
            encrypted_user_key: d.join("user_key_encrypted"),
            unauthorized_key: d.join("unauthorized_key"),
            known_hosts: d.join("known_hosts"),
            wrong_known_hosts: d.join("wrong_known_hosts"),
            log: d.join("sshd.log"),
            pid: child.id(),
            child: Mutex::new(child),
            dir,
        }
    }

    /// One sshd for the whole test binary, started on first use.
    ///
    /// It lives in a static and is never dropped, so it is cleaned up in two
    /// other ways: an `atexit` hook kills it and removes its directory when
    /// the test binary exits normally, and `PR_SET_PDEATHSIG` makes the
    /// kernel kill it if the process dies any other way.
    ///
    /// # Panics
    /// If sshd cannot be started; use [`Sshd::try_shared`] to handle that.
    pub fn shared() -> &'static Sshd {
        Self::try_shared().unwrap_or_else(|e| panic!("cannot start the shared sshd: {e}"))
    }

    /// Like [`Sshd::shared`], but returns the start-up error (the same one to
    /// every caller) instead of panicking, for tests that skip without sshd.
    pub fn try_shared() -> io::Result<&'static Sshd> {
        let shared = SHARED.get_or_init(|| {
            let sshd = Sshd::start().map_err(|e| e.to_string())?;
            // SAFETY: registering a plain extern "C" fn has no preconditions.
            unsafe {
                libc::atexit(cleanup_shared);
            }
            Ok(sshd)
        });
        shared.as_ref().map_err(|e| io::Error::other(e.clone()))
    }

    /// Always `"127.0.0.1"`: sshd listens on loopback only.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The login name to use: the user running the tests.
    pub fn user(&self) -> String {
        self.user.clone()
    }

    /// An authorized ed25519 private key file without passphrase.
    pub fn user_key(&self) -> &Path {
        &self.user_key
    }

    /// An authorized RSA (2048 bit) private key file without passphrase.
    pub fn user_key_rsa(&self) -> &Path {
        &self.user_key_rsa
    }

    /// An authorized ECDSA (nistp256) private key file without passphrase.
    pub fn user_key_ecdsa(&self) -> &Path {
        &self.user_key_ecdsa
    }

    /// An authorized ed25519 private key file encrypted with the returned
    /// passphrase, for testing passphrase handling.
    pub fn encrypted_user_key(&self) -> (&Path, &str) {
        (&self.encrypted_user_key, PASSPHRASE)
    }

    /// A valid ed25519 private key that is *not* in `authorized_keys`, for
    /// testing that authentication failures are reported.
    pub fn unauthorized_key(&self) -> &Path {
        &self.unauthorized_key
    }

    /// A known_hosts file with this server's correct entry:
    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// Writes `dir/known_hosts-PORT`, recording this server's key for `[127.0.0.1]:port`:
    /// what a client connecting through a proxy on `port` (e.g. a [`FaultProxy`]) sees.
    ///
    /// [`FaultProxy`]: crate::FaultProxy
    pub fn known_hosts_for_port(&self, port: u16, dir: &Path) -> io::Result<PathBuf> {
        let entry = std::fs::read_to_string(&self.known_hosts)?;
        let path = dir.join(format!("known_hosts-{port}"));
        std::fs::write(
            &path,
            entry.replace(&format!("]:{} ", self.port), &format!("]:{port} ")),
        )?;
        Ok(path)
    }

    /// A known_hosts file for the same `[127.0.0.1]:PORT` pattern but a
    /// different ed25519 key, after two comment lines, so a client must
    /// report a changed host key at line 3.
    pub fn wrong_known_hosts(&self) -> &Path {
        &self.wrong_known_hosts
    }

    /// The remote `HOME` (set with sshd_config `SetEnv HOME=...`).
    ///
    /// By default a directory in the temp dir holding an empty `.bashrc`:
    /// Debian's bash reads `~/.bashrc` even for `ssh host cmd`, and root's
    /// real one may be slow (e.g. `pyenv init`) or noisy, which would make
    /// tests slow and benchmarks meaningless. The login shell's working
    /// directory is still the account's home from `/etc/passwd`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The temp dir holding keys, config, log and (by default) the home.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the listening sshd process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills (SIGKILL) every per-connection process of this sshd, as `kill -9` of
    /// `sshd: user@pts/N` would: each client's connection dies at once, the listener
    /// stays. Returns how many processes were killed.
    pub fn kill_connections(&self) -> usize {
        let victims = children(self.pid);
        for &p in &victims {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(p as libc::pid_t, libc::SIGKILL);
            }
        }
        victims.len()
    }

    /// How many processes named `command` (their `comm`, e.g. `bash`) run under this
    /// sshd: for a test to count the shells its sessions have open.
    pub fn count_processes(&self, command: &str) -> usize {
        descendants(self.pid)
            .into_iter()
            .filter(|&p| command_name(p).as_deref() == Some(command))
            .count()
    }

    /// sshd's log so far (its stderr, `-e`), for failing tests to print.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Arguments for the OpenSSH client to reach this server without reading
    /// any of the user's own configuration, keys or known hosts. Append the
    /// host ([`Sshd::host`]) and optionally a command.
    pub fn ssh_args(&self) -> Vec<String> {
        let opt = |s: String| ["-o".to_string(), s];
        let mut args = vec![
            "-F".to_string(),
            "/dev/null".to_string(),
            "-p".to_string(),
            self.port.to_string(),
            "-i".to_string(),
            self.user_key.display().to_string(),
        ];
        args.extend(opt(format!(
            "UserKnownHostsFile={}",
            self.known_hosts.display()
        )));
        args.extend(opt("GlobalKnownHostsFile=/dev/null".into()));
        args.extend(opt("StrictHostKeyChecking=yes".into()));
        args.extend(opt("BatchMode=yes".into()));
        // Keys from a running ssh-agent would otherwise be offered too.
        args.extend(opt("IdentitiesOnly=yes".into()));
        args.extend(opt(format!("User={}", self.user)));
        args
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill_tree(self.pid);
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.wait();
    }
}

extern "C" fn cleanup_shared() {
    if let Some(Ok(sshd)) = SHARED.get() {
        kill_tree(sshd.pid);
        let _ = std::fs::remove_dir_all(sshd.dir.path());
    }
}
