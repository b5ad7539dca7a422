//! The fault-injecting proxy, against a small echo server on loopback, and
//! once in front of a real sshd with the OpenSSH client.
//!
//! Timing assertions are lower bounds only: the machine is shared, so
//! anything can be slower than expected, but a delay can never be shorter.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ssh, text};
use ssh_session_testkit::{CutMode, FaultProxy, Sshd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Upper limit for anything that should happen; only reached on failure.
const LIMIT: Duration = Duration::from_secs(10);
/// How long a stalled read is given to (wrongly) return.
const STALL: Duration = Duration::from_millis(300);

/// Starts an echo server on loopback: every connection gets back what it
/// sends, and a FIN once it has sent one.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn proxied_echo() -> FaultProxy {
    FaultProxy::start(echo_server().await).await.unwrap()
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    timeout(LIMIT, TcpStream::connect(proxy.addr()))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// Sends `msg` and reads back as many bytes, within [`LIMIT`].
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    read_n(stream, msg.len()).await
}

async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut back = vec![0; n];
    timeout(LIMIT, stream.read_exact(&mut back))
        .await
        .expect("echo timed out")
        .expect("echo failed");
    back
}

/// The first read's result, within [`LIMIT`].
async fn read_once(stream: &mut TcpStream) -> io::Result<usize> {
    let mut buf = [0; 64];
    timeout(LIMIT, stream.read(&mut buf))
        .await
        .expect("read timed out")
}

/// Deterministic bytes of varying value, so reordering or loss shows.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

#[tokio::test]
async fn forwards_many_chunks_both_ways_and_passes_the_fin_on() {
    let proxy = proxied_echo().await;
    let mut other = connect(&proxy).await;
    assert_eq!(round_trip(&mut other, b"second pair").await, b"second pair");

    let stream = connect(&proxy).await;
    let chunks: Vec<Vec<u8>> = (0..300).map(|i| pattern(1 + i * 37 % 9000, i)).collect();
    let sent: Vec<u8> = chunks.concat();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        for chunk in chunks {
            w.write_all(&chunk).await.unwrap();
        }
        // Half-close: the echo server answers with its own FIN, which the
        // proxy must pass back.
        w.shutdown().await.unwrap();
        w
    });
    let mut received = Vec::new();
    timeout(LIMIT, r.read_to_end(&mut received))
        .await
        .expect("echo timed out")
        .unwrap();
    let _w = writer.await.unwrap();
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "bytes were changed or reordered");
    assert_eq!(proxy.accepted(), 2);
    assert_eq!(round_trip(&mut other, b"still there").await, b"still there");
}

#[tokio::test]
async fn cut_reset_makes_the_client_read_fail_with_econnreset() {
    let proxy = proxied_echo().await;
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");
    assert_eq!(proxy.connections(), 1);

    proxy.cut(CutMode::Reset).await;
    assert_eq!(proxy.connections(), 0);
    let err = read_once(&mut stream).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");

    // A cut is an event: the next connection works.
    let mut next = connect(&proxy).await;
    assert_eq!(round_trip(&mut next, b"again").await, b"again");
}

#[tokio::test]
async fn cut_fin_gives_the_client_end_of_file() {
    let proxy = proxied_echo().await;
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");

    proxy.cut(CutMode::Fin).await;
    assert_eq!(proxy.connections(), 0);
    assert_eq!(read_once(&mut stream).await.unwrap(), 0);
}

#[tokio::test]
async fn blackhole_stalls_without_closing_and_lifting_it_delivers_in_order() {
    let proxy = proxied_echo().await;
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"before").await, b"before");

    proxy.blackhole(true);
    stream.write_all(b"held").await.unwrap();
    let mut buf = [0; 16];
    let stalled = timeout(STALL, stream.read(&mut buf)).await;
    assert!(
        stalled.is_err(),
        "read returned during a blackhole: {stalled:?}"
    );
    // Accepted, but stalled as well.
    let mut late = connect(&proxy).await;
    late.write_all(b"late").await.unwrap();
    let stalled = timeout(STALL, late.read(&mut buf)).await;
    assert!(
        stalled.is_err(),
        "read returned during a blackhole: {stalled:?}"
    );
    assert_eq!(
        proxy.connections(),
        2,
        "a blackhole must not close anything"
    );

    proxy.blackhole(false);
    // Held-back bytes come first, then new traffic.
    assert_eq!(read_n(&mut stream, 4).await, b"held");
    assert_eq!(round_trip(&mut stream, b"after").await, b"after");
    assert_eq!(read_n(&mut late, 4).await, b"late");
}

#[tokio::test]
async fn a_stalled_pair_can_still_be_cut() {
    let proxy = proxied_echo().await;
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"before").await, b"before");
    proxy.blackhole(true);
    stream.write_all(b"lost").await.unwrap();

    proxy.cut(CutMode::Reset).await;
    let err = read_once(&mut stream).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(proxy.connections(), 0);
}

#[tokio::test]
async fn delay_adds_at_least_the_delay_each_way_and_keeps_order() {
    let proxy = proxied_echo().await;
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"warm up").await, b"warm up");

    // Set on a live pair: it must apply at once.
    let delay = Duration::from_millis(150);
    proxy.delay(delay);
    let start = Instant::now();
    assert_eq!(round_trip(&mut stream, b"ping").await, b"ping");
    let rtt = start.elapsed();
    assert!(
        rtt >= 2 * delay,
        "round trip {rtt:?} with a {delay:?} delay"
    );

    // Many chunks in flight under the delay still arrive in order.
    let msg = pattern(200_000, 3);
    let (mut r, mut w) = stream.into_split();
    let to_send = msg.clone();
    let writer = tokio::spawn(async move {
        for chunk in to_send.chunks(1000) {
            w.write_all(chunk).await.unwrap();
        }
        w
    });
    let mut back = vec![0; msg.len()];
    timeout(LIMIT, r.read_exact(&mut back))
        .await
        .expect("echo timed out")
        .unwrap();
    let w = writer.await.unwrap();
    assert!(back == msg, "bytes were changed or reordered under a delay");

    proxy.delay(Duration::ZERO);
    let mut stream = r.reunite(w).unwrap();
    assert_eq!(round_trip(&mut stream, b"fast").await, b"fast");
}

#[tokio::test]
async fn refuse_new_refuses_connections_but_keeps_live_ones() {
    let proxy = proxied_echo().await;
    let mut live = connect(&proxy).await;
    assert_eq!(round_trip(&mut live, b"one").await, b"one");

    proxy.refuse_new(true).await.unwrap();
    let err = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(round_trip(&mut live, b"two").await, b"two");
    assert_eq!(proxy.accepted(), 1);

    proxy.refuse_new(false).await.unwrap();
    let mut next = connect(&proxy).await;
    assert_eq!(round_trip(&mut next, b"three").await, b"three");
    assert_eq!(proxy.connections(), 2);

    // Quick toggles, and repeated calls, leave it listening and working.
    for on in [true, true, false, true, false, false] {
        proxy.refuse_new(on).await.unwrap();
    }
    let mut last = connect(&proxy).await;
    assert_eq!(round_trip(&mut last, b"four").await, b"four");
    assert_eq!(proxy.accepted(), 3);
}

#[tokio::test]
async fn unreachable_upstream_resets_the_client() {
    // A port nobody listens on: bound, then closed.
    let upstream = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let mut stream = connect(&proxy).await;
    let err = read_once(&mut stream).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test]
async fn non_loopback_upstream_is_rejected() {
    let err = FaultProxy::start("192.0.2.1:22".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

/// Waits until the runtime runs no more than `tasks` tasks.
async fn settle_to(tasks: usize) {
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = Instant::now() + LIMIT;
    while metrics.num_alive_tasks() > tasks {
        assert!(
            Instant::now() < deadline,
            "{} tasks still alive, expected {tasks}",
            metrics.num_alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_closes_everything_and_leaves_no_task() {
    let upstream = echo_server().await;
    // Only the echo server's accept task runs now.
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    assert_eq!(round_trip(&mut a, b"a").await, b"a");
    assert_eq!(round_trip(&mut b, b"b").await, b"b");
    proxy.blackhole(true); // a stalled pair must be closed too
    assert_eq!(proxy.connections(), 2);

    proxy.shutdown().await;
    assert_eq!(proxy.connections(), 0);
    for stream in [&mut a, &mut b] {
        // FIN or RST, depending on what was pending; never a stall.
        assert!(matches!(read_once(stream).await, Ok(0) | Err(_)));
    }
    let err = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    // The echo tasks end once the proxy's upstream sockets are closed.
    settle_to(baseline).await;
}

#[tokio::test]
async fn drop_stops_every_task() {
    let upstream = echo_server().await;
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"x").await, b"x");
    let addr = proxy.addr();

    drop(proxy);
    assert!(matches!(read_once(&mut stream).await, Ok(0) | Err(_)));
    settle_to(baseline).await;
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

#[tokio::test]
async fn openssh_client_runs_a_command_through_the_proxy() {
    let sshd = Sshd::shared();
    let proxy = FaultProxy::start(([127, 0, 0, 1], sshd.port()).into())
        .await
        .unwrap();
    let mut args = sshd.ssh_args();
    let p = args.iter().position(|a| a == "-p").expect("-p in args");
    args[p + 1] = proxy.port().to_string();
    // known_hosts names the host by sshd's own port; the alias makes ssh
    // look the key up under that name instead of the proxy's port.
    args.push("-o".into());
    args.push(format!("HostKeyAlias=[127.0.0.1]:{}", sshd.port()));
    args.push(sshd.host().into());
    args.push("echo ok".into());

    let out = tokio::task::spawn_blocking(move || ssh(&args, b"", LIMIT))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}\nlog:\n{}",
        text(&out.stderr),
        sshd.log()
    );
    assert_eq!(text(&out.stdout), "ok\n");
    assert_eq!(proxy.accepted(), 1);
}
