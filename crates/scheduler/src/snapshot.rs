//! The scheduler's view of the world at one instant, and the actions it answers with.

use std::collections::{BTreeSet, HashMap};

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
///
/// Besides the tasks it keeps three indexes, updated on every [`Snapshot::insert`] and
/// [`Snapshot::update`], so that a decision costs in proportion to the open, waiting and
/// running tasks rather than to every task ever created (see [`decide`](crate::decide)): the
/// open tasks in the order they run, the waiting ones, and each task's children. Done tasks
/// stay (dependencies point at them) but are never walked.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// All tasks the engine knows, terminal ones included.
    tasks: HashMap<TaskId, Task>,
    /// Open tasks, first to run first.
    open: BTreeSet<RunOrder>,
    /// Tasks waiting for their sub-tasks.
    waiting: BTreeSet<TaskId>,
    /// Sub-tasks by parent, in id order.
    children: HashMap<TaskId, BTreeSet<TaskId>>,
    /// Executions ever started per task tree, by root.
    tree_executions: HashMap<TaskId, u32>,
    pub active: Vec<ActiveExecution>,
    /// Start times of executions dispatched within the last minute, for the rate guard.
    pub recent_dispatches: Vec<Timestamp>,
    /// Model providers paused after a used-up quota, with when each pause ends.
    pub paused_providers: std::collections::BTreeMap<String, Timestamp>,
    /// Tasks whose worktree the engine works on outside any execution: merging done sub-tasks
    /// into it, or removing it after the task ended. Such a task is neither dispatched, resumed
    /// nor closed until that work reports back, so that a parent's resume finds its children's
    /// work merged, a parent is not closed while a merge into it is under way, and a reopened
    /// task does not start in a worktree that is being removed. Its open sub-tasks wait too:
    /// they start from its branch, which must hold their done siblings' work first.
    pub busy_workspaces: BTreeSet<TaskId>,
    /// Tasks a workflow run holds: the run says when an agent runs on them (an agent state of
    /// its current visit), so the scheduler never dispatches, resumes or closes them otherwise.
    pub workflow_held: BTreeSet<TaskId>,
    /// What each agency's agents used of models today (UTC), as the engine last read it: an
    /// agency whose `day_budget` this reaches gets no new execution.
    pub agency_spend: std::collections::BTreeMap<String, domain::ModelUsage>,
    /// The area leases held now (see `domain::area`): a task an area is reserved for waits
    /// while a running execution of another task holds an overlapping lease.
    pub area_leases: Vec<domain::AreaLease>,
}

/// The order in which ready tasks run: priority (smaller first), nudged before not nudged, then
/// age, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RunOrder {
    pub priority: i32,
    pub not_nudged: bool,
    pub created_at: Timestamp,
    pub id: TaskId,
}

impl RunOrder {
    pub(crate) fn of(task: &Task) -> RunOrder {
        RunOrder {
            priority: task.priority,
            not_nudged: task.nudged_at.is_none(),
            created_at: task.created_at,
            id: task.id,
        }
    }
}

impl Snapshot {
    /// Adds a task or replaces the one with its id.
    pub fn insert(&mut self, task: Task) {
        if let Some(old) = self.tasks.remove(&task.id) {
            self.unindex(&old);
        }
        self.index(&task);
        self.tasks.insert(task.id, task);
    }

    /// Changes a task in place; false when there is no task with this id.
    pub fn update(&mut self, id: TaskId, change: impl FnOnce(&mut Task)) -> bool {
        let Some(mut task) = self.tasks.remove(&id) else {
            return false;
        };
        self.unindex(&task);
        change(&mut task);
        // The id is the key: a change cannot move the task elsewhere.
        task.id = id;
        self.index(&task);
        self.tasks.insert(id, task);
        true
    }

    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id)
    }

    /// Every task, in no particular order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// The sub-tasks of `id`, in id order.
    pub fn children_of(&self, id: TaskId) -> impl Iterator<Item = &Task> {
        self.children
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|child| self.tasks.get(child))
    }

    /// Executions ever started in the tree under `root`, the root's own included.
    pub fn tree_executions(&self, root: TaskId) -> u32 {
        self.tree_executions.get(&root).copied().unwrap_or(0)
    }

    /// Open tasks, first to run first.
    pub(crate) fn open_in_order(&self) -> impl Iterator<Item = &Task> {
        self.open.iter().filter_map(|key| self.tasks.get(&key.id))
    }

    /// Tasks waiting for their sub-tasks, in id order.
    pub(crate) fn waiting(&self) -> impl Iterator<Item = &Task> {
        self.waiting.iter().filter_map(|id| self.tasks.get(id))
    }

    /// True when every task this one is blocked by is done.
    pub fn dependencies_done(&self, task: &Task) -> bool {
        task.blocked_by.iter().all(|dep| {
            self.tasks
                .get(dep)
                .is_some_and(|d| d.state == TaskState::Done)
        })
    }

    fn index(&mut self, task: &Task) {
        match task.state {
            TaskState::Open => {
                self.open.insert(RunOrder::of(task));
            }
            TaskState::Waiting => {
                self.waiting.insert(task.id);
            }
            _ => {}
        }
        if let Some(parent) = task.parent {
            self.children.entry(parent).or_default().insert(task.id);
        }
        *self.tree_executions.entry(task.root).or_default() += task.executions;
    }

    fn unindex(&mut self, task: &Task) {
        self.open.remove(&RunOrder::of(task));
        self.waiting.remove(&task.id);
        if let Some(parent) = task.parent
            && let Some(siblings) = self.children.get_mut(&parent)
        {
            siblings.remove(&task.id);
            if siblings.is_empty() {
                self.children.remove(&parent);
            }
        }
        if let Some(count) = self.tree_executions.get_mut(&task.root) {
            *count = count.saturating_sub(task.executions);
            if *count == 0 {
                self.tree_executions.remove(&task.root);
            }
        }
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
        /// Why it runs now, when that is news: a resume woken by a failed sub-task, or a run
        /// that validates a parent's merged tree. Recorded on the task.
        reason: Option<String>,
    },
    /// Stop an execution's process group.
    Kill {
        execution: ExecutionId,
        reason: KillReason,
    },
    /// A runaway guard tripped: fail the task with this reason.
    FailTask { task: TaskId, reason: String },
    /// A waiting task that no agent resumes, closed from the evidence: failed as soon as a
    /// sub-task failed or was cancelled, done once every sub-task is done (when the agent that
    /// works on it has no validators; otherwise a resume runs them on the merged tree first).
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
