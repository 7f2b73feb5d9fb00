//! Executions: the claim on a task, the lifecycle, and outcomes recorded exactly once.

use std::sync::{Arc, Barrier};

use domain::event::ValidatorResult;
use domain::{
    EntityKind, EventKind, ExecutionId, ExecutionKind, ExecutionState, TaskId, TaskState,
    Timestamp, Usage,
};
use store::{Applied, Change, Error, ExecutionFilter, SqliteStore, Store};

use crate::{T0, create_titled, db_path, fresh};

fn work(task_id: TaskId) -> Change {
    Change::CreateExecution {
        task_id,
        kind: ExecutionKind::Work,
        agent: "claude".into(),
        attempt: 1,
        lease: None,
    }
}

fn finish(id: ExecutionId, state: ExecutionState) -> Change {
    Change::FinishExecution {
        id,
        state,
        exit_code: None,
        usage: Usage {
            wall_ms: 10,
            cpu_ms: 5,
        },
        summary: None,
    }
}

async fn start(store: &SqliteStore, task: TaskId) -> ExecutionId {
    store
        .apply("engine", T0, vec![work(task)])
        .await
        .unwrap()
        .executions[0]
        .id
}

#[tokio::test]
async fn an_execution_runs_its_whole_lifecycle() {
    let (_dir, store) = fresh();
    let task_id = create_titled(&store, "Add CSV export").await;
    store
        .apply(
            "cli",
            T0,
            vec![
                Change::Nudge { id: task_id },
                Change::ScheduleTask {
                    id: task_id,
                    not_before: Some(T0),
                    attempts: 0,
                    continuations: 0,
                    reason: None,
                },
            ],
        )
        .await
        .unwrap();

    let t1 = Timestamp(T0.0 + 1_000);
    let applied = store
        .apply("engine", t1, vec![work(task_id)])
        .await
        .unwrap();
    let task = &applied.tasks[0];
    let queued = &applied.executions[0];
    let id = queued.id;
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.executions, 1);
    assert_eq!(
        (task.nudged_at, task.not_before),
        (None, None),
        "dispatch clears both"
    );
    assert_eq!(queued.state, ExecutionState::Queued);
    assert_eq!(
        (queued.iteration, queued.attempt, queued.queued_at),
        (0, 1, t1)
    );
    let kinds: Vec<(EntityKind, &str)> = applied
        .events
        .iter()
        .map(|e| (e.entity, e.kind.name()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EntityKind::Task, "task_state_changed"),
            (EntityKind::Execution, "execution_created")
        ]
    );

    let t2 = Timestamp(T0.0 + 2_000);
    let results = vec![ValidatorResult {
        name: "tests".into(),
        score: 0.5,
        passed: false,
        weight: 1.0,
        exit_code: Some(1),
        reason: Some("exited with 1".into()),
        output_tail: "1 failed".into(),
        ..Default::default()
    }];
    store
        .apply(
            "engine",
            t2,
            vec![
                Change::SetExecutionState {
                    id,
                    to: ExecutionState::Preparing,
                    reason: None,
                },
                Change::SetExecutionState {
                    id,
                    to: ExecutionState::Running,
                    reason: None,
                },
                Change::ProcessStarted {
                    id,
                    pid: 4242,
                    iteration: 1,
                    log_path: Some("/l/1.log".into()),
                },
            ],
        )
        .await
        .unwrap();
    let running = store.execution(id).await.unwrap().unwrap();
    assert_eq!(running.started_at, Some(t2));
    assert_eq!((running.pid, running.iteration), (Some(4242), 1));
    assert_eq!(running.log_path.as_deref(), Some("/l/1.log"));

    let t3 = Timestamp(T0.0 + 3_000);
    store
        .apply(
            "engine",
            t3,
            vec![
                Change::ProcessExited {
                    id,
                    iteration: 1,
                    exit_code: Some(0),
                    signal: None,
                },
                Change::SetExecutionState {
                    id,
                    to: ExecutionState::Validating,
                    reason: None,
                },
                Change::Validated {
                    id,
                    iteration: 1,
                    score: 0.5,
                    passed: false,
                    results,
                },
                // A failed validation runs the agent again; started_at keeps the first start.
                Change::SetExecutionState {
                    id,
                    to: ExecutionState::Running,
                    reason: None,
                },
                Change::ProcessStarted {
                    id,
                    pid: 4243,
                    iteration: 2,
                    log_path: None,
                },
            ],
        )
        .await
        .unwrap();
    let again = store.execution(id).await.unwrap().unwrap();
    assert_eq!(again.started_at, Some(t2));
    assert_eq!(again.score, Some(0.5));
    assert_eq!(
        (again.pid, again.iteration, again.exit_code),
        (Some(4243), 2, Some(0))
    );
    assert_eq!(
        again.log_path.as_deref(),
        Some("/l/1.log"),
        "kept when none is given"
    );

    let t4 = Timestamp(T0.0 + 4_000);
    let applied = store
        .apply(
            "engine",
            t4,
            vec![
                Change::ProcessExited {
                    id,
                    iteration: 2,
                    exit_code: Some(0),
                    signal: None,
                },
                Change::Committed {
                    id,
                    branch: "agentgrid/t1".into(),
                    commit: "0123456789abcdef".into(),
                },
                Change::FinishExecution {
                    id,
                    state: ExecutionState::Succeeded,
                    exit_code: None,
                    usage: Usage {
                        wall_ms: 3000,
                        cpu_ms: 1200,
                    },
                    summary: Some("exports CSV".into()),
                },
                Change::SetTaskState {
                    id: task_id,
                    to: TaskState::Done,
                    reason: Some("exports CSV".into()),
                },
            ],
        )
        .await
        .unwrap();
    let done = store.execution(id).await.unwrap().unwrap();
    assert_eq!(applied.executions, vec![done.clone()]);
    assert_eq!(done.state, ExecutionState::Succeeded);
    assert_eq!(done.ended_at, Some(t4));
    assert_eq!(done.pid, None);
    assert_eq!(
        done.exit_code,
        Some(0),
        "the exit code of the last process is kept"
    );
    assert_eq!(
        done.usage,
        Usage {
            wall_ms: 3000,
            cpu_ms: 1200
        }
    );
    assert_eq!(done.summary.as_deref(), Some("exports CSV"));
    let task = store.task(task_id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Done);
    assert_eq!(task.summary.as_deref(), Some("exports CSV"));

    let events = store
        .entity_events(EntityKind::Execution, id.0)
        .await
        .unwrap();
    let tail: Vec<&EventKind> = events.iter().rev().take(2).rev().map(|e| &e.kind).collect();
    assert_eq!(
        tail,
        [
            &EventKind::ExecutionStateChanged {
                from: ExecutionState::Running,
                to: ExecutionState::Succeeded,
                reason: None
            },
            &EventKind::ExecutionFinished {
                kind: ExecutionKind::Work,
                state: ExecutionState::Succeeded,
                usage: Usage {
                    wall_ms: 3000,
                    cpu_ms: 1200
                },
                summary: Some("exports CSV".into()),
                exit_code: None,
            },
        ]
    );
    assert_eq!(events.len(), 13);
}

#[tokio::test]
async fn a_second_active_execution_is_refused() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "a").await;
    let first = start(&store, task).await;
    let before = store.last_seq().await.unwrap();
    let err = store
        .apply(
            "engine",
            T0,
            vec![
                Change::Comment {
                    id: task,
                    text: "x".into(),
                },
                work(task),
            ],
        )
        .await
        .unwrap_err();
    match &err {
        Error::AlreadyActive {
            index,
            task: t,
            execution,
        } => {
            assert_eq!((*index, *t, *execution), (1, task, first));
        }
        other => panic!("expected AlreadyActive, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("task #1 already has an active execution (#1)"),
        "{err}"
    );
    assert_eq!(store.last_seq().await.unwrap(), before);

    // Once the first one is over and the task open again, a new execution may start.
    store
        .apply(
            "engine",
            T0,
            vec![
                finish(first, ExecutionState::Cancelled),
                Change::SetTaskState {
                    id: task,
                    to: TaskState::Open,
                    reason: None,
                },
            ],
        )
        .await
        .unwrap();
    let second = start(&store, task).await;
    assert_ne!(second, first);
    assert_eq!(store.task(task).await.unwrap().unwrap().executions, 2);
}

#[tokio::test]
async fn the_unique_index_holds_against_raw_writes() {
    let (dir, store) = fresh();
    let task = create_titled(&store, "a").await;
    start(&store, task).await;

    let raw = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let insert = |state: &str| {
        raw.execute(
            "INSERT INTO executions (task_id, kind, agent, attempt, iteration, state, queued_at) \
             VALUES (?1, 'work', 'rogue', 1, 0, ?2, 0)",
            rusqlite::params![task.0, state],
        )
    };
    for state in ExecutionState::ACTIVE {
        let err = insert(state.as_str()).unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{state}: {err}"
        );
        assert!(err.to_string().contains("UNIQUE"), "{err}");
    }
    // The index is partial: finished executions of the same task are fine.
    insert("failed").unwrap();
    insert("succeeded").unwrap();
    let filter = ExecutionFilter {
        task: Some(task),
        ..Default::default()
    };
    assert_eq!(store.executions(&filter).await.unwrap().len(), 3);
}

#[test]
fn two_stores_racing_for_one_task_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let rounds = 20;
    let setup = SqliteStore::open(&path).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let tasks: Vec<TaskId> = (0..rounds)
        .map(|i| runtime.block_on(async { create_titled(&setup, &format!("task {i}")).await }))
        .collect();
    drop(setup);

    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            let tasks = tasks.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let store = SqliteStore::open(&path).unwrap();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                tasks
                    .iter()
                    .map(|&task| {
                        barrier.wait();
                        runtime.block_on(store.apply("engine", T0, vec![work(task)]))
                    })
                    .collect::<Vec<Result<Applied, Error>>>()
            })
        })
        .collect();
    let results: Vec<Vec<Result<Applied, Error>>> =
        racers.into_iter().map(|r| r.join().unwrap()).collect();

    let store = SqliteStore::open(&path).unwrap();
    for (round, &task) in tasks.iter().enumerate() {
        let outcomes = [&results[0][round], &results[1][round]];
        let wins = outcomes.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {outcomes:?}");
        for outcome in outcomes {
            if let Err(err) = outcome {
                assert!(
                    matches!(err, Error::AlreadyActive { task: t, .. } if *t == task),
                    "round {round}: {err}"
                );
            }
        }
        let filter = ExecutionFilter {
            task: Some(task),
            ..Default::default()
        };
        let executions = runtime.block_on(store.executions(&filter)).unwrap();
        assert_eq!(executions.len(), 1);
        let stored = runtime.block_on(store.task(task)).unwrap().unwrap();
        assert_eq!(stored.executions, 1);
    }
}

#[tokio::test]
async fn an_execution_finishes_once_only() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "a").await;
    let id = start(&store, task).await;
    store
        .apply("engine", T0, vec![finish(id, ExecutionState::Cancelled)])
        .await
        .unwrap();
    let before = store.last_seq().await.unwrap();

    let err = store
        .apply("engine", T0, vec![finish(id, ExecutionState::Lost)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AlreadyFinished { index: 0, execution, state: ExecutionState::Cancelled } if execution == id),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("already finished as cancelled"),
        "{err}"
    );
    assert_eq!(store.last_seq().await.unwrap(), before);

    // Twice in one batch is refused the same way, and takes the first finish with it.
    let other = create_titled(&store, "b").await;
    let second = start(&store, other).await;
    let err = store
        .apply(
            "engine",
            T0,
            vec![
                finish(second, ExecutionState::Cancelled),
                finish(second, ExecutionState::Cancelled),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AlreadyFinished { index: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        store.execution(second).await.unwrap().unwrap().state,
        ExecutionState::Queued
    );

    let finished = |id: ExecutionId| {
        let store = &store;
        async move {
            store
                .entity_events(EntityKind::Execution, id.0)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.kind.name() == "execution_finished")
                .count()
        }
    };
    assert_eq!(finished(id).await, 1);
    assert_eq!(finished(second).await, 0);
}

#[tokio::test]
async fn execution_rules_are_enforced() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "a").await;
    let id = start(&store, task).await;
    let other = create_titled(&store, "b").await;
    let cases: Vec<(Change, String)> = vec![
        (
            Change::CreateExecution {
                task_id: other,
                kind: ExecutionKind::Resume,
                agent: "claude".into(),
                attempt: 1,
                lease: None,
            },
            format!("a resume execution needs task #{other} to be waiting, but it is open"),
        ),
        (
            Change::CreateExecution {
                task_id: other,
                kind: ExecutionKind::Work,
                agent: "claude".into(),
                attempt: 0,
                lease: None,
            },
            "attempts count from 1".into(),
        ),
        (work(TaskId(99)), "task #99 does not exist".into()),
        (
            Change::SetExecutionState {
                id,
                to: ExecutionState::Running,
                reason: None,
            },
            format!("execution #{id} cannot go from queued to running"),
        ),
        (
            Change::SetExecutionState {
                id,
                to: ExecutionState::Cancelled,
                reason: None,
            },
            "only become cancelled through finish_execution".into(),
        ),
        (
            finish(id, ExecutionState::Running),
            "cannot finish as running".into(),
        ),
        (
            finish(id, ExecutionState::Succeeded),
            "cannot go from queued to succeeded".into(),
        ),
        (
            Change::SetExecutionState {
                id: ExecutionId(50),
                to: ExecutionState::Running,
                reason: None,
            },
            "execution #50 does not exist".into(),
        ),
        (
            Change::ProcessExited {
                id,
                iteration: 3,
                exit_code: Some(1),
                signal: None,
            },
            "the exit reported is for iteration 3".into(),
        ),
        (
            Change::Validated {
                id,
                iteration: 0,
                score: 1.5,
                passed: true,
                results: vec![],
            },
            "scores go from 0 to 1".into(),
        ),
    ];
    for (change, expected) in cases {
        let name = change.name();
        let err = store.apply("engine", T0, vec![change]).await.unwrap_err();
        assert!(err.to_string().contains(&expected), "{name}: {err}");
    }

    store
        .apply("engine", T0, vec![finish(id, ExecutionState::Lost)])
        .await
        .unwrap();
    let err = store
        .apply(
            "engine",
            T0,
            vec![Change::ProcessStarted {
                id,
                pid: 1,
                iteration: 1,
                log_path: None,
            }],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("already finished as lost"),
        "{err}"
    );
}

#[tokio::test]
async fn a_resume_execution_needs_a_waiting_task() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "a").await;
    let first = start(&store, task).await;
    store
        .apply(
            "engine",
            T0,
            vec![
                Change::SetExecutionState {
                    id: first,
                    to: ExecutionState::Preparing,
                    reason: None,
                },
                Change::SetExecutionState {
                    id: first,
                    to: ExecutionState::Running,
                    reason: None,
                },
                finish(first, ExecutionState::Succeeded),
                Change::SetTaskState {
                    id: task,
                    to: TaskState::Waiting,
                    reason: None,
                },
            ],
        )
        .await
        .unwrap();
    let err = store
        .apply("engine", T0, vec![work(task)])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("needs task #1 to be open, but it is waiting"),
        "{err}"
    );
    let applied = store
        .apply(
            "engine",
            T0,
            vec![Change::CreateExecution {
                task_id: task,
                kind: ExecutionKind::Resume,
                agent: "claude".into(),
                attempt: 1,
                lease: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(applied.tasks[0].state, TaskState::Running);
    assert_eq!(applied.executions[0].kind, ExecutionKind::Resume);
}

#[tokio::test]
async fn execution_filters_select_by_task_activity_and_recency() {
    let (_dir, store) = fresh();
    let a = create_titled(&store, "a").await;
    let b = create_titled(&store, "b").await;
    let a1 = start(&store, a).await;
    store
        .apply(
            "engine",
            T0,
            vec![
                finish(a1, ExecutionState::Cancelled),
                Change::SetTaskState {
                    id: a,
                    to: TaskState::Open,
                    reason: None,
                },
            ],
        )
        .await
        .unwrap();
    let b1 = start(&store, b).await;
    let a2 = start(&store, a).await;

    let ids = |filter: ExecutionFilter| {
        let store = &store;
        async move {
            store
                .executions(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(ExecutionFilter::default()).await, vec![a1, b1, a2]);
    assert_eq!(
        ids(ExecutionFilter {
            task: Some(a),
            ..Default::default()
        })
        .await,
        vec![a1, a2]
    );
    assert_eq!(
        ids(ExecutionFilter {
            active_only: true,
            ..Default::default()
        })
        .await,
        vec![b1, a2]
    );
    let recent = ExecutionFilter {
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        ids(recent).await,
        vec![b1, a2],
        "the newest two, oldest first"
    );
    let a_active = ExecutionFilter {
        task: Some(a),
        active_only: true,
        limit: Some(5),
    };
    assert_eq!(ids(a_active).await, vec![a2]);
}

#[tokio::test]
async fn the_store_works_behind_a_shared_trait_object() {
    let (_dir, store) = fresh();
    let shared: Arc<dyn Store> = Arc::new(store);
    let applied = shared
        .apply(
            "cli",
            T0,
            vec![Change::CreateTask(domain::NewTask::titled("through dyn"))],
        )
        .await
        .unwrap();
    let id = applied.tasks[0].id;
    let worker = Arc::clone(&shared);
    let read = tokio::spawn(async move { worker.task(id).await.unwrap() })
        .await
        .unwrap();
    assert_eq!(read.map(|t| t.title), Some("through dyn".to_string()));
}

/// What the engine writes for one execution: its progress, its end, the task's settling, and
/// the next claim on the same task (a retry).
fn lifecycle_then_retry(task_id: TaskId, first: ExecutionId) -> Vec<Change> {
    let state = |to| Change::SetExecutionState {
        id: first,
        to,
        reason: None,
    };
    vec![
        state(ExecutionState::Preparing),
        state(ExecutionState::Running),
        Change::ProcessStarted {
            id: first,
            pid: 4242,
            iteration: 1,
            log_path: Some("logs/1.log".into()),
        },
        Change::ProcessExited {
            id: first,
            iteration: 1,
            exit_code: Some(1),
            signal: None,
        },
        state(ExecutionState::Validating),
        Change::Validated {
            id: first,
            iteration: 1,
            score: 0.5,
            passed: false,
            results: Vec::new(),
        },
        Change::Committed {
            id: first,
            branch: "agentgrid/task-1".into(),
            commit: "abc123".into(),
        },
        finish(first, ExecutionState::Failed),
        Change::SetTaskState {
            id: task_id,
            to: TaskState::Open,
            reason: Some("attempt 1 failed".into()),
        },
        Change::ScheduleTask {
            id: task_id,
            not_before: None,
            attempts: 1,
            continuations: 0,
            reason: None,
        },
        Change::CreateExecution {
            task_id,
            kind: ExecutionKind::Work,
            agent: "claude".into(),
            attempt: 2,
            lease: None,
        },
    ]
}

#[tokio::test]
async fn one_batch_leaves_the_same_rows_and_events_as_one_change_per_batch() {
    // The store writes each row once per batch; what it leaves must not depend on how the
    // changes were grouped.
    let (_a, together) = fresh();
    let (_b, one_by_one) = fresh();
    for store in [&together, &one_by_one] {
        let task = create_titled(store, "retried").await;
        let first = start(store, task).await;
        let changes = lifecycle_then_retry(task, first);
        if std::ptr::eq(store, &together) {
            store.apply("engine", T0, changes).await.unwrap();
        } else {
            for change in changes {
                store.apply("engine", T0, vec![change]).await.unwrap();
            }
        }
    }
    let task = TaskId(1);
    assert_eq!(
        together.task(task).await.unwrap(),
        one_by_one.task(task).await.unwrap()
    );
    let all = ExecutionFilter::default();
    let executions = together.executions(&all).await.unwrap();
    assert_eq!(executions, one_by_one.executions(&all).await.unwrap());
    assert_eq!(executions.len(), 2);
    assert_eq!(executions[0].state, ExecutionState::Failed);
    assert_eq!(executions[0].exit_code, Some(1));
    assert_eq!(executions[1].state, ExecutionState::Queued);
    let events = together.events_after(0, 1000).await.unwrap();
    assert_eq!(events, one_by_one.events_after(0, 1000).await.unwrap());
    for (kind, id) in [(EntityKind::Task, 1), (EntityKind::Execution, 1)] {
        let seqs: Vec<u64> = together
            .entity_events(kind, id)
            .await
            .unwrap()
            .iter()
            .map(|e| e.entity_seq)
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }
    // Only the new claim is active, and the unique index agrees.
    let active = together
        .executions(&ExecutionFilter {
            active_only: true,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].attempt, 2);
}

#[tokio::test]
async fn a_claim_after_an_unfinished_execution_in_the_same_batch_is_refused() {
    // The progress of the running execution is still held in the batch when the second claim
    // comes; the claim must see it as active all the same, and the batch leaves nothing.
    let (_dir, store) = fresh();
    let task = create_titled(&store, "busy").await;
    let first = start(&store, task).await;
    let err = store
        .apply(
            "engine",
            T0,
            vec![
                Change::SetExecutionState {
                    id: first,
                    to: ExecutionState::Preparing,
                    reason: None,
                },
                Change::SetTaskState {
                    id: task,
                    to: TaskState::Open,
                    reason: None,
                },
                work(task),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AlreadyActive { index: 2, execution, .. } if execution == first),
        "{err}"
    );
    let e = store.execution(first).await.unwrap().unwrap();
    assert_eq!(e.state, ExecutionState::Queued, "the batch was rolled back");
}

#[tokio::test]
async fn settling_applies_only_to_a_task_that_is_still_running() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "settled").await;
    let first = start(&store, task).await;
    let settle = |to| Change::SettleTask {
        id: task,
        to,
        reason: Some("attempt 1 failed".into()),
    };
    // Cancelled from the CLI while the execution ended: the end is recorded, the settle is not.
    store
        .apply(
            "cli",
            T0,
            vec![Change::SetTaskState {
                id: task,
                to: TaskState::Cancelled,
                reason: None,
            }],
        )
        .await
        .unwrap();
    let err = store
        .apply(
            "engine",
            T0,
            vec![
                finish(first, ExecutionState::Cancelled),
                settle(TaskState::Open),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no longer running") && err.to_string().contains("cancelled"),
        "{err}"
    );
    assert_eq!(
        store.task(task).await.unwrap().unwrap().state,
        TaskState::Cancelled
    );

    let other = create_titled(&store, "running").await;
    let second = start(&store, other).await;
    let applied = store
        .apply(
            "engine",
            T0,
            vec![
                Change::SetExecutionState {
                    id: second,
                    to: ExecutionState::Preparing,
                    reason: None,
                },
                Change::SetExecutionState {
                    id: second,
                    to: ExecutionState::Running,
                    reason: None,
                },
                finish(second, ExecutionState::Succeeded),
                Change::SettleTask {
                    id: other,
                    to: TaskState::Done,
                    reason: Some("validated".into()),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied.tasks[0].state, TaskState::Done);
    assert_eq!(applied.tasks[0].summary.as_deref(), Some("validated"));
}

#[tokio::test]
async fn every_end_an_execution_can_reach_is_stored_and_read_back() {
    let (_dir, store) = fresh();
    let ends: Vec<ExecutionState> = ExecutionState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .filter(|s| {
            ExecutionState::Running.can_transition_to(*s)
                || ExecutionState::Validating.can_transition_to(*s)
        })
        .collect();
    assert!(ends.contains(&ExecutionState::NoProgress), "{ends:?}");
    for state in ends {
        let task = create_titled(&store, &format!("ends {state}")).await;
        let id = start(&store, task).await;
        let mut path = vec![ExecutionState::Preparing, ExecutionState::Running];
        if !ExecutionState::Running.can_transition_to(state) {
            path.push(ExecutionState::Validating);
        }
        let mut changes: Vec<Change> = path
            .into_iter()
            .map(|to| Change::SetExecutionState {
                id,
                to,
                reason: None,
            })
            .collect();
        changes.push(finish(id, state));
        store
            .apply("engine", T0, changes)
            .await
            .unwrap_or_else(|e| panic!("finishing as {state}: {e}"));
        let stored = store.execution(id).await.unwrap().unwrap();
        assert_eq!(stored.state, state);
        assert!(stored.ended_at.is_some(), "{state}");
    }
}
