//! `cargo bench -p ssh-session-mcp --bench mcp_exec`: the MCP server's exec latency as an
//! agent sees it, next to MCP no-op calls in the same run (see `mcp_bench.py`). Needs the
//! venv `.ci/run` creates (or `SSH_SESSION_MCP_PYTHON`). `BENCH_N` sets the sample count.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::path::PathBuf;
use std::process::Command;

use ssh_session_testkit::Sshd;

fn main() {
    let python = std::env::var_os("SSH_SESSION_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/mcp-venv/bin/python")
        });
    assert!(
        python.exists(),
        "{} is missing: run `bash .ci/run` once (it creates the venv with the MCP Python SDK)",
        python.display()
    );
    // The release binary: `cargo bench` builds this package's binary with the bench profile.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ssh-session-mcp"));
    let sshd = Sshd::start().expect("sshd");
    let env = serde_json::json!({
        "bin": bin,
        "host": sshd.host(),
        "port": sshd.port(),
        "user": sshd.user(),
        "key": sshd.user_key(),
        "known_hosts": sshd.known_hosts(),
    });
    let status = Command::new(python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/mcp_bench.py"))
        .env("SSH_SESSION_E2E", env.to_string())
        .status()
        .expect("run python");
    assert!(status.success(), "the bench client failed: {status}");
}
