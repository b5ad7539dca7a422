//! Helpers of the benches that attach to a session (`shared`, `browser`).

use std::time::Duration;

use futures::FutureExt;
use ssh_session_core::{Attachment, TerminalEvent};

/// `full`, or a tenth of it with `SSH_SESSION_BENCH_QUICK=1`.
pub(crate) fn n(full: usize) -> usize {
    if std::env::var("SSH_SESSION_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0") {
        full.div_ceil(10)
    } else {
        full
    }
}

/// Reads the attachment's output until it holds `needle` (bounded: 10 s).
pub(crate) async fn until(a: &mut Attachment, needle: &[u8]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen.windows(needle.len()).any(|w| w == needle) {
        match tokio::time::timeout_at(deadline, a.next()).await {
            Ok(Some(TerminalEvent::Output(b))) => seen.extend_from_slice(&b),
            Ok(Some(_)) => {}
            other => panic!(
                "never saw {:?}: {other:?} after {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// Drops whatever the attachment has received so far.
pub(crate) fn drain(a: &mut Attachment) {
    while let Some(Some(_)) = a.next().now_or_never() {}
}
