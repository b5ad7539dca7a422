//! Spawning server processes that cannot outlive the test process, and
//! killing a process together with everything it forked.
//!
//! `PR_SET_PDEATHSIG` delivers its signal when the *thread* that forked the
//! child exits, not when the process does. Test harnesses run each test on
//! its own short-lived thread, so a server shared by the whole test binary
//! and spawned directly from a test would be killed as soon as that first
//! test returns. All tied children are therefore forked by one dedicated
//! thread that never exits: its death coincides with the death of the
//! process, which is exactly when the children must go.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;

/// A request to the spawner thread: the command, and where to send the child.
type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from the process-lifetime spawner thread with
/// `PR_SET_PDEATHSIG = SIGKILL`, so the child is killed by the kernel when
/// this process dies for any reason (including `SIGKILL` and panics in
/// `Drop`-less statics).
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                // Lives until the process exits: `SPAWNER` keeps `tx` alive forever.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the testkit spawner thread");
        tx
    });
    let parent = std::process::id();
    // SAFETY: the closure only calls async-signal-safe functions (prctl,
    // getppid, _exit), as required between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; the signal
            // would then never come, so leave on our own.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("testkit spawner thread dropped the request"))?
}

/// Sends `SIGKILL` to `pid` and to all its descendants.
///
/// sshd forks one process per connection (and those fork the user's shell),
/// and these do not die with the listener. Descendants are collected before
/// anything is killed, because once a parent dies its children are
/// re-parented and can no longer be found from it.
pub(crate) fn kill_tree(pid: u32) {
    let mut victims = descendants(pid);
    victims.insert(0, pid);
    for p in victims {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(p as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// All descendants of `root`, parents before children, read from `/proc`.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            queue.push(c);
        }
    }
    out
}

/// The direct children of `pid`, read from `/proc`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent_of(p) == Some(pid))
        .collect()
}

/// The command name (`comm`, at most 15 bytes) of `pid`, if it still exists.
pub(crate) fn command_name(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// The parent pid from `/proc/PID/stat`. The command name (field 2) may
/// contain spaces and parentheses, so parse from the last `)`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
