//! The durable store of agentgrid: an append-only event log with projections of tasks, task
//! dependencies and executions, kept in SQLite.
//!
//! Everything the system knows lives here. The engine, the scheduler and the CLI never write
//! rows directly; they describe what should happen as a list of [`Change`]s and hand it to
//! [`Store::apply`]. The rules (a task state machine transition, a dependency cycle, a second
//! claim on a task) are the `tracker` crate's: the store loads what each change touches,
//! lets `tracker::decide` judge it, appends the events at each entity's next version and
//! writes the projection `tracker::evolve` leaves, all in one transaction. The reading side,
//! [`Store::task`], [`Store::tasks`], [`Store::events_after`] and friends, returns the domain
//! types; [`Store::model_usage`] sums the tokens and cost the model gateway recorded per
//! execution, task tree or agent.
//!
//! The principal types:
//! - [`Store`]: the object-safe trait everyone holds as `Arc<dyn Store>`. It names no database
//!   driver, so a PostgreSQL backend can implement it later.
//! - [`SqliteStore`]: the SQLite implementation, on one file shared by several processes.
//! - [`Change`] and [`Applied`]: a batch of requested changes and what it produced.
//! - [`Error`]: a refused change says which one (its index and name) and why.
//!
//! The key design decision: events and projections are written in the same transaction, and
//! the rules that matter most are also enforced by the database itself. At most one execution
//! per task may be active, and a partial unique index guarantees that even when two processes
//! race. Finishing an execution is refused once it has finished ([`Error::AlreadyFinished`]),
//! so an outcome can never be recorded twice.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use store::{Change, SqliteStore, Store};
//! use domain::{NewTask, TaskState, Timestamp};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(&dir.path().join("agentgrid.db")).unwrap();
//! let applied = store
//!     .apply("cli", Timestamp(1_000), vec![Change::CreateTask(NewTask::titled("Add CSV export"))])
//!     .await
//!     .unwrap();
//! let task = &applied.tasks[0];
//! assert_eq!(task.state, TaskState::Open);
//! assert_eq!(store.last_seq().await.unwrap(), 1);
//! # });
//! ```

mod backend;
mod change;
mod error;
mod metrics;
mod sqlite;
mod usage;

pub use backend::Store;
pub use change::{
    Applied, ApprovalFilter, AreaLeaseFilter, ExecutionFilter, KeyedCall, Land, Merge,
    MessageFilter, MessageSweep, ProviderStanding, TaskFilter, WorkflowFilter,
};
pub use error::Error;
pub use metrics::AgentMetrics;
pub use sqlite::{DEFAULT_BUSY_TIMEOUT, OpenOptions, SqliteStore, bell_path};
pub use tracker::{Change, MergeResult, TaskEdit, WorkflowRun};
pub use usage::{ModelUsage, UsageGroup, UsageGroupSum, UsageKey, UsageScope};
