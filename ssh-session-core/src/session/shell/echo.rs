//! Removing the terminal's echo of our own command line from a command's output.
//!
//! The prime switches echo off, but a command may switch it back on (`stty sane`, `reset`,
//! `tput reset`, `stty echo`): the terminal then echoes every line we type, and the result
//! would start with our plumbing. The echo is exactly the typed line (the line discipline
//! echoes as the bytes arrive, before the shell has read them, so before any output of the
//! command), so it is removed by matching that line and nothing else: output that merely
//! starts like it is released untouched the moment it differs. When an echo was seen the
//! next line switches echo off again (`LinePrefix::echo_off`).
//!
//! bash's line editor, when it reads the one line that switches it off again
//! (`LinePrefix::editor_off`), prints its prompt (which may arrive after the command began),
//! the code that ends bracketed paste, and a newline, all before the command runs: the
//! filter then drops everything up to that first newline.

/// The echo expected at the start of the current command's output.
#[derive(Default)]
pub(super) struct EchoFilter {
    /// What the terminal may print first, any one of them (empty: nothing expected).
    expect: Vec<Vec<u8>>,
    /// What arrived so far while it is a prefix of one of them (held back).
    held: Vec<u8>,
    /// Drop everything up to and including the first newline instead; then expect
    /// `expect_next` (the line as `set -v` prints it).
    skip_line: bool,
    expect_next: Vec<u8>,
    /// An echo was removed since the last command line was typed.
    seen: bool,
}

impl EchoFilter {
    /// A command line was typed: what the terminal prints of it, if anything, comes first.
    pub(super) fn arm(&mut self, candidates: Vec<Vec<u8>>) {
        self.expect = candidates;
        self.held.clear();
        self.skip_line = false;
        self.seen = false;
    }

    /// A line editor reads the first line typed, `line`: what it prints up to its newline
    /// goes, and then `line` itself if `set -v` prints it.
    pub(super) fn arm_skip_line(&mut self, line: &[u8]) {
        self.expect.clear();
        self.held.clear();
        self.skip_line = true;
        self.expect_next = line.to_vec();
        self.seen = false;
    }

    /// Output decoded from the terminal; returns what belongs to the command.
    pub(super) fn filter(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        if self.skip_line {
            return match memchr::memchr(b'\n', &bytes) {
                Some(nl) => {
                    self.skip_line = false;
                    self.expect = vec![std::mem::take(&mut self.expect_next)];
                    let out = self.filter(bytes[nl + 1..].to_vec());
                    // The editor's line is no echo of ours: echo stays as it was.
                    self.seen = false;
                    out
                }
                None => Vec::new(),
            };
        }
        if self.expect.is_empty() {
            return bytes;
        }
        for (i, &b) in bytes.iter().enumerate() {
            self.held.push(b);
            let held = &self.held;
            if self.expect.iter().any(|e| e == held) {
                self.expect.clear();
                self.held.clear();
                self.seen = true;
                return bytes[i + 1..].to_vec();
            }
            if !self.expect.iter().any(|e| e.starts_with(held)) {
                // Not what we typed: what was held back is output after all.
                let mut out = self.release();
                out.extend_from_slice(&bytes[i + 1..]);
                return out;
            }
        }
        Vec::new()
    }

    /// The command ended: a partial match was output.
    pub(super) fn release(&mut self) -> Vec<u8> {
        self.expect.clear();
        self.skip_line = false;
        std::mem::take(&mut self.held)
    }

    /// Whether the terminal echoed the last command line.
    pub(super) fn seen(&self) -> bool {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(expect: &[u8], chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut f = EchoFilter::default();
        f.arm(vec![expect.to_vec()]);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(f.filter(c.to_vec()));
        }
        out.extend(f.release());
        (out, f.seen())
    }

    #[test]
    fn the_echo_is_removed_across_chunks() {
        let (out, seen) = run(b" a=1;eval x\n", &[b" a=1;", b"eval x\nhi\n"]);
        assert_eq!((out.as_slice(), seen), (&b"hi\n"[..], true));
    }

    #[test]
    fn output_that_only_starts_like_it_is_kept() {
        let (out, seen) = run(b" a=1;eval x\n", &[b" a=1;", b"other\n"]);
        assert_eq!((out.as_slice(), seen), (&b" a=1;other\n"[..], false));
        let (out, _) = run(b" a=1\n", &[b" a"]);
        assert_eq!(out, b" a", "held bytes come back when the command ends");
    }

    #[test]
    fn without_echo_output_passes_at_once() {
        let mut f = EchoFilter::default();
        f.arm(vec![b" a=1\n".to_vec()]);
        assert_eq!(f.filter(b"x".to_vec()), b"x");
        assert_eq!(
            f.filter(b" a=1\n".to_vec()),
            b" a=1\n",
            "only the start is checked"
        );
        assert!(!f.seen());
    }

    #[test]
    fn a_line_editors_line_is_skipped_up_to_its_newline() {
        let mut f = EchoFilter::default();
        f.arm_skip_line(b" set +v\n");
        assert_eq!(f.filter(b"user@host:~$ ".to_vec()), b"");
        assert_eq!(f.filter(b"\x1b[?2004l\r\nout\n".to_vec()), b"out\n");
        assert_eq!(f.filter(b"more\n".to_vec()), b"more\n");
        f.arm_skip_line(b" set +v\n");
        assert_eq!(
            f.filter(b"\n set +v\nout\n".to_vec()),
            b"out\n",
            "verbose echo goes"
        );
    }

    #[test]
    fn any_one_of_the_candidates_is_removed() {
        let mut f = EchoFilter::default();
        f.arm(vec![b"\x1b[?2004l\r\n".to_vec(), b"\n".to_vec()]);
        assert_eq!(f.filter(b"\x1b[?20".to_vec()), b"");
        assert_eq!(f.filter(b"04l\r\nout\n".to_vec()), b"out\n");
        f.arm(vec![b"\x1b[?2004l\r\n".to_vec(), b"\n".to_vec()]);
        assert_eq!(f.filter(b"\nout\n".to_vec()), b"out\n");
        f.arm(vec![b"\x1b[?2004l\r\n".to_vec(), b"\n".to_vec()]);
        assert_eq!(f.filter(b"\x1b[1mout".to_vec()), b"\x1b[1mout");
    }
}
