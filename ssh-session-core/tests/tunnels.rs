//! Port forwarding against the kit's real sshd on both backends: an HTTP request through
//! `-L`, SOCKS5 (by address and by name) and `-R`; byte counts; closing; bad specs; and
//! every kind working again after the kit's proxy cut the session's link.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ssh_session_core::tunnel::{TunnelKind, TunnelSpec};
use ssh_session_core::{ErrorKind, Session, SessionConfig, SessionManager, SessionStatus};
use ssh_session_testkit::prelude::*;
use ssh_session_testkit::{free_port, CutMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A one-line HTTP server on loopback answering every request with `body`, until dropped.
struct Http {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Http {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn http(body: &'static str) -> Http {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(reply.as_bytes()).await;
                let _ = c.shutdown().await;
            });
        }
    });
    Http { addr, task }
}

/// `GET /` over `stream`; the body of the answer.
async fn get(mut stream: TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut answer))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
    answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

fn port_of(listen: &str) -> u16 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// A SOCKS5 CONNECT by hand (no authentication), to `target` given as an address or, with
/// `name`, as a host name the server side resolves.
async fn socks_connect(proxy: u16, name: Option<&str>, port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).await.unwrap();
    assert_eq!(hello, [5, 0], "no authentication accepted");
    let mut req = vec![5, 1, 0];
    match name {
        Some(name) => {
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
        }
        None => req.extend_from_slice(&[1, 127, 0, 0, 1]),
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[..2], [5, 0], "the CONNECT succeeded");
    s
}

/// Runs `GET /` on the remote host (the session's shell, bash's /dev/tcp) against `port`.
async fn get_from_host(s: &ssh_session_core::ShellSession, port: u16) -> String {
    out(
        s,
        &format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET / HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n' >&3 && sed -n '$p' <&3; exec 3<&-"
        ),
    )
    .await
}

/// A server that reads each connection to its end (the client's half-close) and only
/// then answers with the count: what HTTP/1.0 uploads and many protocols rely on.
async fn counter() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut all = Vec::new();
                if c.read_to_end(&mut all).await.is_ok() {
                    let _ = c.write_all(format!("got {}", all.len()).as_bytes()).await;
                }
            });
        }
    });
    addr
}

/// Sends `n` bytes, half-closes, and reads the answer.
async fn send_then_half_close(mut c: TcpStream, n: usize) -> String {
    c.write_all(&vec![b'x'; n]).await.unwrap();
    c.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), c.read_to_string(&mut answer))
        .await
        .expect("the end of our input reached the server through the tunnel")
        .unwrap();
    answer
}

conformance! {
    async fn a_half_close_goes_through_every_kind() {
        let server = counter().await;
        let (m, s) = session("tun-half").await;
        let target = server.to_string();
        let l = m.open_tunnel("tun-half", TunnelSpec::local(None, &target)).await.unwrap();
        let c = TcpStream::connect(("127.0.0.1", port_of(&l.listen))).await.unwrap();
        assert_eq!(send_then_half_close(c, 300_000).await, "got 300000");
        let d = m.open_tunnel("tun-half", TunnelSpec::socks(None)).await.unwrap();
        let c = socks_connect(port_of(&d.listen), None, server.port()).await;
        assert_eq!(send_then_half_close(c, 1000).await, "got 1000");
        let r = m.open_tunnel("tun-half", TunnelSpec::remote(None, &target)).await.unwrap();
        let c = TcpStream::connect(("127.0.0.1", port_of(&r.listen))).await.unwrap();
        assert_eq!(send_then_half_close(c, 1000).await, "got 1000", "through -R from the host side");
        drop(s);
        m.shutdown().await;
    }

    async fn http_through_local_socks_and_remote_tunnels() {
        let server = http("through the tunnel").await;
        let (m, s) = session("tun-kinds").await;
        let target = server.addr.to_string();

        let l = m.open_tunnel("tun-kinds", TunnelSpec::local(None, &target)).await.unwrap();
        assert_eq!((l.kind, l.target.as_deref()), (TunnelKind::Local, Some(target.as_str())));
        assert!(l.listen.starts_with("127.0.0.1:"), "loopback by default: {}", l.listen);
        for _ in 0..3 {
            let c = TcpStream::connect(("127.0.0.1", port_of(&l.listen))).await.unwrap();
            assert_eq!(get(c).await, "through the tunnel");
        }

        let d = m.open_tunnel("tun-kinds", TunnelSpec::socks(None)).await.unwrap();
        let c = socks_connect(port_of(&d.listen), None, server.addr.port()).await;
        assert_eq!(get(c).await, "through the tunnel");
        let c = socks_connect(port_of(&d.listen), Some("localhost"), server.addr.port()).await;
        assert_eq!(get(c).await, "through the tunnel", "a name, resolved on the host");

        let r = m.open_tunnel("tun-kinds", TunnelSpec::remote(None, &target)).await.unwrap();
        assert!(r.listen.starts_with("127.0.0.1:") && port_of(&r.listen) != 0, "{}", r.listen);
        assert_eq!(get_from_host(&s, port_of(&r.listen)).await, "through the tunnel");

        let listed = m.tunnels();
        assert_eq!(listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [&l.id, &d.id, &r.id]);
        let by_id = |id: &str| listed.iter().find(|t| t.id == id).unwrap().clone();
        let (l2, d2, r2) = (by_id(&l.id), by_id(&d.id), by_id(&r.id));
        assert_eq!((l2.connections, d2.connections, r2.connections), (3, 2, 1));
        for t in [&l2, &d2, &r2] {
            assert!(t.bytes_out > 40 && t.bytes_in > 60, "{t:?}");
            assert_eq!(t.session, "tun-kinds");
        }

        // Closing one stops its listener and its open connections; the others go on.
        let mut open = TcpStream::connect(("127.0.0.1", port_of(&l.listen))).await.unwrap();
        open.write_all(b"GET / HTTP/1.1\r\n").await.unwrap(); // never finished
        tokio::time::sleep(Duration::from_millis(200)).await;
        m.close_tunnel(&l.id).await.unwrap();
        let mut buf = [0u8; 64];
        let ended = tokio::time::timeout(Duration::from_secs(10), open.read(&mut buf)).await;
        assert!(matches!(ended, Ok(Ok(0)) | Ok(Err(_))), "an open connection ends with its tunnel: {ended:?}");
        assert!(TcpStream::connect(("127.0.0.1", port_of(&l.listen))).await.is_err(), "closed");
        let e = m.close_tunnel(&l.id).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains(&d.id), "lists the others: {e}");
        m.close_tunnel(&r.id).await.unwrap();
        let gone = out(&s, &format!("exec 3<>/dev/tcp/127.0.0.1/{} && echo open; exec 3<&-", port_of(&r.listen))).await;
        assert!(!gone.contains("open\n"), "the host no longer listens: {gone:?}");

        // Closing the session closes its tunnels.
        m.close("tun-kinds").await.unwrap();
        assert!(m.tunnels().is_empty());
        assert!(TcpStream::connect(("127.0.0.1", port_of(&d.listen))).await.is_err());
        m.shutdown().await;
    }

    async fn bad_specs_are_refused_clearly_and_nothing_is_left_open() {
        let (m, _s) = session("tun-bad").await;
        let e = m.open_tunnel("tun-bad", TunnelSpec::local(None, "nohost")).await.unwrap_err();
        assert!(e.to_string().contains("HOST:PORT"), "{e}");
        let e = m.open_tunnel("tun-bad", TunnelSpec::local(Some("127.0.0.1:99999"), "a:1")).await.unwrap_err();
        assert!(e.to_string().contains("listen address"), "{e}");
        let busy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let taken = busy.local_addr().unwrap().to_string();
        let e = m.open_tunnel("tun-bad", TunnelSpec::local(Some(&taken), "127.0.0.1:1")).await.unwrap_err();
        assert!(e.to_string().contains(&taken) && e.to_string().contains("another port"), "{e}");
        let mut socks = TunnelSpec::socks(None);
        socks.target = Some("a:1".into());
        assert!(m.open_tunnel("tun-bad", socks).await.unwrap_err().to_string().contains("no target"));
        let e = m.open_tunnel("nope", TunnelSpec::socks(None)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownSession);
        assert!(m.tunnels().is_empty());

        // A target nothing listens on: the connection is refused and the failure listed.
        let closed = free_port();
        let t = m.open_tunnel("tun-bad", TunnelSpec::local(None, &format!("127.0.0.1:{closed}"))).await.unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", port_of(&t.listen))).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf)).await.unwrap().unwrap_or(0);
        assert_eq!(n, 0, "closed without data");
        let listed = &m.tunnels()[0];
        assert!(listed.last_error.as_deref().unwrap_or_default().contains(&closed.to_string()), "{listed:?}");
        m.shutdown().await;
    }

    async fn tunnels_work_again_after_the_link_is_cut() {
        let server = http("after the cut").await;
        let sshd = Sshd::shared();
        let dir = tempfile::tempdir().unwrap();
        let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
        let mut o = sshd.connect_options_via(&proxy, dir.path(), backend());
        o.server_alive_interval = Some(Duration::from_secs(1));
        o.server_alive_count_max = 2;
        let m = SessionManager::new();
        let s = m.open("tun-cut", o, SessionConfig::default()).await.unwrap();
        let target = server.addr.to_string();
        let l = m.open_tunnel("tun-cut", TunnelSpec::local(None, &target)).await.unwrap();
        let d = m.open_tunnel("tun-cut", TunnelSpec::socks(None)).await.unwrap();
        let r = m.open_tunnel("tun-cut", TunnelSpec::remote(None, &target)).await.unwrap();
        assert_eq!(get_from_host(&s, port_of(&r.listen)).await, "after the cut");

        proxy.cut(CutMode::Reset).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(s.info().reconnects >= 1 && s.info().status == SessionStatus::Connected) {
            assert!(Instant::now() < deadline, "never reconnected: {:?}", s.info().status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The same listeners, over the new link.
        let c = TcpStream::connect(("127.0.0.1", port_of(&l.listen))).await.unwrap();
        assert_eq!(get(c).await, "after the cut");
        let c = socks_connect(port_of(&d.listen), None, server.addr.port()).await;
        assert_eq!(get(c).await, "after the cut");
        // The remote forward is asked for again by itself; give it a moment to land.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = get_from_host(&s, port_of(&r.listen)).await;
            if got == "after the cut" {
                break;
            }
            assert!(Instant::now() < deadline, "the remote forward never came back: {got:?} {:?}", m.tunnels());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(m.tunnels().len(), 3);
        m.shutdown().await;
    }

    async fn a_remote_forward_comes_back_after_a_stalled_link() {
        // A stall, unlike a reset, leaves the host's sshd holding the old connection (and
        // its port) for a while: the forward must come back anyway, on that port or, once
        // it has waited long enough, on another that the listing shows.
        let server = http("after the stall").await;
        let sshd = Sshd::shared();
        let dir = tempfile::tempdir().unwrap();
        let proxy = FaultProxy::start(sshd.addr()).await.unwrap();
        let mut o = sshd.connect_options_via(&proxy, dir.path(), backend());
        o.server_alive_interval = Some(Duration::from_secs(1));
        o.server_alive_count_max = 2;
        let m = SessionManager::new();
        let s = m.open("tun-stall", o, SessionConfig::default()).await.unwrap();
        let r = m.open_tunnel("tun-stall", TunnelSpec::remote(None, &server.addr.to_string())).await.unwrap();
        assert_eq!(get_from_host(&s, port_of(&r.listen)).await, "after the stall");

        proxy.blackhole(true);
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.info().status == SessionStatus::Connected {
            assert!(Instant::now() < deadline, "the stall was never noticed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proxy.blackhole(false);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listed = m.tunnels()[0].clone();
            if s.info().status == SessionStatus::Connected {
                let got = get_from_host(&s, port_of(&listed.listen)).await;
                if got == "after the stall" {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the remote forward never came back: {listed:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        m.shutdown().await;
    }
}
