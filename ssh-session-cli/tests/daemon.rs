//! End-to-end: the daemon's life cycle (auto-start, idle exit, crash recovery), its
//! socket's protection (`attach` is tests/attach.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{alive, kill9, mode, text, wait_until, Env};

#[path = "daemon/restart.rs"]
mod restart;
#[path = "daemon/socket_path.rs"]
mod socket_path;

#[test]
fn daemon_starts_on_first_use_and_exits_when_idle() {
    let env = Env::new().with("SSH_SESSION_IDLE_TIMEOUT", "1s");
    assert!(!env.socket.exists());
    assert_eq!(env.daemon_pid(), None, "status must not start a daemon");
    env.connect("idle");
    let pid = env.daemon_pid().expect("connect started a daemon");
    assert!(env.socket.exists());
    // A session keeps it alive however long it is idle: it is still there after a
    // command, and exits only once the last session is closed.
    env.ok(&["exec", "idle", "--", "true"]);
    assert!(alive(pid));
    env.ok(&["close", "idle"]);
    assert!(
        wait_until(Duration::from_secs(60), || !alive(pid)),
        "the daemon did not exit after its idle timeout\n{}",
        env.log()
    );
    assert!(!env.socket.exists(), "the socket was left behind");
}

#[test]
fn stale_socket_after_a_crash_is_recovered() {
    let env = Env::new();
    env.connect("first");
    let pid = env.daemon_pid().unwrap();
    kill9(pid);
    assert!(wait_until(Duration::from_secs(20), || !alive(pid)));
    assert!(env.socket.exists(), "a killed daemon leaves its socket");
    // The next command starts a new daemon in its place; the old sessions are gone.
    let out = env.run(&["exec", "first", "--", "true"]);
    assert_eq!(out.status.code(), Some(65), "{:?}", text(&out));
    let new_pid = env.daemon_pid().unwrap();
    assert_ne!(new_pid, pid);
    env.connect("second");
    assert_eq!(env.ok(&["exec", "second", "--", "echo", "back"]), "back\n");
}

#[test]
fn daemon_stop_closes_everything() {
    let env = Env::new();
    env.connect("s");
    let pid = env.daemon_pid().unwrap();
    let out = env.ok(&["daemon", "stop"]);
    assert!(out.is_empty());
    assert!(wait_until(Duration::from_secs(20), || !alive(pid)));
    assert!(!env.socket.exists());
    assert_eq!(env.daemon_pid(), None);
}

#[test]
fn socket_is_private_and_other_users_are_refused() {
    let env = Env::new();
    env.connect("p");
    assert_eq!(mode(&env.runtime), 0o700);
    assert_eq!(mode(&env.socket), 0o600);

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "skipping the other-user part of this test: becoming uid 65534 to connect as \
             another user needs root"
        );
        return;
    }
    // With the default permissions another user cannot even connect.
    let outcome = connect_as_nobody(&env.socket);
    assert_eq!(outcome, Err(libc::EACCES), "{outcome:?}");

    // Loosen them (as a careless admin might): the daemon's peer-uid check still refuses.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&env.runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&env.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let answer = connect_as_nobody(&env.socket).expect("connect with loosened permissions");
    assert!(answer.contains("refused"), "{answer}");
    assert!(!answer.contains("\"hello\""), "{answer}");
    // And the daemon goes on serving its owner.
    assert_eq!(env.ok(&["exec", "p", "--", "echo", "ok"]), "ok\n");
}

/// Forks a child that becomes uid/gid 65534, connects to `socket`, sends a hello and
/// reports what the daemon answered (or the connect errno). Only async-signal-safe calls
/// run in the child: everything it needs is prepared before the fork.
fn connect_as_nobody(socket: &std::path::Path) -> Result<String, i32> {
    // SAFETY: plain libc calls on buffers owned by this function; the child only calls
    // async-signal-safe functions and leaves with _exit.
    unsafe {
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in addr.sun_path.iter_mut().zip(socket.as_os_str().as_bytes()) {
            *dst = *src as libc::c_char;
        }
        let hello = b"{\"protocol\":1,\"version\":\"test\"}\n";
        let mut fds = [0; 2];
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            libc::close(fds[0]);
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(100);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
                let errno = *libc::__errno_location();
                libc::_exit(errno.clamp(1, 99));
            }
            libc::write(fd, hello.as_ptr().cast(), hello.len());
            let mut buf = [0u8; 1024];
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                libc::write(fds[1], buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n as usize]);
        }
        libc::close(fds[0]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        let code = libc::WEXITSTATUS(status);
        assert_ne!(
            code, 100,
            "could not become uid 65534 (tests must run as root)"
        );
        if code == 0 {
            Ok(String::from_utf8_lossy(&answer).into_owned())
        } else {
            Err(code)
        }
    }
}
