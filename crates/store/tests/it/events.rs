//! The event log: numbering, resuming, JSON round trips and all-or-nothing batches.

use std::collections::HashMap;

use domain::{EntityKind, Event, ExecutionKind, ExecutionState, NewTask, TaskId, TaskState, Usage};
use store::{Change, Error, Store, TaskFilter};

use crate::{T0, create_titled, fresh};

/// A small but varied history: tasks, a dependency, an execution run to the end.
async fn history(store: &store::SqliteStore) {
    let a = create_titled(store, "a").await;
    let b = create_titled(store, "b").await;
    store
        .apply(
            "cli",
            T0,
            vec![
                Change::AddDependency {
                    id: b,
                    blocked_by: a,
                },
                Change::Comment {
                    id: a,
                    text: "first".into(),
                },
            ],
        )
        .await
        .unwrap();
    let applied = store
        .apply(
            "engine",
            T0,
            vec![Change::CreateExecution {
                task_id: a,
                kind: ExecutionKind::Work,
                agent: "claude".into(),
                attempt: 1,
                lease: None,
            }],
        )
        .await
        .unwrap();
    let e = applied.executions[0].id;
    store
        .apply(
            "engine",
            T0,
            vec![
                Change::SetExecutionState {
                    id: e,
                    to: ExecutionState::Preparing,
                    reason: None,
                },
                Change::SetExecutionState {
                    id: e,
                    to: ExecutionState::Running,
                    reason: None,
                },
                Change::ProcessStarted {
                    id: e,
                    pid: 4242,
                    iteration: 1,
                    log_path: None,
                },
                Change::ProcessExited {
                    id: e,
                    iteration: 1,
                    exit_code: Some(0),
                    signal: None,
                },
                Change::FinishExecution {
                    id: e,
                    state: ExecutionState::Succeeded,
                    exit_code: Some(0),
                    usage: Usage {
                        wall_ms: 1500,
                        cpu_ms: 700,
                    },
                    summary: Some("done".into()),
                },
                Change::SetTaskState {
                    id: a,
                    to: TaskState::Done,
                    reason: Some("validated".into()),
                },
            ],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn sequence_numbers_are_gapless_globally_and_per_entity() {
    let (_dir, store) = fresh();
    history(&store).await;
    let events = store.events_after(0, 1000).await.unwrap();
    let last = store.last_seq().await.unwrap();
    assert_eq!(events.len() as u64, last);
    assert!(
        last > 10,
        "the history is long enough to mean something: {last}"
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64 + 1);
    }
    let mut per_entity: HashMap<(EntityKind, i64), u64> = HashMap::new();
    for event in &events {
        let next = per_entity
            .entry((event.entity, event.entity_id))
            .or_insert(0);
        *next += 1;
        assert_eq!(event.entity_seq, *next, "{event:?}");
        assert_eq!(event.kind.name(), event_type(&event.kind));
    }
    for ((entity, id), count) in per_entity {
        let own = store.entity_events(entity, id).await.unwrap();
        assert_eq!(own.len() as u64, count);
        let seqs: Vec<u64> = own.iter().map(|e| e.entity_seq).collect();
        assert_eq!(seqs, (1..=count).collect::<Vec<_>>());
    }
}

/// The `type` tag as serde writes it, which the store duplicates in a column.
fn event_type(kind: &domain::EventKind) -> String {
    serde_json::to_value(kind).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn events_after_resumes_from_any_position() {
    let (_dir, store) = fresh();
    history(&store).await;
    let all = store.events_after(0, u32::MAX).await.unwrap();
    for start in 0..=all.len() {
        for limit in [1, 3, 1000] {
            let page = store.events_after(start as u64, limit).await.unwrap();
            let end = (start + limit as usize).min(all.len());
            assert_eq!(page, all[start..end], "from {start}, limit {limit}");
        }
    }
    // Reading page by page from the start gives the whole log, in order.
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store.events_after(cursor, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        seen.extend(page);
    }
    assert_eq!(seen, all);
    assert!(
        store
            .events_after(all.len() as u64 + 5, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn every_recorded_event_round_trips_through_json() {
    let (_dir, store) = fresh();
    history(&store).await;
    let events = store.events_after(0, 1000).await.unwrap();
    let mut names: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 9, "a variety of event kinds: {names:?}");
    for event in &events {
        let json = serde_json::to_string(event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, event);
    }
}

#[tokio::test]
async fn a_refused_change_leaves_nothing_of_its_batch() {
    let (_dir, store) = fresh();
    let a = create_titled(&store, "a").await;
    let before_seq = store.last_seq().await.unwrap();
    let before_tasks = store.tasks(&TaskFilter::default()).await.unwrap();

    let err = store
        .apply(
            "cli",
            T0,
            vec![
                Change::CreateTask(NewTask::titled("b")),
                Change::Comment {
                    id: a,
                    text: "looks good".into(),
                },
                Change::SetTaskState {
                    id: a,
                    to: TaskState::Done,
                    reason: None,
                },
                Change::CreateTask(NewTask::titled("c")),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Refused {
                index: 2,
                change: "set_task_state",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.change_index(), Some(2));
    let text = err.to_string();
    assert!(text.contains("change 2 (set_task_state)"), "{text}");
    assert!(
        text.contains("task #1 cannot go from open to done"),
        "{text}"
    );

    assert_eq!(store.last_seq().await.unwrap(), before_seq);
    assert_eq!(
        store.tasks(&TaskFilter::default()).await.unwrap(),
        before_tasks
    );
    assert_eq!(store.task(TaskId(2)).await.unwrap(), None);
    assert_eq!(
        store
            .entity_events(EntityKind::Task, a.0)
            .await
            .unwrap()
            .len(),
        1
    );

    // The next batch continues the numbering without a gap; the rolled-back task left no trace,
    // not even a used-up id.
    let applied = store
        .apply("cli", T0, vec![Change::CreateTask(NewTask::titled("b"))])
        .await
        .unwrap();
    assert_eq!(applied.events[0].seq, before_seq + 1);
    assert_eq!(applied.tasks[0].id, TaskId(2));
}
