//! `ssh-session-mcp`: the MCP server binary. stdio by default; `--http ADDR` for
//! streamable HTTP. Logs go to stderr (stdout is the protocol), filtered by `RUST_LOG`,
//! coloured only when stderr is a terminal.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};
use ssh_session_core::SessionManager;
use ssh_session_mcp::{http, serve_stdio, Config, McpError, SshSessionServer};

/// Persistent SSH sessions as MCP tools for AI agents.
///
/// Examples:
///   claude mcp add ssh -- ssh-session-mcp
///   ssh-session-mcp --config ~/.config/ssh-session/mcp.toml
///   ssh-session-mcp --http 127.0.0.1:8765 --token-file ~/.config/ssh-session/token
///   ssh-session-mcp --web           (stdio, plus the browser terminal on a free port)
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
    /// Serve the browser terminal (a person joins a session from a web page) at ADDR
    /// (default 127.0.0.1 on a free port); its login link is printed here. With --http it
    /// is always served, on the same address.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    web: Option<SocketAddr>,
    /// The bearer token for --http (default: generated and written to --token-file).
    #[arg(long, env = "SSH_SESSION_MCP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where the token is kept between runs, mode 0600: read if it exists, else generated
    /// and written there (default: $XDG_RUNTIME_DIR/ssh-session-mcp.token, else
    /// ~/.ssh-session-mcp.token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// A Host header clients may use besides the loopback names and the bound address
    /// (repeatable), e.g. this machine's DNS name when listening beyond loopback: other
    /// Host headers are refused, against DNS rebinding.
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// A web page origin (scheme://host[:port]) allowed to call the server besides pages
    /// on this machine and the server's own address (repeatable). Requests from other
    /// pages (an Origin header) are refused; clients that send no Origin are not pages.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
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
    // Checked (with the overrides) by SshSessionServer::new.
    Ok(config)
}

fn token_path(args: &Args) -> Result<PathBuf, McpError> {
    if let Some(p) = &args.token_file {
        return Ok(p.clone());
    }
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| (PathBuf::from(d), "ssh-session-mcp.token"))
        .or_else(|| std::env::var_os("HOME").map(|h| (PathBuf::from(h), ".ssh-session-mcp.token")))
        .filter(|(d, _)| d.is_absolute());
    match dir {
        Some((dir, name)) => Ok(dir.join(name)),
        None => Err(McpError::Config {
            detail: "neither XDG_RUNTIME_DIR nor HOME is set to an absolute path: give --token or --token-file".into(),
        }),
    }
}

/// The token kept in `path` from an earlier run, if there is one. The file must be a
/// regular file of ours that nobody else can read, or it is refused rather than trusted.
fn read_token(path: &std::path::Path) -> Result<Option<String>, McpError> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let fail = |detail: String| McpError::Config {
        detail: format!("token file {}: {detail}", path.display()),
    };
    // Opened without following a symlink, then checked through the open descriptor, so
    // the file checked is the file read.
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(fail(format!(
                "cannot open it ({e}); it must be a regular file, not a symlink"
            )))
        }
    };
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(fail(
            "it must be a regular file owned by you with mode 0600; remove it (a new token is then generated) or fix it".into(),
        ));
    }
    let mut token = String::new();
    file.read_to_string(&mut token)
        .map_err(|e| fail(e.to_string()))?;
    // Surrounding whitespace (the newline of `echo token > file`) is not part of it.
    let token = token.trim().to_string();
    http::check_token(&token, "the token").map_err(|e| {
        fail(format!(
            "{}; fix the file, or remove it to have a new token generated",
            e.to_string().trim_start_matches("configuration: ")
        ))
    })?;
    Ok(Some(token))
}

/// Writes a new token with mode 0600: to a fresh file (never an existing one, never
/// through a symlink) renamed over `path`, so no moment exists where others can read it.
fn write_token(path: &std::path::Path, token: &str) -> Result<(), McpError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| McpError::Config {
        detail: format!(
            "cannot write the token to {}: {e}; give --token-file",
            path.display()
        ),
    };
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("token"),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(fail)?;
    let written = file
        .write_all(token.as_bytes())
        .and_then(|_| file.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

/// Where `--token`'s value came from, for error messages.
fn token_source(matches: &clap::ArgMatches) -> &'static str {
    match matches.value_source("token") {
        Some(clap::parser::ValueSource::EnvVariable) => "SSH_SESSION_MCP_TOKEN",
        _ => "--token",
    }
}

async fn run(args: Args, token_source: &str) -> Result<(), McpError> {
    let config = load_config(&args)?;
    let server = SshSessionServer::new(SessionManager::new(), config.clone())?;
    let Some(addr) = args.http else {
        let server = match args.web {
            Some(addr) => start_web(server, addr, &args).await?,
            None => server,
        };
        tracing::info!("serving MCP over stdio");
        return serve_stdio(server).await;
    };
    if args.web.is_some() {
        return Err(McpError::Config {
            detail: "--web with --http: the browser terminal is already served on the --http address; drop --web".into(),
        });
    }
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening beyond loopback: anyone who can reach it and has the token controls your SSH sessions");
    }
    let token = match args.token.clone() {
        Some(t) => {
            http::check_token(&t, token_source)?;
            t
        }
        None => {
            let path = token_path(&args)?;
            match read_token(&path)? {
                Some(t) => {
                    eprintln!(
                        "ssh-session-mcp: using the bearer token in {}",
                        path.display()
                    );
                    t
                }
                None => {
                    let t = http::generate_token();
                    write_token(&path, &t)?;
                    eprintln!(
                        "ssh-session-mcp: bearer token written to {}",
                        path.display()
                    );
                    t
                }
            }
        }
    };
    let mut options = http::HttpOptions::new(token, &config.http);
    options.allowed_hosts = args.allowed_hosts.clone();
    options.allowed_origins = args.allow_origins.clone();
    http::serve_http(
        server,
        addr,
        options,
        |bound, web| {
            eprintln!("ssh-session-mcp: listening on http://{bound}/mcp");
            announce(web);
        },
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

/// Serves the browser terminal at `addr` beside stdio, for as long as the process runs.
async fn start_web(
    server: SshSessionServer,
    addr: SocketAddr,
    args: &Args,
) -> Result<SshSessionServer, McpError> {
    let listener = ssh_session_web::bind(addr).await?;
    let bound = listener
        .local_addr()
        .map_err(|source| McpError::Listen { addr, source })?;
    let mut options = ssh_session_web::WebOptions::default();
    options.allowed_hosts = args.allowed_hosts.clone();
    options.allowed_origins = args.allow_origins.clone();
    let web = ssh_session_web::Web::new(server.manager().clone(), bound, options)?;
    announce(&web);
    tokio::spawn(web.clone().serve(listener, std::future::pending()));
    Ok(server.with_web(web))
}

/// Tells the person at the console how to get in (stderr: stdout is the MCP stream).
fn announce(web: &ssh_session_web::Web) {
    match web.share(None, false) {
        Ok(link) => eprintln!(
            "ssh-session-mcp: browser terminal at {}/ — log in with {} (works once, until {}; the ssh_share tool makes more)",
            web.base_url(),
            link.url,
            humantime::format_rfc3339_seconds(link.expires_at)
        ),
        Err(e) => eprintln!("ssh-session-mcp: browser terminal: {e}"),
    }
}

#[tokio::main]
async fn main() {
    use std::io::IsTerminal;
    // MCP clients usually send a server's stderr to a log file: colour codes there are
    // noise. Colour only a terminal, and not even that when NO_COLOR is set.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = run(args, token_source(&matches)).await {
        eprintln!("ssh-session-mcp: {e}");
        std::process::exit(1);
    }
}
