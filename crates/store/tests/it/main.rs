//! Integration tests of the store against real SQLite files in temporary directories.

mod approvals;
mod area_leases;
mod conformance;
mod durability;
mod events;
mod executions;
mod metrics;
mod tasks;
mod usage;
mod views;
mod watch;
mod workflows;

use std::path::PathBuf;

use domain::{NewTask, Task, TaskId, Timestamp};
use store::{Change, SqliteStore, Store};
use tempfile::TempDir;

/// The time the tests pretend it is; each test moves it explicitly where time matters.
pub const T0: Timestamp = Timestamp(1_700_000_000_000);

/// A fresh store in its own temporary directory. The directory must outlive the store.
pub fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&db_path(&dir)).expect("a fresh database opens");
    (dir, store)
}

pub fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("agentgrid.db")
}

/// The schema scripts as released, oldest first.
const RELEASED: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_model_usage.sql"),
    include_str!("../../migrations/0003_checks_without_lists.sql"),
    include_str!("../../migrations/0004_no_progress.sql"),
    include_str!("../../migrations/0005_keys_and_merges.sql"),
];

/// Writes a database file exactly as a build with schema `version` left it, with no rows, and
/// returns a raw connection to it for the test to fill.
pub fn file_at_version(dir: &TempDir, version: usize) -> rusqlite::Connection {
    let raw = rusqlite::Connection::open(db_path(dir)).unwrap();
    raw.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);",
    )
    .unwrap();
    for (i, script) in RELEASED[..version].iter().enumerate() {
        raw.execute_batch(script).unwrap();
        raw.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
            [i as i64 + 1],
        )
        .unwrap();
    }
    raw
}

/// Creates one task and returns it as stored.
pub async fn create(store: &SqliteStore, new: NewTask) -> Task {
    let applied = store
        .apply("cli", T0, vec![Change::CreateTask(new)])
        .await
        .expect("task created");
    assert_eq!(applied.tasks.len(), 1);
    applied.tasks[0].clone()
}

pub async fn create_titled(store: &SqliteStore, title: &str) -> TaskId {
    create(store, NewTask::titled(title)).await.id
}

pub fn sub_task(title: &str, parent: TaskId) -> NewTask {
    NewTask {
        parent: Some(parent),
        ..NewTask::titled(title)
    }
}
