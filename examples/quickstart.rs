//! Quickstart: a persistent SSH session against a loopback SSH server this example starts
//! itself (no sshd, no network, no configuration needed).
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! It shows what makes a session different from `ssh host cmd`: the shell keeps its working
//! directory and environment between commands, every command reports its exact output and
//! exit code, a long command can be left running and followed, and Ctrl-C works.

use std::time::Duration;

use ssh_session_core::{
    ConnectOptions, ExecOptions, IdentityFile, Interrupt, ReadOptions, Session, SessionConfig,
    SessionManager,
};
use ssh_session_testkit::EmbeddedServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A real SSH server on 127.0.0.1 (russh's server side), with a fresh host key and a
    // client key that it trusts.
    let server = EmbeddedServer::start().await?;
    println!(
        "embedded SSH server on {}:{}\n",
        server.host(),
        server.port()
    );

    let manager = SessionManager::new();
    let options = ConnectOptions::new(server.host(), server.user())
        .port(server.port())
        .identity(IdentityFile::new(server.user_key()))
        .known_hosts(server.known_hosts())
        .use_agent(false);
    let web = manager
        .open("web", options, SessionConfig::default())
        .await?;

    // State persists: cd and export in one command, used by the next.
    show(
        &web,
        "cd /tmp && export GREETING='hello from a persistent shell'",
    )
    .await?;
    show(&web, "pwd; echo \"$GREETING\"").await?;

    // Exact exit codes and output, including stderr and missing final newlines.
    show(&web, "ls /no/such/dir").await?;
    show(&web, "printf 'no newline'").await?;

    // A long command: exec returns after its timeout with the command still running...
    let slow = "for i in 1 2 3; do echo step $i; sleep 0.4; done; echo finished";
    let r = web
        .exec(slow, ExecOptions::timeout(Duration::from_millis(500)))
        .await?;
    println!(
        "$ {slow}\n{}[still running: {}]\n",
        r.text(),
        r.is_running()
    );
    // ...and read_output follows it to the end and collects the exit code.
    let r = web
        .read_output(ReadOptions {
            wait: Duration::from_secs(5),
            ..Default::default()
        })
        .await?;
    println!("(read_output) {}[exit {:?}]\n", r.text(), r.exit_code);

    // Interrupt: Ctrl-C stops the foreground job; the shell and its state survive.
    let r = web
        .exec(
            "sleep 600",
            ExecOptions::timeout(Duration::from_millis(300)),
        )
        .await?;
    println!(
        "$ sleep 600\n[still running: {}] -> sending Ctrl-C",
        r.is_running()
    );
    web.interrupt(Interrupt::Int).await?;
    let r = web
        .read_output(ReadOptions {
            wait: Duration::from_secs(5),
            ..Default::default()
        })
        .await?;
    println!("[exit {:?}]\n", r.exit_code);
    show(&web, "echo \"still in $(pwd) with GREETING=$GREETING\"").await?;

    for info in manager.list() {
        println!(
            "session {:?}: {}@{}:{} via {}, {} commands, cwd {}",
            info.name,
            info.user,
            info.host,
            info.port,
            info.transport,
            info.command_count,
            info.cwd
        );
    }
    manager.shutdown().await;
    server.shutdown().await;
    Ok(())
}

async fn show(session: &impl Session, command: &str) -> Result<(), ssh_session_core::Error> {
    let r = session.exec(command, ExecOptions::default()).await?;
    println!(
        "$ {command}\n{}[exit {:?}, cwd {}, {:?}]\n",
        r.text(),
        r.exit_code,
        r.cwd,
        r.duration
    );
    Ok(())
}
