//! Waiting costs nothing: a session waiting for a long command, for a stream's next chunk
//! or for a follower's next piece uses (almost) no CPU. A waiting loop that woke itself
//! would burn a core for as long as the command runs. Alone in its test binary, so the
//! process's CPU time is this test's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use futures::StreamExt;
use ssh_session_core::{ExecOptions, Session};
use ssh_session_testkit::prelude::*;

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_for_a_command_uses_no_cpu() {
    let (m, s) = session("idle").await;
    let wait = ExecOptions::timeout(Duration::from_secs(20));
    let before = cpu_time();
    assert_eq!(
        s.exec("sleep 1.5; echo a", wait.clone())
            .await
            .unwrap()
            .text(),
        "a\n"
    );
    let mut stream = s
        .exec_stream("sleep 1.5; echo b", wait.clone())
        .await
        .unwrap();
    while stream.next().await.is_some() {}
    drop(stream);
    let mut follow = s.follow("sleep 1.5; echo c", wait).await.unwrap();
    while follow.next(None).await.unwrap().is_some() {}
    let used = cpu_time() - before;
    // 4.5 s of waiting; a spinning wait would use about as much CPU.
    assert!(
        used < Duration::from_millis(900),
        "waiting used {used:?} of CPU"
    );
    m.shutdown().await;
}
