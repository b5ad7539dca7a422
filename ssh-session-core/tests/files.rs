//! Remote files over SFTP on both transports, against the kit's real sshd: byte-exact
//! round trips, hash-guarded edits, listings, trees, and failures as clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ssh_session_core::files::{FileKind, FileRange, WriteOptions};
use ssh_session_core::{Error, ErrorKind, FileProblem, SessionConfig, SessionManager};
use ssh_session_testkit::prelude::*;
use ssh_session_testkit::SshdOptions;

/// A fresh remote directory for one test on one backend.
async fn scratch(s: &ssh_session_core::ShellSession, name: &str) -> String {
    let dir = format!("/tmp/ss-files-{name}-{}", backend());
    run(s, &format!("rm -rf {dir} && mkdir -p {dir}")).await;
    dir
}

/// Bytes no text encoding survives: every byte value, NULs, CRLF, invalid UTF-8.
fn binary(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i < 256 {
                i as u8
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

fn problem(e: &Error) -> &FileProblem {
    match e {
        Error::File { problem, .. } => problem,
        other => panic!("not a file error: {other}"),
    }
}

conformance! {
    async fn text_and_binary_round_trip_byte_exact() {
        let (m, s) = session("files-rt").await;
        let dir = scratch(&s, "rt").await;
        let files = s.files().await.unwrap();
        let text = "héllo\r\nwörld\n\ttabs and ünïcode ✓\n".repeat(100);
        let w = files
            .write(&format!("{dir}/t.txt"), text.as_bytes(), WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(w.size, text.len() as u64);
        let remote = out(&s, &format!("sha256sum {dir}/t.txt | cut -d' ' -f1")).await;
        assert_eq!(remote.trim(), w.sha256, "the hash is the file's, as sha256sum sees it");
        let r = files.read(&format!("{dir}/t.txt"), FileRange::default()).await.unwrap();
        assert_eq!(r.data, text.as_bytes());
        assert_eq!(r.sha256.as_deref(), Some(w.sha256.as_str()));
        assert!(!r.truncated);
        assert_eq!(r.mode, 0o644, "a new file gets 0644");

        // Several MiB of every byte value: more than one chunk and many requests in flight.
        let data = binary(5 << 20 | 12345);
        let w = files
            .write(&format!("{dir}/b.bin"), &data, WriteOptions::default())
            .await
            .unwrap();
        let remote = out(&s, &format!("sha256sum {dir}/b.bin | cut -d' ' -f1")).await;
        assert_eq!(remote.trim(), w.sha256);
        let r = files.read(&format!("{dir}/b.bin"), FileRange::default()).await.unwrap();
        assert!(r.data == data, "binary content differs");

        // A range: the bytes asked for, the whole file's size and hash, and truncated.
        let part = files
            .read(&format!("{dir}/b.bin"), FileRange::new(1000, Some(70_000)))
            .await
            .unwrap();
        assert_eq!(part.data, &data[1000..71_000]);
        assert_eq!(part.size, data.len() as u64);
        assert!(part.truncated);
        assert_eq!(part.sha256.as_deref(), Some(w.sha256.as_str()));
        let tail = files
            .read(&format!("{dir}/b.bin"), FileRange::new(data.len() as u64 - 10, Some(100)))
            .await
            .unwrap();
        assert_eq!(tail.data, &data[data.len() - 10..]);
        assert!(!tail.truncated);
        // Files whose size the server reports as 0 (procfs) are read, and a read that
        // filled its limit there is not taken for the whole file.
        let status = files.read("/proc/self/status", FileRange::new(0, Some(10))).await.unwrap();
        assert_eq!((status.data.len(), status.truncated), (10, true), "{status:?}");
        let status = files.read("/proc/self/status", FileRange::default()).await.unwrap();
        assert!(!status.truncated && String::from_utf8_lossy(&status.data).contains("Name:"), "{status:?}");
        let empty = files
            .write(&format!("{dir}/empty"), b"", WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(empty.size, 0);
        assert!(files.read(&format!("{dir}/empty"), FileRange::default()).await.unwrap().data.is_empty());
        run(&s, &format!("rm -rf {dir}")).await;
        m.shutdown().await;
    }

    async fn a_guarded_edit_is_refused_when_the_file_changed() {
        let (m, s) = session("files-guard").await;
        let dir = scratch(&s, "guard").await;
        let path = format!("{dir}/app.conf");
        run(&s, &format!("printf 'debug = false\\n' > {path} && chmod 640 {path}")).await;
        let files = s.files().await.unwrap();
        let read = files.read(&path, FileRange::default()).await.unwrap();
        let seen = read.sha256.clone().unwrap();
        assert_eq!(read.mode, 0o640);

        // Someone else edits it meanwhile.
        run(&s, &format!("printf 'debug = false\\nport = 1\\n' > {path}")).await;
        let e = files
            .write(&path, b"debug = true\n", WriteOptions::guarded(&seen))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let now = out(&s, &format!("sha256sum {path} | cut -d' ' -f1")).await;
        match problem(&e) {
            FileProblem::Changed { expected, current } => {
                assert_eq!(expected, &seen);
                assert_eq!(current.as_deref(), Some(now.trim()), "the message gives the current hash");
            }
            other => panic!("{other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(&path) && msg.contains(now.trim()) && msg.contains("nothing was written"), "{msg}");
        assert_eq!(out(&s, &format!("cat {path}")).await, "debug = false\nport = 1\n", "untouched");
        assert_eq!(out(&s, &format!("ls -1A {dir}")).await, "app.conf\n", "no temporary file left");

        // With the hash it has now, the edit goes through, keeping the mode.
        let w = files
            .write(&path, b"debug = true\nport = 1\n", WriteOptions::guarded(now.trim()))
            .await
            .unwrap();
        assert_eq!(out(&s, &format!("cat {path}")).await, "debug = true\nport = 1\n");
        assert_eq!(out(&s, &format!("stat -c %a {path}")).await, "640\n");
        assert_eq!(out(&s, &format!("ls -1A {dir}")).await, "app.conf\n");
        // A file removed since it was read is a conflict too.
        run(&s, &format!("rm {path}")).await;
        let e = files.write(&path, b"x", WriteOptions::guarded(&w.sha256)).await.unwrap_err();
        assert!(matches!(problem(&e), FileProblem::Changed { current: None, .. }), "{e}");
        assert_eq!(out(&s, &format!("ls -1A {dir}")).await, "");

        // Writing through a symbolic link replaces its target, not the link.
        run(&s, &format!("printf old > {dir}/real && ln -s real {dir}/link")).await;
        files.write(&format!("{dir}/link"), b"new", WriteOptions::default()).await.unwrap();
        assert_eq!(out(&s, &format!("cat {dir}/real; echo; readlink {dir}/link")).await, "new\nreal\n");
        run(&s, &format!("rm -rf {dir}")).await;
        m.shutdown().await;
    }

    async fn directories_listings_and_relative_paths() {
        let (m, s) = session("files-dirs").await;
        let dir = scratch(&s, "dirs").await;
        run(&s, &format!("cd {dir} && mkdir sub && printf 12345 > sub/five && ln -s sub ln")).await;
        // Opened now, relative paths start in the shell's directory.
        let files = s.files().await.unwrap();
        let entries = files.list(".").await.unwrap();
        let names: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.stat.kind)).collect();
        assert_eq!(names, [("ln", FileKind::Symlink), ("sub", FileKind::Dir)]);
        let five = &files.list("sub").await.unwrap()[0];
        assert_eq!((five.name.as_str(), five.stat.size, five.stat.kind), ("five", 5, FileKind::File));
        assert!(five.stat.modified.is_some());
        assert_eq!(files.stat("sub/five").await.unwrap().size, 5);

        files.mkdir_all("a/b/c").await.unwrap();
        files.mkdir_all("a/b/c").await.unwrap(); // exists: fine, as mkdir -p
        files.write("a/b/c/f", b"x", WriteOptions::default().create_dirs(true)).await.unwrap();
        files.write("new/deep/g", b"y", WriteOptions::default().create_dirs(true)).await.unwrap();
        assert_eq!(out(&s, "cat a/b/c/f new/deep/g").await, "xy");
        files.rename("a/b/c/f", "a/moved").await.unwrap();
        files.rename("sub/five", "a/moved").await.unwrap(); // replaces
        assert_eq!(out(&s, "cat a/moved").await, "12345");

        let e = files.remove("a", false).await.unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        files.remove("a", true).await.unwrap();
        files.remove("ln", false).await.unwrap(); // the link, not what it points to
        assert_eq!(out(&s, "ls -1A").await, "new\nsub\n");
        run(&s, &format!("cd / && rm -rf {dir}")).await;
        m.shutdown().await;
    }

    async fn missing_paths_and_wrong_kinds_are_clear_errors() {
        let (m, s) = session("files-errs").await;
        let dir = scratch(&s, "errs").await;
        run(&s, &format!("printf x > {dir}/file && mkdir {dir}/d")).await;
        let files = s.files().await.unwrap();
        let missing = format!("{dir}/nope/x.txt");
        for e in [
            files.read(&missing, FileRange::default()).await.unwrap_err(),
            files.stat(&missing).await.unwrap_err(),
            files.list(&missing).await.unwrap_err(),
            files.remove(&missing, true).await.unwrap_err(),
            files.write(&missing, b"x", WriteOptions::default()).await.unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&missing) && msg.contains("files-errs") && msg.contains("no such file"), "{msg}");
        }
        let e = files.list(&format!("{dir}/file")).await.unwrap_err();
        assert_eq!(problem(&e), &FileProblem::NotADirectory, "{e}");
        let e = files.read(&format!("{dir}/d"), FileRange::default()).await.unwrap_err();
        assert_eq!(problem(&e), &FileProblem::IsADirectory, "{e}");
        let e = files.write(&format!("{dir}/d"), b"x", WriteOptions::default()).await.unwrap_err();
        assert_eq!(problem(&e), &FileProblem::IsADirectory, "{e}");
        let e = files.mkdir_all(&format!("{dir}/file/sub")).await.unwrap_err();
        assert_eq!(problem(&e), &FileProblem::NotADirectory, "{e}");
        let e = files.read("", FileRange::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // None of that broke the channel or the shell.
        assert_eq!(files.read(&format!("{dir}/file"), FileRange::default()).await.unwrap().data, b"x");
        assert_eq!(out(&s, "echo ok").await, "ok\n");
        run(&s, &format!("rm -rf {dir}")).await;
        m.shutdown().await;
    }

    async fn trees_upload_and_download_with_progress() {
        let (m, s) = session("files-tree").await;
        let dir = scratch(&s, "tree").await;
        let local = tempfile::tempdir().unwrap();
        let src = local.path().join("src");
        std::fs::create_dir_all(src.join("nested/deeper")).unwrap();
        let big = binary(3 << 20);
        std::fs::write(src.join("big.bin"), &big).unwrap();
        std::fs::write(src.join("nested/a.txt"), "alpha\n").unwrap();
        std::fs::write(src.join("nested/deeper/empty"), "").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(src.join("nested/a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let files = s.files().await.unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        let progress: ssh_session_core::files::Progress = Arc::new(move |p| {
            assert!(p.bytes <= (3 << 20) + 6);
            seen.fetch_add(1, Ordering::Relaxed);
        });
        let up = files.upload(&src, &format!("{dir}/up"), Some(progress)).await.unwrap();
        assert_eq!((up.files, up.bytes), (3, (3 << 20) + 6));
        assert!(calls.load(Ordering::Relaxed) >= 3, "progress reported");
        let listing = out(&s, &format!("cd {dir}/up && find . -type f | sort && stat -c %a nested/a.txt && sha256sum big.bin | cut -d' ' -f1")).await;
        let want_hash = ssh_session_core_sha(&big);
        assert_eq!(listing, format!("./big.bin\n./nested/a.txt\n./nested/deeper/empty\n600\n{want_hash}\n"));

        let back = local.path().join("back");
        let down = files.download(&format!("{dir}/up"), &back, None).await.unwrap();
        assert_eq!((down.files, down.bytes), (3, (3 << 20) + 6));
        assert_eq!(std::fs::read(back.join("big.bin")).unwrap(), big);
        assert_eq!(std::fs::read_to_string(back.join("nested/a.txt")).unwrap(), "alpha\n");
        assert!(back.join("nested/deeper/empty").exists());

        // One file: its hash is reported, and it lands under its own name only.
        let one = files.download(&format!("{dir}/up/big.bin"), &local.path().join("one.bin"), None).await.unwrap();
        assert_eq!(one.sha256.as_deref(), Some(want_hash.as_str()));
        let up_one = files.upload(&local.path().join("one.bin"), &format!("{dir}/one.bin"), None).await.unwrap();
        assert_eq!(up_one.sha256.as_deref(), Some(want_hash.as_str()));
        // A read that fails half way (here at once: /proc/self/mem at offset 0 is EIO)
        // leaves nothing under the target's name, not a short file.
        let e = files.upload(std::path::Path::new("/proc/self/mem"), &format!("{dir}/mem"), None).await.unwrap_err();
        assert!(matches!(problem(&e), FileProblem::Local(_)), "{e}");
        assert_eq!(out(&s, &format!("ls -1A {dir} | grep -c mem; true")).await, "0\n");
        let e = files.upload(&local.path().join("missing"), &format!("{dir}/x"), None).await.unwrap_err();
        assert!(matches!(problem(&e), FileProblem::Local(_)), "{e}");
        assert!(e.to_string().contains("missing"), "{e}");
        let names: Vec<_> = std::fs::read_dir(local.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "no partial files left: {names:?}");

        // Links inside a tree are not followed either way: a link to a secret outside is
        // not sent, a link on the host is not fetched, and an existing local link below
        // the target is not written through.
        let secret = local.path().join("secret");
        std::fs::write(&secret, "do not send").unwrap();
        std::os::unix::fs::symlink(&secret, src.join("nested/creds")).unwrap();
        files.upload(&src, &format!("{dir}/up2"), None).await.unwrap();
        assert_eq!(out(&s, &format!("ls -1A {dir}/up2/nested")).await, "a.txt\ndeeper\n");
        run(&s, &format!("ln -s /etc/hostname {dir}/up/nested/host-link")).await;
        let back2 = local.path().join("back2");
        files.download(&format!("{dir}/up"), &back2, None).await.unwrap();
        assert!(!back2.join("nested/host-link").exists(), "a remote link is not fetched");
        let elsewhere = local.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let back3 = local.path().join("back3");
        std::fs::create_dir_all(&back3).unwrap();
        std::os::unix::fs::symlink(&elsewhere, back3.join("nested")).unwrap();
        let e = files.download(&format!("{dir}/up"), &back3, None).await.unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing written through the link");

        // Uploading onto a remote link replaces what it points to, as write() does.
        run(&s, &format!("printf old > {dir}/target && ln -s target {dir}/link")).await;
        files.upload(&local.path().join("one.bin"), &format!("{dir}/link"), None).await.unwrap();
        assert_eq!(out(&s, &format!("readlink {dir}/link; stat -c %s {dir}/target")).await, format!("target\n{}\n", 3 << 20));
        run(&s, &format!("rm -rf {dir}")).await;
        m.shutdown().await;
    }

    async fn a_server_that_refuses_writes_gives_permission_errors() {
        // sftp-server -R: the server's own read-only mode, refusing every change with
        // SSH_FX_PERMISSION_DENIED (tests run as root, for whom file modes refuse nothing).
        let sshd = Sshd::start_with(SshdOptions {
            extra_config: "Subsystem sftp /usr/lib/openssh/sftp-server -R".into(),
            ..Default::default()
        })
        .unwrap();
        let m = SessionManager::new();
        let s = m
            .open("files-ro", sshd.connect_options(backend()), SessionConfig::default())
            .await
            .unwrap();
        let files = s.files().await.unwrap();
        let e = files.write("/tmp/ss-files-ro", b"x", WriteOptions::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("/tmp/ss-files-ro") && e.to_string().contains("permission denied"), "{e}");
        let e = files.mkdir_all("/tmp/ss-files-ro-dir/x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        // Reading still works.
        assert!(!files.list("/").await.unwrap().is_empty());
        m.shutdown().await;
    }
}

fn ssh_session_core_sha(data: &[u8]) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

conformance! {
    async fn files_work_on_a_connection_without_room_for_another_channel() {
        // MaxSessions 1: the session's shell takes the connection's only channel, so its
        // SFTP channel must go over another connection, as a signalling exec does.
        let sshd = Sshd::start_with(SshdOptions {
            max_sessions: 1,
            ..Default::default()
        })
        .unwrap();
        let m = SessionManager::new();
        let s = m
            .open("files-full", sshd.connect_options(backend()), SessionConfig::default())
            .await
            .unwrap();
        let files = s.files().await.unwrap();
        let w = files.write("/tmp/ss-files-full", b"room", WriteOptions::default()).await.unwrap();
        assert_eq!(w.size, 4);
        assert_eq!(files.read("/tmp/ss-files-full", FileRange::default()).await.unwrap().data, b"room");
        files.remove("/tmp/ss-files-full", false).await.unwrap();
        drop(files);
        assert_eq!(out(&s, "echo still here").await, "still here\n");
        m.shutdown().await;
    }
}
