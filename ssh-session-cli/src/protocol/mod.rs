//! The client ↔ daemon protocol: newline-delimited JSON over a Unix socket.
//!
//! Every connection starts with the client's [`Hello`]; the daemon answers with its own
//! `Hello` before anything else, so a client always learns the daemon's versions even when
//! they differ (it then refuses to go on, see [`Hello::compatible_with`]). The client
//! sends its first request only once the daemon's hello has arrived and matched: two
//! round trips per command, so that nothing is ever asked of a daemon of another version.
//!
//! After the hello a connection carries requests, each answered by one or more
//! [`Response`]s: any number of `Output`s, then exactly one other response. `Attach`
//! turns the connection into a two-way stream of [`AttachInput`] and `Response`s until the
//! client detaches. Byte payloads travel base64-encoded so binary output stays exact.

mod remote;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub(crate) use remote::{CopySpec, CopyView, Direction, ManyView, TunnelView};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use ssh_session_core::{
    ExecResult, HistoryEntry, HostAlias, Interrupt, SessionInfo, SessionStatus,
};

/// Bumped whenever a message changes shape: a client and a daemon that disagree on it
/// refuse to talk.
pub(crate) const PROTOCOL_VERSION: u32 = 5;

/// This crate's version, carried in the hello so a mismatch can be named.
pub(crate) const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first message in each direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol: u32,
    /// [`CRATE_VERSION`] of the sender.
    pub version: String,
    /// The daemon's pid (0 from a client): lets a client restart an outdated daemon.
    #[serde(default)]
    pub pid: u32,
    /// Sessions the daemon holds (0 from a client): an outdated daemon is only
    /// restarted when this is 0, so no session is ever lost to an upgrade.
    #[serde(default)]
    pub sessions: usize,
}

impl Hello {
    /// The hello this process sends as a client.
    pub(crate) fn client() -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            version: CRATE_VERSION.to_string(),
            pid: 0,
            sessions: 0,
        }
    }

    /// Whether a peer that sent `self` can be talked to by this build. The crate version
    /// must match too: a daemon from another build could run sessions with other defaults,
    /// which would be confusing even if the messages still parsed.
    pub(crate) fn compatible_with(&self, ours: &Hello) -> bool {
        self.protocol == ours.protocol && self.version == ours.version
    }
}

/// The connection options of `connect`, as the client resolved them from its command line
/// and environment. Paths are absolute: the daemon runs in another directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConnectSpec {
    /// `[user@]host[:port]` or a `~/.ssh/config` alias.
    pub target: String,
    /// Overrides the user of `target` and of the config.
    pub user: Option<String>,
    /// Overrides the port of `target` and of the config.
    pub port: Option<u16>,
    /// Private keys to offer first, before the config's (as `ssh -i`).
    pub identities: Vec<PathBuf>,
    /// `russh` or `openssh`.
    pub transport: Option<String>,
    /// Run the shell in remote tmux (survives dropped links and daemon restarts).
    pub persistent: bool,
    /// The ssh config file (`None`: `~/.ssh/config`).
    pub ssh_config: Option<PathBuf>,
    /// The known_hosts file (`None`: the config's or `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Do not use the ssh-agent.
    pub no_agent: bool,
    /// Connect timeout in milliseconds (`None`: the config's or 10 s).
    pub connect_timeout_ms: Option<u64>,
    /// The client's `SSH_AUTH_SOCK` (`None`: it has no agent). The daemon may have been
    /// started from another shell, so its own environment does not say which agent to use.
    #[serde(default)]
    pub agent_socket: Option<PathBuf>,
}

/// What a client asks of the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Opens a session. Answer: `Session`.
    Connect {
        /// The session's name.
        name: String,
        /// Where and how.
        spec: ConnectSpec,
    },
    /// Runs a command. Answers: `Notice`* (what people ran at the terminal since this
    /// source's last command), `Output`*, then `Result` (running if the timeout expired).
    Exec {
        /// The session.
        name: String,
        /// The command line.
        command: String,
        /// Give up waiting after this long (the command keeps running).
        timeout_ms: u64,
        /// Who runs it (`cli:/dev/pts/3`: the client's terminal), recorded in history;
        /// commands a person ran at an attached terminal since this source's last
        /// command are reported to it. Default `cli`.
        #[serde(default)]
        source: Option<String>,
    },
    /// Output of the running or last command. Answer: `Result`, or `Screen`.
    Read {
        /// The session.
        name: String,
        /// Wait up to this long for the command to finish.
        wait_ms: u64,
        /// Return the terminal screen as text instead.
        screen: bool,
    },
    /// Bytes to the running command's terminal. Answer: `Done`.
    Send {
        /// The session.
        name: String,
        /// The bytes, base64.
        data: String,
    },
    /// Interrupts the running command. Answer: `Done`.
    Interrupt {
        /// The session.
        name: String,
        /// `INT`, `TERM`, `KILL` or `EOF`.
        #[serde(with = "interrupt_name")]
        signal: Interrupt,
    },
    /// Takes over the connection for the session's terminal. Answer: `Attached`, then a
    /// stream of `Output` (the screen first) and `Notice`, ended by `Ended`; the client
    /// sends [`AttachInput`]s meanwhile.
    Attach {
        /// The session.
        name: String,
        /// The local terminal's width.
        cols: u16,
        /// The local terminal's height.
        rows: u16,
    },
    /// Every session. Answer: `Sessions`.
    List,
    /// One session. Answer: `Session`.
    Status {
        /// The session.
        name: String,
    },
    /// A session's commands. Answer: `History`.
    History {
        /// The session.
        name: String,
    },
    /// A one-time login link to the session's browser terminal (the daemon starts serving
    /// it on a free loopback port the first time). Answer: `Share`.
    Share {
        /// The session.
        name: String,
        /// The link only lets its opener watch.
        #[serde(default)]
        read_only: bool,
    },
    /// Closes a session. Answer: `Done`.
    Close {
        /// The session.
        name: String,
    },
    /// Copies a file or tree between this machine and a session's host. Answers:
    /// `Progress`*, then `Copied`.
    Copy(CopySpec),
    /// Opens a tunnel on a session. Answer: `Tunnel`.
    Forward {
        /// The session.
        name: String,
        /// `local`, `socks` or `remote`.
        kind: String,
        /// `HOST:PORT` to listen on (default a free loopback port).
        listen: Option<String>,
        /// `HOST:PORT` to connect to.
        target: Option<String>,
    },
    /// Closes a tunnel. Answer: `Done`.
    CloseForward {
        /// Its id.
        id: String,
    },
    /// Runs one command on several sessions at once. Answer: `Many`.
    ExecMany {
        /// The sessions, in the order to report them.
        names: Vec<String>,
        /// The command line.
        command: String,
        /// Each session's timeout.
        timeout_ms: u64,
        /// Who runs it, as for `Exec`.
        #[serde(default)]
        source: Option<String>,
    },
    /// Stops the daemon: closes its sessions (detaching persistent ones, whose remote
    /// shells keep running). Answer: `Done`, once they are closed.
    Shutdown,
}

/// Core's [`Interrupt`] on the wire: its name (`INT`, `TERM`, `KILL`, `EOF`).
pub(crate) mod interrupt_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use ssh_session_core::Interrupt;

    /// Writes the name.
    pub(crate) fn serialize<S: Serializer>(how: &Interrupt, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(how.signal_name())
    }

    /// Reads a name core accepts.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Interrupt, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What an attached client sends after `Attach`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum AttachInput {
    /// Keystrokes for the terminal, exactly as typed (base64): the shell's line editor
    /// or whatever runs in the foreground gets them.
    Input {
        /// The bytes, base64.
        data: String,
    },
    /// The local terminal changed size.
    Resize {
        /// Width.
        cols: u16,
        /// Height.
        rows: u16,
    },
    /// The client leaves; the session and its running command go on.
    Detach,
}

/// Why a request failed, so the client can pick an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    /// Bad input: invalid name, a command that cannot be typed.
    Invalid,
    /// No such session.
    UnknownSession,
    /// The name is taken.
    Duplicate,
    /// A command is running (or none is, for send/interrupt).
    Busy,
    /// The host could not be reached or the link failed.
    Connect,
    /// Authentication or host key verification failed.
    Auth,
    /// The ssh config could not be used.
    Config,
    /// The session is closed, disconnected or reconnecting.
    Disconnected,
    /// The daemon refused the client (another user).
    Daemon,
    /// The daemon is stopping and did not start the request: running it again starts a
    /// new daemon, so the client retries once.
    ShuttingDown,
    /// Anything else.
    Other,
}

/// A daemon's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Response {
    /// The daemon's hello.
    Hello(Hello),
    /// Success without data.
    Done,
    /// Output bytes (base64), streamed as they arrive.
    Output {
        /// The bytes, base64.
        data: String,
    },
    /// A command's outcome (its streamed output is not repeated in it).
    Result(ResultView),
    /// The terminal screen.
    Screen {
        /// The rows, joined by newlines.
        text: String,
    },
    /// One session.
    Session(SessionView),
    /// Every session.
    Sessions {
        /// Sorted by name.
        sessions: Vec<SessionView>,
        /// The open tunnels, oldest first.
        #[serde(default)]
        tunnels: Vec<TunnelView>,
    },
    /// A session's history.
    History {
        /// Oldest first.
        entries: Vec<HistoryView>,
    },
    /// A browser terminal login link.
    Share(ShareView),
    /// Attached to the session's terminal.
    Attached {
        /// The command running now, if any (a program's or a person's).
        running: Option<String>,
        /// The shell's working directory.
        cwd: String,
        /// Whether the commands a person runs are recorded (bash, zsh; not dash).
        tracked: bool,
    },
    /// Something for an attached client to show apart from the terminal's output: what
    /// a program runs, steps taken to stop a command, a lost connection, keys that could
    /// not be delivered. Nothing ends with it.
    Notice {
        /// The message.
        message: String,
    },
    /// The attached terminal is gone (the shell exited, the session was closed).
    Ended {
        /// Why, as a sentence.
        reason: String,
    },
    /// A copy's progress so far.
    Progress {
        /// Bytes copied.
        bytes: u64,
        /// The total, when known.
        total: Option<u64>,
    },
    /// A copy is complete.
    Copied(CopyView),
    /// A tunnel was opened. (Not a newtype: the view's `kind` would clash with the tag.)
    Tunnel {
        /// The tunnel.
        tunnel: TunnelView,
    },
    /// Each session's result of `ExecMany`, in the order asked.
    Many {
        /// The results.
        results: Vec<ManyView>,
    },
    /// The request failed.
    Error {
        /// What kind of failure.
        error: ErrorKind,
        /// The message, saying what to do.
        message: String,
    },
}

/// A login link to a session's browser terminal, for the wire and for `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShareView {
    /// Open it in a browser, once: it carries a one-time secret.
    pub url: String,
    /// When it stops working, RFC 3339 (UTC).
    pub expires_at: String,
    /// Whether it only lets its opener watch.
    pub read_only: bool,
}

impl From<&ssh_session_web::Share> for ShareView {
    fn from(share: &ssh_session_web::Share) -> Self {
        ShareView {
            url: share.url.clone(),
            expires_at: humantime::format_rfc3339_seconds(share.expires_at).to_string(),
            read_only: share.read_only,
        }
    }
}

/// A command's outcome, for the wire and for `--json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ResultView {
    /// The command line.
    pub command: String,
    /// `running`, `exited`, `shell_exited`, `link_lost` or `killed`.
    pub state: String,
    /// The exit code, once known.
    pub exit_code: Option<i32>,
    /// The working directory after it.
    pub cwd: String,
    /// Time since it started, in milliseconds.
    pub duration_ms: u64,
    /// Output not streamed before (base64; empty for `exec`, which streams everything).
    pub output: String,
    /// Output bytes dropped to bound memory.
    pub dropped_bytes: u64,
    /// Notices (shell restarted, reconnected...), as sentences.
    pub notices: Vec<String>,
    /// While running: the password or passphrase prompt it waits at (`kind`, prompt).
    #[serde(default)]
    pub waiting_for: Option<(String, String)>,
}

impl ResultView {
    /// The view of `r`, with `output` as its output.
    pub(crate) fn of(r: &ExecResult, output: &[u8]) -> ResultView {
        ResultView {
            command: r.command.clone(),
            state: r.state.name().to_string(),
            exit_code: r.exit_code,
            cwd: r.cwd.clone(),
            duration_ms: millis(r.duration),
            output: encode(output),
            dropped_bytes: r.dropped_bytes,
            notices: r.notices.iter().map(ToString::to_string).collect(),
            waiting_for: r
                .waiting_for
                .as_ref()
                .map(|p| (p.kind.name().to_string(), p.text.clone())),
        }
    }
}

/// A session, for the wire and for `ls --json` / `status --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionView {
    /// Name.
    pub name: String,
    /// Remote host.
    pub host: String,
    /// Remote user.
    pub user: String,
    /// Remote port.
    pub port: u16,
    /// `russh` or `openssh`.
    pub transport: String,
    /// `connecting`, `connected`, `reconnecting`, `error` or `closed`.
    pub status: String,
    /// Details of the status (the error, the reconnect attempt).
    pub status_detail: Option<String>,
    /// Unix time in milliseconds.
    pub created_ms: u64,
    /// Unix time in milliseconds.
    pub last_activity_ms: u64,
    /// Commands run.
    pub command_count: u64,
    /// Working directory.
    pub cwd: String,
    /// The running command.
    pub running: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// Reconnections so far.
    pub reconnects: u32,
    /// Whether the shell lives in remote tmux.
    pub persistent: bool,
}

impl From<&SessionInfo> for SessionView {
    fn from(i: &SessionInfo) -> SessionView {
        let status_detail = match &i.status {
            SessionStatus::Reconnecting { attempt, of } => {
                Some(format!("attempt {attempt} of {of}"))
            }
            SessionStatus::Error { detail, .. } => Some(detail.clone()),
            _ => None,
        };
        SessionView {
            name: i.name.clone(),
            host: i.host.clone(),
            user: i.user.clone(),
            port: i.port,
            transport: i.transport.name().to_string(),
            status: i.status.name().to_string(),
            status_detail,
            created_ms: unix_ms(i.created),
            last_activity_ms: unix_ms(i.last_activity),
            command_count: i.command_count,
            cwd: i.cwd.clone(),
            running: i.running.clone(),
            last_error: i.last_error.as_ref().map(|(e, _)| e.clone()),
            reconnects: i.reconnects,
            persistent: i.persistent,
        }
    }
}

/// One history entry, for the wire and for `history --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HistoryView {
    /// The command line.
    pub command: String,
    /// Its exit code (`None` while running).
    pub exit_code: Option<i32>,
    /// Unix time in milliseconds.
    pub started_ms: u64,
    /// How long it ran (`None` while running).
    pub duration_ms: Option<u64>,
    /// Who issued it (`cli`, `attach`, `api`...).
    pub source: String,
    /// The working directory it left the shell in, when known.
    #[serde(default)]
    pub cwd: Option<String>,
}

impl From<&HistoryEntry> for HistoryView {
    fn from(h: &HistoryEntry) -> HistoryView {
        HistoryView {
            command: h.command.clone(),
            exit_code: h.exit_code,
            started_ms: unix_ms(h.started_at),
            duration_ms: h.duration.map(millis),
            source: h.source.clone(),
            cwd: h.cwd.clone(),
        }
    }
}

/// A `~/.ssh/config` alias, for `hosts --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostView {
    /// The alias.
    pub alias: String,
    /// Where it connects.
    pub host_name: Option<String>,
    /// The remote user.
    pub user: Option<String>,
    /// The port.
    pub port: Option<u16>,
    /// The ProxyJump value.
    pub proxy_jump: Option<String>,
}

impl From<&HostAlias> for HostView {
    fn from(a: &HostAlias) -> HostView {
        HostView {
            alias: a.alias.clone(),
            host_name: a.host_name.clone(),
            user: a.user.clone(),
            port: a.port,
            proxy_jump: a.proxy_jump.clone(),
        }
    }
}

/// Base64 of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Bytes of base64 `text`; a malformed payload is a protocol error.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("malformed base64 payload: {e}"))
}

/// One message as a JSON line.
pub(crate) fn to_line<T: Serialize>(message: &T) -> Vec<u8> {
    // serde_json fails only on maps with non-string keys or a failing Serialize impl; the
    // protocol's messages are plain derived types with neither.
    #[allow(clippy::expect_used)]
    let mut line = serde_json::to_vec(message).expect("protocol messages always serialize");
    line.push(b'\n');
    line
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
