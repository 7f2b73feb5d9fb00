//! The store's one error type.

use std::path::PathBuf;

use domain::{ExecutionId, ExecutionState, TaskId};

/// Everything that can go wrong in the store.
///
/// The variants about a refused change carry the change's position in the batch (`index`, from
/// 0) so a caller that sent several changes learns which one was wrong. Database failures keep
/// the driver's error only as a boxed source, so this type stays the same for every backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A change broke a rule of the task or execution model; nothing from its batch was written.
    #[error("change {index} ({change}) was refused: {reason}")]
    Refused {
        index: usize,
        change: &'static str,
        reason: String,
    },

    /// The task already has an execution in an active state, so a second one cannot start.
    #[error(
        "change {index} (create_execution) was refused: task #{task} already has an active \
         execution (#{execution}); wait for it to finish or cancel it first"
    )]
    AlreadyActive {
        index: usize,
        task: TaskId,
        execution: ExecutionId,
    },

    /// The execution has already reached a terminal state; its outcome is recorded once only.
    #[error(
        "change {index} (finish_execution) was refused: execution #{execution} already finished \
         as {state}; a finished execution cannot be finished again"
    )]
    AlreadyFinished {
        index: usize,
        execution: ExecutionId,
        state: ExecutionState,
    },

    /// A change made under an execution's fencing token, after that execution lost its claim
    /// on its task (recorded lost, or its task claimed again): the worker that sent it is
    /// stale, and nothing of its batch was written.
    #[error(
        "change {index} ({change}) was refused: execution #{execution} no longer holds the claim \
         on its task ({why}), so its changes are refused"
    )]
    Stale {
        index: usize,
        change: &'static str,
        execution: ExecutionId,
        why: String,
    },

    /// The file's schema is newer than this build understands.
    #[error(
        "the database {path} has schema version {found}, but this build of agentgrid knows only \
         versions up to {known}: upgrade agentgrid, or point it at another database file"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    /// The database holds a value that cannot be read back into the domain types.
    #[error(
        "the database {path} holds a value this build cannot read ({detail}); the file may have \
         been edited by hand or written by another version"
    )]
    Corrupt { path: PathBuf, detail: String },

    /// Another process held the database's write lock for longer than the store waits.
    /// Nothing was written, and the problem is transient: the same call may simply be retried.
    #[error(
        "the database is locked by another process: {path} stayed locked for more than \
         {waited_ms} ms while {action}; try again, and if it persists, look for a process \
         holding that file open in a transaction (a long `agentgrid task import`, a database \
         browser)"
    )]
    Busy {
        path: PathBuf,
        action: &'static str,
        waited_ms: u64,
    },

    /// SQLite (or, later, another backend) failed.
    #[error(
        "the database {path} failed while {action}: {source}; check that the file and its \
         directory are writable and that the disk is not full"
    )]
    Database {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// The failure is transient (another process holds the write lock) and nothing was
    /// written: the same call can be made again.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }

    /// The change was refused because the execution it was made for lost its claim: see
    /// [`Error::Stale`].
    pub fn is_stale(&self) -> bool {
        matches!(self, Error::Stale { .. })
    }

    /// For a refused change, the position of that change in its batch.
    pub fn change_index(&self) -> Option<usize> {
        match self {
            Error::Refused { index, .. }
            | Error::AlreadyActive { index, .. }
            | Error::AlreadyFinished { index, .. }
            | Error::Stale { index, .. } => Some(*index),
            _ => None,
        }
    }
}
