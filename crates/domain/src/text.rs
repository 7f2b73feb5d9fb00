//! Text that people and agents write: what is accepted on input, and how it is shown on a
//! terminal without letting it act on that terminal.
//!
//! Titles, comments, block reasons and summaries may come from an agent, which is an adversary:
//! an ANSI or OSC escape in a title could recolour, retitle or rewrite the operator's terminal,
//! and a newline in it could forge a line of `agentgrid status`. So a title is one line with no
//! control characters at all (refused on input), and every face that prints such text passes it
//! through [`one_line`] or [`multi_line`], which turn every control character into a visible
//! escape. Bidirectional overrides are escaped too: they make text read differently from what it
//! is.

use std::borrow::Cow;

/// The longest title accepted, in bytes.
pub const MAX_TITLE_BYTES: usize = 500;
/// The longest task body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest comment accepted, in bytes.
pub const MAX_COMMENT_BYTES: usize = 64 * 1024;

/// A validation score with two decimals, or more when two would round a score below 1 up to
/// `1.00`: a score short of full marks never reads as full marks.
pub fn score(score: f64) -> String {
    let mut precision = 2;
    while precision < 6
        && score < 1.0
        && format!("{score:.precision$}")
            .parse::<f64>()
            .unwrap_or(score)
            >= 1.0
    {
        precision += 1;
    }
    format!("{score:.precision$}")
}

/// A validation score next to its threshold, with as many decimals as it takes for the text
/// to tell the truth: a score below the threshold never reads as one that meets it (`0.999` is
/// not printed as `1.00`). A failing score says it is below: "score 0.999 < threshold 1.00".
pub fn score_against(score: f64, threshold: f64) -> String {
    let shown = |precision: usize| format!("{score:.precision$}");
    let mut precision = 2;
    // The validators' own tolerance: a sum such as 0.1 + 0.2 meets a threshold it reaches.
    let below = score + 1e-9 < threshold;
    while precision < 6 && below && shown(precision).parse::<f64>().unwrap_or(score) >= threshold {
        precision += 1;
    }
    if below {
        format!("score {} < threshold {threshold:.2}", shown(precision))
    } else {
        format!("score {}", shown(precision))
    }
}

/// Whether `c` must never reach a terminal as it is: C0 and C1 controls, DEL, and the
/// bidirectional embedding, override and isolate characters.
fn is_unsafe(c: char) -> bool {
    // U+2028 and U+2029 are not control characters, but break a line for many readers.
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// The text with every control character escaped (`\n`, `\t`, `\x1b`, `\u{202e}`), for a value
/// that must stay on one line: a title, a reason, a table cell.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// The text with every control character escaped except line breaks and tabs, for a body or a
/// comment printed as a block. The caller indents each line, so a line of the text cannot pass
/// for a line of the output around it.
pub fn multi_line(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_unsafe(c) || keep(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// Checks a title: non-empty, one line, no control characters, at most [`MAX_TITLE_BYTES`].
pub fn check_title(title: &str) -> Result<(), String> {
    if title.trim().is_empty() {
        return Err("a task needs a title: pass a short, non-empty sentence".into());
    }
    if title.len() > MAX_TITLE_BYTES {
        return Err(format!(
            "the title is {} bytes long; keep it under {MAX_TITLE_BYTES} and put details in the body",
            title.len()
        ));
    }
    if let Some(c) = title.chars().find(|c| is_unsafe(*c)) {
        return Err(format!(
            "the title holds the control character {}; a title is one line of plain text (put \
             details in the body)",
            one_line(&c.to_string())
        ));
    }
    Ok(())
}

/// Checks a body or a comment against its size limit; `what` names it in the error.
pub fn check_size(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "the {what} is {} bytes long; the limit is {max} bytes: shorten it or attach the \
             rest to the branch as a file",
            text.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(one_line("Add CSV export"), Cow::Borrowed(_)));
        assert!(matches!(
            multi_line("line one\n\tline two"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn escapes_become_visible() {
        assert_eq!(
            one_line("red \x1b[31mtext\x1b]0;owned\x07"),
            "red \\x1b[31mtext\\x1b]0;owned\\x07"
        );
        assert_eq!(one_line("a\nb\rc\td"), "a\\nb\\rc\\td");
        for separator in ['\u{2028}', '\u{2029}', '\u{85}'] {
            let text = format!("a{separator}b");
            assert!(!one_line(&text).contains(separator), "{separator:?}");
            assert!(!multi_line(&text).contains(separator), "{separator:?}");
        }
        assert_eq!(multi_line("a\nb\rc\td\x1b"), "a\nb\\rc\td\\x1b");
        assert_eq!(one_line("\u{9b}31m"), "\\x9b31m", "C1 controls too");
        assert_eq!(one_line("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(one_line("\x7f"), "\\x7f");
    }

    #[test]
    fn titles_are_one_plain_line() {
        assert!(check_title("Add CSV export").is_ok());
        assert!(check_title("Ünïcode is fine — really").is_ok());
        assert!(check_title("  ").unwrap_err().contains("needs a title"));
        let forged = check_title("fix\n#3 done").unwrap_err();
        assert!(
            forged.contains("\\n") && forged.contains("one line"),
            "{forged}"
        );
        assert!(check_title("x\x1b[2J").unwrap_err().contains("\\x1b"));
        assert!(
            check_title(&"x".repeat(501))
                .unwrap_err()
                .contains("501 bytes")
        );
    }

    #[test]
    fn a_score_below_the_threshold_never_reads_as_meeting_it() {
        assert_eq!(score_against(0.999, 1.0), "score 0.999 < threshold 1.00");
        assert_eq!(score_against(0.5, 1.0), "score 0.50 < threshold 1.00");
        assert_eq!(score_against(1.0, 1.0), "score 1.00");
        assert_eq!(score_against(0.8, 0.75), "score 0.80");
        assert_eq!(score_against(0.7499, 0.75), "score 0.7499 < threshold 0.75");
        assert_eq!(score(0.9999), "0.9999");
        assert_eq!(score(0.5), "0.50");
        assert_eq!(score(1.0), "1.00");
    }

    #[test]
    fn sizes_are_bounded() {
        assert!(check_size("comment", "short", 10).is_ok());
        let err = check_size("comment", &"x".repeat(11), 10).unwrap_err();
        assert!(
            err.contains("11 bytes") && err.contains("limit is 10"),
            "{err}"
        );
    }
}
