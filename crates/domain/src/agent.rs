//! What an agent CLI said it did, read from its machine output and normalised: the same few
//! kinds of event whatever the CLI.
//!
//! The agent's output is hostile input, so every text here is bounded: [`AgentEvent::bounded`]
//! cuts each text field to [`MAX_TEXT`] bytes (on a character boundary, marking the cut), and
//! whoever records events caps how many one execution gets ([`MAX_EVENTS`]).

use serde::{Deserialize, Serialize};

/// The most bytes of any one text an agent event keeps.
pub const MAX_TEXT: usize = 2048;

/// The most agent events one execution records; the rest are counted, not kept.
pub const MAX_EVENTS: u32 = 500;

/// One normalised event of an agent CLI's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The CLI's own session, which a later iteration can resume.
    Session { id: String },
    /// Text the model wrote to the user.
    Message { text: String },
    /// A tool the CLI ran for the model: what was asked, what came back, how long it took.
    ToolCall {
        name: String,
        /// The arguments as the CLI gave them (JSON text, cut to [`MAX_TEXT`]).
        arguments: String,
        /// The tool's result as the CLI reported it.
        result: String,
        /// Whether the CLI reported the tool as failed.
        failed: bool,
        /// From the call to its result, as the output arrived.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// The CLI's own account of the tokens it used in this iteration.
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        /// The part of `input_tokens` read from the prompt cache.
        cached_tokens: u64,
    },
    /// The CLI reported an error: authentication, the API, a tool, its own.
    Error { message: String },
    /// Something worth a look that is not a failure: a CLI's own warning, or agentgrid's
    /// finding that the CLI's usage disagrees with the gateway's metering.
    Warning { message: String },
    /// The CLI's final word on the iteration.
    Result {
        text: String,
        /// The CLI itself says the run failed.
        is_error: bool,
    },
    /// More events came than an execution keeps; this many were dropped.
    Dropped { count: u32 },
}

impl AgentEvent {
    /// The event with every text cut to [`MAX_TEXT`] bytes.
    pub fn bounded(self) -> AgentEvent {
        let cut = |s: String| cut_text(s, MAX_TEXT);
        match self {
            AgentEvent::Session { id } => AgentEvent::Session {
                id: cut_text(id, 200),
            },
            AgentEvent::Message { text } => AgentEvent::Message { text: cut(text) },
            AgentEvent::ToolCall {
                name,
                arguments,
                result,
                failed,
                duration_ms,
            } => AgentEvent::ToolCall {
                name: cut_text(name, 200),
                arguments: cut(arguments),
                result: cut(result),
                failed,
                duration_ms,
            },
            AgentEvent::Error { message } => AgentEvent::Error {
                message: cut(message),
            },
            AgentEvent::Warning { message } => AgentEvent::Warning {
                message: cut(message),
            },
            AgentEvent::Result { text, is_error } => AgentEvent::Result {
                text: cut(text),
                is_error,
            },
            other => other,
        }
    }

    /// Whether this event says the run went wrong: an error, or a final result marked as one.
    /// A failed tool call is not: the model sees it and may well recover.
    pub fn failure(&self) -> Option<&str> {
        match self {
            AgentEvent::Error { message } => Some(message),
            AgentEvent::Result {
                text,
                is_error: true,
            } => Some(text),
            _ => None,
        }
    }

    /// One line for people, with the agent's text made safe to print.
    pub fn describe(&self) -> String {
        let line = |s: &str| crate::text::one_line(s).into_owned();
        match self {
            AgentEvent::Session { id } => format!("session {}", line(id)),
            AgentEvent::Message { text } => format!("says: {}", line(text)),
            AgentEvent::ToolCall {
                name,
                arguments,
                result,
                failed,
                duration_ms,
            } => {
                let took = duration_ms
                    .map(|ms| format!(" in {ms} ms"))
                    .unwrap_or_default();
                let outcome = if *failed { "failed" } else { "ok" };
                format!(
                    "tool {}({}) {outcome}{took}: {}",
                    line(name),
                    line(arguments),
                    line(result)
                )
            }
            AgentEvent::Usage {
                input_tokens,
                output_tokens,
                cached_tokens,
            } => format!(
                "reports {input_tokens} input tokens ({cached_tokens} cached), {output_tokens} output"
            ),
            AgentEvent::Error { message } => format!("error: {}", line(message)),
            AgentEvent::Warning { message } => format!("warning: {}", line(message)),
            AgentEvent::Result { text, is_error } => {
                let what = if *is_error { "failed" } else { "result" };
                format!("{what}: {}", line(text))
            }
            AgentEvent::Dropped { count } => {
                format!("{count} more agent events were not recorded")
            }
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` marking a cut.
pub fn cut_text(mut text: String, max: usize) -> String {
    if text.len() > max {
        let end = text.floor_char_boundary(max.saturating_sub(3));
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let AgentEvent::Message { text } = (AgentEvent::Message { text: long }).bounded() else {
            panic!("kind kept");
        };
        assert!(text.len() <= MAX_TEXT, "{}", text.len());
        assert!(text.ends_with('…'));
    }

    #[test]
    fn only_errors_and_failed_results_are_failures() {
        let failed_tool = AgentEvent::ToolCall {
            name: "Bash".into(),
            arguments: "{}".into(),
            result: "exit 1".into(),
            failed: true,
            duration_ms: None,
        };
        assert_eq!(failed_tool.failure(), None);
        let result = AgentEvent::Result {
            text: "API Error: 401".into(),
            is_error: true,
        };
        assert_eq!(result.failure(), Some("API Error: 401"));
        let fine = AgentEvent::Result {
            text: "done".into(),
            is_error: false,
        };
        assert_eq!(fine.failure(), None);
    }

    #[test]
    fn descriptions_are_one_line() {
        let e = AgentEvent::Message {
            text: "two\nlines\x1b[2J".into(),
        };
        assert!(!e.describe().contains('\n'));
        assert!(!e.describe().contains('\x1b'));
    }
}
