//! The browser terminal with an agent on the same session (issue #13): the MCP server's
//! tools called by the official Rust SDK's client in process, a person in a real headless
//! Chromium (Debian's, over chromedriver) on the page the server serves, a real sshd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

mod common;

use common::Agent;
use serde_json::json;
use ssh_session_core::{ReconnectPolicy, SessionConfig};
use ssh_session_testkit::browser::{Browser, Key};
use ssh_session_testkit::{CutMode, FaultProxy, Sshd};

const ROWS: &str = ".xterm-rows";
const INPUT: &str = "textarea.xterm-helper-textarea";
const WAIT: Duration = Duration::from_secs(20);

/// A browser logged in with a fresh `ssh_share` link, on `session`'s page, its terminal
/// at the shell's prompt.
async fn join(agent: &Agent, session: &str) -> Browser {
    let share = agent.ok("ssh_share", json!({"session": session})).await;
    let url = share["url"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(share["expires_at"].as_str().unwrap()).is_ok());
    let browser = Browser::start().await;
    browser.goto(url).await;
    let now = browser.current_url().await;
    assert!(
        now.ends_with(&format!("/session/{session}")) && !now.contains("token"),
        "the login redirects to the page without its secret: {now}"
    );
    browser.wait_for_text("#conn", "connected", WAIT).await;
    at_prompt(&browser).await;
    browser
}

/// Waits for a shell prompt (`$`, or `#` for root) on the page's terminal.
async fn at_prompt(browser: &Browser) {
    browser
        .wait_for(
            "const e = document.querySelector('.xterm-rows'); \
             return e && /[$#]/.test(e.innerText);",
            WAIT,
        )
        .await;
}

fn artifact(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts")
        .join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_in_the_browser_and_the_agent_share_one_shell() {
    let agent = Agent::start(true).await;
    agent.connect("web").await;
    let person = join(&agent, "web").await;

    // What the person runs in the page is tracked, and the agent hears of it once.
    person
        .type_text(
            INPUT,
            &format!("cd /tmp && export FROM_BROWSER=1{}", Key::Enter),
        )
        .await;
    agent.persons("web", "browser", 1).await;
    let (text, structured) = agent
        .err(
            "ssh_exec",
            json!({"session": "web", "command": "pwd; echo $FROM_BROWSER"}),
        )
        .await;
    assert!(text.contains("a person ran 1 command(s)"), "{text}");
    let v = structured.unwrap();
    assert_eq!(v["error"], "human_activity");
    assert_eq!(
        v["human_commands"][0]["command"],
        "cd /tmp && export FROM_BROWSER=1"
    );
    assert_eq!(v["human_commands"][0]["source"], "browser");
    assert_eq!(v["human_commands"][0]["exit_code"], 0);
    let r = agent
        .ok(
            "ssh_exec",
            json!({"session": "web", "command": "pwd; echo $FROM_BROWSER"}),
        )
        .await;
    assert_eq!(r["output"], "/tmp\n1\n");

    // The shell's own Tab completion, in the page.
    person
        .type_text(INPUT, &format!("ls /etc/hostn{}", Key::Tab))
        .await;
    person.wait_for_text(ROWS, "ls /etc/hostname", WAIT).await;
    person.type_text(INPUT, &Key::Enter.to_string()).await;
    let mine = agent.persons("web", "browser", 2).await;
    // Completion adds the space after a file name; the line is recorded as run.
    assert_eq!(
        mine[1]["command"].as_str().unwrap().trim_end(),
        "ls /etc/hostname"
    );
    // Refused once more for that one, then the agent goes on.
    agent
        .err("ssh_exec", json!({"session": "web", "command": "true"}))
        .await;

    // An agent's command and its output show in the page while it runs, named as the
    // agent's; a second browser sees the same screen.
    let r = agent
        .ok(
            "ssh_exec",
            json!({"session": "web", "command": "echo agent-$((20+22)); sleep 30", "timeout_ms": 1500}),
        )
        .await;
    assert_eq!(r["running"], true, "{r}");
    person.wait_for_text(ROWS, "agent-42", WAIT).await;
    person
        .wait_for_text("#running", "agent (mcp) runs: echo agent-", WAIT)
        .await;
    let watcher = join(&agent, "web").await;
    watcher.wait_for_text(ROWS, "agent-42", WAIT).await;
    watcher.wait_for_text(ROWS, "ls /etc/hostname", WAIT).await;
    person.screenshot(artifact("browser-terminal.png")).await;

    // Ctrl-C from the page stops the agent's sleep.
    person
        .type_text(INPUT, &format!("{}c{}", Key::Control, Key::Control))
        .await;
    let r = agent
        .ok(
            "ssh_read_output",
            json!({"session": "web", "wait_ms": 10000}),
        )
        .await;
    assert_eq!(r["exit_code"], 130, "{r}");
    assert_eq!(r["running"], false, "{r}");
    person.wait_for_text("#running", "idle", WAIT).await;

    // The Cancel button runs the stop ladder on a command that ignores Ctrl-C, and the
    // page shows its report.
    let r = agent
        .ok(
            "ssh_exec",
            json!({"session": "web", "command": "trap '' INT; sleep 60", "timeout_ms": 1000}),
        )
        .await;
    assert_eq!(r["running"], true, "{r}");
    person
        .wait_for("return !document.getElementById('cancel').disabled", WAIT)
        .await;
    person
        .client()
        .find(ssh_session_testkit::browser::fantoccini::Locator::Css(
            "#cancel",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    person
        .wait_for_text("#notice", "cancelled: tried INT, TERM", WAIT)
        .await;
    let r = agent
        .ok(
            "ssh_exec",
            json!({"session": "web", "command": "echo still-here"}),
        )
        .await;
    assert_eq!(r["output"], "still-here\n");
    // The second browser joined late and still has the start in its scrollback.
    let past = watcher
        .execute(
            "const b = window.sshSessionTerminal.buffer.active; let t = ''; \
             for (let i = 0; i < b.length; i++) t += b.getLine(i).translateToString(true) + '\\n'; \
             return t;",
            vec![],
        )
        .await;
    assert!(
        past.as_str().unwrap().contains("export FROM_BROWSER=1"),
        "{past}"
    );
    watcher.close().await;
    person.close().await;
    agent.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_reconnecting_while_the_link_is_cut_and_the_terminal_resumes() {
    let agent = Agent::start(true).await;
    let sshd = Sshd::shared();
    let dir = tempfile::tempdir().unwrap();
    let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
    let mut o =
        sshd.connect_options_via(&proxy, dir.path(), ssh_session_testkit::harness::backend());
    o.server_alive_interval = Some(Duration::from_secs(1));
    o.server_alive_count_max = 2;
    o.connect_timeout = Duration::from_secs(3);
    let config = SessionConfig {
        reconnect: ReconnectPolicy {
            max_attempts: 20,
            initial_delay: Duration::from_millis(200),
            factor: 1.5,
            max_delay: Duration::from_millis(500),
            jitter: 0.0,
        },
        ..Default::default()
    };
    agent.manager.open("flaky", o, config).await.unwrap();
    let person = join(&agent, "flaky").await;
    proxy.refuse_new(true).await.unwrap();
    proxy.cut(CutMode::Reset).await;
    person.wait_for_text("#conn", "reconnecting", WAIT).await;
    person
        .screenshot(artifact("browser-reconnecting.png"))
        .await;
    proxy.refuse_new(false).await.unwrap();
    person.wait_for_text("#conn", "connected", WAIT).await;
    at_prompt(&person).await;
    person
        .type_text(INPUT, &format!("echo back-$((40+2)){}", Key::Enter))
        .await;
    person.wait_for_text(ROWS, "back-42", WAIT).await;
    person.close().await;
    agent.manager.shutdown().await;
}
