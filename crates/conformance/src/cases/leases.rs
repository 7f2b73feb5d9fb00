//! Claims shared between engines: node, lease and fencing token persist with the claim, a stale
//! token writes nothing, and no engine records another's live execution lost.

use std::sync::Arc;

use domain::{
    Duration, ExecutionId, ExecutionKind, ExecutionState, Lease, NewTask, NodeId, TaskId,
    TaskState, Timestamp,
};
use store::{Applied, Change, Error, Store};

use super::{T0, create};
use crate::Fresh;

const LEASE: Duration = Duration::from_secs(30);

fn node(name: &str) -> NodeId {
    name.parse().expect("a valid node id")
}

fn at(secs: u64) -> Timestamp {
    T0.plus(Duration::from_secs(secs))
}

async fn apply_at(store: &dyn Store, now: Timestamp, changes: Vec<Change>) -> Applied {
    let names: Vec<&str> = changes.iter().map(Change::name).collect();
    match store.apply("conformance", now, changes).await {
        Ok(applied) => applied,
        Err(e) => panic!("the batch {names:?} was refused at {now}: {e}"),
    }
}

/// Claims `task` for `holder` at `now` with a lease of [`LEASE`].
async fn claim_for(store: &dyn Store, task: TaskId, holder: &str, now: Timestamp) -> ExecutionId {
    let claim = Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: Some(Lease::starting(node(holder), now, LEASE)),
    };
    apply_at(store, now, vec![claim]).await.executions[0].id
}

fn fenced(execution: ExecutionId, fence: u32, change: Change) -> Change {
    Change::Fenced {
        execution,
        fence,
        change: Box::new(change),
    }
}

fn reopen(task: TaskId) -> Change {
    Change::SettleTask {
        id: task,
        to: TaskState::Open,
        reason: Some("its execution was lost".into()),
    }
}

/// The claim records who holds it, until when, and a token that grows with every claim of the
/// task; reads return them as written.
pub async fn a_claim_carries_its_node_lease_and_fencing_token(fresh: Fresh) {
    let store = &*fresh.store;
    let task = create(store, NewTask::titled("leased")).await;
    let first = claim_for(store, task, "node-a", T0).await;
    let stored = store
        .execution(first)
        .await
        .unwrap()
        .expect("the claim is stored");
    assert_eq!(
        stored.lease,
        Some(Lease {
            node: node("node-a"),
            until: at(30)
        })
    );
    assert_eq!(stored.fence, 1, "the first claim of a task has token 1");
    apply_at(
        store,
        at(31),
        vec![Change::LoseExpired { id: first }, reopen(task)],
    )
    .await;
    let second = claim_for(store, task, "node-b", at(32)).await;
    let stored = store.execution(second).await.unwrap().unwrap();
    assert_eq!(
        stored.fence, 2,
        "a later claim of the task has a greater token"
    );
    assert_eq!(stored.lease.map(|l| l.node), Some(node("node-b")));
    assert_eq!(store.task(task).await.unwrap().unwrap().executions, 2);
}

/// A renewal moves the lease's end and is refused once the execution ended or under a token
/// that is not its own.
pub async fn a_lease_is_renewed_only_by_its_live_holder(fresh: Fresh) {
    let store = &*fresh.store;
    let task = create(store, NewTask::titled("renewed")).await;
    let e = claim_for(store, task, "node-a", T0).await;
    let renew = |fence, until| Change::RenewLease {
        id: e,
        fence,
        until,
    };
    let applied = apply_at(store, at(10), vec![renew(1, at(40))]).await;
    assert_eq!(
        applied.executions[0].lease.as_ref().map(|l| l.until),
        Some(at(40))
    );
    assert_eq!(
        store
            .execution(e)
            .await
            .unwrap()
            .unwrap()
            .lease
            .map(|l| l.until),
        Some(at(40)),
        "the renewal is what a read returns"
    );
    let seq = store.last_seq().await.unwrap();
    let err = store
        .apply("conformance", at(11), vec![renew(7, at(41))])
        .await
        .expect_err("a renewal under a token that is not the execution's is refused");
    assert!(err.is_stale(), "{err}");
    apply_at(
        store,
        at(12),
        vec![Change::FinishExecution {
            id: e,
            state: ExecutionState::Cancelled,
            exit_code: None,
            usage: domain::Usage::default(),
            summary: None,
        }],
    )
    .await;
    let seq_after_finish = store.last_seq().await.unwrap();
    assert!(seq_after_finish > seq);
    let err = store
        .apply("conformance", at(13), vec![renew(1, at(43))])
        .await
        .expect_err("a finished execution's lease is not renewed");
    assert!(err.is_stale(), "{err}");
    assert_eq!(store.last_seq().await.unwrap(), seq_after_finish);
}

/// Once an execution is recorded lost, or its task claimed again, every change under its old
/// token is refused with its whole batch, while the new holder's changes go through.
pub async fn a_stale_token_writes_nothing(fresh: Fresh) {
    let store = &*fresh.store;
    let task = create(store, NewTask::titled("contended")).await;
    let old = claim_for(store, task, "node-a", T0).await;
    let running = Change::SetExecutionState {
        id: old,
        to: ExecutionState::Preparing,
        reason: None,
    };
    apply_at(store, at(1), vec![fenced(old, 1, running)]).await;
    apply_at(
        store,
        at(31),
        vec![Change::LoseExpired { id: old }, reopen(task)],
    )
    .await;
    let comment = |id| Change::Comment {
        id,
        text: "late word".into(),
    };
    let seq = store.last_seq().await.unwrap();
    let err = store
        .apply(
            "conformance",
            at(32),
            vec![
                Change::CreateTask(NewTask::titled("beside it")),
                fenced(old, 1, comment(task)),
            ],
        )
        .await
        .expect_err("a lost execution's change is refused");
    assert!(
        matches!(&err, Error::Stale { index: 1, execution, .. } if *execution == old),
        "{err}"
    );
    assert_eq!(
        store.last_seq().await.unwrap(),
        seq,
        "nothing of the batch is written"
    );
    let new = claim_for(store, task, "node-b", at(33)).await;
    let settle = Change::SettleTask {
        id: task,
        to: TaskState::Done,
        reason: Some("stale success".into()),
    };
    let err = store
        .apply("conformance", at(34), vec![fenced(old, 1, settle.clone())])
        .await
        .expect_err("the old token cannot settle the task claimed again");
    assert!(err.is_stale(), "{err}");
    assert_eq!(
        store.task(task).await.unwrap().unwrap().state,
        TaskState::Running
    );
    let err = store
        .apply("conformance", at(34), vec![fenced(new, 1, comment(task))])
        .await
        .expect_err("the new execution under the old token is refused too");
    assert!(err.is_stale(), "{err}");
    apply_at(store, at(35), vec![fenced(new, 2, comment(task))]).await;
}

/// Two engines on different nodes share one store: neither records the other's live execution
/// lost, and once one stops renewing, the other can, after which the stopped one's late end is
/// refused.
pub async fn nodes_recover_only_each_others_expired_executions(fresh: Fresh) {
    let store = &*fresh.store;
    let (task_a, task_b) = (
        create(store, NewTask::titled("on a")).await,
        create(store, NewTask::titled("on b")).await,
    );
    let on_a = claim_for(store, task_a, "node-a", T0).await;
    let on_b = claim_for(store, task_b, "node-b", T0).await;
    for (by_other, now) in [(on_a, at(10)), (on_b, at(10)), (on_a, at(29))] {
        let err = store
            .apply(
                "conformance",
                now,
                vec![Change::LoseExpired { id: by_other }],
            )
            .await
            .expect_err("a live lease is not taken");
        assert!(err.to_string().contains("runs out"), "{err}");
    }
    // Node a keeps renewing; node b has stopped.
    apply_at(
        store,
        at(20),
        vec![Change::RenewLease {
            id: on_a,
            fence: 1,
            until: at(50),
        }],
    )
    .await;
    let err = store
        .apply(
            "conformance",
            at(40),
            vec![Change::LoseExpired { id: on_a }],
        )
        .await
        .expect_err("a renewed lease holds past its first end");
    assert!(err.to_string().contains("node-a"), "{err}");
    let applied = apply_at(
        store,
        at(40),
        vec![Change::LoseExpired { id: on_b }, reopen(task_b)],
    )
    .await;
    assert_eq!(applied.executions[0].state, ExecutionState::Lost);
    assert_eq!(applied.tasks[0].state, TaskState::Open);
    let late_end = Change::FinishExecution {
        id: on_b,
        state: ExecutionState::Succeeded,
        exit_code: Some(0),
        usage: domain::Usage::default(),
        summary: None,
    };
    let err = store
        .apply("conformance", at(41), vec![fenced(on_b, 1, late_end)])
        .await
        .expect_err("the stopped node's late end is refused");
    assert!(err.is_stale(), "{err}");
    let a = store.execution(on_a).await.unwrap().unwrap();
    assert_eq!(
        a.state,
        ExecutionState::Queued,
        "node a's execution lives on"
    );
}

/// A renewal and another engine's expiry of the same lease, sent at once, end one way only:
/// either the lease was renewed and the expiry refused, or the execution is lost and the
/// renewal refused as stale.
pub async fn a_renewal_and_an_expiry_race_to_one_outcome(fresh: Fresh) {
    let store = Arc::clone(&fresh.store);
    let task = create(&*store, NewTask::titled("raced")).await;
    let e = claim_for(&*store, task, "node-a", T0).await;
    let renewing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let renew = Change::RenewLease {
                id: e,
                fence: 1,
                until: at(60),
            };
            store.apply("node-a", at(30), vec![renew]).await
        })
    };
    let expiring = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let lose = vec![Change::LoseExpired { id: e }, reopen(task)];
            store.apply("node-b", at(30), lose).await
        })
    };
    let renewed = renewing.await.expect("the renewal ran");
    let expired = expiring.await.expect("the expiry ran");
    let stored = store.execution(e).await.unwrap().unwrap();
    match (renewed, expired) {
        (Ok(_), Err(_)) => {
            assert_eq!(stored.state, ExecutionState::Queued);
            assert_eq!(stored.lease.map(|l| l.until), Some(at(60)));
        }
        (Err(err), Ok(_)) => {
            assert!(err.is_stale(), "{err}");
            assert_eq!(stored.state, ExecutionState::Lost);
        }
        (renewed, expired) => panic!(
            "exactly one of them must win: renewal {:?}, expiry {:?}",
            renewed.map(|_| ()),
            expired.map(|_| ())
        ),
    }
}
