//! Reading the shell's output stream: splitting command output from our markers.

use memchr::memmem;

use super::{Nonce, ShellFlavor};

/// Markers longer than this are given up: the bytes after the token are released as
/// output, so that a token can never hold output back forever. A `$PWD` is at most
/// PATH_MAX = 4096 bytes, but a person's command line (zsh's `C`, bash's `H`) can be a
/// pasted block of any size: zsh's hook cuts it at 64 KiB; a bash block past this bound
/// keeps the text its screen showed.
const MAX_MARKER: usize = 256 * 1024;

/// What the parser found in the stream, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// Bytes exactly as the shell wrote them (PTY line endings still applied).
    Output(Vec<u8>),
    /// The prime ran: the shell's pid and its quoting flavor.
    Ready {
        pid: u32,
        flavor: ShellFlavor,
        cwd: Vec<u8>,
    },
    /// The probe line ran (every shell prints it; see `prime_script`).
    Probe,
    /// Command `id` finished with `exit_code` and left the shell in `cwd`. `editor`: bash's
    /// line editor had come back on (marker kind `L`; see `LinePrefix::editor_off`).
    Done {
        id: u64,
        exit_code: i32,
        cwd: Vec<u8>,
        editor: bool,
    },
    /// Interactive mode is on (`__ss_on` ran): the shell's line editor, prompt and hooks
    /// are a person's now; `cwd` is where it is.
    Interactive { cwd: Vec<u8> },
    /// The interactive prompt was printed: the shell reads a line from here on.
    Prompt,
    /// An interactive command line starts running (bash's `PS0`, zsh's `preexec`), with
    /// its text as the shell's history recorded it (zsh), or empty (bash: see
    /// [`Event::CommandText`]).
    CommandStart { text: Vec<u8> },
    /// bash: the text of the command line that just ran, from its history entry (the
    /// `history 1` line's number stripped, line ends as the program wrote them).
    CommandText { text: Vec<u8> },
    /// The interactive command line finished (bash's `PROMPT_COMMAND`, zsh's `precmd`).
    CommandEnd { exit_code: i32, cwd: Vec<u8> },
}

/// Incremental marker scanner over a byte stream that arrives in arbitrary chunks.
pub(crate) struct MarkerParser {
    nonce: Nonce,
    token: Vec<u8>,
    finder: memmem::Finder<'static>,
    pending: Vec<u8>,
}

impl MarkerParser {
    /// A parser for markers carrying `nonce`.
    pub(crate) fn new(nonce: &Nonce) -> Self {
        let token = nonce.token();
        let finder = memmem::Finder::new(&token).into_owned();
        MarkerParser {
            nonce: nonce.clone(),
            token,
            finder,
            pending: Vec::new(),
        }
    }

    /// The nonce whose markers this parser finds (to prime the same shell again).
    pub(crate) fn nonce(&self) -> &Nonce {
        &self.nonce
    }

    /// Feeds one chunk and appends what it completes to `events`.
    pub(crate) fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) {
        if self.pending.is_empty() {
            // Fast path for bulk output: no copy unless a token (or its prefix) is in sight.
            let consumed = self.scan(data, events);
            self.pending.extend_from_slice(&data[consumed..]);
            return;
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let consumed = self.scan(&buf, events);
        buf.drain(..consumed);
        self.pending = buf;
    }

    /// Releases everything held back (the stream ended): a partial marker is plain output.
    pub(crate) fn finish(&mut self, events: &mut Vec<Event>) {
        if !self.pending.is_empty() {
            events.push(Event::Output(std::mem::take(&mut self.pending)));
        }
    }

    /// Scans `buf`, returns how many leading bytes were fully handled.
    fn scan(&self, buf: &[u8], events: &mut Vec<Event>) -> usize {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.finder.find(rest) {
                Some(at) => {
                    if at > 0 {
                        events.push(Event::Output(rest[..at].to_vec()));
                    }
                    match self.parse_marker(&rest[at..]) {
                        Parsed::Complete(len, event) => {
                            events.push(event);
                            pos += at + len;
                        }
                        // Same nonce but malformed (only possible if the nonce leaked), or
                        // too long: the token is dropped, never shown (it is the session's
                        // secret), and what follows it is output.
                        Parsed::NotOurs => {
                            pos += at + self.token.len();
                        }
                        Parsed::Incomplete => {
                            if rest.len() - at > MAX_MARKER {
                                pos += at + self.token.len();
                            } else {
                                return pos + at;
                            }
                        }
                    }
                }
                None => {
                    let keep = longest_prefix_suffix(rest, &self.token);
                    let emit = rest.len() - keep;
                    if emit > 0 {
                        events.push(Event::Output(rest[..emit].to_vec()));
                    }
                    return pos + emit;
                }
            }
        }
    }

    /// Parses a marker starting with the token at `m[0]`.
    fn parse_marker(&self, m: &[u8]) -> Parsed {
        let t = self.token.len();
        let Some(&kind) = m.get(t) else {
            return Parsed::Incomplete;
        };
        let body = &m[t + 1..];
        match kind {
            b'P' => {
                let Some(nl) = memchr::memchr(b'\n', body) else {
                    return Parsed::Incomplete;
                };
                Parsed::Complete(t + 1 + nl + 1, Event::Probe)
            }
            b'R' | b'D' | b'L' => {
                let Some(end) = self.finder.find(body) else {
                    return Parsed::Incomplete;
                };
                let after = &body[end + t..];
                // After the closing token: 'E', then "\n" (or "\r\n" with ONLCR).
                let tail_len = match after {
                    [b'E', b'\n', ..] => 2,
                    [b'E', b'\r', b'\n', ..] => 3,
                    [b'E'] | [b'E', b'\r'] | [] => return Parsed::Incomplete,
                    _ => return Parsed::NotOurs,
                };
                // R: pid ; flavor ; cwd.  D: id ; exit code ; cwd.  The cwd may hold ';'
                // or a newline: the closing token, not a line end, delimits it.
                let mut fields = body[..end].splitn(3, |&b| b == b';');
                let (Some(first), Some(second), Some(cwd)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Parsed::NotOurs;
                };
                let number =
                    |f: &[u8]| -> Option<i64> { std::str::from_utf8(f).ok()?.parse().ok() };
                let len = t + 1 + end + t + tail_len;
                if kind == b'R' {
                    let Some(pid) = number(first).and_then(|p| u32::try_from(p).ok()) else {
                        return Parsed::NotOurs;
                    };
                    let flavor = match second {
                        b"" => ShellFlavor::Posix,
                        b"z" => ShellFlavor::Zsh,
                        _ => ShellFlavor::Extended,
                    };
                    return Parsed::Complete(
                        len,
                        Event::Ready {
                            pid,
                            flavor,
                            cwd: cwd.to_vec(),
                        },
                    );
                }
                let (Some(id), Some(exit_code)) = (number(first), number(second)) else {
                    return Parsed::NotOurs;
                };
                Parsed::Complete(
                    len,
                    Event::Done {
                        id: id as u64,
                        exit_code: exit_code as i32,
                        cwd: cwd.to_vec(),
                        editor: kind == b'L',
                    },
                )
            }
            b'I' | b'B' | b'C' | b'H' | b'F' => self.parse_interactive(kind, body),
            _ => Parsed::NotOurs,
        }
    }

    /// The marks of interactive mode (`__ss_on`): `TOKEN kind body TOKEN E`, without a line
    /// end, since they are printed inside prompts, where a newline would move the cursor.
    fn parse_interactive(&self, kind: u8, body: &[u8]) -> Parsed {
        let t = self.token.len();
        let Some(end) = self.finder.find(body) else {
            return Parsed::Incomplete;
        };
        match body.get(end + t) {
            None => return Parsed::Incomplete,
            Some(b'E') => {}
            Some(_) => return Parsed::NotOurs,
        }
        let len = t + 1 + end + t + 1;
        let body = &body[..end];
        let event = match kind {
            b'I' => Event::Interactive { cwd: body.to_vec() },
            b'B' if body.is_empty() => Event::Prompt,
            // The body opens with the flag byte `PS0` sets while it prints the mark.
            b'C' if !body.is_empty() => Event::CommandStart {
                text: lines(&body[1..], |line| line),
            },
            b'H' => Event::CommandText {
                text: lines(body, entry_text),
            },
            b'F' => {
                let mut fields = body.splitn(2, |&b| b == b';');
                let (Some(code), Some(cwd)) = (fields.next(), fields.next()) else {
                    return Parsed::NotOurs;
                };
                let Some(exit_code) = std::str::from_utf8(code)
                    .ok()
                    .and_then(|c| c.parse::<i32>().ok())
                else {
                    return Parsed::NotOurs;
                };
                Event::CommandEnd {
                    exit_code,
                    cwd: cwd.to_vec(),
                }
            }
            _ => return Parsed::NotOurs,
        };
        Parsed::Complete(len, event)
    }
}

/// Text the shell printed through its terminal (zsh's `preexec` line; bash's `history N`,
/// each line through `entry_text`): the terminal's `\r\n` back to `\n`, the final line
/// end dropped.
fn lines(body: &[u8], each: impl Fn(&[u8]) -> &[u8]) -> Vec<u8> {
    let body = body.strip_suffix(b"\r\n").unwrap_or(body);
    let mut text = Vec::with_capacity(body.len());
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if i > 0 {
            text.push(b'\n');
        }
        text.extend_from_slice(each(line));
    }
    text
}

/// A line of `history N`: `%5d%c %s` — the number, `*` (edited) or a space, a space, the
/// command line — gives the line; a line without a number (the rest of a multi-line entry)
/// is kept as is.
fn entry_text(line: &[u8]) -> &[u8] {
    let rest = line.trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return line;
    }
    match &rest[digits..] {
        [b'*' | b' ', b' ', text @ ..] => text,
        _ => line,
    }
}

enum Parsed {
    Complete(usize, Event),
    Incomplete,
    NotOurs,
}

/// Length of the longest suffix of `buf` that is a proper prefix of `token`: those bytes may
/// be the start of a marker split across chunks and must wait for the next chunk.
fn longest_prefix_suffix(buf: &[u8], token: &[u8]) -> usize {
    let max = (token.len() - 1).min(buf.len());
    (1..=max)
        .rev()
        .find(|&k| buf[buf.len() - k..] == token[..k])
        .unwrap_or(0)
}

/// Undoes the PTY's ONLCR output translation (`\n` → `\r\n`) exactly.
///
/// ONLCR inserts a `\r` before every `\n` and touches nothing else, so in its output every
/// `\n` is preceded by an inserted `\r`, and replacing each `\r\n` with `\n` restores the
/// program's bytes, binary included (`\r\n` written by a program arrives as `\r\r\n`).
#[derive(Default)]
pub(crate) struct OnlcrDecoder {
    pending_cr: bool,
}

impl OnlcrDecoder {
    /// Decodes one chunk, appending to `out`. A trailing `\r` is held until the next byte.
    pub(crate) fn decode(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if !self.pending_cr && memchr::memchr(b'\r', data).is_none() {
            out.extend_from_slice(data);
            return;
        }
        for &b in data {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    out.push(b'\n');
                    continue;
                }
                out.push(b'\r');
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Releases a held `\r` (the command ended, so no `\n` can follow it).
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "0123456789abcdef0123456789abcdef";

    fn parser() -> MarkerParser {
        MarkerParser::new(&Nonce::fixed(N))
    }

    fn done(rc: i32, cwd: &str) -> String {
        format!("__ss{N}D9;{rc};{cwd}__ss{N}E\r\n")
    }

    /// Feeds `input` split at every possible pair of points, merging adjacent outputs.
    fn parse_all_splits(input: &[u8]) -> Vec<Vec<Event>> {
        let mut results = Vec::new();
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let mut p = parser();
                let mut ev = Vec::new();
                p.feed(&input[..i], &mut ev);
                p.feed(&input[i..j], &mut ev);
                p.feed(&input[j..], &mut ev);
                results.push(merge(ev));
            }
        }
        results
    }

    fn merge(events: Vec<Event>) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for e in events {
            match (out.last_mut(), e) {
                (Some(Event::Output(a)), Event::Output(b)) => a.extend(b),
                (_, e) => out.push(e),
            }
        }
        out
    }

    #[test]
    fn output_then_done_at_any_split() {
        let input = format!("hello\r\nno newline{}", done(3, "/tmp/a;b"));
        for events in parse_all_splits(input.as_bytes()) {
            assert_eq!(
                events,
                vec![
                    Event::Output(b"hello\r\nno newline".to_vec()),
                    Event::Done {
                        id: 9,
                        exit_code: 3,
                        cwd: b"/tmp/a;b".to_vec(),
                        editor: false,
                    }
                ]
            );
        }
    }

    #[test]
    fn spoofed_marker_with_other_nonce_is_output() {
        let fake =
            "__ssffffffffffffffffffffffffffffffffD9;0;/__ssffffffffffffffffffffffffffffffffE\n";
        let input = format!("{fake}{}", done(0, "/"));
        let mut p = parser();
        let mut ev = Vec::new();
        p.feed(input.as_bytes(), &mut ev);
        assert_eq!(
            merge(ev),
            vec![
                Event::Output(fake.as_bytes().to_vec()),
                Event::Done {
                    id: 9,
                    exit_code: 0,
                    cwd: b"/".to_vec(),
                    editor: false,
                }
            ]
        );
    }

    #[test]
    fn command_texts_are_exact() {
        // zsh's line as typed, even when it looks like a history line; bash's entries
        // without their numbers, a continuation line kept as is.
        assert_eq!(lines(b"12  foo\r\nbar", |l| l), b"12  foo\nbar");
        assert_eq!(
            lines(b"   12  ls\r\n   13* vi x\r\n  done\r\n", entry_text),
            b"ls\nvi x\n  done"
        );
        assert_eq!(lines(b"    7    spaced\r\n", entry_text), b"  spaced");
        assert_eq!(lines(b"", entry_text), b"");
    }

    #[test]
    fn interactive_marks_at_any_split() {
        let tok = format!("__ss{N}");
        let input = format!(
            "{tok}I/tmp{tok}Eprompt$ {tok}B{tok}Els\r\n{tok}C1ls -l{tok}Ea b\r\n{tok}H   12* ls -l\r\n   13  | wc\r\n{tok}E{tok}F2;/a;b{tok}E"
        );
        for events in parse_all_splits(input.as_bytes()) {
            assert_eq!(
                merge(events),
                vec![
                    Event::Interactive {
                        cwd: b"/tmp".to_vec()
                    },
                    Event::Output(b"prompt$ ".to_vec()),
                    Event::Prompt,
                    Event::Output(b"ls\r\n".to_vec()),
                    Event::CommandStart {
                        text: b"ls -l".to_vec()
                    },
                    Event::Output(b"a b\r\n".to_vec()),
                    Event::CommandText {
                        text: b"ls -l\n| wc".to_vec()
                    },
                    Event::CommandEnd {
                        exit_code: 2,
                        cwd: b"/a;b".to_vec()
                    },
                ]
            );
        }
        // A mark a program prints without the nonce, or malformed with it, is output.
        let mut p = parser();
        let mut events = Vec::new();
        p.feed(
            format!("{tok}Fx;/{tok}E\x1b]133;D;0\x07").as_bytes(),
            &mut events,
        );
        assert!(
            events.iter().all(|e| matches!(e, Event::Output(_))),
            "{events:?}"
        );
    }

    #[test]
    fn ready_and_probe() {
        let input = format!("motd\r\n__ss{N}R4242;x;/home/a;b\nc__ss{N}E\r\n__ss{N}P\r\n");
        for events in parse_all_splits(input.as_bytes()) {
            assert_eq!(
                events,
                vec![
                    Event::Output(b"motd\r\n".to_vec()),
                    Event::Ready {
                        pid: 4242,
                        flavor: ShellFlavor::Extended,
                        cwd: b"/home/a;b\nc".to_vec(),
                    },
                    Event::Probe
                ]
            );
        }
    }

    #[test]
    fn prefix_of_token_at_end_is_held_then_released() {
        let mut p = parser();
        let mut ev = Vec::new();
        p.feed(b"abc__s", &mut ev);
        assert_eq!(ev, vec![Event::Output(b"abc".to_vec())]);
        ev.clear();
        p.feed(b"x", &mut ev);
        assert_eq!(merge(ev), vec![Event::Output(b"__sx".to_vec())]);
        ev = Vec::new();
        p.feed(b"__ss", &mut ev);
        p.finish(&mut ev);
        assert_eq!(merge(ev), vec![Event::Output(b"__ss".to_vec())]);
    }

    #[test]
    fn unterminated_marker_is_released_after_the_limit_without_the_token() {
        let mut p = parser();
        let mut ev = Vec::new();
        p.feed(format!("__ss{N}D0;").as_bytes(), &mut ev);
        assert!(ev.is_empty());
        p.feed(&vec![b'x'; MAX_MARKER + 10], &mut ev);
        let out = merge(ev);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Event::Output(b) if b.len() == 3 + MAX_MARKER + 10));
        assert!(
            !format!("{out:?}").contains(N),
            "the nonce must never be output"
        );
    }

    #[test]
    fn onlcr_roundtrip_is_exact() {
        let original: &[u8] = b"a\nb\r\nc\r\r\nd\re\r";
        let mut tty = Vec::new();
        for &b in original {
            if b == b'\n' {
                tty.push(b'\r');
            }
            tty.push(b);
        }
        for split in 0..=tty.len() {
            let mut d = OnlcrDecoder::default();
            let mut out = Vec::new();
            d.decode(&tty[..split], &mut out);
            d.decode(&tty[split..], &mut out);
            d.flush(&mut out);
            assert_eq!(out, original, "split at {split}");
        }
    }
}
