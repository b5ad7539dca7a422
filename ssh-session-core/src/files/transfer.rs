//! Uploads and downloads of files and directory trees. Memory stays bounded by the
//! requests in flight (`IN_FLIGHT` chunks), whatever the size; each file lands under a
//! temporary name and is renamed into place once complete, so an interrupted transfer
//! never leaves a half file under the real name.

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use russh_sftp::protocol::FileAttributes;

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
    /// into `remote`, created if missing; an existing file there is replaced, through a
    /// symbolic link if it is one). A link given as `local` is followed; links inside a
    /// directory are skipped.
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
                // Links inside a tree are not followed: they may lead anywhere on this
                // machine (a key, a credentials file) that was never meant to be sent.
                if kind.is_dir() {
                    stack.push((path, target));
                } else if kind.is_file() {
                    self.upload_file(&path, &target, &mut meter).await?;
                }
            }
        }
        Ok(meter.finish(started))
    }

    async fn upload_file(&self, path: &Path, remote: &str, meter: &mut Meter) -> Result<()> {
        let shown = path.display().to_string();
        let file = tokio::fs::File::open(path)
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
        let resolved;
        let remote = match self.sftp.lstat(remote).await {
            Ok(attrs) if attrs.is_symlink() => {
                resolved = self.sftp.realpath(remote).await.map_err(fail)?;
                resolved.as_str()
            }
            _ => remote,
        };
        let existing = self.sftp.try_stat(remote).await.map_err(fail)?;
        if existing.as_ref().is_some_and(FileAttributes::is_dir) {
            return Err(fail(FileProblem::IsADirectory));
        }
        let created = self.create_temp(remote, mode).await.map_err(fail)?;
        // The file is read and hashed on a blocking thread, a few chunks ahead, while this
        // task keeps `IN_FLIGHT` writes on the wire: neither waits for the other.
        let (tx, mut rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let chunk = self.sftp.write_chunk as usize;
        let file = file.into_std().await;
        let reader = tokio::task::spawn_blocking(move || read_and_hash(file, chunk, &tx));
        // A failed read arrives as an error item, so the temporary file is never renamed
        // into place short.
        let chunks = futures::stream::poll_fn(|cx| rx.poll_recv(cx)).map(|c| {
            let c = c.map_err(|e: std::io::Error| local(e, path))?;
            meter.add(c.len() as u64, &shown);
            Ok(c)
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
        // A read that failed ends the chunks early, so its error comes first.
        let hash = match reader.await {
            Ok(Ok(hash)) => hash,
            Ok(Err(e)) => {
                return Err(self.fail("upload", &path.display().to_string(), local(e, path)))
            }
            Err(e) => {
                let e = std::io::Error::other(e.to_string());
                return Err(self.fail("upload", &path.display().to_string(), local(e, path)));
            }
        };
        done.map_err(fail)?;
        meter.file_done(remote, hash);
        Ok(())
    }

    /// Copies the remote file or directory `remote` to `local` (a directory's contents go
    /// into `local`, created if missing; an existing file there is replaced). A link
    /// given as `remote` is followed; links inside a directory are skipped, entries whose
    /// names are not plain names (`..`, a `/`) are refused, and no existing local link
    /// below `local` is written through.
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
        let mut stack = vec![(remote, local_path.to_path_buf(), true)];
        while let Some((dir, local_dir, top)) = stack.pop() {
            let shown = local_dir.display().to_string();
            // Below the top, never write through a link that is already there: it could
            // lead anywhere on this machine.
            if !top {
                if let Ok(meta) = tokio::fs::symlink_metadata(&local_dir).await {
                    if meta.file_type().is_symlink() {
                        return Err(self.fail(
                            "download",
                            &shown,
                            FileProblem::Local(format!(
                                "{shown} is a symbolic link; a download does not write through links"
                            )),
                        ));
                    }
                }
            }
            tokio::fs::create_dir_all(&local_dir)
                .await
                .map_err(|e| self.fail("download", &shown, local(e, &local_dir)))?;
            for entry in self.list(&dir).await? {
                let child = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
                // Names come from the server: one that is not a plain name (`..`, a
                // slash) would place the file elsewhere, as in scp's CVE-2019-6111.
                if !plain_name(&entry.name) {
                    return Err(self.fail(
                        "download",
                        &child,
                        FileProblem::Invalid(format!(
                            "the server listed an entry named {:?}, which is not a plain file name; nothing was written for it",
                            entry.name
                        )),
                    ));
                }
                let target = local_dir.join(&entry.name);
                // Links inside a tree are not followed (they may point anywhere on the
                // host); a link named at the top is.
                match entry.stat.kind {
                    super::FileKind::Dir => stack.push((child, target, false)),
                    super::FileKind::File => {
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
        // A new file only: never truncate, or write through, something already there.
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(local_fail)?;
        let mut part = PartGuard(Some(tmp.clone()));
        // Written and hashed on a blocking thread while this task keeps the reads going.
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(READ_AHEAD);
        let writer = tokio::task::spawn_blocking(move || write_and_hash(out, rx));
        let received: Result<()> = async {
            let mut chunks = file.chunks(0, None, self.sftp.read_chunk);
            while let Some(chunk) = chunks.next().await.map_err(fail)? {
                meter.add(chunk.len() as u64, remote);
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed: its error follows
                }
            }
            Ok(())
        }
        .await;
        drop(tx);
        let written = writer
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        let _ = file.close().await;
        received?;
        let hash = written.map_err(local_fail)?;
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            let perms = std::fs::Permissions::from_mode(mode & 0o7777);
            tokio::fs::set_permissions(&tmp, perms)
                .await
                .map_err(local_fail)?;
        }
        tokio::fs::rename(&tmp, path).await.map_err(local_fail)?;
        part.0 = None;
        meter.file_done(remote, hash);
        Ok(())
    }
}

/// Chunks queued between the network task and the file's blocking thread, each way.
const READ_AHEAD: usize = 8;

/// Reads `file` in `chunk`-sized pieces into `tx`, hashing them; the file's SHA-256.
fn read_and_hash(
    mut file: std::fs::File,
    chunk: usize,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
) -> std::io::Result<String> {
    use std::io::Read;
    let mut hasher = Hasher::default();
    loop {
        let mut buf = vec![0u8; chunk];
        let mut filled = 0;
        while filled < chunk {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let copy = std::io::Error::new(e.kind(), e.to_string());
                    let _ = tx.blocking_send(Err(copy));
                    return Err(e);
                }
            }
        }
        if filled == 0 {
            return Ok(hasher.hex());
        }
        buf.truncate(filled);
        hasher.update(&buf);
        if tx.blocking_send(Ok(buf)).is_err() {
            // The upload stopped (its write failed, or it was dropped).
            return Ok(hasher.hex());
        }
    }
}

/// Writes what arrives on `rx` to `out`, hashing it; the SHA-256 of all of it.
fn write_and_hash(
    mut out: std::fs::File,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<String> {
    use std::io::Write;
    let mut hasher = Hasher::default();
    while let Some(chunk) = rx.blocking_recv() {
        hasher.update(&chunk);
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(hasher.hex())
}

/// Removes a download's partial file unless disarmed: also when the download is dropped
/// half way (its caller went away), so no `.part` file is left behind.
struct PartGuard(Option<PathBuf>);

impl Drop for PartGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether a directory entry's name is a plain name: not empty, `.` or `..`, and without
/// a slash or NUL.
fn plain_name(name: &str) -> bool {
    !(name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']))
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

#[cfg(test)]
mod tests {
    use super::plain_name;

    #[test]
    fn only_plain_names_are_written_locally() {
        for ok in ["a", "a.txt", ".hidden", "..dots", "with space"] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "/etc/passwd", "a/b", "nul\0"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }
}
