//! What the core asks its runner to do.

use domain::{ExecutionId, ExecutionKind, Task, TaskId, Timestamp};
use tracker::Change;

use crate::input::CallResult;
use crate::jobs::Work;

/// Names one write the core asked for, so that its outcome finds its way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistId(pub u64);

/// How a batch is to be written when it cannot be written whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistMode {
    /// All or nothing; a refusal comes back as [`crate::Outcome::Refused`].
    Whole,
    /// Held progress and ends: whole if it can; otherwise progress change by change (a stale
    /// update must not hide the others) and each end on its own, an end whose task changed
    /// meanwhile recorded without what it would have made of the task. An end that cannot be
    /// recorded at all is fatal to the runner: it must not go on as if the execution ran.
    Held,
    /// Change by change when the whole fails; what is refused is dropped with a warning.
    Tolerant,
}

/// Why the core asks an execution to stop: the one reason the executor carries out too.
pub use domain::StopReason;

/// One thing for the runner to do. Effects are performed in the order they are returned.
// A job's task travels by value: effects are few per input, and boxing it would cost an
// allocation for every job.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write `changes` in one transaction (see [`PersistMode`] for when that fails) and report
    /// with [`crate::Input::Persisted`]. A transient failure (another process holds the lock) is
    /// the runner's to wait out: the core hears only the final outcome.
    Persist {
        id: PersistId,
        changes: Vec<Change>,
        mode: PersistMode,
    },
    /// Start the execution the store has just recorded as claimed: make its workspace, register
    /// its token with the model gateway, run its agent.
    Start {
        execution: ExecutionId,
        task: TaskId,
        agent: String,
        kind: ExecutionKind,
        attempt: u32,
    },
    /// Ask an execution to stop; it ends within the grace period.
    Stop {
        execution: ExecutionId,
        reason: StopReason,
    },
    /// The execution has ended: its token opens nothing any more.
    Revoke { execution: ExecutionId },
    /// Start workspace work on `task` off the loop (merges into it, removal of its worktree).
    /// `task` and `children` are what the core knew when it started; the report comes back with
    /// [`crate::Input::JobReported`].
    StartJob {
        task: Task,
        children: Vec<Task>,
        work: Work,
    },
    /// After a crash: end the processes of these executions that a dead engine left behind,
    /// undo merges it left half done and commit what the executions left in their worktrees.
    /// Reported with [`crate::Input::Terminated`].
    Terminate { executions: Vec<ExecutionId> },
    /// Read these tasks again from the store (a write about them was refused) and report with
    /// [`crate::Input::Reloaded`]. Nothing is decided until then: a decision on what the core
    /// knows would make the same refused claim again.
    Reload { tasks: Vec<TaskId> },
    /// Answer an agent's control call.
    Reply { call: u64, result: CallResult },
    /// Hand the core an [`crate::Input::Tick`] at `at` at the latest.
    Wake { at: Timestamp },
}
