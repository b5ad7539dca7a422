//! Persistent mode: a shell that lives in a tmux session on the remote host, so that it
//! survives the SSH connection dropping and the client process restarting.
//!
//! [`TmuxShell::open`] returns an ordinary [`Channel`], so a
//! [`ShellSession`](crate::ShellSession) drives it exactly like a PTY channel, plus a
//! [`TmuxAttachment`] that counts the bytes delivered. After a disconnect, open the same
//! name again with `resume_from: Some(attachment.offset())`: nothing printed meanwhile is
//! lost and nothing is delivered twice.
//!
//! # How it works (remote side)
//!
//! - **One tmux server per socket**, `tmux -L ssh-session -f /dev/null` by default: our
//!   sessions never mix with the user's own tmux, and the user's `~/.tmux.conf` cannot
//!   change the behaviour. Sessions are named `ssh-session-NAME` (a `.` in NAME becomes `+`,
//!   because tmux rewrites `.`). To look at one by hand:
//!   `tmux -L ssh-session attach -t ssh-session-NAME`.
//! - **The window** is created `-x COLS -y ROWS` with `window-size manual` (clients never
//!   resize it; [`ChannelInput::resize`](crate::transport::ChannelInput::resize) does, with `resize-window`), the status line off,
//!   and the login shell (tmux's `default-shell`, started as a login shell). The shell sees
//!   `TERM` = the [`PtyRequest`]'s term (set as tmux's `default-terminal` just before the
//!   session is created), and also `TMUX` and `TMUX_PANE`. Its terminal is a real PTY with
//!   the kernel's defaults (ONLCR: a program's `\n` arrives as `\r\n`, as on an SSH PTY), and
//!   echo is switched off (`stty -echo` on the pane's tty) when the request says `echo: false`.
//! - **Output**: `pipe-pane` sends the pane's raw output (the bytes the programs wrote,
//!   before tmux interprets them: byte-exact) to a writer, `cat >>LOG`, set up in the same
//!   tmux command that creates the session, so not a byte is missed. LOG is
//!   `~/.ssh-session/tmux/SOCKET/NAME.log` (directories 0700; `${TMPDIR:-/tmp}/ssh-session-UID/`
//!   if the home is not writable). Not `$XDG_RUNTIME_DIR`: logind removes it when the
//!   user's last login ends, which is exactly when the shell must live on. A byte's offset
//!   in LOG is its stream offset.
//! - **The Channel's events** come from one exec channel running `tail -c +N -f LOG`
//!   (GNU tail follows the file descriptor with inotify: no polling, sub-millisecond),
//!   started at the resume offset. `tail --pid=WRITER` ends it after the writer has written
//!   its last byte (the pane is gone), which the session sees as the shell ending; the log
//!   is then removed.
//! - **Input** goes through one `tmux -C attach` control-mode client (opened after the
//!   `%session-changed` notification: typing earlier would be lost) as
//!   `send-keys -t PANE -H xx xx ...`: every byte is sent as a literal key, so control bytes,
//!   UTF-8 and invalid UTF-8 all arrive exactly. The client asks tmux (3.2+) for no
//!   `%output` and to ignore its size. Closing the Channel detaches; the session stays.
//! - **The log is capped**: past [`TmuxShell::max_log_bytes`] (64 MiB) the writer punches a
//!   hole over the oldest bytes (`fallocate -p`, checked every 2 s): disk use stays near the
//!   cap while offsets stay valid. A client that resumes from an offset older than the kept
//!   bytes is told so ([`Gap::Trimmed`]); it is never handed zeros. Only a client that
//!   stays attached while falling more than the cap behind could read punched (zero) bytes.
//!
//! Requires tmux (3.2+ recommended; older works but receives every byte twice), GNU
//! coreutils (`tail --pid`, `stat -c`) and util-linux `fallocate` on the remote host.
//! Without `fallocate` (or on a filesystem without hole punching) the log is not capped.
//! The tmux server must outlive the SSH login: with systemd-logind's
//! `KillUserProcesses=yes`, run `loginctl enable-linger USER` on the host.
//!
//! # Driving it from a session
//!
//! - `created == true`: a new shell; prime it as usual.
//! - `created == false`: the shell is already primed and may be running a command; its
//!   output continues exactly at `start`. A session that re-primes it must expect the old
//!   nonce's markers in the stream until then (the nonce lives in the shell's variables).
//! - Closing the Channel only detaches. Typing `exit` (as [`Session::close`](crate::Session::close)
//!   does) ends the shell for good, and so does [`TmuxShell::kill`].

mod channel;
mod script;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::transport::{run, Channel, PtyRequest, Transport};
use channel::{read_header, start_control, Acks, TmuxEvents, TmuxInput};
use script::SetupArgs;

/// The default tmux socket (`tmux -L`) for persistent sessions.
pub(crate) const DEFAULT_SOCKET: &str = "ssh-session";
/// The default log cap: 64 MiB per session.
pub(crate) const DEFAULT_MAX_LOG_BYTES: u64 = 64 << 20;

/// How long creating or attaching may take before [`TmuxShell::open`] gives up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Where persistent shells live on a host: which tmux server, and how much output is kept.
/// The free functions [`list`] and [`kill`] use the defaults.
#[derive(Clone, Debug)]
pub(crate) struct TmuxShell {
    /// The tmux socket name (`tmux -L`); `[A-Za-z0-9._-]`, default [`DEFAULT_SOCKET`].
    pub socket: String,
    /// Bytes of output kept per session for clients that reconnect; older bytes are
    /// dropped (and reported, see [`Gap::Trimmed`]). Default [`DEFAULT_MAX_LOG_BYTES`];
    /// at least 1 MiB. Applies to sessions created (or whose writer is restarted) with it.
    pub max_log_bytes: u64,
}

impl Default for TmuxShell {
    fn default() -> Self {
        TmuxShell {
            socket: DEFAULT_SOCKET.into(),
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
        }
    }
}

/// Output printed before an attachment's first byte that it will not deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gap {
    /// `resume_from` was `None` and the session already existed: delivery starts at the end
    /// of what it had printed; `skipped` bytes came before.
    NotResumed {
        /// Bytes printed before this attachment started.
        skipped: u64,
    },
    /// The caller's offset is older than the kept log (see [`TmuxShell::max_log_bytes`]):
    /// bytes `from .. from + lost` are gone.
    Trimmed {
        /// The offset asked for.
        from: u64,
        /// How many bytes were dropped before delivery resumes.
        lost: u64,
    },
    /// The caller's offset is past the end of the log: it belongs to another shell of the
    /// same name (the session was killed and created again). Delivery starts at the end.
    Ahead {
        /// The offset asked for.
        from: u64,
        /// Where the log ends (and delivery starts).
        end: u64,
    },
}

/// What [`TmuxShell::open`] found and where the Channel's stream starts.
#[derive(Clone, Debug)]
pub(crate) struct TmuxAttachment {
    /// A new shell was started: the caller must prime it. `false`: the existing shell,
    /// with its directory, variables and jobs, was attached.
    pub created: bool,
    /// The stream offset of the Channel's first byte.
    pub start: u64,
    /// Output before `start` that the caller has not seen and will not get, if any.
    pub gap: Option<Gap>,
    /// The shell's process id on the remote host.
    pub shell_pid: u32,
    /// Which tmux session this is (`$ID:CREATED_TIME`): differs when the session was killed
    /// and created again under the same name (by another client, say), so compare it with
    /// the previous attachment's before trusting a resumed offset.
    pub incarnation: String,
    /// `tmux -V` on the remote host.
    pub tmux_version: String,
    offset: Arc<AtomicU64>,
}

impl TmuxAttachment {
    /// The stream offset after the last byte delivered through the Channel's events so far
    /// (`start` + bytes read). Pass it as `resume_from` when attaching again.
    pub(crate) fn offset(&self) -> u64 {
        self.offset.load(Ordering::Acquire)
    }
}

/// [`TmuxShell::list`] on the default socket.
pub(crate) async fn list(transport: &dyn Transport) -> Result<Vec<String>> {
    TmuxShell::default().list(transport).await
}

/// [`TmuxShell::kill`] on the default socket.
pub(crate) async fn kill(transport: &dyn Transport, name: &str) -> Result<bool> {
    TmuxShell::default().kill(transport, name).await
}

impl TmuxShell {
    /// Opens the persistent shell `name` (created if absent, attached otherwise) with the
    /// login shell; see [`open_command`](Self::open_command).
    pub(crate) async fn open(
        &self,
        transport: &dyn Transport,
        name: &str,
        pty: &PtyRequest,
        resume_from: Option<u64>,
    ) -> Result<(Channel, TmuxAttachment)> {
        self.open_command(transport, name, pty, None, resume_from)
            .await
    }

    /// Creates the tmux session for `name` (if absent) running `command` (through the
    /// login shell's `-c`; `None`: the login shell itself) in a window of the pty's size, or
    /// attaches to it; returns a Channel and the attachment.
    ///
    /// `resume_from` is the stream offset the caller has consumed (its last
    /// [`TmuxAttachment::offset`]): delivery restarts exactly there. `None` for a fresh
    /// client: delivery starts at the end of what was printed so far ([`Gap::NotResumed`]).
    /// A new session always starts at 0. `command` and the pty's term and size only apply
    /// when the session is created; an existing window keeps its size until resized.
    pub(crate) async fn open_command(
        &self,
        transport: &dyn Transport,
        name: &str,
        pty: &PtyRequest,
        command: Option<&str>,
        resume_from: Option<u64>,
    ) -> Result<(Channel, TmuxAttachment)> {
        crate::validate_name(name)?;
        self.check_socket()?;
        let host = transport.describe();
        let refused = |detail: String| Error::ChannelRefused {
            host: host.clone(),
            what: format!("persistent (tmux) shell {name:?}"),
            detail,
        };
        let term_ok = !pty.term.is_empty()
            && pty
                .term
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        if !term_ok {
            return Err(refused(format!("invalid TERM {:?}", pty.term)));
        }
        if command.is_some_and(|c| c.contains('\\') || c.contains('\0')) {
            return Err(refused(
                "the command must not contain a backslash or NUL (it passes through the login shell's quoting)"
                    .into(),
            ));
        }
        let setup = script::setup(&SetupArgs {
            socket: &self.socket,
            name,
            cols: pty.cols,
            rows: pty.rows,
            term: &pty.term,
            resume_from,
            echo: pty.echo,
            cap: self.max_log_bytes.max(1 << 20),
            command,
        });
        let reader = transport.open_exec(&setup, None).await?;
        let mut events = reader.events;
        let header = match read_header(&mut events, OPEN_TIMEOUT).await {
            Ok((line, rest)) => script::parse_header(&line).map(|h| (h, rest)),
            Err(e) => Err(e),
        };
        let (header, rest) = match header {
            Ok(h) => h,
            Err(e) => {
                let _ = reader.input.close().await;
                return Err(if e.starts_with("notmux") {
                    Error::TmuxMissing {
                        host: transport.describe(),
                    }
                } else {
                    refused(e)
                });
            }
        };

        let flags = script::has_client_flags(&header.version);
        let control = match transport
            .open_exec(&script::control(&self.socket, name, flags), None)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = reader.input.close().await;
                return Err(e);
            }
        };
        let ended = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Acks::default());
        if let Err(e) =
            start_control(control.events, ended.clone(), acks.clone(), OPEN_TIMEOUT).await
        {
            let _ = reader.input.close().await;
            let _ = control.input.close().await;
            return Err(refused(e));
        }

        let gap = match resume_from {
            _ if header.created => None,
            None => (header.start > 0).then_some(Gap::NotResumed {
                skipped: header.start,
            }),
            Some(from) if from > header.size => Some(Gap::Ahead {
                from,
                end: header.start,
            }),
            Some(from) if from < header.start => Some(Gap::Trimmed {
                from,
                lost: header.start - from,
            }),
            Some(_) => None,
        };
        if let Some(gap) = &gap {
            tracing::info!(session = name, ?gap, "persistent shell attached with a gap");
        }
        let offset = Arc::new(AtomicU64::new(header.start));
        let input = TmuxInput {
            control: control.input,
            reader: reader.input,
            pane: header.pane,
            window: header.window,
            host,
            name: name.to_string(),
            ended,
            acks,
            order: tokio::sync::Mutex::new(()),
        };
        let channel = Channel {
            input: Arc::new(input),
            events: Box::new(TmuxEvents {
                inner: events,
                pending: (!rest.is_empty()).then_some(rest),
                offset: offset.clone(),
                done: false,
            }),
        };
        let attachment = TmuxAttachment {
            created: header.created,
            start: header.start,
            gap,
            shell_pid: header.pane_pid,
            incarnation: header.incarnation,
            tmux_version: header.version,
            offset,
        };
        Ok((channel, attachment))
    }

    /// The persistent sessions on the host (their names, without the `ssh-session-`
    /// prefix), sorted. Empty when the tmux server is not running.
    pub(crate) async fn list(&self, transport: &dyn Transport) -> Result<Vec<String>> {
        self.check_socket()?;
        let out = run(transport, &script::list(&self.socket)).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.starts_with(script::HEADER_ERR) {
            return Err(Error::TmuxMissing {
                host: transport.describe(),
            });
        }
        let mut names: Vec<String> = text.lines().filter_map(script::our_name).collect();
        names.sort();
        Ok(names)
    }

    /// Kills the persistent session `name` (its shell and every job in it) and removes its
    /// log. Returns whether a session was there; removing the log happens either way.
    pub(crate) async fn kill(&self, transport: &dyn Transport, name: &str) -> Result<bool> {
        crate::validate_name(name)?;
        self.check_socket()?;
        let out = run(transport, &script::kill(&self.socket, name)).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.starts_with(script::HEADER_ERR) {
            return Err(Error::TmuxMissing {
                host: transport.describe(),
            });
        }
        Ok(text.contains("killed"))
    }

    fn check_socket(&self) -> Result<()> {
        crate::validate_name(&self.socket).map_err(|_| Error::Config {
            detail: format!(
                "invalid tmux socket name {:?}: use 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'",
                self.socket
            ),
        })
    }
}

#[cfg(test)]
mod tests;
