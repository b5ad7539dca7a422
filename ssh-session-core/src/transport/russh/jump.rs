//! Jump hosts: each hop of a `ProxyJump` chain is a full SSH connection opened through a
//! `direct-tcpip` channel of the previous one, so every hop's host key is verified against
//! known_hosts and every hop authenticates on its own, as with OpenSSH.

use russh::client::Handle;

use super::host_keys::ClientHandler;
use crate::error::{Error, Result};
use crate::options::{local_user, ConnectOptions, JumpHost};

/// Connection options for one hop.
///
/// A hop that is a `~/.ssh/config` alias is connected as `ssh HOP` would (its HostName,
/// Port, User, IdentityFile, known_hosts...), resolved with the target's config file. Any
/// other hop keeps the target's credentials and trust settings (keys, agent, known_hosts,
/// policy, timeout) with the address and user as written, the user defaulting to the local
/// one as OpenSSH does (not the target's).
pub(super) async fn hop_options(target: &ConnectOptions, hop: &JumpHost) -> Result<ConnectOptions> {
    let mut opts = target.clone();
    opts.proxy_jump = Vec::new();
    opts.host = hop.host.clone();
    opts.port = hop.port.unwrap_or(22);
    opts.user = hop.user.clone().unwrap_or_else(local_user);
    let uses_config = target
        .config_file
        .as_deref()
        .is_none_or(|f| f != std::path::Path::new("/dev/null"));
    if uses_config {
        let resolved =
            crate::config::resolve_host(&hop.to_string(), target.config_file.as_deref()).await?;
        if resolved.from_config {
            let mut hop_opts = resolved.apply_to(opts)?;
            // A hop's own ProxyJump is the chain's business, not this hop's.
            hop_opts.proxy_jump = Vec::new();
            return Ok(hop_opts);
        }
    }
    Ok(opts)
}

/// A byte stream to `opts.host:opts.port`, tunnelled through `via`.
pub(super) async fn tunnel(
    via: &Handle<ClientHandler>,
    opts: &ConnectOptions,
) -> Result<russh::ChannelStream<russh::client::Msg>> {
    let channel = via
        .channel_open_direct_tcpip(opts.host.clone(), opts.port.into(), "127.0.0.1", 0)
        .await
        .map_err(|e| Error::ChannelRefused {
            host: opts.host.clone(),
            what: format!("a tunnel to {}:{}", opts.host, opts.port),
            detail: format!("{e}; check AllowTcpForwarding on the jump host and that it can reach the next host"),
        })?;
    Ok(channel.into_stream())
}
