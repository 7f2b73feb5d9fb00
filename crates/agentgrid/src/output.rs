//! Everything agentgrid prints on standard output goes through here: plain-text tables, JSON,
//! blocks of text written by others, and raw log bytes.
//!
//! A reader may go away before the output ends (`agentgrid task list | head`). Rust's
//! `println!` panics when a write fails, so output is written with [`outln!`] and [`bytes`]
//! instead: once standard output is closed (`EPIPE`) the rest is dropped quietly, and the
//! command finishes with its own exit status. Commands that could go on for ever (`--follow`)
//! ask [`closed`] and stop. clippy's `print_stdout` keeps `println!` out of the crate.
//!
//! Colour is decided once per stream ([`init_color`]) and used only where it helps a reader
//! find something: task states in tables, the ✓/✗ marks of `run`, `error:` and `warning:`.
//! Colour codes are added after the text is escaped and measured, so agents' text never
//! carries a code of its own and columns stay aligned.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Prints a line on standard output; see the module's documentation.
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Whether standard output, and standard error, get colour codes.
static COLOR_OUT: AtomicBool = AtomicBool::new(false);
static COLOR_ERR: AtomicBool = AtomicBool::new(false);

/// `--color`: `auto` colours a stream that is a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// Whether a stream gets colour: `--color always|never` decides; under `auto`, `NO_COLOR`
/// (any non-empty value) turns it off, then `CLICOLOR_FORCE` (non-empty, not `0`) turns it
/// on, then a terminal does.
pub fn wants_color(
    choice: ColorChoice,
    no_color: Option<&str>,
    clicolor_force: Option<&str>,
    terminal: bool,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            if no_color.is_some_and(|v| !v.is_empty()) {
                false
            } else if clicolor_force.is_some_and(|v| !v.is_empty() && v != "0") {
                true
            } else {
                terminal
            }
        }
    }
}

/// Decides colour for standard output and standard error from `choice` and the environment.
pub fn init_color(choice: ColorChoice) {
    use std::io::IsTerminal;
    let no_color = std::env::var("NO_COLOR").ok();
    let force = std::env::var("CLICOLOR_FORCE").ok();
    let decide = |terminal| wants_color(choice, no_color.as_deref(), force.as_deref(), terminal);
    COLOR_OUT.store(decide(std::io::stdout().is_terminal()), Ordering::Relaxed);
    COLOR_ERR.store(decide(std::io::stderr().is_terminal()), Ordering::Relaxed);
}

/// The few styles agentgrid uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Good,
    Bad,
    Attention,
    Busy,
    Quiet,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Good => "32",
            Style::Bad => "1;31",
            Style::Attention => "33",
            Style::Busy => "36",
            Style::Quiet => "2",
        }
    }

    /// `text` in this style on standard output, or as it is without colour there.
    pub fn paint(self, text: &str) -> String {
        paint(COLOR_OUT.load(Ordering::Relaxed), self, text)
    }

    /// `text` in this style on standard error.
    pub fn paint_err(self, text: &str) -> String {
        paint(COLOR_ERR.load(Ordering::Relaxed), self, text)
    }
}

fn paint(on: bool, style: Style, text: &str) -> String {
    if on {
        format!("\x1b[{}m{text}\x1b[0m", style.code())
    } else {
        text.to_string()
    }
}

/// The style of a task or execution state as the tables show it, if it has one.
pub fn state_style(state: &str) -> Option<Style> {
    Some(match state {
        "done" | "succeeded" => Style::Good,
        "failed" | "lost" | "timed_out" | "stalled" | "budget_exceeded" | "no_progress" => {
            Style::Bad
        }
        "blocked" | "merge_failed" => Style::Attention,
        "running" | "preparing" | "validating" => Style::Busy,
        "cancelled" => Style::Quiet,
        _ => return None,
    })
}

/// `error: ` for a line on standard error.
pub fn error_prefix() -> String {
    Style::Bad.paint_err("error:")
}

/// `warning: ` for a line on standard output.
pub fn warning_prefix() -> String {
    Style::Attention.paint("warning:")
}

/// `warning: ` for a line on standard error.
pub fn warning_prefix_err() -> String {
    Style::Attention.paint_err("warning:")
}

/// Set once a write to standard output failed: nothing more is written.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// A write that failed for another reason than a reader gone (a full disk under a redirect):
/// reported when the command ends, since its output is incomplete.
static FAILURE: Mutex<Option<String>> = Mutex::new(None);

#[doc(hidden)]
pub fn write_out(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let result = std::io::stdout().lock().write_fmt(args);
    if let Err(e) = result {
        wrote_nothing_more(e);
    }
}

/// Writes bytes as they are on standard output; false once it is closed.
pub fn bytes(data: &[u8]) -> bool {
    if CLOSED.load(Ordering::Relaxed) {
        return false;
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) => {
            wrote_nothing_more(e);
            false
        }
    }
}

fn wrote_nothing_more(e: std::io::Error) {
    CLOSED.store(true, Ordering::Relaxed);
    if e.kind() != std::io::ErrorKind::BrokenPipe
        && let Ok(mut failure) = FAILURE.lock()
    {
        failure.get_or_insert_with(|| format!("cannot write to standard output: {e}"));
    }
}

/// Whether standard output is gone, so that a command printing as things happen can stop.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Writes out what is still buffered, and tells why output was cut short if not because its
/// reader left.
pub fn finish() -> Option<String> {
    if !closed()
        && let Err(e) = std::io::stdout().lock().flush()
    {
        wrote_nothing_more(e);
    }
    FAILURE.lock().ok().and_then(|mut f| f.take())
}

pub use domain::text::{multi_line, one_line};

/// Prints rows as left-aligned columns under a header. Every cell is shown with its control
/// characters escaped: cells hold titles and reasons that agents wrote.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    Table::new(header).rows(rows);
}

/// A table printed in batches as its rows are read, for lists too long to hold at once. The
/// first batch sets the widths of the columns (with the header); a later cell wider than its
/// column pushes the rest of its row right rather than realigning what is already printed.
pub struct Table {
    header: Vec<String>,
    /// Set, and the header printed, by the first batch.
    widths: Option<Vec<usize>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            widths: None,
        }
    }

    /// Prints `rows`, after the header when they are the first.
    pub fn rows(&mut self, rows: &[Vec<String>]) {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|row| row.iter().map(|c| one_line(c).into_owned()).collect())
            .collect();
        let header: Vec<&str> = self.header.iter().map(String::as_str).collect();
        let widths = match &self.widths {
            Some(widths) => widths.clone(),
            None => {
                let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
                for row in &rows {
                    for (i, cell) in row.iter().enumerate() {
                        if i < widths.len() {
                            widths[i] = widths[i].max(cell.chars().count());
                        }
                    }
                }
                print_row(&header, &widths, None, false);
                self.widths = Some(widths.clone());
                widths
            }
        };
        // A STATE column is coloured by state, after the cell is padded to its plain width.
        let state_column = header.iter().position(|h| *h == "STATE");
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            print_row(&cells, &widths, state_column, true);
        }
    }
}

fn print_row(cells: &[&str], widths: &[usize], state_column: Option<usize>, painted: bool) {
    let mut out = String::new();
    let mut indent = 0;
    for (i, cell) in cells.iter().enumerate() {
        let last = i + 1 == cells.len();
        let painted_cell =
            |text: &str| match state_style(cell).filter(|_| painted && state_column == Some(i)) {
                Some(style) => style.paint(text),
                None => text.to_string(),
            };
        if last {
            // The last column (a reason, a title) wraps rather than being cut: the useful
            // part of a reason is often its end ("… (attempt 3 of 3)").
            let mut pieces = wrap(cell, LAST_COLUMN_WIDTH).into_iter();
            out.push_str(&painted_cell(&pieces.next().unwrap_or_default()));
            for piece in pieces {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                out.push_str(&piece);
            }
        } else {
            let width = widths.get(i).copied().unwrap_or(0);
            out.push_str(&painted_cell(cell));
            let pad = width.saturating_sub(cell.chars().count()) + 2;
            out.push_str(&" ".repeat(pad));
            indent += width.max(cell.chars().count()) + 2;
        }
    }
    outln!("{}", out.trim_end());
}

/// A JSON array printed element by element as they are read, pretty-printed exactly as
/// [`json`] prints a whole array, so that a list too long to hold at once is still one valid
/// document.
#[derive(Default)]
pub struct JsonArray {
    started: bool,
}

impl JsonArray {
    /// Prints one element; `--fields` selects inside each element, as it does in an array
    /// printed whole.
    pub fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> anyhow::Result<()> {
        let text = json_text(value, true)?;
        let lead = if self.started { ",\n" } else { "[\n" };
        self.started = true;
        let indented: Vec<String> = text.lines().map(|l| format!("  {l}")).collect();
        write_out(format_args!("{lead}{}", indented.join("\n")));
        Ok(())
    }

    /// Closes the array (`[]` when nothing was pushed).
    pub fn finish(self) {
        if self.started {
            outln!("\n]");
        } else {
            outln!("[]");
        }
    }
}

/// How wide the last column of a table runs before it wraps onto the next line.
const LAST_COLUMN_WIDTH: usize = 100;

/// `text` in lines of at most `width` characters, broken at spaces where there are some and
/// inside a word longer than a line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !current.is_empty() {
                lines.push(std::mem::take(&mut current));
            }
            lines.push(word.drain(..width).collect());
        }
        let word: String = word.into_iter().collect();
        let used = current.chars().count();
        if used > 0 && used + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&word);
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

/// Prints text someone else wrote (a body, a comment) as a block: control characters escaped and
/// every line indented, so that no line of it passes for a line of agentgrid's own output.
pub fn block(text: &str, indent: &str) {
    for line in multi_line(text).lines() {
        outln!("{indent}{line}");
    }
}

/// The `--fields` of this run, set once before the command runs.
static FIELDS: std::sync::OnceLock<crate::fields::Selection> = std::sync::OnceLock::new();

/// Prints only these fields in every JSON value that follows (`--fields`).
pub fn select_fields(selection: crate::fields::Selection) {
    let _ = FIELDS.set(selection);
}

/// `value` as JSON text, with only the selected fields when `--fields` chose some. Without
/// a selection the value is written as it serializes, in its own field order.
pub fn json_text<T: Serialize + ?Sized>(value: &T, pretty: bool) -> serde_json::Result<String> {
    let write = |v: &serde_json::Value| {
        if pretty {
            serde_json::to_string_pretty(v)
        } else {
            serde_json::to_string(v)
        }
    };
    match FIELDS.get() {
        Some(selection) => write(&selection.apply(&serde_json::to_value(value)?)),
        None if pretty => serde_json::to_string_pretty(value),
        None => serde_json::to_string(value),
    }
}

/// Prints a command's JSON answer.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    outln!("{}", json_text(value, true)?);
    Ok(())
}

/// Prints one JSON line of a stream (`events --json`, `logs --json`).
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    outln!("{}", json_text(value, false)?);
    Ok(())
}

/// Shortens text for a table cell.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::{ColorChoice, wants_color};

    #[test]
    fn colour_follows_the_flag_then_no_color_then_clicolor_force_then_the_terminal() {
        use ColorChoice::*;
        assert!(wants_color(Always, Some("1"), None, false));
        assert!(!wants_color(Never, None, Some("1"), true));
        assert!(wants_color(Auto, None, None, true));
        assert!(!wants_color(Auto, None, None, false));
        assert!(
            !wants_color(Auto, Some("1"), Some("1"), true),
            "NO_COLOR wins"
        );
        assert!(
            wants_color(Auto, Some(""), None, true),
            "an empty NO_COLOR is unset"
        );
        assert!(wants_color(Auto, None, Some("1"), false));
        assert!(!wants_color(Auto, None, Some("0"), false));
    }
}
