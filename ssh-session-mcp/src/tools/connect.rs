//! `ssh_connect`: from a host spec to an open session, through `~/.ssh/config` and the
//! server's configuration and policy.

use std::time::Duration;

use ssh_session_core::transport::PtyRequest;
use ssh_session_core::{validate_name, HostSpec, Session, SessionConfig};

use super::params::ConnectArgs;
use super::results::ConnectResult;
use super::SshSessionServer;
use crate::config::expand_home;
use crate::error::{McpError, Result};

impl SshSessionServer {
    pub(super) async fn connect(&self, args: ConnectArgs) -> Result<ConnectResult> {
        // Cheap checks first: a bad name or argument never costs a connection attempt.
        validate_name(&args.name)?;
        let transport = match args.transport.as_deref() {
            Some(name) => name.parse(),
            None => self.config.transport_kind(),
        }
        .map_err(|detail| McpError::InvalidArgument {
            name: "transport",
            detail,
        })?;
        let config = &self.config;
        let mut spec = HostSpec::new(args.host.clone())
            .transport(transport)
            .use_agent(config.use_agent)
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .server_alive_interval(Duration::from_secs(config.keepalive_interval_s))
            .server_alive_count_max(config.keepalive_count_max);
        spec.user = args.user.clone();
        spec.port = args.port;
        if let Some(key) = &args.identity_file {
            spec = spec.identity_file(expand_home(std::path::Path::new(key)));
        }
        if let Some(file) = &config.ssh_config {
            spec = spec.config_file(expand_home(file));
        }
        if let Some(known) = &config.known_hosts {
            spec = spec.known_hosts(expand_home(known));
        }
        if let Some(policy) = config
            .key_policy()
            .map_err(|detail| McpError::Config { detail })?
        {
            spec = spec.host_key_policy(policy);
        }
        let options = spec.resolve().await?;

        let given = host_part(&args.host);
        self.policy
            .check_host(given, &options.host)
            .map_err(|detail| McpError::Policy { detail })?;
        let rules = self.policy.rules_for(given, &options.host);

        let pty = PtyRequest {
            cols: args.cols.unwrap_or(200).clamp(20, 1000),
            rows: args.rows.unwrap_or(50).clamp(5, 500),
            ..PtyRequest::default()
        };
        let session_config = SessionConfig {
            pty: Some(pty),
            exec_timeout: Duration::from_millis(config.exec_timeout_ms),
            reconnect: config.reconnect_policy(),
            persistent: args.persistent.unwrap_or(false),
            ..SessionConfig::default()
        };
        let session = self
            .manager
            .open(&args.name, options, session_config)
            .await?;
        self.record_rules(&session, rules);
        let info = session.info();
        Ok(ConnectResult {
            name: info.name,
            host: info.host,
            user: info.user,
            port: info.port,
            transport: info.transport.name().into(),
            persistent: info.persistent,
            resumed: info.resumed,
            status: info.status.name().into(),
            cwd: info.cwd,
        })
    }
}

/// `user@host:port` → `host`, for policy patterns written against host names.
fn host_part(spec: &str) -> &str {
    let host = spec.rsplit_once('@').map_or(spec, |(_, h)| h);
    match host.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_part() {
        assert_eq!(super::host_part("web"), "web");
        assert_eq!(super::host_part("me@web:2222"), "web");
        assert_eq!(super::host_part("me@web"), "web");
    }
}
