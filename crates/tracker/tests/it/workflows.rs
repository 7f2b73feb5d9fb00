//! The rules of workflow runs: one unfinished run per task, each input taken once, and a run
//! that is the fold of its log.

use domain::{TaskId, WorkflowId};
use tracker::{Change, Event, State, evolve};
use workflow::{Definition, Input, Outcome, State as Step, StateKind, Transition, When};

use crate::World;

pub fn definition() -> Definition {
    Definition {
        name: "check".into(),
        start: "test".into(),
        blackboard: Default::default(),
        states: vec![
            Step::new(
                "test",
                StateKind::Command {
                    run: vec!["make".into(), "test".into()],
                },
            )
            .on(Transition::to("done").when(When::Succeeded))
            .on(Transition::to("test").max(1)),
            Step::new(
                "done",
                StateKind::End {
                    outcome: Outcome::Succeeded,
                },
            ),
        ],
    }
}

fn start(task: TaskId) -> Change {
    Change::StartWorkflow {
        task,
        name: "check".into(),
        definition: definition(),
    }
}

fn input(id: WorkflowId, input: Input) -> Change {
    Change::StepWorkflow { id, input }
}

#[test]
fn a_start_records_the_run_and_enters_the_first_state() {
    let mut w = World::new();
    let task = w.titled("t");
    let events = w.ok(start(task));
    let names: Vec<_> = events
        .iter()
        .map(|e| match e {
            Event::Logged(entry) => entry.kind.name(),
            Event::KeyUsed(_) => "key_used",
        })
        .collect();
    assert_eq!(names, ["task_workflow_started", "task_workflow_stepped"]);
    let run = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(run.task_id, task);
    assert_eq!(run.instance.position.as_deref(), Some("test"));
    assert_eq!(run.steps, 1);
}

#[test]
fn a_task_runs_one_workflow_at_a_time() {
    let mut w = World::new();
    let task = w.titled("t");
    w.ok(start(task));
    let refusal = w.refused(start(task));
    assert!(
        refusal.contains("already runs the workflow `check` (W1)"),
        "{refusal}"
    );

    // Once the run is over another may start, with the next id.
    w.ok(input(
        WorkflowId(1),
        Input::ended(1, "test", Outcome::Succeeded),
    ));
    w.ok(start(task));
    assert!(w.state.workflow(WorkflowId(2)).is_some());
}

#[test]
fn each_input_is_taken_once() {
    let mut w = World::new();
    let task = w.titled("t");
    w.ok(start(task));
    w.ok(input(
        WorkflowId(1),
        Input::ended(1, "test", Outcome::Failed),
    ));
    // The same answer again names a visit that is over.
    let refusal = w.refused(input(
        WorkflowId(1),
        Input::ended(1, "test", Outcome::Failed),
    ));
    assert!(
        refusal.contains("does not wait for this input"),
        "{refusal}"
    );
    w.ok(input(
        WorkflowId(1),
        Input::ended(2, "test", Outcome::Succeeded),
    ));
    let refusal = w.refused(input(
        WorkflowId(1),
        Input::ended(3, "done", Outcome::Succeeded),
    ));
    assert!(refusal.contains("already succeeded"), "{refusal}");
    let run = w.state.workflow(WorkflowId(1)).unwrap();
    assert_eq!(run.instance.outcome(), Some(Outcome::Succeeded));
    assert_eq!(run.steps, 3);
}

#[test]
fn unknown_runs_and_tasks_are_refused() {
    let mut w = World::new();
    let refusal = w.refused(start(TaskId(9)));
    assert!(refusal.contains("task #9 does not exist"), "{refusal}");
    let refusal = w.refused(input(WorkflowId(4), Input::Start));
    assert!(refusal.contains("W4 does not exist"), "{refusal}");
}

#[test]
fn the_run_is_the_fold_of_its_log() {
    let mut w = World::new();
    let task = w.titled("t");
    w.ok(start(task));
    w.ok(input(
        WorkflowId(1),
        Input::ended(1, "test", Outcome::Failed),
    ));
    let mut folded = State::complete();
    for event in &w.log {
        evolve(&mut folded, event);
    }
    assert_eq!(
        folded.workflow(WorkflowId(1)),
        w.state.workflow(WorkflowId(1))
    );
    // The log holds the definition as it was, so the fold needs nothing else.
    assert_eq!(
        folded.workflow(WorkflowId(1)).unwrap().definition,
        definition()
    );
}

#[test]
fn a_task_keeps_a_bounded_number_of_finished_runs() {
    let mut w = World::new();
    let task = w.titled("t");
    let other = w.titled("u");
    let bound = tracker::MAX_FINISHED_RUNS_PER_TASK;
    for n in 1..=bound {
        w.ok(start(task));
        w.ok(input(
            WorkflowId(n as i64),
            Input::ended(1, "test", Outcome::Succeeded),
        ));
    }
    let refusal = w.refused(start(task));
    assert_eq!(
        refusal,
        format!(
            "task #{task} has finished {bound} workflow runs, the most one task keeps ({bound}); \
             add a new task for more work"
        )
    );
    // The bound is the task's own (`refused` checks that nothing changed).
    w.ok(start(other));
}
