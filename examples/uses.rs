//! The library's main uses, each a function that compiles (so it stays true to the API)
//! and runs against a real host: one session, many sessions, a persistent session, a jump
//! host, and files and tunnels.
//!
//! ```sh
//! cargo run --example uses -- one deploy@build.example.com
//! cargo run --example uses -- many deploy@web-1,web-2,web-3
//! cargo run --example uses -- persistent deploy@build.example.com
//! cargo run --example uses -- jump deploy@db.internal bastion.example.com
//! cargo run --example uses -- files deploy@build.example.com
//! ```
//!
//! Keys come from the ssh-agent and `~/.ssh/id_*`; host keys must be in
//! `~/.ssh/known_hosts` (the default policy is strict).

use std::time::Duration;

use ssh_session_core::files::{FileRange, WriteOptions};
use ssh_session_core::tunnel::TunnelSpec;
use ssh_session_core::{
    ConnectOptions, ExecOptions, JumpHost, Result, Session, SessionConfig, SessionManager,
};

/// `user@host` → options for it.
fn target(spec: &str) -> ConnectOptions {
    let (user, host) = spec.split_once('@').unwrap_or(("", spec));
    let user = if user.is_empty() {
        ssh_session_core::local_user()
    } else {
        user.to_string()
    };
    ConnectOptions::new(host, user)
}

/// One session: state persists between commands.
async fn one(manager: &SessionManager, host: &str) -> Result<()> {
    let s = manager
        .open("one", target(host), SessionConfig::default())
        .await?;
    s.exec("cd /tmp && export GREETING=hello", ExecOptions::default())
        .await?;
    let r = s
        .exec("echo \"$GREETING from $PWD\"", ExecOptions::default())
        .await?;
    print!("{}", r.text());
    Ok(())
}

/// Many sessions, one command on all of them at once.
async fn many(manager: &SessionManager, hosts: &str) -> Result<()> {
    let (user, list) = hosts.split_once('@').unwrap_or(("", hosts));
    let mut names = Vec::new();
    for (i, host) in list.split(',').enumerate() {
        let name = format!("host-{i}");
        let spec = if user.is_empty() {
            host.to_string()
        } else {
            format!("{user}@{host}")
        };
        manager
            .open(&name, target(&spec), SessionConfig::default())
            .await?;
        names.push(name);
    }
    let timeout = ExecOptions::timeout(Duration::from_secs(10));
    for r in manager.exec_many(&names, "uptime", timeout).await {
        match r.result {
            Ok(out) => print!("{}: {}", r.session, out.text()),
            Err(e) => eprintln!("{}: {e}", r.session),
        }
    }
    Ok(())
}

/// A persistent session: the shell lives in tmux on the host, so it survives a dropped
/// link or this program's restart; opening the same name again adopts it.
async fn persistent(manager: &SessionManager, host: &str) -> Result<()> {
    let config = SessionConfig {
        persistent: true,
        ..SessionConfig::default()
    };
    let s = manager.open("kept", target(host), config).await?;
    let r = s
        .exec(
            "echo ${RUNS:-0}; export RUNS=$((${RUNS:-0} + 1))",
            ExecOptions::default(),
        )
        .await?;
    print!("times this shell was used before: {}", r.text());
    // Leaves the shell running remotely; the next run of this example counts on.
    manager.detach("kept").await
}

/// Through a jump host (as `ssh -J`), each hop verified and authenticated.
async fn jump(manager: &SessionManager, host: &str, via: &str) -> Result<()> {
    let hops = JumpHost::parse_chain(via).ok_or_else(|| ssh_session_core::Error::Config {
        detail: format!("{via:?} is not a jump host list ([user@]host[:port],...)"),
    })?;
    let s = manager
        .open(
            "inner",
            target(host).proxy_jump(hops),
            SessionConfig::default(),
        )
        .await?;
    print!(
        "{}",
        s.exec("hostname", ExecOptions::default()).await?.text()
    );
    Ok(())
}

/// Files over SFTP with a guarded edit, and a tunnel to a port on the host.
async fn files(manager: &SessionManager, host: &str) -> Result<()> {
    let s = manager
        .open("files", target(host), SessionConfig::default())
        .await?;
    let files = s.files().await?;
    files
        .write(
            "/tmp/ssh-session-example.txt",
            b"debug = false\n",
            WriteOptions::default(),
        )
        .await?;
    let read = files
        .read("/tmp/ssh-session-example.txt", FileRange::default())
        .await?;
    let edited = String::from_utf8_lossy(&read.data).replace("false", "true");
    let sha = read.sha256.unwrap_or_default();
    files
        .write(
            "/tmp/ssh-session-example.txt",
            edited.as_bytes(),
            WriteOptions::guarded(sha),
        )
        .await?;
    files.remove("/tmp/ssh-session-example.txt", false).await?;
    let t = manager
        .open_tunnel("files", TunnelSpec::local(None, "127.0.0.1:22"))
        .await?;
    println!(
        "the host's sshd is reachable here at {} (tunnel {})",
        t.listen, t.id
    );
    manager.close_tunnel(&t.id).await
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let manager = SessionManager::new();
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["one", host] => one(&manager, host).await,
        ["many", hosts] => many(&manager, hosts).await,
        ["persistent", host] => persistent(&manager, host).await,
        ["jump", host, via] => jump(&manager, host, via).await,
        ["files", host] => files(&manager, host).await,
        _ => {
            eprintln!(
                "usage: uses one|many|persistent|files USER@HOST[,HOST...] | jump USER@HOST VIA"
            );
            std::process::exit(2);
        }
    };
    manager.shutdown().await;
    if let Err(e) = done {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
