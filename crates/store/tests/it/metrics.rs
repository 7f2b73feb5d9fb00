//! Agency metrics on the real SQLite store, checked exactly on a scripted history: tasks done
//! with and without help, first-pass approvals, a handoff (appended as its teammate's event
//! will be) and the time to the next process start, cost and wall time of done tasks.

use domain::{
    ApprovalId, ApprovalSource, Decision, ExecutionId, ExecutionKind, ExecutionState, NewTask,
    TaskId, TaskState, Timestamp, Usage,
};
use store::{AgentMetrics, Change, SqliteStore, Store};

use crate::{T0, db_path, fresh};

fn at(ms: i64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

/// Runs one execution of `agent` on `task` from `start` (its process starting 500 ms in) to a
/// success `wall_ms` long, and settles the task done.
async fn run_done(
    store: &SqliteStore,
    task: TaskId,
    agent: &str,
    start: i64,
    wall_ms: u64,
) -> ExecutionId {
    let claim = Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: agent.into(),
        attempt: 1,
        lease: None,
    };
    let e = store
        .apply("engine", at(start), vec![claim])
        .await
        .unwrap()
        .executions[0]
        .id;
    start_process(store, e, start + 500).await;
    let end = vec![
        Change::FinishExecution {
            id: e,
            state: ExecutionState::Succeeded,
            exit_code: Some(0),
            usage: Usage { wall_ms, cpu_ms: 1 },
            summary: None,
        },
        Change::SettleTask {
            id: task,
            to: TaskState::Done,
            reason: None,
        },
    ];
    store.apply("engine", at(start + 1000), end).await.unwrap();
    e
}

async fn start_process(store: &SqliteStore, e: ExecutionId, when: i64) {
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
            pid: 42,
            iteration: 1,
            log_path: None,
        },
    ];
    store.apply("engine", at(when), changes).await.unwrap();
}

async fn approval(store: &SqliteStore, task: TaskId, when: i64, decision: Decision) {
    let ask = Change::RequestApproval {
        task,
        source: ApprovalSource::Policy,
        execution: None,
        summary: "look".into(),
    };
    let applied = store.apply("engine", at(when), vec![ask]).await.unwrap();
    let id: ApprovalId = applied.approvals[0].id;
    let decide = Change::DecideApproval { id, decision };
    store
        .apply("ada", at(when + 10), vec![decide])
        .await
        .unwrap();
}

/// Appends a `task_handed_off` event as the handoff change will, straight into the log.
fn hand_off(dir: &tempfile::TempDir, task: TaskId, when: i64) {
    let raw = rusqlite::Connection::open(db_path(dir)).unwrap();
    raw.execute(
        "INSERT INTO events (at, entity, entity_id, entity_seq, actor, type, data)
         SELECT ?1, 'task', ?2, COALESCE(MAX(entity_seq), 0) + 1, 'agent:coder#1',
             'task_handed_off',
             '{\"from_agency\": \"code\", \"from_role\": \"coder\", \"to_agency\": \"qa\", \"to_role\": \"tester\"}'
         FROM events WHERE entity = 'task' AND entity_id = ?2",
        rusqlite::params![at(when).0, task.0],
    )
    .unwrap();
}

#[tokio::test]
async fn metrics_add_up_exactly_on_a_scripted_history() {
    let (dir, store) = fresh();
    let t1 = crate::create(&store, NewTask::titled("rejected first"))
        .await
        .id;
    let t2 = crate::create(&store, NewTask::titled("with feedback"))
        .await
        .id;
    let t3 = crate::create(&store, NewTask::titled("unaided")).await.id;
    let t4 = crate::create(&store, NewTask::titled("handed to QA"))
        .await
        .id;

    // #1: done, rejected (reopened), done again, approved: helped, not first pass.
    let e1 = run_done(&store, t1, "coder", 0, 4_000).await;
    let usage = Change::RecordModelUsage {
        id: e1,
        model: "default".into(),
        tokens: domain::Tokens {
            input: 10,
            output: 5,
            cached: 0,
        },
        cost_micros: 1_500,
    };
    store.apply("gateway", at(900), vec![usage]).await.unwrap();
    approval(
        &store,
        t1,
        2_000,
        Decision::Reject {
            feedback: "smaller".into(),
        },
    )
    .await;
    run_done(&store, t1, "coder", 3_000, 2_000).await;
    approval(&store, t1, 5_000, Decision::Approve).await;
    // #2: a person's feedback, then done and approved at once: helped, first pass.
    let feedback = Change::Feedback {
        id: t2,
        text: "use JSON".into(),
    };
    store.apply("ada", at(6_000), vec![feedback]).await.unwrap();
    run_done(&store, t2, "coder", 7_000, 3_000).await;
    approval(&store, t2, 9_000, Decision::Approve).await;
    // #3: done with no one's help.
    run_done(&store, t3, "coder", 10_000, 1_000).await;
    // #4: handed to QA at 20 s, whose tester's process starts at 22.5 s; still running.
    hand_off(&dir, t4, 20_000);
    let claim = Change::CreateExecution {
        task_id: t4,
        kind: ExecutionKind::Work,
        agent: "tester".into(),
        attempt: 1,
        lease: None,
    };
    let e4 = store
        .apply("engine", at(21_000), vec![claim])
        .await
        .unwrap()
        .executions[0]
        .id;
    start_process(&store, e4, 22_500).await;

    let got = store.agent_metrics(None).await.unwrap();
    let coder = AgentMetrics {
        agent: "coder".into(),
        tasks: 3,
        done: 3,
        done_unaided: 1,
        approvals_decided: 2,
        approvals_first_pass: 1,
        handoffs: 0,
        handoff_ms: 0,
        done_cost_micros: 1_500,
        done_wall_ms: 4_000 + 2_000 + 3_000 + 1_000,
        executions: 4,
        executed_tasks: 3,
    };
    let tester = AgentMetrics {
        agent: "tester".into(),
        tasks: 1,
        done: 0,
        done_unaided: 0,
        approvals_decided: 0,
        approvals_first_pass: 0,
        handoffs: 1,
        handoff_ms: 2_500,
        done_cost_micros: 0,
        done_wall_ms: 0,
        executions: 1,
        executed_tasks: 1,
    };
    assert_eq!(got, vec![coder, tester.clone()]);

    // Since 15 s: only the handed-off task and its execution are in the window.
    let recent = store.agent_metrics(Some(at(15_000))).await.unwrap();
    assert_eq!(recent, vec![tester]);
}
