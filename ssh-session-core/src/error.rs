//! The crate's one error type. Every message names what failed and where, and says what to try.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The underlying error a variant carries as its `source()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong, each variant carrying what a user needs to act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A session name outside `[A-Za-z0-9._-]{1,64}`.
    #[error("invalid session name {name:?}: use 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'")]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// A session with this name is already open (or opening).
    #[error("a session named {name:?} already exists: close it first or choose another name")]
    DuplicateName {
        /// The name in use.
        name: String,
    },
    /// No session by that name. The message lists at most ten of the others, those most
    /// like the name asked first, so it stays short with hundreds of sessions.
    #[error("no session named {name:?}; open sessions: {}", list_or_none(.name, .existing))]
    UnknownSession {
        /// The name asked for.
        name: String,
        /// The names that do exist.
        existing: Vec<String>,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to {host}:{port}: {source}; check the host name and port, and that sshd is running there")]
    Connect {
        /// Host as given.
        host: String,
        /// Port.
        port: u16,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting (TCP, handshake and authentication) took longer than the connect timeout.
    #[error("connecting to {host}:{port} timed out after {timeout:?}; the host may be down or filtered, or raise the connect timeout")]
    ConnectTimeout {
        /// Host as given.
        host: String,
        /// Port.
        port: u16,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The server's host key is not in known_hosts and the policy is strict.
    #[error("the host key of {host}:{port} ({fingerprint}) is not in {file}; verify the fingerprint, then add it (ssh-keyscan -p {port} {host} >> {file}) or use the accept-new host key policy")]
    UnknownHostKey {
        /// Host as given.
        host: String,
        /// Port.
        port: u16,
        /// SHA-256 fingerprint of the offered key.
        fingerprint: String,
        /// The known_hosts file consulted.
        file: PathBuf,
    },
    /// The server offered a key that differs from the recorded one. Always refused.
    #[error("HOST KEY CHANGED for {host}:{port}: it offered {fingerprint}, but {file} line {line} records a different key. Someone may be intercepting the connection; if the host was really re-keyed, remove line {line} from {file} and reconnect")]
    HostKeyChanged {
        /// Host as given.
        host: String,
        /// Port.
        port: u16,
        /// SHA-256 fingerprint of the offered key.
        fingerprint: String,
        /// The known_hosts file holding the old key.
        file: PathBuf,
        /// 1-based line number of the mismatching entry.
        line: usize,
    },
    /// No offered credential was accepted.
    #[error("authentication failed for {user}@{host}:{port} (tried: {tried}); check the user name, that the public key is in the server's authorized_keys, or give another identity file")]
    AuthFailed {
        /// User name.
        user: String,
        /// Host as given.
        host: String,
        /// Port.
        port: u16,
        /// The methods and keys that were offered.
        tried: String,
    },
    /// A private key file could not be used.
    #[error("cannot use private key {path}: {detail}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What was wrong and what to do.
        detail: String,
        /// The error reading or decoding it, if there was one.
        #[source]
        source: Option<BoxError>,
    },
    /// The SSH connection failed or was lost.
    #[error("SSH connection to {host}:{port} failed: {detail}")]
    Ssh {
        /// Host as given.
        host: String,
        /// Port.
        port: u16,
        /// What russh or ssh reported.
        detail: String,
        /// The underlying error, if there was one (russh's, or an I/O error).
        #[source]
        source: Option<BoxError>,
    },
    /// The server refused to open a channel or grant a request on it.
    #[error("{host}: the server refused {what}: {detail}")]
    ChannelRefused {
        /// Host as given.
        host: String,
        /// What was asked (a session channel, a PTY, a shell...).
        what: String,
        /// The server's reason.
        detail: String,
    },
    /// A persistent session was asked for, but the remote host has no tmux.
    #[error("{host}: persistent mode needs tmux on the remote host, which does not have it; install it there (apt-get install tmux, dnf install tmux, ...) or open the session without persistent mode")]
    TmuxMissing {
        /// Host as given.
        host: String,
    },
    /// A new command was issued while an earlier one still runs.
    #[error("session {session:?} is busy: {command:?} has been running for {:.1} s. Read its output, send it input, or interrupt it (Ctrl-C; SIGKILL if it ignores that; a shell that stopped answering is primed again or replaced) before running another command", .running_for.as_secs_f64())]
    Busy {
        /// The session.
        session: String,
        /// The command that owns the session.
        command: String,
        /// How long it has been running.
        running_for: Duration,
    },
    /// A program's command was refused because a person at the session's terminal is
    /// running a command or typing one: it is never typed into their work.
    #[error("session {session:?} is busy: a person at its terminal ({terminal}) {}. Wait until they finish, or ask them", if *.typing { format!("is typing a command ({command:?} so far)") } else { format!("is running {command:?} (for {:.1} s)", .running_for.as_secs_f64()) })]
    HumanBusy {
        /// The session.
        session: String,
        /// The terminal they typed at (`"attach"`, `"browser"`).
        terminal: String,
        /// Their command, or the partial line typed so far.
        command: String,
        /// The line is still being typed (nothing runs yet).
        typing: bool,
        /// How long their command has been running.
        running_for: Duration,
    },
    /// A program's command was refused because a person is attached to a shell that
    /// cannot report their commands (a plain POSIX shell such as dash): when typing at
    /// their prompt would be safe cannot be known.
    #[error("session {session:?} is busy: a person is attached to its terminal, whose shell (sh) cannot report their commands, so programs' commands are refused until they detach; use bash or zsh as the login shell to share it")]
    UntrackedTerminal {
        /// The session.
        session: String,
    },
    /// A program's command was refused, once, because people ran commands in the session's
    /// terminal since that program's previous command (see `HumanActivity::RefuseOnce`).
    #[error("session {session:?}: not run, because a person ran {} command(s) in its terminal since your last command: {}. The shell is now in {cwd:?}. Check that your assumptions still hold, then run the command again", .commands.len(), human_list(.commands))]
    HumanActivity {
        /// The session.
        session: String,
        /// What they ran, oldest first.
        commands: Vec<crate::session::HumanCommand>,
        /// The working directory now.
        cwd: String,
    },
    /// Input or an interrupt was sent but no command is running.
    #[error("session {session:?} has no running command; start one with exec")]
    NotRunning {
        /// The session.
        session: String,
    },
    /// The command cannot be sent to a shell.
    #[error("session {session:?}: cannot run this command: {reason}")]
    InvalidCommand {
        /// The session.
        session: String,
        /// Why.
        reason: String,
    },
    /// The remote shell never printed the ready marker.
    #[error("session {session:?}: the remote shell did not become ready within {timeout:?}; a login script may be waiting for input or very slow. Last output: {last_output:?}")]
    ShellNotReady {
        /// The session.
        session: String,
        /// The prime timeout.
        timeout: Duration,
        /// The tail of what the shell printed, to show what it was doing.
        last_output: String,
    },
    /// The login shell is not POSIX and no POSIX shell could be started instead.
    #[error("session {session:?}: the login shell is not a POSIX shell (fish, csh?) and starting /bin/sh instead failed: {detail}")]
    NonPosixShell {
        /// The session.
        session: String,
        /// What the fallback reported.
        detail: String,
    },
    /// The connection is being re-established; the command waited its timeout for it.
    #[error("session {session:?} is reconnecting (attempt {attempt} of {of}); retry shortly, or watch its status")]
    Reconnecting {
        /// The session.
        session: String,
        /// The attempt under way.
        attempt: u32,
        /// The most attempts that will be made.
        of: u32,
    },
    /// The connection was lost and automatic reconnection gave up.
    #[error(
        "session {session:?} is disconnected: {detail}. Automatic reconnection gave up: close the session and connect it again once the host is reachable"
    )]
    Disconnected {
        /// The session.
        session: String,
        /// The last cause.
        detail: String,
    },
    /// The session was closed.
    #[error("session {session:?} is closed; open it again")]
    Closed {
        /// The session.
        session: String,
    },
    /// The OpenSSH client program could not be run.
    #[error("cannot run the OpenSSH client {program:?}: {detail}; install openssh-client (or point to another ssh program), or use the russh transport")]
    SshProgram {
        /// The program that was tried.
        program: std::path::PathBuf,
        /// What went wrong.
        detail: String,
        /// The error starting it, if there was one.
        #[source]
        source: Option<BoxError>,
    },
    /// A `~/.ssh/config` alias or setting could not be resolved or is not supported.
    #[error("ssh config: {detail}")]
    Config {
        /// What is wrong and what to do.
        detail: String,
    },
    /// A hop of a ProxyJump chain failed; `source` says how.
    #[error("jump host {hop} (hop {index} of {total}) failed: {source}")]
    JumpHost {
        /// The hop as written.
        hop: String,
        /// 1-based position in the chain.
        index: usize,
        /// Number of hops.
        total: usize,
        /// What happened at that hop.
        #[source]
        source: Box<Error>,
    },
    /// A file operation failed: on the remote host, or for transfers on the local side.
    #[error("session {session:?}: cannot {op} {path:?}: {problem}")]
    File {
        /// The session.
        session: String,
        /// What was being done (`read`, `write`, `list`, `upload`...).
        op: String,
        /// The path it failed on (remote, unless `problem` is [`FileProblem::Local`]).
        path: String,
        /// Why, for programs to act on.
        problem: FileProblem,
    },
    /// No tunnel by that id.
    #[error("no tunnel {id:?}; open tunnels: {}", if .existing.is_empty() { "none".to_string() } else { .existing.join(", ") })]
    UnknownTunnel {
        /// The id asked for.
        id: String,
        /// The ids that exist.
        existing: Vec<String>,
    },
    /// A session did not even take a command within its timeout and a grace period.
    #[error("session {session:?} did not answer within {waited:?}; its host may be unreachable or its link stalled: check the session's status")]
    NoAnswer {
        /// The session.
        session: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The session manager was shut down.
    #[error("the session manager has been shut down")]
    ShutDown,
}

/// Why a file operation failed (see [`Error::File`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileProblem {
    /// The path, or a directory on it, does not exist.
    #[error("no such file or directory; check the path, or list its parent directory")]
    NotFound,
    /// The remote user may not do this there.
    #[error("permission denied for the remote user; use a path that user may access")]
    PermissionDenied,
    /// Something is in the way.
    #[error("it already exists")]
    AlreadyExists,
    /// A file stands where a directory is needed.
    #[error("a part of the path is not a directory")]
    NotADirectory,
    /// A directory was named where a file is needed.
    #[error("it is a directory; name a file, or copy it recursively")]
    IsADirectory,
    /// A guarded write found the file changed since it was read: nothing was written.
    #[error("it changed since it was read: expected sha256 {expected}, but it is now {}; nothing was written. Read it again, redo the edit, and write with the new hash", .current.as_deref().unwrap_or("missing (the file is gone)"))]
    Changed {
        /// The hash the caller expected.
        expected: String,
        /// The file's hash now, `None` if it no longer exists.
        current: Option<String>,
    },
    /// The local side of a transfer failed.
    #[error("on this machine: {0}")]
    Local(String),
    /// The request cannot work as given (a bad range, an encoding, a name).
    #[error("{0}")]
    Invalid(String),
    /// The file channel failed or timed out; the connection may have dropped.
    #[error("the file channel failed ({0}); retry once the session is connected")]
    Channel(String),
    /// The server refused it for another reason.
    #[error("the server said: {0}")]
    Failed(String),
}

/// What kind of failure an [`Error`] is, for front ends that map failures to their own
/// codes (exit statuses, tool error categories) in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A name, argument or command that can never work as given.
    InvalidInput,
    /// No session by that name.
    UnknownSession,
    /// A session by that name exists already.
    Duplicate,
    /// Another command owns the session.
    Busy,
    /// Not run: people ran commands in the session's terminal since the caller's last
    /// command; issuing it again runs it.
    HumanActivity,
    /// Nothing runs that input or an interrupt could go to.
    NotRunning,
    /// The host could not be reached or did not answer as an SSH server with a shell.
    Connect,
    /// The host key or the credentials were refused.
    Auth,
    /// The configuration (ssh config, options, the remote host's setup) does not allow it.
    Config,
    /// The session lost its connection, is reconnecting, or was closed.
    Disconnected,
    /// The session manager is shutting down: nothing was done.
    ShuttingDown,
    /// A file or directory that does not exist.
    NotFound,
    /// The remote user may not do it.
    PermissionDenied,
    /// The target changed or is in the way: a guarded write found another hash.
    Conflict,
}

impl ErrorKind {
    /// A short snake_case name: `invalid_input`, `busy`, `auth`...
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::UnknownSession => "unknown_session",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::Busy => "busy",
            ErrorKind::HumanActivity => "human_activity",
            ErrorKind::NotRunning => "not_running",
            ErrorKind::Connect => "connect",
            ErrorKind::Auth => "auth",
            ErrorKind::Config => "config",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Conflict => "conflict",
        }
    }
}

impl Error {
    /// What kind of failure this is. A failed jump host hop is the kind of its cause.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidName { .. } | Error::InvalidCommand { .. } => ErrorKind::InvalidInput,
            Error::UnknownSession { .. } => ErrorKind::UnknownSession,
            Error::UnknownTunnel { .. } => ErrorKind::NotFound,
            Error::DuplicateName { .. } => ErrorKind::Duplicate,
            Error::Busy { .. } | Error::HumanBusy { .. } | Error::UntrackedTerminal { .. } => {
                ErrorKind::Busy
            }
            Error::HumanActivity { .. } => ErrorKind::HumanActivity,
            Error::NotRunning { .. } => ErrorKind::NotRunning,
            Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Ssh { .. }
            | Error::ChannelRefused { .. }
            | Error::ShellNotReady { .. }
            | Error::NonPosixShell { .. }
            | Error::SshProgram { .. } => ErrorKind::Connect,
            Error::UnknownHostKey { .. }
            | Error::HostKeyChanged { .. }
            | Error::AuthFailed { .. }
            | Error::Key { .. } => ErrorKind::Auth,
            Error::Config { .. } | Error::TmuxMissing { .. } => ErrorKind::Config,
            Error::Reconnecting { .. }
            | Error::Disconnected { .. }
            | Error::Closed { .. }
            | Error::NoAnswer { .. } => ErrorKind::Disconnected,
            Error::File { problem, .. } => match problem {
                FileProblem::NotFound => ErrorKind::NotFound,
                FileProblem::PermissionDenied => ErrorKind::PermissionDenied,
                FileProblem::Changed { .. } | FileProblem::AlreadyExists => ErrorKind::Conflict,
                FileProblem::Channel(_) => ErrorKind::Disconnected,
                FileProblem::NotADirectory
                | FileProblem::IsADirectory
                | FileProblem::Local(_)
                | FileProblem::Invalid(_)
                | FileProblem::Failed(_) => ErrorKind::InvalidInput,
            },
            Error::JumpHost { source, .. } => source.kind(),
            Error::ShutDown => ErrorKind::ShuttingDown,
        }
    }
}

/// How many names an unknown-session message lists: enough to spot a typo, few enough
/// that 800 sessions still give a one-line message.
const LISTED_NAMES: usize = 10;

/// The names of an unknown-session message. Up to [`LISTED_NAMES`] are listed as given;
/// beyond that, the ten sharing the longest prefix with `asked` (a typo is most often
/// late in the name), ties in sorted order, then how many more there are. The wording
/// names no command, because CLI and MCP users list sessions differently.
fn list_or_none(asked: &str, names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    if names.len() <= LISTED_NAMES {
        return names.join(", ");
    }
    let shared = |name: &str| {
        name.chars()
            .zip(asked.chars())
            .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
            .count()
    };
    let mut ranked: Vec<(usize, &str)> = names.iter().map(|n| (shared(n), n.as_str())).collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let listed: Vec<&str> = ranked
        .iter()
        .take(LISTED_NAMES)
        .map(|(_, name)| *name)
        .collect();
    format!(
        "{} and {} more",
        listed.join(", "),
        names.len() - LISTED_NAMES
    )
}

/// `a` (exit 0, in "/x"); `b` (exit 1, in "/y")
fn human_list(commands: &[crate::session::HumanCommand]) -> String {
    commands
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_kind_and_a_jump_host_that_of_its_cause() {
        let busy = Error::Busy {
            session: "s".into(),
            command: "make".into(),
            running_for: Duration::from_secs(1),
        };
        assert_eq!(busy.kind(), ErrorKind::Busy);
        let auth = Error::AuthFailed {
            user: "u".into(),
            host: "h".into(),
            port: 22,
            tried: "publickey".into(),
        };
        let hop = Error::JumpHost {
            hop: "bastion".into(),
            index: 1,
            total: 2,
            source: Box::new(auth),
        };
        assert_eq!(hop.kind(), ErrorKind::Auth);
        assert_eq!(hop.kind().name(), "auth");
        assert_eq!(Error::ShutDown.kind(), ErrorKind::ShuttingDown);
        let lost = Error::Disconnected {
            session: "s".into(),
            detail: "refused".into(),
        };
        assert_eq!(lost.kind(), ErrorKind::Disconnected);
        // What a CLI or MCP user reads names no library call.
        assert!(!lost.to_string().contains("()"), "{lost}");
    }

    #[test]
    fn an_unknown_name_lists_at_most_ten_others_closest_first() {
        let unknown = |name: &str, existing: Vec<String>| {
            Error::UnknownSession {
                name: name.into(),
                existing,
            }
            .to_string()
        };
        assert_eq!(
            unknown("x", vec![]),
            "no session named \"x\"; open sessions: none"
        );
        let few: Vec<String> = (1..=10).map(|i| format!("s{i:02}")).collect();
        assert_eq!(
            unknown("x", few.clone()),
            format!("no session named \"x\"; open sessions: {}", few.join(", "))
        );
        // 800 sessions: the message stays short, and the names sharing the longest
        // prefix with the one asked come first.
        let mut many: Vec<String> = (0..790).map(|i| format!("host-{i:03}")).collect();
        many.extend((0..10).map(|i| format!("web-{i}")));
        let message = unknown("web-11", many.clone());
        assert_eq!(
            message,
            "no session named \"web-11\"; open sessions: web-1, web-0, web-2, web-3, web-4, \
             web-5, web-6, web-7, web-8, web-9 and 790 more"
        );
        // No name alike: the first ten, sorted, whatever order they came in.
        many.reverse();
        let message = unknown("ghost", many);
        assert!(
            message.ends_with(
                "open sessions: host-000, host-001, host-002, host-003, host-004, host-005, \
                 host-006, host-007, host-008, host-009 and 790 more"
            ),
            "{message}"
        );
    }

    #[test]
    fn sources_are_kept() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::Ssh {
            host: "h".into(),
            port: 22,
            detail: "cannot read known_hosts file /k: denied".into(),
            source: Some(Box::new(io)),
        };
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("denied"));
    }
}
