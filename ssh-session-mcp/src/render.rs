//! Terminal output made fit for a language model: escape sequences stripped, line endings
//! normalised, invalid UTF-8 shown lossily, and long output cut in the middle with an
//! explicit marker. Pure functions, so every hostile input is unit-tested here.

/// How to render one result's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Keep the bytes as the terminal got them (lossily decoded) instead of cleaning them.
    pub raw: bool,
    /// The most characters returned; the middle is left out beyond it.
    pub max_chars: usize,
}

/// Rendered output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The text to return.
    pub text: String,
    /// Whether anything was left out (here, or already by the session's own bound).
    pub truncated: bool,
}

/// The smallest cap honoured: below it the marker alone would not fit.
pub const MIN_CHARS: usize = 200;

/// Renders `bytes`; `dropped_upstream` is what the session already left out of the middle.
pub fn render(bytes: &[u8], dropped_upstream: u64, options: RenderOptions) -> Rendered {
    let text = if options.raw {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        clean(bytes)
    };
    let (text, cut) = cap(text, options.max_chars.max(MIN_CHARS), dropped_upstream);
    Rendered {
        text,
        truncated: cut || dropped_upstream > 0,
    }
}

/// Strips escape sequences (CSI, OSC, DCS, ...) with a real terminal parser, so an
/// unterminated or malformed sequence swallows at most itself and never the rest of the
/// output. Keeps `\n` and `\t`; a `\r` not followed by `\n` returns to the start of the
/// line, so a progress bar shows only its last state, as on a screen; backspace erases;
/// other control bytes (NUL, BEL, ...) are dropped; invalid UTF-8 becomes U+FFFD.
pub fn clean(bytes: &[u8]) -> String {
    let mut performer = Cleaner::default();
    let mut parser = vte::Parser::new();
    parser.advance(&mut performer, bytes);
    performer.flush_line();
    performer.out
}

#[derive(Default)]
struct Cleaner {
    out: String,
    /// The line being written, kept apart so a carriage return can rewrite it.
    line: Vec<char>,
    /// Where the next character goes in `line`: its end, unless `\r` or backspace moved it.
    cursor: usize,
}

impl Cleaner {
    fn put(&mut self, c: char) {
        // Overwrite in place after `\r`, as a terminal does; append at the end.
        if self.cursor < self.line.len() {
            self.line[self.cursor] = c;
        } else {
            self.line.push(c);
        }
        self.cursor += 1;
    }

    fn flush_line(&mut self) {
        self.out.extend(self.line.drain(..));
        self.cursor = 0;
    }
}

impl vte::Perform for Cleaner {
    fn print(&mut self, c: char) {
        self.put(c);
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\n' => {
                self.flush_line();
                self.out.push('\n');
            }
            b'\t' => self.put('\t'),
            b'\r' => self.cursor = 0,
            0x08 => self.cursor = self.cursor.saturating_sub(1),
            _ => {}
        }
    }
}

/// Keeps the first third and the last two thirds of `max_chars` (errors are usually at
/// the end), with a marker between them saying what was left out.
fn cap(text: String, max_chars: usize, dropped_upstream: u64) -> (String, bool) {
    let total = text.chars().count();
    if total <= max_chars {
        if dropped_upstream > 0 {
            return (mark_upstream(&text, dropped_upstream), false);
        }
        return (text, false);
    }
    let head_chars = max_chars / 3;
    let tail_chars = max_chars - head_chars;
    let head_end = byte_offset(&text, head_chars);
    let tail_start = byte_offset(&text, total - tail_chars);
    let middle = &text[head_end..tail_start];
    let lines = middle.matches('\n').count();
    let mut bytes = middle.len() as u64;
    bytes += dropped_upstream;
    let marker = format!(
        "\n[... {bytes} bytes ({lines}+ lines) left out; the output was {} characters; \
         narrow the command (grep, head, tail) or raise max_output_chars ...]\n",
        total as u64 + dropped_upstream
    );
    let mut out = String::with_capacity(head_end + marker.len() + text.len() - tail_start);
    out.push_str(&text[..head_end]);
    out.push_str(&marker);
    out.push_str(&text[tail_start..]);
    (out, true)
}

/// The session's own bound already cut the middle: say so where it was cut (we only know
/// how much, not where, so the marker goes in the middle of what we have).
fn mark_upstream(text: &str, dropped: u64) -> String {
    let half = byte_offset(text, text.chars().count() / 2);
    format!(
        "{}\n[... {dropped} bytes left out by the session's output bound ...]\n{}",
        &text[..half],
        &text[half..]
    )
}

fn byte_offset(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(max_chars: usize) -> RenderOptions {
        RenderOptions {
            raw: false,
            max_chars,
        }
    }

    #[test]
    fn strips_colours_titles_and_cursor_moves() {
        let input = b"\x1b[1;31merror\x1b[0m: \x1b]0;title\x07done\x1b[2K\x1b[?25h\n";
        assert_eq!(clean(input), "error: done\n");
    }

    #[test]
    fn keeps_tabs_and_normalises_carriage_returns() {
        assert_eq!(clean(b"a\tb\r\nc\r\n"), "a\tb\nc\n");
        // A progress bar: only its final state remains.
        assert_eq!(clean(b"10%\r50%\r100%\ndone\n"), "100%\ndone\n");
        // A shorter rewrite leaves the rest of the line, as on a screen.
        assert_eq!(clean(b"abcdef\rXY\n"), "XYcdef\n");
        assert_eq!(clean(b"abc\x08\x08X\n"), "aXc\n");
        // Linear, not quadratic, on a huge line rewritten after `\r`.
        let mut big = b"\r".to_vec();
        big.extend(std::iter::repeat_n(b'x', 4 << 20));
        assert_eq!(clean(&big).len(), 4 << 20);
    }

    #[test]
    fn hostile_bytes_never_break_the_result() {
        // Unterminated sequences at the end, NUL, BEL, invalid UTF-8.
        assert_eq!(clean(b"ok\x1b["), "ok");
        assert_eq!(clean(b"ok\x1b]0;never terminated"), "ok");
        assert_eq!(clean(b"a\0b\x07c\n"), "abc\n");
        assert_eq!(clean(b"x\xff\xfey\n"), "x\u{fffd}\u{fffd}y\n");
        // An unterminated OSC swallows only itself once a terminator arrives.
        assert_eq!(
            clean(b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ tail"),
            "link tail"
        );
        // Every single byte value, alone and after ESC: no panic, valid UTF-8.
        for b in 0..=255u8 {
            let _ = clean(&[b]);
            let _ = clean(&[0x1b, b, b'z']);
        }
    }

    #[test]
    fn raw_keeps_the_bytes_lossily() {
        let r = render(
            b"\x1b[31mred\x1b[0m\r\n\xff",
            0,
            RenderOptions {
                raw: true,
                max_chars: 1000,
            },
        );
        assert_eq!(r.text, "\x1b[31mred\x1b[0m\r\n\u{fffd}");
        assert!(!r.truncated);
    }

    #[test]
    fn long_output_keeps_head_and_tail_with_a_marker() {
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let r = render(text.as_bytes(), 0, opts(3000));
        assert!(r.truncated);
        assert!(r.text.starts_with("line 0\nline 1\n"), "{}", &r.text[..50]);
        assert!(r.text.ends_with("line 9999\n"));
        assert!(r.text.contains("bytes ("), "{}", r.text);
        assert!(r.text.contains("left out"));
        // The cap holds, give or take the marker.
        assert!(r.text.chars().count() < 3000 + 250, "{}", r.text.len());
    }

    #[test]
    fn caps_on_character_boundaries() {
        let text = "é".repeat(5000);
        let r = render(text.as_bytes(), 0, opts(MIN_CHARS));
        assert!(r.truncated);
        assert!(r.text.starts_with("éé") && r.text.ends_with("éé"));
    }

    #[test]
    fn short_output_is_untouched_but_an_upstream_cut_is_marked() {
        let r = render(b"hello\n", 0, opts(30_000));
        assert_eq!(r.text, "hello\n");
        assert!(!r.truncated);
        let r = render(b"headtail", 42, opts(30_000));
        assert!(r.truncated);
        assert!(r.text.contains("42 bytes left out"), "{}", r.text);
    }
}
