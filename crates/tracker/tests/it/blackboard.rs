//! Who may write a workflow run's blackboard, and what: only the execution its current visit's
//! agent state started, on the task that state runs on, a declared key with a value of its type
//! and size. Every refusal changes nothing; a write is the run's input and a line of its
//! history.

use domain::{ExecutionKind, TaskState, Timestamp, WorkflowId};
use tracker::Change;
use workflow::{
    Command, Definition, Input, Outcome, State as Step, StateKind, Target, Transition, Value,
    ValueType, When,
};

use crate::World;

fn review() -> Definition {
    Definition {
        name: "review".into(),
        start: "qa".into(),
        blackboard: [
            ("bugs".to_string(), ValueType::Int),
            ("notes".to_string(), ValueType::String),
        ]
        .into(),
        states: vec![
            Step::new(
                "qa",
                StateKind::Agent {
                    agent: "coder".into(),
                    target: Target::Task,
                },
            )
            .on(Transition::to("gate").when(When::Succeeded)),
            Step::new(
                "gate",
                StateKind::Approval {
                    summary: "ship it?".into(),
                },
            )
            .on(Transition::to("done")),
            Step::new(
                "done",
                StateKind::End {
                    outcome: Outcome::Succeeded,
                },
            ),
        ],
    }
}

fn write(execution: domain::ExecutionId, key: &str, text: &str) -> Change {
    Change::WriteBlackboard {
        execution,
        key: key.into(),
        text: text.into(),
    }
}

fn later(w: &mut World) {
    w.now = Timestamp(w.now.0 + 1000);
}

fn begin_qa(w: &mut World) {
    w.ok(Change::BeginWorkflowCommand {
        id: WorkflowId(1),
        command: Command::RunAgent {
            visit: 1,
            state: "qa".into(),
            agent: "coder".into(),
            target: Target::Task,
        },
        child: None,
    });
}

#[test]
fn the_agent_of_the_current_visit_writes_a_declared_value_of_its_type() {
    let mut w = World::new();
    let task = w.titled("t");
    w.ok(Change::StartWorkflow {
        task,
        name: "review".into(),
        definition: review(),
    });
    later(&mut w);
    begin_qa(&mut w);
    later(&mut w);
    let e = w.claim(task);
    let events = w.ok(write(e, "bugs", "2"));
    assert_eq!(events.len(), 1, "{events:?}");
    let run = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(run.instance.blackboard.get("bugs"), Some(&Value::Int(2)));
    assert_eq!(run.instance.position.as_deref(), Some("qa"));
    assert_eq!(run.instance.history.last().unwrap().note, "set bugs = 2");

    // What the key's type or size does not allow, and a key the workflow does not declare.
    for (key, text, why) in [
        (
            "bugs",
            "many",
            "`many` is not an int, and the blackboard's `bugs` is of type int",
        ),
        (
            "colour",
            "red",
            "the workflow `review` has no blackboard key `colour` (keys: bugs, notes)",
        ),
        (
            "notes",
            &"x".repeat(4097),
            "the value of `notes` is 4097 characters long; at most 4096 are kept",
        ),
        (
            "k".repeat(65).as_str(),
            "1",
            "a blackboard key is at most 64 characters long",
        ),
    ] {
        let refusal = w.refused(write(e, key, text));
        assert!(refusal.contains(why), "{key}: {refusal}");
    }
    w.ok(write(e, "notes", "splits on single spaces"));
    let run = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(
        run.instance.blackboard.get("notes"),
        Some(&Value::String("splits on single spaces".into()))
    );
}

#[test]
fn no_other_execution_writes_the_blackboard() {
    let mut w = World::new();
    let task = w.titled("t");
    let lone = w.titled("no workflow");
    let e = w.claim(lone);
    let refusal = w.refused(write(e, "bugs", "1"));
    assert!(
        refusal.contains("task #2 runs no workflow, so execution #1 has no blackboard to write"),
        "{refusal}"
    );

    w.ok(Change::StartWorkflow {
        task,
        name: "review".into(),
        definition: review(),
    });
    // Claimed before the visit began its agent: not that visit's execution.
    let early = w.claim(task);
    later(&mut w);
    begin_qa(&mut w);
    let refusal = w.refused(write(early, "bugs", "1"));
    assert!(
        refusal.contains(
            "execution #2 (`coder`) was not started by `qa` (visit 1) of workflow run W1"
        ),
        "{refusal}"
    );
    w.ok(Change::SettleTask {
        id: task,
        to: TaskState::Open,
        reason: None,
    });
    w.ok(Change::FinishExecution {
        id: early,
        state: domain::ExecutionState::Cancelled,
        exit_code: None,
        usage: Default::default(),
        summary: None,
    });

    // Another agent's execution on the task.
    later(&mut w);
    let other = w.state.next_execution_id();
    w.ok(Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "tester".into(),
        attempt: 1,
        lease: None,
    });
    let refusal = w.refused(write(other, "bugs", "1"));
    assert!(
        refusal.contains("only that visit's agent `coder` writes the blackboard"),
        "{refusal}"
    );

    // Once the run went on to its gate, the visit's agent writes no more.
    w.ok(Change::StepWorkflow {
        id: WorkflowId(1),
        input: Input::ended(1, "qa", Outcome::Succeeded),
    });
    let refusal = w.refused(write(other, "bugs", "1"));
    assert!(
        refusal.contains("workflow run W1 is at `gate` (visit 2), which runs no agent on task #1"),
        "{refusal}"
    );
}
