//! Tool arguments: our public interface. Field names are stable; doc comments become the
//! schema descriptions an agent reads, so they are short.

use schemars::JsonSchema;
use serde::Deserialize;

/// `ssh_connect`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectArgs {
    /// Session name: 1-64 of A-Z a-z 0-9 . _ -
    pub name: String,
    /// ~/.ssh/config alias or `[user@]host[:port]`
    pub host: String,
    /// Remote user (overrides host)
    pub user: Option<String>,
    /// Port (overrides host)
    pub port: Option<u16>,
    /// Private key file
    pub identity_file: Option<String>,
    /// "russh" (default) or "openssh"
    pub transport: Option<String>,
    /// Shell in remote tmux: survives drops and restarts; re-adopts one of this name
    pub persistent: Option<bool>,
    /// Terminal columns (default 200)
    pub cols: Option<u16>,
    /// Terminal rows (default 50)
    pub rows: Option<u16>,
}

/// `ssh_exec`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// Session name
    pub session: String,
    /// Shell command line
    pub command: String,
    /// Return after this long with running: true (default 30000)
    pub timeout_ms: Option<u64>,
    /// Output cap, head and tail kept (default 30000)
    pub max_output_chars: Option<usize>,
    /// Bytes as the terminal got them, escape sequences kept
    pub raw: Option<bool>,
    /// If a person ran commands at the terminal since your last one: "refuse_once" (default: error listing them; retrying runs), "report" (in notices) or "ignore"
    pub human_activity: Option<HumanActivityArg>,
}

/// What `ssh_exec` does about commands a person ran at the session's terminal.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HumanActivityArg {
    /// Refuse once, listing them.
    RefuseOnce,
    /// Run, with them in the notices.
    Report,
    /// Run, saying nothing.
    Ignore,
}

impl From<HumanActivityArg> for ssh_session_core::HumanActivity {
    fn from(a: HumanActivityArg) -> Self {
        match a {
            HumanActivityArg::RefuseOnce => ssh_session_core::HumanActivity::RefuseOnce,
            HumanActivityArg::Report => ssh_session_core::HumanActivity::Report,
            HumanActivityArg::Ignore => ssh_session_core::HumanActivity::Ignore,
        }
    }
}

/// `ssh_read_output`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// Session name
    pub session: String,
    /// Wait up to this long for it to end (default 0)
    pub wait_ms: Option<u64>,
    /// Also return the terminal screen as text
    pub screen: Option<bool>,
    /// Output cap (default 30000)
    pub max_output_chars: Option<usize>,
    /// Bytes as the terminal got them
    pub raw: Option<bool>,
}

/// `ssh_send_input`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendInputArgs {
    /// Session name
    pub session: String,
    /// Exact text to type: "\n" is Enter, "\u0003" Ctrl-C
    pub input: String,
    /// A password: kept out of the result
    pub secret: Option<bool>,
    /// Then wait up to this long (default 500)
    pub wait_ms: Option<u64>,
    /// Also return the terminal screen as text
    pub screen: Option<bool>,
}

/// `ssh_interrupt`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterruptArgs {
    /// Session name
    pub session: String,
    /// "INT" (Ctrl-C, default), "TERM", "KILL" or "EOF" (Ctrl-D)
    pub signal: Option<String>,
    /// Then wait up to this long (default 1000)
    pub wait_ms: Option<u64>,
}

/// `ssh_disconnect`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectArgs {
    /// Session name
    pub session: String,
    /// Persistent sessions: leave the remote tmux session running
    pub keep_remote: Option<bool>,
}

/// `ssh_session_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionArgs {
    /// Session name
    pub session: String,
}

/// `ssh_share`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareArgs {
    /// Session name
    pub session: String,
    /// The person may only watch
    pub read_only: Option<bool>,
}

/// `ssh_history`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    /// Session name
    pub session: String,
    /// Most recent entries to return (default 50)
    pub limit: Option<usize>,
}

/// Tools without arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// `ssh_read_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileArgs {
    /// Session name
    pub session: String,
    /// Remote path; relative to the session's cwd
    pub path: String,
    /// First byte (default 0)
    pub offset: Option<u64>,
    /// Most bytes to return (default 30000, at most 8 MiB)
    pub limit: Option<u64>,
}

/// `ssh_write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileArgs {
    /// Session name
    pub session: String,
    /// Remote path; relative to the session's cwd
    pub path: String,
    /// The whole new content
    pub content: String,
    /// "utf-8" (default) or "base64"
    pub encoding: Option<String>,
    /// Refuse unless the file still has this sha256 (from ssh_read_file)
    pub expected_sha256: Option<String>,
    /// Octal mode such as "644" (default: the replaced file's, else 644)
    pub mode: Option<String>,
    /// Create missing parent directories
    pub create_dirs: Option<bool>,
}

/// `ssh_list_dir`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDirArgs {
    /// Session name
    pub session: String,
    /// Remote directory (default: the session's cwd)
    pub path: Option<String>,
}

/// `ssh_upload`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadArgs {
    /// Session name
    pub session: String,
    /// Absolute local file or directory, under the client's roots
    pub local_path: String,
    /// Remote target; relative to the session's cwd
    pub remote_path: String,
}

/// `ssh_download`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadArgs {
    /// Session name
    pub session: String,
    /// Remote file or directory; relative to the session's cwd
    pub remote_path: String,
    /// Absolute local target, under the client's roots
    pub local_path: String,
}

/// `ssh_tunnel_open`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TunnelOpenArgs {
    /// Session name
    pub session: String,
    /// "local", "socks" or "remote"
    pub kind: String,
    /// "HOST:PORT" to listen on (default 127.0.0.1, a free port)
    pub listen: Option<String>,
    /// "HOST:PORT" to connect to (not for socks)
    pub target: Option<String>,
}

/// `ssh_tunnel_close`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TunnelCloseArgs {
    /// Tunnel id from ssh_tunnel_open
    pub id: String,
}

/// `ssh_exec_many`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecManyArgs {
    /// Session names
    pub sessions: Vec<String>,
    /// Shell command line
    pub command: String,
    /// Per session, like ssh_exec (default 30000)
    pub timeout_ms: Option<u64>,
}
