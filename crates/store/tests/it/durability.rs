//! Opening, reopening and migrating database files.

use std::time::Duration;

use domain::{NewTask, TaskState};
use store::{Change, Error, ExecutionFilter, OpenOptions, SqliteStore, Store, TaskFilter};

use crate::{T0, create_titled, db_path};

#[tokio::test]
async fn data_survives_closing_and_reopening_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    assert!(!path.exists());
    let store = SqliteStore::open(&path).unwrap();
    assert!(path.exists(), "open creates the file");
    assert_eq!(store.schema_version().unwrap(), 19);
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
        assert_eq!(store.schema_version().unwrap(), 19);
    }

    let raw = rusqlite::Connection::open(&path).unwrap();
    let applied: i64 = raw
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    // Versions 1 to 12, 14, 15, 17, 18 and 19.
    assert_eq!(
        applied, 17,
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
                known: 19,
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
        assert_eq!(opener.join().unwrap().unwrap().unwrap(), 19);
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let applied: i64 = raw
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(applied, 17);
}

#[tokio::test]
async fn a_writer_held_up_by_another_process_gives_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let options = OpenOptions {
        busy_timeout: Duration::from_millis(200),
        ..OpenOptions::default()
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
        err.to_string()
            .contains("the database is locked by another process"),
        "{err}"
    );
    // Readers are not held up by a writer in WAL mode.
    assert_eq!(store.task(id).await.unwrap().unwrap().title, "a");

    holder.execute_batch("COMMIT").unwrap();
    store.apply("cli", T0, comment()).await.unwrap();
}

/// The connection lives on a thread of its own: a write that waits for another process's lock
/// must leave the async runtime free, even one with a single thread.
#[test]
fn a_write_waiting_for_the_lock_leaves_the_runtime_free() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let options = OpenOptions {
            busy_timeout: Duration::from_secs(20),
            ..OpenOptions::default()
        };
        let store = std::sync::Arc::new(SqliteStore::open_with(&path, &options).unwrap());
        let id = create_titled(&store, "a").await;

        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let write = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .apply(
                        "cli",
                        T0,
                        vec![Change::Comment {
                            id,
                            text: "written once the lock is released".into(),
                        }],
                    )
                    .await
            }
        });
        // Timers keep firing on the runtime's one thread while the write waits.
        let started = std::time::Instant::now();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "ten 20 ms timers took {:?}: the runtime was blocked",
            started.elapsed()
        );
        assert!(!write.is_finished(), "the write should still be waiting");
        // Other calls on the same store wait behind the write, in order, without blocking
        // the runtime either; reads from another connection are not held up at all.
        let reader = SqliteStore::open(&path).unwrap();
        assert_eq!(reader.task(id).await.unwrap().unwrap().title, "a");

        holder.execute_batch("ROLLBACK").unwrap();
        write.await.unwrap().unwrap();
        let events = store
            .entity_events(domain::EntityKind::Task, id.0)
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| format!("{:?}", e.kind).contains("written once the lock")),
            "{events:?}"
        );
    });
}

#[tokio::test]
async fn a_version_2_database_is_rebuilt_keeping_its_rows_ids_and_claims() {
    let dir = tempfile::tempdir().unwrap();
    let raw = crate::file_at_version(&dir, 2);
    raw.execute_batch(
        "INSERT INTO tasks (id, title, body, labels, priority, state, parent, root, depth, \
             created_at, updated_at, attempts, executions, summary)
         VALUES (1, 'epic', 'the body', '[\"big\"]', 1, 'waiting', NULL, 1, 0, 5, 6, 0, 1, NULL),
                (2, 'part', '', '[]', 2, 'running', 1, 1, 1, 7, 8, 1, 1, NULL),
                (3, 'done before', '', '[]', 3, 'done', NULL, 3, 0, 9, 9, 1, 1, 'ok');
         INSERT INTO task_deps (task_id, blocked_by) VALUES (2, 3);
         INSERT INTO executions (id, task_id, kind, agent, attempt, iteration, state, queued_at,
             ended_at, exit_code, wall_ms, cpu_ms)
         VALUES (1, 3, 'work', 'claude', 1, 1, 'succeeded', 9, 10, 0, 12, 3),
                (2, 1, 'work', 'planner', 1, 1, 'succeeded', 5, 6, 0, 1, 1),
                (3, 2, 'work', 'claude', 1, 1, 'running', 8, NULL, NULL, 0, 0);
         INSERT INTO model_usage (execution_id, task_id, root, agent, model, at, input_tokens,
             output_tokens, cached_tokens, cost_micros)
         VALUES (1, 3, 3, 'claude', 'sonnet', 10, 100, 20, 0, 7);
         -- As if later rows had been written and rolled back by hand: ids are not reused.
         UPDATE sqlite_sequence SET seq = 10 WHERE name = 'tasks';",
    )
    .unwrap();
    drop(raw);

    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    assert_eq!(store.schema_version().unwrap(), 19);
    let tasks = store.tasks(&TaskFilter::default()).await.unwrap();
    let summary: Vec<_> = tasks
        .iter()
        .map(|t| {
            (
                t.id.0,
                t.title.as_str(),
                t.state,
                t.parent.map(|p| p.0),
                t.blocked_by.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "epic", TaskState::Waiting, None, vec![]),
            (
                2,
                "part",
                TaskState::Running,
                Some(1),
                vec![domain::TaskId(3)]
            ),
            (3, "done before", TaskState::Done, None, vec![]),
        ]
    );
    assert_eq!(tasks[0].labels, vec!["big".to_string()]);
    assert_eq!(tasks[2].summary.as_deref(), Some("ok"));
    let executions = store.executions(&ExecutionFilter::default()).await.unwrap();
    assert_eq!(executions.len(), 3);
    assert_eq!(executions[0].usage.wall_ms, 12);
    assert_eq!(
        store
            .model_usage(&store::UsageScope::Execution(executions[0].id))
            .await
            .unwrap()
            .cost_micros,
        7
    );

    // The claim on task 2 still holds, through the rebuilt partial index too.
    let second = store
        .apply(
            "engine",
            T0,
            vec![Change::CreateExecution {
                task_id: domain::TaskId(2),
                kind: domain::ExecutionKind::Work,
                agent: "claude".into(),
                attempt: 2,
                lease: None,
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(second, Error::AlreadyActive { .. }), "{second}");
    let raw = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let raw_claim = raw.execute(
        "INSERT INTO executions (task_id, kind, agent, attempt, iteration, state, queued_at) \
         VALUES (2, 'work', 'claude', 2, 1, 'queued', 11)",
        [],
    );
    assert!(
        raw_claim.is_err(),
        "the unique index refuses a second active execution"
    );
    let bad_state = raw.execute("UPDATE tasks SET state = 'sleeping' WHERE id = 3", []);
    assert!(bad_state.is_err(), "the state check still holds");

    // New rows continue the old sequences.
    let new = create_titled(&store, "after the upgrade").await;
    assert_eq!(new.0, 11);
    let applied = store
        .apply(
            "engine",
            T0,
            vec![Change::CreateExecution {
                task_id: new,
                kind: domain::ExecutionKind::Work,
                agent: "claude".into(),
                attempt: 1,
                lease: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(applied.executions[0].id.0, 4);

    let dangling: i64 = raw
        .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(dangling, 0);
    let leftovers: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_schema WHERE name LIKE '%_v3' OR name LIKE '%_v4' OR name = 'tasks_state'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_version_3_database_learns_no_progress_keeping_its_rows_ids_and_claims() {
    let dir = tempfile::tempdir().unwrap();
    let raw = crate::file_at_version(&dir, 3);
    raw.execute_batch(
        "INSERT INTO tasks (id, title, body, labels, priority, state, parent, root, depth, \
             created_at, updated_at, attempts, executions, summary)
         VALUES (1, 'stuck', '', '[]', 1, 'running', NULL, 1, 0, 5, 6, 0, 2, NULL),
                (2, 'done before', '', '[]', 2, 'done', NULL, 2, 0, 7, 8, 1, 1, 'ok');
         INSERT INTO executions (id, task_id, kind, agent, attempt, iteration, state, queued_at,
             ended_at, exit_code, wall_ms, cpu_ms, summary)
         VALUES (1, 2, 'work', 'claude', 1, 1, 'succeeded', 7, 8, 0, 12, 3, 'validated'),
                (2, 1, 'work', 'claude', 1, 2, 'failed', 5, 6, 1, 4, 2, 'no progress: old'),
                (3, 1, 'work', 'claude', 2, 1, 'running', 6, NULL, NULL, 0, 0, NULL);
         INSERT INTO model_usage (execution_id, task_id, root, agent, model, at, input_tokens,
             output_tokens, cached_tokens, cost_micros)
         VALUES (3, 1, 1, 'claude', 'sonnet', 6, 100, 20, 0, 7);
         UPDATE sqlite_sequence SET seq = 9 WHERE name = 'executions';",
    )
    .unwrap();
    // The schema this build replaces refuses the new state, so the upgrade is what admits it.
    let before = raw.execute(
        "UPDATE executions SET state = 'no_progress' WHERE id = 2",
        [],
    );
    assert!(before.is_err(), "version 3 already knew no_progress");
    drop(raw);

    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    assert_eq!(store.schema_version().unwrap(), 19);
    let executions = store.executions(&ExecutionFilter::default()).await.unwrap();
    let rows: Vec<_> = executions
        .iter()
        .map(|e| (e.id.0, e.task_id.0, e.state, e.summary.clone()))
        .collect();
    let mut rows = rows;
    rows.sort_by_key(|r| r.0);
    assert_eq!(
        rows,
        vec![
            (
                1,
                2,
                domain::ExecutionState::Succeeded,
                Some("validated".into())
            ),
            (
                2,
                1,
                domain::ExecutionState::Failed,
                Some("no progress: old".into())
            ),
            (3, 1, domain::ExecutionState::Running, None),
        ]
    );
    // Migration 10: executions claimed before leases have none, and the token of their rank
    // among their task's claims (task 1 was claimed by executions 2 and 3).
    let claims: Vec<_> = executions
        .iter()
        .map(|e| (e.id.0, e.fence, e.lease.clone()))
        .collect();
    assert_eq!(claims, vec![(1, 1, None), (2, 1, None), (3, 2, None)]);
    assert_eq!(
        store
            .model_usage(&store::UsageScope::Execution(domain::ExecutionId(3)))
            .await
            .unwrap()
            .cost_micros,
        7
    );

    // The claim on task 1 still holds, through the rebuilt partial index too.
    let second = store
        .apply(
            "engine",
            T0,
            vec![Change::CreateExecution {
                task_id: domain::TaskId(1),
                kind: domain::ExecutionKind::Work,
                agent: "claude".into(),
                attempt: 3,
                lease: None,
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(second, Error::AlreadyActive { .. }), "{second}");

    // The running execution can now end as no progress, and a new one continues the sequence.
    store
        .apply(
            "engine",
            T0,
            vec![Change::FinishExecution {
                id: domain::ExecutionId(3),
                state: domain::ExecutionState::NoProgress,
                exit_code: Some(0),
                usage: domain::Usage::default(),
                summary: Some("no progress: iterations 1 and 2 failed the same way".into()),
            }],
        )
        .await
        .unwrap();
    let ended = store
        .execution(domain::ExecutionId(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.state, domain::ExecutionState::NoProgress);
    let new = create_titled(&store, "after the upgrade").await;
    let applied = store
        .apply(
            "engine",
            T0,
            vec![Change::CreateExecution {
                task_id: new,
                kind: domain::ExecutionKind::Work,
                agent: "claude".into(),
                attempt: 1,
                lease: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(applied.executions[0].id.0, 10);

    let raw = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let bad_state = raw.execute("UPDATE executions SET state = 'stuck' WHERE id = 1", []);
    assert!(bad_state.is_err(), "the state check still holds");
    let dangling: i64 = raw
        .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(dangling, 0);
    let leftovers: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_schema WHERE name LIKE '%_v4'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
