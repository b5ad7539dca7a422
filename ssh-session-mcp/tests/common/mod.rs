//! An agent for the tests where a person shares its session: the MCP server in process,
//! called by the official Rust SDK's client, over one `SessionManager` the test can reach
//! (to attach a person through core, or to serve the browser terminal on it).
#![allow(dead_code, unreachable_pub)] // each test file uses a part of it

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use ssh_session_core::SessionManager;
use ssh_session_mcp::{Config, SshSessionServer};
use ssh_session_testkit::Sshd;
use ssh_session_web::{Web, WebOptions};

pub struct Agent {
    pub client: RunningService<RoleClient, ()>,
    pub manager: SessionManager,
    /// The browser terminal on a free loopback port, when asked for.
    pub web: Option<Web>,
}

impl Agent {
    /// The server over the shared sshd; with `web`, also serving the browser terminal
    /// (and `ssh_share`).
    pub async fn start(web: bool) -> Agent {
        let sshd = Sshd::shared();
        let config = Config {
            ssh_config: Some("/dev/null".into()),
            known_hosts: Some(sshd.known_hosts().to_path_buf()),
            use_agent: false,
            ..Config::default()
        };
        let manager = SessionManager::new();
        let mut server = SshSessionServer::new(manager.clone(), config).unwrap();
        let web = if web {
            let listener = ssh_session_web::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let web = Web::new(manager.clone(), addr, WebOptions::default()).unwrap();
            tokio::spawn(web.clone().serve(listener, std::future::pending()));
            server = server.with_web(web.clone());
            Some(web)
        } else {
            None
        };
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (input, output) = tokio::io::split(theirs);
        tokio::spawn(ssh_session_mcp::stdio::serve_lines(server, input, output));
        let client = ().serve(ours).await.unwrap();
        Agent {
            client,
            manager,
            web,
        }
    }

    /// `ssh_connect` as `name` to the shared sshd.
    pub async fn connect(&self, name: &str) {
        let sshd = Sshd::shared();
        self.ok(
            "ssh_connect",
            json!({"name": name, "host": format!("{}@127.0.0.1:{}", sshd.user(), sshd.port()),
                   "identity_file": sshd.user_key()}),
        )
        .await;
    }

    pub async fn call(&self, tool: &'static str, args: Value) -> CallToolResult {
        let params =
            CallToolRequestParams::new(tool).with_arguments(args.as_object().unwrap().clone());
        match self.client.peer().call_tool_once(params).await.unwrap() {
            CallToolResponse::Complete(r) => r,
            other => panic!("{tool}: {other:?}"),
        }
    }

    pub async fn ok(&self, tool: &'static str, args: Value) -> Value {
        let r = self.call(tool, args).await;
        assert_ne!(r.is_error, Some(true), "{tool} failed: {r:?}");
        r.structured_content.unwrap()
    }

    /// A tool error: its text, and its structured content if it has any.
    pub async fn err(&self, tool: &'static str, args: Value) -> (String, Option<Value>) {
        let r = self.call(tool, args).await;
        assert_eq!(r.is_error, Some(true), "{tool} should fail: {r:?}");
        let text = r.content[0].as_text().unwrap().text.clone();
        (text, r.structured_content)
    }

    /// The commands from `source` in history once `n` have ended (bounded: 20 s).
    pub async fn persons(&self, session: &str, source: &str, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let h = self.ok("ssh_history", json!({"session": session})).await;
            let mine: Vec<Value> = h["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["source"] == source)
                .cloned()
                .collect();
            if mine.len() >= n && mine.iter().all(|e| !e["duration_ms"].is_null()) {
                return mine;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} commands from {source} never ended");
    }
}
