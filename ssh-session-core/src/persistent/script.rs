//! The shell scripts run on the remote host, and the parsing of what they print.
//!
//! Every script is one line of POSIX `sh`, started as `sh -c '<script>' ssh-session ARGS...`
//! so that the user's login shell (which parses the exec command: bash, zsh, fish, csh...)
//! only has to understand single quotes. The scripts use no backslash-escape inside the
//! quotes (fish would interpret `\\` and `\'`), and values travel as positional arguments.

/// The prefix of every tmux session name this module creates.
pub(crate) const PREFIX: &str = "ssh-session-";

/// The first line the setup script prints, before the raw pane output.
pub(crate) const HEADER_OK: &str = "SSHSESS-OK";
/// The line the setup script prints instead when it cannot go on.
pub(crate) const HEADER_ERR: &str = "SSHSESS-ERR";

/// Quotes `s` as one POSIX shell word: `'...'`, with `'` as `'\''`. Fish and csh read
/// the same word the same way as long as `s` holds no backslash.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `sh -c '<script>' ssh-session 'arg'...`: one command line for any login shell.
pub(crate) fn sh_command(script: &str, args: &[&str]) -> String {
    debug_assert!(!script.contains('\\'), "no backslash: fish would read it");
    let mut out = format!("sh -c {} ssh-session", quote(script));
    for arg in args {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

/// The tmux session name for `name`: tmux turns `.` and `:` into `_`, so `.` (allowed in
/// our names, `:` is not) is mapped to `+` (not allowed in our names): reversible.
pub(crate) fn tmux_name(name: &str) -> String {
    format!("{PREFIX}{}", name.replace('.', "+"))
}

/// The inverse of [`tmux_name`], or `None` for a tmux session that is not ours.
pub(crate) fn our_name(tmux: &str) -> Option<String> {
    tmux.strip_prefix(PREFIX)
        .filter(|n| !n.is_empty())
        .map(|n| n.replace('+', "."))
}

/// Picks the log directory in `$D` (same choice for every client): `~/.ssh-session/tmux/SOCKET`,
/// else `${TMPDIR:-/tmp}/ssh-session-UID/tmux/SOCKET`; private (0700). `$K` is the socket.
/// Paths with a `'` are skipped: the log path is single-quoted in the pipe-pane command.
const PICK_DIR: &str = "D=; for b in \"${HOME:-/nonexistent}/.ssh-session\" \"${TMPDIR:-/tmp}/ssh-session-$(id -u)\"; do \
case $b in *\"'\"*) continue;; esac; \
if (umask 077; mkdir -p \"$b/tmux/$K\") 2>/dev/null && [ -w \"$b/tmux/$K\" ]; then D=$b/tmux/$K; break; fi; done; \
[ -n \"$D\" ] || { echo \"SSHSESS-ERR nodir cannot create a private log directory under $HOME or ${TMPDIR:-/tmp}\"; exit 0; }; \
chmod 700 \"$D\" 2>/dev/null; ";

/// Prints `SSHSESS-ERR notmux` and stops when tmux is missing.
const NEED_TMUX: &str = "command -v tmux >/dev/null 2>&1 || { echo \"SSHSESS-ERR notmux tmux is not installed\"; exit 0; }; \
T() { tmux -L \"$K\" -f /dev/null \"$@\"; }; ";

/// The pipe-pane writer, stored as `$D/writer.sh` and run by tmux as `sh writer.sh LOG CAP`.
///
/// It records its pid (readers' `tail --pid` ends when it does, after the last byte is in
/// the file), then becomes `cat >>LOG`: raw pane bytes, written as they come (`cat` does not
/// buffer). A side loop checks the size every 2 s and, past CAP, punches a hole over the
/// oldest bytes: disk use stays near CAP while every byte keeps its offset (the file is
/// sparse; its apparent size is the stream offset). `LOG.trim` records where valid data
/// starts, so a reader further behind is told what it lost instead of reading zeros.
pub(crate) const WRITER: &str = "L=$1; C=$2; echo $$ >\"$L.pid\"; \
( while kill -0 $$ 2>/dev/null; do sleep 2; s=$(stat -c %s \"$L\" 2>/dev/null) || break; \
if [ \"$s\" -gt \"$C\" ]; then c=$(( (s - C) / 4096 * 4096 )); t=$(cat \"$L.trim\" 2>/dev/null); \
if [ \"$c\" -gt \"${t:-0}\" ] && fallocate -p -o 0 -l \"$c\" \"$L\" 2>/dev/null; then \
echo \"$c\" >\"$L.trim.new\" && mv -f \"$L.trim.new\" \"$L.trim\"; fi; fi; done ) </dev/null >/dev/null 2>&1 & \
exec cat >>\"$L\"";

/// Creates or finds the session, then streams its log. Arguments: socket, name, tmux name,
/// cols, rows, TERM, resume offset (`-` for none), echo (0/1), cap, writer text, command.
///
/// Prints one header line, `SSHSESS-OK created start trim size pane window pane_pid
/// writer_pid session_id:created_time version`, then the raw pane output from `start` on, as it is written, until
/// the writer ends (the pane is gone). Or `SSHSESS-ERR code text`.
const SETUP: &str =
    "K=$1; N=$2; S=$3; X=$4; Y=$5; TM=$6; R=$7; E=$8; CAP=$9; shift 9; WR=$1; CMD=$2; ";

const SETUP_BODY: &str = "V=$(tmux -V 2>/dev/null | tr ' ' _); L=$D/$N.log; \
printf '%s' \"$WR\" >\"$D/writer.sh.$$\" && mv -f \"$D/writer.sh.$$\" \"$D/writer.sh\"; \
PIPE=\"exec sh '$D/writer.sh' '$L' $CAP\"; c=0; \
if ! T has-session -t \"=$S\" 2>/dev/null; then rm -f \"$L\" \"$L.pid\" \"$L.trim\"; (umask 077; : >\"$L\"); \
if [ -n \"$CMD\" ]; then set -- \"$CMD\"; else set --; fi; \
if T start-server ';' set -g default-terminal \"$TM\" ';' new-session -d -s \"$S\" -x \"$X\" -y \"$Y\" \"$@\" \
';' set -w -t \"=$S:\" window-size manual ';' set -t \"=$S:\" status off ';' pipe-pane -o -t \"=$S:\" \"$PIPE\" 2>/dev/null; \
then c=1; fi; fi; \
I=$(T display -p -t \"=$S:\" '#{pane_id} #{window_id} #{pane_pid} #{pane_tty} #{session_id}:#{session_created}' 2>&1) || { echo \"SSHSESS-ERR tmux $I\"; exit 0; }; \
set -- $I; P=$1; W=$2; PP=$3; TT=$4; SI=$5; \
[ \"$c\" = 1 ] && [ \"$E\" = 0 ] && stty -echo <\"$TT\" 2>/dev/null; \
wp=$(cat \"$L.pid\" 2>/dev/null); \
if [ \"$c\" = 1 ] || [ -z \"$wp\" ] || ! kill -0 \"$wp\" 2>/dev/null; then \
if [ \"$c\" = 0 ]; then rm -f \"$L.pid\"; [ -f \"$L\" ] || (umask 077; : >\"$L\"); T pipe-pane -t \"$P\" ';' pipe-pane -o -t \"$P\" \"$PIPE\"; fi; \
i=0; while [ ! -s \"$L.pid\" ] && [ $i -lt 300 ]; do sleep 0.01; i=$((i+1)); done; wp=$(cat \"$L.pid\" 2>/dev/null); fi; \
t=$(cat \"$L.trim\" 2>/dev/null); t=${t:-0}; s=$(stat -c %s \"$L\" 2>/dev/null || wc -c <\"$L\"); \
if [ \"$c\" = 1 ]; then o=0; elif [ \"$R\" = - ]; then o=$s; elif [ \"$R\" -gt \"$s\" ]; then o=$s; \
elif [ \"$R\" -lt \"$t\" ]; then o=$t; else o=$R; fi; \
echo \"SSHSESS-OK $c $o $t $s $P $W $PP ${wp:-0} $SI $V\"; \
if [ -n \"$wp\" ]; then tail -c +$((o + 1)) -s 0.25 --pid=\"$wp\" -f \"$L\" 2>/dev/null; else tail -c +$((o + 1)) -f \"$L\" 2>/dev/null; fi; \
if ! T has-session -t \"=$S\" 2>/dev/null && [ \"$(cat \"$L.pid\" 2>/dev/null)\" = \"$wp\" ]; then rm -f \"$L\" \"$L.pid\" \"$L.trim\"; fi";

/// Everything [`setup`] needs.
pub(crate) struct SetupArgs<'a> {
    pub socket: &'a str,
    pub name: &'a str,
    pub cols: u16,
    pub rows: u16,
    pub term: &'a str,
    pub resume_from: Option<u64>,
    pub echo: bool,
    pub cap: u64,
    pub command: Option<&'a str>,
}

/// The exec command that creates-or-attaches and then streams the pane's log.
pub(crate) fn setup(a: &SetupArgs<'_>) -> String {
    let script = format!("{SETUP}{NEED_TMUX}{PICK_DIR}{SETUP_BODY}");
    let resume = a
        .resume_from
        .map_or_else(|| "-".to_string(), |r| r.to_string());
    sh_command(
        &script,
        &[
            a.socket,
            a.name,
            &tmux_name(a.name),
            &a.cols.max(1).to_string(),
            &a.rows.max(1).to_string(),
            a.term,
            &resume,
            if a.echo { "1" } else { "0" },
            &a.cap.to_string(),
            WRITER,
            a.command.unwrap_or(""),
        ],
    )
}

/// The control-mode client that carries input (`send-keys -H`) and resizes. Since tmux 3.2
/// it asks for no `%output` (the log carries output) and does not size the window.
pub(crate) fn control(socket: &str, name: &str, flags: bool) -> String {
    let flags = if flags {
        " -f no-output,ignore-size"
    } else {
        ""
    };
    sh_command(
        &format!("exec tmux -L \"$1\" -C attach-session -t \"=$2\"{flags}"),
        &[socket, &tmux_name(name)],
    )
}

/// Lists the tmux sessions on the socket (one per line), or `SSHSESS-ERR notmux`.
pub(crate) fn list(socket: &str) -> String {
    sh_command(
        &format!("K=$1; {NEED_TMUX}T ls -F '#{{session_name}}' 2>/dev/null; exit 0"),
        &[socket],
    )
}

/// Kills the session and removes its log from every candidate directory. Prints `killed`
/// when a session was there.
pub(crate) fn kill(socket: &str, name: &str) -> String {
    let script = format!(
        "K=$1; N=$2; S=$3; {NEED_TMUX}T kill-session -t \"=$S\" 2>/dev/null && echo killed; \
for b in \"${{HOME:-/nonexistent}}/.ssh-session\" \"${{TMPDIR:-/tmp}}/ssh-session-$(id -u)\"; do \
L=$b/tmux/$K/$N.log; rm -f \"$L\" \"$L.pid\" \"$L.trim\" \"$L.trim.new\"; done; exit 0"
    );
    sh_command(&script, &[socket, name, &tmux_name(name)])
}

/// The parsed header line of [`setup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub created: bool,
    pub start: u64,
    pub trim: u64,
    pub size: u64,
    pub pane: String,
    pub window: String,
    pub pane_pid: u32,
    pub writer_pid: u32,
    pub incarnation: String,
    pub version: String,
}

/// Parses `SSHSESS-OK ...`; `Err(text)` for `SSHSESS-ERR` or anything malformed.
pub(crate) fn parse_header(line: &str) -> Result<Header, String> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some(HEADER_OK) => {}
        Some(HEADER_ERR) => return Err(words.collect::<Vec<_>>().join(" ")),
        _ => return Err(format!("unexpected output {line:?}")),
    }
    let f: Vec<&str> = words.collect();
    let bad = || format!("malformed header {line:?}");
    if f.len() < 9 {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
    Ok(Header {
        created: f[0] == "1",
        start: num(f[1])?,
        trim: num(f[2])?,
        size: num(f[3])?,
        pane: f[4].to_string(),
        window: f[5].to_string(),
        pane_pid: f[6].parse().map_err(|_| bad())?,
        writer_pid: f[7].parse().map_err(|_| bad())?,
        incarnation: f[8].to_string(),
        version: f.get(9).map(|v| v.replace('_', " ")).unwrap_or_default(),
    })
}

/// Whether `tmux -V` output names 3.2 or later (client flags `no-output`, `ignore-size`).
pub(crate) fn has_client_flags(version: &str) -> bool {
    let digits: String = version
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = digits.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (3, 2)
}

/// Keys for `send-keys -H`, one command per `chunk` bytes: hex keeps every byte exact
/// (tmux sends each as a literal key, no translation, no bracketed paste).
pub(crate) fn send_keys(pane: &str, data: &[u8], chunk: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(data.len() * 3 + (data.len() / chunk + 1) * 32);
    for part in data.chunks(chunk.max(1)) {
        out.push_str("send-keys -t ");
        out.push_str(pane);
        out.push_str(" -H");
        for &b in part {
            out.push(' ');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_skip_foreign_sessions() {
        assert_eq!(tmux_name("web.v2_a-b"), "ssh-session-web+v2_a-b");
        assert_eq!(
            our_name("ssh-session-web+v2_a-b").as_deref(),
            Some("web.v2_a-b")
        );
        assert_eq!(our_name("main"), None);
        assert_eq!(our_name("ssh-session-"), None);
    }

    #[test]
    fn header_parses_and_errors_carry_text() {
        let h = parse_header("SSHSESS-OK 1 0 0 0 %3 @2 4242 4243 $1:1700000000 tmux_3.3a").unwrap();
        assert!(h.created);
        assert_eq!((h.pane.as_str(), h.window.as_str()), ("%3", "@2"));
        assert_eq!((h.pane_pid, h.writer_pid), (4242, 4243));
        assert_eq!(h.version, "tmux 3.3a");
        assert_eq!(h.incarnation, "$1:1700000000");
        assert_eq!(
            parse_header("SSHSESS-ERR notmux tmux is not installed").unwrap_err(),
            "notmux tmux is not installed"
        );
        assert!(parse_header("bash: sh: not found").is_err());
        assert!(parse_header("SSHSESS-OK 1 x").is_err());
    }

    #[test]
    fn client_flags_need_3_2() {
        assert!(has_client_flags("tmux 3.3a"));
        assert!(has_client_flags("tmux 3.2"));
        assert!(has_client_flags("tmux next-3.5"));
        assert!(!has_client_flags("tmux 3.1c"));
        assert!(!has_client_flags("tmux 2.9"));
        assert!(!has_client_flags(""));
    }

    #[test]
    fn send_keys_is_hex_and_chunked() {
        let s = send_keys("%1", b"a\n\xff", 2);
        assert_eq!(s, "send-keys -t %1 -H 61 0a\nsend-keys -t %1 -H ff\n");
    }

    #[test]
    fn scripts_parse_in_sh_and_hold_no_backslash() {
        let args = SetupArgs {
            socket: "s",
            name: "n.1",
            cols: 80,
            rows: 24,
            term: "xterm",
            resume_from: Some(7),
            echo: false,
            cap: 1 << 26,
            command: None,
        };
        for cmd in [
            setup(&args),
            control("s", "n", true),
            list("s"),
            kill("s", "n"),
        ] {
            let script = cmd.strip_prefix("sh -c '").unwrap();
            let script = &script[..script.find("' ssh-session").unwrap()];
            let script = script.replace("'\\''", "'");
            assert!(!script.contains('\\'), "{script}");
            let ok = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .status()
                .unwrap();
            assert!(ok.success(), "sh -n rejected: {script}");
        }
        let ok = std::process::Command::new("sh")
            .args(["-n", "-c", WRITER])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}
