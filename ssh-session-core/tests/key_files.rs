//! Identity files that are not key files (a device, a FIFO, a directory, a huge file,
//! the process's own stdin) are refused before anything reads them, at once and naming
//! the file and what is wrong with it; nothing blocks, nothing grows, and a good key
//! still works afterwards. Real sshd, both backends.
//!
//! Why this matters: a key file used to be read to its end with no limit, so
//! `/dev/zero` grew the process without bound, a FIFO hung the connect forever (the
//! connect timeout did not cover loading keys) and `/dev/stdin` of the MCP server ate
//! its request stream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_session_core::{Error, IdentityFile, SessionConfig, SessionManager};
use ssh_session_testkit::prelude::*;

/// A safety net only: the connect must fail at once, but a regression must fail the
/// test rather than hang it.
const NET: Duration = Duration::from_secs(20);

/// Connects with `key` as the only identity file and returns the error, which must be
/// the key file error, naming the file and containing `problem`.
async fn refused(m: &SessionManager, name: &str, key: &Path, problem: &str) -> Error {
    let mut opts = Sshd::shared().connect_options(backend());
    opts.identities = vec![IdentityFile::new(key)];
    let e = match tokio::time::timeout(NET, m.open(name, opts, SessionConfig::default())).await {
        Ok(Ok(_)) => panic!("{}: connected with a bad key file", key.display()),
        Ok(Err(e)) => e,
        Err(_) => panic!("{}: the connect hung", key.display()),
    };
    let text = e.to_string();
    assert!(matches!(e, Error::Key { .. }), "{}: {e:?}", key.display());
    assert!(
        text.contains(&key.display().to_string()),
        "the message names the file: {text}"
    );
    assert!(text.contains(problem), "expected {problem:?} in: {text}");
    assert!(!text.contains("()"), "no library API names: {text}");
    e
}

conformance! {
    async fn a_character_device_is_refused_before_it_is_read() {
        let m = SessionManager::new();
        refused(&m, "zero", Path::new("/dev/zero"), "not a regular file (character device)").await;
        refused(&m, "urandom", Path::new("/dev/urandom"), "character device").await;
        assert!(m.names().is_empty());
    }

    async fn a_fifo_nobody_writes_to_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("key-fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let m = SessionManager::new();
        refused(&m, "fifo", &fifo, "not a regular file (named pipe)").await;
        // A symbolic link is followed: what it points to is what counts.
        let link = dir.path().join("link-to-fifo");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        refused(&m, "link", &link, "named pipe").await;
    }

    async fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = SessionManager::new();
        refused(&m, "dir", dir.path(), "not a regular file (directory)").await;
    }

    async fn a_file_too_big_to_be_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 2 << 20]).unwrap();
        let m = SessionManager::new();
        let e = refused(&m, "big", &big, "larger than any SSH private key").await;
        assert!(e.to_string().contains("2.0 MiB"), "{e}");
        assert!(e.to_string().contains("limit 1 MiB"), "{e}");
    }

    async fn the_processes_own_stdin_is_refused_unless_it_is_a_file() {
        let stdin = PathBuf::from("/dev/stdin");
        let m = SessionManager::new();
        // What stdin is depends on how the tests were started; a pipe, a terminal or
        // /dev/null must all be refused as "not a regular file", never read.
        let regular = std::fs::metadata(&stdin).is_ok_and(|md| md.is_file());
        if regular {
            let mut opts = Sshd::shared().connect_options(backend());
            opts.identities = vec![IdentityFile::new(&stdin)];
            let r = tokio::time::timeout(NET, m.open("stdin", opts, SessionConfig::default()))
                .await
                .expect("no hang");
            let Err(e) = r else {
                panic!("a redirected file is not our key")
            };
            assert!(e.to_string().contains("/dev/stdin"), "{e}");
        } else {
            refused(&m, "stdin", &stdin, "not a regular file").await;
        }
    }

    async fn a_good_key_still_works_after_bad_ones_failed() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let m = SessionManager::new();
        refused(&m, "bad1", Path::new("/dev/zero"), "character device").await;
        refused(&m, "bad2", &fifo, "named pipe").await;
        refused(&m, "bad3", dir.path(), "directory").await;
        let s = tokio::time::timeout(
            NET,
            m.open("good", Sshd::shared().connect_options(backend()), SessionConfig::default()),
        )
        .await
        .expect("no hang")
        .expect("the good key connects");
        assert_eq!(out(&s, "echo ok").await, "ok\n");
        assert_eq!(m.names(), ["good"]);
        m.shutdown().await;
    }

    async fn a_bad_key_among_several_is_an_error_even_if_a_later_one_is_good() {
        // An explicitly given bad path is a mistake to report, not to step over.
        let m = SessionManager::new();
        let mut opts = Sshd::shared().connect_options(backend());
        opts.identities.insert(0, IdentityFile::new("/dev/zero"));
        let r = tokio::time::timeout(NET, m.open("mixed", opts, SessionConfig::default()))
            .await
            .expect("no hang");
        let Err(e) = r else {
            panic!("connected despite /dev/zero")
        };
        assert!(matches!(e, Error::Key { .. }), "{e}");
        assert!(e.to_string().contains("/dev/zero"), "{e}");
    }
}
