//! Writing a remote file: into a temporary file beside it, renamed over it once complete
//! (readers see the old file or the new one), guarded by the hash the caller last read.

use russh_sftp::protocol::{FileAttributes, OpenFlags};

use super::sftp::{self, Failure};
use super::{split, RemoteFiles, WriteOptions, Written};
use crate::error::{FileProblem, Result};

impl RemoteFiles {
    /// Writes `data` to `path`: into a new file beside it, renamed over it once complete,
    /// so readers see the old file or the new one, never a part. Keeps the replaced file's
    /// mode (and owner, where the server lets it). With
    /// [`expected_sha256`](WriteOptions::expected_sha256), the file's hash is checked just
    /// before the rename, and nothing is changed if it differs. Where the directory
    /// cannot take a new file but the file itself is writable, it is rewritten in place.
    pub async fn write(&self, path: &str, data: &[u8], options: WriteOptions) -> Result<Written> {
        self.check_path("write", path)?;
        let asked = self.resolve(path);
        let fail = |p| self.fail("write", &asked, p);
        let target = match self.sftp.lstat(&asked).await {
            Ok(attrs) if attrs.is_symlink() => self.sftp.realpath(&asked).await.map_err(fail)?,
            _ => asked.clone(),
        };
        let existing = self.sftp.try_stat(&target).await.map_err(fail)?;
        if existing.as_ref().is_some_and(|a| a.is_dir()) {
            return Err(fail(FileProblem::IsADirectory));
        }
        if options.create_dirs && existing.is_none() {
            let dir = split(&target).0;
            if !dir.is_empty() {
                self.mkdir_all(dir).await?;
            }
        }
        let mode = options
            .mode
            .or(existing
                .as_ref()
                .and_then(|a| a.permissions.map(|p| p & 0o7777)))
            .unwrap_or(0o644);
        let (tmp, file) = match self.create_temp(&target, mode).await {
            Ok(created) => created,
            Err(FileProblem::PermissionDenied) if existing.is_some() => {
                return self.write_in_place(&target, data, &options).await;
            }
            Err(e) => return Err(fail(e)),
        };
        let chunks = futures::stream::iter(self.chunked(data));
        self.fill_temp(
            (tmp, file),
            &target,
            mode,
            existing.as_ref(),
            &options,
            chunks,
        )
        .await
        .map_err(fail)?;
        Ok(Written {
            path: target,
            size: data.len() as u64,
            sha256: sftp::sha256(data),
        })
    }

    fn chunked(&self, data: &[u8]) -> Vec<Result<Vec<u8>, Failure>> {
        data.chunks(self.sftp.write_chunk as usize)
            .map(|c| Ok(c.to_vec()))
            .collect()
    }

    /// A new, empty file beside `target` (same directory, so the rename stays on one file
    /// system), only ever opened by us.
    pub(super) async fn create_temp(
        &self,
        target: &str,
        mode: u32,
    ) -> Result<(String, sftp::Handle), Failure> {
        let (dir, name) = split(target);
        let tmp = format!(
            "{dir}/.{name}.ssh-session-{:08x}.tmp",
            rand::random::<u32>()
        );
        let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE | OpenFlags::TRUNCATE;
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::empty()
        };
        let file = self.sftp.open_file(&tmp, flags, attrs).await?;
        Ok((tmp, file))
    }

    /// Writes `chunks` into a temporary file from [`create_temp`](Self::create_temp),
    /// gives it its mode (the server's umask applies to the create) and the replaced
    /// file's owner, checks the guard, and renames it over `target`. Any failure removes
    /// the temporary file. The bytes written.
    pub(super) async fn fill_temp<S>(
        &self,
        (tmp, file): (String, sftp::Handle),
        target: &str,
        mode: u32,
        replaced: Option<&FileAttributes>,
        options: &WriteOptions,
        chunks: S,
    ) -> Result<u64, Failure>
    where
        S: futures::Stream<Item = Result<Vec<u8>, Failure>> + Send,
    {
        let guard = self.sftp.temp_guard(&tmp);
        let filled = async {
            let n = file.write_all(0, chunks).await?;
            file.close().await?;
            self.sftp.set_mode(&tmp, mode).await?;
            if let Some((uid, gid)) = replaced.and_then(|a| a.uid.zip(a.gid)) {
                // Root editing a user's file keeps it theirs; an ordinary user cannot give
                // files away, and that is no reason to fail the write.
                let _ = self.sftp.set_owner(&tmp, uid, gid).await;
            }
            self.check_expected(target, options).await?;
            self.sftp.rename(&tmp, target).await?;
            Ok(n)
        }
        .await;
        match &filled {
            Ok(_) => guard.disarm(),
            Err(_) => {
                guard.disarm();
                let _ = self.sftp.remove(&tmp).await;
            }
        }
        filled
    }

    async fn check_expected(&self, target: &str, options: &WriteOptions) -> Result<(), Failure> {
        let Some(expected) = &options.expected_sha256 else {
            return Ok(());
        };
        let current = self.hash_of(target).await?;
        if current.as_deref() != Some(expected.to_ascii_lowercase().as_str()) {
            return Err(FileProblem::Changed {
                expected: expected.clone(),
                current,
            });
        }
        Ok(())
    }

    /// The fallback of [`write`](Self::write) for a writable file in a directory we may
    /// not create files in: truncate and rewrite it.
    async fn write_in_place(
        &self,
        target: &str,
        data: &[u8],
        options: &WriteOptions,
    ) -> Result<Written> {
        let fail = |p| self.fail("write", target, p);
        self.check_expected(target, options).await.map_err(fail)?;
        let file = self
            .sftp
            .open_file(
                target,
                OpenFlags::WRITE | OpenFlags::TRUNCATE,
                FileAttributes::empty(),
            )
            .await
            .map_err(fail)?;
        file.write_all(0, futures::stream::iter(self.chunked(data)))
            .await
            .map_err(fail)?;
        file.close().await.map_err(fail)?;
        if let Some(mode) = options.mode {
            self.sftp.set_mode(target, mode).await.map_err(fail)?;
        }
        Ok(Written {
            path: target.to_string(),
            size: data.len() as u64,
            sha256: sftp::sha256(data),
        })
    }
}
