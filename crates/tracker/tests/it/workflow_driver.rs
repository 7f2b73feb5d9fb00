//! The rules the engine's workflow driver relies on: a command is begun once per visit, a done
//! task runs again only for a workflow's visit, a gate's decision is its run's input in the
//! same batch, and a sub-workflow's end is its parent's input.

use domain::{ApprovalSource, Decision, TaskState, WorkflowId};
use tracker::Change;
use workflow::{
    Command, Definition, Input, Outcome, State as Step, StateKind, Target, Transition, When,
};

use crate::World;

fn review() -> Definition {
    Definition {
        name: "review".into(),
        start: "code".into(),
        blackboard: Default::default(),
        states: vec![
            Step::new(
                "code",
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
            .on(Transition::to("done").when(When::Approved))
            .on(Transition::to("code").when(When::Rejected).max(2)),
            Step::new(
                "done",
                StateKind::End {
                    outcome: Outcome::Succeeded,
                },
            ),
        ],
    }
}

fn run_agent(visit: u32) -> Command {
    Command::RunAgent {
        visit,
        state: "code".into(),
        agent: "coder".into(),
        target: Target::Task,
    }
}

fn begin(command: Command) -> Change {
    Change::BeginWorkflowCommand {
        id: WorkflowId(1),
        command,
        child: None,
    }
}

fn finish_done(w: &mut World, task: domain::TaskId) {
    w.claim(task);
    w.ok(Change::SettleTask {
        id: task,
        to: TaskState::Done,
        reason: Some("done".into()),
    });
}

#[test]
fn a_command_is_begun_once_per_visit_and_only_while_its_visit_waits() {
    let mut w = World::new();
    let task = w.titled("t");
    w.ok(Change::StartWorkflow {
        task,
        name: "review".into(),
        definition: review(),
    });
    w.ok(begin(run_agent(1)));
    assert_eq!(w.task(task).agent.as_deref(), Some("coder"));
    let again = w.refused(begin(run_agent(1)));
    assert!(
        again.contains("already began run_agent for `code` in visit 1"),
        "{again}"
    );
    let wrong = w.refused(begin(run_agent(2)));
    assert!(wrong.contains("does not wait for this command"), "{wrong}");
    let run = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(run.begun.len(), 1);
    assert!(run.begun_for(&run_agent(1)).is_some());
}

#[test]
fn a_done_task_goes_back_to_open_for_a_workflow_visit_only() {
    let mut w = World::new();
    let task = w.titled("t");
    w.ok(Change::StartWorkflow {
        task,
        name: "review".into(),
        definition: review(),
    });
    w.ok(begin(run_agent(1)));
    finish_done(&mut w, task);
    // A person may not reopen done work by hand...
    let by_hand = w.refused(Change::SetTaskState {
        id: task,
        to: TaskState::Open,
        reason: None,
    });
    assert!(by_hand.contains("is done"), "{by_hand}");
    w.ok(Change::StepWorkflow {
        id: WorkflowId(1),
        input: Input::ended(1, "code", Outcome::Succeeded),
    });

    // ...the gate's rejection sends the run back to `code`, whose begin reopens it.
    w.ok(begin(Command::RequestApproval {
        visit: 2,
        state: "gate".into(),
        summary: "ship it?".into(),
    }));
    let approval = w.state.pending_approval_of(task).unwrap().clone();
    assert_eq!(approval.source, ApprovalSource::Workflow);
    w.ok(Change::DecideApproval {
        id: approval.id,
        decision: Decision::Reject {
            feedback: "more tests".into(),
        },
    });
    let run = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(run.instance.position.as_deref(), Some("code"));
    assert_eq!(run.instance.visit, 3);
    // The decision does not reopen the task: the run does, as it begins its agent.
    assert_eq!(w.task(task).state, TaskState::Done);
    w.ok(begin(run_agent(3)));
    assert_eq!(w.task(task).state, TaskState::Open);
}

#[test]
fn an_approval_decided_twice_steps_its_run_once() {
    let mut w = World::new();
    let task = w.titled("t");
    w.ok(Change::StartWorkflow {
        task,
        name: "review".into(),
        definition: review(),
    });
    w.ok(begin(run_agent(1)));
    finish_done(&mut w, task);
    w.ok(Change::StepWorkflow {
        id: WorkflowId(1),
        input: Input::ended(1, "code", Outcome::Succeeded),
    });
    w.ok(begin(Command::RequestApproval {
        visit: 2,
        state: "gate".into(),
        summary: "ship it?".into(),
    }));
    let id = w.state.pending_approval_of(task).unwrap().id;
    w.ok(Change::DecideApproval {
        id,
        decision: Decision::Approve,
    });
    let twice = w.refused(Change::DecideApproval {
        id,
        decision: Decision::Approve,
    });
    assert!(twice.contains("already approved"), "{twice}");
    let run = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(run.instance.outcome(), Some(Outcome::Succeeded));
    assert_eq!(run.steps, 3);
}

#[test]
fn a_sub_workflow_runs_beside_its_parent_and_its_end_is_the_parents_input() {
    let mut w = World::new();
    let task = w.titled("t");
    let parent = Definition {
        name: "outer".into(),
        start: "inner".into(),
        blackboard: Default::default(),
        states: vec![
            Step::new(
                "inner",
                StateKind::Workflow {
                    workflow: "review".into(),
                },
            )
            .on(Transition::to("ok").when(When::Succeeded)),
            Step::new(
                "ok",
                StateKind::End {
                    outcome: Outcome::Succeeded,
                },
            ),
        ],
    };
    w.ok(Change::StartWorkflow {
        task,
        name: "outer".into(),
        definition: parent,
    });
    let start_child = Command::StartWorkflow {
        visit: 1,
        state: "inner".into(),
        workflow: "review".into(),
    };
    let without = w.refused(begin(start_child.clone()));
    assert!(without.contains("must come with the command"), "{without}");
    w.ok(Change::BeginWorkflowCommand {
        id: WorkflowId(1),
        command: start_child,
        child: Some(("review".into(), review())),
    });
    let child = w.state.workflow(WorkflowId(2)).unwrap();
    assert_eq!(child.parent.as_ref().map(|p| p.run), Some(WorkflowId(1)));
    assert_eq!(child.task_id, task);
    // A second top-level run is still refused on the task.
    let second = w.refused(Change::StartWorkflow {
        task,
        name: "review".into(),
        definition: review(),
    });
    assert!(
        second.contains("already runs the workflow `outer` (W1)"),
        "{second}"
    );

    // The child's agent ends as failed and no transition applies: the child fails, and so
    // does the parent's visit, in the same batch.
    w.ok(Change::BeginWorkflowCommand {
        id: WorkflowId(2),
        command: run_agent(1),
        child: None,
    });
    w.ok(Change::StepWorkflow {
        id: WorkflowId(2),
        input: Input::ended(1, "code", Outcome::Failed),
    });
    let child = w.state.workflow(WorkflowId(2)).unwrap();
    assert_eq!(child.instance.outcome(), Some(Outcome::Failed));
    let parent = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(parent.instance.outcome(), Some(Outcome::Failed));
}

#[test]
fn a_start_on_the_newest_task_goes_with_its_creation() {
    let mut w = World::new();
    let refused = w.refused(Change::StartWorkflowOnNewest {
        name: "review".into(),
        definition: review(),
    });
    assert!(refused.contains("no task was created"), "{refused}");
    let task = w.titled("t");
    w.ok(Change::StartWorkflowOnNewest {
        name: "review".into(),
        definition: review(),
    });
    let run = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(run.task_id, task);
    assert_eq!(run.instance.position.as_deref(), Some("code"));
}

#[test]
fn a_gate_that_times_out_takes_its_approval_out_of_the_queue() {
    let mut w = World::new();
    let task = w.titled("t");
    let mut def = review();
    def.start = "gate".into();
    def.states[1] = def.states[1].clone().timeout(60);
    def.states[1]
        .on
        .push(Transition::to("done").when(When::TimedOut));
    w.ok(Change::StartWorkflow {
        task,
        name: "review".into(),
        definition: def,
    });
    w.ok(begin(Command::RequestApproval {
        visit: 1,
        state: "gate".into(),
        summary: "ship it?".into(),
    }));
    let id = w.state.pending_approval_of(task).unwrap().id;
    w.ok(Change::StepWorkflow {
        id: WorkflowId(1),
        input: Input::TimedOut { visit: 1 },
    });
    assert!(w.state.pending_approval_of(task).is_none());
    let late = w.refused(Change::DecideApproval {
        id,
        decision: Decision::Approve,
    });
    assert!(late.contains("already rejected by workflow"), "{late}");
    let run = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(run.instance.outcome(), Some(Outcome::Succeeded));
}
