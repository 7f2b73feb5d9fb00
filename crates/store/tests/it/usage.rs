//! Model usage: the gateway's per-request records, their events and the sums per execution,
//! task tree and agent.

use domain::{
    EntityKind, EventKind, ExecutionId, ExecutionKind, ExecutionState, TaskId, Timestamp, Usage,
};
use store::{Change, Error, ModelUsage, SqliteStore, Store, UsageScope};

use crate::{T0, create, create_titled, db_path, fresh, sub_task};

const DAY_MS: i64 = 86_400_000;

async fn start(store: &SqliteStore, task_id: TaskId, agent: &str) -> ExecutionId {
    store
        .apply(
            "engine",
            T0,
            vec![Change::CreateExecution {
                task_id,
                kind: ExecutionKind::Work,
                agent: agent.into(),
                attempt: 1,
                lease: None,
            }],
        )
        .await
        .unwrap()
        .executions[0]
        .id
}

fn used(id: ExecutionId, model: &str, input: u64, output: u64, cached: u64, cost: u64) -> Change {
    Change::RecordModelUsage {
        id,
        model: model.into(),
        tokens: domain::Tokens {
            input,
            output,
            cached,
        },
        cost_micros: cost,
    }
}

async fn record(store: &SqliteStore, at: Timestamp, change: Change) {
    store.apply("gateway", at, vec![change]).await.unwrap();
}

fn sums(requests: u64, input: u64, output: u64, cached: u64, cost: u64) -> ModelUsage {
    ModelUsage {
        requests,
        tokens: domain::Tokens {
            input,
            output,
            cached,
        },
        cost_micros: cost,
    }
}

#[tokio::test]
async fn a_usage_record_appends_an_event_on_the_execution() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "Add CSV export").await;
    let exec = start(&store, task, "claude").await;
    let applied = store
        .apply(
            "engine",
            T0,
            vec![used(exec, "sonnet", 1200, 300, 800, 12_345)],
        )
        .await
        .unwrap();
    assert_eq!(applied.events.len(), 1);
    let event = &applied.events[0];
    assert_eq!(event.entity, EntityKind::Execution);
    assert_eq!(event.entity_id, exec.0);
    assert_eq!(
        event.kind,
        EventKind::ExecutionModelUsage {
            model: "sonnet".into(),
            input_tokens: 1200,
            output_tokens: 300,
            cached_tokens: 800,
            cost_micros: 12_345,
        }
    );
    assert_eq!(
        applied.executions[0].id, exec,
        "the execution counts as touched"
    );
    let stored = store
        .entity_events(EntityKind::Execution, exec.0)
        .await
        .unwrap();
    assert_eq!(stored.last().unwrap(), event);
}

#[tokio::test]
async fn sums_per_execution_tree_and_agent_day_add_up_the_right_rows() {
    let (_dir, store) = fresh();
    let root = create_titled(&store, "Ship the importer").await;
    let child = create(&store, sub_task("Parse the header", root)).await.id;
    let grandchild = create(&store, sub_task("Handle quotes", child)).await.id;
    let other_root = create_titled(&store, "Unrelated work").await;

    let on_child = start(&store, child, "claude").await;
    let on_grandchild = start(&store, grandchild, "codex").await;
    let elsewhere = start(&store, other_root, "claude").await;

    let day = Timestamp(T0.0 - T0.0.rem_euclid(DAY_MS));
    record(&store, T0, used(on_child, "sonnet", 100, 10, 40, 1_000)).await;
    record(&store, T0, used(on_child, "haiku", 50, 5, 0, 100)).await;
    record(&store, T0, used(on_grandchild, "gpt", 200, 20, 100, 2_000)).await;
    record(&store, T0, used(elsewhere, "sonnet", 7, 3, 0, 70)).await;
    // The same agent on the next day does not count towards today.
    let tomorrow = Timestamp(day.0 + DAY_MS);
    record(
        &store,
        tomorrow,
        used(elsewhere, "sonnet", 1000, 1000, 0, 99_000),
    )
    .await;

    let total = |scope| {
        let store = &store;
        async move { store.model_usage(&scope).await.unwrap() }
    };
    assert_eq!(
        total(UsageScope::Execution(on_child)).await,
        sums(2, 150, 15, 40, 1_100)
    );
    assert_eq!(
        total(UsageScope::Tree(root)).await,
        sums(3, 350, 35, 140, 3_100),
        "the tree holds the child's and the grandchild's requests"
    );
    assert_eq!(
        total(UsageScope::Tree(child)).await,
        ModelUsage::default(),
        "only a tree's root names the tree"
    );
    assert_eq!(
        total(UsageScope::Tree(other_root)).await,
        sums(2, 1007, 1003, 0, 99_070)
    );
    assert_eq!(
        total(UsageScope::Agent {
            agent: "claude".into(),
            from: day,
            until: tomorrow,
        })
        .await,
        sums(3, 157, 18, 40, 1_170)
    );
    assert_eq!(
        total(UsageScope::Agent {
            agent: "claude".into(),
            from: tomorrow,
            until: Timestamp(tomorrow.0 + DAY_MS),
        })
        .await,
        sums(1, 1000, 1000, 0, 99_000)
    );
    assert_eq!(
        total(UsageScope::Execution(ExecutionId(999))).await,
        ModelUsage::default()
    );

    let by_model = store
        .model_usage_by_model(&UsageScope::Tree(root))
        .await
        .unwrap();
    assert_eq!(
        by_model,
        vec![
            ("gpt".to_string(), sums(1, 200, 20, 100, 2_000)),
            ("haiku".to_string(), sums(1, 50, 5, 0, 100)),
            ("sonnet".to_string(), sums(1, 100, 10, 40, 1_000)),
        ]
    );
    assert_eq!(sums(1, 200, 20, 100, 2_000).tokens.total(), 220);
}

#[tokio::test]
async fn usage_is_recorded_on_a_finished_execution_too() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "a").await;
    let exec = start(&store, task, "claude").await;
    store
        .apply(
            "engine",
            T0,
            vec![Change::FinishExecution {
                id: exec,
                state: ExecutionState::Cancelled,
                exit_code: None,
                usage: Usage::default(),
                summary: Some("cancelled mid-stream".into()),
            }],
        )
        .await
        .unwrap();
    record(&store, T0, used(exec, "sonnet", 10, 1, 0, 5)).await;
    assert_eq!(
        store
            .model_usage(&UsageScope::Execution(exec))
            .await
            .unwrap()
            .requests,
        1
    );
}

#[tokio::test]
async fn bad_usage_records_are_refused_and_write_nothing() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "a").await;
    let exec = start(&store, task, "claude").await;
    let before = store.last_seq().await.unwrap();

    let cases = [
        (
            used(ExecutionId(42), "sonnet", 1, 1, 0, 1),
            "execution #42 does not exist",
        ),
        (used(exec, " ", 1, 1, 0, 1), "needs the model alias"),
        (
            used(exec, "sonnet", 10, 1, 11, 1),
            "cached tokens are a part of the input",
        ),
    ];
    for (change, expected) in cases {
        // A good record first in the batch shows that the refusal rolls the whole batch back.
        let batch = vec![used(exec, "sonnet", 1, 1, 0, 1), change];
        let err = store.apply("gateway", T0, batch).await.unwrap_err();
        match &err {
            Error::Refused { index, change, .. } => {
                assert_eq!(*index, 1);
                assert_eq!(*change, "record_model_usage");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert_eq!(store.last_seq().await.unwrap(), before);
    assert_eq!(
        store
            .model_usage(&UsageScope::Execution(exec))
            .await
            .unwrap(),
        ModelUsage::default()
    );
}

#[tokio::test]
async fn a_wait_is_an_event_on_the_execution() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "a").await;
    let exec = start(&store, task, "claude").await;
    let wait = Change::RecordModelWaiting {
        id: exec,
        model: "sonnet".into(),
        attempt: 1,
        delay_ms: 2000,
        status: 429,
    };
    let applied = store.apply("gateway", T0, vec![wait]).await.unwrap();
    assert_eq!(
        applied.events[0].kind,
        EventKind::ExecutionModelWaiting {
            model: "sonnet".into(),
            attempt: 1,
            delay_ms: 2000,
            status: 429,
        }
    );
    assert_eq!(
        applied.events[0].kind.describe(),
        "model sonnet answered 429 on attempt 1; retrying in 2s"
    );
    let err = store
        .apply(
            "gateway",
            T0,
            vec![Change::RecordModelWaiting {
                id: ExecutionId(77),
                model: "sonnet".into(),
                attempt: 1,
                delay_ms: 1,
                status: 529,
            }],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("execution #77 does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn a_version_1_database_gains_the_usage_table_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let raw = crate::file_at_version(&dir, 1);
    raw.execute_batch(
        "INSERT INTO tasks (title, body, labels, priority, state, root, depth, created_at, \
         updated_at) VALUES ('made before the upgrade', '', '[]', 2, 'open', 1, 0, 0, 0);",
    )
    .unwrap();
    drop(raw);

    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    assert_eq!(store.schema_version().unwrap(), 19);
    let task = store.task(TaskId(1)).await.unwrap().expect("the old task");
    assert_eq!(task.title, "made before the upgrade");
    let exec = start(&store, task.id, "claude").await;
    record(&store, T0, used(exec, "sonnet", 3, 2, 1, 9)).await;
    assert_eq!(
        store.model_usage(&UsageScope::Tree(task.id)).await.unwrap(),
        sums(1, 3, 2, 1, 9)
    );
}

#[tokio::test]
async fn provider_pauses_and_throttles_are_events_and_a_standing() {
    let (_dir, store) = fresh();
    let task = create_titled(&store, "Use the model").await;
    let exec = start(&store, task, "claude").await;
    assert!(store.providers().await.unwrap().is_empty());
    let until = Timestamp(T0.0 + 60_000);
    let applied = store
        .apply(
            "engine",
            T0,
            vec![
                Change::PauseProvider {
                    id: exec,
                    provider: "openai".into(),
                    until,
                    reason: "quota: insufficient_quota".into(),
                },
                Change::ThrottleProvider {
                    id: exec,
                    provider: "anthropic".into(),
                    limit: Some(2),
                },
                Change::RecordModelFallback {
                    id: exec,
                    model: "gpt".into(),
                    fallback: "sonnet".into(),
                    reason: "provider openai paused".into(),
                },
            ],
        )
        .await
        .unwrap();
    let names: Vec<&str> = applied.events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        [
            "provider_paused",
            "provider_throttled",
            "execution_model_fallback"
        ]
    );
    assert!(
        applied.events[0]
            .kind
            .describe()
            .starts_with("provider openai paused until"),
        "{}",
        applied.events[0].kind.describe()
    );
    let standing = store.providers().await.unwrap();
    assert_eq!(standing.len(), 2);
    assert_eq!(standing[0].name, "anthropic");
    assert_eq!(standing[0].concurrency, Some(2));
    assert_eq!(standing[1].paused_until, Some(until));
    assert_eq!(standing[1].paused_by, Some(exec));
    assert_eq!(
        standing[1].pause_reason.as_deref(),
        Some("quota: insufficient_quota")
    );
    store
        .apply(
            "engine",
            until,
            vec![
                Change::ResumeProvider {
                    id: exec,
                    provider: "openai".into(),
                },
                Change::ThrottleProvider {
                    id: exec,
                    provider: "anthropic".into(),
                    limit: None,
                },
            ],
        )
        .await
        .unwrap();
    let standing = store.providers().await.unwrap();
    assert_eq!(standing[0].concurrency, None);
    assert_eq!(standing[1].paused_until, None);
    // An unknown execution changes nothing.
    let err = store
        .apply(
            "engine",
            until,
            vec![Change::PauseProvider {
                id: ExecutionId(77),
                provider: "openai".into(),
                until,
                reason: "quota".into(),
            }],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pause_provider"), "{err}");
    assert_eq!(store.providers().await.unwrap()[1].paused_until, None);
}

#[tokio::test]
async fn usage_is_grouped_by_task_tree_agent_and_utc_day() {
    use store::{UsageGroup, UsageKey};
    let (_dir, store) = fresh();
    let parent = create_titled(&store, "parent").await;
    let child = create(&store, sub_task("child", parent)).await.id;
    let other = create_titled(&store, "other").await;
    let (a, b, c) = (
        start(&store, parent, "claude").await,
        start(&store, child, "codex").await,
        start(&store, other, "claude").await,
    );
    // T0's day, the same day later, and the next day.
    let day0 = Timestamp(T0.0 - T0.0.rem_euclid(DAY_MS));
    record(&store, T0, used(a, "sonnet", 10, 1, 0, 100)).await;
    record(
        &store,
        Timestamp(day0.0 + DAY_MS - 1),
        used(b, "gpt", 20, 2, 5, 200),
    )
    .await;
    record(
        &store,
        Timestamp(day0.0 + DAY_MS),
        used(c, "sonnet", 40, 4, 0, 400),
    )
    .await;
    let grouped = |by| {
        let store = &store;
        async move {
            store
                .model_usage_grouped(by)
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s.key, s.usage.requests, s.usage.cost_micros))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        grouped(UsageGroup::Task).await,
        [
            (UsageKey::Task(parent), 1, 100),
            (UsageKey::Task(child), 1, 200),
            (UsageKey::Task(other), 1, 400)
        ]
    );
    assert_eq!(
        grouped(UsageGroup::Tree).await,
        [
            (UsageKey::Task(parent), 2, 300),
            (UsageKey::Task(other), 1, 400)
        ]
    );
    assert_eq!(
        grouped(UsageGroup::Agent).await,
        [
            (UsageKey::Agent("claude".into()), 2, 500),
            (UsageKey::Agent("codex".into()), 1, 200)
        ]
    );
    assert_eq!(
        grouped(UsageGroup::Day).await,
        [
            (UsageKey::Day(day0), 2, 300),
            (UsageKey::Day(Timestamp(day0.0 + DAY_MS)), 1, 400)
        ]
    );
}
