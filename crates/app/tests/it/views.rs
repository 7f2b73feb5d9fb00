//! The queries: what `status` counts and shows, and that lists stop at their limits.

use app::{Events, Status, TaskList, TaskShow};
use domain::{ExecutionId, ExecutionKind, ExecutionState, NewTask, TaskId, TaskState, Usage};
use store::{Change, Store, TaskFilter};

use crate::{T0, ada, fixture};

async fn tasks(store: &store::SqliteStore, n: usize) -> Vec<TaskId> {
    let changes = (1..=n)
        .map(|i| Change::CreateTask(NewTask::titled(format!("task {i}"))))
        .collect();
    let applied = store.apply("cli", T0, changes).await.unwrap();
    applied.tasks.iter().map(|t| t.id).collect()
}

async fn set(store: &store::SqliteStore, ids: &[TaskId], to: TaskState) {
    let changes = ids
        .iter()
        .map(|&id| Change::SetTaskState {
            id,
            to,
            reason: Some(format!("went {to}")),
        })
        .collect();
    store.apply("engine", T0, changes).await.unwrap();
}

async fn execution(store: &store::SqliteStore, task: TaskId) -> ExecutionId {
    let claim = Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: None,
    };
    let id = store
        .apply("engine", T0, vec![claim])
        .await
        .unwrap()
        .executions[0]
        .id;
    let start = vec![
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
            pid: 42,
            iteration: 1,
            log_path: None,
        },
    ];
    store.apply("engine", T0, start).await.unwrap();
    id
}

async fn finish(store: &store::SqliteStore, id: ExecutionId) {
    let end = Change::FinishExecution {
        id,
        state: ExecutionState::Failed,
        exit_code: Some(1),
        usage: Usage::default(),
        summary: None,
    };
    store.apply("engine", T0, vec![end]).await.unwrap();
}

#[tokio::test]
async fn status_counts_every_state_and_lists_only_the_newest_that_need_a_person() {
    let f = fixture();
    let ids = tasks(&f.store, 30).await;
    set(&f.store, &ids[..20], TaskState::Failed).await;
    set(&f.store, &ids[20..25], TaskState::Running).await;
    set(&f.store, &ids[20..25], TaskState::Blocked).await;
    let view = f
        .app
        .ask(
            &ada(),
            Status {
                recent: 5,
                attention: 8,
                ..Status::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        view.tasks.len(),
        TaskState::ALL.len(),
        "every state is named"
    );
    assert_eq!(view.tasks["failed"], 20);
    assert_eq!(view.tasks["blocked"], 5);
    assert_eq!(view.tasks["open"], 5);
    assert_eq!(view.tasks["done"], 0);
    assert_eq!(view.attention_total, 25);
    let shown: Vec<i64> = view.attention.iter().map(|t| t.id.0).collect();
    // The newest eight of the blocked (21..=25) and failed (1..=20) tasks, oldest first.
    assert_eq!(shown, [18, 19, 20, 21, 22, 23, 24, 25]);
    assert_eq!(view.attention[0].summary.as_deref(), Some("went failed"));
    assert!(view.active.is_empty() && view.recent.is_empty());
    assert!(view.merge_failed.is_empty() && view.last_failure.is_none());
}

#[tokio::test]
async fn status_shows_active_executions_and_the_newest_ones_with_their_model_use() {
    let f = fixture();
    let ids = tasks(&f.store, 4).await;
    let mut executions = Vec::new();
    for &task in &ids {
        executions.push(execution(&f.store, task).await);
    }
    for &e in &executions[..3] {
        finish(&f.store, e).await;
    }
    let usage = |id, input| Change::RecordModelUsage {
        id,
        model: "default".into(),
        tokens: domain::Tokens {
            input,
            output: 5,
            cached: 0,
        },
        cost_micros: 10,
    };
    f.store
        .apply(
            "gateway",
            T0,
            vec![
                usage(executions[2], 100),
                usage(executions[2], 50),
                usage(executions[0], 7),
            ],
        )
        .await
        .unwrap();
    let view = f
        .app
        .ask(
            &ada(),
            Status {
                recent: 2,
                attention: 10,
                ..Status::default()
            },
        )
        .await
        .unwrap();
    let active: Vec<ExecutionId> = view.active.iter().map(|a| a.execution.id).collect();
    assert_eq!(active, [executions[3]]);
    let recent: Vec<(ExecutionId, u64)> = view
        .recent
        .iter()
        .map(|r| (r.execution.id, r.usage.tokens.input))
        .collect();
    assert_eq!(recent, [(executions[2], 150), (executions[3], 0)]);
    assert_eq!(view.recent[0].usage.requests, 2);
}

#[tokio::test]
async fn status_names_the_last_failed_validator_and_only_pauses_not_yet_over() {
    let f = fixture();
    let ids = tasks(&f.store, 1).await;
    let e = execution(&f.store, ids[0]).await;
    let result: domain::event::ValidatorResult = serde_json::from_value(serde_json::json!({
        "name": "tests",
        "score": 0.0,
        "passed": false,
        "weight": 1.0,
        "reason": "2 tests failed",
    }))
    .unwrap();
    let until = domain::Timestamp(T0.0 + 60_000);
    let changes = vec![
        Change::Validated {
            id: e,
            iteration: 1,
            score: 0.0,
            passed: false,
            results: vec![result],
        },
        Change::PauseProvider {
            id: e,
            provider: "openai".into(),
            until,
            reason: "insufficient_quota".into(),
        },
    ];
    f.store.apply("engine", T0, changes).await.unwrap();
    let view = f.app.ask(&ada(), Status::default()).await.unwrap();
    let (validation, failed) = view.last_failure.expect("a failed validator");
    assert_eq!((validation.execution, validation.iteration), (e, 1));
    assert_eq!(failed.reason.as_deref(), Some("2 tests failed"));
    assert_eq!(view.providers.len(), 1);
    assert_eq!(
        view.providers[0].paused,
        Some((until, "insufficient_quota".to_string()))
    );

    // By the app's clock the pause is over.
    f.clock.set(domain::Timestamp(until.0 + 1));
    let view = f.app.ask(&ada(), Status::default()).await.unwrap();
    assert!(view.providers.is_empty(), "{:?}", view.providers);
}

#[tokio::test]
async fn status_shows_timers_the_engine_and_only_failures_that_still_matter() {
    let f = fixture();
    let ids = tasks(&f.store, 2).await;
    let e = execution(&f.store, ids[0]).await;
    let validated = |iteration, passed| Change::Validated {
        id: e,
        iteration,
        score: if passed { 1.0 } else { 0.0 },
        passed,
        results: vec![
            serde_json::from_value(serde_json::json!({
                "name": "tests", "score": 0.0, "passed": passed, "weight": 1.0,
            }))
            .unwrap(),
        ],
    };
    f.store
        .apply("engine", T0, vec![validated(1, false)])
        .await
        .unwrap();
    let view = f.app.ask(&ada(), Status::default()).await.unwrap();
    assert!(view.last_failure.is_some(), "a failure while the task runs");
    f.store
        .apply(
            "engine",
            T0,
            vec![
                Change::ProcessStarted {
                    id: e,
                    pid: 43,
                    iteration: 2,
                    log_path: None,
                },
                validated(2, true),
            ],
        )
        .await
        .unwrap();
    let view = f.app.ask(&ada(), Status::default()).await.unwrap();
    assert!(view.last_failure.is_none(), "answered by a later pass");
    assert!(!view.active[0].interrupted, "not asked: shown as recorded");

    let at = domain::Timestamp(T0.0 + 480_000);
    let retry = Change::ScheduleTask {
        id: ids[1],
        not_before: Some(at),
        attempts: 1,
        continuations: 0,
        reason: None,
    };
    f.store.apply("engine", T0, vec![retry]).await.unwrap();
    let stopped = Status {
        engine: app::EngineState::Stopped,
        ..Status::default()
    };
    let view = f.app.ask(&ada(), stopped).await.unwrap();
    assert_eq!(
        view.timers,
        [app::Timer {
            task: ids[1],
            kind: app::TimerKind::Retry,
            at
        }]
    );
    assert!(
        view.active[0].interrupted,
        "no engine: the execution is cut off"
    );
    assert_eq!(view.engine, app::EngineState::Stopped);
}

#[tokio::test]
async fn a_task_list_with_a_limit_gives_the_newest_and_says_whether_there_are_more() {
    let f = fixture();
    let ids = tasks(&f.store, 10).await;
    set(&f.store, &ids[..4], TaskState::Cancelled).await;
    let list = |filter: TaskFilter, limit| TaskList { filter, limit };
    let page = f
        .app
        .ask(&ada(), list(TaskFilter::default(), Some(3)))
        .await
        .unwrap();
    let shown: Vec<i64> = page.tasks.iter().map(|t| t.id.0).collect();
    assert_eq!((shown, page.more), (vec![8, 9, 10], true));
    let page = f
        .app
        .ask(&ada(), list(TaskFilter::default(), Some(10)))
        .await
        .unwrap();
    assert_eq!((page.tasks.len(), page.more), (10, false));
    let cancelled = TaskFilter {
        states: vec![TaskState::Cancelled],
        ..TaskFilter::default()
    };
    let page = f
        .app
        .ask(&ada(), list(cancelled.clone(), Some(3)))
        .await
        .unwrap();
    let shown: Vec<i64> = page.tasks.iter().map(|t| t.id.0).collect();
    assert_eq!((shown, page.more), (vec![2, 3, 4], true));
    let page = f.app.ask(&ada(), list(cancelled, None)).await.unwrap();
    assert_eq!((page.tasks.len(), page.more), (4, false));
}

#[tokio::test]
async fn a_task_shows_its_executions_and_history_and_events_page_by_task() {
    let f = fixture();
    let ids = tasks(&f.store, 2).await;
    let e = execution(&f.store, ids[1]).await;
    finish(&f.store, e).await;
    let detail = f.app.ask(&ada(), TaskShow { id: ids[1] }).await.unwrap();
    assert_eq!(detail.executions.len(), 1);
    assert_eq!(detail.executions[0].id, e);
    assert!(detail.events.iter().all(|ev| ev.entity_id == ids[1].0));
    assert!(detail.events.len() >= 2, "{:?}", detail.events);

    let all = f
        .app
        .ask(
            &ada(),
            Events {
                task: None,
                after: 0,
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert!(all.at_end);
    let first = f
        .app
        .ask(
            &ada(),
            Events {
                task: Some(ids[1]),
                after: 0,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.events.len(), 1);
    assert!(!first.at_end);
    let rest = f
        .app
        .ask(
            &ada(),
            Events {
                task: Some(ids[1]),
                after: first.next,
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert!(rest.at_end);
    // A task's events page through its own and its execution's, in log order.
    let executions = rest
        .events
        .iter()
        .filter(|ev| ev.entity == domain::EntityKind::Execution)
        .count();
    assert!(executions >= 2, "{:?}", rest.events);
    assert!(rest.events.iter().all(|ev| ev.entity_id
        == if ev.entity == domain::EntityKind::Execution {
            e.0
        } else {
            ids[1].0
        }));
    assert_eq!(1 + rest.events.len(), detail.events.len() + executions);
    assert!(rest.events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(rest.events.iter().all(|ev| ev.seq > first.next));
    assert!(
        all.events.len() > detail.events.len(),
        "the log holds the other task too"
    );
}

/// An agent's CLI writes its own usage reports, so a hostile one can claim any number: the
/// summary `task show` prints saturates instead of overflowing (a panic in a debug build, a
/// small wrapped number in a release one).
#[test]
fn the_summary_of_an_agent_s_reported_usage_saturates_on_made_up_numbers() {
    let usage = |input_tokens, output_tokens| app::AgentRecord {
        iteration: 1,
        event: domain::AgentEvent::Usage {
            input_tokens,
            output_tokens,
            cached_tokens: 0,
        },
    };
    let records = [usage(u64::MAX, 3), usage(u64::MAX, 4), usage(1, u64::MAX)];
    let summary = app::AgentSummary::of(ExecutionId(1), &records).unwrap();
    assert_eq!(
        summary.reported_tokens,
        domain::Tokens {
            input: u64::MAX,
            output: u64::MAX,
            cached: 0,
        }
    );
    let honest = app::AgentSummary::of(ExecutionId(1), &[usage(10, 3), usage(5, 4)]).unwrap();
    assert_eq!(
        (honest.reported_tokens.input, honest.reported_tokens.output),
        (15, 7)
    );
}
