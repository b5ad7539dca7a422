//! `ssh-session attach` in a real PTY: the person gets the session's own shell (Tab
//! completion, Up recall, their cd and export seen by the next `exec`), every command
//! they run is in `history` with its exact exit code and source `attach`, a program's
//! command and output appear on their screen, `exec` is refused while their command runs
//! and tells what they ran, and Ctrl-] leaves the session on its fast path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod common;

use std::time::Duration;

use common::{text, Env};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `ssh-session attach NAME` on a PTY the test holds: what it types and what it sees.
struct Terminal {
    pty: pty_process::Pty,
    child: tokio::process::Child,
    seen: String,
}

impl Terminal {
    async fn attach(env: &Env, name: &str) -> Terminal {
        let (pty, pts) = pty_process::open().unwrap();
        pty.resize(pty_process::Size::new(30, 120)).unwrap();
        let mut cmd = pty_process::Command::new(common::bin()).args(["attach", name]);
        for (k, v) in env.vars() {
            cmd = match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let child = cmd.kill_on_drop(true).spawn(pts).unwrap();
        let mut t = Terminal {
            pty,
            child,
            seen: String::new(),
        };
        t.until("[ssh-session: attached to").await;
        t
    }

    async fn typed(&mut self, keys: &[u8]) {
        self.pty.write_all(keys).await.unwrap();
    }

    /// Reads until `needle` shows (bounded), keeping what came after it for the next call.
    async fn until(&mut self, needle: &str) {
        let mut buf = [0u8; 4096];
        let found = tokio::time::timeout(common::LIMIT, async {
            while !self.seen.contains(needle) {
                let n = self
                    .pty
                    .read(&mut buf)
                    .await
                    .expect("read the attach terminal");
                assert!(n > 0, "attach closed its terminal; so far: {:?}", self.seen);
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "never saw {needle:?}; the terminal showed: {:?}",
            self.seen
        );
        let at = self.seen.find(needle).unwrap() + needle.len();
        self.seen.drain(..at);
    }

    /// Types `keys` while reading what the terminal shows, until `needle` shows: a person
    /// pasting a lot sees its echo meanwhile (a reader that waited for the paste to be
    /// typed would stall it itself).
    async fn paste(&mut self, keys: &[u8], needle: &str) {
        let (mut reader, mut writer) = self.pty.split();
        let seen = &mut self.seen;
        let write = async {
            writer.write_all(keys).await.unwrap();
        };
        let read = async {
            let mut buf = [0u8; 65536];
            while !seen.contains(needle) {
                let n = reader
                    .read(&mut buf)
                    .await
                    .expect("read the attach terminal");
                assert!(n > 0, "attach closed its terminal");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                // Only the end matters: keep what is searched small.
                if seen.len() > 1 << 20 {
                    seen.drain(..seen.len() - 4096);
                }
            }
        };
        let done = tokio::time::timeout(common::LIMIT, async { tokio::join!(write, read) }).await;
        assert!(
            done.is_ok(),
            "the paste stalled; the terminal showed last: {:?}",
            {
                let tail = self.seen.len().saturating_sub(300);
                &self.seen[tail..]
            }
        );
        let at = self.seen.find(needle).unwrap() + needle.len();
        self.seen.drain(..at);
    }

    /// Ctrl-], then the process must exit successfully.
    async fn detach(mut self) {
        self.typed(&[0x1d]).await;
        self.until("detached from").await;
        let status = tokio::time::timeout(common::LIMIT, self.child.wait())
            .await
            .expect("attach exits after the detach key")
            .unwrap();
        assert!(status.success(), "{status}; terminal: {:?}", self.seen);
    }
}

fn history(env: &Env, name: &str) -> Vec<Value> {
    let out = env.ok(&["history", name, "--json"]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The person's commands once `n` have been recorded and, if `ended`, all have ended
/// (bounded: 20 s).
async fn persons(env: &Env, name: &str, n: usize, ended: bool) -> Vec<Value> {
    for _ in 0..200 {
        let h: Vec<Value> = history(env, name)
            .into_iter()
            .filter(|e| e["source"] == "attach")
            .collect();
        if h.len() >= n && (!ended || h.iter().all(|e| !e["duration_ms"].is_null())) {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{n} commands of the person were never recorded: {:?}",
        history(env, name)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_is_the_sessions_own_shell_and_records_what_the_person_runs() {
    let env = Env::new();
    env.connect("tty");
    let dir = env.dir.path().join("work");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("completeme-42.txt"), "").unwrap();
    let dir = dir.to_str().unwrap().to_string();
    env.ok(&["exec", "tty", "--", &format!("cd {dir}")]);

    let mut t = Terminal::attach(&env, "tty").await;
    // Tab completes from the remote directory: the line that runs is the completed one.
    t.typed(b"echo complet").await;
    t.until("complet").await;
    t.typed(b"\t").await;
    t.until("eme-42.txt").await;
    t.typed(b"\r").await;
    t.until("completeme-42.txt\r\n").await;
    // Up recalls the shell's own history.
    t.typed(b"echo recall-$((6*7))\r").await;
    t.until("recall-42\r\n").await;
    t.typed(b"\x1b[A").await;
    t.until("recall-$((6*7))").await;
    t.typed(b"\r").await;
    t.until("recall-42\r\n").await;
    // Exit codes, exactly, and a fake "finished" mark printed by a command is just output.
    t.typed(b"false\r").await;
    t.typed(b"true | sh -c 'exit 3'\r").await;
    t.typed(b"printf '\\033]133;D;0\\007fake\\n'\r").await;
    t.until("fake\r\n").await;
    t.typed(format!("cd {dir}/sub && export PERSON_WAS=x$((1+1))y\r").as_bytes())
        .await;

    let h = persons(&env, "tty", 7, true).await;
    let got: Vec<(&str, i64)> = h
        .iter()
        .map(|e| {
            (
                e["command"].as_str().unwrap(),
                e["exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // Completion added the space after the name, as readline does.
            ("echo completeme-42.txt ", 0),
            ("echo recall-$((6*7))", 0),
            ("echo recall-$((6*7))", 0),
            ("false", 1),
            ("true | sh -c 'exit 3'", 3),
            ("printf '\\033]133;D;0\\007fake\\n'", 0),
            (&*format!("cd {dir}/sub && export PERSON_WAS=x$((1+1))y"), 0),
        ],
        "{h:?}"
    );
    assert_eq!(h[6]["cwd"], format!("{dir}/sub"));

    // A program's command sees what the person did, is told what they ran (stderr), and
    // its command and output appear on the person's screen.
    let out = env.run(&["exec", "tty", "--", "echo \"$PERSON_WAS\"; pwd"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, format!("x2y\n{dir}/sub\n"));
    assert!(
        stderr.contains("a person ran 7 command(s)")
            && stderr.contains("`true | sh -c 'exit 3'` (exit 3"),
        "{stderr}"
    );
    t.until("echo \"$PERSON_WAS\"; pwd").await;
    t.until("x2y\r\n").await;
    // Told once: the next exec from the same place hears nothing new.
    let out = env.run(&["exec", "tty", "--", "true"]);
    assert!(out.status.success());
    assert_eq!(text(&out).1, "");

    t.detach().await;
    // Back on the fast path: exact output, no echo, state kept; the history table shows
    // who ran what and where.
    assert_eq!(
        env.ok(&["exec", "tty", "--", "echo \"$PERSON_WAS\"; pwd"]),
        format!("x2y\n{dir}/sub\n")
    );
    let table = env.ok(&["history", "tty"]);
    assert!(
        table.contains("FROM") && table.contains("CWD") && table.contains("attach"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_is_refused_while_the_persons_command_runs_and_ctrl_c_reaches_it() {
    let env = Env::new();
    env.connect("gate");
    let mut t = Terminal::attach(&env, "gate").await;
    t.typed(b"sleep 30\r").await;
    let h = persons(&env, "gate", 1, false).await;
    assert_eq!(h[0]["command"], "sleep 30");
    let out = env.run(&["exec", "gate", "--", "echo never"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(67), "{stdout}{stderr}");
    assert!(
        stderr.contains("a person at its terminal") && stderr.contains("\"sleep 30\""),
        "{stderr}"
    );
    assert!(!stdout.contains("never"));
    // Their Ctrl-C goes to their command: recorded as interrupted (130), and the next
    // exec runs.
    t.typed(b"\x03").await;
    let h = persons(&env, "gate", 1, true).await;
    assert_eq!(h[0]["exit_code"], 130, "{h:?}");
    let out = env.run(&["exec", "gate", "--", "echo ran"]);
    assert_eq!(text(&out).0, "ran\n", "{:?}", text(&out));
    assert!(text(&out).1.contains("`sleep 30` (exit 130"));
    t.until("ran\r\n").await;
    t.detach().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_paste_echoed_back_never_stalls_attach() {
    let env = Env::new();
    env.connect("big");
    let mut t = Terminal::attach(&env, "big").await;
    t.typed(b"cat > /dev/null\r").await;
    persons(&env, "big", 1, false).await;
    // Half a megabyte of lines to cat, echoed back by the terminal while it is typed:
    // both directions of the connection to the daemon are full at once.
    let mut keys = Vec::new();
    for _ in 0..5000 {
        keys.extend_from_slice(&[b'a'; 100]);
        keys.push(b'\r');
    }
    keys.extend_from_slice(b"\x04echo pasted-$((1+1))\r");
    t.paste(&keys, "pasted-2").await;
    let h = persons(&env, "big", 2, true).await;
    assert_eq!(h[0]["exit_code"], 0, "{h:?}");
    t.detach().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_detaches_and_gives_the_terminal_back() {
    use std::os::fd::AsRawFd;
    let env = Env::new();
    env.connect("term");
    let mut t = Terminal::attach(&env, "term").await;
    let line_mode = |t: &Terminal| {
        // SAFETY: tcgetattr on the PTY the test holds, into a termios it owns; on Linux
        // the master reports the terminal's (the slave's) mode.
        let mut mode: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(t.pty.as_raw_fd(), &mut mode) }, 0);
        mode.c_lflag & libc::ICANON != 0
    };
    assert!(!line_mode(&t), "attach puts the terminal in raw mode");
    let pid = t.child.id().unwrap() as libc::pid_t;
    // SAFETY: kill(2) on the attach process this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    t.until("detached from term").await;
    let status = tokio::time::timeout(common::LIMIT, t.child.wait())
        .await
        .expect("attach exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(line_mode(&t), "the terminal's mode was not restored");
    assert_eq!(env.ok(&["exec", "term", "--", "echo", "still"]), "still\n");
}
