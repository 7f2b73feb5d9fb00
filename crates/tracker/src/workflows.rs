//! The rules of workflow runs: one unfinished run per task, and each input taken once.
//!
//! A run's events are events of its task. The start records the definition as it was, so a
//! run goes on by the rules it began with when the manifest changes; every later input is
//! recorded as it came, and the run's instance is the fold of them by the pure
//! [`workflow::step`], in [`crate::evolve`] as in the decision, so the projection and the log
//! can never disagree.

use domain::{
    ApprovalId, Decision as ApprovalDecision, EventKind, ExecutionId, NewTask, TaskId, TaskState,
    Timestamp, WorkflowId, WorkflowParent,
};
use serde::{Deserialize, Serialize};
use workflow::{Command, Definition, Input, Instance, Outcome, Target, Value};

use crate::State;
use crate::decide::Decision;
use crate::refusal::{Refusal, refused};

/// The most finished workflow runs (sub-workflows included) one task keeps: a start past it,
/// by a person, an agent or a `workflow` state, is refused. A review loop that goes round a
/// few times needs a handful; a hundred is far past any real use and still cheap to load.
pub const MAX_FINISHED_RUNS_PER_TASK: usize = 100;

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
    /// The visit of another run's `workflow` state that started this run.
    pub parent: Option<WorkflowParent>,
    /// The commands the engine began carrying out, each once per visit.
    pub begun: Vec<Begun>,
}

impl WorkflowRun {
    /// What the engine began for `command` in its visit, if it did.
    pub fn begun_for(&self, command: &Command) -> Option<&Begun> {
        let (visit, state) = command_visit(command)?;
        let kind = command_kind(command);
        self.begun
            .iter()
            .find(|b| b.visit == visit && b.state == state && b.command == kind)
    }
}

/// One command the engine began for a visit of a run: recorded before it acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begun {
    pub visit: u32,
    pub state: String,
    /// The command's kind ([`command_kind`]).
    pub command: String,
    pub at: Timestamp,
    /// When a timer fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
    /// The approval a gate asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalId>,
    /// The sub-task an agent state made for its agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask: Option<TaskId>,
}

/// The stable name of a command's kind, as `task_workflow_begun` events record it.
pub fn command_kind(command: &Command) -> &'static str {
    match command {
        Command::RunAgent { .. } => "run_agent",
        Command::RunCommand { .. } => "run_command",
        Command::RequestApproval { .. } => "request_approval",
        Command::StartWorkflow { .. } => "start_workflow",
        Command::Land { .. } => "land",
        Command::ArmTimer { .. } => "arm_timer",
        Command::Cancel { .. } => "cancel",
        Command::Finish { .. } => "finish",
    }
}

/// The visit and state a command belongs to; `None` for `Finish`.
pub fn command_visit(command: &Command) -> Option<(u32, &str)> {
    match command {
        Command::RunAgent { visit, state, .. }
        | Command::RunCommand { visit, state, .. }
        | Command::RequestApproval { visit, state, .. }
        | Command::StartWorkflow { visit, state, .. }
        | Command::Land { visit, state }
        | Command::ArmTimer { visit, state, .. }
        | Command::Cancel { visit, state } => Some((*visit, state.as_str())),
        Command::Finish { .. } => None,
    }
}

/// The events of starting `name` on `task`: the start and the entry into the first state.
pub(crate) fn start(
    state: &State,
    task: TaskId,
    name: &str,
    definition: &Definition,
    parent: Option<WorkflowParent>,
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
    // A sub-workflow runs on its parent's task, beside the parent run that waits for it.
    if let Some(run) = state
        .workflows()
        .filter(|r| r.task_id == task && !r.instance.is_finished())
        .filter(|_| parent.is_none())
        .min_by_key(|r| r.id)
    {
        return refused(format!(
            "task #{task} already runs the workflow `{}` (W{}); a task runs one workflow at a \
             time",
            run.name, run.id
        ));
    }
    // Every run of a task is kept and loaded whenever the task starts one, so an agent or a
    // script that starts workflows in a loop must meet a bound, not fill the store.
    let finished = state
        .workflows()
        .filter(|r| r.task_id == task && r.instance.is_finished())
        .count();
    if finished >= MAX_FINISHED_RUNS_PER_TASK {
        return refused(format!(
            "task #{task} has finished {finished} workflow runs, the most one task keeps \
             ({MAX_FINISHED_RUNS_PER_TASK}); add a new task for more work"
        ));
    }
    let id = state.next_workflow_id();
    let started = EventKind::TaskWorkflowStarted {
        workflow: id,
        name: name.to_string(),
        definition: to_json(definition),
        parent,
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

/// [`step`], and when the step finishes a sub-workflow, its parent's step on that end: the
/// child's end and the parent's input are one batch, so neither is lost to a crash between.
/// A parent that no longer waits (its visit timed out) takes nothing.
pub(crate) fn step_and_parent(
    state: &State,
    id: WorkflowId,
    input: &Input,
) -> Result<Vec<(TaskId, EventKind)>, Refusal> {
    let first = step(state, id, input)?;
    let mut events = vec![first];
    let Some(run) = state.workflow(id) else {
        return Ok(events);
    };
    let after = workflow::step(&run.definition, &run.instance, input.clone()).0;
    // A gate that timed out takes its approval out of the queue: nobody is left to decide it
    // for, and the task's next gate could not ask while it is pending.
    if let Input::TimedOut { visit } = input
        && let Some(pending) = state.pending_approval_of(run.task_id)
        && run
            .begun
            .iter()
            .any(|b| b.visit == *visit && b.approval == Some(pending.id))
    {
        events.push((
            run.task_id,
            EventKind::TaskApprovalDecided {
                approval: pending.id,
                by: "workflow".to_string(),
                decision: ApprovalDecision::Reject {
                    feedback: format!(
                        "workflow run W{id} timed out at `{}` (visit {visit}) before a decision",
                        run.instance.position.as_deref().unwrap_or("-")
                    ),
                },
            },
        ));
    }
    if let (Some(outcome), Some(parent)) = (after.outcome(), &run.parent) {
        let input = Input::ended(parent.visit, &parent.state, outcome);
        if let Ok(up) = step(state, parent.run, &input) {
            events.push(up);
        }
    }
    Ok(events)
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
            parent,
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
                parent: parent.clone(),
                begun: Vec::new(),
            });
        }
        EventKind::TaskWorkflowBegun {
            workflow,
            visit,
            state: name,
            command,
            deadline,
            approval,
            subtask,
        } => {
            if let Some(run) = state.workflow_mut(*workflow) {
                run.begun.push(Begun {
                    visit: *visit,
                    state: name.clone(),
                    command: command.clone(),
                    at,
                    deadline: *deadline,
                    approval: *approval,
                    subtask: *subtask,
                });
                run.updated_at = at;
            }
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

impl Decision<'_> {
    /// [`crate::Change::BeginWorkflowCommand`].
    pub(crate) fn begin_workflow_command(
        &mut self,
        id: WorkflowId,
        command: &Command,
        child: Option<&(String, Definition)>,
    ) -> Result<(), Refusal> {
        let Some(run) = self.state.workflow(id) else {
            return refused(format!(
                "workflow run W{id} does not exist: see `agentgrid workflow list`"
            ));
        };
        if !run.instance.awaiting(&run.definition).contains(command) {
            return refused(format!(
                "workflow run W{id} does not wait for this command (it is {}, at `{}`, visit {})",
                run.instance.status.as_str(),
                run.instance.position.as_deref().unwrap_or("the start"),
                run.instance.visit
            ));
        }
        let Some((visit, state_name)) = command_visit(command) else {
            return refused("a run's end is no command to begin");
        };
        if run.begun_for(command).is_some() {
            return refused(format!(
                "workflow run W{id} already began {} for `{state_name}` in visit {visit}; a \
                 command is carried out once per visit",
                command_kind(command)
            ));
        }
        let task_id = run.task_id;
        let mut begun = EventKind::TaskWorkflowBegun {
            workflow: id,
            visit,
            state: state_name.to_string(),
            command: command_kind(command).to_string(),
            deadline: None,
            approval: None,
            subtask: None,
        };
        let EventKind::TaskWorkflowBegun {
            deadline,
            approval,
            subtask,
            ..
        } = &mut begun
        else {
            unreachable!("made above");
        };
        match command {
            Command::RunAgent {
                agent,
                target: Target::Task,
                ..
            } => {
                let task = self.task(task_id)?;
                if task.agent.as_deref() != Some(agent.as_str()) {
                    let edit = crate::TaskEdit {
                        agent: Some(Some(agent.clone())),
                        ..crate::TaskEdit::default()
                    };
                    self.edit_task(task_id, &edit)?;
                }
                let task = self.task(task_id)?;
                let (from, counted) = (
                    task.state,
                    task.attempts > 0 || task.continuations > 0 || task.not_before.is_some(),
                );
                // The rule a workflow's visit alone may break: a task that ended (a review
                // loop's second round on done work) runs again, with fresh counters.
                if matches!(
                    from,
                    TaskState::Done | TaskState::Failed | TaskState::Blocked
                ) {
                    self.task_event(
                        task_id,
                        EventKind::TaskStateChanged {
                            from,
                            to: TaskState::Open,
                            reason: Some(format!(
                                "workflow run W{id} runs `{agent}` on it (`{state_name}`, visit \
                                 {visit})"
                            )),
                        },
                    );
                }
                if counted {
                    self.task_event(
                        task_id,
                        EventKind::TaskScheduled {
                            not_before: None,
                            attempts: 0,
                            continuations: 0,
                            reason: Some(format!("workflow run W{id}, visit {visit}")),
                        },
                    );
                }
            }
            Command::RunAgent {
                agent,
                target: Target::Subtask { title },
                ..
            } => {
                let new = NewTask {
                    parent: Some(task_id),
                    agent: Some(agent.clone()),
                    ..NewTask::titled(title.clone())
                };
                *subtask = Some(self.create_task(&new)?);
            }
            Command::RequestApproval { summary, .. } => {
                if let Some(pending) = self.state.pending_approval_of(task_id) {
                    return refused(format!(
                        "task #{task_id} already waits for approval #{}; a task waits for one \
                         decision at a time",
                        pending.id
                    ));
                }
                *approval = Some(self.state.next_approval_id());
                self.request_approval(
                    task_id,
                    domain::ApprovalSource::Workflow,
                    None,
                    &format!("{summary} (workflow run W{id}, `{state_name}`)"),
                )?;
            }
            Command::ArmTimer { secs, .. } => {
                let ms = secs.saturating_mul(1000);
                *deadline = Some(Timestamp(self.now.0.saturating_add(ms as i64)));
            }
            Command::StartWorkflow { workflow, .. } => {
                let Some((name, definition)) = child.filter(|(name, _)| name == workflow) else {
                    return refused(format!(
                        "workflow run W{id} starts the workflow `{workflow}`: its definition \
                         must come with the command"
                    ));
                };
                let parent = WorkflowParent {
                    run: id,
                    visit,
                    state: state_name.to_string(),
                };
                let events = start(self.state, task_id, name, definition, Some(parent))?;
                self.task_event(task_id, begun);
                for kind in events {
                    self.task_event(task_id, kind);
                }
                return Ok(());
            }
            Command::RunCommand { .. } | Command::Land { .. } => {}
            Command::Cancel { .. } | Command::Finish { .. } => {
                return refused("only work a visit waits for is begun");
            }
        }
        // The mark comes first in the log for everything but a child run, whose start is
        // ordered after it above; the fold needs neither order.
        self.task_event(task_id, begun);
        Ok(())
    }

    /// [`crate::Change::WriteBlackboard`]: the one writer of a visit is the execution its agent
    /// state started, on the task the state runs on, while the visit is current. Everything is
    /// checked before the run's input is made, so each refusal says what was wrong.
    pub(crate) fn write_blackboard(
        &mut self,
        execution: ExecutionId,
        key: &str,
        text: &str,
    ) -> Result<(), Refusal> {
        let state = self.state;
        let Some(e) = state.execution(execution) else {
            return refused(format!("execution #{execution} does not exist"));
        };
        if e.state.is_terminal() {
            return refused(format!(
                "execution #{execution} already finished as {}, so it writes no blackboard",
                e.state
            ));
        }
        let task = e.task_id;
        let parent = state.task(task).and_then(|t| t.parent);
        let runs: Vec<&WorkflowRun> = state
            .workflows()
            .filter(|r| !r.instance.is_finished())
            .filter(|r| r.task_id == task || Some(r.task_id) == parent)
            .collect();
        let mut visit_of = None;
        for run in &runs {
            for command in run.instance.awaiting(&run.definition) {
                let Command::RunAgent {
                    visit,
                    state: name,
                    agent,
                    target,
                } = &command
                else {
                    continue;
                };
                let Some(begun) = run.begun_for(&command) else {
                    continue;
                };
                let on = match target {
                    Target::Task => Some(run.task_id),
                    Target::Subtask { .. } => begun.subtask,
                };
                if on == Some(task) {
                    visit_of = Some((*run, *visit, name.clone(), agent.clone(), begun.at));
                }
            }
        }
        let Some((run, visit, name, agent, begun_at)) = visit_of else {
            let Some(run) = runs.first() else {
                return refused(format!(
                    "task #{task} runs no workflow, so execution #{execution} has no blackboard \
                     to write"
                ));
            };
            return refused(format!(
                "workflow run W{} is at `{}` (visit {}), which runs no agent on task #{task}: \
                 only the agent of the current visit writes the blackboard",
                run.id,
                run.instance.position.as_deref().unwrap_or("the start"),
                run.instance.visit
            ));
        };
        if e.agent != agent || e.queued_at < begun_at {
            return refused(format!(
                "execution #{execution} (`{}`) was not started by `{name}` (visit {visit}) of \
                 workflow run W{}: only that visit's agent `{agent}` writes the blackboard",
                e.agent, run.id
            ));
        }
        if key.chars().count() > workflow::MAX_KEY_CHARS {
            return refused(format!(
                "a blackboard key is at most {} characters long",
                workflow::MAX_KEY_CHARS
            ));
        }
        let def = &run.definition;
        let Some(ty) = def.blackboard.get(key) else {
            let why = workflow::check_value(def, key, &Value::Bool(false))
                .expect_err("an undeclared key is refused");
            return refused(why);
        };
        let value = match Value::parse(*ty, text) {
            Ok(value) => value,
            Err(why) => {
                return refused(format!(
                    "{why}, and the blackboard's `{key}` is of type {}",
                    ty.as_str()
                ));
            }
        };
        workflow::check_value(def, key, &value).or_else(refused)?;
        let input = Input::Set {
            visit,
            state: name,
            key: key.to_string(),
            value,
        };
        let (task_id, event) = step(state, run.id, &input)?;
        self.task_event(task_id, event);
        Ok(())
    }

    /// A decision on a workflow gate's approval: recorded, and given to the run as its
    /// visit's input in the same batch. The task's state is the run's business, not the
    /// decision's: nothing is reopened.
    pub(crate) fn decide_workflow_gate(
        &mut self,
        id: ApprovalId,
        task_id: TaskId,
        decision: &ApprovalDecision,
    ) -> Result<(), Refusal> {
        if let ApprovalDecision::Reject { feedback } = decision
            && feedback.trim().is_empty()
        {
            return refused("a rejection needs feedback: say what must change");
        }
        self.task_event(
            task_id,
            EventKind::TaskApprovalDecided {
                approval: id,
                by: self.actor.to_owned(),
                decision: decision.clone(),
            },
        );
        let gate = self.state.workflows().find_map(|run| {
            let b = run.begun.iter().find(|b| b.approval == Some(id))?;
            Some((run.id, b.visit))
        });
        if let Some((run, visit)) = gate {
            let input = match decision {
                ApprovalDecision::Approve => Input::Decided {
                    visit,
                    approved: true,
                    feedback: None,
                },
                ApprovalDecision::Reject { feedback } => Input::Decided {
                    visit,
                    approved: false,
                    feedback: Some(feedback.clone()),
                },
            };
            // A visit that is over (its gate timed out) takes nothing; the decision stands.
            if let Ok(events) = step_and_parent(self.state, run, &input) {
                for (task, kind) in events {
                    self.task_event(task, kind);
                }
            }
        }
        Ok(())
    }
}

/// How an ended step's outcome reads for a task state: done is success, anything else that
/// ends a step is failure.
pub fn outcome_of(state: TaskState) -> Option<Outcome> {
    match state {
        TaskState::Done => Some(Outcome::Succeeded),
        TaskState::Failed | TaskState::Cancelled | TaskState::Blocked => Some(Outcome::Failed),
        _ => None,
    }
}
