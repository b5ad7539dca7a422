//! # Files, tunnels and fan-out against OpenSSH, in one run
//!
//! One test-kit OpenSSH `sshd` on loopback and one OpenSSH ControlMaster to it (so the
//! OpenSSH rows pay no handshake, as our sessions pay none), then, interleaved round by
//! round so load on the shared machine hits every path alike:
//!
//! 1. **SFTP upload and download** of one file (256 MiB; tmpfs on both ends, so the
//!    disk does not set the pace): ours on each backend (`RemoteFiles::upload`/`download`,
//!    the SFTP channel's opening included) against `sftp` and `scp` through the master.
//!    Goal: ≥ 0.9× OpenSSH `sftp`.
//! 2. **Tunnel throughput**: 256 MiB written through a local tunnel to a sink that counts
//!    it, ours on each backend against `ssh -O forward -L` on the master. Goal: ≥ 0.8×.
//! 3. **Fan-out**: `exec_many` of `true` over 100 sessions against one `exec` on one
//!    session. Goal: ≤ 2× its time.
//!
//! `SSH_SESSION_BENCH_QUICK=1` divides sizes and rounds by 4. Run with
//! `cargo bench -p ssh-session-benches --bench transfer`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is its failure report

#[allow(dead_code)] // shared with the latency bench, which uses all of it
mod openssh;
#[allow(dead_code)] // shared with the latency bench, which uses all of it
mod stats;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ssh_session_core::tunnel::TunnelSpec;
use ssh_session_core::{
    ExecOptions, Session, SessionConfig, SessionManager, ShellSession, TransportKind,
};
use ssh_session_testkit::Sshd;
use stats::{median, ms, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn quick() -> bool {
    std::env::var("SSH_SESSION_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn progress(what: &str) {
    eprintln!("[bench transfer] {what}");
}

/// `sftp`/`scp` take the port as `-P`; everything else as `ssh` does.
fn openssh_args(sshd: &Sshd, ctl: &Path) -> Vec<String> {
    let mut args: Vec<String> = sshd
        .ssh_args()
        .into_iter()
        .map(|a| if a == "-p" { "-P".into() } else { a })
        .collect();
    args.extend(["-o".into(), format!("ControlPath={}", ctl.display())]);
    args
}

async fn timed(mut cmd: tokio::process::Command, what: &str) -> Duration {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// A sink on loopback: each connection is read to its end, then the count is sent back.
async fn sink() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 << 10];
                let mut total = 0u64;
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n as u64,
                    }
                }
                let _ = c.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    port
}

/// Sends `bytes` into `port` and waits for the sink's count: the tunnel's one-way time.
async fn push(port: u16, bytes: u64) -> Duration {
    let chunk = vec![0x5au8; 256 << 10];
    let start = Instant::now();
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut sent = 0;
    while sent < bytes {
        let n = (bytes - sent).min(chunk.len() as u64) as usize;
        c.write_all(&chunk[..n]).await.unwrap();
        sent += n as u64;
    }
    c.shutdown().await.unwrap();
    let mut count = [0u8; 8];
    c.read_exact(&mut count).await.unwrap();
    assert_eq!(u64::from_be_bytes(count), bytes, "the sink got every byte");
    start.elapsed()
}

struct Row {
    what: String,
    value: String,
    vs: String,
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from("| Measure | Result | Against OpenSSH |\n|---|---|---|\n");
    for r in rows {
        out += &format!("| {} | {} | {} |\n", r.what, r.value, r.vs);
    }
    out
}

#[tokio::main]
async fn main() {
    let rounds = if quick() { 1 } else { 3 };
    let size: u64 = if quick() { 64 << 20 } else { 256 << 20 };
    let sshd = Sshd::start().unwrap();
    let master = openssh::ControlMaster::start(&sshd).await.unwrap();
    let ctl = PathBuf::from(format!("/tmp/ssb-{}.ctl", std::process::id()));
    let m = SessionManager::new();
    let mut sessions: Vec<(TransportKind, ShellSession)> = Vec::new();
    for kind in [TransportKind::Russh, TransportKind::OpenSsh] {
        let s = m
            .open(
                &format!("bench-{kind}"),
                sshd.connect_options(kind),
                SessionConfig::default(),
            )
            .await
            .unwrap();
        sessions.push((kind, s));
    }
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = tempfile::tempdir_in(base).unwrap();
    let src = dir.path().join("src.bin");
    // Not zeros: nothing on the way may get it cheaper than real data.
    let data: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    drop(data);
    let remote = format!("{base}/ssb-remote-{}.bin", std::process::id());
    let back = dir.path().join("back.bin");
    let args = openssh_args(&sshd, &ctl);
    let host = sshd.host().to_string();
    // A second master with the cipher our russh backend prefers, so the comparison is
    // also made like for like (OpenSSH's default is ChaCha20-Poly1305).
    let gcm_ctl = PathBuf::from(format!("/tmp/ssb-gcm-{}.ctl", std::process::id()));
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(sshd.ssh_args())
        .args(["-M", "-S"])
        .arg(&gcm_ctl)
        .args([
            "-o",
            "ControlPersist=yes",
            "-o",
            "Ciphers=aes256-gcm@openssh.com",
            "-fN",
        ])
        .arg(&host);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    assert!(cmd.status().await.unwrap().success(), "ssh -M (AES-GCM)");
    let gcm_args = openssh_args(&sshd, &gcm_ctl);

    // 1. SFTP.
    let mut up: [Vec<f64>; 5] = Default::default();
    let mut down: [Vec<f64>; 5] = Default::default();
    for round in 0..rounds {
        progress(&format!(
            "files: round {} of {rounds}, {} MiB",
            round + 1,
            size >> 20
        ));
        for (i, (_, s)) in sessions.iter().enumerate() {
            let start = Instant::now();
            let files = s.files().await.unwrap();
            files.upload(&src, &remote, None).await.unwrap();
            up[i].push(mb_s(size, start.elapsed()));
            let start = Instant::now();
            let files = s.files().await.unwrap();
            files.download(&remote, &back, None).await.unwrap();
            down[i].push(mb_s(size, start.elapsed()));
        }
        let batch = dir.path().join("batch");
        std::fs::write(
            &batch,
            format!(
                "put {} {remote}\nget {remote} {}\n",
                src.display(),
                back.display()
            ),
        )
        .unwrap();
        // sftp: one batch per direction so each is timed alone.
        for (dirn, line, set) in [
            (
                "put",
                format!("put {} {remote}\n", src.display()),
                &mut up[2],
            ),
            (
                "get",
                format!("get {remote} {}\n", back.display()),
                &mut down[2],
            ),
        ] {
            std::fs::write(&batch, line).unwrap();
            let mut cmd = tokio::process::Command::new("sftp");
            cmd.args(&args).args(["-q", "-b"]).arg(&batch).arg(&host);
            set.push(mb_s(size, timed(cmd, &format!("sftp {dirn}")).await));
        }
        for (line, set) in [
            (format!("put {} {remote}\n", src.display()), &mut up[4]),
            (format!("get {remote} {}\n", back.display()), &mut down[4]),
        ] {
            std::fs::write(&batch, line).unwrap();
            let mut cmd = tokio::process::Command::new("sftp");
            cmd.args(&gcm_args)
                .args(["-q", "-b"])
                .arg(&batch)
                .arg(&host);
            set.push(mb_s(size, timed(cmd, "sftp (AES-GCM)").await));
        }
        let mut cmd = tokio::process::Command::new("scp");
        cmd.args(&args)
            .arg("-q")
            .arg(&src)
            .arg(format!("{host}:{remote}"));
        up[3].push(mb_s(size, timed(cmd, "scp up").await));
        let mut cmd = tokio::process::Command::new("scp");
        cmd.args(&args)
            .arg("-q")
            .arg(format!("{host}:{remote}"))
            .arg(&back);
        down[3].push(mb_s(size, timed(cmd, "scp down").await));
    }
    let _ = std::fs::remove_file(&remote);

    // 2. Tunnels.
    let sink_port = sink().await;
    let mut tunnel: [Vec<f64>; 3] = Default::default();
    let mut ports = Vec::new();
    for (_, s) in &sessions {
        let t = m
            .open_tunnel(
                s.name(),
                TunnelSpec::local(None, &format!("127.0.0.1:{sink_port}")),
            )
            .await
            .unwrap();
        ports.push(t.listen.rsplit(':').next().unwrap().parse::<u16>().unwrap());
    }
    let ssh_port = ssh_session_testkit::free_port();
    let forward = format!("{ssh_port}:127.0.0.1:{sink_port}");
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(sshd.ssh_args())
        .args([
            "-S",
            &ctl.display().to_string(),
            "-O",
            "forward",
            "-L",
            &forward,
        ])
        .arg(&host);
    timed(cmd, "ssh -O forward").await;
    ports.push(ssh_port);
    for round in 0..rounds {
        progress(&format!("tunnels: round {} of {rounds}", round + 1));
        for (i, port) in ports.iter().enumerate() {
            tunnel[i].push(mb_s(size, push(*port, size).await));
        }
    }

    // 3. Fan-out.
    progress("fan-out: opening 100 sessions");
    let mut names = Vec::new();
    for i in 0..100 {
        let name = format!("fan-{i}");
        m.open(
            &name,
            sshd.connect_options(TransportKind::Russh),
            SessionConfig::default(),
        )
        .await
        .unwrap();
        names.push(name);
    }
    let one = m.get("fan-0").unwrap();
    let n = if quick() { 10 } else { 40 };
    let (mut single, mut many) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let start = Instant::now();
        let r = one.exec("true", ExecOptions::default()).await.unwrap();
        assert_eq!(r.exit_code, Some(0));
        single.push(start.elapsed());
        let start = Instant::now();
        let all = m.exec_many(&names, "true", ExecOptions::default()).await;
        many.push(start.elapsed());
        assert!(all
            .iter()
            .all(|r| r.result.as_ref().is_ok_and(|r| r.exit_code == Some(0))));
    }
    let single = Stats::of(&single).unwrap();
    let many = Stats::of(&many).unwrap();
    // On loopback the 100 shells' work shares this machine's cores; real hosts have their
    // own. What one machine can show is a 10 ms round trip (the kit's proxy delaying each
    // direction by 5 ms, as a LAN or a near cloud region), where the waiting dominates.
    progress("fan-out over a 10 ms round trip: opening 100 sessions");
    let proxy = ssh_session_testkit::FaultProxy::start(sshd.addr())
        .await
        .unwrap();
    let kh = tempfile::tempdir().unwrap();
    let via = sshd.connect_options_via(&proxy, kh.path(), TransportKind::Russh);
    let mut far = Vec::new();
    for i in 0..100 {
        let name = format!("far-{i}");
        m.open(&name, via.clone(), SessionConfig::default())
            .await
            .unwrap();
        far.push(name);
    }
    proxy.delay(Duration::from_millis(5));
    let far_one = m.get("far-0").unwrap();
    let (mut far_single, mut far_many) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let start = Instant::now();
        far_one.exec("true", ExecOptions::default()).await.unwrap();
        far_single.push(start.elapsed());
        let start = Instant::now();
        let all = m.exec_many(&far, "true", ExecOptions::default()).await;
        far_many.push(start.elapsed());
        assert!(all
            .iter()
            .all(|r| r.result.as_ref().is_ok_and(|r| r.exit_code == Some(0))));
    }
    let far_single = Stats::of(&far_single).unwrap();
    let far_many = Stats::of(&far_many).unwrap();

    let names_files = [
        "ours, russh (AES-256-GCM)",
        "ours, OpenSSH backend",
        "OpenSSH `sftp`",
        "OpenSSH `scp`",
        "OpenSSH `sftp`, AES-256-GCM",
    ];
    let sftp_up = median(&up[2]);
    let sftp_down = median(&down[2]);
    let mut rows = Vec::new();
    for i in 0..5 {
        rows.push(Row {
            what: format!("upload {} MiB, {}", size >> 20, names_files[i]),
            value: format!("{:.0} MB/s", median(&up[i])),
            vs: format!("{:.2}× `sftp`", median(&up[i]) / sftp_up),
        });
    }
    for i in 0..5 {
        rows.push(Row {
            what: format!("download {} MiB, {}", size >> 20, names_files[i]),
            value: format!("{:.0} MB/s", median(&down[i])),
            vs: format!("{:.2}× `sftp`", median(&down[i]) / sftp_down),
        });
    }
    let names_tunnel = [
        "ours `-L`, russh",
        "ours `-L`, OpenSSH backend",
        "OpenSSH `ssh -L` (master)",
    ];
    let ssh_l = median(&tunnel[2]);
    for i in 0..3 {
        rows.push(Row {
            what: format!("tunnel {} MiB one way, {}", size >> 20, names_tunnel[i]),
            value: format!("{:.0} MB/s", median(&tunnel[i])),
            vs: format!("{:.2}× `ssh -L`", median(&tunnel[i]) / ssh_l),
        });
    }
    rows.push(Row {
        what: "`exec(\"true\")` on one session (p50)".into(),
        value: ms(single.p50),
        vs: "—".into(),
    });
    rows.push(Row {
        what: "`exec_many` of `true` over 100 sessions (p50)".into(),
        value: ms(many.p50),
        vs: format!(
            "{:.2}× one exec; 100 in a row: {}",
            many.p50.as_secs_f64() / single.p50.as_secs_f64(),
            ms(single.p50 * 100)
        ),
    });
    rows.push(Row {
        what: "`exec(\"true\")` on one session, 10 ms round trip (p50)".into(),
        value: ms(far_single.p50),
        vs: "—".into(),
    });
    rows.push(Row {
        what: "`exec_many` over 100 sessions, 10 ms round trip (p50)".into(),
        value: ms(far_many.p50),
        vs: format!(
            "{:.2}× one exec",
            far_many.p50.as_secs_f64() / far_single.p50.as_secs_f64()
        ),
    });
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "## files, tunnels, fan-out — {} round(s), {cpus} CPUs, loopback sshd, tmpfs files\n",
        rounds
    );
    println!("{}", table(&rows));
    drop(master);
    let _ = std::process::Command::new("ssh")
        .args(sshd.ssh_args())
        .arg("-S")
        .arg(&gcm_ctl)
        .args(["-O", "exit"])
        .arg(&host)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    m.shutdown().await;
}
