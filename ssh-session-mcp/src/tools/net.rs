//! Tunnels, fan-out and host facts: thin over the core's `SessionManager`.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use ssh_session_core::tunnel::{TunnelKind, TunnelSpec};
use ssh_session_core::ExecOptions;

use super::params::{ExecManyArgs, NoArgs, SessionArgs, TunnelCloseArgs, TunnelOpenArgs};
use super::results::{
    DiskItem, ExecManyItem, ExecManyResult, HostInfoResult, TunnelCloseResult, TunnelItem,
    TunnelList, TunnelOpenResult,
};
use super::{ms, SshSessionServer, SOURCE};
use crate::error::McpError;
use crate::render::render;

/// Sessions one `ssh_exec_many` may name.
const MAX_SESSIONS: usize = 1000;
/// The least output each session's result keeps, however many sessions there are.
const MIN_CHARS_EACH: usize = 2000;

#[tool_router(router = net_router, vis = "pub(super)")]
impl SshSessionServer {
    /// Opens a tunnel on a session's connection.
    #[tool(
        description = "Open a tunnel: local (-L: listen here, target seen from the host), socks (-D) or remote (-R: listen on the host, target seen from here). Survives reconnects.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn ssh_tunnel_open(
        &self,
        Parameters(args): Parameters<TunnelOpenArgs>,
    ) -> std::result::Result<Json<TunnelOpenResult>, McpError> {
        let kind: TunnelKind = args
            .kind
            .parse()
            .map_err(|detail| McpError::InvalidArgument {
                name: "kind",
                detail,
            })?;
        self.check_change(&args.session, "opening tunnels")?;
        if let Some(listen) = &args.listen {
            if !self.config.allow_public_tunnels && !is_loopback(listen) {
                return Err(McpError::Policy {
                    detail: format!(
                        "refused: {listen:?} is not a loopback address, and this server only opens tunnels on loopback (127.0.0.1, [::1], localhost); set allow_public_tunnels = true in its config to allow more"
                    ),
                });
            }
        }
        let spec = match kind {
            TunnelKind::Socks if args.target.is_some() => {
                return Err(McpError::InvalidArgument {
                    name: "target",
                    detail: "a socks tunnel has no target: each client names its own".into(),
                })
            }
            TunnelKind::Socks => TunnelSpec::socks(args.listen.as_deref()),
            _ => {
                let target = args.target.as_deref().ok_or(McpError::InvalidArgument {
                    name: "target",
                    detail: format!("a {} tunnel needs target \"HOST:PORT\"", kind.name()),
                })?;
                if kind == TunnelKind::Local {
                    TunnelSpec::local(args.listen.as_deref(), target)
                } else {
                    TunnelSpec::remote(args.listen.as_deref(), target)
                }
            }
        };
        let t = self.manager.open_tunnel(&args.session, spec).await?;
        Ok(Json(TunnelOpenResult {
            id: t.id,
            listen: t.listen,
            target: t.target,
        }))
    }

    /// Lists the open tunnels.
    #[tool(
        description = "List open tunnels with byte counts.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn ssh_tunnel_list(
        &self,
        Parameters(_): Parameters<NoArgs>,
    ) -> std::result::Result<Json<TunnelList>, McpError> {
        Ok(Json(TunnelList {
            tunnels: self
                .manager
                .tunnels()
                .into_iter()
                .map(|t| TunnelItem {
                    id: t.id,
                    session: t.session,
                    kind: t.kind.name().into(),
                    listen: t.listen,
                    target: t.target,
                    bytes_in: t.bytes_in,
                    bytes_out: t.bytes_out,
                    last_error: t.last_error,
                })
                .collect(),
        }))
    }

    /// Closes a tunnel.
    #[tool(
        description = "Close a tunnel by id.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn ssh_tunnel_close(
        &self,
        Parameters(args): Parameters<TunnelCloseArgs>,
    ) -> std::result::Result<Json<TunnelCloseResult>, McpError> {
        self.manager.close_tunnel(&args.id).await?;
        Ok(Json(TunnelCloseResult { id: args.id }))
    }

    /// One command on many sessions.
    #[tool(
        description = "Run one command on many sessions at once; a slow or dead host delays no other result.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn ssh_exec_many(
        &self,
        Parameters(args): Parameters<ExecManyArgs>,
    ) -> std::result::Result<Json<ExecManyResult>, McpError> {
        if args.sessions.is_empty() || args.sessions.len() > MAX_SESSIONS {
            return Err(McpError::InvalidArgument {
                name: "sessions",
                detail: format!("give 1 to {MAX_SESSIONS} session names"),
            });
        }
        // The policy first, per session: a refused one is that entry's error.
        let mut refused = std::collections::HashMap::new();
        let mut allowed = Vec::new();
        for name in &args.sessions {
            let check = self
                .session(name)
                .and_then(|s| self.rules_of(&s))
                .and_then(|rules| {
                    rules
                        .check_command(&args.command)
                        .map_err(|detail| McpError::Policy { detail })
                });
            match check {
                Ok(()) => allowed.push(name.clone()),
                Err(e) => {
                    refused.insert(name.clone(), e.to_string());
                }
            }
        }
        let options = ExecOptions {
            timeout: Some(ms(args.timeout_ms, self.config.exec_timeout_ms)),
            source: Some(SOURCE.into()),
            ..Default::default()
        };
        let mut ran: std::collections::HashMap<String, _> = self
            .manager
            .exec_many(&allowed, &args.command, options)
            .await
            .into_iter()
            .map(|r| (r.session.clone(), r.result))
            .collect();
        let each = (self.config.max_output_chars / args.sessions.len()).max(MIN_CHARS_EACH);
        let opts = self.render_options(None, Some(each));
        let mut results = Vec::new();
        for name in &args.sessions {
            if results.iter().any(|r: &ExecManyItem| &r.session == name) {
                continue;
            }
            let item = match (refused.remove(name), ran.remove(name)) {
                (Some(error), _) => ExecManyItem::failed(name, error),
                (None, Some(Ok(r))) => ExecManyItem {
                    session: name.clone(),
                    exit_code: r.exit_code,
                    output: render(&r.output, r.dropped_bytes, opts).text,
                    running: r.is_running(),
                    error: None,
                },
                (None, Some(Err(e))) => ExecManyItem::failed(name, super::map_core(e).to_string()),
                (None, None) => continue,
            };
            results.push(item);
        }
        Ok(Json(ExecManyResult { results }))
    }

    /// What a host is and how loaded.
    #[tool(
        description = "The host's OS, kernel, CPUs, load, memory, disks, uptime; works while a command runs.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn ssh_host_info(
        &self,
        Parameters(args): Parameters<SessionArgs>,
    ) -> std::result::Result<Json<HostInfoResult>, McpError> {
        let session = self.session(&args.session)?;
        let info = session.host_info().await?;
        Ok(Json(HostInfoResult {
            os: info.os,
            kernel: info.kernel,
            arch: info.arch,
            cpus: info.cpus,
            load: info.load.map(Vec::from),
            memory_total: info.memory_total,
            memory_available: info.memory_available,
            disks: info
                .disks
                .into_iter()
                .map(|d| DiskItem {
                    mount: d.mount,
                    size: d.size,
                    used: d.used,
                    available: d.available,
                })
                .collect(),
            uptime_s: info.uptime.map(|u| u.as_secs()),
        }))
    }
}

/// Whether `HOST:PORT` names a loopback host.
fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ExecManyItem {
    fn failed(session: &str, error: String) -> Self {
        ExecManyItem {
            session: session.to_string(),
            exit_code: None,
            output: String::new(),
            running: false,
            error: Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_listen_addresses_pass() {
        for ok in ["127.0.0.1:80", "127.1.2.3:0", "[::1]:8080", "localhost:1"] {
            assert!(is_loopback(ok), "{ok}");
        }
        for bad in ["0.0.0.0:1080", "[::]:1", "10.0.0.1:80", "example.com:80"] {
            assert!(!is_loopback(bad), "{bad}");
        }
    }
}
