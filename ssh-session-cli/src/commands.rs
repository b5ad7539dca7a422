//! The client side of each subcommand: build the request, show the answer, pick the exit
//! code.

use std::io::Write;
use std::time::Duration;

use crate::cli::{
    check_new_session_name, unescape, Cli, Command, ConnectArgs, DaemonAction, Global,
};
use crate::client::Client;
use crate::error::{code, CliError};
use crate::output::{self, Spinner};
use crate::protocol::{
    decode, encode, ConnectSpec, ErrorKind, HostView, Request, Response, ResultView,
};
use crate::runtime::{absolute, Paths};

/// Runs a client command; returns the exit code. A daemon that answers "shutting down"
/// did not start the request (it stopped, idle or asked to, just as we connected), so
/// the command runs once more, which starts a new daemon if it needs one.
pub(crate) async fn run(cli: Cli) -> Result<i32, CliError> {
    match run_once(cli.clone()).await {
        Err(e) if e.is_daemon_stopping() => run_once(cli).await,
        other => other,
    }
}

async fn run_once(cli: Cli) -> Result<i32, CliError> {
    let paths = Paths::resolve(&cli.global)?;
    let global = &cli.global;
    match cli.command {
        Command::Connect(args) => connect(global, &paths, args).await,
        Command::Exec {
            name,
            timeout,
            command,
        } if name.contains(',') => {
            let names: Vec<String> = name.split(',').map(str::to_string).collect();
            let command = command.join(" ");
            crate::remote::exec_many(global, &paths, &names, &command, timeout, exec_source()).await
        }
        Command::Exec {
            name,
            timeout,
            command,
        } => exec(global, &paths, &name, &command.join(" "), timeout).await,
        Command::Cp {
            recursive,
            source,
            dest,
            json,
        } => {
            let spec = crate::remote::copy_spec(&source, &dest, recursive)?;
            let mut client = session_client(global, &paths, &spec.name).await?;
            crate::remote::copy(&mut client, spec, json).await
        }
        Command::Forward {
            name,
            local,
            dynamic,
            remote,
            close,
            json,
        } => forward(global, &paths, name, [local, dynamic, remote], close, json).await,
        Command::Read { name, wait, screen } => {
            let mut client = session_client(global, &paths, &name).await?;
            let request = Request::Read {
                name: name.clone(),
                wait_ms: millis(wait),
                screen,
            };
            match client.call(&request).await? {
                Response::Screen { text } => {
                    write_out(text.as_bytes())?;
                    write_out(b"\n")?;
                    Ok(0)
                }
                Response::Result(r) => finish(&name, &r),
                other => Err(client.protocol(format!("unexpected answer {other:?}"))),
            }
        }
        Command::Send { name, text, raw } => {
            let bytes = if raw {
                text.into_bytes()
            } else {
                unescape(&text).map_err(CliError::Invalid)?
            };
            let mut client = session_client(global, &paths, &name).await?;
            expect_done(
                &mut client,
                &Request::Send {
                    name,
                    data: encode(&bytes),
                },
            )
            .await
        }
        Command::Interrupt { name, signal } => {
            let mut client = session_client(global, &paths, &name).await?;
            expect_done(&mut client, &Request::Interrupt { name, signal }).await
        }
        Command::Attach { name } => {
            let client = session_client(global, &paths, &name).await?;
            crate::attach::run(client, &name).await
        }
        Command::Ls { json } => {
            let (sessions, tunnels) = list(&paths).await?;
            if json {
                print_json(&sessions)?;
            } else if sessions.is_empty() {
                eprintln!("no sessions; open one with `ssh-session connect NAME HOST`");
            } else {
                write_out(output::sessions_table(&sessions).as_bytes())?;
                if !tunnels.is_empty() {
                    write_out(b"\n")?;
                    write_out(crate::remote::tunnels_table(&tunnels).as_bytes())?;
                }
            }
            Ok(0)
        }
        Command::Status { name, json } => {
            let mut client = session_client(global, &paths, &name).await?;
            match client.call(&Request::Status { name }).await? {
                Response::Session(s) if json => print_json(&s).map(|_| 0),
                Response::Session(s) => {
                    write_out(output::session_details(&s).as_bytes()).map(|_| 0)
                }
                other => Err(client.protocol(format!("unexpected answer {other:?}"))),
            }
        }
        Command::History { name, json } => {
            let mut client = session_client(global, &paths, &name).await?;
            match client.call(&Request::History { name }).await? {
                Response::History { entries } if json => print_json(&entries).map(|_| 0),
                Response::History { entries } => {
                    write_out(output::history_table(&entries).as_bytes()).map(|_| 0)
                }
                other => Err(client.protocol(format!("unexpected answer {other:?}"))),
            }
        }
        Command::Hosts { json } => {
            let config = global.ssh_config.as_deref();
            let aliases = ssh_session_core::list_host_aliases(config).await?;
            let hosts: Vec<HostView> = aliases.iter().map(HostView::from).collect();
            if json {
                print_json(&hosts)?;
            } else if hosts.is_empty() {
                eprintln!("no Host aliases in the ssh config");
            } else {
                write_out(output::hosts_table(&hosts).as_bytes())?;
            }
            Ok(0)
        }
        Command::Share {
            name,
            read_only,
            open,
            json,
        } => {
            let mut client = session_client(global, &paths, &name).await?;
            let share = match client.call(&Request::Share { name, read_only }).await? {
                Response::Share(share) => share,
                other => return Err(client.protocol(format!("unexpected answer {other:?}"))),
            };
            if json {
                print_json(&share)?;
            } else {
                write_out(format!("{}\n", share.url).as_bytes())?;
                eprintln!(
                    "works once, until {}, and only from this machine (127.0.0.1); \
                     the browser it logs in stays in for 12 hours",
                    share.expires_at
                );
            }
            if open {
                open_in_browser(&share.url)?;
            }
            Ok(0)
        }
        Command::Close { name } => {
            let mut client = session_client(global, &paths, &name).await?;
            expect_done(&mut client, &Request::Close { name }).await
        }
        Command::Daemon { action } => match action {
            Some(DaemonAction::Stop) => match Client::existing(&paths).await? {
                Some(mut client) => {
                    let pid = client.hello.pid;
                    expect_done(&mut client, &Request::Shutdown).await?;
                    eprintln!(
                        "daemon (pid {pid}) stopped; its sessions were closed, except persistent \
                         ones, which were detached: their remote shells keep running in tmux, and \
                         `ssh-session connect NAME HOST --persistent` re-adopts them"
                    );
                    Ok(0)
                }
                None => {
                    eprintln!("no daemon is running on {}", paths.socket.display());
                    Ok(0)
                }
            },
            Some(DaemonAction::Status { json }) => daemon_status(&paths, json).await,
            None => unreachable!("the foreground daemon does not run in the client runtime"),
        },
    }
}

/// The sessions and tunnels, without starting a daemon (none running: none of either).
async fn list(
    paths: &Paths,
) -> Result<
    (
        Vec<crate::protocol::SessionView>,
        Vec<crate::protocol::TunnelView>,
    ),
    CliError,
> {
    match Client::existing(paths).await? {
        Some(mut client) => match client.call(&Request::List).await? {
            Response::Sessions { sessions, tunnels } => Ok((sessions, tunnels)),
            other => Err(client.protocol(format!("unexpected answer {other:?}"))),
        },
        None => Ok((Vec::new(), Vec::new())),
    }
}

/// `forward`: open one tunnel (`NAME` and one of `-L`, `-D`, `-R`), close one (`--close
/// ID`), or list them (neither).
async fn forward(
    global: &Global,
    paths: &Paths,
    name: Option<String>,
    [local, dynamic, remote]: [Option<String>; 3],
    close: Option<String>,
    json: bool,
) -> Result<i32, CliError> {
    if let Some(id) = close {
        let Some(mut client) = Client::existing(paths).await? else {
            return Err(CliError::Invalid(format!(
                "no tunnel {id:?}: no ssh-session daemon is running, so no tunnel is open"
            )));
        };
        return expect_done(&mut client, &Request::CloseForward { id }).await;
    }
    let spec = [('L', local), ('D', dynamic), ('R', remote)]
        .into_iter()
        .find_map(|(kind, spec)| spec.map(|s| (kind, s)));
    match (name, spec) {
        (Some(name), Some((kind, spec))) => {
            let mut client = session_client(global, paths, &name).await?;
            crate::remote::forward(&mut client, &name, kind, &spec, json).await
        }
        (Some(_), None) => Err(CliError::Invalid(
            "say which tunnel: -L [BIND:]PORT:HOST:HOSTPORT, -D [BIND:]PORT or -R [BIND:]PORT:HOST:HOSTPORT".into(),
        )),
        (None, Some(_)) => Err(CliError::Invalid(
            "name the session to open the tunnel on: ssh-session forward NAME -L ...".into(),
        )),
        (None, None) => {
            let (_, tunnels) = list(paths).await?;
            if json {
                print_json(&tunnels)?;
            } else if tunnels.is_empty() {
                eprintln!("no tunnels; open one with `ssh-session forward NAME -L PORT:HOST:HOSTPORT`");
            } else {
                write_out(crate::remote::tunnels_table(&tunnels).as_bytes())?;
            }
            Ok(0)
        }
    }
}

/// A client for a command on session `name`: the name is checked first, so a typo never
/// starts a daemon.
async fn session_client(global: &Global, paths: &Paths, name: &str) -> Result<Client, CliError> {
    ssh_session_core::validate_name(name)?;
    Client::connect_or_start(paths, global.idle_timeout).await
}

async fn connect(global: &Global, paths: &Paths, args: ConnectArgs) -> Result<i32, CliError> {
    // Before anything else: a refused name starts no daemon.
    check_new_session_name(&args.name).map_err(CliError::Invalid)?;
    let identities = args
        .identity
        .iter()
        .map(|p| absolute(p))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = ConnectSpec {
        target: args.host.clone(),
        user: args.user,
        port: args.port,
        identities,
        transport: args.transport,
        persistent: args.persistent,
        ssh_config: global.ssh_config.as_deref().map(absolute).transpose()?,
        known_hosts: global.known_hosts.as_deref().map(absolute).transpose()?,
        no_agent: global.no_agent,
        connect_timeout_ms: args.connect_timeout.map(millis),
        // This shell's agent, not that of the shell that started the daemon.
        agent_socket: std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(|s| absolute(std::path::Path::new(&s)))
            .transpose()?,
    };
    let mut client = session_client(global, paths, &args.name).await?;
    let mut spinner = Spinner::start(format!("connecting {} to {}", args.name, args.host));
    let answer = client
        .call(&Request::Connect {
            name: args.name.clone(),
            spec,
        })
        .await;
    spinner.stop();
    match answer? {
        Response::Session(s) => {
            let on = output::colour(false);
            eprintln!(
                "{} {} → {}@{}:{} ({}); run commands with `ssh-session exec {} -- COMMAND`",
                output::paint(on, "32", "connected"),
                s.name,
                s.user,
                s.host,
                s.port,
                s.transport,
                s.name
            );
            Ok(0)
        }
        other => Err(client.protocol(format!("unexpected answer {other:?}"))),
    }
}

async fn exec(
    global: &Global,
    paths: &Paths,
    name: &str,
    command: &str,
    timeout: Duration,
) -> Result<i32, CliError> {
    let mut client = session_client(global, paths, name).await?;
    client
        .send(&Request::Exec {
            name: name.to_string(),
            command: command.to_string(),
            timeout_ms: millis(timeout),
            source: Some(exec_source()),
        })
        .await?;
    let mut printed = false;
    loop {
        match client.recv().await? {
            // What a person ran at the session's terminal since this terminal's last exec.
            Response::Notice { message } => {
                eprintln!("ssh-session: note: {}", output::escape_controls(&message));
            }
            Response::Output { data } => {
                write_out(&decode(&data).map_err(|e| client.protocol(e))?)?;
                printed = true;
            }
            Response::Result(r) => return finish(name, &r),
            // Once output was shown the command ran: running it again would repeat it.
            Response::Error {
                error: ErrorKind::ShuttingDown,
                message,
            } if printed => {
                return Err(CliError::Remote {
                    kind: ErrorKind::Daemon,
                    message,
                })
            }
            Response::Error { error, message } => {
                return Err(CliError::Remote {
                    kind: error,
                    message,
                })
            }
            other => return Err(client.protocol(format!("unexpected answer {other:?}"))),
        }
    }
}

/// The source `exec` records: `cli:` and the terminal it runs in, so that what a person
/// ran at an attached terminal is reported once to each terminal that runs commands;
/// `cli` without one (scripts, cron).
pub(crate) fn exec_source() -> String {
    use std::os::fd::AsRawFd;
    [
        std::io::stdin().as_raw_fd(),
        std::io::stdout().as_raw_fd(),
        std::io::stderr().as_raw_fd(),
    ]
    .into_iter()
    .find_map(tty_name)
    .map_or_else(|| "cli".to_string(), |tty| format!("cli:{tty}"))
}

/// The name of the terminal on `fd`, if it is one.
fn tty_name(fd: std::os::fd::RawFd) -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: ttyname_r writes at most `buf.len()` bytes, NUL-terminated, into our buffer.
    let rc = unsafe { libc::ttyname_r(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// Prints a result's (unstreamed) output and notices; the exit code follows its state.
fn finish(name: &str, r: &ResultView) -> Result<i32, CliError> {
    let output = decode(&r.output).map_err(CliError::Invalid)?;
    write_out(&output)?;
    for notice in &r.notices {
        eprintln!("ssh-session: note: {}", output::escape_controls(notice));
    }
    if r.dropped_bytes > 0 {
        eprintln!(
            "ssh-session: note: {} bytes of output were dropped in the middle to bound memory",
            r.dropped_bytes
        );
    }
    Ok(match r.state.as_str() {
        "running" => {
            if let Some((kind, prompt)) = &r.waiting_for {
                eprintln!(
                    "ssh-session: {:?} waits for a {kind} at {:?}: type it in `ssh-session attach {name}` \
                     (the prompt hides it; a command-line argument would not)",
                    r.command,
                    output::escape_controls(prompt)
                );
            }
            let after = output::human(Duration::from_millis(r.duration_ms));
            eprintln!(
                "ssh-session: {:?} is still running in session {name} ({after} so far). Follow it with \
                 `ssh-session read {name} --wait 1m`, type into it with `ssh-session send {name} TEXT`, \
                 or stop it with `ssh-session interrupt {name}`",
                r.command
            );
            code::STILL_RUNNING
        }
        "exited" => r.exit_code.unwrap_or(code::UNKNOWN_OUTCOME),
        "shell_exited" => {
            eprintln!(
                "ssh-session: the shell of session {name} exited; the next command starts a new one"
            );
            r.exit_code.unwrap_or(code::UNKNOWN_OUTCOME)
        }
        "link_lost" => {
            eprintln!(
                "ssh-session: the connection of session {name} was lost while {:?} ran; its outcome is unknown",
                r.command
            );
            code::UNKNOWN_OUTCOME
        }
        "untracked" => {
            eprintln!(
                "ssh-session: the shell of session {name} had stopped reporting on {:?} and was \
                 set up again; its exit code is unknown (cwd, variables and jobs are kept)",
                r.command
            );
            code::UNKNOWN_OUTCOME
        }
        _ => {
            eprintln!(
                "ssh-session: {:?} would not stop and was killed with its shell",
                r.command
            );
            code::UNKNOWN_OUTCOME
        }
    })
}

async fn expect_done(client: &mut Client, request: &Request) -> Result<i32, CliError> {
    match client.call(request).await? {
        Response::Done => Ok(0),
        other => Err(client.protocol(format!("unexpected answer {other:?}"))),
    }
}

async fn daemon_status(paths: &Paths, json: bool) -> Result<i32, CliError> {
    let client = Client::existing(paths).await?;
    #[derive(serde::Serialize)]
    struct Status<'a> {
        running: bool,
        pid: Option<u32>,
        version: Option<&'a str>,
        protocol: Option<u32>,
        sessions: usize,
        socket: &'a std::path::Path,
        log: &'a std::path::Path,
    }
    let hello = client.as_ref().map(|c| &c.hello);
    let status = Status {
        running: hello.is_some(),
        pid: hello.map(|h| h.pid),
        version: hello.map(|h| h.version.as_str()),
        protocol: hello.map(|h| h.protocol),
        sessions: hello.map(|h| h.sessions).unwrap_or(0),
        socket: &paths.socket,
        log: &paths.log,
    };
    if json {
        print_json(&status)?;
    } else if let Some(h) = hello {
        let text = format!(
            "daemon running: pid {}, version {} (protocol {}), {} session(s)\nsocket {}\nlog    {}\n",
            h.pid,
            h.version,
            h.protocol,
            h.sessions,
            paths.socket.display(),
            paths.log.display()
        );
        write_out(text.as_bytes())?;
    } else {
        write_out(format!("no daemon running on {}\n", paths.socket.display()).as_bytes())?;
    }
    Ok(0)
}

pub(crate) fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<(), CliError> {
    // serde_json fails only on maps with non-string keys or a failing Serialize impl; the
    // views are plain derived structs with neither.
    #[allow(clippy::expect_used)]
    let mut text = serde_json::to_string_pretty(value).expect("views always serialize");
    text.push('\n');
    write_out(text.as_bytes())
}

/// Writes to stdout now (output streams live). A closed stdout (`| head`) is not an error
/// worth a message, but it does end the command ([`CliError::StdoutClosed`]: exit 141,
/// quietly). A remote command still running goes on, as after Ctrl-C.
pub(crate) fn write_out(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::StdoutClosed,
            _ => CliError::io("writing to stdout", e),
        })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Opens `url` with `$BROWSER` (a command, as `man 7 environ` has it), else `xdg-open`;
/// the browser is left running.
fn open_in_browser(url: &str) -> Result<(), CliError> {
    let browser = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty());
    let program = browser.as_deref().unwrap_or("xdg-open");
    let mut words = program.split_whitespace();
    let Some(command) = words.next() else {
        return Ok(());
    };
    std::process::Command::new(command)
        .args(words)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| {
            CliError::io(
                format!(
                    "opening a browser with `{program}` (set BROWSER to one, or open the link above yourself)"
                ),
                e,
            )
        })
}
