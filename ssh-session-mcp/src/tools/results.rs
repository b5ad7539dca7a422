//! Tool results (structured content with an output schema): our public interface.

use std::time::SystemTime;

use schemars::JsonSchema;
use serde::Serialize;
use ssh_session_core::{HistoryEntry, SessionInfo, SessionStatus};

/// `ssh_connect`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectResult {
    /// Session name
    pub name: String,
    /// Host connected to
    pub host: String,
    /// Remote user
    pub user: String,
    /// Port
    pub port: u16,
    /// "russh" or "openssh"
    pub transport: String,
    /// Shell in remote tmux
    pub persistent: bool,
    /// A surviving persistent session was re-adopted
    pub resumed: bool,
    /// "connected"
    pub status: String,
    /// Working directory
    pub cwd: String,
}

/// `ssh_exec`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecResult {
    /// Output (stdout and stderr as the terminal showed them)
    pub output: String,
    /// Exit code; null while running
    pub exit_code: Option<i32>,
    /// Still running: use ssh_read_output, ssh_send_input or ssh_interrupt
    pub running: bool,
    /// Working directory after the command
    pub cwd: String,
    /// Time since the command started
    pub duration_ms: u64,
    /// Output was left out (see the marker in output)
    pub truncated: bool,
    /// Bytes the command printed in total
    pub output_bytes: u64,
    /// The shell itself exited (e.g. `exit`); the next command starts a new one
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shell_exited: bool,
    /// Things that happened on the way (reconnected, shell restarted, ...)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// Waiting for a "password", "passphrase" or "pin": answer with ssh_send_input secret: true
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The prompt it waits at
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// `ssh_read_output`, `ssh_send_input`, `ssh_interrupt`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReadResult {
    /// Output new since the last result
    pub output: String,
    /// Still running
    pub running: bool,
    /// Exit code once ended
    pub exit_code: Option<i32>,
    /// Working directory
    pub cwd: String,
    /// Output was left out
    pub truncated: bool,
    /// The terminal screen, rows joined by newlines (when asked for)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screen: Option<String>,
    /// The shell itself exited
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shell_exited: bool,
    /// Things that happened on the way
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// Waiting for a "password", "passphrase" or "pin": answer with ssh_send_input secret: true
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The prompt it waits at
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// `ssh_disconnect`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DisconnectResult {
    /// Session name
    pub session: String,
    /// The remote tmux session was left running
    pub kept_remote: bool,
    /// Things worth knowing (keep_remote ignored)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
}

/// One entry of `ssh_list_sessions`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionSummary {
    /// Session name
    pub name: String,
    /// Host
    pub host: String,
    /// Remote user
    pub user: String,
    /// "russh" or "openssh"
    pub transport: String,
    /// Shell in remote tmux
    pub persistent: bool,
    /// connecting, connected, reconnecting, error or closed
    pub status: String,
    /// Working directory
    pub cwd: String,
    /// The running command, if any
    pub running: Option<String>,
    /// Last command start or output (RFC 3339)
    pub last_activity: String,
    /// Commands run
    pub commands: u64,
}

/// `ssh_list_sessions`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionList {
    /// Open sessions
    pub sessions: Vec<SessionSummary>,
}

/// One `~/.ssh/config` host.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HostEntry {
    /// Alias to pass as host
    pub alias: String,
    /// Real host name
    pub host_name: Option<String>,
    /// User
    pub user: Option<String>,
    /// Port
    pub port: Option<u16>,
    /// Jump hosts
    pub proxy_jump: Option<String>,
}

/// `ssh_list_hosts`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HostList {
    /// Hosts from ~/.ssh/config
    pub hosts: Vec<HostEntry>,
}

/// `ssh_session_status`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatusResult {
    /// Session name
    pub name: String,
    /// connecting, connected, reconnecting, error or closed
    pub status: String,
    /// While reconnecting: this attempt and the most there will be
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// See attempt
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of: Option<u32>,
    /// Last error
    pub last_error: Option<String>,
    /// When (RFC 3339)
    pub last_error_at: Option<String>,
    /// Successful reconnections
    pub reconnects: u32,
    /// Connected since (RFC 3339)
    pub connected_since: Option<String>,
    /// Last activity (RFC 3339)
    pub last_activity: String,
    /// Working directory
    pub cwd: String,
    /// The running command, if any
    pub running: Option<String>,
}

/// One `ssh_history` entry.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoryItem {
    /// Command line
    pub command: String,
    /// Exit code (null while running or if the shell died)
    pub exit_code: Option<i32>,
    /// Start (RFC 3339)
    pub started_at: String,
    /// Run time (null while running)
    pub duration_ms: Option<u64>,
    /// Who ran it: a program ("mcp", "cli", "api") or a person at the terminal ("attach", "browser")
    pub source: String,
    /// Working directory it left the shell in
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// A command a person ran at the session's terminal, in an `ssh_exec` refusal.
#[derive(Debug, Serialize)]
pub struct HumanCommandItem {
    /// Command line, as their shell recorded it
    pub command: String,
    /// Exit code (null if it still runs)
    pub exit_code: Option<i32>,
    /// Working directory it left the shell in
    pub cwd: String,
    /// Start (RFC 3339)
    pub started_at: String,
    /// Run time (null while running)
    pub duration_ms: Option<u64>,
    /// Its output, shortened to the first and last kilobyte or so, escape sequences removed
    pub output: String,
    /// The terminal it was typed at ("attach", "browser")
    pub source: String,
}

impl From<&ssh_session_core::HumanCommand> for HumanCommandItem {
    fn from(c: &ssh_session_core::HumanCommand) -> Self {
        HumanCommandItem {
            command: c.command.clone(),
            exit_code: c.exit_code,
            cwd: c.cwd.clone(),
            started_at: timestamp(c.started_at),
            duration_ms: c.duration.map(|d| d.as_millis() as u64),
            // As the person's terminal showed it: cleaned like every output for an agent.
            output: crate::render::clean(c.output.as_bytes()),
            source: c.source.clone(),
        }
    }
}

/// `ssh_share`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShareResult {
    /// The login link for the person: it works once, until expires_at
    pub url: String,
    /// When the link stops working (RFC 3339)
    pub expires_at: String,
    /// Whether the link only lets them watch
    pub read_only: bool,
}

/// `ssh_cancel`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CancelResult {
    /// Signals sent, in order: "INT", "TERM", "KILL"
    pub tried: Vec<String>,
    /// Every step taken, in words, in order
    pub steps: Vec<String>,
    /// The shell was killed and a new one started (cwd and exported variables restored; jobs lost)
    pub shell_replaced: bool,
    /// The connection was dropped and made again
    pub connection_restarted: bool,
    /// How the command ended: "exited", "killed", "untracked", "shell_exited", ...
    pub state: String,
    /// Its exit code, if it had one
    pub exit_code: Option<i32>,
    /// Working directory now
    pub cwd: String,
    /// Output not returned before
    pub output: String,
    /// Output was left out
    pub truncated: bool,
}

/// `ssh_history`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoryResult {
    /// Oldest first
    pub entries: Vec<HistoryItem>,
}

/// RFC 3339 with milliseconds, UTC.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl From<SessionInfo> for SessionSummary {
    fn from(i: SessionInfo) -> Self {
        SessionSummary {
            name: i.name,
            host: i.host,
            user: i.user,
            transport: i.transport.name().into(),
            persistent: i.persistent,
            status: i.status.name().into(),
            cwd: i.cwd,
            running: i.running,
            last_activity: timestamp(i.last_activity),
            commands: i.command_count,
        }
    }
}

impl From<SessionInfo> for StatusResult {
    fn from(i: SessionInfo) -> Self {
        let (attempt, of) = match i.status {
            SessionStatus::Reconnecting { attempt, of } => (Some(attempt), Some(of)),
            _ => (None, None),
        };
        let (last_error, last_error_at) = match (&i.status, i.last_error) {
            (SessionStatus::Error { detail, at }, _) => {
                (Some(detail.clone()), Some(timestamp(*at)))
            }
            (_, Some((detail, at))) => (Some(detail), Some(timestamp(at))),
            (_, None) => (None, None),
        };
        StatusResult {
            name: i.name,
            status: i.status.name().into(),
            attempt,
            of,
            last_error,
            last_error_at,
            reconnects: i.reconnects,
            connected_since: i.connected_since.map(timestamp),
            last_activity: timestamp(i.last_activity),
            cwd: i.cwd,
            running: i.running,
        }
    }
}

impl From<HistoryEntry> for HistoryItem {
    fn from(h: HistoryEntry) -> Self {
        HistoryItem {
            command: h.command,
            exit_code: h.exit_code,
            started_at: timestamp(h.started_at),
            duration_ms: h.duration.map(|d| d.as_millis() as u64),
            source: h.source,
            cwd: h.cwd,
        }
    }
}

/// `ssh_read_file`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReadFileResult {
    /// The bytes read, as text or base64
    pub content: String,
    /// "utf-8" or "base64"
    pub encoding: String,
    /// The whole file's size
    pub size: u64,
    /// The whole file's sha256 (null for a partial read of a file over 64 MiB)
    pub sha256: Option<String>,
    /// Octal mode
    pub mode: String,
    /// More bytes follow: read on with offset
    pub truncated: bool,
}

/// `ssh_write_file`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WriteFileResult {
    /// The file written (absolute)
    pub path: String,
    /// Its size
    pub size: u64,
    /// Its sha256
    pub sha256: String,
}

/// `ssh_list_dir`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListDirResult {
    /// Entries by name
    pub entries: Vec<DirEntryItem>,
}

/// One `ssh_list_dir` entry.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DirEntryItem {
    /// Name
    pub name: String,
    /// "file", "dir", "symlink" or "other"
    #[serde(rename = "type")]
    pub r#type: String,
    /// Size in bytes
    pub size: u64,
    /// Octal mode
    pub mode: String,
    /// Last modification
    pub modified: Option<String>,
}

/// `ssh_upload` and `ssh_download`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TransferResult {
    /// Bytes copied
    pub bytes: u64,
    /// Files copied
    pub files: u64,
    /// The file's sha256, when one file was copied
    pub sha256: Option<String>,
    /// How long it took
    pub duration_ms: u64,
}

/// `ssh_tunnel_open`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TunnelOpenResult {
    /// Tunnel id
    pub id: String,
    /// Where it listens, HOST:PORT
    pub listen: String,
    /// Where it connects (null for socks)
    pub target: Option<String>,
}

/// `ssh_tunnel_list`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TunnelList {
    /// Open tunnels
    pub tunnels: Vec<TunnelItem>,
}

/// One tunnel.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TunnelItem {
    /// Id
    pub id: String,
    /// Session
    pub session: String,
    /// local, socks or remote
    pub kind: String,
    /// Listening address
    pub listen: String,
    /// Target
    pub target: Option<String>,
    /// Bytes from the target back
    pub bytes_in: u64,
    /// Bytes to the target
    pub bytes_out: u64,
    /// Last failure
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `ssh_tunnel_close`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TunnelCloseResult {
    /// The closed tunnel
    pub id: String,
}

/// `ssh_exec_many`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecManyResult {
    /// One per session, in the order given
    pub results: Vec<ExecManyItem>,
}

/// One session's part of `ssh_exec_many`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecManyItem {
    /// Session
    pub session: String,
    /// Exit code; null while running or on error
    pub exit_code: Option<i32>,
    /// Output
    pub output: String,
    /// Still running at the timeout
    pub running: bool,
    /// Why it did not run
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `ssh_host_info`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HostInfoResult {
    /// Distribution
    pub os: String,
    /// Kernel name and release
    pub kernel: String,
    /// Architecture
    pub arch: String,
    /// Online CPUs
    pub cpus: Option<u32>,
    /// Load over 1, 5, 15 minutes
    pub load: Option<Vec<f64>>,
    /// Bytes
    pub memory_total: Option<u64>,
    /// Bytes
    pub memory_available: Option<u64>,
    /// Real file systems
    pub disks: Vec<DiskItem>,
    /// Seconds since boot
    pub uptime_s: Option<u64>,
}

/// One file system.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiskItem {
    /// Mount point
    pub mount: String,
    /// Bytes
    pub size: u64,
    /// Bytes
    pub used: u64,
    /// Bytes
    pub available: u64,
}
