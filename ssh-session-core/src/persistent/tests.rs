//! Persistent mode's tmux layer, on the test kit's real sshd (the "remote" is this
//! machine): attach and re-attach, exact bytes, the log cap, and a session on top.
//!
//! Each test uses its own tmux socket (`tmux -L`), so tests never share a tmux server, and a
//! guard kills that server and removes its logs even when the test fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ssh_session_testkit::Sshd;

use super::{Gap, TmuxAttachment, TmuxShell};
use crate::transport::russh::RusshTransport;
use crate::transport::{
    Channel, ChannelEvent, EventSource, PtyRequest, ShellRequest, Transport, TunnelStream,
};
use crate::{
    ConnectOptions, Endpoint, ExecOptions, IdentityFile, Interrupt, ReadOptions, Result, Session,
    SessionConfig, SessionManager, ShellSession, TransportKind,
};

/// A private tmux server for one test; killed (with its logs) on drop.
struct Tmux {
    shell: TmuxShell,
}

impl Tmux {
    fn new(test: &str) -> Tmux {
        Tmux {
            shell: TmuxShell {
                socket: format!("sst-{}-{test}", std::process::id()),
                ..TmuxShell::default()
            },
        }
    }

    fn socket(&self) -> &str {
        &self.shell.socket
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", self.socket(), "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
        let dir = Sshd::shared()
            .home()
            .join(".ssh-session/tmux")
            .join(self.socket());
        let _ = std::fs::remove_dir_all(dir);
    }
}

async fn connect() -> Arc<RusshTransport> {
    // The test kit's own options builder returns the public crate's type, not this test
    // build's: the options are spelled out here.
    let sshd = Sshd::shared();
    let options = ConnectOptions::new(sshd.host(), sshd.user())
        .port(sshd.port())
        .identity(IdentityFile::new(sshd.user_key()))
        .known_hosts(sshd.known_hosts())
        .use_agent(false)
        .config_file("/dev/null");
    Arc::new(
        RusshTransport::connect(&options)
            .await
            .expect("connect to the test sshd"),
    )
}

fn pty(cols: u16, rows: u16) -> PtyRequest {
    PtyRequest {
        cols,
        rows,
        ..PtyRequest::default()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Reads events into `buf` until it holds `needle` (10 s at most). The test kit's
/// `read_until` takes the published crate's channel types, not this test build's.
async fn read_until(events: &mut Box<dyn EventSource>, buf: &mut Vec<u8>, needle: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    // Search only what is new (plus an overlap): big outputs stay linear.
    let mut from = 0;
    while find(&buf[from..], needle).is_none() {
        from = buf.len().saturating_sub(needle.len());
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(ChannelEvent::Stdout(d))) => buf.extend_from_slice(&d),
            Ok(Some(_)) => {}
            Ok(None) => panic!(
                "channel ended before {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(buf)
            ),
            Err(_) => panic!(
                "no {:?} within 10 s; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(buf)
            ),
        }
    }
}

/// Opens a new shell and makes it quiet and non-echoing, as a session's prime would.
async fn open_new(tmux: &Tmux, t: &dyn Transport, name: &str) -> (Channel, TmuxAttachment) {
    let (mut ch, att) = tmux
        .shell
        .open(t, name, &pty(91, 33), None)
        .await
        .expect("open");
    assert!(att.created, "{att:?}");
    assert_eq!((att.start, att.gap), (0, None));
    let mut buf = Vec::new();
    ch.input
        .write(b" set +o emacs +o vi; PS1=''; PS2=''; stty -echo; echo ready''ok\n")
        .await
        .unwrap();
    read_until(&mut ch.events, &mut buf, b"readyok\r\n").await;
    (ch, att)
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_and_size() {
    let tmux = Tmux::new("size");
    let t = connect().await;
    let (mut ch, att) = tmux
        .shell
        .open(t.as_ref(), "size", &pty(91, 33), None)
        .await
        .expect("open");
    assert!(att.created);
    assert!(att.tmux_version.starts_with("tmux "), "{att:?}");
    let mut buf = Vec::new();
    // The quotes keep the typed line (echoed by readline) from matching the output.
    ch.input.write(b"echo hel''lo\n").await.unwrap();
    read_until(&mut ch.events, &mut buf, b"hello\r\n").await;
    ch.input.write(b"stty size; echo $TERM\n").await.unwrap();
    read_until(&mut ch.events, &mut buf, b"33 91\r\nxterm-256color\r\n").await;
    assert_eq!(
        att.offset(),
        buf.len() as u64,
        "offset counts delivered bytes"
    );

    ch.input.resize(120, 40).await.unwrap();
    ch.input.write(b"stty size\n").await.unwrap();
    read_until(&mut ch.events, &mut buf, b"40 120\r\n").await;

    // The shell dies: the channel ends, and the tmux session with it.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &att.shell_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while ch.events.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the channel outlived its killed shell");
    assert!(!tmux.shell.kill(t.as_ref(), "size").await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn survives_disconnect_without_loss_or_duplicates() {
    let tmux = Tmux::new("drop");
    let t1 = connect().await;
    let (mut ch, att) = open_new(&tmux, t1.as_ref(), "drop").await;
    let mut before = Vec::new();
    ch.input
        .write(b"X=42; sleep 300 & for i in 1 2 3 4; do echo line$i; sleep 0.5; done\n")
        .await
        .unwrap();
    read_until(&mut ch.events, &mut before, b"line1\r\n").await;
    let consumed = att.offset();
    // Drop the whole connection while the loop still prints.
    t1.close().await;
    drop(ch);
    tokio::time::sleep(Duration::from_millis(700)).await;

    let t2 = connect().await;
    let (mut ch, att2) = tmux
        .shell
        .open(t2.as_ref(), "drop", &pty(91, 33), Some(consumed))
        .await
        .expect("re-attach");
    assert!(!att2.created);
    assert_eq!((att2.start, att2.gap), (consumed, None));
    assert_eq!(att2.incarnation, att.incarnation, "the same tmux session");
    let mut after = Vec::new();
    read_until(&mut ch.events, &mut after, b"line4\r\n").await;
    let mut all = before.clone();
    all.extend_from_slice(&after);
    let mut last = 0;
    for i in 1..=4 {
        let line = format!("line{i}\r\n");
        assert_eq!(count(&all, line.as_bytes()), 1, "{line:?} in {all:?}");
        let at = find(&all, line.as_bytes()).unwrap();
        assert!(at >= last, "out of order: {all:?}");
        last = at;
    }
    assert_eq!(att2.offset(), consumed + after.len() as u64);

    // The shell's state and its background job survived.
    ch.input.write(b"echo X=$X; jobs\n").await.unwrap();
    read_until(&mut ch.events, &mut after, b"X=42\r\n").await;
    read_until(&mut ch.events, &mut after, b"sleep 300").await;

    // The first connection's log reader is gone (no tail left behind per reconnect).
    let pattern = format!("^tail -c .*/tmux/{}/", tmux.socket());
    let mut readers = 0;
    for _ in 0..50 {
        let out = std::process::Command::new("pgrep")
            .args(["-fc", &pattern])
            .output()
            .unwrap();
        readers = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if readers == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(readers, 1, "log readers still running for {pattern}");
    assert!(tmux.shell.kill(t2.as_ref(), "drop").await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_kill_and_fresh_attach() {
    let tmux = Tmux::new("list");
    let t = connect().await;
    assert_eq!(
        tmux.shell.list(t.as_ref()).await.unwrap(),
        Vec::<String>::new()
    );
    let (mut ch, _att) = open_new(&tmux, t.as_ref(), "a.b").await;
    assert_eq!(tmux.shell.list(t.as_ref()).await.unwrap(), vec!["a.b"]);

    // A second client with no offset starts at the end, and says how much it skipped.
    let (_ch2, att2) = tmux
        .shell
        .open(t.as_ref(), "a.b", &pty(91, 33), None)
        .await
        .unwrap();
    assert!(!att2.created);
    assert!(
        matches!(att2.gap, Some(Gap::NotResumed { skipped }) if skipped == att2.start && skipped > 0),
        "{att2:?}"
    );
    // An offset past the end belongs to another shell.
    let (_ch3, att3) = tmux
        .shell
        .open(t.as_ref(), "a.b", &pty(91, 33), Some(1 << 40))
        .await
        .unwrap();
    assert!(matches!(att3.gap, Some(Gap::Ahead { .. })), "{att3:?}");

    let log = Sshd::shared()
        .home()
        .join(".ssh-session/tmux")
        .join(tmux.socket())
        .join("a.b.log");
    assert!(log.exists(), "no log at {log:?}");
    assert!(tmux.shell.kill(t.as_ref(), "a.b").await.unwrap());
    assert_eq!(
        tmux.shell.list(t.as_ref()).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(!tmux.shell.kill(t.as_ref(), "a.b").await.unwrap());
    // The attached channel ends: the session sees its shell gone.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while ch.events.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the channel outlived its killed session");
    assert!(!log.exists(), "kill left {log:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_are_exact_both_ways() {
    let tmux = Tmux::new("bytes");
    let t = connect().await;
    let (mut ch, _att) = open_new(&tmux, t.as_ref(), "bytes").await;
    let mut buf = Vec::new();
    ch.input
        .write(b"printf 'a\\tb\\x01\\xff\\n'; echo end1\n")
        .await
        .unwrap();
    read_until(&mut ch.events, &mut buf, b"end1\r\n").await;
    assert!(find(&buf, b"a\tb\x01\xff\r\nend1\r\n").is_some(), "{buf:?}");
    // Input: UTF-8 and a non-UTF-8 byte reach the shell unchanged.
    ch.input
        .write(b"printf '%s' '\xc3\xa9\xfe' | od -An -tx1 | tr -d ' '; echo end2\n")
        .await
        .unwrap();
    read_until(&mut ch.events, &mut buf, b"end2\r\n").await;
    assert!(find(&buf, b"c3a9fe\r\nend2\r\n").is_some(), "{buf:?}");
    // A long input (several send-keys commands) arrives whole and in order.
    let long: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let line = format!("v={long}; echo ${{#v}} ${{v: -5}}\n");
    ch.input.write(line.as_bytes()).await.unwrap();
    read_until(&mut ch.events, &mut buf, b"3000 ").await;
    let tail: String = long[long.len() - 5..].to_string();
    read_until(
        &mut ch.events,
        &mut buf,
        format!("3000 {tail}\r\n").as_bytes(),
    )
    .await;
    assert!(tmux.shell.kill(t.as_ref(), "bytes").await.unwrap());
}

/// A transport whose shells live in tmux: what a session needs for persistent mode.
#[derive(Debug)]
struct TmuxTransport {
    inner: Arc<RusshTransport>,
    shell: TmuxShell,
    name: String,
    attachment: Mutex<Option<TmuxAttachment>>,
}

#[async_trait]
impl Transport for TmuxTransport {
    fn kind(&self) -> TransportKind {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn open_shell(&self, request: ShellRequest) -> Result<Channel> {
        let pty = request.pty.unwrap_or_default();
        let (channel, att) = self
            .shell
            .open_command(
                self.inner.as_ref(),
                &self.name,
                &pty,
                request.command.as_deref(),
                None,
            )
            .await?;
        *self.attachment.lock().unwrap() = Some(att);
        Ok(channel)
    }
    async fn open_exec(&self, command: &str, pty: Option<PtyRequest>) -> Result<Channel> {
        self.inner.open_exec(command, pty).await
    }
    async fn open_direct_tcpip(&self, host: &str, port: u16) -> Result<Box<dyn TunnelStream>> {
        self.inner.open_direct_tcpip(host, port).await
    }
    async fn open_subsystem(&self, name: &str) -> Result<Box<dyn TunnelStream>> {
        self.inner.open_subsystem(name).await
    }
    async fn forward_remote(
        &self,
        host: &str,
        port: u16,
        relay: std::net::SocketAddr,
    ) -> Result<u16> {
        self.inner.forward_remote(host, port, relay).await
    }
    async fn cancel_remote(&self, host: &str, port: u16) -> Result<()> {
        self.inner.cancel_remote(host, port).await
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_session_on_tmux() {
    let tmux = Tmux::new("session");
    let sshd = Sshd::shared();
    let inner = connect().await;
    let transport = Arc::new(TmuxTransport {
        inner: inner.clone(),
        shell: tmux.shell.clone(),
        name: "sess".into(),
        attachment: Mutex::new(None),
    });
    let endpoint = Endpoint::new(sshd.host(), sshd.user(), sshd.port());
    let s = SessionManager::new()
        .open_with_transport(
            "sess",
            endpoint,
            transport.clone(),
            SessionConfig::default(),
        )
        .await
        .expect("start a session on tmux");
    assert!(
        transport
            .attachment
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .created
    );
    let opts = || ExecOptions::timeout(Duration::from_secs(20));
    s.exec("cd /tmp; export A=1", opts()).await.unwrap();
    let r = s.exec("pwd; echo $A", opts()).await.unwrap();
    assert_eq!(r.text(), "/tmp\n1\n");
    assert_eq!(r.exit_code, Some(0));
    let r = s.exec("printf abc", opts()).await.unwrap();
    assert_eq!(r.text(), "abc");
    let r = s.exec("false", opts()).await.unwrap();
    assert_eq!(r.exit_code, Some(1));

    // Ctrl-C reaches the foreground job through the pane's terminal.
    let r = s
        .exec("sleep 30", ExecOptions::timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(r.is_running());
    s.interrupt(Interrupt::Int).await.unwrap();
    let r = s
        .read_output(ReadOptions {
            wait: Duration::from_secs(10),
            return_on_output: false,
        })
        .await
        .unwrap();
    assert!(!r.is_running());
    assert_eq!(s.exec("echo $A", opts()).await.unwrap().text(), "1\n");

    let tmux_p50 = exec_p50(&s).await;
    // For comparison: the same on a plain PTY channel of its own connection.
    let plain = SessionManager::new()
        .open_with_transport(
            "plain",
            Endpoint::new(sshd.host(), sshd.user(), sshd.port()),
            connect().await,
            SessionConfig::default(),
        )
        .await
        .unwrap();
    let plain_p50 = exec_p50(&plain).await;
    plain.close().await.unwrap();
    eprintln!("exec `true` p50: persistent (tmux) {tmux_p50:?}, plain PTY {plain_p50:?}");
    let _ = tmux.shell.kill(inner.as_ref(), "sess").await;
    s.close().await.unwrap();
}

/// The median time of 200 `exec("true")`, after 20 warm-up runs.
async fn exec_p50(s: &ShellSession) -> Duration {
    let mut times = Vec::with_capacity(200);
    for i in 0..220 {
        let t0 = Instant::now();
        let r = s
            .exec("true", ExecOptions::timeout(Duration::from_secs(20)))
            .await
            .unwrap();
        if i >= 20 {
            times.push(t0.elapsed());
        }
        assert_eq!(r.exit_code, Some(0));
    }
    times.sort();
    times[100]
}

#[tokio::test(flavor = "multi_thread")]
async fn log_is_capped_and_a_late_client_is_told_what_it_lost() {
    let mut tmux = Tmux::new("cap");
    tmux.shell.max_log_bytes = 1 << 20;
    let t = connect().await;
    let (mut ch, att) = open_new(&tmux, t.as_ref(), "cap").await;
    let mut buf = Vec::new();
    // 3 MB of output, then a marker; the live client reads all of it.
    ch.input
        .write(b"head -c 3000000 /dev/zero | tr '\\0' x; echo; echo big''done\n")
        .await
        .unwrap();
    read_until(&mut ch.events, &mut buf, b"bigdone\r\n").await;
    assert!(count(&buf, b"x") >= 3_000_000);
    let end = att.offset();
    let log = Sshd::shared()
        .home()
        .join(".ssh-session/tmux")
        .join(tmux.socket())
        .join("cap.log");
    // The writer checks every 2 s.
    let mut trim = 0u64;
    for _ in 0..60 {
        trim = std::fs::read_to_string(log.with_extension("log.trim"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if trim > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(trim > 0, "the log was never trimmed");
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(meta.len(), end, "offsets are file positions");
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < (1 << 20) + (256 << 10),
        "disk use {} bytes",
        meta.blocks() * 512
    );

    // A client resuming from the start is told what was dropped, then gets real bytes.
    let (mut ch2, att2) = tmux
        .shell
        .open(t.as_ref(), "cap", &pty(91, 33), Some(10))
        .await
        .unwrap();
    assert_eq!(
        att2.gap,
        Some(Gap::Trimmed {
            from: 10,
            lost: trim - 10
        }),
        "{att2:?}"
    );
    assert_eq!(att2.start, trim);
    let mut rest = Vec::new();
    read_until(&mut ch2.events, &mut rest, b"bigdone\r\n").await;
    assert_eq!(trim + rest.len() as u64, end);
    assert!(
        !rest.contains(&0),
        "a resumed client read punched (zero) bytes"
    );
    assert!(tmux.shell.kill(t.as_ref(), "cap").await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_is_off_from_the_start_like_a_pty() {
    let tmux = Tmux::new("echo");
    let t = connect().await;
    // dash has no line editor: what the kernel echoes is all there is.
    let (mut ch, att) = tmux
        .shell
        .open_command(t.as_ref(), "echo", &pty(80, 24), Some("exec dash"), None)
        .await
        .expect("open");
    assert!(att.created);
    let mut buf = Vec::new();
    ch.input
        .write(b"PS1=''; stty -a | tr ' ;' '\\n\\n' | grep -x -- -echo; echo e''nd\n")
        .await
        .unwrap();
    read_until(&mut ch.events, &mut buf, b"end\r\n").await;
    // The first prompt ("$ " or "# "), then only the output: the typed line never shows.
    assert_eq!(
        &buf[1..],
        b" -echo\r\nend\r\n",
        "{:?}",
        String::from_utf8_lossy(&buf)
    );

    // The shell exits: the channel ends (the session sees its shell gone) and the log goes.
    ch.input.write(b"exit\n").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while ch.events.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the channel outlived its shell");
    assert_eq!(
        tmux.shell.list(t.as_ref()).await.unwrap(),
        Vec::<String>::new()
    );
    let log = Sshd::shared()
        .home()
        .join(".ssh-session/tmux")
        .join(tmux.socket())
        .join("echo.log");
    for _ in 0..50 {
        if !log.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!log.exists(), "{log:?} outlived its shell");
    assert!(
        ch.input.write(b"echo hi\n").await.is_err(),
        "typing into a gone shell"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_log_writer_is_restarted_on_attach() {
    let tmux = Tmux::new("writer");
    let t = connect().await;
    let (mut ch, att) = open_new(&tmux, t.as_ref(), "writer").await;
    let log = Sshd::shared()
        .home()
        .join(".ssh-session/tmux")
        .join(tmux.socket())
        .join("writer.log");
    let pid = std::fs::read_to_string(log.with_extension("log.pid")).unwrap();
    let killed = std::process::Command::new("kill")
        .arg(pid.trim())
        .status()
        .unwrap();
    assert!(killed.success());
    // The attached reader ends with its writer.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while ch.events.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok());
    let (mut ch, att2) = tmux
        .shell
        .open(t.as_ref(), "writer", &pty(91, 33), Some(att.offset()))
        .await
        .unwrap();
    assert!(!att2.created);
    let mut buf = Vec::new();
    ch.input.write(b"echo al''ive\n").await.unwrap();
    read_until(&mut ch.events, &mut buf, b"alive\r\n").await;
    assert!(tmux.shell.kill(t.as_ref(), "writer").await.unwrap());
}
