//! The rules of claims shared between nodes, one family at a time: what a claim's lease may
//! be, what a fenced change checks, and when a lease may be renewed or taken.

use domain::{Duration, ExecutionKind, ExecutionState, Lease, NodeId, TaskState};
use tracker::Change;

use crate::{T0, World};

fn node(name: &str) -> NodeId {
    name.parse().unwrap()
}

fn leased_claim(w: &mut World, task: domain::TaskId) -> domain::ExecutionId {
    let id = w.state.next_execution_id();
    w.ok(Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: Some(Lease::starting(node("a"), w.now, Duration::from_secs(30))),
    });
    id
}

#[test]
fn a_claims_lease_must_not_have_run_out_already() {
    let mut w = World::new();
    let task = w.titled("t");
    let message = w.refused(Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: Some(Lease {
            node: node("a"),
            until: T0,
        }),
    });
    assert!(
        message.contains("lease must end after the claim"),
        "{message}"
    );
}

#[test]
fn a_fenced_change_is_decided_only_under_the_current_token() {
    let mut w = World::new();
    let task = w.titled("t");
    let e = leased_claim(&mut w, task);
    assert_eq!(w.execution(e).fence, 1);
    let comment = |text: &str| Change::Comment {
        id: task,
        text: text.into(),
    };
    let fenced = |fence, change| Change::Fenced {
        execution: e,
        fence,
        change: Box::new(change),
    };
    w.ok(fenced(1, comment("fine")));
    let message = w.refused(fenced(2, comment("wrong token")));
    assert!(message.contains("carries token 2"), "{message}");
    let message = w.refused(fenced(1, fenced(1, comment("nested"))));
    assert!(message.contains("not another fenced one"), "{message}");
    // The inner change's own rules still apply under a good token.
    let message = w.refused(fenced(
        1,
        Change::ProcessStarted {
            id: e,
            pid: 7,
            iteration: 0,
            log_path: None,
        },
    ));
    assert!(message.contains("iterations count from 1"), "{message}");
}

#[test]
fn a_lost_execution_is_fenced_out_and_its_task_claimed_again_gets_a_new_token() {
    let mut w = World::new();
    let task = w.titled("t");
    let old = leased_claim(&mut w, task);
    w.now = T0.plus(Duration::from_secs(30));
    w.ok(Change::LoseExpired { id: old });
    assert_eq!(w.execution(old).state, ExecutionState::Lost);
    let settle = Change::Fenced {
        execution: old,
        fence: 1,
        change: Box::new(Change::SettleTask {
            id: task,
            to: TaskState::Done,
            reason: None,
        }),
    };
    let message = w.refused(settle.clone());
    assert!(message.contains("it was recorded lost"), "{message}");
    w.ok(Change::SettleTask {
        id: task,
        to: TaskState::Open,
        reason: None,
    });
    let new = leased_claim(&mut w, task);
    assert_eq!(w.execution(new).fence, 2);
    assert_eq!(w.task(task).executions, 2);
    let message = w.refused(settle);
    assert!(message.contains("it was recorded lost"), "{message}");
}

#[test]
fn a_lease_is_taken_only_once_it_ran_out_and_renewed_only_while_live() {
    let mut w = World::new();
    let task = w.titled("t");
    let e = leased_claim(&mut w, task);
    w.now = T0.plus(Duration::from_secs(29));
    let message = w.refused(Change::LoseExpired { id: e });
    assert!(message.contains("held by node a"), "{message}");
    let message = w.refused(Change::RenewLease {
        id: e,
        fence: 1,
        until: w.now,
    });
    assert!(message.contains("must end after the renewal"), "{message}");
    let until = T0.plus(Duration::from_secs(60));
    w.ok(Change::RenewLease {
        id: e,
        fence: 1,
        until,
    });
    assert_eq!(w.execution(e).lease.as_ref().map(|l| l.until), Some(until));
    w.now = T0.plus(Duration::from_secs(45));
    w.refused(Change::LoseExpired { id: e });
    w.now = until;
    w.ok(Change::LoseExpired { id: e });
    let message = w.refused(Change::RenewLease {
        id: e,
        fence: 1,
        until: until.plus(Duration::from_secs(30)),
    });
    assert!(message.contains("finished as lost"), "{message}");
}

#[test]
fn an_execution_claimed_without_a_lease_is_neither_renewed_nor_taken() {
    let mut w = World::new();
    let task = w.titled("t");
    let e = w.claim(task);
    let message = w.refused(Change::LoseExpired { id: e });
    assert!(message.contains("claimed without a lease"), "{message}");
    let message = w.refused(Change::RenewLease {
        id: e,
        fence: 1,
        until: T0.plus(Duration::from_secs(1)),
    });
    assert!(message.contains("claimed without a lease"), "{message}");
}
