//! A daemon that stops while a command starts a new one: no window in which the new one
//! gives up (it waits for the old one's lock) or a client sees an error.

use std::time::Duration;

use crate::common::{text, Env};

/// `daemon stop && ssh-session connect ...`: the old daemon still holds its lock while it
/// closes its sessions, and the new one must wait for it rather than leave.
#[test]
fn daemon_stop_then_a_new_command_right_away() {
    let env = Env::new();
    let mut pids = Vec::new();
    for round in 0..5 {
        let name = format!("r{round}");
        env.connect(&name);
        assert_eq!(
            env.ok(&["exec", &name, "--", "echo", "up"]),
            "up\n",
            "round {round}"
        );
        pids.push(env.daemon_pid().unwrap());
        env.ok(&["daemon", "stop"]);
    }
    pids.dedup();
    assert_eq!(pids.len(), 5, "each round had a new daemon: {pids:?}");
}

/// A daemon that exits when idle while clients keep coming: every command gets its
/// ordinary answer (here: no such session, 65), never "daemon unavailable" (72).
#[test]
fn commands_racing_an_idle_exit_are_served() {
    let env = Env::new().with("SSH_SESSION_IDLE_TIMEOUT", "100ms");
    for round in 0..30u64 {
        let out = env.run(&["status", "ghost"]);
        assert_eq!(
            out.status.code(),
            Some(65),
            "round {round}: {:?}\n{}",
            text(&out),
            env.log()
        );
        // Land on different points of the idle exit.
        std::thread::sleep(Duration::from_millis(round * 7 % 130));
    }
}
