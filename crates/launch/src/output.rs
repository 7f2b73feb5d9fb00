//! Reading a child's output with bounded memory: lines cut at a maximum length, and a tail that
//! keeps only the last bytes.

use std::collections::VecDeque;
#[cfg(test)]
use std::io::{ErrorKind, Read};

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line of a child's output, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    /// The line as text (invalid UTF-8 replaced), ending in a marker if it was cut.
    pub text: String,
    /// How many bytes of the line were cut off; 0 for a whole line.
    pub cut_bytes: usize,
}

/// The last `limit` bytes written to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    bytes: VecDeque<u8>,
    limit: usize,
    dropped: bool,
}

impl Tail {
    pub fn new(limit: usize) -> Tail {
        Tail {
            bytes: VecDeque::with_capacity(limit.min(64 * 1024)),
            limit,
            dropped: false,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if data.len() >= self.limit {
            self.dropped |= !self.bytes.is_empty() || data.len() > self.limit;
            self.bytes.clear();
            self.bytes.extend(&data[data.len() - self.limit..]);
            return;
        }
        let excess = (self.bytes.len() + data.len()).saturating_sub(self.limit);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.dropped = true;
        }
        self.bytes.extend(data);
    }

    /// Whether anything was pushed out of the tail.
    pub fn dropped(&self) -> bool {
        self.dropped
    }

    pub fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(a.len() + b.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// The last `capacity` bytes written to it, in a buffer allocated at the first write and then
/// filled by plain copies: it takes whatever a child prints past its log cap, as fast as the
/// child prints it.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    buf: Vec<u8>,
    capacity: usize,
    start: usize,
    len: usize,
    /// Every byte ever pushed, kept or not.
    pub total: u64,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            capacity,
            ..Ring::default()
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let cap = self.capacity;
        if cap == 0 {
            return;
        }
        if self.buf.is_empty() {
            self.buf = vec![0; cap];
        }
        if data.len() >= cap {
            self.buf.copy_from_slice(&data[data.len() - cap..]);
            self.start = 0;
            self.len = cap;
            return;
        }
        let end = (self.start + self.len) % cap;
        let first = (cap - end).min(data.len());
        self.buf[end..end + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
        let len = self.len + data.len();
        if len > cap {
            self.start = (self.start + len - cap) % cap;
            self.len = cap;
        } else {
            self.len = len;
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The bytes kept, oldest first.
    pub fn bytes(&self) -> Vec<u8> {
        let cap = self.capacity;
        let mut out = Vec::with_capacity(self.len);
        if self.start + self.len <= cap {
            out.extend_from_slice(&self.buf[self.start..self.start + self.len]);
        } else {
            out.extend_from_slice(&self.buf[self.start..]);
            out.extend_from_slice(&self.buf[..self.start + self.len - cap]);
        }
        out
    }
}

/// Splits bytes, as they arrive, into lines with bounded memory: a line longer than
/// `max_line_bytes` keeps its first `max_line_bytes` and counts the rest as cut.
pub(crate) struct Lines {
    max: usize,
    line: Vec<u8>,
    cut: usize,
}

impl Lines {
    pub fn new(max_line_bytes: usize) -> Lines {
        let max = max_line_bytes.max(1);
        Lines {
            max,
            line: Vec::with_capacity(max.min(8 * 1024)),
            cut: 0,
        }
    }

    /// Calls `emit` with each line (without its newline) completed by `chunk`, and how many
    /// bytes of it were cut off.
    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(&[u8], usize)) {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            self.append(&chunk[..end]);
            emit(&self.line, self.cut);
            self.line.clear();
            self.cut = 0;
            chunk = &chunk[end + 1..];
        }
        self.append(chunk);
    }

    /// At end of input: emits a last line that had no newline.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8], usize)) {
        if !self.line.is_empty() || self.cut > 0 {
            emit(&self.line, self.cut);
            self.line.clear();
            self.cut = 0;
        }
    }

    /// Takes the line begun but not ended, for a caller that stops splitting lines.
    pub fn take_partial(&mut self) -> Vec<u8> {
        self.cut = 0;
        std::mem::take(&mut self.line)
    }

    fn append(&mut self, part: &[u8]) {
        let take = (self.max - self.line.len()).min(part.len());
        self.line.extend_from_slice(&part[..take]);
        self.cut += part.len() - take;
    }
}

/// Reads `reader` to its end and calls `emit` with each line (without its newline) and how many
/// bytes of it were cut off beyond `max_line_bytes`.
#[cfg(test)]
pub(crate) fn read_lines(
    mut reader: impl Read,
    max_line_bytes: usize,
    mut emit: impl FnMut(&[u8], usize),
) {
    let mut lines = Lines::new(max_line_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        lines.feed(&buf[..n], &mut emit);
    }
    lines.finish(&mut emit);
}

/// The text of a line that may have been cut: a character split by the cut is dropped whole, and
/// a marker says how much is missing.
pub(crate) fn render_line(bytes: &[u8], cut: usize) -> (String, usize) {
    if cut == 0 {
        return (String::from_utf8_lossy(bytes).into_owned(), 0);
    }
    let keep = match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        _ => bytes.len(),
    };
    let cut = cut + bytes.len() - keep;
    let text = format!(
        "{} [… {cut} bytes cut]",
        String::from_utf8_lossy(&bytes[..keep])
    );
    (text, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_the_same_however_the_bytes_arrive() {
        let input = b"one\ntwo long line\n\nlast";
        let whole = lines(input, 5);
        for size in 1..input.len() {
            let mut splitter = Lines::new(5);
            let mut got = Vec::new();
            let mut emit = |l: &[u8], cut: usize| got.push(render_line(l, cut));
            for chunk in input.chunks(size) {
                splitter.feed(chunk, &mut emit);
            }
            splitter.finish(&mut emit);
            assert_eq!(got, whole, "chunks of {size}");
        }
    }

    fn lines(input: &[u8], max: usize) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        read_lines(input, max, |l, cut| out.push(render_line(l, cut)));
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_last_line_without_newline() {
        let got = lines(b"a\nbb\n\nccc", 100);
        let texts: Vec<_> = got.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts, ["a", "bb", "", "ccc"]);
    }

    #[test]
    fn cuts_long_lines_with_a_marker_and_never_splits_a_character() {
        let got = lines("abcdef\néé\n".as_bytes(), 3);
        assert_eq!(got[0], ("abc [… 3 bytes cut]".to_string(), 3));
        // "éé" is four bytes; three would split the second character, so only one is kept.
        assert_eq!(got[1], ("é [… 2 bytes cut]".to_string(), 2));
    }

    #[test]
    fn ring_keeps_the_last_bytes_however_they_arrive() {
        let input: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for size in [1, 3, 7, 10, 11, 64, 999, 1000] {
            let mut ring = Ring::new(10);
            for chunk in input.chunks(size) {
                ring.push(chunk);
            }
            assert_eq!(ring.bytes(), input[990..], "chunks of {size}");
            assert_eq!(ring.total, 1000);
        }
        let mut short = Ring::new(10);
        short.push(b"abc");
        assert_eq!(short.bytes(), b"abc");
    }

    #[test]
    fn tail_keeps_only_the_last_bytes() {
        let mut tail = Tail::new(5);
        tail.push(b"abc");
        assert!(!tail.dropped());
        tail.push(b"defg");
        assert_eq!(tail.text(), "cdefg");
        tail.push(b"0123456789");
        assert_eq!(tail.text(), "56789");
        assert!(tail.dropped());
    }
}
