//! How a command's life ends when something other than the command ends it: a stream
//! always closes with its final event (killed by `stop_command`, cut off with its link),
//! and replacing a wedged shell while another command waits its turn starts one shell,
//! never two. Real sshd, both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use futures::StreamExt;
use ssh_session_core::{
    CommandState, ExecOptions, ExecStream, ReconnectPolicy, Session, SessionConfig, SessionManager,
    StreamEvent,
};
use ssh_session_testkit::prelude::*;

fn config() -> SessionConfig {
    SessionConfig {
        cancel_deadline: Duration::from_millis(1500),
        reconnect: ReconnectPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The shell's own stdout goes nowhere: no marker can come back, and no foreground job
/// exists for a signal to stop. Only replacing the shell ends it.
const WEDGE: &str = "exec >/dev/null 2>&1; echo hidden";

/// Reads `stream` to its end (bounded: 20 s): the output and the final event, which must
/// be there — a stream that just closes is the bug.
async fn drain(stream: &mut ExecStream) -> (Vec<u8>, ssh_session_core::ExecResult) {
    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(StreamEvent::Output(bytes))) => output.extend_from_slice(&bytes),
            Ok(Some(StreamEvent::Finished(result))) => {
                assert!(
                    tokio::time::timeout(Duration::from_secs(5), stream.next())
                        .await
                        .expect("the stream ends after its final event")
                        .is_none(),
                    "nothing follows the final event"
                );
                return (output, result);
            }
            Ok(None) => panic!(
                "the stream closed without a final event after {:?}",
                String::from_utf8_lossy(&output)
            ),
            Err(_) => panic!("no final event within 20 s"),
        }
    }
}

conformance! {
    async fn a_stream_whose_command_is_killed_ends_with_its_final_event() {
        let m = SessionManager::new();
        let s = m.open("killed-stream", Sshd::shared().connect_options(backend()), config()).await.unwrap();
        run(&s, "cd /usr && export KEEP=1").await;
        // Wedged before it prints: its first output (through fd 3) proves the shell's own
        // output already goes nowhere, so a Ctrl-C cannot race the redirection.
        let mut stream = s
            .exec_stream("exec 3>&1 >/dev/null 2>&1; echo before >&3", ExecOptions::default())
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(StreamEvent::Output(bytes))) => assert_eq!(&bytes[..], b"before\n"),
            other => panic!("expected the first output, got {other:?}"),
        }
        let stopper = {
            let s = s.clone();
            tokio::spawn(async move { s.stop_command().await })
        };
        let (output, result) = drain(&mut stream).await;
        assert!(output.is_empty(), "{:?}", String::from_utf8_lossy(&output));
        assert_eq!(result.state, CommandState::Killed);
        assert_eq!(result.exit_code, None);
        let report = stopper.await.unwrap().unwrap();
        assert!(report.shell_replaced);
        drop(stream);
        assert_eq!(out(&s, "pwd; echo $KEEP").await, "/usr\n1\n");
        m.shutdown().await;
    }

    async fn a_stream_cut_off_with_its_link_ends_with_its_final_event() {
        let sshd = Sshd::shared();
        let dir = tempfile::tempdir().unwrap();
        let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
        let o = sshd.connect_options_via(&proxy, dir.path(), backend());
        let m = SessionManager::new();
        let s = m.open("lost-stream", o, config()).await.unwrap();
        let mut stream = s
            .exec_stream("echo first; sleep 30; echo never", ExecOptions::default())
            .await
            .unwrap();
        // Cut only once the command is visibly running.
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(StreamEvent::Output(bytes))) => assert_eq!(&bytes[..], b"first\n"),
            other => panic!("expected the first output, got {other:?}"),
        }
        proxy.cut(CutMode::Reset).await;
        let (rest, result) = drain(&mut stream).await;
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        assert_eq!(result.state, CommandState::LinkLost);
        assert_eq!(result.exit_code, None);
        drop(stream);
        // And the session goes on, on a new connection.
        assert_eq!(out(&s, "echo after").await, "after\n");
        m.shutdown().await;
    }

    async fn replacing_a_wedged_shell_while_a_command_waits_starts_one_shell() {
        // A server of its own, so its shells can be counted.
        let sshd = Sshd::start().unwrap();
        let m = SessionManager::new();
        let s = m.open("race", sshd.connect_options(backend()), config()).await.unwrap();
        run(&s, "cd /tmp && export KEEP=2").await;
        assert_eq!(sshd.count_processes("bash"), 1);
        // The wedged command holds the session's turn (its exec waits up to 20 s): the
        // next exec queues behind it.
        let wedged = {
            let s = s.clone();
            tokio::spawn(async move { s.exec(WEDGE, ExecOptions::timeout(Duration::from_secs(20))).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let queued = {
            let s = s.clone();
            tokio::spawn(async move {
                s.exec("echo $$; pwd; echo $KEEP", ExecOptions::timeout(Duration::from_secs(20))).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Killing the command frees the turn while the stop is still replacing the shell.
        let stopper = {
            let s = s.clone();
            tokio::spawn(async move { s.stop_command().await })
        };
        let result = wedged.await.unwrap().unwrap();
        assert_eq!(result.state, CommandState::Killed);
        let report = stopper.await.unwrap().unwrap();
        assert!(report.shell_replaced);
        let r = queued.await.unwrap().unwrap();
        assert_eq!(r.state, CommandState::Exited, "{:?}", r.text());
        let text = r.text().into_owned();
        let mut lines = text.lines();
        let pid = lines.next().unwrap_or_else(|| panic!("{r:?}")).to_string();
        assert_eq!(lines.collect::<Vec<_>>(), ["/tmp", "2"]);
        // Later commands run in that same shell, and it is the only one.
        assert_eq!(out(&s, "echo $$").await.trim(), pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while sshd.count_processes("bash") != 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(sshd.count_processes("bash"), 1, "one shell for one session");
        m.shutdown().await;
    }
}
