//! Connection pooling and jump hosts, on real sshds, for both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use ssh_session_core::{Error, JumpHost, Session, SessionConfig, SessionManager};
use ssh_session_testkit::prelude::*;

/// Connections sshd accepted so far (one "Accepted publickey" line per authentication).
fn accepted(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

/// The pid of the process that owns the local TCP port `port` (loopback), from /proc.
fn owner_of_local_port(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            std::fs::read_to_string(table)
                .ok()?
                .lines()
                .skip(1)
                .find_map(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    let local_port =
                        u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
                    (local_port == port && cols.get(3) == Some(&"01")).then(|| cols[9].to_string())
                })
        })?;
    let needle = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|proc_dir| {
            let pid: u32 = proc_dir.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(proc_dir.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == needle)
                })
                .then_some(pid)
        })
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

fn is_descendant(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        match parent_of(pid) {
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

/// Known hosts for several sshds in one file, and every sshd's user key offered.
fn chain_opts(
    target: &Sshd,
    hops: &[&Sshd],
    dir: &std::path::Path,
) -> ssh_session_core::ConnectOptions {
    let known = dir.join("known_hosts");
    let mut lines = String::new();
    for sshd in hops.iter().chain(std::iter::once(&target)) {
        lines.push_str(&std::fs::read_to_string(sshd.known_hosts()).unwrap());
    }
    std::fs::write(&known, lines).unwrap();
    let mut o = target.connect_options(backend()).known_hosts(&known);
    for hop in hops {
        o.identities
            .push(ssh_session_core::IdentityFile::new(hop.user_key()));
    }
    o.proxy_jump = hops
        .iter()
        .map(|h| JumpHost {
            host: h.host().into(),
            port: Some(h.port()),
            user: Some(h.user()),
        })
        .collect();
    o
}

conformance! {
    async fn twenty_sessions_share_at_most_two_connections() {
        let sshd = Sshd::start().unwrap();
        let m = SessionManager::new();
        let before = accepted(&sshd);
        // Concurrent opens share one handshake.
        let opens = (0..5).map(|i| {
            let m = m.clone();
            let o = sshd.connect_options(backend());
            async move { m.open(&format!("c{i}"), o, SessionConfig::default()).await }
        });
        for r in futures::future::join_all(opens).await {
            r.unwrap();
        }
        for i in 5..20 {
            m.open(&format!("c{i}"), sshd.connect_options(backend()), SessionConfig::default()).await.unwrap();
        }
        for i in 0..20 {
            let s = m.get(&format!("c{i}")).unwrap();
            assert_eq!(out(&s, &format!("echo {i}")).await, format!("{i}\n"));
        }
        let used = accepted(&sshd) - before;
        assert!(used <= 2, "{used} connections for 20 sessions");
        assert!(m.connection_count() <= 2);
        // The connection closes with its last session.
        for i in 0..20 {
            m.close(&format!("c{i}")).await.unwrap();
        }
        assert_eq!(m.connection_count(), 0);
    }

    async fn max_sessions_opens_another_connection() {
        let sshd = Sshd::start_with(SshdOptions { max_sessions: 10, ..Default::default() }).unwrap();
        let m = SessionManager::new();
        for i in 0..15 {
            m.open(&format!("s{i}"), sshd.connect_options(backend()), SessionConfig::default())
                .await
                .unwrap_or_else(|e| panic!("session {i}: {e}"));
        }
        for i in 0..15 {
            let s = m.get(&format!("s{i}")).unwrap();
            assert_eq!(out(&s, "echo ok").await, "ok\n");
        }
        assert!(m.connection_count() >= 2);
        // A full connection can still signal its commands (the exec goes elsewhere).
        let s = m.get("s0").unwrap();
        let r = s.exec("sleep 30", ssh_session_core::ExecOptions::timeout(Duration::from_millis(200))).await.unwrap();
        assert!(r.is_running());
        s.interrupt(ssh_session_core::Interrupt::Term).await.unwrap();
        assert_eq!(finish(&s).await.exit_code, Some(143));
        m.shutdown().await;
        assert_eq!(m.connection_count(), 0);
    }

    async fn two_hop_proxy_jump_really_goes_through_the_bastions() {
        let bastion1 = Sshd::start().unwrap();
        let bastion2 = Sshd::start().unwrap();
        let target = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = SessionManager::new();
        let s = m
            .open("via", chain_opts(&target, &[&bastion1, &bastion2], dir.path()), SessionConfig::default())
            .await
            .unwrap();
        // The target sees a client port owned by the last bastion's sshd: it was bastion2
        // that opened the TCP connection to the target, on our behalf.
        let conn = out(&s, "echo $SSH_CONNECTION").await;
        let client_port: u16 = conn.split_whitespace().nth(1).unwrap().parse().unwrap();
        let owner = owner_of_local_port(client_port).expect("owner of the target's client port");
        assert!(is_descendant(owner, bastion2.pid()), "port {client_port} owned by {owner}, not bastion2");
        assert!(accepted(&bastion1) >= 1 && accepted(&bastion2) >= 1);
        assert_eq!(out(&s, "cd /tmp; pwd").await, "/tmp\n");
        m.shutdown().await;
    }

    async fn a_refusing_or_changed_hop_is_named() {
        let bastion = Sshd::start().unwrap();
        let target = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = SessionManager::new();
        // The bastion refuses our key.
        let mut o = chain_opts(&target, &[&bastion], dir.path());
        o.identities.retain(|i| i.path != bastion.user_key());
        let e = m.open("refused", o, SessionConfig::default()).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&format!("127.0.0.1:{}", bastion.port())), "{text}");
        if let Error::JumpHost { index, source, .. } = &e {
            assert_eq!(*index, 1);
            assert!(matches!(**source, Error::AuthFailed { .. }), "{source}");
        }
        // The bastion's host key changed.
        let mut o = chain_opts(&target, &[&bastion], dir.path());
        let known = std::fs::read_to_string(bastion.wrong_known_hosts()).unwrap()
            + &std::fs::read_to_string(target.known_hosts()).unwrap();
        let known_path = dir.path().join("changed");
        std::fs::write(&known_path, known).unwrap();
        o.known_hosts = known_path;
        let e = m.open("changed", o, SessionConfig::default()).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("CHANGED") && text.contains(&bastion.port().to_string()), "{text}");
        // A dead hop: nothing listens there.
        let mut o = chain_opts(&target, &[&bastion], dir.path());
        o.proxy_jump[0].port = Some(ssh_session_testkit::free_port());
        let e = m.open("dead", o, SessionConfig::default()).await.unwrap_err();
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        assert!(m.list().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_hop_is_replaced_not_reused() {
    let bastion = Sshd::start().unwrap();
    let target = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = SessionManager::new();
    let o = chain_opts(&target, &[&bastion], dir.path());
    let first = m
        .open("first", o.clone(), SessionConfig::default())
        .await
        .unwrap();
    let conn = out(&first, "echo $SSH_CONNECTION").await;
    let client_port: u16 = conn.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Kill the bastion process that carries our tunnel.
    let carrier = owner_of_local_port(client_port).unwrap();
    std::process::Command::new("kill")
        .arg("-9")
        .arg(carrier.to_string())
        .status()
        .unwrap();
    // The session notices, reconnects through a new chain and carries on.
    for _ in 0..200 {
        if first.info().reconnects >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first.info().reconnects, 1, "{:?}", first.info().status);
    let again = out(&first, "echo $SSH_CONNECTION").await;
    assert_ne!(again, conn, "a new tunnel, not the dead one");
    let second = m.open("second", o, SessionConfig::default()).await.unwrap();
    assert_eq!(out(&second, "echo fresh").await, "fresh\n");
    m.shutdown().await;
}

/// The SHA-256 fingerprint of a private key file's public half, as sshd logs it.
fn fingerprint(key: &std::path::Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

conformance! {
    async fn ssh_config_aliases_include_match_and_two_hops() {
        let b1 = Sshd::start().unwrap();
        let b2 = Sshd::start().unwrap();
        let target = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let known = d.join("known_hosts_all");
        let all: String = [&b1, &b2, &target]
            .iter()
            .map(|s| std::fs::read_to_string(s.known_hosts()).unwrap())
            .collect();
        std::fs::write(&known, all).unwrap();
        let user = target.user();
        std::fs::write(
            d.join("bastions.conf"),
            format!(
                "Host b2\n  HostName 127.0.0.1\n  Port {}\n  User {user}\n  IdentityFile {}\n  UserKnownHostsFile {}\n",
                b2.port(), b2.user_key().display(), known.display()
            ),
        )
        .unwrap();
        let config = d.join("config");
        std::fs::write(
            &config,
            format!(
                "Include {inc}\n\
                 Host b1\n  HostName 127.0.0.1\n  Port {p1}\n  User {user}\n  IdentityFile {k1}\n  UserKnownHostsFile {known}\n\
                 Host app\n  HostName 127.0.0.1\n  Port {pt}\n  ProxyJump b1,b2\n  UserKnownHostsFile {known}\n\
                 Match originalhost app\n  User {user}\n  IdentityFile {kt}\n  IdentitiesOnly yes\n\
                 Host *\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
                inc = d.join("bastions.conf").display(),
                p1 = b1.port(),
                k1 = b1.user_key().display(),
                pt = target.port(),
                kt = target.user_key().display(),
                known = known.display(),
            ),
        )
        .unwrap();
        let o = ssh_session_core::ConnectOptions::new("app", &user)
            .transport(backend())
            .use_agent(false);
        let resolved = ssh_session_core::config::resolve_host("app", Some(&config)).await.unwrap();
        let o = resolved.apply_to(o).unwrap();
        let m = SessionManager::new();
        let s = m.open("app", o, SessionConfig::default()).await.unwrap();
        assert_eq!(out(&s, "whoami").await.trim(), user);
        // Routed through b2 (which opened the TCP connection to the target)...
        let conn = out(&s, "echo $SSH_CONNECTION").await;
        let client_port: u16 = conn.split_whitespace().nth(1).unwrap().parse().unwrap();
        let owner = owner_of_local_port(client_port).unwrap();
        assert!(is_descendant(owner, b2.pid()), "not through b2: {conn}");
        // ...with the key the Match block names, and each bastion with its own key.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(target.log().contains(&fingerprint(target.user_key())), "{}", target.log());
        assert!(b1.log().contains(&fingerprint(b1.user_key())));
        assert!(b2.log().contains(&fingerprint(b2.user_key())));
        m.shutdown().await;
    }
}
