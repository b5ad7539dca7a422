//! Key generation: with `ssh-keygen` for the OpenSSH server (so every key
//! type and the encrypted format are exactly what OpenSSH writes), and
//! in-process for the embedded server (which must work where OpenSSH is not
//! installed).

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

/// One key for `ssh-keygen` to write: type arguments, passphrase, file.
pub(crate) struct KeySpec<'a> {
    /// The private key file; ssh-keygen adds `.pub` for the public half.
    pub path: PathBuf,
    /// `-t TYPE` and, for RSA, `-b BITS`.
    pub type_args: &'a [&'a str],
    /// Empty for an unencrypted key.
    pub passphrase: &'a str,
}

/// Runs one `ssh-keygen` per key, all at once: RSA generation alone takes a
/// noticeable fraction of a second, and tests wait for this.
pub(crate) fn ssh_keygen_all(specs: &[KeySpec<'_>]) -> io::Result<()> {
    let mut children: Vec<(Child, &Path)> = Vec::new();
    for spec in specs {
        let child = Command::new("ssh-keygen")
            .arg("-q")
            .args(spec.type_args)
            .args(["-N", spec.passphrase, "-C", "ssh-session-testkit", "-f"])
            .arg(&spec.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run ssh-keygen ({e}); install openssh-client"),
                )
            })?;
        children.push((child, &spec.path));
    }
    let mut first_error = None;
    for (mut child, path) in children {
        let mut stderr = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut stderr);
        }
        let status = child.wait()?;
        if !status.success() && first_error.is_none() {
            first_error = Some(io::Error::other(format!(
                "ssh-keygen for {} failed ({status}): {stderr}",
                path.display()
            )));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The `TYPE BASE64` part of a `.pub` file, without the comment, as
/// known_hosts and authorized_keys lines want it.
pub(crate) fn public_line(pub_file: &Path) -> io::Result<String> {
    let text = std::fs::read_to_string(pub_file)?;
    let mut fields = text.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(b64)) => Ok(format!("{kind} {b64}")),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not an OpenSSH public key", pub_file.display()),
        )),
    }
}

/// A fresh ed25519 key made in-process from 32 bytes of `/dev/urandom`.
///
/// Seeding from the kernel directly avoids depending on a particular `rand`
/// version, which must match the one `ssh-key` was built against.
pub(crate) fn random_ed25519(comment: &str) -> io::Result<PrivateKey> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let pair = Ed25519Keypair::from_seed(&seed);
    PrivateKey::new(KeypairData::from(pair), comment).map_err(io::Error::other)
}

/// Writes `key` as an OpenSSH private key file (mode 0600, which the OpenSSH
/// client insists on) plus `PATH.pub`.
pub(crate) fn write_key_pair(key: &PrivateKey, path: &Path) -> io::Result<()> {
    let pem = key.to_openssh(LineEnding::LF).map_err(io::Error::other)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(pem.as_bytes())?;
    let public = key.public_key().to_openssh().map_err(io::Error::other)?;
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::write(pub_path, format!("{public}\n"))
}
