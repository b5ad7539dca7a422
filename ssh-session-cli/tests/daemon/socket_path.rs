//! What the daemon does to the socket's path and directory: only what it made is changed.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::{alive, mode, text, wait_until, Env};

/// A file at the socket path (`SSH_SESSION_SOCKET=~/notes.txt`) is never deleted, nor
/// one a symlink there points to: the daemon refuses to start and says why.
#[test]
fn a_file_at_the_socket_path_is_never_deleted() {
    let env = Env::new();
    std::fs::create_dir(&env.runtime).unwrap();
    std::fs::set_permissions(&env.runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(&env.socket, "my notes\n").unwrap();

    let out = env.run(&["exec", "x", "--", "true"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(72), "{stderr}");
    assert!(
        stderr.contains("is a regular file, not a socket") && stderr.contains("--socket"),
        "{stderr}"
    );
    // In the foreground too.
    let out = env.run(&["daemon"]);
    assert_eq!(out.status.code(), Some(72), "{:?}", text(&out));
    assert!(text(&out).1.contains("not a socket"), "{:?}", text(&out));
    assert_eq!(std::fs::read_to_string(&env.socket).unwrap(), "my notes\n");

    // A symlink is not followed, and stays.
    let target = env.dir.path().join("target.txt");
    std::fs::write(&target, "kept\n").unwrap();
    std::fs::remove_file(&env.socket).unwrap();
    std::os::unix::fs::symlink(&target, &env.socket).unwrap();
    let out = env.run(&["exec", "x", "--", "true"]);
    assert_eq!(out.status.code(), Some(72), "{:?}", text(&out));
    assert!(text(&out).1.contains("symbolic link"), "{:?}", text(&out));
    assert!(std::fs::symlink_metadata(&env.socket)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept\n");
}

/// On its way out the daemon removes only the socket it bound: a file put at the path
/// since (here while it ran) stays.
#[test]
fn a_stopping_daemon_removes_only_its_own_socket() {
    let env = Env::new();
    env.connect("own");
    let pid = env.daemon_pid().unwrap();
    let moved = env.runtime.join("moved.sock");
    std::fs::rename(&env.socket, &moved).unwrap();
    std::fs::write(&env.socket, "not the daemon's\n").unwrap();
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert!(
        wait_until(Duration::from_secs(30), || !alive(pid)),
        "{}",
        env.log()
    );
    assert_eq!(
        std::fs::read_to_string(&env.socket).unwrap(),
        "not the daemon's\n"
    );
    // Cleared for the Env's own clean-up.
    std::fs::remove_file(&env.socket).unwrap();
}

/// `--socket ~/x.sock` must not chmod the home directory: an existing directory keeps
/// its mode. One that others can write to is refused, and left as it is too.
#[test]
fn an_existing_socket_directory_keeps_its_mode() {
    let mut env = Env::new();
    let public = env.dir.path().join("home");
    std::fs::create_dir(&public).unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.runtime = public.clone();
    env.socket = public.join("x.sock");
    env.connect("home");
    assert_eq!(env.ok(&["exec", "home", "--", "echo", "ok"]), "ok\n");
    assert_eq!(mode(&public), 0o755);
    assert_eq!(mode(&env.socket), 0o600);

    let mut shared = Env::new();
    let tmp = shared.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    shared.runtime = tmp.clone();
    shared.socket = tmp.join("x.sock");
    let out = shared.run(&["exec", "x", "--", "true"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(72), "{stderr}");
    assert!(
        stderr.contains("writable by others") && stderr.contains("--socket"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    assert!(!shared.socket.exists());
}
