//! Bad input gets a clear, actionable error and leaves everything else working.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::{Duration, Instant};

use ssh_session_core::{
    ConnectOptions, Error, HostKeyPolicy, IdentityFile, Session, SessionConfig, SessionManager,
    TransportKind,
};
use ssh_session_testkit::free_port;
use ssh_session_testkit::prelude::*;

async fn open(m: &SessionManager, name: &str, opts: ConnectOptions) -> Result<(), Error> {
    m.open(name, opts, SessionConfig::default())
        .await
        .map(|_| ())
}

conformance! {
    async fn names_are_validated_unique_and_listed_when_unknown() {
        let (m, _s) = session("first").await;
        for bad in ["", "has space", "semi;colon", "slash/name", &"x".repeat(65)] {
            let e = open(&m, bad, Sshd::shared().connect_options(backend())).await.unwrap_err();
            assert!(matches!(e, Error::InvalidName { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains("A-Z"), "{e}");
        }
        let e = open(&m, "first", Sshd::shared().connect_options(backend())).await.unwrap_err();
        assert!(matches!(e, Error::DuplicateName { .. }), "{e}");
        open(&m, "second", Sshd::shared().connect_options(backend())).await.unwrap();
        let e = m.get("third").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no session named \"third\"; open sessions: first, second"
        );
        assert!(matches!(
            m.close("nope").await,
            Err(Error::UnknownSession { .. })
        ));
        assert_eq!(out(&m.get("first").unwrap(), "echo ok").await, "ok\n");
        m.shutdown().await;
    }

    async fn unreachable_hosts_fail_fast_and_clearly() {
        let m = SessionManager::new();
        // Nothing listens: refused at once.
        let port = free_port();
        let e = open(&m, "refused", Sshd::shared().connect_options(backend()).port(port))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        // Something accepts but never speaks SSH: the connect timeout ends it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = Instant::now();
        let e = open(
            &m,
            "silent",
            Sshd::shared().connect_options(backend())
                .port(port)
                .connect_timeout(Duration::from_millis(700)),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::ConnectTimeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // Failed opens leave no trace, and the manager still works.
        assert!(m.list().is_empty());
        open(&m, "refused", Sshd::shared().connect_options(backend())).await.unwrap();
        m.shutdown().await;
    }

    async fn wrong_key_is_refused_with_what_was_tried() {
        let sshd = Sshd::shared();
        let m = SessionManager::new();
        let mut o = sshd.connect_options(backend());
        o.identities = vec![IdentityFile::new(sshd.unauthorized_key())];
        let e = open(&m, "wrong-key", o).await.unwrap_err();
        assert!(matches!(e, Error::AuthFailed { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("{}@127.0.0.1", sshd.user())),
            "{text}"
        );
        assert!(
            text.contains(&sshd.unauthorized_key().display().to_string()),
            "{text}"
        );
    }

    async fn every_key_type_and_encrypted_keys_work() {
        let sshd = Sshd::shared();
        let m = SessionManager::new();
        for (name, key) in [
            ("rsa", sshd.user_key_rsa()),
            ("ecdsa", sshd.user_key_ecdsa()),
        ] {
            let mut o = sshd.connect_options(backend());
            o.identities = vec![IdentityFile::new(key)];
            open(&m, name, o)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let (path, pass) = sshd.encrypted_user_key();
        let mut o = sshd.connect_options(backend());
        o.identities = vec![IdentityFile::with_passphrase(path, pass)];
        match backend() {
            TransportKind::Russh => open(&m, "encrypted", o).await.unwrap(),
            TransportKind::OpenSsh => {
                // ssh runs with BatchMode: it cannot be handed a passphrase. It must say so.
                let e = open(&m, "encrypted", o).await.unwrap_err();
                assert!(e.to_string().contains("ssh-agent"), "{e}");
            }
        }
        // A fresh manager: `m` would reuse the connection already authenticated with this key.
        let fresh = SessionManager::new();
        let mut o = sshd.connect_options(backend());
        o.identities = vec![IdentityFile::new(path)];
        let e = open(&fresh, "no-passphrase", o).await.unwrap_err();
        let mut o = sshd.connect_options(backend());
        o.identities = vec![IdentityFile::with_passphrase(path, "wrong")];
        let wrong = open(&fresh, "bad-passphrase", o).await.unwrap_err();
        match backend() {
            TransportKind::Russh => {
                assert!(
                    matches!(e, Error::Key { .. }) && e.to_string().contains("passphrase"),
                    "{e}"
                );
                assert!(matches!(wrong, Error::Key { .. }), "{wrong}");
            }
            // ssh cannot be given a passphrase at all: both are plain refusals.
            TransportKind::OpenSsh => {
                assert!(matches!(e, Error::AuthFailed { .. }), "{e}");
                assert!(matches!(wrong, Error::AuthFailed { .. }), "{wrong}");
            }
        }
        let expected: &[&str] = match backend() {
            TransportKind::Russh => &["ecdsa", "encrypted", "rsa"],
            TransportKind::OpenSsh => &["ecdsa", "rsa"],
        };
        assert_eq!(m.names(), expected);
        m.shutdown().await;
    }

    async fn host_keys_are_checked() {
        let sshd = Sshd::shared();
        let m = SessionManager::new();
        // Changed key: refused, naming the file and the line.
        let e = open(
            &m,
            "changed",
            sshd.connect_options(backend()).known_hosts(sshd.wrong_known_hosts()),
        )
        .await
        .unwrap_err();
        match &e {
            Error::HostKeyChanged { line, file, .. } => {
                assert_eq!(*line, 3);
                assert_eq!(file, sshd.wrong_known_hosts());
            }
            other => panic!("expected HostKeyChanged, got {other}"),
        }
        assert!(e.to_string().contains("line 3"), "{e}");
        // Even accept-new never accepts a changed key.
        let e = open(
            &m,
            "changed2",
            sshd.connect_options(backend())
                .known_hosts(sshd.wrong_known_hosts())
                .host_key_policy(HostKeyPolicy::AcceptNew),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::HostKeyChanged { .. }), "{e}");
        // Unknown host: strict refuses; accept-new records it; then strict accepts.
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("known_hosts");
        let e = open(&m, "unknown", sshd.connect_options(backend()).known_hosts(&fresh))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::UnknownHostKey { .. }), "{e}");
        if backend() == TransportKind::Russh {
            // `ssh` in strict mode does not print the fingerprint; russh's check has it.
            assert!(e.to_string().contains("SHA256:"), "{e}");
        }
        open(
            &m,
            "learn",
            sshd.connect_options(backend())
                .known_hosts(&fresh)
                .host_key_policy(HostKeyPolicy::AcceptNew),
        )
        .await
        .unwrap();
        let recorded = std::fs::read_to_string(&fresh).unwrap();
        assert!(
            recorded.contains(&format!("[127.0.0.1]:{}", sshd.port())),
            "{recorded}"
        );
        open(&m, "known-now", sshd.connect_options(backend()).known_hosts(&fresh))
            .await
            .unwrap();
        m.shutdown().await;
    }

    async fn unsendable_commands_are_refused_and_the_session_lives_on() {
        let (m, s) = session("nul").await;
        let e = s.exec("echo a\0b", Default::default()).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidCommand { .. }) && e.to_string().contains("NUL"),
            "{e}"
        );
        assert_eq!(out(&s, "echo fine").await, "fine\n");
        // A megabyte-long command is delivered whole.
        let big = format!(": {}; echo big", "y".repeat(1 << 20));
        assert_eq!(out(&s, &big).await, "big\n");
        m.shutdown().await;
    }
}
