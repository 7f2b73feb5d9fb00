//! The rules: what each [`Change`] needs to look at ([`wants`]) and what it makes happen, or why
//! it is refused ([`decide`]).

use std::collections::{HashMap, VecDeque};

use domain::{
    Approval, ApprovalId, ApprovalSource, ApprovalState, Decision as ApprovalDecision, EventKind,
    Execution, ExecutionId, ExecutionKind, ExecutionState, NewTask, Task, TaskId, TaskState,
    Timestamp,
};

use crate::refusal::refused;
use crate::{Change, Entry, Event, Key, KeyUse, LandStatus, MergeResult, Refusal, State, TaskEdit};

/// The op under which a keyed sub-task creation records its key.
pub const SUBTASK_CREATE: &str = "subtask_create";
/// The op under which a keyed comment records its key.
pub const COMMENT: &str = "comment";

/// One change to decide, with who asks for it and when.
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    /// Who caused it: `cli`, `engine`, `execution:<id>`; named by nudge and comment events.
    pub actor: &'a str,
    pub now: Timestamp,
    pub change: &'a Change,
}

/// The keys [`decide`] reads for `change`, given what `state` already holds.
///
/// Some of them depend on what was loaded (the parent named by a merge, the tasks along a
/// dependency path), so a backend loads the keys the state does not know and calls this
/// again, until every key it returns is known; then [`decide`] has all it needs.
pub fn wants(state: &State, change: &Change) -> Vec<Key> {
    let mut keys = Vec::new();
    match change {
        Change::CreateTask(new) => new_task_keys(new, &mut keys),
        Change::CreateKeyedTask { new, key } => {
            if let Some(parent) = new.parent {
                keys.push(Key::CallKey {
                    task: parent,
                    op: SUBTASK_CREATE.into(),
                    key: key.clone(),
                });
            }
            new_task_keys(new, &mut keys);
        }
        Change::KeyedComment { id, key, .. } => {
            keys.push(Key::CallKey {
                task: *id,
                op: COMMENT.into(),
                key: key.clone(),
            });
            keys.push(Key::Task(*id));
        }
        Change::FinishMerge { child, .. } => {
            keys.push(Key::Merge(*child));
            if let Some(merge) = state.merge(*child) {
                keys.push(Key::Task(merge.parent));
                keys.push(Key::MergesInto(merge.parent));
            }
        }
        Change::StartLand { id, .. } | Change::FinishLand { id, .. } => {
            keys.push(Key::Task(*id));
            keys.push(Key::Land(*id));
        }
        Change::MarkLanded { id, root } => {
            keys.push(Key::Task(*id));
            keys.push(Key::Land(*id));
            keys.push(Key::Land(*root));
        }
        Change::SetTaskState { id, to, .. } | Change::SettleTask { id, to, .. } => {
            keys.push(Key::Task(*id));
            // A done sub-task makes its parent's merge due, which touches the parent.
            if *to == TaskState::Done
                && let Some(parent) = state.task(*id).and_then(|t| t.parent)
            {
                keys.push(Key::Task(parent));
            }
        }
        Change::AddDependency { id, blocked_by } => {
            keys.push(Key::Task(*id));
            keys.push(Key::Task(*blocked_by));
            // Every task reachable from `blocked_by`: a path back to `id` would be a cycle.
            let mut seen = std::collections::HashSet::from([*blocked_by]);
            let mut queue = VecDeque::from([*blocked_by]);
            while let Some(current) = queue.pop_front() {
                let Some(task) = state.task(current) else {
                    keys.push(Key::Task(current));
                    continue;
                };
                for &next in &task.blocked_by {
                    if seen.insert(next) {
                        queue.push_back(next);
                    }
                }
            }
        }
        Change::StartWorkflow { task, .. } => {
            keys.push(Key::Task(*task));
            keys.push(Key::WorkflowsOf(*task));
            keys.push(Key::NextWorkflowId);
        }
        Change::StepWorkflow { id, .. } => {
            keys.push(Key::Workflow(*id));
            if let Some(run) = state.workflow(*id) {
                keys.push(Key::Task(run.task_id));
                // A gate that times out takes its approval out of the queue.
                keys.push(Key::PendingApprovalOf(run.task_id));
                // A child's end is its parent's input, in the same batch.
                if let Some(parent) = &run.parent {
                    keys.push(Key::Workflow(parent.run));
                }
            }
        }
        Change::StartWorkflowOnNewest { .. } => {
            keys.push(Key::NextTaskId);
            if let Some(task) = newest_task(state) {
                keys.push(Key::Task(task));
                keys.push(Key::WorkflowsOf(task));
            }
            keys.push(Key::NextWorkflowId);
        }
        Change::BeginWorkflowCommand { id, .. } => {
            keys.push(Key::Workflow(*id));
            if let Some(run) = state.workflow(*id) {
                let task = run.task_id;
                keys.extend([
                    Key::Task(task),
                    Key::WorkflowsOf(task),
                    Key::PendingApprovalOf(task),
                    Key::NextApprovalId,
                    Key::NextTaskId,
                    Key::NextWorkflowId,
                ]);
            }
        }
        Change::WriteBlackboard { execution, .. } => {
            keys.push(Key::Execution(*execution));
            if let Some(e) = state.execution(*execution) {
                keys.push(Key::Task(e.task_id));
                keys.push(Key::WorkflowsOf(e.task_id));
                // An agent state with a sub-task target runs on the sub-task: the run is its
                // parent's.
                if let Some(parent) = state.task(e.task_id).and_then(|t| t.parent) {
                    keys.push(Key::WorkflowsOf(parent));
                }
            }
        }
        Change::SendMessage(_)
        | Change::DeliverMessage { .. }
        | Change::AckMessage { .. }
        | Change::ExpireMessage { .. }
        | Change::DeadLetter { .. } => crate::messages::wants(state, change, &mut keys),
        Change::TakeAreaLeases { .. }
        | Change::ReserveAreasOnNewest { .. }
        | Change::ReleaseAreaLeases { .. }
        | Change::ExpireAreaLease { .. } => crate::area_leases::wants(state, change, &mut keys),
        Change::RequestApproval { task, .. } => {
            keys.push(Key::Task(*task));
            keys.push(Key::PendingApprovalOf(*task));
            keys.push(Key::NextApprovalId);
        }
        Change::DecideApproval { id, .. } | Change::AskApproval { id, .. } => {
            keys.push(Key::Approval(*id));
            if let Some(approval) = state.approval(*id) {
                keys.push(Key::Task(approval.task_id));
                // A rejection may not send back work that already landed.
                keys.push(Key::Land(approval.task_id));
                // A workflow's gate: the decision is its run's input.
                if approval.source == ApprovalSource::Workflow {
                    keys.push(Key::WorkflowsOf(approval.task_id));
                }
            }
        }
        Change::EditTask { id, .. }
        | Change::RemoveDependency { id, .. }
        | Change::Nudge { id }
        | Change::Comment { id, .. }
        | Change::Answer { id, .. }
        | Change::Feedback { id, .. }
        | Change::ScheduleTask { id, .. }
        | Change::SetBranch { id, .. }
        | Change::ClaimCompletion { id, .. } => keys.push(Key::Task(*id)),
        Change::HandOff { id, execution, .. } | Change::VoidHandoff { id, execution, .. } => {
            keys.push(Key::Task(*id));
            keys.push(Key::Execution(*execution));
        }
        Change::CreateExecution { task_id, .. } => {
            keys.push(Key::Task(*task_id));
            keys.push(Key::ActiveOf(*task_id));
            keys.push(Key::NextExecutionId);
        }
        Change::Fenced {
            execution, change, ..
        } => {
            keys.push(Key::Execution(*execution));
            // The task's claim count says whether the token is still the current one.
            if let Some(e) = state.execution(*execution) {
                keys.push(Key::Task(e.task_id));
            }
            keys.extend(wants(state, change));
        }
        Change::RenewLease { id, .. } => keys.push(Key::Execution(*id)),
        Change::LoseExpired { id } => {
            keys.push(Key::Execution(*id));
            crate::area_leases::wants(state, change, &mut keys);
        }
        Change::SetExecutionState { id, .. }
        | Change::ProcessStarted { id, .. }
        | Change::ProcessExited { id, .. }
        | Change::Validated { id, .. }
        | Change::Committed { id, .. }
        | Change::RecordModelUsage { id, .. }
        | Change::RecordModelWaiting { id, .. }
        | Change::RecordModelFallback { id, .. }
        | Change::RecordAgentEvent { id, .. }
        | Change::PauseProvider { id, .. }
        | Change::ResumeProvider { id, .. }
        | Change::ThrottleProvider { id, .. } => keys.push(Key::Execution(*id)),
        Change::FinishExecution { id, .. } => {
            keys.push(Key::Execution(*id));
            // The area leases it holds die with it.
            crate::area_leases::wants(state, change, &mut keys);
        }
    }
    keys
}

/// The task created last, by the id the next one would get; `None` before any.
fn newest_task(state: &State) -> Option<TaskId> {
    if !state.knows(&Key::NextTaskId) {
        return None;
    }
    let next = state.next_task_id();
    (next.0 > 1).then(|| TaskId(next.0 - 1))
}

fn new_task_keys(new: &NewTask, keys: &mut Vec<Key>) {
    if let Some(parent) = new.parent {
        keys.push(Key::Task(parent));
    }
    keys.extend(new.blocked_by.iter().map(|&dep| Key::Task(dep)));
    keys.push(Key::NextTaskId);
}

/// Decides one change against `state`: the events it makes, in order, or why it is refused.
///
/// `state` must know every key [`wants`] names for the change; what it does not hold is taken
/// not to exist. Pure: the same state and command always give the same answer.
pub fn decide(state: &State, command: &Command<'_>) -> Result<Vec<Event>, Refusal> {
    let mut d = Decision {
        state,
        now: command.now,
        actor: command.actor,
        events: Vec::new(),
    };
    d.change(command.change)?;
    Ok(d.events)
}

pub(crate) struct Decision<'s> {
    pub(crate) state: &'s State,
    pub(crate) now: Timestamp,
    pub(crate) actor: &'s str,
    pub(crate) events: Vec<Event>,
}

impl Decision<'_> {
    pub(crate) fn task_event(&mut self, id: TaskId, kind: EventKind) {
        self.events
            .push(Event::Logged(Entry::task(id, self.now, kind)));
    }

    pub(crate) fn execution_event(&mut self, id: ExecutionId, kind: EventKind) {
        self.events
            .push(Event::Logged(Entry::execution(id, self.now, kind)));
    }

    pub(crate) fn task(&self, id: TaskId) -> Result<&Task, Refusal> {
        match self.state.task(id) {
            Some(task) => Ok(task),
            None => refused(format!("task #{id} does not exist")),
        }
    }

    pub(crate) fn execution(&self, id: ExecutionId) -> Result<&Execution, Refusal> {
        match self.state.execution(id) {
            Some(e) => Ok(e),
            None => refused(format!("execution #{id} does not exist")),
        }
    }

    /// The execution, which must still be active for `what` to be recorded on it.
    pub(crate) fn active_execution(
        &self,
        id: ExecutionId,
        what: &str,
    ) -> Result<&Execution, Refusal> {
        let e = self.execution(id)?;
        if e.state.is_terminal() {
            return refused(format!(
                "execution #{id} already finished as {}, so {what} cannot be recorded on it",
                e.state
            ));
        }
        Ok(e)
    }

    pub(crate) fn change(&mut self, change: &Change) -> Result<(), Refusal> {
        match change {
            Change::CreateTask(new) => self.create_task(new).map(|_| ()),
            Change::CreateKeyedTask { new, key } => {
                let Some(parent) = new.parent else {
                    return refused(
                        "a task created under a key must be a sub-task: name its parent",
                    );
                };
                self.check_key_unused(parent, SUBTASK_CREATE, key)?;
                let id = self.create_task(new)?;
                self.key_used(parent, SUBTASK_CREATE, key, Some(id));
                Ok(())
            }
            Change::KeyedComment { id, text, key } => {
                self.check_key_unused(*id, COMMENT, key)?;
                self.comment(*id, text)?;
                self.key_used(*id, COMMENT, key, None);
                Ok(())
            }
            Change::FinishMerge { child, outcome } => self.finish_merge(*child, outcome),
            Change::StartLand {
                id,
                strategy,
                base,
                old,
                new,
            } => {
                let task = self.task(*id)?;
                if task.state != TaskState::Done {
                    return refused(format!(
                        "task #{id} is {}, not done: only a done task's work lands",
                        task.state
                    ));
                }
                match self.state.land(*id) {
                    Some(land) if land.status == LandStatus::Landed => {
                        return refused(format!(
                            "task #{id} is already landed at {} on {}",
                            domain::event::short(&land.new),
                            land.base
                        ));
                    }
                    Some(_) => {
                        return refused(format!(
                            "a land of task #{id} is already under way; `agentgrid land {id}` \
                             finishes or forgets it"
                        ));
                    }
                    None => {}
                }
                if [base, old, new].iter().any(|s| s.trim().is_empty()) {
                    return refused("a land names its base ref, old and new commits");
                }
                let kind = EventKind::TaskLandStarted {
                    strategy: *strategy,
                    base: base.clone(),
                    old: old.clone(),
                    new: new.clone(),
                };
                self.task_event(*id, kind);
                Ok(())
            }
            Change::FinishLand { id, landed, reason } => {
                self.task(*id)?;
                let Some(land) = self
                    .state
                    .land(*id)
                    .filter(|l| l.status == LandStatus::Started)
                    .cloned()
                else {
                    return refused(format!("no land of task #{id} is under way"));
                };
                let kind = if *landed {
                    EventKind::TaskLanded {
                        strategy: land.strategy,
                        base: land.base,
                        old: land.old,
                        new: land.new,
                        root: None,
                    }
                } else {
                    let reason = reason.clone().unwrap_or_default();
                    if reason.trim().is_empty() {
                        return refused("an abandoned land needs a reason");
                    }
                    EventKind::TaskLandAbandoned { reason }
                };
                self.task_event(*id, kind);
                Ok(())
            }
            Change::MarkLanded { id, root } => {
                let task = self.task(*id)?;
                if task.state != TaskState::Done {
                    return refused(format!(
                        "task #{id} is {}, not done, so it did not land with #{root}",
                        task.state
                    ));
                }
                let Some(land) = self
                    .state
                    .land(*root)
                    .filter(|l| l.status == LandStatus::Landed)
                    .cloned()
                else {
                    return refused(format!("task #{root} is not landed"));
                };
                if self.state.land(*id).is_some() {
                    return Ok(());
                }
                let kind = EventKind::TaskLanded {
                    strategy: land.strategy,
                    base: land.base,
                    old: land.old,
                    new: land.new,
                    root: Some(*root),
                };
                self.task_event(*id, kind);
                Ok(())
            }
            Change::EditTask { id, edit } => self.edit_task(*id, edit),
            Change::SetTaskState { id, to, reason } => {
                if *to == TaskState::Open && self.task(*id)?.state == TaskState::Done {
                    return refused(format!(
                        "task #{id} is done; a done task goes back to open only when a person \
                         rejects its approval (`agentgrid approvals reject`)"
                    ));
                }
                self.set_task_state(*id, *to, reason)
            }
            Change::RequestApproval {
                task,
                source,
                execution,
                summary,
            } => self.request_approval(*task, *source, *execution, summary),
            Change::DecideApproval { id, decision } => self.decide_approval(*id, decision),
            Change::StartWorkflow {
                task,
                name,
                definition,
            } => {
                for kind in crate::workflows::start(self.state, *task, name, definition, None)? {
                    self.task_event(*task, kind);
                }
                Ok(())
            }
            Change::StartWorkflowOnNewest { name, definition } => {
                let Some(task) = newest_task(self.state) else {
                    return refused("no task was created before the workflow's start");
                };
                for kind in crate::workflows::start(self.state, task, name, definition, None)? {
                    self.task_event(task, kind);
                }
                Ok(())
            }
            Change::StepWorkflow { id, input } => {
                for (task, kind) in crate::workflows::step_and_parent(self.state, *id, input)? {
                    self.task_event(task, kind);
                }
                Ok(())
            }
            Change::BeginWorkflowCommand { id, command, child } => {
                self.begin_workflow_command(*id, command, child.as_ref())
            }
            Change::WriteBlackboard {
                execution,
                key,
                text,
            } => self.write_blackboard(*execution, key, text),
            Change::AskApproval { id, question } => self.ask_approval(*id, question),
            Change::SendMessage(new) => self.send_message(new),
            Change::DeliverMessage { id, to } => self.deliver_message(*id, *to),
            Change::AckMessage { id, by } => self.ack_message(*id, *by),
            Change::ExpireMessage { id } => self.expire_message(*id),
            Change::DeadLetter { id, reason } => self.dead_letter(*id, reason),
            Change::TakeAreaLeases {
                execution,
                for_task,
                paths,
                ttl,
            } => self.take_area_leases(*execution, *for_task, paths, *ttl),
            Change::ReserveAreasOnNewest {
                execution,
                paths,
                ttl,
            } => self.reserve_areas_on_newest(*execution, paths, *ttl),
            Change::ReleaseAreaLeases { execution, paths } => {
                self.release_area_leases(*execution, paths)
            }
            Change::ExpireAreaLease { id } => self.expire_area_lease(*id),
            Change::SettleTask { id, to, reason } => {
                let state = self.task(*id)?.state;
                if state != TaskState::Running {
                    return refused(format!(
                        "task #{id} is {state}, no longer running, so the end of its execution \
                         leaves it as it is"
                    ));
                }
                self.set_task_state(*id, *to, reason)
            }
            Change::AddDependency { id, blocked_by } => self.add_dependency(*id, *blocked_by),
            Change::RemoveDependency { id, blocked_by } => {
                let task = self.task(*id)?;
                if !task.blocked_by.contains(blocked_by) {
                    return refused(format!(
                        "task #{id} is not blocked by #{blocked_by}, so there is nothing to remove"
                    ));
                }
                let kind = EventKind::TaskDependencyRemoved {
                    blocked_by: *blocked_by,
                };
                self.task_event(*id, kind);
                Ok(())
            }
            Change::Nudge { id } => {
                let task = self.task(*id)?;
                if task.state.is_terminal() {
                    return refused(format!(
                        "task #{id} is {}, so there is nothing to nudge",
                        task.state
                    ));
                }
                let by = self.actor.to_owned();
                self.task_event(*id, EventKind::TaskNudged { by });
                Ok(())
            }
            Change::Comment { id, text } => self.comment(*id, text),
            Change::Answer { id, text } => self.said(*id, "an answer", text, |author, text| {
                EventKind::TaskAnswered { author, text }
            }),
            Change::Feedback { id, text } => self.said(*id, "feedback", text, |author, text| {
                EventKind::TaskFeedbackGiven { author, text }
            }),
            Change::ScheduleTask {
                id,
                not_before,
                attempts,
                continuations,
                reason,
            } => {
                self.task(*id)?;
                let kind = EventKind::TaskScheduled {
                    not_before: *not_before,
                    attempts: *attempts,
                    continuations: *continuations,
                    reason: reason.clone(),
                };
                self.task_event(*id, kind);
                Ok(())
            }
            Change::SetBranch { id, branch } => {
                if branch.trim().is_empty() {
                    return refused("a branch name cannot be empty");
                }
                self.task(*id)?;
                let kind = EventKind::TaskBranchSet {
                    branch: branch.clone(),
                };
                self.task_event(*id, kind);
                Ok(())
            }
            Change::ClaimCompletion { id, summary } => {
                if summary.trim().is_empty() {
                    return refused("a completion claim needs a summary of what was done");
                }
                self.task(*id)?;
                let kind = EventKind::TaskCompletionClaimed {
                    summary: summary.clone(),
                };
                self.task_event(*id, kind);
                Ok(())
            }
            Change::HandOff {
                id,
                execution,
                from,
                to,
                summary,
                artifacts,
                budget,
            } => {
                let task = self.task(*id)?;
                if task.state != TaskState::Running {
                    return refused(format!(
                        "task #{id} is {}, so its work cannot be handed off",
                        task.state
                    ));
                }
                if task.handoffs >= *budget {
                    return refused(format!(
                        "task #{id} has been handed off {} times, the most its handoff budget \
                         allows (handoffs_per_task: {budget} in .agentgrid/config.yaml)",
                        task.handoffs
                    ));
                }
                let e = self.active_execution(*execution, "a handoff")?;
                if e.task_id != *id {
                    return refused(format!(
                        "execution #{execution} works on task #{}, not #{id}",
                        e.task_id
                    ));
                }
                if summary.trim().is_empty() {
                    return refused("a handoff needs a summary for the receiver");
                }
                let kind = EventKind::TaskHandedOff {
                    from_agency: from.agency.clone(),
                    from_role: from.role.clone().unwrap_or_default(),
                    to_agency: to.agency.clone(),
                    to_role: to.role.clone(),
                    summary: summary.clone(),
                    artifacts: artifacts.clone(),
                    execution: *execution,
                };
                self.task_event(*id, kind);
                Ok(())
            }
            Change::VoidHandoff {
                id,
                execution,
                restore,
                reason,
            } => {
                self.task(*id)?;
                self.execution(*execution)?;
                let kind = EventKind::TaskHandoffVoided {
                    execution: *execution,
                    restore: restore.clone(),
                    reason: reason.clone(),
                };
                self.task_event(*id, kind);
                Ok(())
            }
            Change::CreateExecution {
                task_id,
                kind,
                agent,
                attempt,
                lease,
            } => self.create_execution(*task_id, *kind, agent, *attempt, lease.as_ref()),
            Change::Fenced {
                execution,
                fence,
                change,
            } => self.fenced(*execution, *fence, change),
            Change::RenewLease { id, fence, until } => self.renew_lease(*id, *fence, *until),
            Change::LoseExpired { id } => {
                self.lose_expired(*id)?;
                self.release_on_end(*id, "lost", false);
                Ok(())
            }
            Change::SetExecutionState { id, to, reason } => {
                let e = self.execution(*id)?;
                if to.is_terminal() && e.state.is_active() {
                    return refused(format!(
                        "execution #{id} can only become {to} through finish_execution, which \
                         also records its usage and outcome"
                    ));
                }
                check_execution_transition(e, *to)?;
                let kind = EventKind::ExecutionStateChanged {
                    from: e.state,
                    to: *to,
                    reason: reason.clone(),
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::ProcessStarted {
                id,
                pid,
                iteration,
                log_path,
            } => {
                let e = self.active_execution(*id, "a process start")?;
                if *iteration == 0 || *iteration < e.iteration {
                    return refused(format!(
                        "execution #{id} is on iteration {}, so a process cannot start iteration \
                         {iteration}: iterations count from 1 and never go back",
                        e.iteration
                    ));
                }
                let kind = EventKind::ExecutionProcessStarted {
                    pid: *pid,
                    iteration: *iteration,
                    log_path: log_path.clone(),
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::ProcessExited {
                id,
                iteration,
                exit_code,
                signal,
            } => {
                let e = self.active_execution(*id, "a process exit")?;
                check_iteration(e, *iteration, "exit")?;
                let kind = EventKind::ExecutionProcessExited {
                    iteration: *iteration,
                    exit_code: *exit_code,
                    signal: *signal,
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::Validated {
                id,
                iteration,
                score,
                passed,
                results,
            } => {
                let e = self.active_execution(*id, "a validation")?;
                check_iteration(e, *iteration, "validation")?;
                if !(0.0..=1.0).contains(score) {
                    return refused(format!(
                        "the validation score {score} is out of range: scores go from 0 to 1"
                    ));
                }
                let kind = EventKind::ExecutionValidated {
                    iteration: *iteration,
                    score: *score,
                    passed: *passed,
                    results: results.clone(),
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::Committed { id, branch, commit } => {
                if branch.trim().is_empty() || commit.trim().is_empty() {
                    return refused("a commit needs both a branch name and a commit id");
                }
                self.active_execution(*id, "a commit")?;
                let kind = EventKind::ExecutionCommitted {
                    branch: branch.clone(),
                    commit: commit.clone(),
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::FinishExecution {
                id,
                state,
                exit_code,
                usage,
                summary,
            } => {
                let e = self.execution(*id)?;
                if e.state.is_terminal() {
                    return Err(Refusal::AlreadyFinished {
                        execution: *id,
                        state: e.state,
                    });
                }
                if state.is_active() {
                    return refused(format!(
                        "execution #{id} cannot finish as {state}: that state is not an outcome; \
                         finish with one of {}",
                        terminal_execution_states()
                    ));
                }
                check_execution_transition(e, *state)?;
                let (from, kind) = (e.state, e.kind);
                self.execution_event(
                    *id,
                    EventKind::ExecutionStateChanged {
                        from,
                        to: *state,
                        reason: None,
                    },
                );
                self.execution_event(
                    *id,
                    EventKind::ExecutionFinished {
                        kind,
                        state: *state,
                        usage: *usage,
                        summary: summary.clone(),
                        exit_code: *exit_code,
                    },
                );
                self.release_on_end(*id, state.as_str(), *state == ExecutionState::Succeeded);
                Ok(())
            }
            Change::RecordModelUsage {
                id,
                model,
                tokens,
                cost_micros,
            } => {
                if model.trim().is_empty() {
                    return refused("model usage needs the model alias the request named");
                }
                if tokens.cached > tokens.input {
                    return refused(format!(
                        "model usage says {} cached tokens but only {} input tokens: cached \
                         tokens are a part of the input tokens",
                        tokens.cached, tokens.input
                    ));
                }
                // Accepted on a finished execution too: the tokens were spent all the same.
                self.execution(*id)?;
                let kind = EventKind::ExecutionModelUsage {
                    model: model.clone(),
                    input_tokens: tokens.input,
                    output_tokens: tokens.output,
                    cached_tokens: tokens.cached,
                    cost_micros: *cost_micros,
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::RecordModelWaiting {
                id,
                model,
                attempt,
                delay_ms,
                status,
            } => {
                self.execution(*id)?;
                let kind = EventKind::ExecutionModelWaiting {
                    model: model.clone(),
                    attempt: *attempt,
                    delay_ms: *delay_ms,
                    status: *status,
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::RecordModelFallback {
                id,
                model,
                fallback,
                reason,
            } => {
                self.execution(*id)?;
                let kind = EventKind::ExecutionModelFallback {
                    model: model.clone(),
                    fallback: fallback.clone(),
                    reason: reason.clone(),
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::RecordAgentEvent {
                id,
                iteration,
                event,
            } => {
                self.execution(*id)?;
                let kind = EventKind::ExecutionAgentEvent {
                    iteration: *iteration,
                    event: event.clone().bounded(),
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::PauseProvider {
                id,
                provider,
                until,
                reason,
            } => {
                self.execution(*id)?;
                let kind = EventKind::ProviderPaused {
                    provider: provider.clone(),
                    until: *until,
                    reason: reason.clone(),
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::ResumeProvider { id, provider } => {
                self.execution(*id)?;
                let kind = EventKind::ProviderResumed {
                    provider: provider.clone(),
                };
                self.execution_event(*id, kind);
                Ok(())
            }
            Change::ThrottleProvider {
                id,
                provider,
                limit,
            } => {
                self.execution(*id)?;
                let kind = EventKind::ProviderThrottled {
                    provider: provider.clone(),
                    limit: *limit,
                };
                self.execution_event(*id, kind);
                Ok(())
            }
        }
    }

    fn check_key_unused(&self, task: TaskId, op: &str, key: &str) -> Result<(), Refusal> {
        if key.trim().is_empty() {
            return refused("an idempotency key cannot be empty");
        }
        if self.state.call_key(task, op, key).is_some() {
            return refused(format!(
                "task #{task} already made a {op} call under the key {key:?}; a call under a \
                 used key changes nothing"
            ));
        }
        Ok(())
    }

    fn key_used(&mut self, task: TaskId, op: &'static str, key: &str, result: Option<TaskId>) {
        self.events.push(Event::KeyUsed(KeyUse {
            task,
            op,
            key: key.to_owned(),
            result,
            at: self.now,
        }));
    }

    pub(crate) fn create_task(&mut self, new: &NewTask) -> Result<TaskId, Refusal> {
        new.check().or_else(refused)?;
        check_agent_name(new.agent.as_deref())?;
        let id = self.state.next_task_id();
        let (root, depth) = match new.parent {
            Some(parent_id) => {
                let Some(parent) = self.state.task(parent_id) else {
                    return refused(format!("the parent task #{parent_id} does not exist"));
                };
                if parent.state.is_terminal() {
                    return refused(format!(
                        "the parent task #{parent_id} is {}, so no sub-task can be added under \
                         it",
                        parent.state
                    ));
                }
                (parent.root, parent.depth + 1)
            }
            // A top-level task is its own root.
            None => (id, 0),
        };
        let mut new = new.clone();
        new.blocked_by.sort();
        new.blocked_by.dedup();
        for &dep in &new.blocked_by {
            if self.state.task(dep).is_none() {
                return refused(format!("task #{dep}, named in blocked_by, does not exist"));
            }
        }
        // A new task has no dependents yet, so its dependencies cannot close a cycle.
        let task = Task::new(id, new, root, depth, self.now);
        self.task_event(id, EventKind::TaskCreated { task });
        Ok(id)
    }

    pub(crate) fn edit_task(&mut self, id: TaskId, edit: &TaskEdit) -> Result<(), Refusal> {
        if edit.is_empty() {
            return refused(
                "the edit changes nothing: give a new title, body, labels, priority or agent",
            );
        }
        let task = self.task(id)?;
        if let Some(agent) = &edit.agent {
            check_agent_name(agent.as_deref())?;
        }
        // The edited task must pass the same checks as a new one.
        let as_new = NewTask {
            title: edit.title.clone().unwrap_or_else(|| task.title.clone()),
            body: String::new(),
            labels: edit.labels.clone().unwrap_or_else(|| task.labels.clone()),
            priority: edit.priority.unwrap_or(task.priority),
            parent: None,
            blocked_by: Vec::new(),
            agent: None,
        };
        as_new.check().or_else(refused)?;
        let TaskEdit {
            title,
            body,
            labels,
            priority,
            agent,
        } = edit.clone();
        let kind = EventKind::TaskEdited {
            title,
            body,
            labels,
            priority,
            agent,
        };
        self.task_event(id, kind);
        Ok(())
    }

    pub(crate) fn request_approval(
        &mut self,
        task_id: TaskId,
        source: ApprovalSource,
        execution: Option<ExecutionId>,
        summary: &str,
    ) -> Result<(), Refusal> {
        let task = self.task(task_id)?;
        // The agent asks while it works; the policy asks about work that is done.
        let expected = match source {
            ApprovalSource::Agent => TaskState::Running,
            ApprovalSource::Policy => TaskState::Done,
            // A workflow's gate asks between the run's steps, whatever the task's state.
            ApprovalSource::Workflow => task.state,
        };
        if task.state != expected {
            return refused(format!(
                "task #{task_id} is {}, so the {source} cannot ask for its approval: the {source} \
                 asks while the task is {expected}",
                task.state
            ));
        }
        if let Some(pending) = self.state.pending_approval_of(task_id) {
            // The policy asks as the task ends done, in the batch of that end: an approval
            // already pending stands for it, and refusing would roll the end back.
            if source == ApprovalSource::Policy {
                return Ok(());
            }
            return refused(format!(
                "task #{task_id} already waits for approval #{}; a task waits for one decision at \
                 a time",
                pending.id
            ));
        }
        let approval = self.state.next_approval_id();
        let kind = EventKind::TaskApprovalRequested {
            approval,
            source,
            execution,
            summary: summary.to_owned(),
        };
        self.task_event(task_id, kind);
        Ok(())
    }

    /// The approval, which must still be pending for `what`.
    fn pending_approval(&self, id: ApprovalId, what: &str) -> Result<&Approval, Refusal> {
        let Some(approval) = self.state.approval(id) else {
            return refused(format!(
                "approval #{id} does not exist: see `agentgrid approvals list`"
            ));
        };
        if approval.state != ApprovalState::Pending {
            let by = approval.decided_by.as_deref().unwrap_or("someone");
            return refused(format!(
                "approval #{id} was already {} by {by}, so it cannot {what}: a decision is made \
                 once",
                approval.state
            ));
        }
        Ok(approval)
    }

    fn decide_approval(
        &mut self,
        id: ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<(), Refusal> {
        let what = match decision {
            ApprovalDecision::Approve => "be approved",
            ApprovalDecision::Reject { .. } => "be rejected",
        };
        let approval = self.pending_approval(id, what)?;
        let (task_id, source) = (approval.task_id, approval.source);
        let task = self.task(task_id)?;
        if source == ApprovalSource::Workflow {
            return self.decide_workflow_gate(id, task_id, decision);
        }
        if task.state == TaskState::Running {
            return refused(format!(
                "task #{task_id} is still running; decide on approval #{id} once its execution \
                 has ended"
            ));
        }
        if let ApprovalDecision::Reject { feedback } = decision
            && feedback.trim().is_empty()
        {
            return refused("a rejection needs feedback: say what the next execution must change");
        }
        // What the decision does to the task: a rejection sends the work back, and an approval
        // the agent waited for lets it go on. Any other state (a person reopened or cancelled
        // the task meanwhile) is left as it is.
        let reopen = match decision {
            ApprovalDecision::Reject { feedback } => match task.state {
                TaskState::Done if task.parent.is_some() => {
                    return refused(format!(
                        "task #{task_id} is a done sub-task whose work is merged into #{}; reject \
                         the parent's work instead",
                        task.parent.unwrap_or(task_id)
                    ));
                }
                TaskState::Done if self.state.land(task_id).is_some() => {
                    // The judge compares a reopened task's work with where its branch forked,
                    // which after a land is the landed commit itself: the work would look
                    // empty. Landed work is changed by new work, not by a rejection.
                    return refused(format!(
                        "task #{task_id} is already landed, so approval #{id} cannot send its \
                         work back; approve it, and add a task for the change \
                         (`agentgrid task add`)"
                    ));
                }
                TaskState::Done | TaskState::Blocked => {
                    Some(format!("rejected in approval #{id}: {feedback}"))
                }
                _ => None,
            },
            ApprovalDecision::Approve => (source == ApprovalSource::Agent
                && task.state == TaskState::Blocked)
                .then(|| format!("approved in approval #{id}")),
        };
        let from = task.state;
        self.task_event(
            task_id,
            EventKind::TaskApprovalDecided {
                approval: id,
                by: self.actor.to_owned(),
                decision: decision.clone(),
            },
        );
        if let Some(reason) = reopen {
            let kind = EventKind::TaskStateChanged {
                from,
                to: TaskState::Open,
                reason: Some(reason),
            };
            self.task_event(task_id, kind);
        }
        Ok(())
    }

    fn ask_approval(&mut self, id: ApprovalId, question: &str) -> Result<(), Refusal> {
        if question.trim().is_empty() {
            return refused("a question cannot be empty");
        }
        let task_id = self.pending_approval(id, "be asked about")?.task_id;
        self.task(task_id)?;
        let kind = EventKind::TaskApprovalQuestioned {
            approval: id,
            by: self.actor.to_owned(),
            question: question.to_owned(),
        };
        self.task_event(task_id, kind);
        Ok(())
    }

    pub(crate) fn set_task_state(
        &mut self,
        id: TaskId,
        to: TaskState,
        reason: &Option<String>,
    ) -> Result<(), Refusal> {
        let task = self.task(id)?;
        let from = task.state;
        if !from.can_transition_to(to) {
            let next: Vec<&str> = TaskState::ALL
                .into_iter()
                .filter(|s| from.can_transition_to(*s))
                .map(|s| s.as_str())
                .collect();
            let options = if next.is_empty() {
                format!("{from} is final")
            } else {
                format!("from {from} it can go to {}", next.join(", "))
            };
            return refused(format!(
                "task #{id} cannot go from {from} to {to}; {options}"
            ));
        }
        let parent = task.parent;
        let reason = reason.clone();
        self.task_event(id, EventKind::TaskStateChanged { from, to, reason });
        // A done sub-task's branch is due to be merged into its parent's. The step is recorded
        // with the state that makes it due, so no crash can lose it.
        if to == TaskState::Done
            && let Some(parent) = parent
        {
            self.task_event(parent, EventKind::TaskMergePending { child: id });
        }
        Ok(())
    }

    fn add_dependency(&mut self, id: TaskId, blocked_by: TaskId) -> Result<(), Refusal> {
        let task = self.task(id)?;
        self.task(blocked_by)?;
        if id == blocked_by {
            return refused(format!("task #{id} cannot be blocked by itself"));
        }
        if task.blocked_by.contains(&blocked_by) {
            return refused(format!("task #{id} is already blocked by #{blocked_by}"));
        }
        if let Some(path) = self.dependency_path(blocked_by, id) {
            let mut cycle = vec![format!("#{id}")];
            cycle.extend(path.iter().map(|t| format!("#{t}")));
            return refused(format!(
                "task #{id} cannot be blocked by #{blocked_by}: that would make a dependency \
                 cycle {} (each waits for the next), and none of them could ever start",
                cycle.join(" → ")
            ));
        }
        self.task_event(id, EventKind::TaskDependencyAdded { blocked_by });
        Ok(())
    }

    /// The chain of `blocked_by` edges leading from `from` to `to`, both included, if any.
    /// Breadth-first, so the cycle named in a refusal is a shortest one.
    fn dependency_path(&self, from: TaskId, to: TaskId) -> Option<Vec<TaskId>> {
        let mut came_from: HashMap<TaskId, TaskId> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(current) = queue.pop_front() {
            if current == to {
                let mut path = vec![to];
                let mut at = to;
                while at != from {
                    at = came_from[&at];
                    path.push(at);
                }
                path.reverse();
                return Some(path);
            }
            let Some(task) = self.state.task(current) else {
                continue;
            };
            for &next in &task.blocked_by {
                if next != from && !came_from.contains_key(&next) {
                    came_from.insert(next, current);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    fn comment(&mut self, id: TaskId, text: &str) -> Result<(), Refusal> {
        if text.trim().is_empty() {
            return refused("a comment needs some text");
        }
        domain::text::check_size("comment", text, domain::text::MAX_COMMENT_BYTES)
            .or_else(refused)?;
        self.task(id)?;
        let kind = EventKind::TaskCommented {
            author: self.actor.to_owned(),
            text: text.to_owned(),
        };
        self.task_event(id, kind);
        Ok(())
    }

    /// What the actor says to the task's agents (an answer, feedback): text like a comment's,
    /// on a task that exists.
    fn said(
        &mut self,
        id: TaskId,
        what: &str,
        text: &str,
        kind: impl FnOnce(String, String) -> EventKind,
    ) -> Result<(), Refusal> {
        if text.trim().is_empty() {
            return refused(format!("{what} needs some text"));
        }
        domain::text::check_size(what, text, domain::text::MAX_COMMENT_BYTES).or_else(refused)?;
        self.task(id)?;
        let event = kind(self.actor.to_owned(), text.to_owned());
        self.task_event(id, event);
        Ok(())
    }

    fn create_execution(
        &mut self,
        task_id: TaskId,
        kind: ExecutionKind,
        agent: &str,
        attempt: u32,
        lease: Option<&domain::Lease>,
    ) -> Result<(), Refusal> {
        if agent.trim().is_empty() {
            return refused("an execution needs the name of the agent that runs it");
        }
        if attempt == 0 {
            return refused("attempts count from 1: the first try of a task is attempt 1");
        }
        let task = self.task(task_id)?;
        // The active execution is reported first: it is the real reason a second claim fails,
        // while the task state (running) would only be a symptom of it.
        if let Some(execution) = self.state.active_execution_of(task_id) {
            return Err(Refusal::AlreadyActive {
                task: task_id,
                execution,
            });
        }
        let needed = match kind {
            ExecutionKind::Work => TaskState::Open,
            ExecutionKind::Resume => TaskState::Waiting,
        };
        if task.state != needed {
            return refused(format!(
                "a {kind} execution needs task #{task_id} to be {needed}, but it is {}",
                task.state
            ));
        }
        if let Some(lease) = lease
            && lease.expired(self.now)
        {
            return refused(format!(
                "a claim's lease must end after the claim is made, but it ends at {}",
                lease.until
            ));
        }
        let id = self.state.next_execution_id();
        let mut execution =
            Execution::queued(id, task_id, kind, agent.to_owned(), attempt, self.now);
        execution.lease = lease.cloned();
        execution.fence = task.executions + 1;
        let from = task.state;
        let reason = Some(format!("{kind} execution #{id} queued"));
        self.task_event(
            task_id,
            EventKind::TaskStateChanged {
                from,
                to: TaskState::Running,
                reason,
            },
        );
        self.execution_event(id, EventKind::ExecutionCreated { execution });
        Ok(())
    }

    fn finish_merge(&mut self, child: TaskId, outcome: &MergeResult) -> Result<(), Refusal> {
        let Some(merge) = self.state.merge(child) else {
            return refused(format!(
                "no merge of sub-task #{child} is due: it is not done, or it is merged already"
            ));
        };
        let parent = merge.parent;
        let kind = match outcome {
            MergeResult::Merged { commit } => EventKind::TaskMerged {
                child,
                commit: commit.clone(),
            },
            MergeResult::Failed { reason } => {
                if reason.trim().is_empty() {
                    return refused("a failed merge needs a reason");
                }
                EventKind::TaskMergeFailed {
                    child,
                    reason: reason.clone(),
                }
            }
        };
        self.task(parent)?;
        self.task_event(parent, kind);
        Ok(())
    }
}

fn check_iteration(e: &Execution, iteration: u32, what: &str) -> Result<(), Refusal> {
    if iteration != e.iteration {
        return refused(format!(
            "execution #{} is on iteration {}, but the {what} reported is for iteration \
             {iteration}",
            e.id, e.iteration
        ));
    }
    Ok(())
}

fn check_execution_transition(e: &Execution, to: ExecutionState) -> Result<(), Refusal> {
    if e.state.can_transition_to(to) {
        return Ok(());
    }
    let from = e.state;
    let next: Vec<&str> = ExecutionState::ALL
        .into_iter()
        .filter(|s| from.can_transition_to(*s))
        .map(|s| s.as_str())
        .collect();
    let options = if next.is_empty() {
        format!("{from} is final")
    } else {
        format!("from {from} it can go to {}", next.join(", "))
    };
    refused(format!(
        "execution #{} cannot go from {from} to {to}; {options}",
        e.id
    ))
}

fn terminal_execution_states() -> String {
    ExecutionState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_agent_name(agent: Option<&str>) -> Result<(), Refusal> {
    match agent {
        Some(name) if name.trim().is_empty() => {
            refused("an agent name cannot be empty: name an agent, or leave the task unassigned")
        }
        _ => Ok(()),
    }
}
