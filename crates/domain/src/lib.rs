//! The vocabulary of agentgrid: tasks, executions, their state machines, and the events that
//! record every change to them.
//!
//! Everything else in the system speaks these types. The crate is pure data and pure functions:
//! no IO, no clock reads, no randomness. Time enters as a [`Timestamp`] value handed in by the
//! caller (through a [`Clock`] the engine owns), which is what lets the scheduler and the state
//! machines be tested without sleeping.
//!
//! The principal types:
//! - [`Task`]: a unit of work in the tracker. Tasks form a tree (`parent`) and a dependency graph
//!   (`blocked_by`). Their lifecycle is [`TaskState`], with transitions listed as data in
//!   [`task::TRANSITIONS`].
//! - [`Execution`]: one short-lived run of an agent on a task, of kind [`ExecutionKind::Work`] or
//!   [`ExecutionKind::Resume`]. Its lifecycle is [`ExecutionState`], listed in
//!   [`execution::TRANSITIONS`]. Its claim carries a [`Lease`] (the [`NodeId`] of the engine
//!   that runs it, and until when) and a [`Fence`] token.
//! - [`Event`]: an append-only record of one state change. The store writes each event in the
//!   same transaction as the projection it changes, so the log and the tables never disagree.
//!
//! The key decision: transitions are tables, not `match` arms scattered through the engine.
//! `TaskState::can_transition(from, to)` is the one place that says what may happen, and every
//! allowed and forbidden pair is tested.
//!
//! ```
//! use domain::{TaskState, ExecutionState};
//! assert!(TaskState::Open.can_transition_to(TaskState::Running));
//! assert!(!TaskState::Done.can_transition_to(TaskState::Running));
//! assert!(ExecutionState::Running.can_transition_to(ExecutionState::Validating));
//! ```

pub mod agent;
pub mod approval;
pub mod area;
pub mod event;
pub mod execution;
pub mod handoff;
pub mod ids;
pub mod land;
pub mod lease;
pub mod message;
pub mod model;
pub mod policy;
pub mod size;
pub mod task;
pub mod text;
pub mod time;

pub use agent::AgentEvent;
pub use approval::{Approval, ApprovalSource, ApprovalState, Decision};
pub use area::{AreaLease, AreaLeaseId, AreaLeaseState, AreaPath};
pub use event::{EntityKind, Event, EventKind};
pub use execution::{Execution, ExecutionKind, ExecutionState, FailureClass, StopReason, Usage};
pub use handoff::HandoffTarget;
pub use ids::{ApprovalId, ExecutionId, TaskId, WorkflowId, WorkflowParent};
pub use land::LandStrategy;
pub use lease::{Fence, Lease, NodeId};
pub use message::{Message, MessageId, MessageState, MessageType, NewMessage, Priority, Receiver};
pub use model::{ModelUsage, ProviderKind, Tokens};
pub use policy::{Completion, FilesystemMode, Guards, NetworkMode, RetryPolicy};
pub use size::ByteSize;
pub use task::{NewTask, Task, TaskState};
pub use time::{Clock, Duration, ManualClock, SystemClock, Timestamp};

/// A transition that the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entity} cannot go from {from} to {to}")]
pub struct TransitionError {
    pub entity: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}
