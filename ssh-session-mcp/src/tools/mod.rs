//! The MCP tools: a thin layer over one shared [`SessionManager`], so another front end
//! (a browser terminal, the CLI daemon) can drive the same sessions.

mod connect;
mod exec;
mod files;
mod handler;
mod net;
pub mod params;
pub mod results;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::RequestMetaObject;
use rmcp::{tool, tool_router, Peer, RoleServer};
use ssh_session_core::{Interrupt, Session, SessionManager};

use crate::config::Config;
use crate::error::McpError;
use crate::policy::{Policy, SessionRules};
use crate::Result;
use params::*;
use results::*;

/// Every tool's name, for the policy's `disabled_tools`.
pub const TOOL_NAMES: &[&str] = &[
    "ssh_connect",
    "ssh_exec",
    "ssh_read_output",
    "ssh_send_input",
    "ssh_interrupt",
    "ssh_cancel",
    "ssh_share",
    "ssh_disconnect",
    "ssh_list_sessions",
    "ssh_list_hosts",
    "ssh_session_status",
    "ssh_history",
    "ssh_read_file",
    "ssh_write_file",
    "ssh_list_dir",
    "ssh_upload",
    "ssh_download",
    "ssh_tunnel_open",
    "ssh_tunnel_list",
    "ssh_tunnel_close",
    "ssh_exec_many",
    "ssh_host_info",
];

/// Recorded in each history entry this server adds.
const SOURCE: &str = "mcp";

/// The MCP server: cheap to clone (every clone shares the sessions), as the streamable HTTP
/// transport makes one handler per client session.
#[derive(Clone)]
pub struct SshSessionServer {
    manager: SessionManager,
    config: Arc<Config>,
    policy: Arc<Policy>,
    /// Policy rules fixed per session when it connected, with that session's creation
    /// time: a same-named later session never inherits (or loses) another's rules.
    rules: Arc<Mutex<HashMap<String, (SystemTime, SessionRules)>>>,
    tool_router: ToolRouter<Self>,
    /// The browser terminal, when it is served (`--web`, `--http`).
    web: Option<ssh_session_web::Web>,
}

impl std::fmt::Debug for SshSessionServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSessionServer")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl SshSessionServer {
    /// A server over `manager`, configured by `config` (checked here).
    pub fn new(manager: SessionManager, config: Config) -> Result<Self> {
        let policy = config
            .check()
            .map_err(|detail| McpError::Config { detail })?;
        let mut tool_router = ToolRouter::new();
        for mut route in Self::tool_router() + Self::files_router() + Self::net_router() {
            if policy.disabled_tools.iter().any(|d| d == route.name()) {
                continue;
            }
            // The `$schema` URL repeated in twenty schemas costs an agent ~300 tokens on
            // every request and tells it nothing (JSON Schema 2020-12 is the MCP default).
            for schema in [
                Some(&mut route.attr.input_schema),
                route.attr.output_schema.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                Arc::make_mut(schema).remove("$schema");
            }
            // The whole list should cost an agent ≤ 5k tokens. Integer formats and
            // minimums (`uint64`, 0) tell it nothing a field's name and the server's own
            // argument errors don't (measured: 1.1 kB of 20 kB with 17 tools).
            let input = Arc::make_mut(&mut route.attr.input_schema);
            strip(input, &["format", "minimum"]);
            // An argument's own description already lists its values; the enum's
            // definitions need only the values.
            if let Some(serde_json::Value::Object(defs)) = input.get_mut("$defs") {
                defs.values_mut()
                    .for_each(|d| strip_value(d, &["description"]));
            }
            // Output fields are named for what they hold and the tool descriptions say how
            // to use them; their descriptions would double the list's size (measured:
            // 15.7 kB → 12 kB), and which are required is for validators, not agents.
            if let Some(schema) = route.attr.output_schema.as_mut() {
                let keys = ["description", "format", "minimum", "required"];
                strip(Arc::make_mut(schema), &keys);
            }
            tool_router.add_route(route);
        }
        Ok(SshSessionServer {
            manager,
            config: Arc::new(config),
            policy: Arc::new(policy),
            rules: Arc::default(),
            tool_router,
            web: None,
        })
    }

    /// The shared session manager.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// This server with the browser terminal `web` (over the same manager) behind
    /// `ssh_share`.
    pub fn with_web(mut self, web: ssh_session_web::Web) -> Self {
        self.web = Some(web);
        self
    }

    fn session(&self, name: &str) -> Result<ssh_session_core::ShellSession> {
        Ok(self.manager.get(name)?)
    }

    /// The policy rules of a session, fixed when it connected (matched against the host
    /// as the caller named it). Fails closed: a session whose rules are not recorded (a
    /// call racing its own `ssh_connect`) gets none of its tools' commands run.
    fn rules_of(&self, session: &ssh_session_core::ShellSession) -> Result<SessionRules> {
        let created = session.info().created;
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        match rules.get(session.name()) {
            Some((at, rules)) if *at == created => Ok(rules.clone()),
            _ => Err(McpError::Policy {
                detail: format!(
                    "session {:?} has no policy rules here yet: it is still being set up (retry in a moment), or it was opened outside this server",
                    session.name()
                ),
            }),
        }
    }

    /// Records the rules of a newly opened session.
    pub(super) fn record_rules(
        &self,
        session: &ssh_session_core::ShellSession,
        rules: SessionRules,
    ) {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session.name().to_string(), (session.info().created, rules));
    }

    fn cap(&self, requested: Option<usize>) -> usize {
        requested.unwrap_or(self.config.max_output_chars)
    }
}

/// Removes the schema keywords `keys` at every depth. Only keyword values are removed (a
/// string, number or list of names), never a property that happens to have such a name
/// (an object).
fn strip(map: &mut serde_json::Map<String, serde_json::Value>, keys: &[&str]) {
    for key in keys {
        if map.get(*key).is_some_and(|v| !v.is_object()) {
            map.remove(*key);
        }
    }
    map.values_mut().for_each(|v| strip_value(v, keys));
}

fn strip_value(value: &mut serde_json::Value, keys: &[&str]) {
    match value {
        serde_json::Value::Object(map) => strip(map, keys),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| strip_value(v, keys)),
        _ => {}
    }
}

fn ms(value: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(value.unwrap_or(default))
}

fn parse_signal(signal: Option<&str>) -> Result<Interrupt> {
    signal
        .map_or(Ok(Interrupt::Int), str::parse)
        .map_err(|detail| McpError::InvalidArgument {
            name: "signal",
            detail,
        })
}

#[tool_router]
impl SshSessionServer {
    /// Opens a named persistent shell on a host.
    #[tool(
        description = "Open a named shell on a host; cwd, env and jobs persist across ssh_exec calls.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn ssh_connect(
        &self,
        Parameters(args): Parameters<ConnectArgs>,
    ) -> std::result::Result<Json<ConnectResult>, String> {
        Ok(Json(self.connect(args).await?))
    }

    /// Runs a command in a session.
    #[tool(
        description = "Run a command in the session's shell; returns output and exit code. On timeout returns running: true and the command keeps running.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn ssh_exec(
        &self,
        Parameters(args): Parameters<ExecArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> std::result::Result<Json<results::ExecResult>, McpError> {
        let progress = meta.get_progress_token().map(|token| (peer, token));
        Ok(Json(self.exec(args, progress).await?))
    }

    /// Stops the running command however it takes.
    #[tool(
        description = "Stop the running command however it takes: INT, TERM, KILL, a new shell (cwd, exports restored), a new connection; returns the steps. Never hangs.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn ssh_cancel(
        &self,
        Parameters(args): Parameters<SessionArgs>,
    ) -> std::result::Result<Json<CancelResult>, String> {
        let session = self.session(&args.session)?;
        let report = session.stop_command().await.map_err(map_core)?;
        let render = self.render_options(None, None);
        let rendered =
            crate::render::render(&report.result.output, report.result.dropped_bytes, render);
        Ok(Json(CancelResult {
            tried: report.tried.iter().map(ToString::to_string).collect(),
            steps: report.steps,
            shell_replaced: report.shell_replaced,
            connection_restarted: report.connection_restarted,
            state: report.result.state.name().to_string(),
            exit_code: report.result.exit_code,
            cwd: report.result.cwd,
            output: rendered.text,
            truncated: rendered.truncated,
        }))
    }

    /// A login link for a person to join a session's terminal in their browser.
    #[tool(
        description = "A one-time login link for a person to join this session's terminal in their browser (watch, type a password, take over).",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn ssh_share(
        &self,
        Parameters(args): Parameters<ShareArgs>,
    ) -> std::result::Result<Json<ShareResult>, McpError> {
        let Some(web) = &self.web else {
            return Err(McpError::Policy {
                detail: "the browser terminal is off on this server: start ssh-session-mcp with --web (stdio) or --http (it serves the pages on the same address)".into(),
            });
        };
        self.session(&args.session)?;
        let share = web.share(Some(&args.session), args.read_only.unwrap_or(false))?;
        Ok(Json(ShareResult {
            url: share.url,
            expires_at: timestamp(share.expires_at),
            read_only: share.read_only,
        }))
    }

    /// Output of the running or last command since the previous result.
    #[tool(
        description = "New output of the running (or last) command; waits up to wait_ms, returning early when it ends. screen: true adds the terminal screen.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn ssh_read_output(
        &self,
        Parameters(args): Parameters<ReadArgs>,
    ) -> std::result::Result<Json<ReadResult>, String> {
        let session = self.session(&args.session)?;
        let render = self.render_options(args.raw, args.max_output_chars);
        Ok(Json(
            self.read(
                &session,
                ms(args.wait_ms, 0),
                args.screen.unwrap_or(false),
                render,
            )
            .await?,
        ))
    }

    /// Types into the running program.
    #[tool(
        description = "Send text to the running program (\"\\n\" is Enter, \"\\u0003\" Ctrl-C; secret: true for a password), then return new output like ssh_read_output.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn ssh_send_input(
        &self,
        Parameters(args): Parameters<SendInputArgs>,
    ) -> std::result::Result<Json<ReadResult>, String> {
        let session = self.session(&args.session)?;
        self.rules_of(&session)?
            .check_input(&args.input)
            .map_err(|detail| McpError::Policy { detail })?;
        session
            .send_input(args.input.as_bytes())
            .await
            .map_err(map_core)?;
        let render = self.render_options(None, None);
        let mut read = self
            .read(
                &session,
                ms(args.wait_ms, 500),
                args.screen.unwrap_or(false),
                render,
            )
            .await?;
        if args.secret.unwrap_or(false) {
            // The terminal's echo is off on the agent's path and password prompts switch
            // it off too; a program that echoes anyway must not hand the secret back.
            let secret = args.input.trim_end_matches(['\r', '\n']);
            // Shorter text than this is too common to replace in output (a "y" answer).
            if secret.chars().count() >= 4 {
                read.output = read.output.replace(secret, "[secret]");
                read.screen = read.screen.map(|s| s.replace(secret, "[secret]"));
            }
        }
        Ok(Json(read))
    }

    /// Stops or signals the running command.
    #[tool(
        description = "Signal the running command: INT (Ctrl-C, default), TERM, KILL or EOF (Ctrl-D); returns like ssh_read_output.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn ssh_interrupt(
        &self,
        Parameters(args): Parameters<InterruptArgs>,
    ) -> std::result::Result<Json<ReadResult>, String> {
        let how = parse_signal(args.signal.as_deref())?;
        let session = self.session(&args.session)?;
        session.interrupt(how).await.map_err(map_core)?;
        let render = self.render_options(None, None);
        Ok(Json(
            self.read(&session, ms(args.wait_ms, 1000), false, render)
                .await?,
        ))
    }

    /// Closes a session.
    #[tool(
        description = "Close a session. A persistent session's remote tmux session is killed unless keep_remote: true.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn ssh_disconnect(
        &self,
        Parameters(args): Parameters<DisconnectArgs>,
    ) -> std::result::Result<Json<DisconnectResult>, String> {
        let info = self.session(&args.session)?.info();
        let created = info.created;
        // Only a shell in a remote tmux session can outlive the connection: elsewhere
        // keep_remote cannot be honoured, and the answer must not pretend it was.
        let asked = args.keep_remote.unwrap_or(false);
        let keep = asked && info.persistent;
        let mut notices = Vec::new();
        if asked && !keep {
            notices.push(format!(
                "keep_remote was ignored: session {:?} is not persistent (no remote tmux session), so its shell and anything it ran were ended; connect with persistent: true to keep a shell across disconnects",
                args.session
            ));
        }
        let result = if keep {
            self.manager.detach(&args.session).await
        } else {
            self.manager.close(&args.session).await
        };
        result.map_err(McpError::from)?;
        // Only this session's entry: a same-named session opened meanwhile keeps its own.
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, (at, _)| !(name == &args.session && *at == created));
        Ok(Json(DisconnectResult {
            session: args.session,
            kept_remote: keep,
            notices,
        }))
    }

    /// Lists the open sessions.
    #[tool(
        description = "List open sessions with status, cwd and running command.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn ssh_list_sessions(
        &self,
        Parameters(_): Parameters<NoArgs>,
    ) -> std::result::Result<Json<SessionList>, String> {
        Ok(Json(SessionList {
            sessions: self.manager.list().into_iter().map(Into::into).collect(),
        }))
    }

    /// Lists the configured host aliases.
    #[tool(
        description = "List host aliases from ~/.ssh/config (usable as ssh_connect host).",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn ssh_list_hosts(
        &self,
        Parameters(_): Parameters<NoArgs>,
    ) -> std::result::Result<Json<HostList>, String> {
        let file = self
            .config
            .ssh_config
            .as_deref()
            .map(crate::config::expand_home);
        let aliases = ssh_session_core::list_host_aliases(file.as_deref())
            .await
            .map_err(McpError::from)?;
        Ok(Json(HostList {
            hosts: aliases
                .into_iter()
                .map(|a| HostEntry {
                    alias: a.alias,
                    host_name: a.host_name,
                    user: a.user,
                    port: a.port,
                    proxy_jump: a.proxy_jump,
                })
                .collect(),
        }))
    }

    /// One session's connection health.
    #[tool(
        description = "A session's status: connected/reconnecting/error/closed, last error, reconnects, cwd, running command.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn ssh_session_status(
        &self,
        Parameters(args): Parameters<SessionArgs>,
    ) -> std::result::Result<Json<StatusResult>, String> {
        Ok(Json(self.session(&args.session)?.info().into()))
    }

    /// The session's recent commands.
    #[tool(
        description = "Recent commands of a session, oldest first: exit code, duration, cwd, and source (a program, or a person at the terminal).",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn ssh_history(
        &self,
        Parameters(args): Parameters<HistoryArgs>,
    ) -> std::result::Result<Json<HistoryResult>, String> {
        let history = self.session(&args.session)?.history();
        let limit = args.limit.unwrap_or(50);
        let skip = history.len().saturating_sub(limit);
        Ok(Json(HistoryResult {
            entries: history.into_iter().skip(skip).map(Into::into).collect(),
        }))
    }
}

/// Core errors, with MCP wording where the tool names matter (what to call next).
pub(super) fn map_core(e: ssh_session_core::Error) -> McpError {
    match e {
        ssh_session_core::Error::Busy {
            session,
            command,
            running_for,
        } => McpError::Busy {
            session,
            command,
            seconds: running_for.as_secs_f64(),
        },
        ssh_session_core::Error::HumanBusy {
            session,
            terminal,
            command,
            typing,
            running_for,
        } => McpError::HumanBusy {
            session,
            terminal,
            what: if typing {
                format!("is typing a command (`{command}` so far)")
            } else {
                format!(
                    "is running `{command}` (for {:.1} s)",
                    running_for.as_secs_f64()
                )
            },
        },
        ssh_session_core::Error::HumanActivity {
            session,
            commands,
            cwd,
        } => McpError::HumanActivity {
            session,
            commands,
            cwd,
        },
        ssh_session_core::Error::NotRunning { session } => McpError::NotRunning { session },
        other => McpError::Session(other),
    }
}
