//! The protocol's messages on the wire: round trips and stable names.

use super::*;

#[test]
fn hello_compatibility() {
    let ours = Hello::client();
    assert!(ours.compatible_with(&ours));
    let other_protocol = Hello {
        protocol: PROTOCOL_VERSION + 1,
        ..Hello::client()
    };
    assert!(!other_protocol.compatible_with(&ours));
    let other_build = Hello {
        version: "0.0.0-other".into(),
        ..Hello::client()
    };
    assert!(!other_build.compatible_with(&ours));
}

#[test]
fn hello_without_daemon_fields_parses() {
    // An older client's hello lacks pid/sessions: it must still be understood so the
    // daemon can answer with its own versions.
    let h: Hello = serde_json::from_str(r#"{"protocol":1,"version":"9.9.9"}"#).unwrap();
    assert_eq!((h.pid, h.sessions), (0, 0));
}

#[test]
fn requests_round_trip_as_single_lines() {
    let requests = [
        Request::Connect {
            name: "web".into(),
            spec: ConnectSpec {
                target: "deploy@web:2222".into(),
                identities: vec!["/k".into()],
                agent_socket: Some("/run/agent.sock".into()),
                ..Default::default()
            },
        },
        Request::Exec {
            name: "web".into(),
            command: "printf 'a\\nb'\n".into(),
            timeout_ms: 5,
            source: Some("cli:/dev/pts/3".into()),
        },
        Request::Interrupt {
            name: "web".into(),
            signal: Interrupt::Kill,
        },
        Request::List,
        Request::Copy(CopySpec {
            name: "web".into(),
            direction: Direction::Upload,
            local: "/tmp/a".into(),
            remote: "b".into(),
            recursive: true,
        }),
        Request::Forward {
            name: "web".into(),
            kind: "local".into(),
            listen: None,
            target: Some("db:5432".into()),
        },
        Request::ExecMany {
            names: vec!["a".into(), "b".into()],
            command: "uptime".into(),
            timeout_ms: 1,
            source: None,
        },
        Request::Shutdown,
    ];
    for r in requests {
        let line = to_line(&r);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let back: Request = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn responses_of_cp_forward_and_many_round_trip() {
    let tunnel = TunnelView {
        id: "t1".into(),
        session: "web".into(),
        kind: "socks".into(),
        listen: "127.0.0.1:1080".into(),
        target: None,
        bytes_out: 1,
        bytes_in: 2,
        last_error: None,
    };
    let responses = [
        Response::Tunnel {
            tunnel: tunnel.clone(),
        },
        Response::Sessions {
            sessions: Vec::new(),
            tunnels: vec![tunnel],
        },
        Response::Progress {
            bytes: 5,
            total: Some(9),
        },
        Response::Many {
            results: vec![ManyView {
                session: "a".into(),
                output: encode(b"x"),
                exit_code: None,
                running: false,
                error: Some((ErrorKind::UnknownSession, "no".into())),
            }],
        },
    ];
    for r in responses {
        let back: Response = serde_json::from_slice(&to_line(&r)).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn connect_spec_without_agent_field_parses() {
    let spec: ConnectSpec = serde_json::from_str(
        r#"{"target":"h","user":null,"port":null,"identities":[],"transport":null,
            "persistent":false,"ssh_config":null,"known_hosts":null,"no_agent":false,
            "connect_timeout_ms":null}"#,
    )
    .unwrap();
    assert_eq!(spec.agent_socket, None);
}

#[test]
fn wire_names_are_stable() {
    let v = serde_json::to_value(Request::Interrupt {
        name: "a".into(),
        signal: Interrupt::Eof,
    })
    .unwrap();
    assert_eq!(v["op"], "interrupt");
    assert_eq!(v["signal"], "EOF");
    let v = serde_json::to_value(Response::Done).unwrap();
    assert_eq!(v["kind"], "done");
    let v = serde_json::to_value(AttachInput::Detach).unwrap();
    assert_eq!(v["op"], "detach");
}

#[test]
fn binary_payloads_are_exact() {
    let bytes: Vec<u8> = (0..=255).collect();
    assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
    assert!(decode("not base64!").is_err());
}
