//! Tasks: the tree of work, its dependency graph, and the task state machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{TaskId, Timestamp, TransitionError};

/// The lifecycle of a task.
///
/// Readiness is not a state: an `Open` task whose `blocked_by` tasks are not all `Done` simply
/// is not ready yet. `Waiting` means the task was split into sub-tasks and waits for them; when
/// they finish, a resume execution decides what comes next.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Wants an execution (once its dependencies are done and any backoff has passed).
    Open,
    /// An execution is active.
    Running,
    /// Split into sub-tasks; waits for them, then for a resume execution.
    Waiting,
    /// An agent said it cannot go on without a person. `task reopen` puts it back.
    Blocked,
    Done,
    Failed,
    Cancelled,
}

/// Every allowed task transition, with why it happens. Anything not listed is forbidden.
pub const TRANSITIONS: &[(TaskState, TaskState, &str)] = {
    use TaskState::*;
    &[
        (Open, Running, "an execution was dispatched"),
        (Open, Failed, "a runaway guard stopped it"),
        (Open, Cancelled, "cancelled"),
        (
            Running,
            Open,
            "the execution ended without finishing; it will run again",
        ),
        (Running, Waiting, "the agent split it into sub-tasks"),
        (Running, Blocked, "the agent asked for a person"),
        (Running, Done, "validated as done"),
        (Running, Failed, "out of attempts"),
        (Running, Cancelled, "cancelled"),
        (Waiting, Running, "a resume execution was dispatched"),
        (
            Waiting,
            Done,
            "closed from its sub-tasks, which are all done",
        ),
        (Waiting, Failed, "a runaway guard stopped it"),
        (Waiting, Cancelled, "cancelled"),
        (Blocked, Open, "reopened by a person"),
        (Blocked, Cancelled, "cancelled"),
        (Failed, Open, "reopened by a person"),
        (Cancelled, Open, "reopened by a person"),
        (Done, Open, "a person rejected its approval"),
    ]
};

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Open,
        TaskState::Running,
        TaskState::Waiting,
        TaskState::Blocked,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::Running => "running",
            TaskState::Waiting => "waiting",
            TaskState::Blocked => "blocked",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Done, failed or cancelled: nothing more will happen unless a person reopens it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Failed | TaskState::Cancelled
        )
    }

    pub fn can_transition_to(self, to: TaskState) -> bool {
        TRANSITIONS.iter().any(|(f, t, _)| *f == self && *t == to)
    }

    pub fn check_transition(self, to: TaskState) -> Result<(), TransitionError> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(TransitionError {
                entity: "task",
                from: self.as_str(),
                to: to.as_str(),
            })
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a task state: expected one of {}",
                    TaskState::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

/// A task as the store projects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Task {
    pub id: TaskId,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    /// Lower runs first: 0 is urgent, 2 is normal, 4 is someday.
    pub priority: i32,
    pub state: TaskState,
    pub parent: Option<TaskId>,
    /// The top of this task's tree (itself for a top-level task).
    pub root: TaskId,
    /// 0 for a top-level task, parent's depth + 1 for a sub-task.
    pub depth: u32,
    pub blocked_by: Vec<TaskId>,
    /// An agent chosen by a person; otherwise the scheduler routes by labels.
    pub agent: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set by a nudge; cleared when the task is dispatched.
    pub nudged_at: Option<Timestamp>,
    /// Do not dispatch before this time (retry backoff, continuation delay, resume timer).
    pub not_before: Option<Timestamp>,
    /// Failed attempts so far; drives the backoff and the retry limit.
    pub attempts: u32,
    /// Clean exits in a row that left the task open.
    pub continuations: u32,
    /// Executions ever started for this task.
    pub executions: u32,
    /// The last word on the task: a completion summary, a block reason, a failure.
    pub summary: Option<String>,
    /// The git branch holding this task's work, once a workspace was made.
    pub branch: Option<String>,
    /// Why the branch of one or more done sub-tasks could not be merged into this task's. A
    /// task with a failed merge is never done; the merge is tried again after each of its
    /// executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_failed: Option<String>,
    /// The part of the task open now when a handoff opened it (`ctl handoff`): routing sends
    /// the task's next execution there. `None` routes by the task's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<crate::HandoffTarget>,
    /// Handoffs accepted on this task so far, which its handoff budget bounds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub handoffs: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Task {
    /// A fresh task as the store creates it.
    pub fn new(id: TaskId, new: NewTask, root: TaskId, depth: u32, now: Timestamp) -> Task {
        Task {
            id,
            title: new.title,
            body: new.body,
            labels: new.labels,
            priority: new.priority,
            state: TaskState::Open,
            parent: new.parent,
            root,
            depth,
            blocked_by: new.blocked_by,
            agent: new.agent,
            created_at: now,
            updated_at: now,
            nudged_at: None,
            not_before: None,
            attempts: 0,
            continuations: 0,
            executions: 0,
            summary: None,
            branch: None,
            merge_failed: None,
            handoff: None,
            handoffs: 0,
        }
    }
}

/// What a person or an agent supplies to create a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewTask {
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default = "default_priority")]
    pub priority: i32,
    #[serde(default)]
    pub parent: Option<TaskId>,
    #[serde(default)]
    pub blocked_by: Vec<TaskId>,
    #[serde(default)]
    pub agent: Option<String>,
}

pub const DEFAULT_PRIORITY: i32 = 2;

fn default_priority() -> i32 {
    DEFAULT_PRIORITY
}

impl NewTask {
    pub fn titled(title: impl Into<String>) -> NewTask {
        NewTask {
            title: title.into(),
            body: String::new(),
            labels: Vec::new(),
            priority: DEFAULT_PRIORITY,
            parent: None,
            blocked_by: Vec::new(),
            agent: None,
        }
    }

    /// Checks what can be checked without the store: a title, sane labels and priority.
    pub fn check(&self) -> Result<(), String> {
        crate::text::check_title(&self.title)?;
        crate::text::check_size("body", &self.body, crate::text::MAX_BODY_BYTES)?;
        if !(0..=4).contains(&self.priority) {
            return Err(format!(
                "priority {} is out of range: use 0 (urgent) to 4 (someday), 2 is normal",
                self.priority
            ));
        }
        for label in &self.labels {
            check_label(label)?;
        }
        Ok(())
    }
}

/// Labels are short words: letters, digits and `-_:./`, no spaces.
pub fn check_label(label: &str) -> Result<(), String> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_alphanumeric() || "-_:./".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "label `{label}` is not allowed: use 1-64 letters, digits or - _ : . / (no spaces)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    /// Every pair of states, checked against the table written out by hand here. A change to the
    /// state machine must change this list too, on purpose.
    #[test]
    fn every_allowed_and_forbidden_transition() {
        let allowed = [
            (Open, Running),
            (Open, Failed),
            (Open, Cancelled),
            (Running, Open),
            (Running, Waiting),
            (Running, Blocked),
            (Running, Done),
            (Running, Failed),
            (Running, Cancelled),
            (Waiting, Running),
            (Waiting, Done),
            (Waiting, Failed),
            (Waiting, Cancelled),
            (Blocked, Open),
            (Blocked, Cancelled),
            (Failed, Open),
            (Cancelled, Open),
            (Done, Open),
        ];
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
                assert_eq!(
                    from.check_transition(to).is_ok(),
                    expected,
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn done_leaves_only_for_open_and_terminal_states_are_the_three() {
        // A rejected approval is the one way out of done (the tracker allows it for nothing
        // else), and it goes back to open, never to running or a verdict.
        for to in TaskState::ALL {
            assert_eq!(Done.can_transition_to(to), to == Open, "done -> {to}");
        }
        let terminal: Vec<_> = TaskState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, vec![Done, Failed, Cancelled]);
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!(
            "finished"
                .parse::<TaskState>()
                .unwrap_err()
                .contains("expected one of open")
        );
    }

    #[test]
    fn new_task_checks_title_priority_and_labels() {
        assert!(NewTask::titled("Add CSV export").check().is_ok());
        assert!(
            NewTask::titled("  ")
                .check()
                .unwrap_err()
                .contains("needs a title")
        );
        let mut t = NewTask::titled("x");
        t.priority = 9;
        assert!(t.check().unwrap_err().contains("out of range"));
        let mut t = NewTask::titled("x");
        t.labels = vec!["has space".into()];
        assert!(t.check().unwrap_err().contains("not allowed"));
    }
}
