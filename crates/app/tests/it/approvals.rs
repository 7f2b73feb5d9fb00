//! The approval queue through the application layer: decisions with their actor, a refused
//! one that changes nothing, and the views a person decides from.

use app::{AddTask, ApprovalList, ApprovalShow, AskApproval, DecideApproval, Error, Status};
use domain::{
    ApprovalId, ApprovalSource, ApprovalState, Decision, ExecutionKind, ExecutionState, TaskId,
    TaskState, Usage,
};
use store::{Change, Store};

use crate::{T0, ada, fixture};

/// A task that an execution made done, validated by two validators of which one passed
/// score-only, with the policy's approval #1 pending and some model use recorded.
async fn reviewed_task(f: &crate::Fixture) -> TaskId {
    let task = f
        .app
        .execute(&ada(), AddTask::titled("Add CSV export"))
        .await
        .unwrap()
        .id;
    let claim = Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: None,
    };
    let e = f
        .store
        .apply("engine", T0, vec![claim])
        .await
        .unwrap()
        .executions[0]
        .id;
    let result = |name: &str, passed: bool| domain::event::ValidatorResult {
        name: name.into(),
        score: if passed { 1.0 } else { 0.0 },
        passed,
        weight: 1.0,
        ..Default::default()
    };
    let changes = vec![
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
            pid: 9,
            iteration: 1,
            log_path: None,
        },
        Change::Validated {
            id: e,
            iteration: 1,
            score: 0.5,
            passed: true,
            results: vec![result("tests", true), result("lint", false)],
        },
        Change::RecordModelUsage {
            id: e,
            model: "fast".into(),
            tokens: domain::Tokens {
                input: 100,
                output: 20,
                cached: 0,
            },
            cost_micros: 1_500,
        },
        Change::FinishExecution {
            id: e,
            state: ExecutionState::Succeeded,
            exit_code: Some(0),
            usage: Usage::default(),
            summary: None,
        },
        Change::SettleTask {
            id: task,
            to: TaskState::Done,
            reason: Some("validated".into()),
        },
        Change::RequestApproval {
            task,
            source: ApprovalSource::Policy,
            execution: Some(e),
            summary: "exports rows".into(),
        },
    ];
    f.store.apply("engine", T0, changes).await.unwrap();
    task
}

#[tokio::test]
async fn the_queue_shows_what_a_person_decides_from() {
    let f = fixture();
    let task = reviewed_task(&f).await;
    let lines = f.app.ask(&ada(), ApprovalList::default()).await.unwrap();
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line.approval.id, ApprovalId(1));
    assert_eq!(line.title, "Add CSV export");
    assert_eq!(line.agent.as_deref(), Some("coder"));
    let v = line.validators.as_ref().expect("validators ran");
    assert_eq!((v.passed, v.total), (1, 2));
    assert_eq!(line.usage.cost_micros, 1_500);
    assert_eq!(line.usage.tokens.input, 100);

    let detail = f
        .app
        .ask(&ada(), ApprovalShow { id: ApprovalId(1) })
        .await
        .unwrap();
    assert_eq!(detail.task.id, task);
    assert_eq!(detail.results.len(), 2);
    assert!(detail.preview.iter().any(|p| p.contains("--diff")));

    let status = f.app.ask(&ada(), Status::default()).await.unwrap();
    assert_eq!(status.approvals.len(), 1);
}

#[tokio::test]
async fn a_rejection_reopens_the_task_and_its_feedback_is_found_for_the_next_prompt() {
    let f = fixture();
    let task = reviewed_task(&f).await;
    assert_eq!(f.app.latest_rejection_feedback(task).await.unwrap(), None);
    let reject = DecideApproval {
        id: ApprovalId(1),
        decision: Decision::Reject {
            feedback: "quote commas".into(),
        },
        land_after: None,
    };
    let decided = f.app.execute(&ada(), reject).await.unwrap();
    assert_eq!(decided.approval.state, ApprovalState::Rejected);
    assert_eq!(decided.land, None);
    assert_eq!(decided.approval.decided_by.as_deref(), Some("ada"));
    assert_eq!(
        f.store.task(task).await.unwrap().unwrap().state,
        TaskState::Open
    );
    assert_eq!(
        f.app
            .latest_rejection_feedback(task)
            .await
            .unwrap()
            .as_deref(),
        Some("quote commas")
    );
    assert!(
        f.app
            .ask(&ada(), ApprovalList::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_decisions_are_refused_and_change_nothing() {
    let f = fixture();
    reviewed_task(&f).await;
    let before = f.store.last_seq().await.unwrap();
    let unknown = DecideApproval {
        id: ApprovalId(5),
        decision: Decision::Approve,
        land_after: None,
    };
    match f.app.execute(&ada(), unknown).await {
        Err(Error::Invalid { message: m, .. }) => {
            assert!(m.contains("approval #5 does not exist"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let empty = DecideApproval {
        id: ApprovalId(1),
        decision: Decision::Reject {
            feedback: " ".into(),
        },
        land_after: None,
    };
    match f.app.execute(&ada(), empty).await {
        Err(Error::Invalid { message: m, .. }) => assert!(m.contains("--feedback"), "{m}"),
        other => panic!("{other:?}"),
    }
    let question = AskApproval {
        id: ApprovalId(1),
        question: String::new(),
    };
    assert!(f.app.execute(&ada(), question).await.is_err());
    assert_eq!(f.store.last_seq().await.unwrap(), before);

    let approve = DecideApproval {
        id: ApprovalId(1),
        decision: Decision::Approve,
        land_after: None,
    };
    let decided = f.app.execute(&ada(), approve.clone()).await.unwrap();
    assert_eq!(decided.land, None, "no policy, no land");
    let err = f
        .app
        .execute(&app::Actor::person("bob"), approve)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already approved by ada"), "{err}");
}

#[tokio::test]
async fn a_question_is_shown_with_its_approval() {
    let f = fixture();
    reviewed_task(&f).await;
    let ask = AskApproval {
        id: ApprovalId(1),
        question: "does it handle empty files?".into(),
    };
    f.app.execute(&ada(), ask).await.unwrap();
    let detail = f
        .app
        .ask(&ada(), ApprovalShow { id: ApprovalId(1) })
        .await
        .unwrap();
    assert_eq!(detail.questions.len(), 1);
    assert_eq!(detail.questions[0].by, "ada");
    assert_eq!(detail.line.approval.state, ApprovalState::Pending);
}
