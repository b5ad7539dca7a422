//! Helper process for the test kit's own tests: starts the shared sshd, prints its pid and
//! directory, then exits normally (`exit`) or dies without cleanup (`abort`), so the tests
//! can check that the sshd never outlives the process that owns it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use ssh_session_testkit::Sshd;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "exit".into());
    let sshd = Sshd::shared();
    println!("PID {} DIR {}", sshd.pid(), sshd.dir().display());
    if mode == "abort" {
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        std::process::abort();
    }
}
