//! The rules of approvals: who may ask and when, one decision per approval, and what a
//! decision does to its task.

use domain::{
    ApprovalId, ApprovalSource, ApprovalState, Decision, EventKind, NewTask, TaskId, TaskState,
};
use tracker::{Change, Event};

use crate::World;

fn request(task: TaskId, source: ApprovalSource) -> Change {
    Change::RequestApproval {
        task,
        source,
        execution: None,
        summary: "added the CSV export".into(),
    }
}

fn reject(id: ApprovalId, feedback: &str) -> Change {
    Change::DecideApproval {
        id,
        decision: Decision::Reject {
            feedback: feedback.into(),
        },
    }
}

fn approve(id: ApprovalId) -> Change {
    Change::DecideApproval {
        id,
        decision: Decision::Approve,
    }
}

fn set(w: &mut World, id: TaskId, to: TaskState) {
    w.ok(Change::SetTaskState {
        id,
        to,
        reason: None,
    });
}

/// A task the policy asks about: claimed, done, with approval #1 pending.
fn done_with_approval(w: &mut World) -> TaskId {
    let task = w.titled("export");
    w.claim(task);
    w.ok(Change::SettleTask {
        id: task,
        to: TaskState::Done,
        reason: Some("validated".into()),
    });
    w.ok(request(task, ApprovalSource::Policy));
    task
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            Event::Logged(entry) => entry.kind.name(),
            Event::KeyUsed(_) => "key_used",
        })
        .collect()
}

#[test]
fn a_policy_request_is_pending_on_a_done_task() {
    let mut w = World::new();
    let task = done_with_approval(&mut w);
    let approval = w.state.approval(ApprovalId(1)).expect("recorded").clone();
    assert_eq!(approval.task_id, task);
    assert_eq!(approval.state, ApprovalState::Pending);
    assert_eq!(approval.source, ApprovalSource::Policy);
    assert_eq!(
        w.state.pending_approval_of(task).map(|a| a.id),
        Some(ApprovalId(1))
    );
    assert_eq!(w.state.next_approval_id(), ApprovalId(2));
}

#[test]
fn each_source_asks_only_in_its_state_and_one_at_a_time() {
    let mut w = World::new();
    let open = w.titled("open");
    let why = w.refused(request(open, ApprovalSource::Policy));
    assert!(why.contains("asks while the task is done"), "{why}");
    let why = w.refused(request(open, ApprovalSource::Agent));
    assert!(why.contains("asks while the task is running"), "{why}");
    let why = w.refused(request(TaskId(99), ApprovalSource::Policy));
    assert_eq!(why, "task #99 does not exist");

    let task = w.titled("plan");
    w.claim(task);
    w.ok(request(task, ApprovalSource::Agent));
    let why = w.refused(request(task, ApprovalSource::Agent));
    assert!(why.contains("already waits for approval #1"), "{why}");
    // The policy's request, made in the batch that ends the task, finds the pending one
    // standing for it and makes nothing, so that the end is never rolled back.
    w.ok(Change::SettleTask {
        id: task,
        to: TaskState::Done,
        reason: None,
    });
    assert!(w.ok(request(task, ApprovalSource::Policy)).is_empty());
    assert_eq!(w.state.approvals().count(), 1);
}

#[test]
fn nothing_is_decided_twice_and_unknown_approvals_are_refused() {
    let mut w = World::new();
    done_with_approval(&mut w);
    let why = w.refused(approve(ApprovalId(7)));
    assert!(why.starts_with("approval #7 does not exist"), "{why}");

    w.actor = "ada";
    w.ok(approve(ApprovalId(1)));
    let a = w.state.approval(ApprovalId(1)).unwrap();
    assert_eq!(a.state, ApprovalState::Approved);
    assert_eq!(a.decided_by.as_deref(), Some("ada"));

    w.actor = "bob";
    for change in [
        approve(ApprovalId(1)),
        reject(ApprovalId(1), "no"),
        Change::AskApproval {
            id: ApprovalId(1),
            question: "why?".into(),
        },
    ] {
        let why = w.refused(change);
        assert!(
            why.contains("was already approved by ada") && why.contains("a decision is made once"),
            "{why}"
        );
    }
}

#[test]
fn approving_a_done_task_leaves_it_done() {
    let mut w = World::new();
    let task = done_with_approval(&mut w);
    let events = w.ok(approve(ApprovalId(1)));
    assert_eq!(kinds(&events), ["task_approval_decided"]);
    assert_eq!(w.task(task).state, TaskState::Done);
}

#[test]
fn a_rejection_reopens_the_done_task_with_the_feedback_as_reason() {
    let mut w = World::new();
    let task = done_with_approval(&mut w);
    let why = w.refused(reject(ApprovalId(1), "  "));
    assert!(why.contains("a rejection needs feedback"), "{why}");

    let events = w.ok(reject(ApprovalId(1), "handle empty files"));
    assert_eq!(
        kinds(&events),
        ["task_approval_decided", "task_state_changed"]
    );
    let t = w.task(task);
    assert_eq!(t.state, TaskState::Open);
    assert_eq!(t.attempts, 0);
    let a = w.state.approval(ApprovalId(1)).unwrap();
    assert_eq!(a.state, ApprovalState::Rejected);
    assert_eq!(a.feedback.as_deref(), Some("handle empty files"));
    let Event::Logged(entry) = &events[1] else {
        panic!("a log entry")
    };
    assert!(matches!(
        &entry.kind,
        EventKind::TaskStateChanged { from: TaskState::Done, to: TaskState::Open, reason: Some(r) }
            if r == "rejected in approval #1: handle empty files"
    ));
    // A new round may ask again once the first decision is made.
    assert!(w.state.pending_approval_of(task).is_none());
}

#[test]
fn a_done_task_is_reopened_by_a_rejection_and_nothing_else() {
    let mut w = World::new();
    let task = done_with_approval(&mut w);
    let why = w.refused(Change::SetTaskState {
        id: task,
        to: TaskState::Open,
        reason: None,
    });
    assert!(
        why.contains("only when a person rejects its approval"),
        "{why}"
    );
}

#[test]
fn an_agent_request_waits_blocked_and_its_approval_lets_the_work_go_on() {
    let mut w = World::new();
    let task = w.titled("plan");
    let e = w.claim(task);
    w.ok(Change::RequestApproval {
        task,
        source: ApprovalSource::Agent,
        execution: Some(e),
        summary: "plan: split the parser".into(),
    });
    // Not while the agent still works.
    let why = w.refused(approve(ApprovalId(1)));
    assert!(why.contains("is still running"), "{why}");

    w.ok(Change::SettleTask {
        id: task,
        to: TaskState::Blocked,
        reason: Some("waiting for approval #1".into()),
    });
    let events = w.ok(approve(ApprovalId(1)));
    assert_eq!(
        kinds(&events),
        ["task_approval_decided", "task_state_changed"]
    );
    assert_eq!(w.task(task).state, TaskState::Open);
    assert_eq!(
        w.state.approval(ApprovalId(1)).unwrap().execution_id,
        Some(e)
    );
}

#[test]
fn a_decision_on_a_task_a_person_moved_meanwhile_leaves_the_task_alone() {
    let mut w = World::new();
    let task = w.titled("plan");
    w.claim(task);
    w.ok(request(task, ApprovalSource::Agent));
    w.ok(Change::SettleTask {
        id: task,
        to: TaskState::Blocked,
        reason: None,
    });
    set(&mut w, task, TaskState::Cancelled);
    let events = w.ok(reject(ApprovalId(1), "not this way"));
    assert_eq!(kinds(&events), ["task_approval_decided"]);
    assert_eq!(w.task(task).state, TaskState::Cancelled);
}

#[test]
fn a_done_sub_task_is_not_reopened_by_a_rejection() {
    let mut w = World::new();
    let parent = w.titled("parent");
    let child = w.create(NewTask {
        parent: Some(parent),
        ..NewTask::titled("child")
    });
    w.claim(child);
    w.ok(request(child, ApprovalSource::Agent));
    w.ok(Change::SettleTask {
        id: child,
        to: TaskState::Done,
        reason: None,
    });
    let why = w.refused(reject(ApprovalId(1), "redo"));
    assert!(why.contains("done sub-task"), "{why}");
}

#[test]
fn a_question_is_recorded_and_the_approval_stays_pending() {
    let mut w = World::new();
    let task = done_with_approval(&mut w);
    let why = w.refused(Change::AskApproval {
        id: ApprovalId(1),
        question: "".into(),
    });
    assert_eq!(why, "a question cannot be empty");
    let events = w.ok(Change::AskApproval {
        id: ApprovalId(1),
        question: "does it stream?".into(),
    });
    assert_eq!(kinds(&events), ["task_approval_questioned"]);
    assert_eq!(
        w.state.approval(ApprovalId(1)).unwrap().state,
        ApprovalState::Pending
    );
    assert_eq!(w.task(task).state, TaskState::Done);
}

#[test]
fn landed_work_cannot_be_sent_back_by_a_rejection_but_can_be_approved() {
    let mut w = World::new();
    let task = done_with_approval(&mut w);
    w.ok(Change::StartLand {
        id: task,
        strategy: domain::LandStrategy::Merge,
        base: "refs/heads/main".into(),
        old: "a".repeat(40),
        new: "b".repeat(40),
    });
    w.ok(Change::FinishLand {
        id: task,
        landed: true,
        reason: None,
    });
    let why = w.refused(reject(ApprovalId(1), "redo it"));
    assert!(why.contains("is already landed"), "{why}");
    assert!(why.contains("agentgrid task add"), "{why}");
    assert_eq!(w.task(task).state, TaskState::Done);
    assert_eq!(
        w.state.approval(ApprovalId(1)).unwrap().state,
        ApprovalState::Pending,
        "a refused rejection decides nothing"
    );
    let events = w.ok(approve(ApprovalId(1)));
    assert_eq!(kinds(&events), ["task_approval_decided"]);
}
