//! Bounded command output: the first and last bytes are kept, the middle is counted.

use std::collections::VecDeque;

/// Keeps at most `head_cap + tail_cap` bytes of a stream of any length. The head shows how a
/// command started (often its error), the tail where it ended; the bytes between are dropped
/// and counted, so a command printing gigabytes costs bounded memory.
#[derive(Debug)]
pub(crate) struct OutputBuffer {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl OutputBuffer {
    /// A buffer keeping at most `cap` bytes: a quarter for the head, the rest for the tail.
    pub(crate) fn new(cap: usize) -> Self {
        let head_cap = cap / 4;
        OutputBuffer {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap: cap - head_cap,
            total: 0,
        }
    }

    /// Appends bytes, dropping from the middle once full.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let mut rest = data;
        if self.head.len() < self.head_cap {
            let n = (self.head_cap - self.head.len()).min(rest.len());
            self.head.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        if rest.is_empty() {
            return;
        }
        if rest.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&rest[rest.len() - self.tail_cap..]);
        } else {
            let overflow = (self.tail.len() + rest.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(rest);
        }
    }

    /// Bytes written so far, kept or not.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Everything still held from stream offset `offset` on, and how many bytes after
    /// `offset` were dropped and are missing from the returned bytes.
    pub(crate) fn read_from(&self, offset: u64) -> (Vec<u8>, u64) {
        let head_len = self.head.len() as u64;
        let tail_start = self.total - self.tail.len() as u64;
        let mut out = Vec::new();
        let mut pos = offset.min(self.total);
        if pos < head_len {
            out.extend_from_slice(&self.head[pos as usize..]);
            pos = head_len;
        }
        let mut skipped = 0;
        if pos < tail_start {
            skipped = tail_start - pos;
            pos = tail_start;
        }
        let start = (pos - tail_start) as usize;
        let (a, b) = self.tail.as_slices();
        if start < a.len() {
            out.extend_from_slice(&a[start..]);
            out.extend_from_slice(b);
        } else {
            out.extend_from_slice(&b[start - a.len()..]);
        }
        (out, skipped)
    }

    /// Takes everything (for moving idle output into a command).
    pub(crate) fn take_all(&mut self) -> (Vec<u8>, u64) {
        let got = self.read_from(0);
        *self = OutputBuffer::new(self.head_cap + self.tail_cap);
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut b = OutputBuffer::new(100);
        b.push(b"hello ");
        b.push(b"world");
        assert_eq!(b.read_from(0), (b"hello world".to_vec(), 0));
        assert_eq!(b.read_from(6), (b"world".to_vec(), 0));
        assert_eq!(b.read_from(11), (Vec::new(), 0));
    }

    #[test]
    fn huge_output_keeps_head_and_tail_and_counts_the_rest() {
        let mut b = OutputBuffer::new(8);
        for chunk in [&b"abcdef"[..], b"ghij", b"klmnopqrstuvwxyz"] {
            b.push(chunk);
        }
        assert_eq!(b.total(), 26);
        let (bytes, skipped) = b.read_from(0);
        assert_eq!(bytes, b"abuvwxyz");
        assert_eq!(skipped, 18);
        // A reader that already saw 24 bytes gets just the last two.
        assert_eq!(b.read_from(24), (b"yz".to_vec(), 0));
        // One in the dropped middle learns how much it missed.
        assert_eq!(b.read_from(10), (b"uvwxyz".to_vec(), 10));
    }

    #[test]
    fn tail_wraps_across_many_small_pushes() {
        let mut b = OutputBuffer::new(12);
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        for c in data.chunks(7) {
            b.push(c);
        }
        let (bytes, skipped) = b.read_from(0);
        assert_eq!(&bytes[..3], &data[..3]);
        assert_eq!(&bytes[3..], &data[data.len() - 9..]);
        assert_eq!(skipped, 5000 - 12);
    }
}
