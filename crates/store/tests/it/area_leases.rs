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
