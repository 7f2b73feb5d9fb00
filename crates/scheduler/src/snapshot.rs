//! The scheduler's view of the world at one instant, and the actions it answers with.

use std::collections::HashMap;

use domain::{ExecutionId, ExecutionKind, Task, TaskId, TaskState, Timestamp};

/// An execution that holds its task's claim (queued, preparing, running or validating).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveExecution {
    pub id: ExecutionId,
    pub task: TaskId,
    pub agent: String,
    pub kind: ExecutionKind,
    /// When the current iteration of the agent process started; `None` before the process runs
    /// or while validators run (they have their own timeouts).
    pub iteration_started_at: Option<Timestamp>,
    /// The last sign of life: output, a control call, or the start.
    pub last_activity_at: Timestamp,
    /// A kill was already asked for; do not ask again.
    pub kill_requested: bool,
}

/// Everything `decide` looks at. The engine keeps it up to date in memory.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// All tasks the engine knows, terminal ones included (dependencies point at them).
    pub tasks: HashMap<TaskId, Task>,
    pub active: Vec<ActiveExecution>,
    /// Start times of executions dispatched within the last minute, for the rate guard.
    pub recent_dispatches: Vec<Timestamp>,
}

impl Snapshot {
    pub fn insert(&mut self, task: Task) {
        self.tasks.insert(task.id, task);
    }

    pub fn children_of(&self, id: TaskId) -> impl Iterator<Item = &Task> {
        self.tasks.values().filter(move |t| t.parent == Some(id))
    }

    /// True when every task this one is blocked by is done.
    pub fn dependencies_done(&self, task: &Task) -> bool {
        task.blocked_by.iter().all(|dep| {
            self.tasks
                .get(dep)
                .is_some_and(|d| d.state == TaskState::Done)
        })
    }
}

/// Why the scheduler wants an execution killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    TimedOut,
    Stalled,
}

/// What the scheduler asks the engine to do. The engine performs these in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start an execution of `kind` for `task` with `agent`.
    Dispatch {
        task: TaskId,
        agent: String,
        kind: ExecutionKind,
        attempt: u32,
    },
    /// Stop an execution's process group.
    Kill {
        execution: ExecutionId,
        reason: KillReason,
    },
    /// A runaway guard tripped: fail the task with this reason.
    FailTask { task: TaskId, reason: String },
    /// A waiting task whose sub-tasks all ended and that no agent resumes: close it from the
    /// evidence (done when every sub-task is done, failed otherwise).
    CloseParent {
        task: TaskId,
        to: TaskState,
        reason: String,
    },
}

/// The answer of one `decide` call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// The earliest time something will be due with no new event (a backoff ending, a timeout,
    /// a resume timer). The engine ticks again then at the latest.
    pub next_wakeup: Option<Timestamp>,
}

impl Decision {
    pub(crate) fn wake_at(&mut self, at: Timestamp) {
        self.next_wakeup = Some(self.next_wakeup.map_or(at, |t| t.min(at)));
    }

    pub fn dispatches(&self) -> impl Iterator<Item = (TaskId, &str, ExecutionKind)> {
        self.actions.iter().filter_map(|a| match a {
            Action::Dispatch {
                task, agent, kind, ..
            } => Some((*task, agent.as_str(), *kind)),
            _ => None,
        })
    }
}
