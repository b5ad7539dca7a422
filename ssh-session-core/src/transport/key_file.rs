//! Identity files, checked and read the same way by both backends: only a regular file,
//! only up to [`MAX_KEY_FILE`] bytes, and never a read that can block.
//!
//! Why: a key file path comes from a user or an agent, and reading "whatever it names to
//! its end" goes wrong in every way a path can: `/dev/zero` grows the process without
//! bound, a FIFO with no writer blocks forever (and a blocked read cannot be interrupted
//! by the connect timeout), `/dev/stdin` of the MCP server swallows its request stream.
//! An OpenSSH private key is a few KB, so anything else is a mistake to report at once,
//! naming the file and what it is.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::options::IdentityFile;

/// The largest file accepted as a key. The biggest OpenSSH private keys (RSA 16384 bits)
/// are about 12 KB; 1 MiB leaves room for anything real and bounds what a wrong path
/// can cost.
pub(crate) const MAX_KEY_FILE: u64 = 1 << 20;

/// Refuses a path that exists but cannot be a key file (not a regular file once symbolic
/// links are followed, or larger than [`MAX_KEY_FILE`]), without opening it.
///
/// A path that cannot be examined (missing, unreadable directory) passes: what happens
/// then is the loader's business (the russh backend reports it; OpenSSH skips a missing
/// key, whose private half may live in an agent next to a `.pub` file). Only `stat`s, but
/// even that can stall on a dead network mount: call it off the async threads.
pub(crate) fn check(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) => acceptable(path, &meta),
        Err(_) => Ok(()),
    }
}

/// [`check`] for every given identity file, on a blocking thread so that the caller's
/// connect deadline still applies.
///
/// Both backends call it before touching the network, so a path that is not a key file
/// fails the same way on both, at once, whether or not another credential would have
/// been accepted first.
pub(crate) async fn check_all(identities: &[IdentityFile]) -> Result<()> {
    let Some(first) = identities.first() else {
        return Ok(());
    };
    let first = first.path.clone();
    let paths: Vec<PathBuf> = identities.iter().map(|i| i.path.clone()).collect();
    tokio::task::spawn_blocking(move || paths.iter().try_for_each(|p| check(p)))
        .await
        .unwrap_or_else(|e| Err(key_error(&first, format!("checking it failed: {e}"), None)))
}

/// Reads a key file as text: refused unless it is a regular file of at most
/// [`MAX_KEY_FILE`] bytes. Blocking: run it with `spawn_blocking`.
pub(crate) fn read(path: &Path) -> Result<String> {
    // Look before opening: opening some devices has effects of its own (a tape rewinds,
    // a watchdog arms, a terminal may become ours).
    let meta = std::fs::metadata(path).map_err(|e| unreadable(path, e))?;
    acceptable(path, &meta)?;
    // The path may have been replaced since: look again at what was actually opened.
    // O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer;
    // O_NOCTTY keeps a terminal from becoming our controlling one.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| unreadable(path, e))?;
    acceptable(path, &file.metadata().map_err(|e| unreadable(path, e))?)?;
    let bytes = read_capped(file).map_err(|e| unreadable(path, e))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        // A file that grew while we read, or one whose size `stat` does not tell (/proc).
        return Err(key_error(
            path,
            format!(
                "it holds more than {}, more than any SSH private key; give the path of a \
                 private key file",
                size(MAX_KEY_FILE)
            ),
            None,
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        key_error(
            path,
            "it is not a text file, so not an OpenSSH private key; give the path of a \
             private key file (e.g. ~/.ssh/id_ed25519), not of a public key or a binary"
                .into(),
            None,
        )
    })
}

/// At most one byte more than the limit, so "too big" is seen without reading it all.
fn read_capped(file: File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn acceptable(path: &Path, meta: &Metadata) -> Result<()> {
    let kind = meta.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("directory")
    } else if kind.is_char_device() {
        Some("character device")
    } else if kind.is_block_device() {
        Some("block device")
    } else if kind.is_fifo() {
        Some("named pipe")
    } else if kind.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    };
    if let Some(what) = what {
        return Err(key_error(
            path,
            format!(
                "it is not a regular file ({what}); give the path of a private key file \
                 (e.g. ~/.ssh/id_ed25519)"
            ),
            None,
        ));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(key_error(
            path,
            format!(
                "it is {} ({} bytes), larger than any SSH private key (limit {}); give the \
                 path of a private key file",
                size(meta.len()),
                meta.len(),
                size(MAX_KEY_FILE)
            ),
            None,
        ));
    }
    Ok(())
}

fn unreadable(path: &Path, e: io::Error) -> Error {
    let detail = match e.kind() {
        io::ErrorKind::NotFound => "it does not exist; check the path".to_string(),
        _ => format!("cannot read it: {e}"),
    };
    key_error(path, detail, Some(e))
}

fn key_error(path: &Path, detail: String, source: Option<io::Error>) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        detail,
        source: source.map(|e| Box::new(e) as _),
    }
}

/// `1 MiB`, `2.0 MiB`, `14.3 GiB`, `512 bytes`.
fn size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    match bytes {
        b if b == MIB => "1 MiB".into(),
        b if b >= GIB => format!("{:.1} GiB", b as f64 / GIB as f64),
        b if b >= MIB => format!("{:.1} MiB", b as f64 / MIB as f64),
        b if b >= 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(e: Error) -> String {
        match e {
            Error::Key { detail, .. } => detail,
            other => panic!("not a key error: {other:?}"),
        }
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (path, what) in [
            (Path::new("/dev/zero"), "character device"),
            (fifo.as_path(), "named pipe"),
            (dir.path(), "directory"),
        ] {
            let text = detail(read(path).unwrap_err());
            assert!(
                text.contains(&format!("not a regular file ({what})")),
                "{text}"
            );
            assert!(detail(check(path).unwrap_err()).contains(what));
        }
    }

    #[test]
    fn sizes_are_capped_and_missing_files_left_to_the_loader() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; (MAX_KEY_FILE + 1) as usize]).unwrap();
        let text = detail(read(&big).unwrap_err());
        assert!(
            text.contains("1.0 MiB (1048577 bytes), larger than any SSH private key (limit 1 MiB)"),
            "{text}"
        );
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "key text").unwrap();
        assert_eq!(read(&ok).unwrap(), "key text");
        let missing = dir.path().join("missing");
        assert!(check(&missing).is_ok());
        assert!(detail(read(&missing).unwrap_err()).contains("does not exist"));
    }

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(size(MAX_KEY_FILE), "1 MiB");
        assert_eq!(size(2 << 20), "2.0 MiB");
        assert_eq!(size(14_700_000), "14.0 MiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert_eq!(size(300), "300 bytes");
    }
}
