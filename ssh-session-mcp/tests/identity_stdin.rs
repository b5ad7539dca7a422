//! `ssh_connect` with `identity_file: "/dev/stdin"` over stdio: the server's stdin is the
//! MCP request stream, so reading it as a key would swallow the client's next requests and
//! hang the server. It must be refused as a tool error naming the file, on both backends,
//! and the server must answer the calls that follow. Driven by the official MCP Python SDK
//! (the venv `.ci/run` creates), against the test kit's real sshd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::path::PathBuf;
use std::process::Command;

use ssh_session_testkit::Sshd;

/// The venv's Python: `SSH_SESSION_MCP_PYTHON`, else `target/mcp-venv/bin/python`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SSH_SESSION_MCP_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/mcp-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run `bash .ci/run` (it creates the venv with the MCP Python SDK), or set SSH_SESSION_MCP_PYTHON",
        venv.display()
    );
    venv
}

const SCRIPT: &str = r#"
import asyncio, json, os, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ENV = json.loads(os.environ["SSH_SESSION_E2E"])
TARGET = f"{ENV['user']}@{ENV['host']}:{ENV['port']}"

def check(cond, what, detail=None):
    if not cond:
        raise AssertionError(f"{what}: {detail!r}")

async def main():
    params = StdioServerParameters(
        command=ENV["bin"],
        args=["--no-agent", "--ssh-config", "/dev/null", "--known-hosts", ENV["known_hosts"]],
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            for transport in ("russh", "openssh"):
                r = await asyncio.wait_for(s.call_tool("ssh_connect", {
                    "name": f"stdin-{transport}", "host": TARGET,
                    "identity_file": "/dev/stdin", "transport": transport,
                }), 30)
                text = r.content[0].text if r.content else ""
                check(r.is_error, f"{transport}: /dev/stdin accepted", r)
                check("/dev/stdin" in text and "not a regular file" in text,
                      f"{transport}: the error names the file and the problem", text)
                # The request stream is intact: the next calls are answered.
                r = await asyncio.wait_for(s.call_tool("ssh_connect", {
                    "name": f"good-{transport}", "host": TARGET,
                    "identity_file": ENV["key"], "transport": transport,
                }), 30)
                check(not r.is_error, f"{transport}: a good key after /dev/stdin", r.content)
                r = await asyncio.wait_for(s.call_tool("ssh_exec", {
                    "session": f"good-{transport}", "command": "echo still-here",
                }), 30)
                check(not r.is_error and r.structured_content["output"] == "still-here\n",
                      f"{transport}: exec after /dev/stdin", r)
            r = await asyncio.wait_for(s.call_tool("ssh_list_sessions", {}), 30)
            names = sorted(x["name"] for x in r.structured_content["sessions"])
            check(names == ["good-openssh", "good-russh"], "only the good sessions", names)
    print("identity_stdin: ok")

asyncio.run(main())
"#;

#[test]
fn dev_stdin_as_identity_file_is_refused_and_the_server_keeps_answering() {
    let sshd = Sshd::shared();
    let env = serde_json::json!({
        "bin": env!("CARGO_BIN_EXE_ssh-session-mcp"),
        "host": sshd.host(),
        "port": sshd.port(),
        "user": sshd.user(),
        "key": sshd.user_key(),
        "known_hosts": sshd.known_hosts(),
    });
    let out = Command::new(python())
        .arg("-c")
        .arg(SCRIPT)
        .env("SSH_SESSION_E2E", env.to_string())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("identity_stdin: ok"),
        "failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}
