//! Test kit for the ssh-session crates: SSH servers on loopback for integration
//! tests, examples and benchmarks.
//!
//! Two servers, for two different needs:
//!
//! * [`Sshd`] runs the real OpenSSH `sshd` (Debian's `openssh-server`) on
//!   `127.0.0.1:<free port>` with throw-away keys, so tests exercise the
//!   server that users actually connect to. It needs `/usr/sbin/sshd` and
//!   `ssh-keygen`.
//! * [`EmbeddedServer`] is a small SSH server written with russh that runs
//!   in-process. It exists so that the README quickstart works on a machine
//!   with no OpenSSH installed at all; it serves shells (with or without a
//!   PTY) and exec requests, which is all a session client needs.
//!
//! Both listen on loopback only and accept exactly the keys they generated,
//! so they are safe to run on a developer machine.
//!
//! [`harness`] holds what session tests share: [`Sshd::connect_options`] for either
//! backend, [`conformance!`] to run a test once per backend, and bounded helpers
//! (`run`, `read_until`...); `use ssh_session_testkit::prelude::*` brings them in.
//!
//! This crate is Linux-only: it relies on `prctl(PR_SET_PDEATHSIG)` and on
//! `/proc` to guarantee that no server outlives the test process.

#![warn(missing_docs)]
// The kit runs inside tests and benchmarks, where a panic with a message is the failure
// report: its helpers panic rather than make every test unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "browser")]
pub mod browser;
mod embedded;
pub mod harness;
mod keys;
pub mod proxy;
mod spawner;
mod sshd;

use std::collections::HashSet;
use std::ffi::CStr;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

#[cfg(feature = "browser")]
pub use browser::Browser;
pub use embedded::EmbeddedServer;
pub use harness::prelude;
pub use proxy::{CutMode, FaultProxy};
pub use sshd::{Sshd, SshdOptions};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// It binds port 0, reads the port the kernel picked and closes the socket,
/// so another process could still take it before the caller binds it; callers
/// that start a server on it should be ready to retry ([`Sshd`] does). Within
/// one process the same port is never returned twice, because tests start
/// servers concurrently and the kernel may hand a just-closed port out again.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind 127.0.0.1:0; is the loopback interface up?");
        if given.insert(port) {
            return port;
        }
    }
}

/// The name of the user this process runs as (the login name servers accept).
///
/// Read from the password database rather than `$USER`, which is often unset
/// in containers and CI where tests run as root.
pub(crate) fn current_user() -> String {
    // SAFETY: getpwuid_r writes into the buffers we own; `result` is either
    // null or points at `pwd`, whose strings live in `buf`.
    unsafe {
        let uid = libc::geteuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            return CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned();
        }
        std::env::var("USER").unwrap_or_else(|_| uid.to_string())
    }
}
