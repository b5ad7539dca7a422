//! `attach`: an interactive terminal on a session, like `tmux attach`.
//!
//! The session's shell is driven by a completion protocol, so it cannot simply be handed
//! the keyboard. Instead the attach works in two modes:
//! - **at the prompt** (`NAME:CWD$`), a line is edited locally and, on Enter, runs in the
//!   session's shell like an `exec`: cwd, environment and history are the session's own;
//! - **while a command runs**, every keystroke goes straight to the session's PTY (Ctrl-C,
//!   passwords, REPLs, vim), and its output is shown live.
//!
//! [`DETACH_KEY`] (Ctrl-]) leaves at any time; the session and whatever runs in it go on.
//! The remote window size follows the local terminal (SIGWINCH → resize).

use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;

use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::error::CliError;
use crate::output;
use crate::protocol::{decode, encode, AttachInput, Request, Response};

/// The detach key: Ctrl-] (0x1d), as in telnet.
pub(crate) const DETACH_KEY: u8 = 0x1d;

/// Attaches the terminal to session `name` until the detach key; returns the exit code.
pub(crate) async fn run(mut client: Client, name: &str) -> Result<i32, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Invalid(
            "attach needs a terminal on stdin; from scripts use exec, read and send".into(),
        ));
    }
    let (cols, rows) = window_size();
    client
        .send(&Request::Attach {
            name: name.to_string(),
            cols,
            rows,
        })
        .await?;
    let mut view = match client.recv().await? {
        Response::Attached { running, cwd } => View::new(name, cwd, running.is_some()),
        Response::Error { error, message } => {
            return Err(CliError::Remote {
                kind: error,
                message,
            })
        }
        other => return Err(client.protocol(format!("unexpected answer {other:?}"))),
    };
    let _raw = RawMode::enable()?;
    view.print(&format!(
        "[attached to {name}: commands run in its shell; keys go to a running command; Ctrl-] detaches]\n"
    ));
    if !view.running {
        view.prompt();
    }
    let mut keys = read_keys();
    let mut winch = signal(SignalKind::window_change())
        .map_err(|e| CliError::io("watching the terminal size", e))?;
    loop {
        tokio::select! {
            response = client.recv() => {
                let typed_ahead = view.answer(response?).map_err(|e| client.protocol(e))?;
                if !typed_ahead.is_empty() {
                    let (actions, detach) = view.keys(&typed_ahead);
                    for action in actions {
                        client.send(&action).await?;
                    }
                    if detach {
                        client.send(&AttachInput::Detach).await?;
                        break;
                    }
                }
            },
            chunk = keys.recv() => {
                let Some(chunk) = chunk else {
                    // stdin closed: nothing more can be typed; leave the session running.
                    client.send(&AttachInput::Detach).await?;
                    break;
                };
                let (actions, detach) = view.keys(&chunk);
                for action in actions {
                    client.send(&action).await?;
                }
                if detach {
                    client.send(&AttachInput::Detach).await?;
                    break;
                }
            }
            _ = winch.recv() => {
                let (cols, rows) = window_size();
                client.send(&AttachInput::Resize { cols, rows }).await?;
            }
        }
    }
    view.print(&format!(
        "\n[detached from {name}; it keeps running: `ssh-session attach {name}` to return]\n"
    ));
    Ok(0)
}

/// The local screen and line editor.
struct View {
    name: String,
    cwd: String,
    running: bool,
    line: Vec<u8>,
    last_exit: Option<i32>,
    /// Whether the cursor is at the start of a line (to put the prompt on its own line).
    at_line_start: bool,
    colour: bool,
    /// Where the screen goes: stdout (a sink in unit tests).
    out: Box<dyn Write>,
    /// Keys a command did not take because it had ended, typed at the prompt once the
    /// client knows it ended.
    pending: Vec<u8>,
}

impl View {
    fn new(name: &str, cwd: String, running: bool) -> View {
        View {
            name: name.to_string(),
            cwd,
            running,
            line: Vec::new(),
            last_exit: None,
            at_line_start: true,
            colour: output::colour(true),
            out: Box::new(std::io::stdout()),
            pending: Vec::new(),
        }
    }

    /// The pending type-ahead, once at the prompt (while running it stays pending).
    fn take_pending(&mut self) -> Vec<u8> {
        if self.running {
            Vec::new()
        } else {
            std::mem::take(&mut self.pending)
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.at_line_start = last == b'\n';
        }
        let _ = self.out.write_all(bytes);
        let _ = self.out.flush();
    }

    fn print(&mut self, text: &str) {
        if !self.at_line_start && text.starts_with('\n') {
            self.write(b"\n");
        }
        self.write(text.trim_start_matches('\n').as_bytes());
    }

    fn prompt(&mut self) {
        if !self.at_line_start {
            self.write(b"\n");
        }
        let status = match self.last_exit {
            Some(code) if code != 0 => output::paint(self.colour, "31", &format!("[{code}] ")),
            _ => String::new(),
        };
        let place = output::paint(self.colour, "1;34", &format!("{}:{}", self.name, self.cwd));
        let text = format!("{status}{place}$ ");
        self.write(text.as_bytes());
        self.at_line_start = false;
    }

    fn output(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }

    fn finished(&mut self, exit_code: Option<i32>, cwd: String) {
        self.running = false;
        self.last_exit = exit_code;
        if !cwd.is_empty() {
            self.cwd = cwd;
        }
        self.prompt();
    }

    fn failed(&mut self, message: &str) {
        self.print(&format!(
            "\nssh-session: {}\n",
            output::escape_controls(message)
        ));
        self.running = false;
        self.prompt();
    }

    /// A message that changes nothing: a running command is still followed, and at the
    /// prompt the line being edited is shown again below it.
    fn notice(&mut self, message: &str) {
        self.print(&format!(
            "\nssh-session: {}\n",
            output::escape_controls(message)
        ));
        if !self.running {
            self.prompt();
            let line = self.line.clone();
            self.write(&line);
        }
    }

    /// Handles one daemon message; returns type-ahead to replay at the prompt, or what
    /// broke the protocol. Only `Finished` and `Error` (the command could not start, or
    /// following it failed) leave running mode: a `Notice` (keys not delivered while the
    /// session reconnects) does not, since the daemon still follows the command.
    fn answer(&mut self, response: Response) -> Result<Vec<u8>, String> {
        match response {
            Response::Output { data } => {
                self.output(&decode(&data)?);
                Ok(Vec::new())
            }
            Response::Unconsumed { data } => {
                self.pending.extend(decode(&data)?);
                Ok(self.take_pending())
            }
            Response::Finished { exit_code, cwd } => {
                self.finished(exit_code, cwd);
                Ok(self.take_pending())
            }
            Response::Notice { message } => {
                self.notice(&message);
                Ok(Vec::new())
            }
            Response::Error { message, .. } => {
                self.failed(&message);
                Ok(self.take_pending())
            }
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// Handles typed bytes: what to send to the daemon, and whether to detach.
    fn keys(&mut self, chunk: &[u8]) -> (Vec<AttachInput>, bool) {
        let (typed, detach) = match chunk.iter().position(|&b| b == DETACH_KEY) {
            Some(at) => (&chunk[..at], true),
            None => (chunk, false),
        };
        let mut actions = Vec::new();
        let mut i = 0;
        while i < typed.len() {
            if self.running {
                // Everything up to the detach key belongs to the running command.
                actions.push(AttachInput::Input {
                    data: encode(&typed[i..]),
                });
                break;
            }
            let b = typed[i];
            i += 1;
            match b {
                b'\r' | b'\n' => {
                    self.write(b"\n");
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    if line.trim().is_empty() {
                        self.prompt();
                    } else {
                        self.running = true;
                        actions.push(AttachInput::Run { command: line });
                    }
                }
                0x7f | 0x08 => {
                    // Remove one character (all bytes of a UTF-8 sequence); on an empty
                    // line there is nothing to erase, and the prompt must stay intact.
                    if self.line.is_empty() {
                        continue;
                    }
                    while let Some(last) = self.line.pop() {
                        if last & 0xc0 != 0x80 {
                            break;
                        }
                    }
                    self.write(b"\x08 \x08");
                }
                0x03 => {
                    self.line.clear();
                    self.write(b"^C\n");
                    self.prompt();
                }
                0x15 => {
                    self.line.clear();
                    self.write(b"\r\x1b[2K");
                    self.at_line_start = true;
                    self.prompt();
                }
                0x04 if self.line.is_empty() => {
                    self.print("\n[Ctrl-D does not end the session here; Ctrl-] detaches, `ssh-session close` ends it]\n");
                    self.prompt();
                }
                0x1b => {
                    // Skip an escape sequence (arrows, function keys): no line history here.
                    if typed.get(i) == Some(&b'[') || typed.get(i) == Some(&b'O') {
                        i += 1;
                        while i < typed.len() && !typed[i].is_ascii_alphabetic() && typed[i] != b'~'
                        {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                b if b < 0x20 => {}
                b => {
                    self.line.push(b);
                    self.write(&[b]);
                }
            }
        }
        (actions, detach)
    }
}

/// Keystrokes from stdin, read on tokio's blocking pool.
fn read_keys() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// The local terminal's size (80×24 if unknown).
fn window_size() -> (u16, u16) {
    // SAFETY: TIOCGWINSZ fills the winsize we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0
        || unsafe { libc::ioctl(std::io::stdin().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col, ws.ws_row)
    } else {
        (80, 24)
    }
}

/// The terminal in raw input mode (no echo, no line buffering, no signals from Ctrl-C),
/// with output processing kept so `\n` still moves to the start of the next line.
/// Restored on drop.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enable() -> Result<RawMode, CliError> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: tcgetattr/tcsetattr on stdin with termios structs we own.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return Err(CliError::io(
                    "reading the terminal mode",
                    std::io::Error::last_os_error(),
                ));
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            raw.c_oflag |= libc::OPOST | libc::ONLCR;
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return Err(CliError::io(
                    "setting the terminal to raw mode",
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the mode saved from the same descriptor.
        unsafe {
            libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(running: bool) -> View {
        let mut v = View::new("t", "/".into(), running);
        v.colour = false;
        v.out = Box::new(std::io::sink());
        v
    }

    /// What a view writes to the screen, shared with the test.
    #[derive(Clone, Default)]
    struct Screen(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Screen {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.borrow_mut())).unwrap()
        }
    }

    fn watched(running: bool) -> (View, Screen) {
        let mut v = view(running);
        let screen = Screen::default();
        v.out = Box::new(screen.clone());
        (v, screen)
    }

    #[test]
    fn backspace_on_an_empty_line_leaves_the_prompt_alone() {
        let (mut v, screen) = watched(false);
        v.prompt();
        assert_eq!(screen.take(), "t:/$ ");
        let (actions, _) = v.keys(b"\x7f\x08\x7f");
        assert!(actions.is_empty());
        assert_eq!(screen.take(), "", "nothing may be erased");
        // One erase per typed character, multi-byte ones included, and no more.
        v.keys("aé".as_bytes());
        screen.take();
        v.keys(b"\x7f\x7f\x7f");
        assert_eq!(screen.take(), "\x08 \x08\x08 \x08");
        assert!(v.line.is_empty());
    }

    #[test]
    fn only_finished_or_an_error_leave_running_mode() {
        let (mut v, screen) = watched(true);
        // Keys not delivered (the session reconnects): shown, and keys still go to the
        // command, which the daemon still follows.
        let notice = Response::Notice {
            message: "keys not delivered: reconnecting".into(),
        };
        assert_eq!(v.answer(notice), Ok(Vec::new()));
        assert!(v.running);
        assert!(screen.take().contains("keys not delivered"));
        let (actions, _) = v.keys(b"y\r");
        assert_eq!(
            actions,
            [AttachInput::Input {
                data: encode(b"y\r")
            }]
        );
        let finished = Response::Finished {
            exit_code: Some(0),
            cwd: "/tmp".into(),
        };
        v.answer(finished).unwrap();
        assert!(!v.running);
        assert!(screen.take().ends_with("t:/tmp$ "));
        // A command that cannot start (or whose following fails) returns to the prompt.
        v.keys(b"ls\r");
        assert!(v.running);
        let failed = Response::Error {
            error: crate::protocol::ErrorKind::Disconnected,
            message: "session t is disconnected".into(),
        };
        v.answer(failed).unwrap();
        assert!(!v.running);
    }

    #[test]
    fn a_notice_at_the_prompt_redraws_the_line() {
        let (mut v, screen) = watched(false);
        v.prompt();
        v.keys(b"ech");
        screen.take();
        let notice = Response::Notice {
            message: "hm".into(),
        };
        v.answer(notice).unwrap();
        assert_eq!(screen.take(), "\nssh-session: hm\nt:/$ ech");
    }

    #[test]
    fn enter_runs_the_edited_line() {
        let mut v = view(false);
        let (actions, detach) = v.keys(b"echo hix\x7f\r");
        assert!(!detach);
        assert_eq!(
            actions,
            [AttachInput::Run {
                command: "echo hi".into()
            }]
        );
        assert!(v.running);
    }

    #[test]
    fn keys_go_to_a_running_command_until_the_detach_key() {
        let mut v = view(true);
        let (actions, detach) = v.keys(b"abc\x03\x1dignored");
        assert!(detach);
        assert_eq!(
            actions,
            [AttachInput::Input {
                data: encode(b"abc\x03")
            }]
        );
    }

    #[test]
    fn typing_after_enter_in_one_chunk_goes_to_the_command() {
        let mut v = view(false);
        let (actions, _) = v.keys(b"cat\rhello\r");
        assert_eq!(
            actions,
            [
                AttachInput::Run {
                    command: "cat".into()
                },
                AttachInput::Input {
                    data: encode(b"hello\r")
                }
            ]
        );
    }

    #[test]
    fn arrows_and_blank_lines_run_nothing() {
        let mut v = view(false);
        let (actions, _) = v.keys(b"\x1b[A\x1b[D  \r");
        assert!(actions.is_empty());
        assert!(!v.running);
    }
}
