//! The SFTP protocol under [`RemoteFiles`](super::RemoteFiles): one `sftp` subsystem
//! channel, requests pipelined by id, and the server's status codes turned into
//! [`FileProblem`]s.
//!
//! `russh-sftp`'s raw session is used rather than its high-level one because an atomic
//! replace needs the `posix-rename@openssh.com` extension (plain SFTP v3 `rename` refuses
//! an existing target), which only the raw session can send.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{Data, FileAttributes, OpenFlags, Packet, StatusCode};
use sha2::{Digest, Sha256};

use crate::error::FileProblem;
use crate::transport::Transport;

/// Requests in flight per transfer (OpenSSH's `sftp` keeps 64 of 32 KiB; ours are up to
/// 252 KiB). Measured with the transfer bench: 16 left downloads at 0.84× `sftp`, 32
/// (with the 8 MiB channel window) fills the loopback pipe; ~8 MiB per transfer at most.
pub(super) const IN_FLIGHT: usize = 32;
/// Largest read or write asked for when the server does not say (`limits@openssh.com`).
const DEFAULT_CHUNK: u32 = 32 << 10;
/// Our own cap: the client refuses incoming packets over 256 KiB.
const MAX_CHUNK: u32 = 252 << 10;
/// Seconds one request may take before the channel is considered dead.
const REQUEST_TIMEOUT_SECS: u64 = 30;

/// An open SFTP channel.
pub(super) struct Sftp {
    raw: Arc<RawSftpSession>,
    pub(super) read_chunk: u32,
    pub(super) write_chunk: u32,
    posix_rename: bool,
}

/// A failure with the server's words, before the session and path are attached.
pub(super) type Failure = FileProblem;

/// Maps a client error: status codes to problems, everything else to a channel failure.
pub(super) fn problem(e: SftpError) -> Failure {
    match e {
        SftpError::Status(status) => match status.status_code {
            StatusCode::NoSuchFile => FileProblem::NotFound,
            StatusCode::PermissionDenied => FileProblem::PermissionDenied,
            StatusCode::NoConnection | StatusCode::ConnectionLost => {
                FileProblem::Channel(status.error_message)
            }
            StatusCode::OpUnsupported => FileProblem::Failed(format!(
                "operation not supported ({})",
                status.error_message
            )),
            _ if status.error_message.is_empty() => FileProblem::Failed("failure".into()),
            _ => FileProblem::Failed(status.error_message),
        },
        SftpError::Timeout => FileProblem::Channel("a request timed out".into()),
        other => FileProblem::Channel(other.to_string()),
    }
}

fn is_eof(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::Eof)
}

impl Sftp {
    /// Opens the `sftp` subsystem on `transport` and negotiates the protocol.
    pub(super) async fn connect(transport: &dyn Transport) -> Result<Sftp, crate::Error> {
        let stream = transport.open_subsystem("sftp").await?;
        let raw = RawSftpSession::new(stream);
        raw.set_timeout(REQUEST_TIMEOUT_SECS);
        let channel_failed = |e: SftpError| crate::Error::ChannelRefused {
            host: transport.describe(),
            what: "the sftp subsystem".into(),
            detail: e.to_string(),
        };
        let version = raw.init().await.map_err(channel_failed)?;
        let has = |name: &str| version.extensions.contains_key(name);
        let (mut read_chunk, mut write_chunk) = (DEFAULT_CHUNK, DEFAULT_CHUNK);
        if has("limits@openssh.com") {
            if let Ok(limits) = raw.limits().await {
                let cap = |n: u64| (n.min(u64::from(MAX_CHUNK)) as u32).max(1);
                if limits.max_read_len > 0 {
                    read_chunk = cap(limits.max_read_len);
                }
                if limits.max_write_len > 0 {
                    write_chunk = cap(limits.max_write_len);
                }
            }
        }
        Ok(Sftp {
            raw: Arc::new(raw),
            read_chunk,
            write_chunk,
            posix_rename: has("posix-rename@openssh.com"),
        })
    }

    pub(super) async fn stat(&self, path: &str) -> Result<FileAttributes, Failure> {
        Ok(self.raw.stat(path).await.map_err(problem)?.attrs)
    }

    pub(super) async fn lstat(&self, path: &str) -> Result<FileAttributes, Failure> {
        Ok(self.raw.lstat(path).await.map_err(problem)?.attrs)
    }

    /// `Ok(None)` when nothing is there.
    pub(super) async fn try_stat(&self, path: &str) -> Result<Option<FileAttributes>, Failure> {
        match self.stat(path).await {
            Ok(attrs) => Ok(Some(attrs)),
            Err(FileProblem::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn realpath(&self, path: &str) -> Result<String, Failure> {
        let name = self.raw.realpath(path).await.map_err(problem)?;
        name.files
            .into_iter()
            .next()
            .map(|f| f.filename)
            .ok_or_else(|| FileProblem::Failed("realpath gave no name".into()))
    }

    pub(super) async fn open_file(
        &self,
        path: &str,
        flags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Failure> {
        let handle = self
            .raw
            .open(path, flags, attrs)
            .await
            .map_err(problem)?
            .handle;
        Ok(Handle {
            raw: self.raw.clone(),
            handle: Some(handle),
        })
    }

    /// Names and attributes of a directory's entries, without `.` and `..`.
    pub(super) async fn read_dir(
        &self,
        path: &str,
    ) -> Result<Vec<(String, FileAttributes)>, Failure> {
        let handle = self.raw.opendir(path).await.map_err(problem)?.handle;
        let mut entries = Vec::new();
        let listed = loop {
            match self.raw.readdir(handle.as_str()).await {
                Ok(name) => entries.extend(
                    name.files
                        .into_iter()
                        .filter(|f| f.filename != "." && f.filename != "..")
                        .map(|f| (f.filename, f.attrs)),
                ),
                Err(e) if is_eof(&e) => break Ok(entries),
                Err(e) => break Err(problem(e)),
            }
        };
        let _ = self.raw.close(handle).await;
        listed
    }

    pub(super) async fn mkdir(&self, path: &str, mode: Option<u32>) -> Result<(), Failure> {
        let attrs = FileAttributes {
            permissions: mode,
            ..FileAttributes::empty()
        };
        self.raw.mkdir(path, attrs).await.map_err(problem)?;
        Ok(())
    }

    pub(super) async fn rmdir(&self, path: &str) -> Result<(), Failure> {
        self.raw.rmdir(path).await.map_err(problem)?;
        Ok(())
    }

    pub(super) async fn remove(&self, path: &str) -> Result<(), Failure> {
        self.raw.remove(path).await.map_err(problem)?;
        Ok(())
    }

    /// Renames `from` to `to`, replacing `to` atomically if it exists (where the server
    /// offers POSIX rename; otherwise an existing `to` is an error).
    pub(super) async fn rename(&self, from: &str, to: &str) -> Result<(), Failure> {
        if !self.posix_rename {
            self.raw.rename(from, to).await.map_err(problem)?;
            return Ok(());
        }
        let mut data = Vec::with_capacity(8 + from.len() + to.len());
        for s in [from, to] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        match self
            .raw
            .extended("posix-rename@openssh.com", data)
            .await
            .map_err(problem)?
        {
            Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(s) => Err(problem(SftpError::Status(s))),
            _ => Err(FileProblem::Failed("unexpected reply to a rename".into())),
        }
    }

    pub(super) async fn set_mode(&self, path: &str, mode: u32) -> Result<(), Failure> {
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::empty()
        };
        self.raw.setstat(path, attrs).await.map_err(problem)?;
        Ok(())
    }

    pub(super) async fn set_owner(&self, path: &str, uid: u32, gid: u32) -> Result<(), Failure> {
        let attrs = FileAttributes {
            uid: Some(uid),
            gid: Some(gid),
            ..FileAttributes::empty()
        };
        self.raw.setstat(path, attrs).await.map_err(problem)?;
        Ok(())
    }

    /// A guard that removes `path` when dropped unless [`disarm`](TempGuard::disarm)ed: a
    /// write or upload dropped half way (its caller went away) leaves no temporary file.
    pub(super) fn temp_guard(&self, path: &str) -> TempGuard {
        TempGuard {
            raw: self.raw.clone(),
            path: Some(path.to_string()),
        }
    }

    /// Ends the channel (the server's end closes with it).
    pub(super) fn close(&self) {
        let _ = self.raw.close_session();
    }
}

/// An open remote file. Dropping it closes the handle without waiting for the reply;
/// [`close`](Handle::close) waits, which a write needs to learn that it landed.
pub(super) struct Handle {
    raw: Arc<RawSftpSession>,
    handle: Option<String>,
}

impl Handle {
    fn id(&self) -> &str {
        self.handle.as_deref().unwrap_or_default()
    }

    pub(super) async fn fstat(&self) -> Result<FileAttributes, Failure> {
        Ok(self.raw.fstat(self.id()).await.map_err(problem)?.attrs)
    }

    /// The bytes from `offset` until `limit` bytes or the end of the file, read
    /// `IN_FLIGHT` requests ahead.
    pub(super) fn chunks(&self, offset: u64, limit: Option<u64>, chunk: u32) -> Chunks {
        let end = limit.map(|l| offset.saturating_add(l));
        let step = u64::from(chunk);
        // Saturating: an offset near the end of the range must end the read, not wrap.
        let starts = (0u64..).map(move |i| offset.saturating_add(i.saturating_mul(step)));
        let starts = starts.take_while(move |s| *s < u64::MAX && end.is_none_or(|e| *s < e));
        let (raw, id) = (self.raw.clone(), self.id().to_string());
        let replies = futures::stream::iter(starts)
            .map(move |start| {
                let len = end.map_or(step, |e| (e - start).min(step)) as u32;
                let (raw, id) = (raw.clone(), id.clone());
                async move { (start, len, raw.read(id, start, len).await) }
            })
            .buffered(IN_FLIGHT)
            .boxed();
        Chunks {
            raw: self.raw.clone(),
            id: self.id().to_string(),
            replies,
            gap: None,
            done: false,
        }
    }

    /// Writes `chunks` (each at most the server's write size) from `offset` on,
    /// `IN_FLIGHT` at a time.
    pub(super) async fn write_all<S>(&self, offset: u64, chunks: S) -> Result<u64, Failure>
    where
        S: futures::Stream<Item = Result<Vec<u8>, Failure>> + Send,
    {
        let raw = self.raw.clone();
        let id = self.id().to_string();
        let mut at = offset;
        chunks
            .map_ok(|data| {
                let start = at;
                at += data.len() as u64;
                let (raw, id) = (raw.clone(), id.clone());
                async move {
                    let n = data.len() as u64;
                    raw.write(id, start, data).await.map_err(problem)?;
                    Ok(n)
                }
            })
            .try_buffered(IN_FLIGHT)
            .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
            .await
    }

    /// Closes the handle and waits for the reply: for a written file, the server's word
    /// that the data is in the file.
    pub(super) async fn close(mut self) -> Result<(), Failure> {
        if let Some(handle) = self.handle.take() {
            self.raw.close(handle).await.map_err(problem)?;
        }
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let raw = self.raw.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = raw.close(handle).await;
                });
            }
        }
    }
}

/// See [`Sftp::temp_guard`].
pub(super) struct TempGuard {
    raw: Arc<RawSftpSession>,
    path: Option<String>,
}

impl TempGuard {
    /// The file is in place (renamed): nothing to remove.
    pub(super) fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let raw = self.raw.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = raw.remove(path).await;
                });
            }
        }
    }
}

/// A read in progress (see [`Handle::chunks`]).
pub(super) struct Chunks {
    raw: Arc<RawSftpSession>,
    id: String,
    replies: futures::stream::BoxStream<'static, (u64, u32, Result<Data, SftpError>)>,
    /// The rest of a chunk the server answered short: fetched before the next reply.
    gap: Option<(u64, u32)>,
    done: bool,
}

impl Chunks {
    /// The next bytes, in order; `None` at the end.
    pub(super) async fn next(&mut self) -> Result<Option<Vec<u8>>, Failure> {
        if self.done {
            return Ok(None);
        }
        let (reply, asked) = match self.gap.take() {
            // Regular files on OpenSSH come short only at EOF; other servers and special
            // files may not, and the rest must not be skipped.
            Some((at, len)) => (self.raw.read(self.id.clone(), at, len).await, (at, len)),
            None => match self.replies.next().await {
                Some((at, len, reply)) => (reply, (at, len)),
                None => {
                    self.done = true;
                    return Ok(None);
                }
            },
        };
        match reply {
            Ok(data) if !data.data.is_empty() => {
                let n = data.data.len() as u32;
                if n < asked.1 {
                    self.gap = Some((asked.0 + u64::from(n), asked.1 - n));
                }
                Ok(Some(data.data))
            }
            Ok(_) => {
                self.done = true;
                Ok(None)
            }
            Err(e) if is_eof(&e) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => Err(problem(e)),
        }
    }
}

/// A running SHA-256 with its lower-case hex.
#[derive(Default)]
pub(super) struct Hasher(Sha256);

impl Hasher {
    pub(super) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(super) fn hex(self) -> String {
        hex(&self.0.finalize())
    }
}

/// Lower-case hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 of `data`, hex.
pub(super) fn sha256(data: &[u8]) -> String {
    let mut h = Hasher::default();
    h.update(data);
    h.hex()
}
