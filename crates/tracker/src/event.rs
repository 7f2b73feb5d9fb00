//! What the rules emit: entries for the event log, and the use of an idempotency key.

use domain::{EntityKind, EventKind, ExecutionId, TaskId, Timestamp};

/// One fact that [`crate::decide`] emitted and [`crate::evolve`] folds into the state.
// Nearly every event is a log entry: boxing it to shrink the rare key use would cost an
// allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A change of one entity, for the event log.
    Logged(Entry),
    /// A call made under an idempotency key. Kept beside the log rather than in it: the
    /// events of keyed calls (`task_created`, `task_commented`) are older than the keys and do
    /// not name them, so this is the one thing the rules remember that a fold of the log alone
    /// cannot rebuild.
    KeyUsed(KeyUse),
}

/// A change of one entity, as the log records it (without the numbers the backend assigns: the
/// global `seq` and the entity's version).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub entity: EntityKind,
    pub id: i64,
    pub at: Timestamp,
    pub kind: EventKind,
}

impl Entry {
    pub fn task(id: TaskId, at: Timestamp, kind: EventKind) -> Entry {
        Entry {
            entity: EntityKind::Task,
            id: id.0,
            at,
            kind,
        }
    }

    pub fn execution(id: ExecutionId, at: Timestamp, kind: EventKind) -> Entry {
        Entry {
            entity: EntityKind::Execution,
            id: id.0,
            at,
            kind,
        }
    }
}

impl From<&domain::Event> for Entry {
    fn from(e: &domain::Event) -> Entry {
        Entry {
            entity: e.entity,
            id: e.entity_id,
            at: e.at,
            kind: e.kind.clone(),
        }
    }
}

/// `task` made an `op` call under `key`; `result` is the sub-task a `subtask_create` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub task: TaskId,
    pub op: &'static str,
    pub key: String,
    pub result: Option<TaskId>,
    pub at: Timestamp,
}
