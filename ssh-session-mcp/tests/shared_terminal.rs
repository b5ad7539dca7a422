//! What an agent learns about a person at the session's terminal (issue #12): the
//! server's tools called by the official Rust SDK's MCP client, in process, while a person
//! is attached to the same session through core (the front ends that attach people are the
//! CLI and, later, the browser; neither shares this server's sessions yet). Real sshd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

mod common;

use common::Agent;
use serde_json::json;
use ssh_session_core::AttachOptions;
use ssh_session_testkit::Sshd;

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_hears_what_a_person_did_and_never_runs_into_their_command() {
    let agent = Agent::start(false).await;
    let sshd = Sshd::shared();
    agent
        .ok(
            "ssh_connect",
            json!({"name": "shared", "host": format!("{}@127.0.0.1:{}", sshd.user(), sshd.port()),
                   "identity_file": sshd.user_key()}),
        )
        .await;
    let s = agent.manager.get("shared").unwrap();
    let person = s
        .attach(AttachOptions::new("attach", 100, 30))
        .await
        .unwrap();
    person.wait_prompt(Duration::from_secs(10)).await.unwrap();
    person
        .send(b"cd /tmp && printf '\\033[1mmade-%s\\033[0m\\n' $((6*7)); false\r")
        .await
        .unwrap();
    agent.persons("shared", "attach", 1).await;

    // Refused once, with what the person ran as structured content...
    let (text, structured) = agent
        .err("ssh_exec", json!({"session": "shared", "command": "pwd"}))
        .await;
    assert!(text.contains("a person ran 1 command(s)"), "{text}");
    let v = structured.expect("a refusal carries structured content");
    assert_eq!(v["error"], "human_activity");
    assert_eq!(v["cwd"], "/tmp");
    let c = &v["human_commands"][0];
    assert_eq!(
        c["command"], "cd /tmp && printf '\\033[1mmade-%s\\033[0m\\n' $((6*7)); false",
        "{v}"
    );
    assert_eq!(c["exit_code"], 1);
    assert_eq!(c["cwd"], "/tmp");
    assert_eq!(c["source"], "attach");
    assert!(c["duration_ms"].is_u64(), "{c}");
    let output = c["output"].as_str().unwrap();
    assert!(
        output.contains("made-42") && !output.contains('\x1b'),
        "the output as an agent reads it: {c}"
    );
    let started = c["started_at"].as_str().unwrap();
    assert!(
        humantime::parse_rfc3339(started).is_ok(),
        "started_at is not RFC 3339: {started}"
    );
    // ...and the same call then runs, in the person's cwd.
    let r = agent
        .ok("ssh_exec", json!({"session": "shared", "command": "pwd"}))
        .await;
    assert_eq!(r["output"], "/tmp\n");

    // "report" runs at once and lists them in the notices.
    person.send(b"true\r").await.unwrap();
    agent.persons("shared", "attach", 2).await;
    let r = agent
        .ok(
            "ssh_exec",
            json!({"session": "shared", "command": "echo go", "human_activity": "report"}),
        )
        .await;
    assert_eq!(r["output"], "go\n");
    assert!(
        r["notices"][0].as_str().unwrap().contains("`true` (exit 0"),
        "{r}"
    );

    // While the person's command runs, the agent is told it is theirs.
    person.send(b"sleep 30\r").await.unwrap();
    let mut refused = None;
    for _ in 0..100 {
        let (text, _) = agent
            .err(
                "ssh_exec",
                json!({"session": "shared", "command": "echo never"}),
            )
            .await;
        if text.contains("is running `sleep 30`") {
            refused = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = refused.expect("ssh_exec was never refused for the person's sleep");
    assert!(text.contains("a person at its terminal (attach)"), "{text}");
    // Cancelling it is theirs too.
    let (text, _) = agent.err("ssh_cancel", json!({"session": "shared"})).await;
    assert!(text.contains("sleep 30"), "{text}");
    person.send(b"\x03").await.unwrap();
    let h = agent.persons("shared", "attach", 3).await;
    assert_eq!(h[2]["exit_code"], 130);
    assert_eq!(h[2]["cwd"], "/tmp");
    drop(person);

    // The agent's own runaway command: ssh_cancel escalates and reports every step.
    let r = agent
        .ok(
            "ssh_exec",
            json!({"session": "shared", "command": "trap '' INT TERM; sleep 600", "timeout_ms": 300,
                   "human_activity": "ignore"}),
        )
        .await;
    assert_eq!(r["running"], true);
    let report = agent.ok("ssh_cancel", json!({"session": "shared"})).await;
    assert_eq!(report["tried"], json!(["INT", "TERM", "KILL"]), "{report}");
    assert_eq!(report["steps"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(report["shell_replaced"], false);
    assert_eq!(report["connection_restarted"], false);
    assert_eq!(report["cwd"], "/tmp");
    let (text, _) = agent.err("ssh_cancel", json!({"session": "shared"})).await;
    assert!(text.contains("no running command"), "{text}");
    let r = agent
        .ok(
            "ssh_exec",
            json!({"session": "shared", "command": "echo after"}),
        )
        .await;
    assert_eq!(r["output"], "after\n");
    agent.client.cancel().await.unwrap();
}
