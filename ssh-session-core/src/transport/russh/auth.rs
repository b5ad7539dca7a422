//! User authentication: ssh-agent keys, then key files, then a caller's password callback.

use std::path::Path;
use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::host_keys::ClientHandler;
use crate::error::{Error, Result};
use crate::options::{ConnectOptions, IdentityFile};
use crate::transport::key_file;

/// Tries every configured credential in OpenSSH's order; fails with the list of what was tried.
pub(super) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    opts: &ConnectOptions,
) -> Result<()> {
    let mut tried: Vec<String> = Vec::new();
    let user = opts.user.as_str();

    if let (true, Some(socket)) = (opts.use_agent, &opts.agent_socket) {
        if let Ok(mut agent) = AgentClient::connect_uds(socket).await {
            let identities = agent.request_identities().await.unwrap_or_default();
            let allowed = if opts.identities_only {
                Some(identity_public_keys(opts).await)
            } else {
                None
            };
            for identity in identities {
                let AgentIdentity::PublicKey { key, .. } = identity else {
                    continue;
                };
                if allowed
                    .as_ref()
                    .is_some_and(|keys| !keys.iter().any(|k| k.key_data() == key.key_data()))
                {
                    continue;
                }
                let fp = key.fingerprint(HashAlg::Sha256);
                for hash in rsa_hashes(handle, key.algorithm().is_rsa()).await {
                    if let Ok(AuthResult::Success) = handle
                        .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                        .await
                    {
                        return Ok(());
                    }
                }
                tried.push(format!("agent key {fp}"));
            }
        }
    }

    let explicit = !opts.identities.is_empty();
    for identity in opts.effective_identities() {
        let path = &identity.path;
        let key = match load_secret_key(&identity).await {
            Ok(key) => key,
            // Not a key file at all (a device, a FIFO, too big, missing...): a path the
            // caller gave is a mistake to report; a default one is stepped over.
            Err(LoadError::File(e)) => {
                if explicit {
                    return Err(e);
                }
                let why = match &e {
                    Error::Key { detail, .. } => detail.clone(),
                    other => other.to_string(),
                };
                tried.push(format!("{} (skipped: {why})", path.display()));
                continue;
            }
            Err(LoadError::Decode(russh::keys::Error::KeyIsEncrypted)) => {
                if explicit {
                    return Err(Error::Key {
                        path: path.clone(),
                        detail: "it is encrypted and no passphrase was given; give its \
                                 passphrase, or load it into ssh-agent (ssh-add) and use the agent"
                            .into(),
                        source: None,
                    });
                }
                tried.push(format!("{} (encrypted, skipped)", path.display()));
                continue;
            }
            Err(LoadError::Decode(e)) => {
                let detail = if identity.passphrase.is_some() {
                    format!("{e}; is the passphrase right?")
                } else {
                    format!("{e}; is it an OpenSSH private key file?")
                };
                if explicit {
                    return Err(Error::Key {
                        path: path.clone(),
                        detail,
                        source: Some(Box::new(e)),
                    });
                }
                tried.push(format!("{} (unreadable: {e})", path.display()));
                continue;
            }
        };
        let key = Arc::new(key);
        for hash in rsa_hashes(handle, key.algorithm().is_rsa()).await {
            let attempt = handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map_err(|e| ssh_error(opts, e))?;
            if matches!(attempt, AuthResult::Success) {
                return Ok(());
            }
        }
        tried.push(format!("key {}", path.display()));
    }

    if let Some(callback) = &opts.password {
        if let Some(password) = callback(user, &opts.host) {
            let attempt = handle
                .authenticate_password(user, password)
                .await
                .map_err(|e| ssh_error(opts, e))?;
            if matches!(attempt, AuthResult::Success) {
                return Ok(());
            }
            tried.push("password".into());
        }
    }

    Err(Error::AuthFailed {
        user: user.into(),
        host: opts.host.clone(),
        port: opts.port,
        tried: if tried.is_empty() {
            "nothing: no agent, no key file found, no password callback".into()
        } else {
            tried.join(", ")
        },
    })
}

/// Why a key file gave no key.
enum LoadError {
    /// The file itself: not a regular file, too big, missing, unreadable.
    File(Error),
    /// Its contents: not a key, encrypted, wrong passphrase.
    Decode(russh::keys::Error),
}

/// Reads and decodes a private key on a blocking thread: the read is bounded and cannot
/// block (see `key_file`), but decoding an encrypted key runs a deliberately slow KDF,
/// and neither may stall the async threads (or escape the connect deadline).
async fn load_secret_key(identity: &IdentityFile) -> Result<PrivateKey, LoadError> {
    let path = identity.path.clone();
    let passphrase = identity.passphrase.clone();
    tokio::task::spawn_blocking(move || {
        let text = key_file::read(&path).map_err(LoadError::File)?;
        russh::keys::decode_secret_key(&text, passphrase.as_deref()).map_err(LoadError::Decode)
    })
    .await
    .unwrap_or_else(|e| {
        Err(LoadError::File(Error::Key {
            path: identity.path.clone(),
            detail: format!("loading it failed: {e}"),
            source: None,
        }))
    })
}

/// The public halves of the configured identity files (`FILE.pub`, or derived from an
/// unencrypted private key), for `IdentitiesOnly`. Files that are not key files are
/// skipped here: loading the private key reports them.
async fn identity_public_keys(opts: &ConnectOptions) -> Vec<PublicKey> {
    let identities = opts.identities.clone();
    tokio::task::spawn_blocking(move || {
        identities
            .iter()
            .filter_map(|id| {
                let mut pub_path = id.path.clone().into_os_string();
                pub_path.push(".pub");
                key_file::read(Path::new(&pub_path))
                    .ok()
                    .and_then(|text| parse_public_key_file(&text))
                    .or_else(|| {
                        let text = key_file::read(&id.path).ok()?;
                        russh::keys::decode_secret_key(&text, id.passphrase.as_deref())
                            .ok()
                            .map(|k| k.public_key().clone())
                    })
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// A `.pub` file's key: the first line that is not blank or a comment, as
/// `ALGORITHM BASE64 [COMMENT]` or a bare base64 blob.
fn parse_public_key_file(text: &str) -> Option<PublicKey> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let mut fields = line.split_whitespace();
    let first = fields.next()?;
    let blob = fields.next().unwrap_or(first);
    russh::keys::parse_public_key_base64(blob).ok()
}

/// The signature hashes to try for a key. RSA keys must sign with SHA-2 (OpenSSH refuses
/// SHA-1 since 8.8); when the server's `server-sig-algs` announcement does not arrive,
/// try SHA-512 then SHA-256 rather than fall back to a SHA-1 signature that will fail.
/// Other key types ignore the hash.
async fn rsa_hashes(handle: &Handle<ClientHandler>, is_rsa: bool) -> Vec<Option<HashAlg>> {
    if !is_rsa {
        return vec![None];
    }
    match handle.best_supported_rsa_hash().await {
        Ok(Some(best)) => vec![best],
        _ => vec![Some(HashAlg::Sha512), Some(HashAlg::Sha256)],
    }
}

pub(super) fn ssh_error(
    opts: &ConnectOptions,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Ssh {
        host: opts.host.clone(),
        port: opts.port,
        detail: e.to_string(),
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_files_parse_with_comments_and_bare_blobs() {
        let blob = "AAAAC3NzaC1lZDI1NTE5AAAAIE2keFfYxbMrekrIImn80puVzY7fobSdSyfJmo5Mgb/O";
        let line = format!("# a comment\n\nssh-ed25519 {blob} me@host with spaces\n");
        let key = parse_public_key_file(&line).unwrap();
        assert!(key.algorithm().as_str().contains("ed25519"));
        let bare = parse_public_key_file(blob).unwrap();
        assert_eq!(bare.key_data(), key.key_data());
        assert!(parse_public_key_file("# nothing\n").is_none());
        assert!(parse_public_key_file("ssh-ed25519 not-base64!").is_none());
    }
}
