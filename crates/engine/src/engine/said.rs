//! What people said to a task's agent: the comments, feedback and answer an execution is told
//! about, in its prompt (`comments`, `feedback`, `answer`) and in `ctl status`.
//!
//! All of it is read from the task's events, so it survives restarts and needs no table of its
//! own. The windows differ on purpose:
//! - comments: those made since the previous execution of the task started (the current one's
//!   claim is already in the log), so that each is news once; agents' own comments (their notes
//!   and `ctl block` questions) are left out, since the agent wrote them;
//! - feedback: every piece a person gave the task, oldest first, since a task is reopened with
//!   feedback only until it is done, and a retry after a failed attempt still needs it;
//! - answer: the newest answer given after the agent's last `ctl block` question, kept for every
//!   execution until the agent asks again.

use domain::{EntityKind, EventKind, TaskId, TaskState, Timestamp};
use store::Store;

/// One thing a person (or the engine) said, with who and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remark {
    pub author: String,
    pub at: Timestamp,
    pub text: String,
}

/// What the task's next (or current) execution is told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Said {
    pub comments: Vec<Remark>,
    pub feedback: Vec<Remark>,
    /// The agent's last `ctl block` question, when it asked one.
    pub question: Option<String>,
    pub answer: Option<Remark>,
}

/// The prefix the engine gives a `ctl block` question when it records it as a comment.
const QUESTION: &str = "blocked: ";

/// Whether an event is one of those [`said_to`] reads what was said from (the partial index
/// `events_remarks` of the SQLite store holds the same kinds): the engine reads a task's
/// events for its prompt only once it has seen one.
pub(crate) fn is_remark(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::TaskCommented { .. }
            | EventKind::TaskFeedbackGiven { .. }
            | EventKind::TaskAnswered { .. }
            | EventKind::TaskApprovalDecided { .. }
    )
}

pub(crate) async fn said_to(store: &dyn Store, task: TaskId) -> Result<Said, store::Error> {
    let events = store.entity_events(EntityKind::Task, task.0).await?;
    let mut starts = events.iter().filter(|e| {
        matches!(
            e.kind,
            EventKind::TaskStateChanged {
                to: TaskState::Running,
                ..
            }
        )
    });
    // The newest start is the execution being told; comments count from the one before it.
    let since = starts
        .next_back()
        .and(starts.next_back())
        .map_or(0, |e| e.seq);
    let mut said = Said::default();
    for event in &events {
        let remark = |author: &str, text: &str| Remark {
            author: author.to_owned(),
            at: event.at,
            text: text.to_owned(),
        };
        match &event.kind {
            EventKind::TaskCommented { author, text } if author.starts_with("agent:") => {
                if let Some(question) = text.strip_prefix(QUESTION) {
                    said.question = Some(question.to_owned());
                    said.answer = None;
                }
            }
            EventKind::TaskCommented { author, text } if event.seq > since => {
                said.comments.push(remark(author, text));
            }
            EventKind::TaskFeedbackGiven { author, text } => {
                said.feedback.push(remark(author, text));
            }
            // A rejected approval's feedback is a person's word on the work like any other.
            EventKind::TaskApprovalDecided {
                by,
                decision: domain::Decision::Reject { feedback },
                ..
            } => said.feedback.push(remark(by, feedback)),
            EventKind::TaskAnswered { author, text } => said.answer = Some(remark(author, text)),
            _ => {}
        }
    }
    Ok(said)
}

impl Remark {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "author": self.author, "at": self.at, "text": self.text })
    }
}

impl Said {
    /// The fields `ctl status` adds to its answer.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "comments": self.comments.iter().map(Remark::json).collect::<Vec<_>>(),
            "feedback": self.feedback.iter().map(Remark::json).collect::<Vec<_>>(),
            "question": self.question,
            "answer": self.answer.as_ref().map(Remark::json),
        })
    }

    /// The comments for the prompt: one line each, "author at time: text".
    pub fn comments_text(&self) -> Option<String> {
        (!self.comments.is_empty()).then(|| {
            self.comments
                .iter()
                .map(|c| format!("{} at {}: {}", c.author, c.at, c.text))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// A person's feedback for the prompt, each piece labelled with who gave it and when.
    pub fn feedback_text(&self) -> Option<String> {
        (!self.feedback.is_empty()).then(|| {
            self.feedback
                .iter()
                .map(|f| format!("Feedback from {} at {}:\n{}", f.author, f.at, f.text))
                .collect::<Vec<_>>()
                .join("\n\n")
        })
    }

    pub fn answer_text(&self) -> Option<String> {
        self.answer.as_ref().map(|a| a.text.clone())
    }
}
