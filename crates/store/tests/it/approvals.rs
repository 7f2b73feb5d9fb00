//! Approvals on the real SQLite store: the request, the question and the decision are each
//! one transaction with their events, survive a reopen of the file, and a refused decision
//! writes nothing.

use domain::{
    ApprovalId, ApprovalSource, ApprovalState, Decision, EntityKind, ExecutionKind, NewTask,
    TaskState,
};
use store::{ApprovalFilter, Change, SqliteStore, Store};

use crate::{T0, db_path, fresh};

/// A task that ran and is done, with approval #1 asked for by the policy in the same batch.
async fn done_with_approval(store: &SqliteStore) -> domain::TaskId {
    let task = crate::create(store, NewTask::titled("Add CSV export"))
        .await
        .id;
    let claim = Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: None,
    };
    let applied = store.apply("engine", T0, vec![claim]).await.unwrap();
    let execution = applied.executions[0].id;
    let applied = store
        .apply(
            "engine",
            T0,
            vec![
                Change::SettleTask {
                    id: task,
                    to: TaskState::Done,
                    reason: Some("validated".into()),
                },
                Change::RequestApproval {
                    task,
                    source: ApprovalSource::Policy,
                    execution: Some(execution),
                    summary: "exports rows as CSV".into(),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied.approvals.len(), 1, "the batch names its approval");
    assert_eq!(applied.approvals[0].id, ApprovalId(1));
    task
}

#[tokio::test]
async fn a_request_and_its_rejection_survive_a_reopen_of_the_file() {
    let (dir, store) = fresh();
    let task = done_with_approval(&store).await;
    let pending = ApprovalFilter {
        state: Some(ApprovalState::Pending),
        ..ApprovalFilter::default()
    };
    assert_eq!(store.approvals(&pending).await.unwrap().len(), 1);

    let reject = Change::DecideApproval {
        id: ApprovalId(1),
        decision: Decision::Reject {
            feedback: "quote fields with commas".into(),
        },
    };
    store.apply("ada", T0, vec![reject]).await.unwrap();
    drop(store);

    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    let a = store.approval(ApprovalId(1)).await.unwrap().expect("kept");
    assert_eq!(a.state, ApprovalState::Rejected);
    assert_eq!(a.decided_by.as_deref(), Some("ada"));
    assert_eq!(a.feedback.as_deref(), Some("quote fields with commas"));
    assert_eq!(a.requested_at, T0);
    assert!(store.approvals(&pending).await.unwrap().is_empty());
    assert_eq!(
        store.task(task).await.unwrap().unwrap().state,
        TaskState::Open,
        "the rejection reopened the task in its own transaction"
    );
    let kinds: Vec<String> = store
        .entity_events(EntityKind::Task, task.0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} by {}", e.kind.name(), e.actor))
        .collect();
    assert!(
        kinds.ends_with(&[
            "task_state_changed by engine".to_string(),
            "task_approval_requested by engine".to_string(),
            "task_approval_decided by ada".to_string(),
            "task_state_changed by ada".to_string(),
        ]),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_second_decision_is_refused_and_writes_nothing() {
    let (_dir, store) = fresh();
    done_with_approval(&store).await;
    let approve = || Change::DecideApproval {
        id: ApprovalId(1),
        decision: Decision::Approve,
    };
    store.apply("ada", T0, vec![approve()]).await.unwrap();
    let seq = store.last_seq().await.unwrap();
    // A batch with a comment first: the refusal rolls the whole of it back.
    let err = store
        .apply(
            "bob",
            T0,
            vec![
                Change::Comment {
                    id: domain::TaskId(1),
                    text: "me too".into(),
                },
                approve(),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("was already approved by ada"),
        "{err}"
    );
    assert_eq!(store.last_seq().await.unwrap(), seq, "nothing was appended");
    let a = store.approval(ApprovalId(1)).await.unwrap().unwrap();
    assert_eq!(a.decided_by.as_deref(), Some("ada"));

    let err = store
        .apply(
            "bob",
            T0,
            vec![Change::DecideApproval {
                id: ApprovalId(9),
                decision: Decision::Approve,
            }],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("approval #9 does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn the_database_holds_one_pending_approval_per_task() {
    let (dir, store) = fresh();
    let task = done_with_approval(&store).await;
    drop(store);
    // Even a writer that skipped the rules meets the unique index.
    let raw = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let second = raw.execute(
        "INSERT INTO approvals (id, task_id, source, summary, state, requested_at)
         VALUES (2, ?1, 'policy', 'again', 'pending', 0)",
        [task.0],
    );
    assert!(second.is_err(), "a second pending approval was stored");
}

#[tokio::test]
async fn approvals_are_listed_newest_first_by_state_and_task() {
    let (_dir, store) = fresh();
    let first = done_with_approval(&store).await;
    store
        .apply(
            "ada",
            T0,
            vec![Change::DecideApproval {
                id: ApprovalId(1),
                decision: Decision::Approve,
            }],
        )
        .await
        .unwrap();
    let second = crate::create(&store, NewTask::titled("plan")).await.id;
    let claim = Change::CreateExecution {
        task_id: second,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: None,
    };
    store.apply("engine", T0, vec![claim]).await.unwrap();
    let ask = Change::RequestApproval {
        task: second,
        source: ApprovalSource::Agent,
        execution: None,
        summary: "the plan".into(),
    };
    store.apply("agent:coder#2", T0, vec![ask]).await.unwrap();

    let all = store.approvals(&ApprovalFilter::default()).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|a| a.id.0).collect();
    assert_eq!(ids, [2, 1]);
    let of_first = ApprovalFilter {
        task: Some(first),
        ..ApprovalFilter::default()
    };
    assert_eq!(
        store.approvals(&of_first).await.unwrap()[0].id,
        ApprovalId(1)
    );
    let one = ApprovalFilter {
        limit: Some(1),
        ..ApprovalFilter::default()
    };
    assert_eq!(store.approvals(&one).await.unwrap().len(), 1);
    let pending_of_first = ApprovalFilter {
        state: Some(ApprovalState::Pending),
        task: Some(first),
        limit: None,
    };
    assert!(store.approvals(&pending_of_first).await.unwrap().is_empty());
}
