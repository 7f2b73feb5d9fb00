//! What one execution may ask of the control channel: the size of each field, the number of
//! calls, and the connections it may hold open.
//!
//! The agent is an adversary, and every byte it sends is held by the engine (a connection, a
//! buffer) or written to the store for good (a comment, a sub-task). So each is bounded here,
//! before the call reaches the engine, and a refusal names the limit.

use std::time::Duration;

use crate::Op;

/// The bounds the control channel enforces. [`Limits::default`] is what the engine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A task title: one line of at most this many characters, without control characters.
    pub max_title_chars: usize,
    /// A sub-task's body, in bytes.
    pub max_body_bytes: usize,
    /// A comment, a completion summary or a block reason, in bytes.
    pub max_text_bytes: usize,
    /// Labels of one sub-task, and the characters of each.
    pub max_labels: usize,
    pub max_label_chars: usize,
    /// Tasks one sub-task may be blocked by.
    pub max_blocked_by: usize,
    /// Calls of one execution, whatever they are.
    pub max_calls_per_execution: u32,
    /// Comments (and block reasons, which are recorded as comments) of one execution.
    pub max_comments_per_execution: u32,
    /// Sub-tasks one execution may create (the guards may refuse sooner).
    pub max_subtasks_per_execution: u32,
    /// Calls of one execution that reach the engine, per second, after a first burst of
    /// `call_burst`: faster calls are answered later, not refused, so that one agent cannot
    /// keep the engine busy at the others' expense.
    pub calls_per_second: u32,
    pub call_burst: u32,
    /// Connections one execution may hold open at once.
    pub max_connections_per_execution: u32,
    /// Connections open at once over all executions, counting those that have not yet said
    /// whose they are. When full, the oldest of those is closed to make room.
    pub max_connections: usize,
    /// A new connection must send its first request within this time.
    pub first_request_timeout: Duration,
    /// An open connection must send its next request (and read each answer) within this time.
    pub idle_timeout: Duration,
}

/// The largest request line read, in bytes: more than the largest fields allow together, so
/// that a request over it is one no valid call could be.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_title_chars: 200,
            max_body_bytes: 64 * 1024,
            max_text_bytes: 16 * 1024,
            max_labels: 16,
            max_label_chars: 64,
            max_blocked_by: 64,
            max_calls_per_execution: 10_000,
            max_comments_per_execution: 200,
            max_subtasks_per_execution: 100,
            calls_per_second: 50,
            call_burst: 100,
            max_connections_per_execution: 16,
            max_connections: 256,
            first_request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// `bytes` as people read sizes: "16 KiB", "300 bytes".
/// The longest idempotency key a call may carry, in bytes.
pub const MAX_KEY_BYTES: usize = 200;

/// A key is a short line of printable text.
fn check_key(key: Option<&str>) -> Result<(), String> {
    let Some(key) = key else {
        return Ok(());
    };
    if key.trim().is_empty() {
        return Err("the key (--key) is empty: give a short name, or leave --key out".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the key (--key) is {} bytes long; at most {MAX_KEY_BYTES} are allowed",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("the key (--key) holds a control character; use printable text".into());
    }
    Ok(())
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// The longest blackboard key, in characters; the workflow's own rules say the same.
pub const MAX_BLACKBOARD_KEY_CHARS: usize = 64;

/// A blackboard key is short and printable: the definition declares every key, so a longer
/// one can only be wrong.
fn check_blackboard_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_BLACKBOARD_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(format!(
            "a blackboard key is 1 to {MAX_BLACKBOARD_KEY_CHARS} characters without control \
             characters, as the workflow declares it; this one is {chars} long"
        ));
    }
    Ok(())
}

/// The bounds of the paths one call leases or reserves.
fn check_area_paths(paths: &[String]) -> Result<(), String> {
    let limits = domain::area::limits::PATHS_PER_TAKE;
    if paths.len() > limits {
        return Err(format!(
            "a lease names {} paths; at most {limits} are allowed",
            paths.len()
        ));
    }
    for p in paths {
        if p.len() > domain::area::limits::PATH_BYTES {
            return Err(format!(
                "a leased path is {} bytes long; at most {} are allowed",
                p.len(),
                domain::area::limits::PATH_BYTES
            ));
        }
    }
    Ok(())
}

impl Limits {
    /// Refuses a call whose fields are over their limits, saying which and by how much.
    pub fn check(&self, op: &Op) -> Result<(), String> {
        match op {
            Op::SubtaskCreate {
                title,
                body,
                labels,
                blocked_by,
                key,
                areas,
                ..
            } => {
                check_key(key.as_deref())?;
                check_area_paths(areas)?;
                self.check_title(title)?;
                self.check_text("the body", "--body", body, self.max_body_bytes)?;
                if labels.len() > self.max_labels {
                    return Err(format!(
                        "a sub-task has {} labels; at most {} are allowed",
                        labels.len(),
                        self.max_labels
                    ));
                }
                for label in labels {
                    if label.chars().count() > self.max_label_chars
                        || label.chars().any(char::is_control)
                    {
                        return Err(format!(
                            "the label {:?} is not allowed: a label is at most {} characters \
                             without control characters",
                            label.chars().take(40).collect::<String>(),
                            self.max_label_chars
                        ));
                    }
                }
                if blocked_by.len() > self.max_blocked_by {
                    return Err(format!(
                        "a sub-task is blocked by {} tasks; at most {} are allowed",
                        blocked_by.len(),
                        self.max_blocked_by
                    ));
                }
                Ok(())
            }
            Op::Complete { summary } => {
                self.check_text("the summary", "--summary", summary, self.max_text_bytes)
            }
            Op::Block { reason } => {
                self.check_text("the reason", "--reason", reason, self.max_text_bytes)
            }
            Op::ApprovalRequest { summary } => {
                self.check_text("the summary", "--summary", summary, self.max_text_bytes)
            }
            Op::Comment { text, key } => {
                check_key(key.as_deref())?;
                self.check_text("the comment", "its text", text, self.max_text_bytes)
            }
            Op::WorkflowStart { name } => {
                self.check_text("the workflow's name", "NAME", name, self.max_title_chars)
            }
            Op::MsgSend { payload, .. } => {
                let bytes = payload.to_string().len();
                let max = domain::message::limits::PAYLOAD_BYTES;
                if bytes > max {
                    return Err(format!(
                        "the payload is {bytes} bytes long; at most {} are allowed: shorten \
                         --payload",
                        size(max)
                    ));
                }
                Ok(())
            }
            Op::Handoff {
                to,
                summary,
                artifacts,
            } => {
                self.check_text("the receiver", "--to", to, self.max_title_chars)?;
                let max = domain::handoff::limits::SUMMARY_BYTES.min(self.max_text_bytes);
                self.check_text("the summary", "--summary", summary, max)?;
                let most = domain::handoff::limits::ARTIFACTS;
                if artifacts.len() > most {
                    return Err(format!(
                        "the handoff names {} artifacts; at most {most} are allowed: name the \
                         directory that holds them instead",
                        artifacts.len()
                    ));
                }
                let longest = domain::handoff::limits::ARTIFACT_PATH_BYTES;
                for path in artifacts {
                    if path.len() > longest || path.chars().any(char::is_control) {
                        return Err(format!(
                            "the artifact {:?} is not allowed: a path is at most {} without \
                             control characters",
                            path.chars().take(40).collect::<String>(),
                            size(longest)
                        ));
                    }
                }
                Ok(())
            }
            Op::Escalate { text, .. } => {
                self.check_text("the question", "its text", text, self.max_text_bytes)
            }
            Op::EscalateUp { note, .. } => match note {
                Some(note) => self.check_text("the note", "--note", note, self.max_text_bytes),
                None => Ok(()),
            },
            Op::EscalationAnswer { text, .. } => {
                self.check_text("the answer", "--text", text, self.max_text_bytes)
            }
            Op::BlackboardSet { key, value } => {
                check_blackboard_key(key)?;
                self.check_text("the value", "VALUE", value, self.max_text_bytes)
            }
            Op::BlackboardGet { key } => check_blackboard_key(key),
            Op::LeaseTake { paths, .. } | Op::LeaseRelease { paths } => check_area_paths(paths),
            Op::Nudge { .. }
            | Op::Status
            | Op::MsgInbox
            | Op::MsgAck { .. }
            | Op::BlackboardList
            | Op::LeaseList => Ok(()),
        }
    }

    fn check_title(&self, title: &str) -> Result<(), String> {
        let chars = title.chars().count();
        if chars > self.max_title_chars {
            return Err(format!(
                "the title is {chars} characters long; at most {} characters are allowed: put \
                 the details in the body (--body)",
                self.max_title_chars
            ));
        }
        // What a title may hold is the domain's rule, shared with every other way in; an agent's
        // titles are only held to a shorter length on top of it.
        domain::text::check_title(title)
    }

    fn check_text(&self, what: &str, flag: &str, text: &str, max: usize) -> Result<(), String> {
        if text.len() > max {
            return Err(format!(
                "{what} is {} bytes long; at most {} are allowed: shorten {flag}",
                text.len(),
                size(max)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(text: &str) -> Op {
        Op::Comment {
            text: text.into(),
            key: None,
        }
    }

    fn titled(title: &str) -> Op {
        Op::SubtaskCreate {
            title: title.into(),
            body: String::new(),
            labels: vec![],
            blocked_by: vec![],
            priority: None,
            key: None,
            areas: vec![],
            lease_ttl_ms: None,
        }
    }

    #[test]
    fn fields_within_their_limits_pass_and_larger_ones_name_the_limit() {
        let limits = Limits::default();
        assert_eq!(limits.check(&comment(&"x".repeat(16 * 1024))), Ok(()));
        let err = limits
            .check(&comment(&"x".repeat(16 * 1024 + 1)))
            .unwrap_err();
        assert!(err.contains("16 KiB"), "{err}");
        assert_eq!(limits.check(&titled(&"t".repeat(200))), Ok(()));
        let err = limits.check(&titled(&"t".repeat(201))).unwrap_err();
        assert!(err.contains("200 characters"), "{err}");
        // Characters, not bytes: a title in another script is not cut shorter.
        assert_eq!(limits.check(&titled(&"é".repeat(200))), Ok(()));
    }

    #[test]
    fn a_handoff_is_bounded_in_its_summary_and_its_artifacts() {
        let limits = Limits::default();
        let handoff = |summary: usize, artifacts: usize, path: usize| Op::Handoff {
            to: "qa".into(),
            summary: "s".repeat(summary),
            artifacts: vec!["p".repeat(path); artifacts],
        };
        assert_eq!(limits.check(&handoff(8 * 1024, 16, 256)), Ok(()));
        let err = limits.check(&handoff(8 * 1024 + 1, 0, 1)).unwrap_err();
        assert!(err.contains("at most 8 KiB"), "{err}");
        let err = limits.check(&handoff(1, 17, 1)).unwrap_err();
        assert!(err.contains("at most 16 are allowed"), "{err}");
        let err = limits.check(&handoff(1, 1, 257)).unwrap_err();
        assert!(err.contains("at most 256 bytes"), "{err}");
        // The largest handoff fits the HANDOFF message that carries it.
        let payload = serde_json::json!({
            "summary": "s".repeat(8 * 1024),
            "artifacts": vec!["p".repeat(256); 16],
            "notes": "handed off by a-long-agency-name/a-long-role-name to another-agency/role",
        });
        assert!(payload.to_string().len() <= domain::message::limits::PAYLOAD_BYTES);
    }

    #[test]
    fn titles_are_one_line_of_plain_text() {
        let limits = Limits::default();
        let err = limits.check(&titled("two\nlines")).unwrap_err();
        assert!(err.contains("one line"), "{err}");
        let err = limits.check(&titled("\u{1b}[31mred")).unwrap_err();
        assert!(err.contains("control character"), "{err}");
        let err = limits.check(&titled("bell\u{7}")).unwrap_err();
        assert!(err.contains("control character"), "{err}");
        // C1 controls (CSI as one character) too.
        let err = limits.check(&titled("\u{9b}31m")).unwrap_err();
        assert!(err.contains("control character"), "{err}");
    }
}
