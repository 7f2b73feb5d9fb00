//! The rules of the task tracker, in decider form: what a change may do, and what it does.
//!
//! Every write to agentgrid's tracker is a [`Change`]: create a task, move it through its
//! states, claim it for an execution, record that execution's progress and end, merge a done
//! sub-task into its parent, ask a person to approve a task's work and record the decision
//! (once: a decided approval is never decided again, and a rejection reopens the task in the
//! same transaction). Whether a change is allowed, and what it makes happen, is decided
//! here and nowhere else, by two pure functions:
//!
//! - [`decide`]`(&State, &Command) -> Result<Vec<Event>, Refusal>` checks one change against
//!   the state (a state machine transition, a dependency cycle, a second claim on a task, a
//!   progress report on an execution that ended, an idempotency key used before) and returns
//!   the events it makes, or why it is refused, in words a person can act on.
//! - [`evolve`]`(&mut State, &Event)` folds one event into the state: the projections of tasks,
//!   executions and merges, and every entity's version.
//!
//! A store only persists. For each change of a batch it loads what the change needs (the keys
//! [`wants`] names that the [`State`] does not know yet), decides, appends the events with the
//! entity's next version, and evolves; at the end it writes the rows that changed from the
//! evolved state. So every backend (SQLite today, PostgreSQL later) gets the same rules for
//! free, and the projection always equals the fold of the events, which the property tests
//! check.
//!
//! The key design decision: the state a backend builds is *partial*, holding only what the
//! batch touches (a few rows), not the tracker. [`State::complete`] is the other kind, knowing
//! everything, which a fold of a whole log and the tests use.
//!
//! ```
//! use domain::{NewTask, TaskState, Timestamp};
//! use tracker::{Change, Command, State, decide, evolve};
//!
//! let mut state = State::complete();
//! let change = Change::CreateTask(NewTask::titled("Add CSV export"));
//! let command = Command { actor: "cli", now: Timestamp(1_000), change: &change };
//! for event in decide(&state, &command).unwrap() {
//!     evolve(&mut state, &event);
//! }
//! let task = state.task(domain::TaskId(1)).unwrap();
//! assert_eq!(task.state, TaskState::Open);
//!
//! let again = Change::SetTaskState { id: task.id, to: TaskState::Done, reason: None };
//! let refusal = decide(&state, &Command { change: &again, ..command }).unwrap_err();
//! assert_eq!(refusal.to_string(), "task #1 cannot go from open to done; from open it can go to running, failed, cancelled");
//! ```

mod area_leases;
mod command;
mod decide;
mod event;
mod evolve;
mod fasthash;
mod lease;
mod messages;
mod refusal;
mod state;
mod workflows;

pub use command::{Change, MergeResult, TaskEdit};
pub use decide::{COMMENT, Command, SUBTASK_CREATE, decide, wants};
pub use event::{Entry, Event, KeyUse};
pub use evolve::evolve;
pub use messages::Sent;
pub use refusal::Refusal;
pub use state::{Key, LandStatus, LandStep, MergeStatus, MergeStep, State};
pub use workflows::{
    Begun, MAX_FINISHED_RUNS_PER_TASK, WorkflowRun, command_kind, command_visit, outcome_of,
};
