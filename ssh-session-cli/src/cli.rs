//! The command line, parsed by clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use ssh_session_core::Interrupt;

const EXAMPLES: &str = "\
Examples:
  ssh-session connect web deploy@web.example.com     # open a session named `web`
  ssh-session connect db db-prod -i ~/.ssh/id_db     # an alias from ~/.ssh/config
  ssh-session exec web -- cd /srv/app                # the next exec runs in /srv/app
  ssh-session exec web -- make -j8                   # output streams live; exit code is make's
  ssh-session exec web --timeout 5s -- ./slow.sh     # 124 after 5 s; it keeps running
  ssh-session read web --wait 1m                     # follow it; exits with its code
  ssh-session send web 'y\\n'                         # answer a prompt
  ssh-session interrupt web                          # Ctrl-C
  ssh-session exec web,db,cache -- uptime            # all at once, lines prefixed
  ssh-session cp ./app.toml web:/srv/app/            # upload; web:PATH to download
  ssh-session forward db -L 5432:localhost:5432      # ssh -L; also -D 1080, -R ...
  ssh-session attach web                             # interactive; Ctrl-] detaches
  ssh-session ls --json
  ssh-session close web

Exit codes:
  exec, read: the remote command's exit code
  124 still running (exec --timeout or read --wait expired)
  125 outcome unknown (connection lost, or killed with its shell)
   64 invalid input (session name, escape, duration)     65 no such session
   66 session name already in use                        67 session busy (or nothing running)
   68 cannot connect / SSH failure                       69 authentication or host key refused
   70 ssh config error                                   71 session closed or disconnected
   72 daemon unavailable (start failed, refused, version mismatch)
  141 stdout closed (| head), quietly; the remote command goes on
    1 other errors                                        2 command-line syntax

Environment:
  SSH_SESSION_SOCKET, SSH_SESSION_RUNTIME_DIR, SSH_SESSION_SSH_CONFIG,
  SSH_SESSION_KNOWN_HOSTS, SSH_SESSION_NO_AGENT, SSH_SESSION_IDLE_TIMEOUT,
  SSH_SESSION_EXEC_TIMEOUT, SSH_SESSION_LOG (daemon log filter), NO_COLOR";

/// Persistent SSH sessions from the shell: named remote shells that keep their working
/// directory and environment between commands, held by a local daemon.
#[derive(Debug, Clone, Parser)]
#[command(name = "ssh-session", version, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the daemon lives and how sessions authenticate.
#[derive(Debug, Args, Clone)]
pub(crate) struct Global {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/ssh-session/daemon.sock, else
    /// /tmp/ssh-session-UID/daemon.sock].
    #[arg(long, global = true, env = "SSH_SESSION_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The directory holding the daemon's socket, lock and log (created 0700; an existing
    /// one must be yours and not writable by others).
    #[arg(
        long,
        global = true,
        env = "SSH_SESSION_RUNTIME_DIR",
        value_name = "DIR"
    )]
    pub runtime_dir: Option<PathBuf>,
    /// The ssh config file for `connect` and `hosts` [default: ~/.ssh/config].
    #[arg(
        long,
        global = true,
        env = "SSH_SESSION_SSH_CONFIG",
        value_name = "FILE"
    )]
    pub ssh_config: Option<PathBuf>,
    /// The known_hosts file for `connect` [default: the config's, else ~/.ssh/known_hosts].
    #[arg(
        long,
        global = true,
        env = "SSH_SESSION_KNOWN_HOSTS",
        value_name = "FILE"
    )]
    pub known_hosts: Option<PathBuf>,
    /// Do not offer the ssh-agent's keys on `connect` (env: 1/true/yes).
    #[arg(long, global = true, env = "SSH_SESSION_NO_AGENT",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_agent: bool,
    /// A daemon started by this command exits after this long without sessions or clients.
    #[arg(long, global = true, env = "SSH_SESSION_IDLE_TIMEOUT", value_name = "DUR",
          default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum Command {
    /// Opens a session named NAME to HOST (`[user@]host[:port]` or a ~/.ssh/config alias).
    Connect(ConnectArgs),
    /// Runs COMMAND in the session's shell, streaming its output; exits with its exit code.
    /// With several sessions (`a,b,c`) it runs in all at once and each line of output is
    /// prefixed with its session's name; the exit code is the worst of theirs.
    Exec {
        /// The session, or sessions separated by commas.
        name: String,
        /// Stop waiting after this long; the command keeps running (exit code 124).
        #[arg(long, env = "SSH_SESSION_EXEC_TIMEOUT", value_name = "DUR",
              default_value = "30m", value_parser = parse_duration)]
        timeout: Duration,
        /// The command line; words are joined with spaces and run by the remote shell.
        #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Prints output of the running (or last) command not shown yet; exits with its code.
    Read {
        /// The session.
        name: String,
        /// Wait up to this long for the command to finish (124 if it still runs).
        #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
        wait: Duration,
        /// Print the terminal screen as text instead (full-screen programs: vim, top).
        #[arg(long)]
        screen: bool,
    },
    /// Sends TEXT to the running command's terminal. Escapes are decoded: \n \r \t \e \0
    /// \\ \xHH (e.g. 'y\n', '\x03' for Ctrl-C), unless --raw.
    Send {
        /// The session.
        name: String,
        /// What to type.
        text: String,
        /// Send TEXT exactly as given, backslashes included.
        #[arg(long)]
        raw: bool,
    },
    /// Interrupts the running command.
    Interrupt {
        /// The session.
        name: String,
        /// INT (Ctrl-C), TERM, KILL (to the foreground process group) or EOF (Ctrl-D).
        #[arg(long, default_value = "INT", value_parser = parse_interrupt)]
        signal: Interrupt,
    },
    /// The session's own shell in this terminal, like `tmux attach`: its line editor,
    /// completion and history; every command you run is recorded in `history`. Ctrl-]
    /// detaches and leaves the session (and any running command) going.
    Attach {
        /// The session.
        name: String,
    },
    /// Lists the sessions.
    #[command(alias = "list")]
    Ls {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Shows one session in detail.
    Status {
        /// The session.
        name: String,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Shows the commands a session ran: who ran each (a program, or a person at `attach`),
    /// its exit code, how long it took and the directory it left the shell in.
    History {
        /// The session.
        name: String,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Lists the host aliases of the ssh config.
    Hosts {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Prints a one-time login link to the session's terminal in a browser page: you (or
    /// whoever you give it to) watch, type and cancel there, tracked like `attach`. The
    /// daemon serves it on a free 127.0.0.1 port; the link works once, for 15 minutes,
    /// and logs that browser in for 12 hours.
    Share {
        /// The session.
        name: String,
        /// The link only lets its opener watch: no typing, resizing or cancelling.
        #[arg(long)]
        read_only: bool,
        /// Also open it in a browser ($BROWSER, else xdg-open).
        #[arg(long)]
        open: bool,
        /// JSON for scripts (url, expires_at, read_only).
        #[arg(long)]
        json: bool,
    },
    /// Copies files between this machine and a session's host, over SFTP: the remote side
    /// is NAME:PATH (relative to the session's working directory). Into an existing
    /// directory, under the source's name; each file is written under a temporary name
    /// and renamed into place when complete.
    Cp {
        /// Copy directories, recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// A local path, or NAME:PATH.
        source: String,
        /// A local path, or NAME:PATH.
        dest: String,
        /// JSON for scripts (bytes, files, sha256, duration_ms, to).
        #[arg(long)]
        json: bool,
    },
    /// Opens a tunnel on a session's connection, as ssh's -L, -D and -R do (loopback
    /// unless a BIND address is given; it survives reconnects and closes with the
    /// session); lists them without one; closes one with --close.
    Forward {
        /// The session (not needed to list or close).
        name: Option<String>,
        /// Listen here, connect from the host: [BIND:]PORT:HOST:HOSTPORT (PORT 0, or
        /// HOST:HOSTPORT alone, picks a free port).
        #[arg(short = 'L', value_name = "SPEC", conflicts_with_all = ["dynamic", "remote", "close"])]
        local: Option<String>,
        /// A SOCKS5 proxy here whose connections go out from the host: [BIND:]PORT.
        #[arg(short = 'D', value_name = "SPEC", conflicts_with_all = ["remote", "close"])]
        dynamic: Option<String>,
        /// Listen on the host, connect from here: [BIND:]PORT:HOST:HOSTPORT.
        #[arg(short = 'R', value_name = "SPEC", conflicts_with = "close")]
        remote: Option<String>,
        /// Close the tunnel with this id (as `forward` or `ls` lists it).
        #[arg(long, value_name = "ID")]
        close: Option<String>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Closes a session (its shell and, if unused, its connection).
    Close {
        /// The session.
        name: String,
    },
    /// Runs the daemon in the foreground (it is started automatically otherwise).
    Daemon {
        /// `stop` or `status`; none runs the daemon.
        #[command(subcommand)]
        action: Option<DaemonAction>,
    },
}

/// What to do with a running daemon.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum DaemonAction {
    /// Stops the daemon: sessions are closed, persistent ones only detached (their remote
    /// tmux shells keep running; `connect --persistent` with the same name re-adopts them).
    Stop,
    /// Shows whether a daemon runs, its pid, version and session count.
    Status {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// `connect`'s arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectArgs {
    /// The session's name: 1-64 characters from A-Z a-z 0-9 . _ -
    pub name: String,
    /// `[user@]host[:port]` or an alias from the ssh config.
    pub host: String,
    /// Remote user (wins over HOST and the config).
    #[arg(long, short = 'l')]
    pub user: Option<String>,
    /// Remote port (wins over HOST and the config).
    #[arg(long, short = 'p')]
    pub port: Option<u16>,
    /// Private key to offer (repeatable); tried before the config's IdentityFile, as
    /// `ssh -i` does.
    #[arg(short = 'i', long = "identity", value_name = "KEY")]
    pub identity: Vec<PathBuf>,
    /// SSH implementation: russh (built in, default) or openssh (the local ssh client).
    #[arg(long, value_parser = ["russh", "openssh"])]
    pub transport: Option<String>,
    /// Run the shell in remote tmux: it survives dropped links and daemon restarts.
    #[arg(long)]
    pub persistent: bool,
    /// Give up connecting after this long.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
}

/// Parses `500ms`, `5s`, `2m`, `1h` or a plain number of seconds (`1.5`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use e.g. 500ms, 5s, 2m, 1h"))?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "" | "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {text:?}: use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Decodes `\n \r \t \e \0 \\ \xHH` in `text`.
pub(crate) fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'e') => out.push(0x1b),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let value = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        format!("bad escape in {text:?}: \\x needs two hex digits (\\x03 is Ctrl-C); use --raw to send backslashes as-is")
                    })?;
                out.push(value);
            }
            Some(other) => {
                return Err(format!(
                    "unknown escape \\{} in {text:?}: use \\n \\r \\t \\e \\0 \\\\ or \\xHH, or --raw to send it as-is",
                    other as char
                ))
            }
            None => {
                return Err(format!(
                    "{text:?} ends with a lone backslash: write \\\\, or use --raw"
                ))
            }
        }
    }
    Ok(out)
}

/// Checks the name `connect` gives a new session, on top of the library's rules: it must
/// not start with `-`. Every other command takes the name before its options, where
/// `exec -web` reads as options and `exec -- -web` as the command line, so such a session
/// could be opened but never used. The error says which name to use instead.
pub(crate) fn check_new_session_name(name: &str) -> Result<(), String> {
    if !name.starts_with('-') {
        return Ok(());
    }
    let trimmed = name.trim_start_matches('-');
    let instead = if trimmed.is_empty() {
        String::new()
    } else {
        format!(" (e.g. {trimmed:?} instead of {name:?})")
    };
    Err(format!(
        "session names cannot start with '-': the other commands would read {name:?} as \
         an option; choose a name that starts with a letter, a digit, '.' or '_'{instead}"
    ))
}

/// Parses a signal name the way the library does (`INT`, `sigterm`, `^C`...).
fn parse_interrupt(name: &str) -> Result<Interrupt, String> {
    name.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"y\n").unwrap(), b"y\n");
        assert_eq!(unescape(r"\x03").unwrap(), [3]);
        assert_eq!(unescape(r"a\\b\t\r\e\0").unwrap(), b"a\\b\t\r\x1b\0");
        assert_eq!(unescape("plain é").unwrap(), "plain é".as_bytes());
        assert!(unescape(r"\x3").is_err());
        assert!(unescape(r"\q").is_err());
        assert!(unescape("trailing\\").is_err());
    }

    #[test]
    fn new_session_names_cannot_start_with_a_dash() {
        for ok in ["web", "web-1", "_x", ".hidden", "1-"] {
            assert_eq!(check_new_session_name(ok), Ok(()), "{ok}");
        }
        let e = check_new_session_name("--web").unwrap_err();
        assert!(e.starts_with("session names cannot start with '-'"), "{e}");
        assert!(e.contains(r#""web" instead of "--web""#), "{e}");
        // Nothing to suggest when the name is all dashes.
        let e = check_new_session_name("-").unwrap_err();
        assert!(!e.contains("instead"), "{e}");
    }

    #[test]
    fn exec_takes_everything_after_the_separator() {
        let cli =
            Cli::try_parse_from(["ssh-session", "exec", "web", "--", "ls", "-la", "--x"]).unwrap();
        match cli.command {
            Command::Exec { name, command, .. } => {
                assert_eq!(name, "web");
                assert_eq!(command, ["ls", "-la", "--x"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
