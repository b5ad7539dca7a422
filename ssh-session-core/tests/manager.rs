//! The manager's lifecycle on a dedicated sshd: metadata, close, and a shutdown that leaves
//! no remote process behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use ssh_session_core::{
    Error, Session, SessionConfig, SessionManager, SessionStatus, TransportKind,
};
use ssh_session_testkit::prelude::*;

fn sshd_children(sshd: &Sshd) -> usize {
    let me = sshd.pid().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
            after.split(' ').nth(1) == Some(me.as_str())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_metadata_and_clean_shutdown() {
    let sshd = Sshd::start_with(SshdOptions::default()).unwrap();
    let m = SessionManager::new();
    let a = m
        .open(
            "alpha",
            sshd.connect_options(backend()),
            SessionConfig::default(),
        )
        .await
        .unwrap();
    let b = m
        .open(
            "beta",
            sshd.connect_options(backend()),
            SessionConfig::default(),
        )
        .await
        .unwrap();
    run(&a, "cd /tmp").await;
    run(&a, "true").await;
    let list = m.list();
    assert_eq!(
        list.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["alpha", "beta"]
    );
    let alpha = &list[0];
    assert_eq!(alpha.host, "127.0.0.1");
    assert_eq!(alpha.port, sshd.port());
    assert_eq!(alpha.user, sshd.user());
    assert_eq!(alpha.transport, TransportKind::Russh);
    assert_eq!(alpha.status, SessionStatus::Connected);
    assert_eq!(alpha.command_count, 2);
    assert_eq!(alpha.cwd, "/tmp");
    assert!(alpha.created <= alpha.last_activity);
    // Both sessions share one pooled connection.
    assert_eq!(m.connection_count(), 1);
    assert!(sshd_children(&sshd) >= 1);

    m.close("beta").await.unwrap();
    assert!(matches!(
        b.exec("true", Default::default()).await,
        Err(Error::Closed { .. })
    ));
    assert_eq!(b.info().status, SessionStatus::Closed);
    assert!(m.get("beta").is_err());
    // The name is free again.
    m.open(
        "beta",
        sshd.connect_options(backend()),
        SessionConfig::default(),
    )
    .await
    .unwrap();

    m.shutdown().await;
    assert!(m.list().is_empty());
    assert!(matches!(
        m.open(
            "gamma",
            sshd.connect_options(backend()),
            SessionConfig::default()
        )
        .await,
        Err(Error::ShutDown)
    ));
    // sshd's per-connection processes go away once our connections are closed.
    let mut left = sshd_children(&sshd);
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = sshd_children(&sshd);
    }
    assert_eq!(left, 0, "connections left open after shutdown");
}

#[test]
fn manager_and_sessions_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<SessionManager>();
    check::<ssh_session_core::ShellSession>();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_open_frees_its_name_and_its_connection() {
    // A proxy that forwards nothing: the handshake hangs until the caller gives up.
    let sshd = Sshd::shared();
    let upstream = format!("127.0.0.1:{}", sshd.port()).parse().unwrap();
    let proxy = ssh_session_testkit::FaultProxy::start(upstream)
        .await
        .unwrap();
    proxy.blackhole(true);
    let m = SessionManager::new();
    let stalled = sshd.connect_options(backend()).port(proxy.port());
    let open = m.open("stuck", stalled, SessionConfig::default());
    assert!(tokio::time::timeout(Duration::from_millis(300), open)
        .await
        .is_err());
    // The name is free again, and the half-made connection is given back.
    assert!(m.names().is_empty(), "{:?}", m.names());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !m.connections().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            m.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = m
        .open(
            "stuck",
            sshd.connect_options(backend()),
            SessionConfig::default(),
        )
        .await
        .unwrap();
    assert_eq!(out(&s, "echo reopened").await, "reopened\n");
    assert_eq!(m.connections().len(), 1);
    m.shutdown().await;
    assert!(m.connections().is_empty());
    proxy.shutdown().await;
}
