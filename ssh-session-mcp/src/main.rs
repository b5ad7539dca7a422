//! `ssh-session-mcp`: the MCP server binary. stdio by default; `--http ADDR` for
//! streamable HTTP. Logs go to stderr (stdout is the protocol), filtered by `RUST_LOG`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ssh_session_core::SessionManager;
use ssh_session_mcp::{http, serve_stdio, Config, McpError, SshSessionServer};

/// Persistent SSH sessions as MCP tools for AI agents.
///
/// Examples:
///   claude mcp add ssh -- ssh-session-mcp
///   ssh-session-mcp --config ~/.config/ssh-session/mcp.toml
///   ssh-session-mcp --http 127.0.0.1:8765 --token-file ~/.config/ssh-session/token
#[derive(Parser, Debug)]
#[command(version, about, verbatim_doc_comment)]
struct Args {
    /// TOML configuration file (default: ~/.config/ssh-session/mcp.toml if it exists).
    #[arg(long, env = "SSH_SESSION_MCP_CONFIG")]
    config: Option<PathBuf>,
    /// Serve streamable HTTP at http://ADDR/mcp instead of stdio (loopback unless you say
    /// otherwise; a bearer token is always required).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// The bearer token for --http (default: generated and written to --token-file).
    #[arg(long, env = "SSH_SESSION_MCP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where a generated token is written, mode 0600 (default:
    /// $XDG_RUNTIME_DIR/ssh-session-mcp.token, else ~/.ssh-session-mcp.token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Backend for new sessions, overriding the config: russh or openssh.
    #[arg(long)]
    transport: Option<String>,
    /// OpenSSH client config for host aliases, overriding the config.
    #[arg(long, env = "SSH_SESSION_SSH_CONFIG")]
    ssh_config: Option<PathBuf>,
    /// known_hosts file, overriding the config.
    #[arg(long, env = "SSH_SESSION_KNOWN_HOSTS")]
    known_hosts: Option<PathBuf>,
    /// Do not use the ssh-agent.
    #[arg(long)]
    no_agent: bool,
}

fn load_config(args: &Args) -> Result<Config, McpError> {
    let default_path = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".config/ssh-session/mcp.toml"))
        .filter(|p| p.exists());
    let mut config = match args.config.as_ref().or(default_path.as_ref()) {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(t) = &args.transport {
        config.transport = t.clone();
    }
    if let Some(p) = &args.ssh_config {
        config.ssh_config = Some(p.clone());
    }
    if let Some(p) = &args.known_hosts {
        config.known_hosts = Some(p.clone());
    }
    if args.no_agent {
        config.use_agent = false;
    }
    config
        .check()
        .map_err(|detail| McpError::Config { detail })?;
    Ok(config)
}

fn token_path(args: &Args) -> PathBuf {
    if let Some(p) = &args.token_file {
        return p.clone();
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("ssh-session-mcp.token"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".ssh-session-mcp.token"),
    }
}

fn write_token(path: &std::path::Path, token: &str) -> Result<(), McpError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(token.as_bytes()).map(|_| f))
        .map_err(|e| McpError::Config {
            detail: format!(
                "cannot write the token to {}: {e}; give --token-file",
                path.display()
            ),
        })?;
    file.flush().ok();
    Ok(())
}

async fn run(args: Args) -> Result<(), McpError> {
    let config = load_config(&args)?;
    let server = SshSessionServer::new(SessionManager::new(), config)?;
    let Some(addr) = args.http else {
        tracing::info!("serving MCP over stdio");
        return serve_stdio(server).await;
    };
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening beyond loopback: anyone who can reach it and has the token controls your SSH sessions");
    }
    let token = match args.token.clone() {
        Some(t) if t.len() >= 16 => t,
        Some(_) => {
            return Err(McpError::Config {
                detail: "--token must be at least 16 characters".into(),
            })
        }
        None => {
            let t = http::generate_token();
            let path = token_path(&args);
            write_token(&path, &t)?;
            eprintln!(
                "ssh-session-mcp: bearer token written to {}",
                path.display()
            );
            t
        }
    };
    http::serve_http(
        server,
        addr,
        token,
        |bound| eprintln!("ssh-session-mcp: listening on http://{bound}/mcp"),
        async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        },
    )
    .await
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    if let Err(e) = run(Args::parse()).await {
        eprintln!("ssh-session-mcp: {e}");
        std::process::exit(1);
    }
}
