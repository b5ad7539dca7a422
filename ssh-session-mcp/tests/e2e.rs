//! The built `ssh-session-mcp` driven by a real MCP client (the official Python SDK, in
//! the venv `.ci/run` creates) against the test kit's real OpenSSH sshd. Each scenario is
//! one Python process with its own server, so they run in parallel like any other tests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::path::PathBuf;
use std::process::Command;

use ssh_session_testkit::{free_port, Sshd, SshdOptions};

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

/// Runs one scenario of `tests/client/e2e.py` against `sshd`.
fn scenario(name: &str, sshd: &Sshd) {
    let tmp = tempfile::tempdir().unwrap();
    // An ssh config with one alias for the kit's sshd, for ssh_list_hosts and alias connects.
    let ssh_config = tmp.path().join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host kit\n  HostName {}\n  Port {}\n  User {}\n",
            sshd.host(),
            sshd.port(),
            sshd.user()
        ),
    )
    .unwrap();
    let env = serde_json::json!({
        "bin": env!("CARGO_BIN_EXE_ssh-session-mcp"),
        "host": sshd.host(),
        "port": sshd.port(),
        "user": sshd.user(),
        "key": sshd.user_key(),
        "unauthorized_key": sshd.unauthorized_key(),
        "known_hosts": sshd.known_hosts(),
        "wrong_known_hosts": sshd.wrong_known_hosts(),
        "ssh_config": ssh_config,
        "closed_port": free_port(),
        "tmp": tmp.path(),
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/client/e2e.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(name)
        .env("SSH_SESSION_E2E", env.to_string())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scenario {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains(&format!("{name}: ok")), "{stdout}");
}

#[test]
fn tools_list_has_schemas_annotations_and_fits_a_context() {
    scenario("tools_list", Sshd::shared());
}

#[test]
fn state_exit_codes_listings_and_history() {
    scenario("basics", Sshd::shared());
}

#[test]
fn timeouts_busy_input_interrupts_progress_and_fifo() {
    scenario("long_running", Sshd::shared());
}

#[test]
fn repl_full_screen_program_and_exit_typed_into_the_shell() {
    scenario("interactive", Sshd::shared());
}

#[test]
fn big_binary_hostile_output_and_a_megabyte_command() {
    scenario("output", Sshd::shared());
}

#[test]
fn a_command_cut_off_by_a_lost_link_is_an_error_then_the_session_recovers() {
    scenario("link_lost", Sshd::shared());
}

#[test]
fn files_guarded_edits_listings_and_transfers_under_roots() {
    scenario("files", Sshd::shared());
}

#[test]
fn tunnels_fan_out_and_host_info() {
    scenario("net", Sshd::shared());
}

#[test]
fn password_prompts_are_reported_and_secrets_kept_out_of_results() {
    scenario("secrets", Sshd::shared());
}

#[test]
fn six_parallel_sessions() {
    scenario("parallel", Sshd::shared());
}

#[test]
fn bad_inputs_leave_the_server_healthy() {
    scenario("bad_inputs", Sshd::shared());
}

#[test]
fn keep_remote_on_a_session_without_tmux_is_reported_as_not_kept() {
    scenario("disconnect", Sshd::shared());
}

#[test]
fn policy_hosts_read_only_deny_and_disabled_tools() {
    scenario("policy", Sshd::shared());
}

#[test]
fn cancel_escalates_and_reports_its_steps() {
    scenario("cancel", Sshd::shared());
}

#[test]
fn streamable_http_with_a_required_token() {
    scenario("http", Sshd::shared());
}

#[test]
fn persistent_sessions_survive_a_server_restart() {
    // tmux servers outlive the sshd that started them: give this sshd's sessions a tmux
    // directory of their own, and kill that server whatever happens.
    let tmux_dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: format!("SetEnv TMUX_TMPDIR={}\n", tmux_dir.path().display()),
        ..Default::default()
    })
    .unwrap();
    struct KillTmux(PathBuf);
    impl Drop for KillTmux {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["-L", "ssh-session", "kill-server"])
                .env("TMUX_TMPDIR", &self.0)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let _guard = KillTmux(tmux_dir.path().to_path_buf());
    scenario("persistent", &sshd);
}
