//! The crate's one error type and the exit codes it maps to.

use std::path::PathBuf;

use crate::protocol::ErrorKind;

/// Exit codes, documented in `--help` and the README. Errors use 64 and up so they are
/// unlikely to be confused with a remote command's own small exit codes.
pub(crate) mod code {
    /// Bad input: invalid session name, malformed escape or duration.
    pub(crate) const INVALID: i32 = 64;
    /// No session of that name.
    pub(crate) const UNKNOWN_SESSION: i32 = 65;
    /// A session of that name exists already.
    pub(crate) const DUPLICATE: i32 = 66;
    /// The session is busy with another command (or, for send/interrupt, has none).
    pub(crate) const BUSY: i32 = 67;
    /// The host could not be reached, or the SSH connection failed.
    pub(crate) const CONNECT: i32 = 68;
    /// Authentication or host key verification failed.
    pub(crate) const AUTH: i32 = 69;
    /// The ssh config could not be used.
    pub(crate) const CONFIG: i32 = 70;
    /// The session is closed, disconnected or reconnecting.
    pub(crate) const DISCONNECTED: i32 = 71;
    /// The daemon could not be started or reached, or refused the client.
    pub(crate) const DAEMON: i32 = 72;
    /// The command is still running: exec's `--timeout` or read's `--wait` expired
    /// (as `timeout(1)`).
    pub(crate) const STILL_RUNNING: i32 = 124;
    /// The command's outcome is unknown: the link was lost, or it was killed with its shell.
    pub(crate) const UNKNOWN_OUTCOME: i32 = 125;
    /// Our stdout was closed (`| head`): 128 + SIGPIPE, what a local producer killed by
    /// SIGPIPE reports, so `set -o pipefail` scripts see the usual status. No message.
    pub(crate) const STDOUT_CLOSED: i32 = 141;
    /// Any other failure.
    pub(crate) const OTHER: i32 = 1;
}

/// Everything the command can fail with; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The daemon answered with an error.
    #[error("{message}")]
    Remote {
        /// Its kind, for the exit code.
        kind: ErrorKind,
        /// The daemon's message.
        message: String,
    },
    /// Invalid input on the command line.
    #[error("{0}")]
    Invalid(String),
    /// No daemon socket could be used or made.
    #[error("runtime directory {path}: {detail}")]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The daemon did not come up.
    #[error("the ssh-session daemon did not start: {detail}\n--- last lines of {log} ---\n{tail}")]
    DaemonStart {
        /// What happened.
        detail: String,
        /// The daemon's log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The daemon runs another version and holds sessions, so it is not restarted.
    #[error("the running daemon (pid {pid}) is version {theirs} (protocol {their_protocol}), this client is {ours} (protocol {our_protocol}); it holds {sessions} session(s), so it was not restarted. Close them and run `ssh-session daemon stop`, then retry")]
    VersionMismatch {
        /// The daemon's pid.
        pid: u32,
        /// The daemon's crate version.
        theirs: String,
        /// The daemon's protocol version.
        their_protocol: u32,
        /// Ours.
        ours: String,
        /// Our protocol version.
        our_protocol: u32,
        /// How many sessions it holds.
        sessions: usize,
    },
    /// The daemon broke the protocol or went away mid-answer.
    #[error("lost the ssh-session daemon at {socket}: {detail}; its log is {log}")]
    Protocol {
        /// The socket.
        socket: PathBuf,
        /// What happened.
        detail: String,
        /// The daemon's log file.
        log: PathBuf,
    },
    /// Local I/O failed (terminal, stdout).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Stdout was closed by its reader (`| head`): the command ends quietly, as a local
    /// one killed by SIGPIPE would.
    #[error("stdout was closed")]
    StdoutClosed,
    /// A core error in this process (ssh config listing).
    #[error(transparent)]
    Core(#[from] ssh_session_core::Error),
}

impl CliError {
    /// Whether the daemon refused the request because it was stopping, without starting
    /// it: running the command again (on a new daemon) is safe.
    pub(crate) fn is_daemon_stopping(&self) -> bool {
        matches!(
            self,
            CliError::Remote {
                kind: ErrorKind::ShuttingDown,
                ..
            }
        )
    }

    /// The process exit code for this error.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            CliError::Remote { kind, .. } => kind_code(*kind),
            CliError::Invalid(_) => code::INVALID,
            CliError::RuntimeDir { .. }
            | CliError::DaemonStart { .. }
            | CliError::VersionMismatch { .. }
            | CliError::Protocol { .. } => code::DAEMON,
            CliError::Io { .. } => code::OTHER,
            CliError::StdoutClosed => code::STDOUT_CLOSED,
            CliError::Core(e) => kind_code(classify(e)),
        }
    }

    /// An I/O error while doing `what`.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> CliError {
        CliError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The exit code of an error kind.
pub(crate) fn kind_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Invalid => code::INVALID,
        ErrorKind::UnknownSession => code::UNKNOWN_SESSION,
        ErrorKind::Duplicate => code::DUPLICATE,
        ErrorKind::Busy => code::BUSY,
        ErrorKind::Connect => code::CONNECT,
        ErrorKind::Auth => code::AUTH,
        ErrorKind::Config => code::CONFIG,
        ErrorKind::Disconnected => code::DISCONNECTED,
        ErrorKind::Daemon | ErrorKind::ShuttingDown => code::DAEMON,
        ErrorKind::Other => code::OTHER,
    }
}

/// The kind of a core error, for the wire: core's [`kind`](ssh_session_core::Error::kind),
/// with busy and not running sharing one exit code.
pub(crate) fn classify(e: &ssh_session_core::Error) -> ErrorKind {
    use ssh_session_core::ErrorKind as K;
    match e.kind() {
        K::InvalidInput => ErrorKind::Invalid,
        K::UnknownSession => ErrorKind::UnknownSession,
        K::Duplicate => ErrorKind::Duplicate,
        K::Busy | K::NotRunning => ErrorKind::Busy,
        K::Connect => ErrorKind::Connect,
        K::Auth => ErrorKind::Auth,
        K::Config => ErrorKind::Config,
        K::Disconnected => ErrorKind::Disconnected,
        // Only refused new sessions: nothing was done, so the client may retry.
        K::ShuttingDown => ErrorKind::ShuttingDown,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_distinct() {
        let codes = [
            code::INVALID,
            code::UNKNOWN_SESSION,
            code::DUPLICATE,
            code::BUSY,
            code::CONNECT,
            code::AUTH,
            code::CONFIG,
            code::DISCONNECTED,
            code::DAEMON,
            code::STILL_RUNNING,
            code::UNKNOWN_OUTCOME,
            code::STDOUT_CLOSED,
            code::OTHER,
        ];
        let mut sorted = codes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
    }

    #[test]
    fn core_errors_map_to_kinds() {
        use ssh_session_core::Error as E;
        let unknown = E::UnknownSession {
            name: "x".into(),
            existing: vec![],
        };
        assert_eq!(classify(&unknown), ErrorKind::UnknownSession);
        let jump = E::JumpHost {
            hop: "b".into(),
            index: 1,
            total: 1,
            source: Box::new(E::AuthFailed {
                user: "u".into(),
                host: "h".into(),
                port: 22,
                tried: "key".into(),
            }),
        };
        assert_eq!(classify(&jump), ErrorKind::Auth);
        assert_eq!(
            CliError::Core(E::InvalidName { name: "a b".into() }).exit_code(),
            code::INVALID
        );
    }
}
