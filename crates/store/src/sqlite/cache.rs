//! The rows this connection last committed, for the next batch to start from instead of
//! reading them again.
//!
//! A batch loads every task and execution it touches and each entity's version (the last
//! `entity_seq`), and the engine's batches touch the same few rows again and again: the end
//! of one execution and the claim of the next read back what the batch before wrote. Those
//! reads were a fifth of a batch's statements. What this connection committed is what the
//! database holds for as long as no other connection commits, and SQLite says exactly that:
//! `PRAGMA data_version` changes when, and only when, another connection committed. So each
//! batch, holding the write lock, first reads it; when it moved, the cache is dropped whole.
//!
//! Only committed states go in: after a commit, the final state of every row the batch read
//! or wrote and the version of every entity it appended to. A batch that fails leaves the
//! cache as it was, which is still what the database holds. Debug builds read the row from
//! the database at every hit as well and panic when the two differ.

use std::collections::HashMap;

use domain::{EntityKind, Execution, ExecutionId, Task, TaskId};
use rusqlite::Connection;

use super::rows::Fail;
use crate::Applied;

/// How many rows of each kind are kept; past it the kind starts again empty. The engine's
/// working set is the tasks and executions running now.
const CAPACITY: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct RowCache {
    /// `PRAGMA data_version` when the cache was last known to be the database's.
    version: Option<i64>,
    tasks: HashMap<TaskId, Task>,
    executions: HashMap<ExecutionId, Execution>,
    versions: HashMap<(EntityKind, i64), u64>,
}

impl RowCache {
    /// Drops everything when another connection committed since the last call. `conn` must be
    /// in a write transaction, so that nobody else can commit until this batch does.
    pub(crate) fn check(&mut self, conn: &Connection) -> Result<(), Fail> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if self.version != Some(version) {
            self.clear();
            self.version = Some(version);
        }
        Ok(())
    }

    pub(crate) fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id)
    }

    pub(crate) fn execution(&self, id: ExecutionId) -> Option<&Execution> {
        self.executions.get(&id)
    }

    /// The entity's version (its events so far), when known.
    pub(crate) fn version(&self, entity: EntityKind, id: i64) -> Option<u64> {
        self.versions.get(&(entity, id)).copied()
    }

    /// Takes in what a batch committed: `read` are the rows it loaded and left unchanged.
    pub(crate) fn committed(
        &mut self,
        applied: &Applied,
        read_tasks: Vec<Task>,
        read: Vec<Execution>,
    ) {
        if self.tasks.len() + applied.tasks.len() + read_tasks.len() > CAPACITY {
            self.tasks.clear();
        }
        if self.executions.len() + applied.executions.len() + read.len() > CAPACITY {
            self.executions.clear();
        }
        if self.versions.len() + applied.events.len() > CAPACITY {
            self.versions.clear();
        }
        for task in read_tasks.into_iter().chain(applied.tasks.iter().cloned()) {
            self.tasks.insert(task.id, task);
        }
        for execution in read.into_iter().chain(applied.executions.iter().cloned()) {
            self.executions.insert(execution.id, execution);
        }
        for event in &applied.events {
            self.versions
                .insert((event.entity, event.entity_id), event.entity_seq);
        }
    }

    fn clear(&mut self) {
        self.tasks.clear();
        self.executions.clear();
        self.versions.clear();
    }
}
