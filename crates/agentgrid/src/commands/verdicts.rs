//! The validators' evidence as `task show`, `logs` and `status` print it.

pub use app::Validation;

/// Every validation an execution recorded, in order.
pub async fn of_execution(
    store: &dyn store::Store,
    e: &domain::Execution,
) -> anyhow::Result<Vec<Validation>> {
    Ok(app::of_execution(store, e).await?)
}

/// Prints one validation: its outcome, then each validator's verdict with its command and
/// exit, and for a failed one the last `tail_lines` lines of its output.
pub fn print(v: &Validation, indent: &str, tail_lines: usize) {
    outln!(
        "{indent}execution {} iteration {}: validation {} (score {:.2})",
        v.execution,
        v.iteration,
        if v.passed { "passed" } else { "failed" },
        v.score
    );
    for r in &v.results {
        outln!("{indent}  {}", printable(&r.describe()));
        if !r.command.is_empty() {
            let exit = match (r.timed_out, r.exit_code, r.signal) {
                (true, _, _) => "timed out".to_string(),
                (_, Some(c), _) => format!("exit {c}"),
                (_, None, Some(s)) => format!("signal {s}"),
                _ => "no exit status".to_string(),
            };
            outln!("{indent}    $ {}  [{exit}]", printable(&r.command));
        }
        if !r.passed && tail_lines > 0 && !r.output_tail.is_empty() {
            let lines: Vec<&str> = r.output_tail.lines().collect();
            for line in &lines[lines.len().saturating_sub(tail_lines)..] {
                outln!("{indent}    | {}", printable(line));
            }
        }
    }
}

/// The text with control characters shown as escapes, so that output an agent or its tests
/// wrote cannot move the cursor or rewrite the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("ok\u{1b}[2J\r"), "ok\\u{1b}[2J\\r");
        assert_eq!(printable("a\tb ✓"), "a\tb ✓");
    }
}
