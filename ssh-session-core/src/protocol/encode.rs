//! What we type into the shell: the one-time prime script and the per-command line.

use super::{Nonce, TOKEN_PREFIX};

/// Which shell answered the prime (from its ready marker): how to quote for it, and what
/// its command lines need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShellFlavor {
    /// bash: `$'\ooo'` quoting is available, no fork needed for control bytes.
    Extended,
    /// zsh: quoted as bash; its lines start by switching tracing off (see `command_line`).
    Zsh,
    /// A plain POSIX shell (dash, ash): control bytes go through `printf`.
    Posix,
}

/// The longest physical line we type. Linux's canonical-mode line discipline silently drops
/// input past 4095 bytes per line, so longer lines are split with backslash-newline
/// continuations, which the shell removes before it sees the word.
const MAX_PHYSICAL_LINE: usize = 1024;

/// State to put back into a fresh shell after the previous one died.
#[derive(Clone, Debug, Default)]
pub(crate) struct Restore {
    /// The working directory the last command left.
    pub cwd: Option<String>,
    /// Re-source the exported variables saved by the previous shell's trailer.
    pub env: bool,
}

/// How the shell's output reaches us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// A terminal: stdout and stderr are already one stream.
    Pty,
    /// Plain pipes: stderr is redirected into stdout (`exec 2>&1`) so that both arrive in
    /// the order they were written, with nothing trailing a command's marker.
    Pipes,
}

/// Quotes `s` as a single POSIX shell word (single quotes, `'` as `'\''`). Only for text
/// without control bytes; [`command_line`] handles the general case.
pub(crate) fn single_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// How every command line ends (and bash's prompt hook, for a line abandoned by Ctrl-C):
/// the exit code and the shell's flags are saved and tracing is switched off before any
/// of our plumbing runs, all in one group whose stderr is /dev/null (where the trace of
/// the group itself goes, and any error of the trailer). One redirection per command:
/// each costs ~14 µs in bash (measured).
const TRAILER: &str = "{ __ss_rc=$?;__ss_o=$-;\\set +xv;__ss_t;} 2>/dev/null";

/// Prints the ready marker `TOKEN R <pid> ; <flavor> ; <cwd> TOKEN E`: at the end of the
/// prime, and when interactive mode ends (`__ss_off`).
const READY: &str = "printf '%s%sR%s;%s;%s%s%sE\\n' \"$__ss_a\" \"$__ss_b\" \"$$\" \"${BASH_VERSION:+x}${ZSH_VERSION:+z}\" \"$PWD\" \"$__ss_a\" \"$__ss_b\"";

/// Variables a restored snapshot must not override: they describe the new connection.
const CONNECTION_VARIABLES: &str = "SSH_CLIENT SSH_CONNECTION SSH_TTY SSH_AUTH_SOCK \
    SSH_ORIGINAL_COMMAND SSH_USER_AUTH SHLVL PWD OLDPWD TERM TMUX TMUX_PANE";

/// The prime: one write, one round trip. Line 1 configures a POSIX shell and prints the
/// ready marker `TOKEN R <pid> ; <flavor> ; <cwd> TOKEN E` (closed by the token like the done
/// marker, since a cwd may hold a newline); line 2 prints the probe marker `TOKEN P`, which
/// every shell (fish and csh too) can run. Seeing P without R therefore proves the login
/// shell is not POSIX, without waiting for a timeout.
///
/// Both lines start with a space: with `HISTCONTROL=ignorespace` our plumbing stays out of
/// the shell's history.
pub(crate) fn prime_script(
    nonce: &Nonce,
    env_file_id: &str,
    restore: &Restore,
    output: Output,
) -> String {
    let n = nonce.as_str();
    let mut s = String::with_capacity(2048);
    s.push_str(&format!("__ss_a='{TOKEN_PREFIX}';__ss_b='{n}';"));
    // The person's own prompt, for interactive mode (`__ss_on`); kept from the first prime
    // when the same shell is primed again.
    s.push_str("__ss_up=${__ss_up-${PS1-}};");
    // The snapshot is rewritten after every command: on a disk filesystem `export -p`'s
    // many small writes cost 0.2-0.5 ms, on tmpfs 0.03 ms (measured). Prefer the per-user
    // runtime dir, then /dev/shm, then $TMPDIR; the same choice is made again after a restart.
    s.push_str("for __ss_d in \"${XDG_RUNTIME_DIR:-}\" /dev/shm \"${TMPDIR:-/tmp}\";do ");
    s.push_str("[ -n \"$__ss_d\" ]&&[ -d \"$__ss_d\" ]&&[ -w \"$__ss_d\" ]&&break;done;");
    s.push_str(&format!(
        "__ss_f=\"$__ss_d/.ssh-session-{env_file_id}.env\";"
    ));
    s.push_str("PS1='';PS2='';PS3='';PS4='+ ';unset PROMPT_COMMAND 2>/dev/null;");
    s.push_str("HISTCONTROL=\"ignorespace${HISTCONTROL:+:$HISTCONTROL}\";__ss_rc=0;__ss_id=;__ss_p=;__ss_ps=;__ss_x=;__ss_o=;__ss_l=D;");
    // Each command line ends with TRAILER, so `set -x`/`set -v` never trace our plumbing.
    // `__ss_k` turns the flags it saved into the prefix that switches them back on inside
    // the next command's eval.
    s.push_str("__ss_k(){ __ss_x=;case $__ss_o in *x*v*|*v*x*)__ss_x='\\set -xv;';;*x*)__ss_x='\\set -x;';;*v*)__ss_x='\\set -v;';;esac;};");
    // bash: no readline (it would echo, complete on TAB and redraw), no `!` expansion.
    // When Ctrl-C kills a foreground job, interactive shells abandon the rest of the line,
    // trailer included; bash's and zsh's prompt hooks then print the marker instead.
    // `__ss_e` re-asserts, after every command, what a command may have changed and we
    // rely on: no line editor (`set -o emacs` would eat TABs and add bracketed paste), our
    // prompt hook, no PS0; and it discards complete lines typed for a command that ended
    // without reading them, which would otherwise run as the next command.
    s.push_str("if [ -n \"${BASH_VERSION:-}\" ];then PS0='';");
    // The prompt hook is set by each command line and removed by its trailer: running it
    // at every prompt cost ~20 µs per command (measured), and it is only needed for a line
    // that Ctrl-C abandoned.
    s.push_str(&format!(
        "__ss_h={};__ss_r(){{ history -s -- \"$__ss_c\";return $__ss_rc;}};",
        single_quote(TRAILER)
    ));
    // A line editor switched on inside `eval` takes over bash's input at once: switching it
    // off again only works from a line the editor itself read. The marker then says `L`
    // instead of `D`, and the session types such a line first (`LinePrefix::editor_off`).
    s.push_str("__ss_e(){ PS0='';if \\builtin shopt -oq emacs||\\builtin shopt -oq vi;then __ss_l=L;\\set +o emacs +o vi;fi;unset PROMPT_COMMAND;");
    s.push_str("while \\read -t 0;do IFS= \\read -r -t 1 __ss_j||break;done;};");
    // Plain POSIX shells (dash) have no prompt hook but expand variables in PS1: a
    // per-command INT trap stores the marker where the next prompt prints it, then
    // re-raises SIGINT so the line is abandoned exactly as in a terminal. dash cannot tell
    // whether input is waiting without blocking: leftover complete lines are not discarded.
    s.push_str("else __ss_r(){ return $__ss_rc;};__ss_e(){ :;};__ss_nl=$(printf '\\n_');__ss_nl=${__ss_nl%_};");
    s.push_str("__ss_ps='${__ss_p}';__ss_i(){ { __ss_rc=$?;__ss_o=$-;\\set +xv;} 2>/dev/null;__ss_k;__ss_p=\"$(__ss_m)$__ss_nl\";__ss_id=;");
    s.push_str("trap - INT;kill -INT $$;};");
    s.push_str("fi;");
    // zsh: no line editor, and no `%` + padding when output lacks a final newline. Its
    // array syntax is hidden in eval: dash would reject the whole line at parse time.
    s.push_str("if [ -n \"${ZSH_VERSION:-}\" ];then unsetopt zle prompt_cr prompt_sp 2>/dev/null;");
    s.push_str(&format!(
        "PROMPT='';RPROMPT='';__ss_ps=;__ss_pc(){{ {TRAILER};}};"
    ));
    s.push_str("__ss_e(){ unsetopt zle;\\builtin eval 'precmd_functions=(__ss_pc)';while \\read -t 0 -r __ss_j;do :;done;};");
    s.push_str("eval 'precmd_functions=(__ss_pc)';fi;");
    match output {
        Output::Pty => s.push_str("stty -echo 2>/dev/null;"),
        Output::Pipes => s.push_str("exec 2>&1;"),
    }
    // The env file holds secrets as often as not: create it private before anything writes it.
    s.push_str("(umask 077;: >>\"$__ss_f\") 2>/dev/null;");
    // Marker: save exported variables (restored if this shell dies), then print the done
    // line. In this order the snapshot is complete whenever the client knows the command
    // ended: a link cut right after a command never leaves a half-written snapshot behind.
    // `>|` overwrites even under `set -o noclobber` (which a user's .bashrc may set).
    s.push_str("__ss_m(){ export -p >|\"$__ss_f\";");
    s.push_str("printf '%s%s%s%s;%s;%s%s%sE\\n' \"$__ss_a\" \"$__ss_b\" \"$__ss_l\" \"$__ss_id\" \"$__ss_rc\" \"$PWD\" \"$__ss_a\" \"$__ss_b\";__ss_l=D;};");
    // Trailer: once per command id (inline or from the prompt hook, whichever runs first);
    // re-blanks prompts a command may have set (venv's activate sets PS1); keeps `$?`.
    s.push_str("__ss_t(){ if [ -n \"$__ss_id\" ];then PS1=$__ss_ps;PS2='';__ss_e;__ss_k;__ss_m;__ss_id=;fi;return $__ss_rc;};");
    s.push_str("PS1=$__ss_ps;");
    if let Some(cwd) = &restore.cwd {
        s.push_str(&format!("cd -- {} 2>/dev/null;", single_quote(cwd)));
    }
    if restore.env {
        // Variables that describe *this* connection must keep their new values: they are
        // saved, the snapshot is sourced, and they are put back (or unset if this
        // connection has none). All in the shell itself: filtering the file with grep
        // forked two processes and cost 2-3 ms of every restore (measured).
        s.push_str(r#"if [ -s "$__ss_f" ];then for __ss_v in "#);
        s.push_str(CONNECTION_VARIABLES);
        s.push_str(r#";do eval "__ss_s_$__ss_v=\${$__ss_v+x};__ss_k_$__ss_v=\${$__ss_v-}";done;"#);
        s.push_str(r#". "$__ss_f" 2>/dev/null;for __ss_v in "#);
        s.push_str(CONNECTION_VARIABLES);
        s.push_str(r#";do eval "if [ -n \"\$__ss_s_$__ss_v\" ];then $__ss_v=\$__ss_k_$__ss_v;export $__ss_v;else unset $__ss_v;fi;unset __ss_s_$__ss_v __ss_k_$__ss_v" 2>/dev/null;done;fi;"#);
    }
    s.push_str(READY);
    // One complete `eval` statement in every shell's grammar: fish would otherwise read the
    // POSIX `if ...;then` as an open block and wait for its `end` forever. bash's line
    // editor must be switched off outside that eval: switched off inside it, bash
    // re-enters readline (stale prompt, bracketed paste) after a Ctrl-C.
    // bash's readline goes off in a short line of its own: readline reads a line a byte at a
    // time with redisplay, ~5 ms for the 2 KB prime (measured), ~0.5 ms once it is off.
    format!(
        " [ -n \"$BASH_VERSION\" ] && set +o emacs +o vi +H\n eval {}\n{}",
        single_quote(&s),
        probe_line(nonce)
    )
}

/// The probe line: prints `TOKEN P` in every shell, fish and csh too. Split by quotes, so
/// that its echo never reads as the marker.
pub(crate) fn probe_line(nonce: &Nonce) -> String {
    format!(" echo '{TOKEN_PREFIX}''{}''P'\n", nonce.as_str())
}

/// Interactive mode in bash, for a person attached to the shell: `__ss_on` gives back the
/// line editor, echo, history and the person's prompt, and installs hooks that print the
/// marks of every command line read from then on (the OSC 133 convention's prompt, command
/// start and finished, each carrying the nonce): `B` at the end of the prompt, `C` from
/// `PS0` as the line starts, then from `PROMPT_COMMAND`, only after a line ran (`PS0` sets
/// the flag; an empty line or Ctrl-C at the prompt runs nothing), `H` with the history
/// entries of the lines that ran (`HISTCMD` now against at the previous prompt: several for
/// a pasted block, where each line starts on its own and one `$?` ends them all;
/// `HISTCONTROL`/`HISTIGNORE` are cleared while on, so every line is recorded as typed)
/// and `F` with `$?` and `$PWD`. The text comes at the end because in `PS0` it
/// would take a command substitution, a fork per command: measured, 1.8 ms of the 2.3 ms a
/// program's command took with a person attached; until then the line on the screen
/// names a running command. `__ss_off`, read by the line editor itself (only such a line
/// can switch it off), puts the agent path back and answers with the ready marker; it
/// removes its own history entry.
const BASH_INTERACTIVE: &str = concat!(
    r#"__ss_on(){ __ss_hx=${HISTCONTROL-};__ss_hi=${HISTIGNORE-};HISTCONTROL=;HISTIGNORE=;__ss_hr=;__ss_hp=;"#,
    r#"PS1=${__ss_up:-'\u@\h:\w\$ '}'\[${__ss_a}${__ss_b}B${__ss_a}${__ss_b}E\]';"#,
    r#"PS0='${__ss_a}${__ss_b}C${__ss_hr:=1}${__ss_a}${__ss_b}E';PROMPT_COMMAND=__ss_hc;"#,
    r#"stty echo 2>/dev/null;\set -o emacs;\builtin bind 'set enable-bracketed-paste on' 2>/dev/null;"#,
    r#"printf '%s%sI%s%s%sE' "$__ss_a" "$__ss_b" "$PWD" "$__ss_a" "$__ss_b";};"#,
    r#"__ss_hc(){ __ss_rc=$?;if [ -n "$__ss_hr" ];then __ss_hr=;export -p >|"$__ss_f";"#,
    r#"[ -n "$__ss_hp" ]&&__ss_n=$((HISTCMD-__ss_hp))||__ss_n=1;"#,
    r#"[ "$__ss_n" -ge 1 ] 2>/dev/null&&[ "$__ss_n" -le 500 ]||__ss_n=1;"#,
    r#"printf '%s%sH' "$__ss_a" "$__ss_b";HISTTIMEFORMAT= \builtin history "$__ss_n";"#,
    r#"printf '%s%sE%s%sF%s;%s%s%sE' "$__ss_a" "$__ss_b" "$__ss_a" "$__ss_b" "$__ss_rc" "$PWD" "$__ss_a" "$__ss_b";fi;"#,
    r#"__ss_hp=$HISTCMD;};"#,
    r#"__ss_off(){ \builtin history -d -1 2>/dev/null;HISTCONTROL=$__ss_hx;HISTIGNORE=$__ss_hi;"#,
    r#"PS0='';unset PROMPT_COMMAND;PS1=$__ss_ps;__ss_hr=;\set +o emacs +o vi;stty -echo 2>/dev/null;__ss_rdy;};"#,
);

/// Interactive mode in zsh: as in bash, with `preexec` (whose `$1` is the line as typed) and
/// `precmd` as the hooks, and `zshaddhistory` keeping `__ss_off` out of the history. Its
/// array syntax is hidden in eval, like the prime's.
const ZSH_INTERACTIVE: &str = concat!(
    r#"__ss_on(){ __ss_hr=;setopt prompt_subst;PROMPT=${__ss_up:-'%n@%m:%~%# '}'%{${__ss_a}${__ss_b}B${__ss_a}${__ss_b}E%}';RPROMPT='';"#,
    r#"\builtin eval 'preexec_functions=(__ss_pre);precmd_functions=(__ss_post);zshaddhistory_functions=(__ss_za)';"#,
    r#"stty echo 2>/dev/null;setopt zle;printf '%s%sI%s%s%sE' "$__ss_a" "$__ss_b" "$PWD" "$__ss_a" "$__ss_b";};"#,
    r#"__ss_pre(){ __ss_hr=1;printf '%s%sC1%s%s%sE' "$__ss_a" "$__ss_b" "${1[1,65536]}" "$__ss_a" "$__ss_b";};"#,
    r#"__ss_post(){ __ss_rc=$?;if [ -n "$__ss_hr" ];then __ss_hr=;export -p >|"$__ss_f";"#,
    r#"printf '%s%sF%s;%s%s%sE' "$__ss_a" "$__ss_b" "$__ss_rc" "$PWD" "$__ss_a" "$__ss_b";fi;};"#,
    r#"__ss_za(){ case $1 in ' __ss_off'*)return 1;;esac;};"#,
    r#"__ss_off(){ PROMPT=$__ss_ps;unsetopt zle;\builtin eval 'preexec_functions=();precmd_functions=(__ss_pc)';"#,
    r#"__ss_hr=;stty -echo 2>/dev/null;__ss_rdy;};"#,
);

/// Interactive mode in a plain POSIX shell (dash): echo and a prompt that marks its end,
/// but no hooks, so a person's commands cannot be tracked (the session says so).
const POSIX_INTERACTIVE: &str = concat!(
    r#"__ss_on(){ stty echo 2>/dev/null;PS1=${__ss_up:-'$ '}'${__ss_a}${__ss_b}B${__ss_a}${__ss_b}E';"#,
    r#"printf '%s%sI%s%s%sE' "$__ss_a" "$__ss_b" "$PWD" "$__ss_a" "$__ss_b";};"#,
    r#"__ss_off(){ PS1=$__ss_ps;stty -echo 2>/dev/null;__ss_rdy;};"#,
);

/// The line that switches a primed shell (at rest, on the agent path) to interactive mode:
/// it defines that mode's functions for this shell, then calls `__ss_on`. Typed only when
/// someone attaches, not in the prime: with them, or with ~150 bytes more, the prime of a
/// restarted zsh lost input (its line editor was still reading when the prime arrived;
/// measured: the first command then failed with a parse error, with a 2.9 KB prime but
/// never with 2.7 KB), and a session nobody attaches to never needs them.
pub(crate) fn interactive_on_line(flavor: ShellFlavor) -> String {
    let functions = match flavor {
        ShellFlavor::Extended => BASH_INTERACTIVE,
        ShellFlavor::Zsh => ZSH_INTERACTIVE,
        ShellFlavor::Posix => POSIX_INTERACTIVE,
    };
    format!(
        " eval {};__ss_on\n",
        single_quote(&format!("__ss_rdy(){{ {READY};}};{functions}"))
    )
}

/// The keys that switch an interactive shell at its prompt back to the agent path: the end
/// of the line and the kill-line key first (a partial line a person left goes to the kill
/// ring, where Ctrl-Y brings it back), then `__ss_off`.
pub(crate) const INTERACTIVE_OFF_KEYS: &str = "\x05\x15 __ss_off\r";

/// The keys that type `command` at an interactive prompt, as a person pasting it would:
/// inside bracketed paste, so that a Tab is not completion and a newline does not run half
/// of it, then Enter. `None` if it holds bytes that would end the paste early or that no
/// terminal can carry (ESC, NUL, other control bytes than Tab and newline).
pub(crate) fn paste_keys(command: &str) -> Option<String> {
    let command = command.trim_end_matches(['\n', '\r']);
    if command
        .chars()
        .any(|c| (c < ' ' && c != '\t' && c != '\n') || c == '\x7f')
    {
        return None;
    }
    Some(format!("\x1b[200~{command}\x1b[201~\r"))
}

/// What to put before a command line, learned from how the previous command went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LinePrefix {
    /// Input was typed for the previous command (`send_input`, a Ctrl-C the terminal did
    /// not take as one): a partial line of it may still sit in the terminal's line buffer,
    /// where it would become the start of this line. Ctrl-U (the terminal's kill-line key)
    /// erases it first; on an empty buffer it does nothing, echo included.
    pub discard_partial: bool,
    /// The terminal echoed the previous line back (a command ran `stty sane`, `reset`):
    /// switch echo off again.
    pub echo_off: bool,
    /// bash's line editor came back on (its marker said `L`): a first short line, which
    /// the editor reads, switches it off; the command line after it is read without it.
    pub editor_off: bool,
}

/// The line that runs `command` as command number `id` in a primed shell, or `None` if it
/// holds a NUL byte (no shell can receive one). The command travels as one quoted word, so
/// the shell reads it completely before running it; `eval` then runs it at top level, where
/// `cd`, `export`, functions and aliases persist exactly as if typed. The done marker
/// carries `id`, so a marker from an earlier command can never complete this one.
///
/// `\builtin eval` (`\eval` in plain POSIX shells, where `eval` cannot be a function) is
/// immune to an alias or a function named `eval`. `$__ss_x` turns `set -x`/`set -v` back
/// on for the command alone if an earlier command set them (see `prime_script`).
pub(crate) fn command_line(
    command: &str,
    flavor: ShellFlavor,
    id: u64,
    prefix: LinePrefix,
) -> Option<String> {
    if command.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(command.len() + 128);
    if prefix.discard_partial {
        out.push('\x15');
    }
    if prefix.editor_off {
        out.push_str(EDITOR_OFF_LINE);
    }
    out.push(' ');
    if flavor == ShellFlavor::Zsh {
        // Tracing off first, its own trace discarded: zsh turns `set -x` back on after a
        // prompt hook switched it off, when Ctrl-C ended a builtin (seen with `read x`).
        out.push_str("{ \\set +xv;} 2>/dev/null;");
    }
    out.push_str(&format!("__ss_id={id};"));
    if flavor == ShellFlavor::Extended {
        out.push_str("PROMPT_COMMAND=$__ss_h;");
    }
    if prefix.echo_off {
        out.push_str("stty -echo 2>/dev/null;");
    }
    if flavor == ShellFlavor::Posix {
        out.push_str("__ss_p=;\\trap __ss_i INT;");
    }
    out.push_str("__ss_c=");
    push_quoted_word(&mut out, command, flavor);
    out.push_str(match flavor {
        ShellFlavor::Extended | ShellFlavor::Zsh => ";__ss_r;\\builtin eval \"$__ss_x$__ss_c\";",
        ShellFlavor::Posix => ";__ss_r;\\eval \"$__ss_x$__ss_c\";",
    });
    out.push_str(TRAILER);
    if flavor == ShellFlavor::Posix {
        out.push_str(";\\trap - INT");
    }
    out.push('\n');
    Some(out)
}

/// The line bash's line editor reads to switch itself off (see `LinePrefix::editor_off`).
/// Tracing goes off too: the command that switched the editor on may still be running its
/// `eval` (bash reads on inside it), with the command's `set -x`/`set -v` in effect.
pub(crate) const EDITOR_OFF_LINE: &str = " \\set +xv +o emacs +o vi\n";

/// What the terminal echoes when `line` is typed with echo on: the line itself, without
/// its Ctrl-U.
pub(crate) fn echo_of(line: &str) -> &[u8] {
    line.strip_prefix('\x15').unwrap_or(line).as_bytes()
}

/// Appends `text` as one shell word that survives a canonical-mode TTY: no control byte is
/// typed (they would be line-editing keys: ^C, ^U, ^W, ^D, CR→NL) and no physical line is long.
fn push_quoted_word(out: &mut String, text: &str, flavor: ShellFlavor) {
    let mut line_len = 0usize;
    out.push('\'');
    for c in text.chars() {
        if line_len >= MAX_PHYSICAL_LINE && c != '\n' {
            // Close the quote, continue the word on the next physical line, reopen.
            out.push_str("'\\\n'");
            line_len = 0;
        }
        match c {
            '\'' => {
                out.push_str("'\\''");
                line_len += 4;
            }
            '\n' => {
                out.push('\n');
                line_len = 0;
            }
            c if (c as u32) < 0x20 && c != '\t' || c == '\x7f' => {
                let octal = format!("{:03o}", c as u32);
                match flavor {
                    ShellFlavor::Extended | ShellFlavor::Zsh => {
                        out.push_str(&format!("'$'\\{octal}''"))
                    }
                    ShellFlavor::Posix => out.push_str(&format!("'\"$(printf '\\{octal}')\"'")),
                }
                line_len += 16;
            }
            c => {
                out.push(c);
                line_len += c.len_utf8();
            }
        }
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_quote_escapes_quotes() {
        assert_eq!(single_quote("it's"), "'it'\\''s'");
        assert_eq!(single_quote(""), "''");
    }

    #[test]
    fn command_line_is_one_word_and_runs_trailer() {
        let none = LinePrefix::default();
        let line = command_line("echo 'hi'", ShellFlavor::Extended, 7, none).unwrap();
        assert_eq!(
            line,
            " __ss_id=7;PROMPT_COMMAND=$__ss_h;__ss_c='echo '\\''hi'\\''';__ss_r;\
             \\builtin eval \"$__ss_x$__ss_c\";{ __ss_rc=$?;__ss_o=$-;\\set +xv;__ss_t;} 2>/dev/null\n"
        );
        let posix = command_line("true", ShellFlavor::Posix, 8, none).unwrap();
        assert!(
            posix.starts_with(" __ss_id=8;__ss_p=;")
                && posix.contains(";__ss_r;\\eval \"$__ss_x$__ss_c\";"),
            "{posix}"
        );
        let zsh = command_line("true", ShellFlavor::Zsh, 9, none).unwrap();
        assert!(
            zsh.starts_with(" { \\set +xv;} 2>/dev/null;__ss_id=9;__ss_c="),
            "{zsh}"
        );
    }

    #[test]
    fn nul_is_refused() {
        assert!(command_line("a\0b", ShellFlavor::Posix, 1, LinePrefix::default()).is_none());
    }

    #[test]
    fn control_bytes_are_never_typed() {
        let none = LinePrefix::default();
        for flavor in [ShellFlavor::Extended, ShellFlavor::Posix] {
            let line = command_line("printf '\x03\r\x15\x7f'", flavor, 1, none).unwrap();
            let body = &line[..line.len() - 1];
            assert!(
                !body
                    .bytes()
                    .any(|b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f),
                "{line:?}"
            );
        }
        let line = command_line("\x03", ShellFlavor::Extended, 1, none).unwrap();
        assert!(line.contains("'$'\\003''"));
        let line = command_line("\x03", ShellFlavor::Posix, 1, none).unwrap();
        assert!(line.contains("\"$(printf '\\003')\""));
        // The one control byte typed on purpose: the kill-line key, first, when asked for.
        let prefix = LinePrefix {
            discard_partial: true,
            echo_off: true,
            editor_off: false,
        };
        let line = command_line("true", ShellFlavor::Extended, 1, prefix).unwrap();
        assert!(
            line.starts_with("\x15 __ss_id=1;PROMPT_COMMAND=$__ss_h;stty -echo 2>/dev/null;"),
            "{line:?}"
        );
        assert_eq!(echo_of(&line), &line.as_bytes()[1..]);
        let prefix = LinePrefix {
            editor_off: true,
            ..LinePrefix::default()
        };
        let line = command_line("true", ShellFlavor::Extended, 1, prefix).unwrap();
        assert!(
            line.starts_with(" \\set +xv +o emacs +o vi\n __ss_id=1;"),
            "{line:?}"
        );
    }

    #[test]
    fn long_lines_are_split_below_the_tty_limit() {
        let cmd = format!("echo {}", "é".repeat(5000));
        let line = command_line(&cmd, ShellFlavor::Extended, 1, LinePrefix::default()).unwrap();
        assert!(
            line.split('\n').all(|l| l.len() < 1100),
            "a line is too long"
        );
        assert!(line.contains("'\\\n'"));
    }

    #[test]
    fn prime_never_contains_the_token() {
        let nonce = Nonce::fixed("0123456789abcdef0123456789abcdef");
        let restore = Restore {
            cwd: Some("/tmp/it's here".into()),
            env: true,
        };
        let script = prime_script(&nonce, "abc", &restore, Output::Pty);
        let token = String::from_utf8(nonce.token()).unwrap();
        assert!(
            !script.contains(&token),
            "PTY echo of the prime would fake a marker"
        );
        assert!(script.starts_with(" [ -n \"$BASH_VERSION\" ] && set +o emacs"));
        assert!(
            script.contains("/tmp/it'\\''\\'\\'''\\''s here"),
            "{script}"
        );
        assert_eq!(
            script.matches('\n').count(),
            3,
            "readline off, ready line, probe line"
        );
        assert!(
            script.lines().all(|l| l.len() < 3000),
            "a line near the terminal's 4095-byte limit"
        );
        assert!(
            script.len() < 2800,
            "a 2.9 KB prime lost zsh's first command after a restart (measured): {} bytes",
            script.len()
        );
    }

    #[test]
    fn interactive_lines_fit_in_one_terminal_line() {
        for flavor in [ShellFlavor::Extended, ShellFlavor::Zsh, ShellFlavor::Posix] {
            let line = interactive_on_line(flavor);
            assert!(line.starts_with(" eval '") && line.ends_with(";__ss_on\n"));
            assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
            assert!(line.len() < 3000, "{flavor:?}: {} bytes", line.len());
        }
    }
}
