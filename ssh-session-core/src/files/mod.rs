//! Remote files over SFTP, on either transport: stat, ranged reads, atomic hash-guarded
//! writes, listings, `mkdir -p`, removal, renames, and uploads and downloads of files and
//! directories with bounded memory.
//!
//! A [`RemoteFiles`] is one `sftp` channel on a session's connection (see
//! [`ShellSession::files`](crate::ShellSession::files)); opening one costs a few round
//! trips, so keep it for a batch of operations. Relative paths are taken from the
//! session's working directory at the time it was opened, as a person typing in that
//! shell would expect (SFTP itself would take them from the login directory).
//!
//! ```no_run
//! use ssh_session_core::files::WriteOptions;
//! # async fn demo(session: ssh_session_core::ShellSession) -> ssh_session_core::Result<()> {
//! let files = session.files().await?;
//! let read = files.read("app.toml", Default::default()).await?;
//! let edited = String::from_utf8_lossy(&read.data).replace("debug = false", "debug = true");
//! // Refused, with nothing written, if someone changed the file since it was read.
//! files
//!     .write("app.toml", edited.as_bytes(), WriteOptions::guarded(read.sha256.unwrap()))
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod sftp;
mod transfer;
mod write;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use russh_sftp::protocol::{FileAttributes, OpenFlags};

use crate::error::{Error, FileProblem, Result};
use crate::transport::Transport;
use sftp::{Failure, Hasher, Sftp};

/// Files at most this large get a whole-file hash on a partial read (reading the rest
/// costs time on big logs); larger ones report `sha256: None` then.
pub const HASH_LIMIT: u64 = 64 << 20;

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (listings do not follow links).
    Symlink,
    /// A device, socket or FIFO.
    Other,
}

impl FileKind {
    /// `file`, `dir`, `symlink` or `other`.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        }
    }

    fn of(attrs: &FileAttributes) -> Self {
        if attrs.is_dir() {
            FileKind::Dir
        } else if attrs.is_symlink() {
            FileKind::Symlink
        } else if attrs.is_regular() {
            FileKind::File
        } else {
            FileKind::Other
        }
    }
}

/// A path's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStat {
    /// What it is.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o644`), without the type.
    pub mode: u32,
    /// Last modification, if the server said.
    pub modified: Option<SystemTime>,
}

impl FileStat {
    fn of(attrs: &FileAttributes) -> Self {
        FileStat {
            kind: FileKind::of(attrs),
            size: attrs.size.unwrap_or(0),
            mode: attrs.permissions.unwrap_or(0) & 0o7777,
            modified: attrs
                .mtime
                .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.into())),
        }
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirEntry {
    /// The entry's name (no directory part).
    pub name: String,
    /// Its metadata (of the link itself, for a symbolic link).
    pub stat: FileStat,
}

/// Which part of a file to read: all of it by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileRange {
    /// First byte.
    pub offset: u64,
    /// At most this many bytes (`None`: to the end).
    pub limit: Option<u64>,
}

impl FileRange {
    /// `limit` bytes from `offset`.
    pub fn new(offset: u64, limit: Option<u64>) -> Self {
        FileRange { offset, limit }
    }
}

/// What [`RemoteFiles::read`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileContent {
    /// The bytes read.
    pub data: Vec<u8>,
    /// The whole file's size.
    pub size: u64,
    /// The whole file's SHA-256 (hex), to guard a later write with; `None` for a partial
    /// read of a file over [`HASH_LIMIT`].
    pub sha256: Option<String>,
    /// Permission bits.
    pub mode: u32,
    /// Whether bytes after the range were left unread.
    pub truncated: bool,
}

/// How [`RemoteFiles::write`] writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Write only if the file's SHA-256 is still this (it must exist then).
    pub expected_sha256: Option<String>,
    /// Permission bits for the file; default: the replaced file's, or `0o644`.
    pub mode: Option<u32>,
    /// Create missing parent directories.
    pub create_dirs: bool,
}

impl WriteOptions {
    /// Write only if the file still has this SHA-256.
    pub fn guarded(sha256: impl Into<String>) -> Self {
        WriteOptions {
            expected_sha256: Some(sha256.into()),
            ..Default::default()
        }
    }

    /// Sets [`expected_sha256`](Self::expected_sha256).
    pub fn expected_sha256(mut self, sha256: Option<String>) -> Self {
        self.expected_sha256 = sha256;
        self
    }

    /// Sets [`mode`](Self::mode).
    pub fn mode(mut self, mode: Option<u32>) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`create_dirs`](Self::create_dirs).
    pub fn create_dirs(mut self, create: bool) -> Self {
        self.create_dirs = create;
        self
    }
}

/// What [`RemoteFiles::write`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Written {
    /// The file written (absolute; a symbolic link's target).
    pub path: String,
    /// Bytes in it now.
    pub size: u64,
    /// Its SHA-256 now (hex).
    pub sha256: String,
}

/// A transfer's progress, as reported to a [`Progress`] callback.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferProgress {
    /// Bytes moved so far, over all files.
    pub bytes: u64,
    /// The total, when known before starting.
    pub total: Option<u64>,
    /// The file being moved.
    pub path: String,
}

/// Called as a transfer moves data (about every 1 MiB, and at the end of each file).
pub type Progress = Arc<dyn Fn(TransferProgress) + Send + Sync>;

/// What an upload or a download did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transfer {
    /// Bytes moved.
    pub bytes: u64,
    /// Files moved.
    pub files: u64,
    /// The SHA-256 of the bytes, when one file was moved.
    pub sha256: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

/// Files on a session's host, over one SFTP channel. Cheap to share by reference; calls
/// may run concurrently.
pub struct RemoteFiles {
    sftp: Sftp,
    session: String,
    /// The directory relative paths start from.
    base: Option<String>,
}

impl std::fmt::Debug for RemoteFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFiles")
            .field("session", &self.session)
            .field("base", &self.base)
            .finish()
    }
}

impl RemoteFiles {
    /// Opens an SFTP channel on `transport` for session `session`; relative paths start
    /// at `base` (SFTP's login directory if `None`).
    pub async fn open(
        transport: &dyn Transport,
        session: &str,
        base: Option<String>,
    ) -> Result<RemoteFiles> {
        let sftp = Sftp::connect(transport).await?;
        Ok(RemoteFiles {
            sftp,
            session: session.to_string(),
            base: base.filter(|b| b.starts_with('/')),
        })
    }

    /// `path` made absolute from the session's directory.
    pub fn resolve(&self, path: &str) -> String {
        match &self.base {
            Some(base) if !path.starts_with('/') => {
                let path = path.strip_prefix("./").unwrap_or(path);
                if path.is_empty() || path == "." {
                    base.clone()
                } else {
                    format!("{}/{path}", base.trim_end_matches('/'))
                }
            }
            _ => path.to_string(),
        }
    }

    fn fail(&self, op: &str, path: &str, problem: Failure) -> Error {
        Error::File {
            session: self.session.clone(),
            op: op.to_string(),
            path: path.to_string(),
            problem,
        }
    }

    fn check_path(&self, op: &str, path: &str) -> Result<()> {
        if path.is_empty() || path.contains('\0') {
            return Err(self.fail(
                op,
                path,
                FileProblem::Invalid("a path must be non-empty and contain no NUL".into()),
            ));
        }
        Ok(())
    }

    /// The metadata of `path` (following symbolic links).
    pub async fn stat(&self, path: &str) -> Result<FileStat> {
        self.check_path("stat", path)?;
        let path = self.resolve(path);
        let attrs = self
            .sftp
            .stat(&path)
            .await
            .map_err(|p| self.fail("stat", &path, p))?;
        Ok(FileStat::of(&attrs))
    }

    /// Reads `range` of the file at `path`, with the whole file's hash.
    pub async fn read(&self, path: &str, range: FileRange) -> Result<FileContent> {
        self.check_path("read", path)?;
        let path = self.resolve(path);
        let fail = |p| self.fail("read", &path, p);
        let file = self
            .sftp
            .open_file(&path, OpenFlags::READ, FileAttributes::empty())
            .await
            .map_err(fail)?;
        let attrs = file.fstat().await.map_err(fail)?;
        if attrs.is_dir() {
            return Err(fail(FileProblem::IsADirectory));
        }
        let size = attrs.size.unwrap_or(0);
        let mut data = Vec::new();
        let mut hasher = (range.offset == 0).then(Hasher::default);
        let mut chunks = file.chunks(range.offset, range.limit, self.sftp.read_chunk);
        while let Some(chunk) = chunks.next().await.map_err(fail)? {
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            data.extend_from_slice(&chunk);
        }
        let end = range.offset.saturating_add(data.len() as u64);
        // Past the size the server gave, a read that filled its limit may have more to
        // come: files in /proc report size 0, and a log may have grown since.
        let filled = range.limit.is_some_and(|l| data.len() as u64 >= l);
        let truncated = end < size || (filled && (size == 0 || end > size));
        let sha256 = match hasher {
            Some(h) if !truncated => Some(h.hex()),
            _ if size <= HASH_LIMIT => Some(self.hash_open(&file).await.map_err(fail)?),
            _ => None,
        };
        let _ = file.close().await;
        Ok(FileContent {
            data,
            size,
            sha256,
            mode: attrs.permissions.unwrap_or(0) & 0o7777,
            truncated,
        })
    }

    async fn hash_open(&self, file: &sftp::Handle) -> Result<String, Failure> {
        let mut h = Hasher::default();
        let mut chunks = file.chunks(0, None, self.sftp.read_chunk);
        while let Some(chunk) = chunks.next().await? {
            h.update(&chunk);
        }
        Ok(h.hex())
    }

    /// The SHA-256 of the file at `path`, `None` if there is none.
    pub async fn sha256(&self, path: &str) -> Result<Option<String>> {
        self.check_path("hash", path)?;
        let path = self.resolve(path);
        self.hash_of(&path)
            .await
            .map_err(|p| self.fail("hash", &path, p))
    }

    async fn hash_of(&self, path: &str) -> Result<Option<String>, Failure> {
        let file = match self
            .sftp
            .open_file(path, OpenFlags::READ, FileAttributes::empty())
            .await
        {
            Ok(file) => file,
            Err(FileProblem::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let hash = self.hash_open(&file).await?;
        let _ = file.close().await;
        Ok(Some(hash))
    }

    /// The entries of directory `path`, sorted by name, without `.` and `..`.
    pub async fn list(&self, path: &str) -> Result<Vec<DirEntry>> {
        self.check_path("list", path)?;
        let path = self.resolve(path);
        let fail = |p| self.fail("list", &path, p);
        let entries = match self.sftp.read_dir(&path).await {
            Ok(entries) => entries,
            // sftp-server says "no such file" (ENOTDIR) for a file; say what it is.
            Err(FileProblem::Failed(_) | FileProblem::NotFound)
                if self.sftp.stat(&path).await.is_ok_and(|a| !a.is_dir()) =>
            {
                return Err(fail(FileProblem::NotADirectory));
            }
            Err(e) => return Err(fail(e)),
        };
        let mut entries: Vec<DirEntry> = entries
            .into_iter()
            .map(|(name, attrs)| DirEntry {
                name,
                stat: FileStat::of(&attrs),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Creates directory `path` and any missing parents (`mkdir -p`).
    pub async fn mkdir_all(&self, path: &str) -> Result<()> {
        self.check_path("create directory", path)?;
        let path = self.resolve(path);
        let fail = |p| self.fail("create directory", &path, p);
        let mut at = if path.starts_with('/') {
            String::new()
        } else {
            ".".to_string()
        };
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            at = if at.is_empty() {
                format!("/{part}")
            } else {
                format!("{at}/{part}")
            };
            match self.sftp.try_stat(&at).await.map_err(fail)? {
                Some(attrs) if attrs.is_dir() => continue,
                Some(_) => return Err(fail(FileProblem::NotADirectory)),
                None => {}
            }
            if let Err(e) = self.sftp.mkdir(&at, None).await {
                // Created meanwhile by someone else: as good.
                if !self.sftp.stat(&at).await.is_ok_and(|a| a.is_dir()) {
                    return Err(fail(e));
                }
            }
        }
        Ok(())
    }

    /// Removes the file, link or empty directory at `path`; with `recursive`, a directory
    /// and everything in it (links are removed, never followed).
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<()> {
        self.check_path("remove", path)?;
        let path = self.resolve(path);
        let fail = |p| self.fail("remove", &path, p);
        let attrs = self.sftp.lstat(&path).await.map_err(fail)?;
        if !attrs.is_dir() {
            return self.sftp.remove(&path).await.map_err(fail);
        }
        if !recursive {
            return self
                .sftp
                .rmdir(&path)
                .await
                .map_err(|e| match e {
                    FileProblem::Failed(_) => FileProblem::Failed(
                        "the directory is not empty; remove it recursively".into(),
                    ),
                    other => other,
                })
                .map_err(fail);
        }
        // Depth first with an explicit stack: directories are removed after their
        // contents, and a deep tree cannot overflow anything.
        let mut stack = vec![(path.clone(), false)];
        while let Some((dir, emptied)) = stack.pop() {
            if emptied {
                self.sftp
                    .rmdir(&dir)
                    .await
                    .map_err(|p| self.fail("remove", &dir, p))?;
                continue;
            }
            stack.push((dir.clone(), true));
            let entries = self
                .sftp
                .read_dir(&dir)
                .await
                .map_err(|p| self.fail("remove", &dir, p))?;
            for (name, attrs) in entries {
                let child = format!("{}/{name}", dir.trim_end_matches('/'));
                if attrs.is_dir() {
                    stack.push((child, false));
                } else {
                    self.sftp
                        .remove(&child)
                        .await
                        .map_err(|p| self.fail("remove", &child, p))?;
                }
            }
        }
        Ok(())
    }

    /// Renames `from` to `to`, replacing a file at `to` atomically.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.check_path("rename", from)?;
        self.check_path("rename", to)?;
        let (from, to) = (self.resolve(from), self.resolve(to));
        self.sftp
            .rename(&from, &to)
            .await
            .map_err(|p| self.fail("rename", &from, p))
    }

    /// Ends the SFTP channel now (dropping it does too).
    pub fn close(&self) {
        self.sftp.close();
    }
}

/// `("/a/b", "c")` for `/a/b/c`; `(".", "c")` for `c`; `("", "c")` for `/c`.
fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => (".", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_splits_into_its_directory_and_name() {
        assert_eq!(split("/a/b/c"), ("/a/b", "c"));
        assert_eq!(split("c"), (".", "c"));
        assert_eq!(split("/c"), ("", "c"));
    }

    #[test]
    fn known_hashes() {
        assert_eq!(
            sftp::sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sftp::sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
