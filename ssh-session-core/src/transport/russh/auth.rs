//! User authentication: ssh-agent keys, then key files, then a caller's password callback.

use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};

use super::host_keys::ClientHandler;
use crate::error::{Error, Result};
use crate::options::ConnectOptions;

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
            let allowed = opts.identities_only.then(|| identity_public_keys(opts));
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
        let key = match russh::keys::load_secret_key(path, identity.passphrase.as_deref()) {
            Ok(key) => key,
            Err(russh::keys::Error::KeyIsEncrypted) => {
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
            Err(e) => {
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

/// The public halves of the configured identity files (`FILE.pub`, or derived from an
/// unencrypted private key), for `IdentitiesOnly`.
fn identity_public_keys(opts: &ConnectOptions) -> Vec<russh::keys::PublicKey> {
    opts.identities
        .iter()
        .filter_map(|id| {
            let mut pub_path = id.path.clone().into_os_string();
            pub_path.push(".pub");
            russh::keys::load_public_key(&pub_path).ok().or_else(|| {
                russh::keys::load_secret_key(&id.path, id.passphrase.as_deref())
                    .ok()
                    .map(|k| k.public_key().clone())
            })
        })
        .collect()
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
