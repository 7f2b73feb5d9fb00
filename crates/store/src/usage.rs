//! The read side of model usage: which requests to sum, and the sums.

use domain::{ExecutionId, TaskId, Timestamp};

/// Which model requests [`Store::model_usage`](crate::Store::model_usage) adds up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageScope {
    /// The requests of one execution.
    Execution(ExecutionId),
    /// The requests of every execution on any task of the tree whose root task is this one.
    /// Pass the tree's root (`Task::root`); a task inside the tree selects nothing of its own.
    Tree(TaskId),
    /// The requests of every execution of one agent recorded at or after `from` and before
    /// `until`, for example one UTC day.
    Agent {
        agent: String,
        from: Timestamp,
        until: Timestamp,
    },
    /// Every request recorded at or after this time: what a run has spent so far.
    Since(Timestamp),
}

/// Sums over a set of model requests: one type for the store, the gateway and the views.
pub use domain::ModelUsage;

/// How [`Store::model_usage_grouped`](crate::Store::model_usage_grouped) groups requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// By the task the execution worked on.
    Task,
    /// By the root of the task's tree: a parent summed with all its sub-tasks.
    Tree,
    /// By the agent that ran the execution.
    Agent,
    /// By the UTC day the request was recorded on.
    Day,
}

/// The sums of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroupSum {
    pub key: UsageKey,
    pub usage: ModelUsage,
}

/// What a group of [`UsageGroupSum`] stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum UsageKey {
    Task(TaskId),
    Agent(String),
    /// The first millisecond of the UTC day.
    Day(Timestamp),
}
