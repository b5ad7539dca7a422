//! `cp`, `forward` and `exec a,b,c` with the built binary against the kit's sshd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::Env;

#[test]
fn cp_uploads_and_downloads_files_and_trees() {
    let env = Env::new();
    env.connect("files");
    let remote = format!("/tmp/ssc-cp-{}", std::process::id());
    env.ok(&[
        "exec",
        "files",
        "--",
        &format!("rm -rf {remote} && mkdir -p {remote} && cd {remote}"),
    ]);
    let local = env.dir.path().join("local");
    std::fs::create_dir_all(local.join("tree/sub")).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(local.join("data.bin"), &data).unwrap();
    std::fs::write(local.join("tree/sub/a.txt"), "alpha\n").unwrap();

    // Into an existing directory (the session's cwd, relative), under its own name.
    let out = env.ok(&[
        "cp",
        "--json",
        local.join("data.bin").to_str().unwrap(),
        "files:.",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["bytes"], 300_000);
    assert_eq!(v["to"], format!("files:{remote}/data.bin"));
    let remote_hash = env.ok(&["exec", "files", "--", "sha256sum data.bin | cut -d' ' -f1"]);
    assert_eq!(v["sha256"].as_str().unwrap(), remote_hash.trim());

    // A directory needs -r, as with cp.
    let tree = local.join("tree");
    let out = env.run(&["cp", tree.to_str().unwrap(), "files:tree"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cp -r"),
        "{out:?}"
    );
    env.ok(&["cp", "-r", tree.to_str().unwrap(), "files:tree"]);
    assert_eq!(
        env.ok(&["exec", "files", "--", "cat tree/sub/a.txt"]),
        "alpha\n"
    );

    // And back.
    let back = env.dir.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    env.ok(&["cp", "files:data.bin", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(back.join("data.bin")).unwrap(), data);
    env.ok(&[
        "cp",
        "-r",
        &format!("files:{remote}/tree"),
        back.join("tree2").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(back.join("tree2/sub/a.txt")).unwrap(),
        "alpha\n"
    );

    // Mistakes are clear and exit 64 or with the failure's code.
    let out = env.run(&["cp", "a", "b"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME:PATH"));
    let out = env.run(&["cp", "files:/nope/x", back.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nope/x") && err.contains("no such file"),
        "{err}"
    );
    env.ok(&["exec", "files", "--", &format!("cd / && rm -rf {remote}")]);
}

/// A one-shot HTTP server on loopback: answers each connection with `body`.
fn http(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let reply = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = c.write_all(reply.as_bytes());
        }
    });
    port
}

fn get(port: u16) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn forward_opens_lists_and_closes_tunnels() {
    let env = Env::new();
    env.connect("tun");
    let port = http("via the cli");
    let listen = env.ok(&["forward", "tun", "-L", &format!("0:127.0.0.1:{port}")]);
    let local: u16 = listen.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");
    assert_eq!(get(local), "via the cli");

    let socks = env.ok(&["forward", "tun", "-D", "0", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&socks).unwrap();
    assert_eq!(v["kind"], "socks");
    let remote = env.ok(&["forward", "tun", "-R", &format!("127.0.0.1:{port}")]);
    let rport = remote.trim().rsplit(':').next().unwrap();
    let via_host = env.ok(&["exec", "tun", "--", &format!("exec 3<>/dev/tcp/127.0.0.1/{rport} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && sed -n '$p' <&3; exec 3<&-")]);
    assert_eq!(via_host, "via the cli");

    let table = env.ok(&["ls"]);
    assert!(
        table.contains("TUNNEL")
            && table.contains("socks")
            && table.contains(&format!("127.0.0.1:{port}")),
        "{table}"
    );
    let listed: serde_json::Value = serde_json::from_str(&env.ok(&["forward", "--json"])).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(listed[0]["bytes_in"].as_u64().unwrap() > 0, "{listed}");

    env.ok(&["forward", "--close", ids[0]]);
    assert!(TcpStream::connect(("127.0.0.1", local)).is_err(), "closed");
    let out = env.run(&["forward", "--close", ids[0]]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no tunnel"),
        "{out:?}"
    );
    let out = env.run(&["forward", "tun", "-L", "8080"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PORT:HOST:HOSTPORT"),
        "{out:?}"
    );
    let out = env.run(&["forward", "tun"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    env.ok(&["close", "tun"]);
    let listed: serde_json::Value = serde_json::from_str(&env.ok(&["forward", "--json"])).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([]),
        "a session's tunnels close with it"
    );
}

#[test]
fn exec_on_several_sessions_prefixes_lines_and_exits_with_the_worst() {
    let env = Env::new();
    env.connect("a");
    env.connect("bb");
    env.connect("c");
    let out = env.run(&["exec", "a,bb,c", "--", "echo one; echo two"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a : one\na : two\nbb: one\nbb: two\nc : one\nc : two\n"
    );
    env.ok(&["exec", "bb", "--", "x=3"]);
    let out = env.run(&["exec", "a,bb,c", "--", "exit ${x:-1}"]);
    assert_eq!(out.status.code(), Some(3), "the worst exit code: {out:?}");
    let out = env.run(&["exec", "a,nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(65), "an unknown session: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope: error: no session named"),
        "{out:?}"
    );
    let out = env.run(&["exec", "a,c", "--timeout", "200ms", "--", "sleep 3"]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("c: still running"),
        "{out:?}"
    );
}

#[test]
fn exec_says_when_a_command_waits_for_a_password() {
    let env = Env::new();
    env.connect("pw");
    let out = env.run(&[
        "exec",
        "pw",
        "--timeout",
        "500ms",
        "--",
        "printf 'Password: '; read -s x",
    ]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("waits for a password at \"Password:\"")
            && err.contains("ssh-session attach pw"),
        "{err}"
    );
    env.ok(&["interrupt", "pw"]);
}
