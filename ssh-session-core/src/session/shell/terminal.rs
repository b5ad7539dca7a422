//! The shell's terminal as the session sees it: the screen a person would see (for
//! full-screen programs), and the PTY's `\n` → `\r\n` translation undone exactly, so that
//! output is the bytes the program wrote.

use std::num::NonZeroU16;

use crate::protocol::OnlcrDecoder;

pub(super) struct Terminal {
    /// `false` for a shell on plain pipes: bytes pass through untouched.
    pty: bool,
    decoder: OnlcrDecoder,
    screen: vt100::Parser,
}

impl Terminal {
    /// A terminal of `(cols, rows)`, or none (plain pipes).
    pub(super) fn new(pty: Option<(u16, u16)>) -> Self {
        let (cols, rows) = pty.unwrap_or((80, 24));
        Terminal {
            pty: pty.is_some(),
            decoder: OnlcrDecoder::default(),
            screen: vt100::Parser::new(nonzero(rows), nonzero(cols), 0),
        }
    }

    /// Output as the program wrote it, from what the terminal shows.
    pub(super) fn decode(&mut self, raw: &[u8]) -> Vec<u8> {
        if !self.pty {
            return raw.to_vec();
        }
        self.screen.process(raw);
        let mut decoded = Vec::with_capacity(raw.len());
        self.decoder.decode(raw, &mut decoded);
        decoded
    }

    /// Bytes the decoder still holds (a trailing `\r` that may start `\r\n`).
    pub(super) fn flush(&mut self) -> Vec<u8> {
        let mut tail = Vec::new();
        self.decoder.flush(&mut tail);
        tail
    }

    /// A new command's output starts: nothing carries over from the last one.
    pub(super) fn new_command(&mut self) {
        self.decoder = OnlcrDecoder::default();
    }

    pub(super) fn resize(&mut self, cols: u16, rows: u16) {
        self.screen.set_size(nonzero(rows), nonzero(cols));
    }

    /// Where the cursor is: (row, column).
    pub(super) fn cursor(&self) -> (u16, u16) {
        self.screen.screen().cursor_position()
    }

    /// What the screen shows from `from` (row, column) to its end, trimmed: the line a
    /// person has typed after a prompt that ended there.
    pub(super) fn text_after(&self, from: (u16, u16)) -> String {
        let screen = self.screen.screen();
        let (rows, cols) = screen.size();
        screen
            .contents_between(from.0, from.1, rows.get(), cols.get())
            .trim()
            .to_string()
    }

    /// The screen as bytes that draw it on another terminal (contents, colours, cursor,
    /// input modes): what a person who attaches sees first.
    pub(super) fn formatted(&self) -> Vec<u8> {
        let screen = self.screen.screen();
        let mut out = b"\x1b[H\x1b[2J".to_vec();
        out.extend_from_slice(screen.state_formatted().as_bytes());
        out
    }

    /// The screen as text, rows joined by newlines.
    pub(super) fn contents(&self) -> String {
        self.screen.screen().contents()
    }
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}
