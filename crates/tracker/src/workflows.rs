//! The rules of workflow runs: one unfinished run per task, and each input taken once.
//!
//! A run's events are events of its task. The start records the definition as it was, so a
//! run goes on by the rules it began with when the manifest changes; every later input is
//! recorded as it came, and the run's instance is the fold of them by the pure
//! [`workflow::step`], in [`crate::evolve`] as in the decision, so the projection and the log
//! can never disagree.

use domain::{EventKind, TaskId, TaskState, Timestamp, WorkflowId};
use workflow::{Definition, Input, Instance};

use crate::State;
use crate::refusal::{Refusal, refused};

/// One run of a workflow on a task, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRun {
    pub id: WorkflowId,
    pub task_id: TaskId,
    pub name: String,
    pub definition: Definition,
    pub instance: Instance,
    /// The inputs taken so far, the start included.
    pub steps: u32,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The events of starting `name` on `task`: the start and the entry into the first state.
pub(crate) fn start(
    state: &State,
    task: TaskId,
    name: &str,
    definition: &Definition,
) -> Result<Vec<EventKind>, Refusal> {
    let Some(t) = state.task(task) else {
        return refused(format!(
            "task #{task} does not exist: see `agentgrid task list`"
        ));
    };
    if t.state == TaskState::Cancelled {
        return refused(format!(
            "task #{task} is cancelled, so no workflow can start on it; reopen it first"
        ));
    }
    if let Some(run) = state
        .workflows()
        .filter(|r| r.task_id == task && !r.instance.is_finished())
        .min_by_key(|r| r.id)
    {
        return refused(format!(
            "task #{task} already runs the workflow `{}` (W{}); a task runs one workflow at a \
             time",
            run.name, run.id
        ));
    }
    let id = state.next_workflow_id();
    let started = EventKind::TaskWorkflowStarted {
        workflow: id,
        name: name.to_string(),
        definition: to_json(definition),
    };
    let first = stepped(id, definition, &Instance::default(), Input::Start)?;
    Ok(vec![started, first])
}

/// The event of the run `id` taking `input`.
pub(crate) fn step(
    state: &State,
    id: WorkflowId,
    input: &Input,
) -> Result<(TaskId, EventKind), Refusal> {
    let Some(run) = state.workflow(id) else {
        return refused(format!(
            "workflow run W{id} does not exist: see `agentgrid workflow list`"
        ));
    };
    if run.instance.is_finished() {
        return refused(format!(
            "workflow run W{id} already {}; a finished run takes no more inputs",
            run.instance.status.as_str()
        ));
    }
    let event = stepped(id, &run.definition, &run.instance, input.clone())?;
    Ok((run.task_id, event))
}

fn stepped(
    id: WorkflowId,
    definition: &Definition,
    before: &Instance,
    input: Input,
) -> Result<EventKind, Refusal> {
    let (after, _) = workflow::step(definition, before, input.clone());
    if after == *before {
        return refused(format!(
            "workflow run W{id} does not wait for this input (it is at `{}`, visit {}): it was \
             taken already or belongs to a visit that is over",
            before.position.as_deref().unwrap_or("the start"),
            before.visit
        ));
    }
    let note = after.history[before.history.len()..]
        .iter()
        .map(|e| format!("{}: {}", e.state, e.note))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(EventKind::TaskWorkflowStepped {
        workflow: id,
        input: to_json(&input),
        position: after.position.clone(),
        status: after.status.as_str().to_string(),
        note,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("workflow values are plain data")
}

/// Folds a workflow event of `task` into the state.
pub(crate) fn evolve(state: &mut State, task: TaskId, at: Timestamp, kind: &EventKind) {
    match kind {
        EventKind::TaskWorkflowStarted {
            workflow,
            name,
            definition,
        } => {
            // Events the rules wrote always decode; a log written by hand that does not is
            // left out rather than guessed at.
            let Ok(definition) = serde_json::from_value(definition.clone()) else {
                return;
            };
            state.put_workflow(WorkflowRun {
                id: *workflow,
                task_id: task,
                name: name.clone(),
                definition,
                instance: Instance::default(),
                steps: 0,
                started_at: at,
                updated_at: at,
            });
        }
        EventKind::TaskWorkflowStepped {
            workflow, input, ..
        } => {
            let Ok(input) = serde_json::from_value::<Input>(input.clone()) else {
                return;
            };
            if let Some(run) = state.workflow_mut(*workflow) {
                run.instance = workflow::step(&run.definition, &run.instance, input).0;
                run.steps += 1;
                run.updated_at = at;
            }
        }
        _ => return,
    }
    if let Some(t) = state.task_mut(task) {
        t.updated_at = at;
    }
}
