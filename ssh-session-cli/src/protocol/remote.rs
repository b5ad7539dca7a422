//! The messages of `cp`, `forward` and multi-session `exec`, apart from the core ones.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use ssh_session_core::files::Transfer;
use ssh_session_core::tunnel::TunnelInfo;

/// Which way a copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Direction {
    /// From this machine to the session's host.
    Upload,
    /// From the session's host to this machine.
    Download,
}

/// What `cp` asks: the local side is absolute (the daemon runs elsewhere), the remote one
/// as typed (relative to the session's working directory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CopySpec {
    /// The session.
    pub name: String,
    /// Which way.
    pub direction: Direction,
    /// The local path.
    pub local: PathBuf,
    /// The remote path.
    pub remote: String,
    /// Directories allowed (`-r`).
    pub recursive: bool,
}

/// What a copy did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CopyView {
    /// Bytes copied.
    pub bytes: u64,
    /// Files copied.
    pub files: u64,
    /// The SHA-256 of the one file copied.
    pub sha256: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// Where it went.
    pub to: String,
}

impl CopyView {
    pub(crate) fn of(t: &Transfer, to: String) -> Self {
        CopyView {
            bytes: t.bytes,
            files: t.files,
            sha256: t.sha256.clone(),
            duration_ms: t.duration.as_millis() as u64,
            to,
        }
    }
}

/// A tunnel, for the wire, `forward` and `ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TunnelView {
    /// Its id, to close it by.
    pub id: String,
    /// The session.
    pub session: String,
    /// `local`, `socks` or `remote`.
    pub kind: String,
    /// Where it listens.
    pub listen: String,
    /// Where it connects (none for socks).
    pub target: Option<String>,
    /// Bytes to the target.
    pub bytes_out: u64,
    /// Bytes back.
    pub bytes_in: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

impl From<&TunnelInfo> for TunnelView {
    fn from(t: &TunnelInfo) -> Self {
        TunnelView {
            id: t.id.clone(),
            session: t.session.clone(),
            kind: t.kind.name().into(),
            listen: t.listen.clone(),
            target: t.target.clone(),
            bytes_out: t.bytes_out,
            bytes_in: t.bytes_in,
            last_error: t.last_error.clone(),
        }
    }
}

/// One session's part of a multi-session `exec`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManyView {
    /// The session.
    pub session: String,
    /// The output (base64), as the terminal showed it.
    pub output: String,
    /// The exit code, if it ended.
    pub exit_code: Option<i32>,
    /// Still running at the timeout.
    pub running: bool,
    /// Why it did not run, and its kind.
    pub error: Option<(super::ErrorKind, String)>,
}
