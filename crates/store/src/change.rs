//! The store's read and write vocabulary: what applying a batch produced and what queries
//! select. The changes themselves are the tracker's ([`tracker::Change`]), re-exported here.

use domain::{
    Approval, ApprovalState, Event, Execution, ExecutionId, Task, TaskId, TaskState, Timestamp,
};

/// A provider's standing as last recorded: see [`Change::PauseProvider`] and
/// [`Change::ThrottleProvider`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStanding {
    pub name: String,
    /// When its pause ends; a time already past is a pause that has ended.
    pub paused_until: Option<Timestamp>,
    pub pause_reason: Option<String>,
    /// The execution whose request started the pause.
    pub paused_by: Option<ExecutionId>,
    /// Its lowered limit on requests under way, if any.
    pub concurrency: Option<u32>,
    pub updated_at: Timestamp,
}

/// A call an agent made under an idempotency key, as [`Store::call_key`] finds it.
///
/// [`Store::call_key`]: crate::Store::call_key
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedCall {
    /// The sub-task a `subtask_create` made.
    pub result: Option<TaskId>,
}

/// A merge of a done sub-task into its parent that has not succeeded yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub child: TaskId,
    pub parent: TaskId,
    /// Why the last try failed; `None` while it was never tried.
    pub failed: Option<String>,
}

/// The land of a task's branch on the base branch, as recorded (see [`Change::StartLand`]).
///
/// [`Change::StartLand`]: crate::Change::StartLand
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Land {
    pub task: TaskId,
    /// The ref moved; otherwise the land is under way (or was cut short by a crash).
    pub landed: bool,
    pub strategy: domain::LandStrategy,
    pub base: String,
    pub old: String,
    pub new: String,
    /// For a sub-task landed with its tree, the task whose land brought it.
    pub root: Option<TaskId>,
}

/// Which messages [`Store::messages`] lists.
///
/// [`Store::messages`]: crate::Store::messages
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub state: Option<domain::MessageState>,
    pub task: Option<TaskId>,
    pub receiver: Option<domain::Receiver>,
    pub limit: Option<u32>,
}

/// An open message that can never be delivered, as [`Store::messages_due`] finds it.
///
/// [`Store::messages_due`]: crate::Store::messages_due
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageSweep {
    /// Its time to live ran out.
    Expired(domain::MessageId),
    /// The execution it is for ended, as `state`.
    ExecutionEnded {
        id: domain::MessageId,
        execution: ExecutionId,
        state: String,
    },
}

impl MessageSweep {
    pub fn id(&self) -> domain::MessageId {
        match self {
            MessageSweep::Expired(id) | MessageSweep::ExecutionEnded { id, .. } => *id,
        }
    }

    /// The change that records it: an expiry, or a dead letter naming the execution.
    pub fn change(&self) -> crate::Change {
        match self {
            MessageSweep::Expired(id) => crate::Change::ExpireMessage { id: *id },
            MessageSweep::ExecutionEnded {
                id,
                execution,
                state,
            } => crate::Change::DeadLetter {
                id: *id,
                reason: format!(
                    "execution #{execution} it was for ended ({state}) before acknowledging it"
                ),
            },
        }
    }
}

/// What one successful batch did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The events appended, in log order.
    pub events: Vec<Event>,
    /// The final state of every task the batch touched, in the order first touched. Created
    /// tasks appear here, which is how a caller learns their ids.
    pub tasks: Vec<Task>,
    /// The final state of every execution the batch touched, in the order first touched.
    pub executions: Vec<Execution>,
    /// The final state of every approval the batch requested or decided, by id.
    pub approvals: Vec<Approval>,
    /// The final state of every message the batch sent or changed, by id.
    pub messages: Vec<domain::Message>,
    /// The final state of every area lease the batch took or ended, by id.
    pub area_leases: Vec<domain::AreaLease>,
}

/// Which area leases [`Store::area_leases`](crate::Store::area_leases) returns: the held ones
/// (in id order), or with `ended` every one, newest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AreaLeaseFilter {
    pub execution: Option<ExecutionId>,
    pub task: Option<TaskId>,
    pub ended: bool,
    pub limit: Option<u32>,
}

/// Which approvals [`Store::approvals`](crate::Store::approvals) returns, newest first. The
/// default selects all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    pub state: Option<ApprovalState>,
    pub task: Option<TaskId>,
    pub limit: Option<u32>,
}

/// Which workflow runs [`Store::workflow_runs`](crate::Store::workflow_runs) returns, oldest
/// first. The default selects all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkflowFilter {
    pub task: Option<TaskId>,
    /// Only the runs that have not finished.
    pub running: bool,
}

/// Which tasks [`Store::tasks`](crate::Store::tasks) returns. The default selects all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks in one of these states; empty means every state.
    pub states: Vec<TaskState>,
    /// `Some(None)`: only top-level tasks; `Some(Some(p))`: only children of `p`.
    pub parent: Option<Option<TaskId>>,
    /// Only tasks carrying every one of these labels; empty means any labels.
    pub labels: Vec<String>,
    /// Only tasks in the tree under this root (the root included).
    pub root: Option<TaskId>,
}

/// Which executions [`Store::executions`](crate::Store::executions) returns. The default
/// selects all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub task: Option<TaskId>,
    /// Only executions in an active state (queued, preparing, running, validating).
    pub active_only: bool,
    /// At most this many: the most recent ones, still returned in ascending id order.
    pub limit: Option<u32>,
}
