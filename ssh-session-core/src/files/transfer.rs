//! Uploads and downloads of files and directory trees. Memory stays bounded by the
//! requests in flight (`IN_FLIGHT` chunks), whatever the size; each file lands under a
//! temporary name and is renamed into place once complete, so an interrupted transfer
//! never leaves a half file under the real name.

use std::path::{Path, PathBuf};
use std::time::Instant;

use russh_sftp::protocol::FileAttributes;
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::sftp::{Failure, Hasher};
use super::{split, FileProblem, Progress, RemoteFiles, Transfer, TransferProgress, WriteOptions};
use crate::error::Result;

/// Progress is reported about this often.
const PROGRESS_EVERY: u64 = 1 << 20;

/// Counts bytes over a whole transfer and calls the callback now and then.
struct Meter {
    progress: Option<Progress>,
    bytes: u64,
    reported: u64,
    total: Option<u64>,
    files: u64,
    /// The hash of the one file moved, while only one was.
    hash: Option<String>,
}

impl Meter {
    fn new(progress: Option<Progress>, total: Option<u64>) -> Self {
        Meter {
            progress,
            bytes: 0,
            reported: 0,
            total,
            files: 0,
            hash: None,
        }
    }

    fn add(&mut self, n: u64, path: &str) {
        self.bytes += n;
        if self.bytes - self.reported >= PROGRESS_EVERY {
            self.report(path);
        }
    }

    fn report(&mut self, path: &str) {
        self.reported = self.bytes;
        if let Some(p) = &self.progress {
            p(TransferProgress {
                bytes: self.bytes,
                total: self.total,
                path: path.to_string(),
            });
        }
    }

    fn file_done(&mut self, path: &str, hash: String) {
        self.files += 1;
        self.hash = (self.files == 1).then_some(hash);
        self.report(path);
    }

    fn finish(self, started: Instant) -> Transfer {
        Transfer {
            bytes: self.bytes,
            files: self.files,
            sha256: self.hash,
            duration: started.elapsed(),
        }
    }
}

fn local(e: std::io::Error, path: &Path) -> Failure {
    FileProblem::Local(format!("{}: {e}", path.display()))
}

impl RemoteFiles {
    /// Copies the local file or directory `local` to `remote` (a directory's contents go
    /// into `remote`, created if missing; an existing file there is replaced). Symbolic
    /// links to files are followed; links to directories are skipped.
    pub async fn upload(
        &self,
        local_path: &Path,
        remote: &str,
        progress: Option<Progress>,
    ) -> Result<Transfer> {
        self.check_path("upload", remote)?;
        let started = Instant::now();
        let remote = self.resolve(remote);
        let fail = |p| self.fail("upload", &local_path.display().to_string(), p);
        let meta = tokio::fs::metadata(local_path)
            .await
            .map_err(|e| fail(local(e, local_path)))?;
        if !meta.is_dir() {
            let mut meter = Meter::new(progress, Some(meta.len()));
            self.upload_file(local_path, &remote, &mut meter).await?;
            return Ok(meter.finish(started));
        }
        let mut meter = Meter::new(progress, None);
        let mut stack = vec![(local_path.to_path_buf(), remote)];
        while let Some((dir, remote_dir)) = stack.pop() {
            self.mkdir_all(&remote_dir).await?;
            let mut entries = tokio::fs::read_dir(&dir)
                .await
                .map_err(|e| self.fail("upload", &dir.display().to_string(), local(e, &dir)))?;
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| self.fail("upload", &dir.display().to_string(), local(e, &dir)))?
            {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let target = format!("{}/{name}", remote_dir.trim_end_matches('/'));
                let kind = entry.file_type().await.map_err(|e| {
                    self.fail("upload", &path.display().to_string(), local(e, &path))
                })?;
                if kind.is_dir() {
                    stack.push((path, target));
                } else if kind.is_file()
                    || (kind.is_symlink()
                        && tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()))
                {
                    self.upload_file(&path, &target, &mut meter).await?;
                }
            }
        }
        Ok(meter.finish(started))
    }

    async fn upload_file(&self, path: &Path, remote: &str, meter: &mut Meter) -> Result<()> {
        let shown = path.display().to_string();
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.fail("upload", &shown, local(e, path)))?;
        let mode = file
            .metadata()
            .await
            .map(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.permissions().mode() & 0o7777
            })
            .unwrap_or(0o644);
        let fail = |p| self.fail("upload", remote, p);
        let existing = self.sftp.try_stat(remote).await.map_err(fail)?;
        if existing.as_ref().is_some_and(FileAttributes::is_dir) {
            return Err(fail(FileProblem::IsADirectory));
        }
        let created = self.create_temp(remote, mode).await.map_err(fail)?;
        let chunk = self.sftp.write_chunk as usize;
        let mut hasher = Hasher::default();
        let mut read_error = None;
        let done = {
            // Chunks are read here, sent `IN_FLIGHT` ahead of the acknowledgements.
            let hasher = &mut hasher;
            let meter = &mut *meter;
            let failed_read = &mut read_error;
            let chunks = futures::stream::poll_fn(move |cx| {
                use std::task::Poll;
                let mut buf = vec![0u8; chunk];
                let mut filled = 0;
                while filled < chunk {
                    let mut rb = tokio::io::ReadBuf::new(&mut buf[filled..]);
                    match std::pin::Pin::new(&mut file).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if rb.filled().is_empty() => break,
                        Poll::Ready(Ok(())) => filled += rb.filled().len(),
                        Poll::Ready(Err(e)) => {
                            *failed_read = Some(e);
                            return Poll::Ready(Some(Err(FileProblem::Local(String::new()))));
                        }
                        Poll::Pending if filled == 0 => return Poll::Pending,
                        Poll::Pending => break,
                    }
                }
                if filled == 0 {
                    return Poll::Ready(None);
                }
                buf.truncate(filled);
                hasher.update(&buf);
                meter.add(filled as u64, &shown);
                Poll::Ready(Some(Ok(buf)))
            });
            let done = self
                .fill_temp(
                    created,
                    remote,
                    mode,
                    existing.as_ref(),
                    &WriteOptions::default(),
                    chunks,
                )
                .await;
            done
        };
        if let Some(e) = read_error.take() {
            return Err(self.fail("upload", &path.display().to_string(), local(e, path)));
        }
        done.map_err(fail)?;
        meter.file_done(remote, hasher.hex());
        Ok(())
    }

    /// Copies the remote file or directory `remote` to `local` (a directory's contents go
    /// into `local`, created if missing; an existing file there is replaced). Links to
    /// remote directories are skipped.
    pub async fn download(
        &self,
        remote: &str,
        local_path: &Path,
        progress: Option<Progress>,
    ) -> Result<Transfer> {
        self.check_path("download", remote)?;
        let started = Instant::now();
        let remote = self.resolve(remote);
        let attrs = self
            .sftp
            .stat(&remote)
            .await
            .map_err(|p| self.fail("download", &remote, p))?;
        if !attrs.is_dir() {
            let mut meter = Meter::new(progress, attrs.size);
            self.download_file(&remote, local_path, &mut meter).await?;
            return Ok(meter.finish(started));
        }
        let mut meter = Meter::new(progress, None);
        let mut stack = vec![(remote, local_path.to_path_buf())];
        while let Some((dir, local_dir)) = stack.pop() {
            let shown = local_dir.display().to_string();
            tokio::fs::create_dir_all(&local_dir)
                .await
                .map_err(|e| self.fail("download", &shown, local(e, &local_dir)))?;
            for entry in self.list(&dir).await? {
                let child = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
                let target = local_dir.join(&entry.name);
                match entry.stat.kind {
                    super::FileKind::Dir => stack.push((child, target)),
                    super::FileKind::File => {
                        self.download_file(&child, &target, &mut meter).await?
                    }
                    super::FileKind::Symlink
                        if self.sftp.stat(&child).await.is_ok_and(|a| a.is_regular()) =>
                    {
                        self.download_file(&child, &target, &mut meter).await?
                    }
                    _ => {}
                }
            }
        }
        Ok(meter.finish(started))
    }

    async fn download_file(&self, remote: &str, path: &Path, meter: &mut Meter) -> Result<()> {
        let fail = |p| self.fail("download", remote, p);
        let shown = path.display().to_string();
        let local_fail = |e| self.fail("download", &shown, local(e, path));
        let file = self
            .sftp
            .open_file(
                remote,
                russh_sftp::protocol::OpenFlags::READ,
                FileAttributes::empty(),
            )
            .await
            .map_err(fail)?;
        let mode = file.fstat().await.ok().and_then(|a| a.permissions);
        let tmp = part_name(path);
        let mut out = tokio::fs::File::create(&tmp).await.map_err(local_fail)?;
        let mut hasher = Hasher::default();
        let copied: Result<()> = async {
            let mut chunks = file.chunks(0, None, self.sftp.read_chunk);
            while let Some(chunk) = chunks.next().await.map_err(fail)? {
                hasher.update(&chunk);
                out.write_all(&chunk).await.map_err(local_fail)?;
                meter.add(chunk.len() as u64, remote);
            }
            out.flush().await.map_err(local_fail)?;
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                let perms = std::fs::Permissions::from_mode(mode & 0o7777);
                tokio::fs::set_permissions(&tmp, perms)
                    .await
                    .map_err(local_fail)?;
            }
            tokio::fs::rename(&tmp, path).await.map_err(local_fail)
        }
        .await;
        drop(out);
        let _ = file.close().await;
        if copied.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        copied?;
        meter.file_done(remote, hasher.hex());
        Ok(())
    }
}

/// `dir/.name.part-XXXXXXXX` beside `path`: the download's name until it is complete.
fn part_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let (_, name) = split(&name);
    path.with_file_name(format!(".{name}.part-{:08x}", rand::random::<u32>()))
}
