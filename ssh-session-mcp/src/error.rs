//! The server's errors. Tool failures become MCP tool errors (`isError`) whose text says
//! what failed and what to do; startup failures end the process with that text.

use std::net::SocketAddr;

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use rmcp::ErrorData;

/// Everything that can fail in the MCP server.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The library refused or failed (its messages name the host/session and the fix).
    #[error(transparent)]
    Session(#[from] ssh_session_core::Error),
    /// The browser terminal refused or failed (its messages say what to do).
    #[error(transparent)]
    Web(#[from] ssh_session_web::WebError),
    /// The configuration file or flags are wrong.
    #[error("configuration: {detail}")]
    Config {
        /// What is wrong and where.
        detail: String,
    },
    /// The server's policy refuses the request.
    #[error("{detail}")]
    Policy {
        /// Which rule and what to do.
        detail: String,
    },
    /// A tool argument is out of range or malformed.
    #[error("invalid argument {name}: {detail}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// Why, and what is accepted.
        detail: String,
    },
    /// A command was issued while another one owns the session.
    #[error("session {session:?} is busy: `{command}` is still running (for {seconds:.1} s). Follow it with ssh_read_output, answer it with ssh_send_input, or stop it with ssh_interrupt (INT first; KILL if it ignores that; a shell that stopped answering is set up again or replaced); then run the next command")]
    Busy {
        /// The session.
        session: String,
        /// The running command.
        command: String,
        /// How long it has run.
        seconds: f64,
    },
    /// A person at the session's terminal is running a command or typing one.
    #[error("session {session:?} is busy: a person at its terminal ({terminal}) {what}. Their command is theirs: it is never interrupted or typed into for you. Try again once it has ended (ssh_session_status shows what runs), or ask them")]
    HumanBusy {
        /// The session.
        session: String,
        /// Where they are ("attach", "browser").
        terminal: String,
        /// "is running `make` (for 3.0 s)" or "is typing a command (`ls -` so far)".
        what: String,
    },
    /// Not run, once: a person ran commands at the session's terminal since this
    /// server's previous command there. The error's structured content lists them.
    #[error("session {session:?}: not run, because a person ran {} command(s) at its terminal since your last command: {}. The shell is now in {cwd:?}. Check that what you assumed (cwd, files, running jobs) still holds, then call ssh_exec again: it will run", .commands.len(), listed(.commands))]
    HumanActivity {
        /// The session.
        session: String,
        /// What they ran, oldest first.
        commands: Vec<ssh_session_core::HumanCommand>,
        /// The working directory now.
        cwd: String,
    },
    /// Input or an interrupt with no command running.
    #[error("session {session:?} has no running command; use ssh_exec to run one")]
    NotRunning {
        /// The session.
        session: String,
    },
    /// The link died while the command ran: its outcome is unknown.
    #[error("the connection was lost while `{command}` ran on session {session:?}; its outcome is unknown (it may have been killed, or finished unseen). The session reconnects by itself with cwd and exported variables restored; background jobs were lost. Output before the loss:\n{output}")]
    LinkLost {
        /// The session.
        session: String,
        /// The command.
        command: String,
        /// What it printed before the loss (rendered).
        output: String,
    },
    /// The HTTP listener could not start.
    #[error("cannot listen on {addr}: {source}; choose another port with --http 127.0.0.1:PORT")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving the protocol failed.
    #[error("MCP transport failed: {detail}")]
    Transport {
        /// Why.
        detail: String,
    },
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, McpError>;

impl From<McpError> for String {
    fn from(e: McpError) -> String {
        e.to_string()
    }
}

/// A tool error: its text says what failed and what to do. A refusal for human activity
/// also carries `{error, message, session, cwd, human_commands}` as structured content, so
/// an agent can read what the person did without parsing the sentence.
impl IntoCallToolResult for McpError {
    fn into_call_tool_result(self) -> std::result::Result<CallToolResponse, ErrorData> {
        let message = self.to_string();
        let result = match self {
            McpError::HumanActivity {
                session,
                commands,
                cwd,
            } => CallToolResult::structured_error(serde_json::json!({
                "error": "human_activity",
                "message": message,
                "session": session,
                "cwd": cwd,
                "human_commands": commands
                    .iter()
                    .map(crate::tools::results::HumanCommandItem::from)
                    .collect::<Vec<_>>(),
            })),
            // A guarded write that found the file changed: the current hash as a field, so
            // an agent can re-read and retry without parsing the sentence.
            McpError::Session(ssh_session_core::Error::File {
                path,
                problem: ssh_session_core::FileProblem::Changed { expected, current },
                ..
            }) => CallToolResult::structured_error(serde_json::json!({
                "error": "conflict",
                "message": message,
                "path": path,
                "expected_sha256": expected,
                "current_sha256": current,
            })),
            _ => CallToolResult::error(vec![ContentBlock::text(message)]),
        };
        Ok(result.into())
    }
}

/// `make` (exit 2, in "/src"); `cd /tmp` (exit 0, in "/tmp")
fn listed(commands: &[ssh_session_core::HumanCommand]) -> String {
    commands
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
