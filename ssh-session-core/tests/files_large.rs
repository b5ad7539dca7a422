//! A 1 GiB upload and download on both backends with the client's memory sampled all the
//! while: a transfer keeps a bounded number of chunks in flight, whatever the file's size.
//! Its own test binary, so no other test's allocations are counted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ssh_session_testkit::prelude::*;

const GIB: u64 = 1 << 30;
/// What both transfers (the two backends run at once) may add to the process's resident
/// memory: 32 chunks of 252 KiB in flight and the copy buffers are ~10 MiB a transfer;
/// the rest is allocator slack. An unbounded transfer would add a gigabyte.
const MAX_GROWTH_KIB: u64 = 96 << 10;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Samples the resident size every 20 ms until stopped; the highest seen.
fn sample_peak() -> (Arc<AtomicBool>, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_kib()));
    let (s, p) = (stop.clone(), peak.clone());
    let t = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            p.fetch_max(rss_kib(), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (stop, peak, t)
}

conformance! {
    async fn a_gigabyte_each_way_in_bounded_memory() {
        let (m, s) = session("files-1g").await;
        // Files on tmpfs where there is one, so the disk does not set the pace.
        let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
        let dir = tempfile::tempdir_in(base).unwrap();
        let src = dir.path().join("src.bin");
        // Sparse: reads as a gigabyte of zeros without writing one first.
        std::fs::File::create(&src).unwrap().set_len(GIB).unwrap();
        let remote = format!("{base}/ss-files-1g-{}-{}", backend(), std::process::id());
        let files = s.files().await.unwrap();

        let before = rss_kib();
        let (stop, peak, sampler) = sample_peak();
        let up = files.upload(&src, &remote, None).await.unwrap();
        let back = dir.path().join("back.bin");
        let down = files.download(&remote, &back, None).await.unwrap();
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        let growth = peak.load(Ordering::Relaxed).saturating_sub(before);

        assert_eq!((up.bytes, down.bytes), (GIB, GIB));
        assert_eq!(up.sha256, down.sha256, "the same bytes both ways");
        assert_eq!(std::fs::metadata(&back).unwrap().len(), GIB);
        assert!(growth < MAX_GROWTH_KIB, "resident memory grew by {growth} KiB for 2 GiB moved");
        eprintln!(
            "{}: 1 GiB up in {:?}, down in {:?}; resident memory +{} MiB at most",
            backend(), up.duration, down.duration, growth >> 10
        );
        files.remove(&remote, false).await.unwrap();
        m.shutdown().await;
    }
}
