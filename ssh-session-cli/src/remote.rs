//! The client side of `cp`, `forward` and `exec a,b,c`: parsing what was typed (pure,
//! unit-tested) and showing the daemon's answers.

use std::io::IsTerminal;
use std::time::Duration;

use crate::cli::Global;
use crate::client::Client;
use crate::commands::{print_json, write_out};
use crate::error::{code, kind_code, CliError};
use crate::output;
use crate::protocol::{decode, CopySpec, Direction, Request, Response, TunnelView};
use crate::runtime::{absolute, Paths};

/// `NAME:PATH` → `Some((NAME, PATH))` when NAME is a valid session name, as `scp` reads
/// its arguments: anything with a `/` before the first `:` is a local path (`./a:b`).
pub(crate) fn split_remote(arg: &str) -> Option<(&str, &str)> {
    let (name, path) = arg.split_once(':')?;
    if name.contains('/') || ssh_session_core::validate_name(name).is_err() {
        return None;
    }
    Some((name, if path.is_empty() { "." } else { path }))
}

/// What `cp SRC DST` means: exactly one side must be remote.
pub(crate) fn copy_spec(source: &str, dest: &str, recursive: bool) -> Result<CopySpec, CliError> {
    let spec = |name: &str, direction, local: &str, remote: &str| -> Result<CopySpec, CliError> {
        Ok(CopySpec {
            name: name.to_string(),
            direction,
            local: absolute(std::path::Path::new(local))?,
            remote: remote.to_string(),
            recursive,
        })
    };
    match (split_remote(source), split_remote(dest)) {
        (Some(_), Some(_)) => Err(CliError::Invalid(
            "both sides are remote: copy one of them to this machine first, then on".into(),
        )),
        (None, None) => Err(CliError::Invalid(format!(
            "neither {source:?} nor {dest:?} names a session: write the remote side as NAME:PATH (e.g. web:/etc/app.toml)"
        ))),
        (Some((name, remote)), None) => spec(name, Direction::Download, dest, remote),
        (None, Some((name, remote))) => spec(name, Direction::Upload, source, remote),
    }
}

/// Splits on `:` outside `[...]`, so IPv6 hosts can be given as in ssh (`[::1]:8080`).
fn fields(spec: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0;
    for c in spec.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

/// An `ssh -L`/`-R` spec (`[BIND:]PORT:HOST:HOSTPORT`, or `HOST:HOSTPORT` for a free
/// port) as `(listen, target)`; `-D` specs (`[BIND:]PORT`) give no target.
pub(crate) fn forward_spec(
    kind: char,
    spec: &str,
) -> Result<(Option<String>, Option<String>), String> {
    let f = fields(spec);
    let port = |s: &str| -> Result<u16, String> {
        s.parse()
            .map_err(|_| format!("{s:?} in -{kind} {spec:?} is not a port number"))
    };
    let listen = |bind: Option<&str>, p: &str| -> Result<Option<String>, String> {
        let p = port(p)?;
        Ok(Some(format!("{}:{p}", bind.unwrap_or("127.0.0.1"))))
    };
    match (kind, f.as_slice()) {
        ('D', [p]) => Ok((listen(None, p)?, None)),
        ('D', [bind, p]) => Ok((listen(Some(bind), p)?, None)),
        ('L' | 'R', [host, hp]) => Ok((None, Some(format!("{host}:{}", port(hp)?)))),
        ('L' | 'R', [p, host, hp]) => Ok((listen(None, p)?, Some(format!("{host}:{}", port(hp)?)))),
        ('L' | 'R', [bind, p, host, hp]) => {
            Ok((listen(Some(bind), p)?, Some(format!("{host}:{}", port(hp)?))))
        }
        ('D', _) => Err(format!("-D {spec:?}: use [BIND:]PORT, e.g. 1080 or 127.0.0.1:1080")),
        _ => Err(format!(
            "-{kind} {spec:?}: use [BIND:]PORT:HOST:HOSTPORT as ssh does (e.g. 8080:localhost:80), or HOST:HOSTPORT for a free port"
        )),
    }
}

/// `cp`: runs the copy, showing progress on a terminal's stderr.
pub(crate) async fn copy(client: &mut Client, spec: CopySpec, json: bool) -> Result<i32, CliError> {
    client.send(&Request::Copy(spec)).await?;
    let show = std::io::stderr().is_terminal();
    loop {
        match client.recv().await? {
            Response::Progress { bytes, total } => {
                if show {
                    let of = total
                        .map(|t| format!(" of {}", size(t)))
                        .unwrap_or_default();
                    eprint!("\r\x1b[Kcopied {}{of}", size(bytes));
                }
            }
            Response::Copied(view) => {
                if show {
                    eprint!("\r\x1b[K");
                }
                if json {
                    print_json(&view)?;
                } else {
                    let rate = view.bytes as f64 / (view.duration_ms.max(1) as f64 / 1000.0);
                    eprintln!(
                        "{} in {} file(s) to {} in {} ({}/s){}",
                        size(view.bytes),
                        view.files,
                        output::escape_controls(&view.to),
                        output::human(Duration::from_millis(view.duration_ms)),
                        size(rate as u64),
                        view.sha256
                            .map(|h| format!(", sha256 {h}"))
                            .unwrap_or_default()
                    );
                }
                return Ok(0);
            }
            Response::Error { error, message } => {
                if show {
                    eprint!("\r\x1b[K");
                }
                return Err(CliError::Remote {
                    kind: error,
                    message,
                });
            }
            other => return Err(client.protocol(format!("unexpected answer {other:?}"))),
        }
    }
}

/// `forward NAME -L|-D|-R SPEC`: opens it and prints where it listens.
pub(crate) async fn forward(
    client: &mut Client,
    name: &str,
    kind: char,
    spec: &str,
    json: bool,
) -> Result<i32, CliError> {
    let (listen, target) = forward_spec(kind, spec).map_err(CliError::Invalid)?;
    let kind = match kind {
        'L' => "local",
        'D' => "socks",
        _ => "remote",
    };
    let request = Request::Forward {
        name: name.to_string(),
        kind: kind.into(),
        listen,
        target,
    };
    match client.call(&request).await? {
        Response::Tunnel { tunnel } if json => print_json(&tunnel).map(|_| 0),
        Response::Tunnel { tunnel: t } => {
            let to = t
                .target
                .as_deref()
                .unwrap_or("wherever each SOCKS client asks");
            let side = if t.kind == "remote" {
                "on the host"
            } else {
                "here"
            };
            write_out(format!("{}\n", t.listen).as_bytes())?;
            eprintln!(
                "tunnel {} open: {} ({side}) → {to}; `ssh-session forward --close {}` closes it",
                t.id, t.listen, t.id
            );
            Ok(0)
        }
        other => Err(client.protocol(format!("unexpected answer {other:?}"))),
    }
}

/// The tunnels table for `ls` and `forward` without a spec.
pub(crate) fn tunnels_table(tunnels: &[TunnelView]) -> String {
    let rows: Vec<Vec<String>> = tunnels
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.session.clone(),
                t.kind.clone(),
                t.listen.clone(),
                t.target.clone().unwrap_or_else(|| "*".into()),
                size(t.bytes_out),
                size(t.bytes_in),
            ]
        })
        .collect();
    output::table(
        &["TUNNEL", "SESSION", "KIND", "LISTEN", "TARGET", "OUT", "IN"],
        &rows,
    )
}

/// `exec a,b,c -- CMD`: each session's output with its name in front of every line, in
/// the order given; the exit code is the worst of them.
pub(crate) async fn exec_many(
    global: &Global,
    paths: &Paths,
    names: &[String],
    command: &str,
    timeout: Duration,
    source: String,
) -> Result<i32, CliError> {
    for name in names {
        ssh_session_core::validate_name(name)?;
    }
    let mut client = Client::connect_or_start(paths, global.idle_timeout).await?;
    let request = Request::ExecMany {
        names: names.to_vec(),
        command: command.to_string(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        source: Some(source),
    };
    let results = match client.call(&request).await? {
        Response::Many { results } => results,
        other => return Err(client.protocol(format!("unexpected answer {other:?}"))),
    };
    let width = results.iter().map(|r| r.session.len()).max().unwrap_or(0);
    let mut worst = 0;
    for r in &results {
        let prefix = format!("{:width$}", r.session);
        let text = decode(&r.output).map_err(CliError::Invalid)?;
        let mut block = Vec::new();
        for line in text.split_inclusive(|&b| b == b'\n') {
            block.extend_from_slice(prefix.as_bytes());
            block.extend_from_slice(b": ");
            block.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                block.push(b'\n');
            }
        }
        write_out(&block)?;
        let status = match (&r.error, r.running, r.exit_code) {
            (Some((kind, message)), _, _) => {
                eprintln!("{prefix}: error: {}", output::escape_controls(message));
                kind_code(*kind)
            }
            (None, true, _) => {
                eprintln!(
                    "{prefix}: still running after {}; follow it with `ssh-session read {} --wait 1m`",
                    output::human(timeout),
                    r.session
                );
                code::STILL_RUNNING
            }
            (None, false, Some(code)) => code,
            (None, false, None) => code::UNKNOWN_OUTCOME,
        };
        worst = worst.max(status);
    }
    Ok(worst)
}

/// `12.3 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_sides_are_read_as_scp_reads_them() {
        assert_eq!(split_remote("web:/etc/x"), Some(("web", "/etc/x")));
        assert_eq!(split_remote("web:"), Some(("web", ".")));
        assert_eq!(split_remote("web:rel/x"), Some(("web", "rel/x")));
        assert_eq!(split_remote("./web:x"), None);
        assert_eq!(split_remote("/abs/a:b"), None);
        assert_eq!(split_remote("plain"), None);
        assert_eq!(split_remote("bad name:x"), None);
    }

    #[test]
    fn cp_needs_exactly_one_remote_side() {
        let up = copy_spec("/tmp/a", "web:/srv/", false).unwrap();
        assert_eq!(
            (up.direction, up.name.as_str(), up.remote.as_str()),
            (Direction::Upload, "web", "/srv/")
        );
        let down = copy_spec("web:/etc/hosts", "rel", true).unwrap();
        assert_eq!(down.direction, Direction::Download);
        assert!(down.local.is_absolute() && down.recursive);
        assert!(copy_spec("a:x", "b:y", false)
            .unwrap_err()
            .to_string()
            .contains("both sides"));
        assert!(copy_spec("x", "y", false)
            .unwrap_err()
            .to_string()
            .contains("NAME:PATH"));
    }

    #[test]
    fn forward_specs_as_ssh_writes_them() {
        assert_eq!(
            forward_spec('L', "8080:localhost:80"),
            Ok((Some("127.0.0.1:8080".into()), Some("localhost:80".into())))
        );
        assert_eq!(
            forward_spec('L', "0.0.0.0:8080:db:5432"),
            Ok((Some("0.0.0.0:8080".into()), Some("db:5432".into())))
        );
        assert_eq!(
            forward_spec('R', "db:5432"),
            Ok((None, Some("db:5432".into())))
        );
        assert_eq!(
            forward_spec('L', "[::1]:8080:[::1]:80"),
            Ok((Some("[::1]:8080".into()), Some("[::1]:80".into())))
        );
        assert_eq!(
            forward_spec('D', "1080"),
            Ok((Some("127.0.0.1:1080".into()), None))
        );
        assert_eq!(
            forward_spec('D', "127.0.0.2:0"),
            Ok((Some("127.0.0.2:0".into()), None))
        );
        assert!(forward_spec('L', "8080")
            .unwrap_err()
            .contains("PORT:HOST:HOSTPORT"));
        assert!(forward_spec('L', "x:h:80")
            .unwrap_err()
            .contains("not a port"));
        assert!(forward_spec('D', "a:b:c")
            .unwrap_err()
            .contains("[BIND:]PORT"));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
    }
}
