//! What the core is told: the world's news and the outcomes of its own effects.

use std::collections::BTreeSet;

use domain::{
    Execution, ExecutionId, ExecutionState, FailureClass, Task, TaskId, Timestamp, Usage,
};
use tracker::{Change, MergeResult};

use crate::effect::PersistId;

/// One piece of news for [`crate::Core::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Time has passed: decide when something is due, write what is held when it is due.
    Tick,
    /// An executor reports on an execution.
    Update(Update),
    /// An agent's control call.
    Call {
        call: u64,
        execution: ExecutionId,
        op: CallOp,
    },
    /// The model gateway's news about an execution's requests.
    Notice(crate::spending::Notice),
    /// Tasks as the store has them now, written by another process.
    Changed(Vec<Task>),
    /// The tasks of an [`crate::Effect::Reload`], as the store has them now.
    Reloaded(Vec<Task>),
    /// The outcome of an [`crate::Effect::Persist`].
    Persisted { id: PersistId, outcome: Outcome },
    /// A workspace job ended.
    JobReported(JobReport),
    /// At start, after the tasks came in with [`Input::Changed`]: the executions a dead engine
    /// left active, the parents with merges left due, and the tasks whose worktrees are still
    /// there. Nothing is decided until the recovery is done.
    Recover {
        orphans: Vec<Execution>,
        merges_due: BTreeSet<TaskId>,
        worktrees: Vec<TaskId>,
    },
    /// The processes of a [`crate::Effect::Terminate`] are gone.
    Terminated,
    /// Stop: no new execution, running ones asked to end, then the core is done.
    Shutdown,
}

/// What an executor reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Progress to record (preparing, a process's start or exit, a validation, a commit, an
    /// agent's event): written behind, at the latest with the execution's end.
    Progress { id: ExecutionId, change: Change },
    /// The agent's process of an iteration started at `at`: it now runs against its timeout.
    ProcessStarted {
        id: ExecutionId,
        at: Timestamp,
        change: Change,
    },
    /// The validators of an iteration judged it.
    Validated {
        id: ExecutionId,
        passed: bool,
        change: Change,
    },
    /// The task's worktree is on `branch`.
    Branch { task: TaskId, branch: String },
    /// A sign of life (output, a model request waited out).
    Activity { id: ExecutionId, at: Timestamp },
    /// The execution ended.
    Finished(Finished),
}

/// An execution's end as its runner saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub id: ExecutionId,
    pub state: ExecutionState,
    pub exit_code: Option<i32>,
    pub usage: Usage,
    pub summary: Option<String>,
    pub class: FailureClass,
    /// The agent's `ctl complete` summary and `ctl block` reason, when calls the core did not
    /// see set them.
    pub claimed_complete: Option<String>,
    pub blocked: Option<String>,
    /// The gateway's metering says the execution's requests used a budget up, though no
    /// request of it was refused (the gateway refuses only the next one): the reason. A refusal
    /// comes as [`crate::Notice::BudgetExceeded`] instead.
    pub metered_over: Option<String>,
    /// Merges into the execution's task are due (the store's `merges`), so its end waits for
    /// them. The runner reads it; the core cannot know of merges recorded by other processes.
    pub merges_due: bool,
}

impl Finished {
    /// An end with nothing but its state.
    pub fn plain(id: ExecutionId, state: ExecutionState) -> Finished {
        Finished {
            id,
            state,
            exit_code: None,
            usage: Usage::default(),
            summary: None,
            class: FailureClass::Transient,
            claimed_complete: None,
            blocked: None,
            metered_over: None,
            merges_due: false,
        }
    }
}

/// The control calls the core answers itself.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOp {
    /// Create a sub-task of the execution's task under an idempotency key.
    SubtaskCreate { title: String, key: String },
    /// Ask a person: the execution's end leaves the task blocked.
    Block { reason: String },
    /// A note on the task.
    Comment { text: String },
    /// The agent says the task is complete (validators still decide).
    Complete { summary: String },
}

/// A call's answer: what it made, or why it was refused.
pub type CallResult = Result<CallAnswer, String>;

/// What a successful call made.
pub type CallAnswer = Option<TaskId>;

/// What a write came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written: the rows it left, as the store has them now.
    Written(Written),
    /// Refused as a whole (a rule of the tracker said no), with the refusal.
    Refused(String),
}

/// The tasks and executions a write touched, as they stand after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    pub tasks: Vec<Task>,
    pub executions: Vec<Execution>,
}

/// What a workspace job did.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    pub task: TaskId,
    /// Each merge made into the task: the child, the outcome, whether it changed the tree.
    pub merges: Vec<(TaskId, MergeResult, bool)>,
    pub removal: Option<Removal>,
}

impl JobReport {
    /// How many merges changed the task's tree.
    pub fn tree_changes(&self) -> u32 {
        self.merges.iter().filter(|(_, _, c)| *c).count() as u32
    }
}

/// What became of a worktree removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Gone (or it was already), its branch kept.
    Removed,
    /// A process still works in it: tried again later.
    Busy,
    /// Kept for a person: uncommitted work, or a hook that failed.
    Kept(String),
}
