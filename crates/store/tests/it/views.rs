//! The view queries: counts by state and the newest rows of a list, read without loading every
//! task.

use domain::{NewTask, TaskState};
use store::{Change, Store, TaskFilter};

use crate::{T0, create, create_titled, fresh, sub_task};

fn ids(tasks: Vec<domain::Task>) -> Vec<i64> {
    tasks.into_iter().map(|t| t.id.0).collect()
}

#[tokio::test]
async fn counts_by_state_leave_out_empty_states() {
    let (_dir, store) = fresh();
    assert!(store.task_counts().await.unwrap().is_empty());
    let mut failed = Vec::new();
    for i in 0..5 {
        let id = create_titled(&store, &format!("task {i}")).await;
        if i % 2 == 0 {
            failed.push(Change::SetTaskState {
                id,
                to: TaskState::Failed,
                reason: None,
            });
        }
    }
    store.apply("engine", T0, failed).await.unwrap();
    assert_eq!(
        store.task_counts().await.unwrap(),
        vec![(TaskState::Failed, 3), (TaskState::Open, 2)]
    );
}

#[tokio::test]
async fn the_newest_tasks_come_oldest_first_and_honour_the_filter() {
    let (_dir, store) = fresh();
    for i in 1..=6 {
        let labels = if i % 2 == 0 {
            vec!["ui".into()]
        } else {
            vec![]
        };
        create(
            &store,
            NewTask {
                labels,
                ..NewTask::titled(format!("task {i}"))
            },
        )
        .await;
    }
    let all = TaskFilter::default();
    assert_eq!(ids(store.newest_tasks(&all, 3).await.unwrap()), [4, 5, 6]);
    assert_eq!(
        ids(store.newest_tasks(&all, 100).await.unwrap()),
        [1, 2, 3, 4, 5, 6]
    );
    assert!(store.newest_tasks(&all, 0).await.unwrap().is_empty());
    let ui = TaskFilter {
        labels: vec!["ui".into()],
        ..TaskFilter::default()
    };
    assert_eq!(ids(store.newest_tasks(&ui, 2).await.unwrap()), [4, 6]);
    store
        .apply(
            "engine",
            T0,
            vec![Change::SetTaskState {
                id: domain::TaskId(2),
                to: TaskState::Cancelled,
                reason: None,
            }],
        )
        .await
        .unwrap();
    let cancelled = TaskFilter {
        states: vec![TaskState::Cancelled],
        ..TaskFilter::default()
    };
    assert_eq!(ids(store.newest_tasks(&cancelled, 5).await.unwrap()), [2]);
}

#[tokio::test]
async fn pages_after_an_id_walk_a_filtered_list_in_order_without_gaps() {
    let (_dir, store) = fresh();
    for i in 1..=7 {
        let labels = if i % 3 == 0 {
            vec![]
        } else {
            vec!["ui".into()]
        };
        create(
            &store,
            NewTask {
                labels,
                ..NewTask::titled(format!("task {i}"))
            },
        )
        .await;
    }
    let ui = TaskFilter {
        labels: vec!["ui".into()],
        ..TaskFilter::default()
    };
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = store.tasks_after(&ui, after, 2).await.unwrap();
        assert!(page.len() <= 2, "a page holds at most its limit");
        after = page.last().map(|t| t.id);
        let short = page.len() < 2;
        walked.extend(ids(page));
        if short {
            break;
        }
    }
    assert_eq!(walked, [1, 2, 4, 5, 7]);
    assert_eq!(
        ids(store
            .tasks_after(&ui, Some(domain::TaskId(2)), 10)
            .await
            .unwrap()),
        [4, 5, 7]
    );
    assert!(
        store
            .tasks_after(&ui, Some(domain::TaskId(7)), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn only_tasks_with_a_failed_merge_are_listed_as_such() {
    let (_dir, store) = fresh();
    let parent = create_titled(&store, "Big job").await;
    let part = create(&store, sub_task("A part", parent)).await.id;
    create_titled(&store, "Unrelated").await;
    assert!(store.tasks_with_failed_merge(10).await.unwrap().is_empty());
    for to in [TaskState::Running, TaskState::Done] {
        let change = Change::SetTaskState {
            id: part,
            to,
            reason: None,
        };
        store.apply("engine", T0, vec![change]).await.unwrap();
    }
    let failed = Change::FinishMerge {
        child: part,
        outcome: store::MergeResult::Failed {
            reason: "conflicts in a.txt".into(),
        },
    };
    store.apply("engine", T0, vec![failed]).await.unwrap();
    let listed = store.tasks_with_failed_merge(10).await.unwrap();
    assert_eq!(ids(listed.clone()), [parent.0]);
    assert_eq!(
        listed[0].merge_failed.as_deref(),
        Some("sub-task #2: conflicts in a.txt")
    );
    assert!(store.tasks_with_failed_merge(0).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_views_read_indexes_not_the_whole_table() {
    let (dir, store) = fresh();
    create_titled(&store, "one").await;
    drop(store);
    let raw = rusqlite::Connection::open(crate::db_path(&dir)).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = raw.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    let counts = plan("SELECT state, COUNT(*) FROM tasks GROUP BY state ORDER BY state");
    assert!(counts.contains("COVERING INDEX tasks_by_state"), "{counts}");
    let merges =
        plan("SELECT id FROM tasks WHERE merge_failed IS NOT NULL ORDER BY id DESC LIMIT 5");
    assert!(merges.contains("tasks_merge_failed"), "{merges}");
    let one_state = plan("SELECT id FROM tasks WHERE state IN ('failed') ORDER BY id DESC LIMIT 5");
    assert!(one_state.contains("tasks_by_state"), "{one_state}");
}

#[tokio::test]
async fn only_unfinished_handed_off_tasks_are_listed_newest_within_the_limit() {
    let (dir, store) = fresh();
    let target = |agency: &str| domain::HandoffTarget {
        agency: agency.into(),
        role: None,
    };
    let mut handed = Vec::new();
    for i in 0..4 {
        let id = create_titled(&store, &format!("task {i}")).await;
        let claim = Change::CreateExecution {
            task_id: id,
            kind: domain::ExecutionKind::Work,
            agent: "coder".into(),
            attempt: 1,
            lease: None,
        };
        let execution = store
            .apply("engine", T0, vec![claim])
            .await
            .unwrap()
            .executions[0]
            .id;
        let hand = Change::HandOff {
            id,
            execution,
            from: target("code"),
            to: target("qa"),
            summary: "test it".into(),
            artifacts: vec![],
            budget: 6,
        };
        store.apply("engine", T0, vec![hand]).await.unwrap();
        handed.push(id);
    }
    create_titled(&store, "never handed").await;
    let done = Change::SetTaskState {
        id: handed[3],
        to: TaskState::Done,
        reason: None,
    };
    store.apply("engine", T0, vec![done]).await.unwrap();
    let (listed, total) = store.tasks_handed_off(2).await.unwrap();
    assert_eq!(ids(listed.clone()), [handed[1].0, handed[2].0]);
    assert_eq!(total, 3, "the done one is not open");
    assert_eq!(listed[0].handoff, Some(target("qa")));
    assert_eq!(store.tasks_handed_off(0).await.unwrap(), (vec![], 3));
    drop(store);
    let raw = rusqlite::Connection::open(crate::db_path(&dir)).unwrap();
    let mut stmt = raw
        .prepare(
            "EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE state IN ('open', 'running', \
             'waiting', 'blocked') AND handoff IS NOT NULL ORDER BY id DESC LIMIT 5",
        )
        .unwrap();
    let plan: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(plan.join("; ").contains("tasks_by_state"), "{plan:?}");
}

#[tokio::test]
async fn open_escalations_are_read_oldest_first_along_their_own_index() {
    let (dir, store) = fresh();
    let send = |receiver: domain::Receiver, kind: domain::MessageType| {
        let payload = match kind {
            domain::MessageType::Escalation => {
                serde_json::json!({"text": "which format?", "severity": "high"})
            }
            _ => serde_json::json!({"text": "halfway"}),
        };
        Change::SendMessage(domain::NewMessage::new(receiver, kind, payload))
    };
    let people = domain::Receiver::People;
    let lead = domain::Receiver::Role("code/coordinator".into());
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.push(send(people.clone(), domain::MessageType::Escalation));
        batch.push(send(people.clone(), domain::MessageType::Status));
        if i % 2 == 0 {
            batch.push(send(lead.clone(), domain::MessageType::Escalation));
        }
    }
    let sent = store.apply("cli", T0, batch).await.unwrap().messages;
    let escalations: Vec<domain::MessageId> = sent
        .iter()
        .filter(|m| m.kind == domain::MessageType::Escalation && m.receiver == people)
        .map(|m| m.id)
        .collect();
    // An answered one is no longer open.
    let ack = Change::AckMessage {
        id: escalations[0],
        by: None,
    };
    store.apply("cli", T0, vec![ack]).await.unwrap();
    let open = store.open_escalations(&people, 3).await.unwrap();
    let got: Vec<domain::MessageId> = open.iter().map(|m| m.id).collect();
    assert_eq!(got, escalations[1..4]);
    assert_eq!(store.open_escalations(&lead, 10).await.unwrap().len(), 3);
    assert_eq!(store.open_escalation_count().await.unwrap(), 4 + 3);
    drop(store);
    let raw = rusqlite::Connection::open(crate::db_path(&dir)).unwrap();
    let mut stmt = raw
        .prepare(
            "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE receiver = 'people' \
             AND type = 'ESCALATION' AND (state = 'pending' OR state = 'delivered') \
             ORDER BY id LIMIT 5",
        )
        .unwrap();
    let plan: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.join("; ").contains("messages_open_escalations"),
        "{plan:?}"
    );
}
