//! Host key verification against known_hosts, run inside russh's key-exchange callback.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

use crate::error::Error;
use crate::options::HostKeyPolicy;

/// The client-side handler: checks the host key and remembers *why* it refused, because
/// russh itself only reports a generic "unknown key" error.
pub(super) struct ClientHandler {
    pub host: String,
    pub port: u16,
    pub known_hosts: PathBuf,
    pub policy: HostKeyPolicy,
    pub refusal: Arc<Mutex<Option<Error>>>,
    /// Where the server's `forwarded-tcpip` channels go (`ssh -R`).
    pub forwards: super::forward::Forwards,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        _connected_address: &str,
        connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.forwards.incoming(channel, connected_port, reply).await;
        Ok(())
    }

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        match verify(&self.host, self.port, &key, &self.known_hosts, self.policy) {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Ok(false)
            }
        }
    }
}

/// Checks `key` for `host:port` against `file` under `policy`.
pub(super) fn verify(
    host: &str,
    port: u16,
    key: &PublicKey,
    file: &Path,
    policy: HostKeyPolicy,
) -> Result<(), Error> {
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    match russh::keys::check_known_hosts_path(host, port, key, file) {
        Ok(true) => Ok(()),
        Ok(false) => match policy {
            HostKeyPolicy::Strict => Err(Error::UnknownHostKey {
                host: host.into(),
                port,
                fingerprint,
                file: file.into(),
            }),
            HostKeyPolicy::AcceptNew => {
                if let Some(dir) = file.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                russh::keys::known_hosts::learn_known_hosts_path(host, port, key, file).map_err(
                    |e| Error::Ssh {
                        host: host.into(),
                        port,
                        detail: format!(
                            "cannot record the new host key in {}: {e}",
                            file.display()
                        ),
                        source: Some(Box::new(e)),
                    },
                )?;
                tracing::info!(host, port, %fingerprint, file = %file.display(), "recorded new host key");
                Ok(())
            }
        },
        Err(russh::keys::Error::KeyChanged { line }) => Err(Error::HostKeyChanged {
            host: host.into(),
            port,
            fingerprint,
            file: file.into(),
            line: physical_line(file, line),
        }),
        Err(e) => Err(Error::Ssh {
            host: host.into(),
            port,
            detail: format!("cannot read known_hosts file {}: {e}", file.display()),
            source: Some(Box::new(e)),
        }),
    }
}

/// russh numbers known_hosts entries without counting `#` comment lines; users need the line
/// their editor shows, so map the n-th non-comment line back to its physical line.
fn physical_line(file: &Path, entry: usize) -> usize {
    let Ok(text) = std::fs::read_to_string(file) else {
        return entry;
    };
    text.split_inclusive('\n')
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'))
        .nth(entry.saturating_sub(1))
        .map(|(i, _)| i + 1)
        .unwrap_or(entry)
}

#[cfg(test)]
mod tests {
    use super::physical_line;

    #[test]
    fn comment_lines_are_counted() {
        let dir = std::env::temp_dir().join(format!("ssh-session-kh-{}", std::process::id()));
        std::fs::write(
            &dir,
            "# a\n# b\nhost1 ssh-ed25519 AAA\n#c\nhost2 ssh-ed25519 BBB\n",
        )
        .unwrap();
        assert_eq!(physical_line(&dir, 1), 3);
        assert_eq!(physical_line(&dir, 2), 5);
        let _ = std::fs::remove_file(dir);
    }
}
