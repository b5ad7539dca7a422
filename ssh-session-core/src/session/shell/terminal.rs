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

    /// The screen as text, rows joined by newlines.
    pub(super) fn contents(&self) -> String {
        self.screen.screen().contents()
    }
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}
