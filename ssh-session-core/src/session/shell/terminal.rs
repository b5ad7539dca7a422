//! The shell's terminal as the session sees it: the screen a person would see (for
//! full-screen programs), and the PTY's `\n` → `\r\n` translation undone exactly, so that
//! output is the bytes the program wrote.

use std::num::NonZeroU16;

use crate::protocol::OnlcrDecoder;

/// Lines kept above the screen, for a person who attaches later and scrolls back (about
/// 100 KiB for an 80-column terminal).
const SCROLLBACK: usize = 1000;

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
            screen: vt100::Parser::new(nonzero(rows), nonzero(cols), SCROLLBACK),
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

    /// The lines that scrolled off the top (plain text, oldest first), then the screen as
    /// [`formatted`](Self::formatted) draws it: what a person who attaches sees, with
    /// the recent past in their own terminal's scrollback. A full-screen program's
    /// alternate screen has no past of its own to show.
    pub(super) fn formatted_with_history(&self) -> Vec<u8> {
        let screen = self.screen.screen();
        let lines = screen.scrollback_len();
        if lines == 0 || screen.alternate_screen() {
            return self.formatted();
        }
        let (rows, cols) = screen.size();
        let rows = usize::from(rows.get());
        let mut out = b"\x1b[H\x1b[2J".to_vec();
        // `set_scrollback(n)` shows the screen from `n` lines above it: its first
        // `min(n, rows)` rows are scrollback, read a screenful at a time, oldest first.
        let mut view = screen.clone();
        let mut offset = lines;
        while offset > 0 {
            view.set_scrollback(offset);
            for line in view.rows(0, cols.get()).take(rows.min(offset)) {
                out.extend_from_slice(line.trim_end().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            offset = offset.saturating_sub(rows);
        }
        // Newlines at the bottom row push the lines still on screen into the receiving
        // terminal's scrollback (a clear would only erase them), then the screen is drawn.
        let visible = lines.min(rows - 1);
        out.extend_from_slice(format!("\x1b[{rows};1H").as_bytes());
        out.extend(std::iter::repeat_n(b'\n', visible));
        out.extend_from_slice(&self.formatted());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What another terminal holds after drawing `bytes`: its scrollback, then its screen.
    fn drawn(bytes: &[u8], cols: u16, rows: u16) -> (Vec<String>, String) {
        let mut other = vt100::Parser::new(nonzero(rows), nonzero(cols), 5000);
        other.process(bytes);
        let screen = other.screen().contents();
        let n = other.screen().scrollback_len();
        let mut past = Vec::new();
        let mut offset = n;
        while offset > 0 {
            other.screen_mut().set_scrollback(offset);
            let take = usize::from(rows).min(offset);
            past.extend(
                other
                    .screen()
                    .rows(0, cols)
                    .take(take)
                    .map(|l| l.trim_end().to_string()),
            );
            offset = offset.saturating_sub(usize::from(rows));
        }
        (past, screen)
    }

    #[test]
    fn a_late_joiner_gets_the_lines_above_the_screen_then_the_screen() {
        let mut t = Terminal::new(Some((40, 10)));
        for i in 0..100 {
            t.decode(format!("line {i}\r\n").as_bytes());
        }
        t.decode(b"$ half-typed");
        let (past, screen) = drawn(&t.formatted_with_history(), 40, 10);
        let expected: Vec<String> = (0..91).map(|i| format!("line {i}")).collect();
        assert_eq!(past, expected);
        assert_eq!(screen, t.contents());
        assert_eq!(t.screen.screen().cursor_position(), (9, 12));
    }

    #[test]
    fn a_short_past_and_a_full_screen_program_draw_only_what_there_is() {
        let mut t = Terminal::new(Some((40, 10)));
        t.decode(b"one\r\ntwo\r\n");
        let (past, screen) = drawn(&t.formatted_with_history(), 40, 10);
        assert!(past.is_empty(), "{past:?}");
        assert_eq!(screen, t.contents());
        for i in 0..30 {
            t.decode(format!("{i}\r\n").as_bytes());
        }
        t.decode(b"\x1b[?1049h\x1b[Hvim");
        assert_eq!(t.formatted_with_history(), t.formatted());
    }
}
