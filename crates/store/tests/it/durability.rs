//! Opening, reopening and migrating database files.

use std::time::Duration;

use domain::{NewTask, TaskState};
use store::{Change, Error, OpenOptions, SqliteStore, Store, TaskFilter};

use crate::{T0, create_titled, db_path};

#[tokio::test]
async fn data_survives_closing_and_reopening_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    assert!(!path.exists());
    let store = SqliteStore::open(&path).unwrap();
    assert!(path.exists(), "open creates the file");
    assert_eq!(store.schema_version().unwrap(), 2);
    let id = create_titled(&store, "persist me").await;
    let failed = store
        .apply(
            "cli",
            T0,
            vec![
                Change::CreateTask(NewTask::titled("lost with its batch")),
                Change::SetTaskState {
                    id,
                    to: TaskState::Done,
                    reason: None,
                },
            ],
        )
        .await;
    assert!(failed.is_err());
    let tasks = store.tasks(&TaskFilter::default()).await.unwrap();
    let events = store.events_after(0, 100).await.unwrap();
    drop(store);

    for _ in 0..3 {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.tasks(&TaskFilter::default()).await.unwrap(), tasks);
        assert_eq!(store.events_after(0, 100).await.unwrap(), events);
        assert_eq!(store.schema_version().unwrap(), 2);
    }

    let raw = rusqlite::Connection::open(&path).unwrap();
    let applied: i64 = raw
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        applied, 2,
        "each migration is recorded once, however often the file is opened"
    );
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(SqliteStore::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
        [],
    )
    .unwrap();
    drop(raw);

    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooNew {
                found: 999,
                known: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("schema version 999"), "{text}");
    assert!(text.contains("upgrade agentgrid"), "{text}");
}

#[test]
fn a_file_that_is_not_a_database_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::write(&path, "these are notes, not a database".repeat(100)).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::Database { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn several_stores_open_a_fresh_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || SqliteStore::open(&path).map(|s| s.schema_version()))
        })
        .collect();
    for opener in openers {
        assert_eq!(opener.join().unwrap().unwrap().unwrap(), 2);
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let applied: i64 = raw
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(applied, 2);
}

#[tokio::test]
async fn a_writer_held_up_by_another_process_gives_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let options = OpenOptions {
        busy_timeout: Duration::from_millis(200),
    };
    let store = SqliteStore::open_with(&path, &options).unwrap();
    let id = create_titled(&store, "a").await;

    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let comment = || {
        vec![Change::Comment {
            id,
            text: "hello".into(),
        }]
    };
    let err = store.apply("cli", T0, comment()).await.unwrap_err();
    assert!(matches!(err, Error::Busy { waited_ms: 200, .. }), "{err:?}");
    assert!(
        err.to_string().contains("stayed locked by another process"),
        "{err}"
    );
    // Readers are not held up by a writer in WAL mode.
    assert_eq!(store.task(id).await.unwrap().unwrap().title, "a");

    holder.execute_batch("COMMIT").unwrap();
    store.apply("cli", T0, comment()).await.unwrap();
}
