//! Why the rules refused a change.

use domain::{ExecutionId, ExecutionState, TaskId};

/// A change the rules do not allow, with the message a person reads. The store adds which
/// change of its batch it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A rule of the task or execution model; the text says which and what to do.
    #[error("{0}")]
    Rule(String),
    /// The task already has an execution in an active state, so a second one cannot start.
    #[error(
        "task #{task} already has an active execution (#{execution}); wait for it to finish or \
         cancel it first"
    )]
    AlreadyActive {
        task: TaskId,
        execution: ExecutionId,
    },
    /// The execution has reached a terminal state; its outcome is recorded once only.
    #[error(
        "execution #{execution} already finished as {state}; a finished execution cannot be \
         finished again"
    )]
    AlreadyFinished {
        execution: ExecutionId,
        state: ExecutionState,
    },
    /// A change under a fencing token that no longer holds its task's claim: the worker that
    /// sent it lost its lease, and nothing it asks for is recorded any more.
    #[error(
        "execution #{execution} no longer holds the claim on its task ({why}), so its changes \
         are refused"
    )]
    Stale { execution: ExecutionId, why: String },
}

pub(crate) fn refused<T>(reason: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Rule(reason.into()))
}
