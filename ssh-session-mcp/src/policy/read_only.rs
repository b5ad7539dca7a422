//! The read-only check: is a command line only inspection?
//!
//! Conservative by construction: anything this small lexer cannot see through exactly is
//! refused (backslashes, `$'…'`, `${…}`, substitutions, comments, subshells, unbalanced
//! quotes), so what it accepts is split into simple commands the way the shell splits
//! them. Each simple command must start with a program from the list, its words are
//! checked after quote removal, and subcommands must come first. Still a guard-rail, not a
//! sandbox: a program can read configuration that makes it run others.

/// Programs that only inspect. Deliberately absent: `sed`, `awk`, `xargs`, `command`,
/// `ip`, `mount`, shells and interpreters — each can write or run anything.
const PROGRAMS: &[&str] = &[
    "cat",
    "head",
    "tail",
    "less",
    "more",
    "ls",
    "ll",
    "tree",
    "stat",
    "file",
    "wc",
    "grep",
    "egrep",
    "fgrep",
    "rg",
    "sort",
    "uniq",
    "cut",
    "tr",
    "column",
    "diff",
    "cmp",
    "md5sum",
    "sha256sum",
    "pwd",
    "echo",
    "printf",
    "true",
    "false",
    "test",
    "[",
    "date",
    "uptime",
    "uname",
    "hostname",
    "whoami",
    "id",
    "groups",
    "env",
    "printenv",
    "which",
    "type",
    "ps",
    "pgrep",
    "top",
    "free",
    "df",
    "du",
    "lsblk",
    "ss",
    "netstat",
    "journalctl",
    "dmesg",
    "find",
    "realpath",
    "readlink",
    "basename",
    "dirname",
    "git",
    "systemctl",
    "docker",
    "kubectl",
    "cd",
];

/// Checks `command`; the error says what was refused.
pub(super) fn check(command: &str, extra_programs: &[String]) -> Result<(), String> {
    for words in split(command)? {
        let Some((program, args)) = words.split_first() else {
            continue;
        };
        if program.contains('=') {
            return Err(format!("{program:?}: variable assignments are not allowed"));
        }
        let name = program.rsplit('/').next().unwrap_or(program);
        let listed = PROGRAMS.contains(&name) || extra_programs.iter().any(|p| p == name);
        if !listed {
            return Err(format!("{name:?} is not on the read-only list"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if !arguments_allowed(name, &args) {
            return Err(format!(
                "`{name} {}` may write or run programs",
                args.join(" ")
            ));
        }
    }
    Ok(())
}

/// Splits into simple commands (on `|`, `||`, `&&`, `&`, `;`, newline), each a list of
/// words with quotes removed, and checks the redirections on the way.
fn split(command: &str) -> Result<Vec<Vec<String>>, String> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    // Whether `word` has started (a quoted empty string is a word too).
    let mut in_word = false;
    let mut chars = command.chars().peekable();
    let mut quote: Option<char> = None;
    let end_word = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            match c {
                _ if c == q => quote = None,
                '$' | '`' if q == '"' => check_dollar(c, chars.peek().copied())?,
                _ => {}
            }
            if quote.is_some() {
                word.push(c);
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                in_word = true;
            }
            '\\' => return Err("backslashes are not allowed".into()),
            '`' | '(' | ')' | '{' | '}' | '<' => {
                return Err(format!(
                    "{c:?} (substitutions, subshells, input redirection) is not allowed"
                ))
            }
            '#' if !in_word => return Err("comments are not allowed".into()),
            '$' => {
                check_dollar(c, chars.peek().copied())?;
                word.push(c);
                in_word = true;
            }
            ' ' | '\t' => end_word(&mut word, &mut in_word, &mut words),
            '>' => {
                // The word so far is the descriptor (`2`, `&` from `&>`) and the target
                // follows, glued (`>/dev/null`, `>&1`) or as the next word.
                let descriptor = std::mem::take(&mut word);
                in_word = false;
                if !(descriptor.is_empty()
                    || descriptor == "&"
                    || descriptor.chars().all(|d| d.is_ascii_digit()))
                {
                    return Err(format!(
                        "{descriptor}> is not a redirection this check understands"
                    ));
                }
                if chars.peek() == Some(&'>') {
                    chars.next();
                }
                let mut target = String::new();
                while chars.peek().is_some_and(|t| *t == ' ' || *t == '\t') {
                    chars.next();
                }
                while let Some(&t) = chars.peek() {
                    if t.is_whitespace()
                        || matches!(t, ';' | '|' | '<' | '>')
                        || (t == '&' && !target.is_empty())
                    {
                        break;
                    }
                    target.push(t);
                    chars.next();
                }
                let fd_dup = target.strip_prefix('&').is_some_and(|fd| {
                    fd == "-" || (!fd.is_empty() && fd.chars().all(|d| d.is_ascii_digit()))
                });
                if !(fd_dup || target == "/dev/null") {
                    return Err(format!("output redirection to {target:?} is not allowed (only /dev/null and descriptor duplication)"));
                }
            }
            '&' if word.is_empty() && chars.peek() == Some(&'>') => {
                word.push('&');
                in_word = true;
            }
            '|' | ';' | '&' | '\n' => {
                end_word(&mut word, &mut in_word, &mut words);
                if matches!(c, '|' | '&') && chars.peek() == Some(&c) {
                    chars.next();
                }
                commands.push(std::mem::take(&mut words));
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("an unbalanced quote".into());
    }
    end_word(&mut word, &mut in_word, &mut words);
    commands.push(words);
    Ok(commands)
}

/// `$NAME`, `$1`, `$?` expand harmlessly; `$(…)`, `${…}` (which can hide `${x@P}`
/// prompt expansion) and `$'…'` (its own escapes) are refused, as are backquotes.
fn check_dollar(c: char, next: Option<char>) -> Result<(), String> {
    let plain = c == '$'
        && next.is_some_and(|n| {
            n.is_ascii_alphanumeric() || matches!(n, '_' | '?' | '#' | '@' | '*' | '$' | '!' | '-')
        });
    if plain {
        Ok(())
    } else {
        Err("substitutions ($(…), ${…}, $'…', backquotes) are not allowed".into())
    }
}

/// Short options may be clustered (`-uo FILE`): any cluster holding one of `letters`.
fn short(args: &[&str], letters: &str) -> bool {
    args.iter().any(|a| {
        a.starts_with('-') && !a.starts_with("--") && a[1..].chars().any(|c| letters.contains(c))
    })
}

/// Long options may be abbreviated (`--out=F` for `--output`): any unambiguous-or-not
/// prefix of one of `names` counts.
fn long(args: &[&str], names: &[&str]) -> bool {
    args.iter().any(|a| {
        a.strip_prefix("--").is_some_and(|opt| {
            let opt = opt.split('=').next().unwrap_or(opt);
            !opt.is_empty() && names.iter().any(|n| n.starts_with(opt))
        })
    })
}

/// Whether `args` keep `program` read-only. Programs with writing subcommands must have
/// an allowed subcommand first (an option there could take the next word as its value).
fn arguments_allowed(program: &str, args: &[&str]) -> bool {
    let first = args.first().copied();
    match program {
        "git" => {
            matches!(
                first,
                Some(
                    "status"
                        | "log"
                        | "diff"
                        | "show"
                        | "blame"
                        | "rev-parse"
                        | "ls-files"
                        | "describe"
                )
            ) && !long(
                args,
                &[
                    "output",
                    "ext-diff",
                    "textconv",
                    "exec-path",
                    "upload-pack",
                    "config-env",
                ],
            ) && !args.contains(&"-c")
        }
        "systemctl" => matches!(
            first,
            Some(
                "status"
                    | "show"
                    | "cat"
                    | "list-units"
                    | "list-unit-files"
                    | "list-timers"
                    | "is-active"
                    | "is-enabled"
                    | "is-failed"
            )
        ),
        "docker" => matches!(
            first,
            Some("ps" | "logs" | "inspect" | "images" | "stats" | "version" | "info")
        ),
        "kubectl" => matches!(first, Some("get" | "describe" | "logs" | "top" | "version")),
        "find" => !args.iter().any(|a| {
            *a == "-delete"
                || a.starts_with("-exec")
                || a.starts_with("-ok")
                || a.starts_with("-fprint")
                || *a == "-fls"
        }),
        "sort" => !short(args, "o") && !long(args, &["output", "compress-program"]),
        "less" => !short(args, "oO") && !long(args, &["log-file", "LOG-FILE"]),
        "tree" => !short(args, "o"),
        "rg" => !long(args, &["pre"]),
        "file" => !short(args, "C") && !long(args, &["compile"]),
        "uniq" => args.iter().filter(|a| !a.starts_with('-')).count() <= 1,
        "ss" => !short(args, "K") && !long(args, &["kill"]),
        "journalctl" => !long(
            args,
            &[
                "vacuum-size",
                "vacuum-time",
                "vacuum-files",
                "rotate",
                "flush",
                "sync",
                "relinquish-var",
                "smart-relinquish-var",
                "setup-keys",
                "update-catalog",
            ],
        ),
        "dmesg" => {
            !short(args, "cCDEn")
                && !long(
                    args,
                    &[
                        "clear",
                        "read-clear",
                        "console-off",
                        "console-on",
                        "console-level",
                    ],
                )
        }
        "date" => !short(args, "s") && !long(args, &["set"]),
        "hostname" => args.iter().all(|a| {
            matches!(
                *a,
                "-f" | "-i"
                    | "-I"
                    | "-s"
                    | "-d"
                    | "-A"
                    | "--fqdn"
                    | "--short"
                    | "--domain"
                    | "--all-fqdns"
                    | "--ip-address"
                    | "--all-ip-addresses"
            )
        }),
        "env" => args.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_shell() {
        assert_eq!(
            split("ps aux | grep 'a b' && echo \"x;y\"; ls -l").unwrap(),
            vec![
                vec!["ps", "aux"],
                vec!["grep", "a b"],
                vec!["echo", "x;y"],
                vec!["ls", "-l"]
            ]
        );
        assert_eq!(split("echo ''").unwrap(), vec![vec!["echo", ""]]);
        assert_eq!(split("ls 2>&1 >/dev/null").unwrap(), vec![vec!["ls"]]);
        assert_eq!(
            split("ls &> /dev/null & pwd").unwrap(),
            vec![vec!["ls"], vec!["pwd"]]
        );
    }

    #[test]
    fn inspection_passes() {
        for ok in [
            "ls -la /var/log",
            "ps aux | grep nginx | head -5",
            "cat /etc/os-release; uname -a",
            "journalctl -u nginx -n 50 2>&1",
            "grep -r 'a|b' /etc > /dev/null && echo found",
            "ls /nope &>/dev/null || echo missing",
            "git log --oneline | head",
            "systemctl status nginx",
            "/usr/bin/df -h",
            "find /var/log -name '*.gz'",
            "echo $HOME $? \"$USER\"",
            "grep '#include' main.c",
            "sort -u list.txt | uniq -c",
        ] {
            assert!(check(ok, &[]).is_ok(), "{ok}: {:?}", check(ok, &[]));
        }
        assert!(check("nginx -t", &["nginx".into()]).is_ok());
    }

    #[test]
    fn writes_and_escapes_are_refused() {
        for bad in [
            "rm -rf /tmp/x",
            "echo hi > /etc/motd",
            "cat a >> b",
            "ls; rm x",
            "ls && shutdown now",
            "echo $(rm x)",
            "echo `rm x`",
            "echo \"$(rm x)\"",
            "FOO=1 ls",
            "env rm x",
            "ls | xargs rm",
            "ls &> out.txt",
            // Found in review: each of these ran or wrote something in bash.
            "echo \\\"; touch /x; echo \\\"",
            "ls #'\nrm -rf /tmp/x\n#'",
            "echo $'\\'' ; rm -rf /tmp/x ; echo $'\\''",
            "echo ${x:=\\$\\(id\\)} ${x@P}",
            "cat f >&/tmp/x",
            "cat f >&1evil",
            "command rm -rf /tmp/x",
            "sed -n '1e id' f",
            "less -o /tmp/log f",
            "sort --compress-program=sh f",
            "sort --compress-prog=sh f",
            "sort --out=F x",
            "sort -uo F x",
            "tree -ao F",
            "find . '-delete'",
            "git -c core.pager=sh log",
            "git log --output=/tmp/x",
            "git --namespace log push",
            "git branch -D main",
            "docker -l info run x",
            "systemctl -p status stop nginx",
            "ip a a 10.9.9.9/32 dev lo",
            "ss -K dst 1.2.3.4",
            "find / -fprint0 /tmp/x",
            "rg --pre sh x",
            "uniq in out",
            "journalctl --vac=1s",
            "date -s 2020-01-01",
            "hostname evil",
            "(rm x)",
            "cat < /etc/shadow",
            "echo 'unbalanced",
        ] {
            assert!(check(bad, &[]).is_err(), "{bad} passed");
        }
    }
}
