//! Area leases on the real SQLite store: taken, refused on overlap, expired and released with
//! their execution in the transactions that say so, and still there after a reopen.

use domain::{
    AreaLeaseState, AreaPath, Duration, ExecutionId, ExecutionKind, ExecutionState, NewTask,
    TaskId, Timestamp, Usage,
};
use store::{AreaLeaseFilter, Change, SqliteStore, Store};

use crate::{T0, db_path, fresh};

async fn claimed(store: &SqliteStore, title: &str) -> (TaskId, ExecutionId) {
    let task = crate::create(store, NewTask::titled(title)).await.id;
    let claim = Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: None,
    };
    let applied = store.apply("engine", T0, vec![claim]).await.unwrap();
    (task, applied.executions[0].id)
}

fn take(execution: ExecutionId, paths: &[&str], secs: u64) -> Change {
    Change::TakeAreaLeases {
        execution,
        for_task: None,
        paths: paths.iter().map(|p| AreaPath::parse(p).unwrap()).collect(),
        ttl: Duration::from_secs(secs),
    }
}

fn held(leases: &[domain::AreaLease]) -> Vec<(String, ExecutionId)> {
    leases
        .iter()
        .map(|l| (l.path.to_string(), l.execution))
        .collect()
}

#[tokio::test]
async fn an_overlapping_take_is_refused_and_the_end_releases() {
    let (dir, store) = fresh();
    let (_, first) = claimed(&store, "schema").await;
    let (_, second) = claimed(&store, "queries").await;
    let applied = store
        .apply(
            "agent:coder#1",
            T0,
            vec![take(first, &["src/db", "docs"], 60)],
        )
        .await
        .unwrap();
    assert_eq!(applied.area_leases.len(), 2);
    let err = store
        .apply("agent:coder#2", T0, vec![take(second, &["src"], 60)])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "the area src overlaps src/db leased to execution #1 (agent coder, task #1) until"
        ),
        "{err}"
    );
    // Beside it is free.
    store
        .apply("agent:coder#2", T0, vec![take(second, &["srcs"], 60)])
        .await
        .unwrap();

    let finish = Change::FinishExecution {
        id: first,
        state: ExecutionState::Cancelled,
        exit_code: Some(0),
        usage: Usage::default(),
        summary: None,
    };
    let later = Timestamp(T0.0 + 1_000);
    let applied = store.apply("engine", later, vec![finish]).await.unwrap();
    let names: Vec<&str> = applied.events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        [
            "execution_state_changed",
            "execution_finished",
            "execution_area_lease_released",
            "execution_area_lease_released"
        ]
    );
    drop(store);
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    let now_held = store
        .area_leases(&AreaLeaseFilter::default())
        .await
        .unwrap();
    assert_eq!(held(&now_held), [("srcs".to_string(), second)]);
    let all = AreaLeaseFilter {
        ended: true,
        ..AreaLeaseFilter::default()
    };
    let every = store.area_leases(&all).await.unwrap();
    let ended: Vec<(&str, AreaLeaseState, Option<&str>)> = every
        .iter()
        .map(|l| (l.path.as_str(), l.state, l.end_reason.as_deref()))
        .collect();
    assert_eq!(
        ended,
        [
            ("srcs", AreaLeaseState::Held, None),
            (
                "docs",
                AreaLeaseState::Released,
                Some("its execution ended as cancelled")
            ),
            (
                "src/db",
                AreaLeaseState::Released,
                Some("its execution ended as cancelled")
            ),
        ]
    );
    // Now the area is free for the other execution.
    store
        .apply("agent:coder#2", later, vec![take(second, &["src"], 60)])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lease_that_ran_out_is_swept_and_frees_its_area() {
    let (_dir, store) = fresh();
    let (_, first) = claimed(&store, "schema").await;
    let (_, second) = claimed(&store, "queries").await;
    store
        .apply("agent:coder#1", T0, vec![take(first, &["src"], 5)])
        .await
        .unwrap();
    let before = Timestamp(T0.0 + 4_999);
    assert!(store.area_leases_due(before, 10).await.unwrap().is_empty());
    let after = Timestamp(T0.0 + 5_000);
    let due = store.area_leases_due(after, 10).await.unwrap();
    assert_eq!(held(&due), [("src".to_string(), first)]);
    // A take after the time ran out records the expiry in its own batch.
    let applied = store
        .apply(
            "agent:coder#2",
            after,
            vec![take(second, &["src/db.rs"], 5)],
        )
        .await
        .unwrap();
    let names: Vec<&str> = applied.events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        ["execution_area_lease_expired", "execution_area_lease_taken"]
    );
    let err = store
        .apply(
            "engine",
            after,
            vec![Change::ExpireAreaLease { id: due[0].id }],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not held: it ended already"), "{err}");
}

fn reserve(execution: ExecutionId, paths: &[&str], secs: u64) -> Change {
    Change::ReserveAreasOnNewest {
        execution,
        paths: paths.iter().map(|p| AreaPath::parse(p).unwrap()).collect(),
        ttl: Duration::from_secs(secs),
    }
}

fn keyed_sub_task(parent: TaskId, title: &str) -> Change {
    Change::CreateKeyedTask {
        new: crate::sub_task(title, parent),
        key: format!("key:{title}"),
    }
}

/// The changes that run execution `id` and end it as `state`.
fn finish(id: ExecutionId, state: ExecutionState) -> Vec<Change> {
    let to = |to| Change::SetExecutionState {
        id,
        to,
        reason: None,
    };
    vec![
        to(ExecutionState::Preparing),
        to(ExecutionState::Running),
        Change::FinishExecution {
            id,
            state,
            exit_code: Some(0),
            usage: Usage::default(),
            summary: None,
        },
    ]
}

#[tokio::test]
async fn a_sub_task_and_its_reservation_are_one_batch_refused_whole() {
    let (_dir, store) = fresh();
    let (parent, coordinator) = claimed(&store, "plan").await;
    let (_, other) = claimed(&store, "elsewhere").await;
    store
        .apply("agent:coder#2", T0, vec![take(other, &["src"], 60)])
        .await
        .unwrap();
    // A sub-task reserving an area another running task holds is still made: it waits.
    let applied = store
        .apply(
            "agent:coder#1",
            T0,
            vec![
                keyed_sub_task(parent, "db"),
                reserve(coordinator, &["src/db"], 60),
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied.tasks.len(), 1);
    let db = applied.tasks[0].id;
    assert_eq!(applied.area_leases.len(), 1);
    assert_eq!(applied.area_leases[0].task, db);

    // A reservation overlapping another reservation is refused, and so is its sub-task.
    let (rival_task, rival) = claimed(&store, "rival plan").await;
    let refused = store
        .apply(
            "agent:coder#3",
            T0,
            vec![
                keyed_sub_task(parent, "queries"),
                reserve(rival, &["src"], 60),
            ],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(&format!(
            "no sub-task of task #{rival_task} was just created"
        )),
        "{refused}"
    );
    let refused = store
        .apply(
            "agent:coder#3",
            T0,
            vec![
                keyed_sub_task(rival_task, "queries"),
                reserve(rival, &["src/db/schema.sql"], 60),
            ],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("overlaps src/db reserved for task #"),
        "{refused}"
    );
    assert!(
        store.children(rival_task).await.unwrap().is_empty(),
        "no sub-task was made"
    );
    assert!(
        store
            .call_key(rival_task, "subtask_create", "key:queries")
            .await
            .unwrap()
            .is_none(),
        "the key is still unused"
    );
    assert_eq!(
        store
            .area_leases(&AreaLeaseFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_reservation_outlives_its_coordinator_and_ends_with_its_sub_tasks_success() {
    let (_dir, store) = fresh();
    let (parent, coordinator) = claimed(&store, "plan").await;
    let applied = store
        .apply(
            "agent:coder#1",
            T0,
            vec![
                keyed_sub_task(parent, "db"),
                reserve(coordinator, &["src/db"], 600),
                take(coordinator, &["docs"], 600),
            ],
        )
        .await
        .unwrap();
    let db = applied.tasks[0].id;
    store
        .apply("engine", T0, finish(coordinator, ExecutionState::Succeeded))
        .await
        .unwrap();
    let now_held = store
        .area_leases(&AreaLeaseFilter::default())
        .await
        .unwrap();
    assert_eq!(
        held(&now_held),
        [("src/db".to_string(), coordinator)],
        "the coordinator's own lease ended with it, the reservation stands"
    );

    let claim = |attempt| Change::CreateExecution {
        task_id: db,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt,
        lease: None,
    };
    let first = store
        .apply("engine", T0, vec![claim(1)])
        .await
        .unwrap()
        .executions[0]
        .id;
    store
        .apply("engine", T0, finish(first, ExecutionState::Failed))
        .await
        .unwrap();
    assert_eq!(
        store
            .area_leases(&AreaLeaseFilter::default())
            .await
            .unwrap()
            .len(),
        1,
        "a failed execution leaves the reservation for the retry"
    );
    store
        .apply(
            "engine",
            T0,
            vec![Change::SetTaskState {
                id: db,
                to: domain::TaskState::Open,
                reason: None,
            }],
        )
        .await
        .unwrap();
    let second = store
        .apply("engine", T0, vec![claim(2)])
        .await
        .unwrap()
        .executions[0]
        .id;
    store
        .apply("engine", T0, finish(second, ExecutionState::Succeeded))
        .await
        .unwrap();
    assert!(
        store
            .area_leases(&AreaLeaseFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let all = AreaLeaseFilter {
        ended: true,
        ..AreaLeaseFilter::default()
    };
    let reasons: Vec<String> = store
        .area_leases(&all)
        .await
        .unwrap()
        .iter()
        .filter(|l| l.path.as_str() == "src/db")
        .map(|l| l.end_reason.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        reasons,
        [format!("task #{db}'s execution #{second} succeeded")]
    );
}
