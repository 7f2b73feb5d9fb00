//! The scheduler: all policy about *what runs next*, as pure functions.
//!
//! [`decide`] takes a [`Snapshot`] of tasks and active executions, the [`Config`] and the current
//! time, and returns a [`Decision`]: the [`Action`]s to take (dispatch, kill, fail a task, close
//! a parent) and when to look again. [`after_execution`] says what becomes of a task when an
//! execution ends (done, split, retried with backoff, continued, blocked, failed).
//! [`guards::check_new_child`] refuses sub-tasks that would make a tree too deep or too wide.
//!
//! Architecture invariant: this crate never does IO, never reads a clock and never draws a random
//! number. The engine owns every effect; here the same inputs always give the same answer, so the
//! rules are tested with plain unit and property tests and no process, file or sleep.
//!
//! The rules, in brief:
//! - An open task is ready when every task it is blocked by is done and its backoff has passed
//!   (a nudge skips the backoff). A waiting task is due for a resume when its sub-tasks have all
//!   ended, as soon as one failed or was cancelled, when its resume timer fires, or when nudged.
//! - A clean exit with sub-tasks open is a split. A task is done only when every sub-task is
//!   done and, for an agent with validators, they passed on the merged tree; a parent that no
//!   agent resumes is closed from the evidence, or run once more by its work agent as a resume
//!   when that agent has validators.
//! - Ready tasks go in order of priority, then nudged first, then age.
//! - Agencies come first in routing: a task goes to the agency whose labels or capabilities
//!   accept it, then to a specialist by role, capability and load (by rule, or by a contract
//!   net: bids by rule, the best one awarded), else to the agency's coordinator; a task no
//!   agency accepts goes to the agents outside agencies.
//! - Caps: global, per agent, per agency, per label. Guards: depth, executions per task and per tree, new
//!   executions per minute. A capped task waits; a task past a guard fails with the reason.
//!
//! ```
//! use domain::{NewTask, Task, TaskId, Timestamp};
//! use scheduler::{decide, Action, AgentPolicy, Config, Snapshot};
//!
//! let config = Config { agents: vec![AgentPolicy::new("worker")], ..Config::default() };
//! let mut snapshot = Snapshot::default();
//! snapshot.insert(Task::new(TaskId(1), NewTask::titled("Add CSV export"), TaskId(1), 0, Timestamp(0)));
//! let decision = decide(&snapshot, &config, Timestamp(0));
//! assert!(matches!(&decision.actions[0], Action::Dispatch { agent, .. } if agent == "worker"));
//! ```

pub mod agency;
mod config;
mod decide;
pub mod guards;
mod outcome;
pub mod routing;
mod snapshot;

pub use agency::{AgencyPolicy, DayBudget, RoutingMode, SpecialistPolicy};
pub use config::{AgentPolicy, Completion, Config, Guards, RetryPolicy};
pub use decide::{agency_budget_spent, decide};
pub use outcome::{ExecutionEnd, HandedOff, TaskPlan, after_execution};
pub use routing::{Routed, assign, route};
pub use snapshot::{Action, ActiveExecution, Decision, KillReason, Snapshot};
