//! Folding events into the state: the one place that says what each event does to the
//! projections of tasks, executions and merges.

use domain::{EventKind, ExecutionState, TaskId, TaskState};

use crate::{Entry, Event, LandStatus, LandStep, MergeStatus, MergeStep, State};

/// Applies one event to `state`. Events that [`crate::decide`] emitted always apply; an event
/// about an entity the state does not hold changes only the entity's version.
///
/// Every event of an entity moves its version on by one, whatever it changes.
pub fn evolve(state: &mut State, event: &Event) {
    match event {
        Event::Logged(entry) => {
            state.bump_version(entry.entity, entry.id);
            evolve_entry(state, entry);
        }
        Event::KeyUsed(k) => state.put_call_key(k.task, k.op, &k.key, k.result),
    }
}

fn evolve_entry(state: &mut State, entry: &Entry) {
    if entry.entity == domain::EntityKind::Message {
        crate::messages::evolve(state, entry);
        return;
    }
    if crate::area_leases::evolve(state, entry) {
        return;
    }
    let at = entry.at;
    let task_id = TaskId(entry.id);
    let execution_id = domain::ExecutionId(entry.id);
    match &entry.kind {
        EventKind::TaskCreated { task } => state.put_task(task.clone()),
        EventKind::ExecutionCreated { execution } => {
            // A claim dispatches the task: it counts the execution and forgets the nudge and
            // backoff that led to it.
            if let Some(task) = state.task_mut(execution.task_id) {
                task.executions += 1;
                task.nudged_at = None;
                task.not_before = None;
                task.updated_at = at;
            }
            state.put_execution(execution.clone());
        }
        // On the parent, only the recorded step changes: the parent itself stays as it was.
        EventKind::TaskMergePending { child } => state.put_merge(
            *child,
            MergeStep {
                parent: task_id,
                status: MergeStatus::Pending,
            },
        ),
        EventKind::TaskMerged { child, .. } | EventKind::TaskMergeFailed { child, .. } => {
            let status = match &entry.kind {
                EventKind::TaskMergeFailed { reason, .. } => MergeStatus::Failed(reason.clone()),
                _ => MergeStatus::Done,
            };
            match state.merge_entry(*child) {
                Some(merge) => merge.status = status,
                None => state.put_merge(
                    *child,
                    MergeStep {
                        parent: task_id,
                        status,
                    },
                ),
            }
            let failed: Vec<String> = state
                .failed_merges_into(task_id)
                .into_iter()
                .map(|(child, why)| format!("sub-task #{child}: {why}"))
                .collect();
            if let Some(parent) = state.task_mut(task_id) {
                parent.merge_failed = (!failed.is_empty()).then(|| failed.join("; "));
                parent.updated_at = at;
            }
        }
        EventKind::TaskLandStarted {
            strategy,
            base,
            old,
            new,
        }
        | EventKind::TaskLanded {
            strategy,
            base,
            old,
            new,
            ..
        } => {
            let (status, root) = match &entry.kind {
                EventKind::TaskLanded { root, .. } => (LandStatus::Landed, *root),
                _ => (LandStatus::Started, None),
            };
            let step = LandStep {
                status,
                strategy: *strategy,
                base: base.clone(),
                old: old.clone(),
                new: new.clone(),
                root,
            };
            state.put_land(task_id, Some(step));
        }
        EventKind::TaskLandAbandoned { .. } => state.put_land(task_id, None),
        EventKind::TaskApprovalRequested {
            approval,
            source,
            execution,
            summary,
        } => {
            state.put_approval(domain::Approval {
                id: *approval,
                task_id,
                source: *source,
                execution_id: *execution,
                summary: summary.clone(),
                state: domain::ApprovalState::Pending,
                requested_at: at,
                decided_at: None,
                decided_by: None,
                feedback: None,
            });
            if let Some(task) = state.task_mut(task_id) {
                task.updated_at = at;
            }
        }
        EventKind::TaskApprovalDecided {
            approval,
            by,
            decision,
        } => {
            if let Some(a) = state.approval_mut(*approval) {
                a.state = decision.outcome();
                a.decided_at = Some(at);
                a.decided_by = Some(by.clone());
                a.feedback = match decision {
                    domain::Decision::Reject { feedback } => Some(feedback.clone()),
                    domain::Decision::Approve => None,
                };
            }
            if let Some(task) = state.task_mut(task_id) {
                task.updated_at = at;
            }
        }
        kind @ (EventKind::TaskWorkflowStarted { .. }
        | EventKind::TaskWorkflowStepped { .. }
        | EventKind::TaskWorkflowBegun { .. }) => {
            crate::workflows::evolve(state, task_id, at, kind)
        }
        kind if kind_is_task(kind) => {
            if let Some(task) = state.task_mut(task_id) {
                evolve_task(task, kind, at);
            }
        }
        kind => {
            if let Some(e) = state.execution_mut(execution_id) {
                evolve_execution(e, kind, at);
            }
        }
    }
}

fn kind_is_task(kind: &EventKind) -> bool {
    kind.name().starts_with("task_")
}

fn evolve_task(task: &mut domain::Task, kind: &EventKind, at: domain::Timestamp) {
    task.updated_at = at;
    match kind {
        EventKind::TaskEdited {
            title,
            body,
            labels,
            priority,
            agent,
        } => {
            if let Some(title) = title {
                task.title.clone_from(title);
            }
            if let Some(body) = body {
                task.body.clone_from(body);
            }
            if let Some(labels) = labels {
                task.labels.clone_from(labels);
            }
            if let Some(priority) = priority {
                task.priority = *priority;
            }
            if let Some(agent) = agent {
                task.agent.clone_from(agent);
            }
        }
        EventKind::TaskStateChanged { from, to, reason } => {
            task.state = *to;
            // A person reopening a stopped task gives it a fresh start: the retry and
            // continuation limits count from zero again, and the backoff or resume timer of
            // its last life is forgotten, so the task runs as soon as an engine can take it.
            if *to == TaskState::Open
                && matches!(
                    from,
                    TaskState::Failed | TaskState::Cancelled | TaskState::Blocked | TaskState::Done
                )
            {
                task.attempts = 0;
                task.continuations = 0;
                task.not_before = None;
            }
            if (to.is_terminal() || *to == TaskState::Blocked) && reason.is_some() {
                task.summary.clone_from(reason);
            }
        }
        EventKind::TaskDependencyAdded { blocked_by } => {
            task.blocked_by.push(*blocked_by);
            task.blocked_by.sort();
        }
        EventKind::TaskDependencyRemoved { blocked_by } => {
            task.blocked_by.retain(|t| t != blocked_by);
        }
        EventKind::TaskNudged { .. } => task.nudged_at = Some(at),
        EventKind::TaskScheduled {
            not_before,
            attempts,
            continuations,
            ..
        } => {
            task.not_before = *not_before;
            task.attempts = *attempts;
            task.continuations = *continuations;
        }
        EventKind::TaskBranchSet { branch } => task.branch = Some(branch.clone()),
        EventKind::TaskCompletionClaimed { summary } => task.summary = Some(summary.clone()),
        EventKind::TaskHandedOff {
            to_agency, to_role, ..
        } => {
            task.handoffs += 1;
            task.handoff = Some(domain::HandoffTarget {
                agency: to_agency.clone(),
                role: to_role.clone(),
            });
        }
        EventKind::TaskHandoffVoided { restore, .. } => task.handoff.clone_from(restore),
        // A comment changes only the time the task last changed.
        _ => {}
    }
}

fn evolve_execution(e: &mut domain::Execution, kind: &EventKind, at: domain::Timestamp) {
    match kind {
        EventKind::ExecutionStateChanged { to, .. } => {
            e.state = *to;
            if *to == ExecutionState::Running && e.started_at.is_none() {
                e.started_at = Some(at);
            }
        }
        EventKind::ExecutionProcessStarted {
            pid,
            iteration,
            log_path,
        } => {
            e.pid = Some(*pid);
            e.iteration = *iteration;
            if log_path.is_some() {
                e.log_path.clone_from(log_path);
            }
        }
        EventKind::ExecutionProcessExited { exit_code, .. } => {
            e.exit_code = *exit_code;
            // The pid is forgotten as soon as the process is gone: the system may hand the
            // same number to an unrelated process, which recovery must never signal.
            e.pid = None;
        }
        EventKind::ExecutionValidated { score, .. } => e.score = Some(*score),
        EventKind::ExecutionLeaseRenewed { until } => {
            if let Some(lease) = &mut e.lease {
                lease.until = *until;
            }
        }
        EventKind::ExecutionFinished {
            usage,
            summary,
            exit_code,
            ..
        } => {
            e.ended_at = Some(at);
            // An exit code already recorded by the process's exit is kept when the finish
            // itself has none to report.
            e.exit_code = exit_code.or(e.exit_code);
            e.usage = *usage;
            e.summary.clone_from(summary);
            e.pid = None;
        }
        // Commits, model usage, waits, fallbacks and provider standings are recorded on the
        // execution without changing its row.
        _ => {}
    }
}
