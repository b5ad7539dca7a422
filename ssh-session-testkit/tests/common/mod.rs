//! Helpers shared by the test files: running the OpenSSH client with a
//! deadline, so a broken server fails a test instead of hanging it.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `ssh ARGS`, feeding `stdin`, killing it after `limit`.
pub(crate) fn ssh(args: &[String], stdin: &[u8], limit: Duration) -> Output {
    let mut child = Command::new("ssh")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the OpenSSH client (ssh) is needed for these tests");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ssh {args:?} did not finish within {limit:?}; stdout: {:?} stderr: {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// Replaces the value after `-i` in OpenSSH client arguments.
pub(crate) fn with_key(mut args: Vec<String>, key: &std::path::Path) -> Vec<String> {
    let i = args.iter().position(|a| a == "-i").expect("-i in args");
    args[i + 1] = key.display().to_string();
    args
}

/// True if `pid` no longer runs (gone, or a zombie nobody reaped yet).
pub(crate) fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next();
            matches!(state, Some("Z") | Some("X"))
        }
    }
}

/// Waits until `pid` is dead, up to `limit`.
pub(crate) fn wait_dead(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if is_dead(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    is_dead(pid)
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
