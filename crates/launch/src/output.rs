//! Reading a child's output with bounded memory: lines cut at a maximum length, and a tail that
//! keeps only the last bytes.

use std::collections::VecDeque;
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

/// Reads `reader` to its end and calls `emit` with each line (without its newline) and how many
/// bytes of it were cut off beyond `max_line_bytes`. Memory use is bounded by `max_line_bytes`
/// plus a fixed read buffer, however long the lines are.
pub(crate) fn read_lines(
    mut reader: impl Read,
    max_line_bytes: usize,
    mut emit: impl FnMut(&[u8], usize),
) {
    let max = max_line_bytes.max(1);
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::with_capacity(max.min(8 * 1024));
    let mut cut = 0usize;
    let append = |line: &mut Vec<u8>, cut: &mut usize, part: &[u8]| {
        let take = (max - line.len()).min(part.len());
        line.extend_from_slice(&part[..take]);
        *cut += part.len() - take;
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut chunk = &buf[..n];
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            append(&mut line, &mut cut, &chunk[..end]);
            emit(&line, cut);
            line.clear();
            cut = 0;
            chunk = &chunk[end + 1..];
        }
        append(&mut line, &mut cut, chunk);
    }
    if !line.is_empty() || cut > 0 {
        emit(&line, cut);
    }
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
