//! What an execution's end makes of its task: the rules both [`crate::Core`] and the engine's
//! runner apply when an execution ends, is found lost, or ends after the model gateway spoke of
//! it. They live here once; the runner calls them with what it knows.

use domain::{
    ApprovalSource, Execution, ExecutionState, FailureClass, Task, TaskId, TaskState, Timestamp,
    Usage,
};
use scheduler::{Config, ExecutionEnd, Snapshot};
use tracker::Change;

/// The summary recorded on an execution a dead engine left active, when a new one winds it down.
pub const LOST_ON_RESTART: &str = "the engine running it stopped; it was wound down on restart";

/// What becomes of a running task when its execution ends, as changes to record with the
/// execution's end (the scheduler decides: `scheduler::after_execution`), and whether the task
/// ended. A task that is no longer running (cancelled meanwhile) is left as it is.
pub fn settle(
    snapshot: &Snapshot,
    config: &Config,
    task_id: TaskId,
    end: &ExecutionEnd,
    now: Timestamp,
) -> (Vec<Change>, bool) {
    let Some(task) = snapshot
        .task(task_id)
        .filter(|t| t.state == TaskState::Running)
    else {
        return (Vec::new(), false);
    };
    let children: Vec<&Task> = snapshot.children_of(task_id).collect();
    let plan = scheduler::after_execution(task, &children, end, config, now);
    let mut changes = vec![Change::SettleTask {
        id: task_id,
        to: plan.to,
        reason: Some(plan.reason.clone()),
    }];
    if (plan.not_before, plan.attempts, plan.continuations)
        != (task.not_before, task.attempts, task.continuations)
    {
        changes.push(Change::ScheduleTask {
            id: task_id,
            not_before: plan.not_before,
            attempts: plan.attempts,
            continuations: plan.continuations,
            reason: None,
        });
    }
    (changes, plan.to.is_terminal())
}

/// How an execution ended, as its runner saw it and the gateway judged it: what is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub verdict: Verdict,
    pub exit_code: Option<i32>,
    pub usage: Usage,
    /// The last validation passed.
    pub validated: bool,
    /// The agent's `ctl complete` summary and `ctl block` reason.
    pub claimed_complete: Option<String>,
    pub blocked: Option<String>,
    /// The agent's `ctl handoff`, if it made one.
    pub handed_off: Option<scheduler::HandedOff>,
    pub class: FailureClass,
}

impl Ended {
    /// The end of `execution` as the change that records it and what the scheduler judges.
    pub fn record(self, execution: &Execution) -> (Change, ExecutionEnd) {
        let finish = Change::FinishExecution {
            id: execution.id,
            state: self.verdict.state,
            exit_code: self.exit_code,
            usage: self.usage,
            summary: self.verdict.summary.clone(),
        };
        let end = ExecutionEnd {
            kind: execution.kind,
            agent: execution.agent.clone(),
            state: self.verdict.state,
            validated: self.validated,
            claimed_complete: self.claimed_complete,
            blocked: self.blocked,
            handed_off: self.handed_off,
            failure: self.verdict.summary,
            provider_paused: self.verdict.provider_paused,
            class: self.class,
        };
        (finish, end)
    }
}

/// An end concluded: `finish` with what it makes of its task, and whether the task has ended
/// (by this end, or before it: a task cancelled meanwhile), so that its workspace work follows.
pub fn conclude(
    snapshot: &Snapshot,
    config: &Config,
    task: TaskId,
    finish: Change,
    end: &ExecutionEnd,
    now: Timestamp,
) -> (Vec<Change>, bool) {
    let execution = match &finish {
        Change::FinishExecution { id, .. } => Some(*id),
        _ => None,
    };
    let mut changes = vec![finish];
    let (settle, ended) = settle(snapshot, config, task, end, now);
    // A handoff takes effect only with a clean exit: otherwise the sender's part goes on, and
    // the task's routing goes back to what it was before the handoff.
    if let (Some(handed), Some(execution)) = (&end.handed_off, execution)
        && end.state != ExecutionState::Succeeded
    {
        changes.push(Change::VoidHandoff {
            id: task,
            execution,
            restore: handed.restore.clone(),
            reason: format!(
                "the execution ended {}{}",
                end.state,
                end.failure
                    .as_deref()
                    .map(|f| format!(": {f}"))
                    .unwrap_or_default()
            ),
        });
    }
    changes.extend(settle);
    let task_ended = ended || snapshot.task(task).is_some_and(|t| t.state.is_terminal());
    (changes, task_ended)
}

/// Takes an end's new task state and schedule into the view the next decision looks at, before
/// the end is written; the store's rows replace them when it is.
pub fn hold_in_view(snapshot: &mut Snapshot, changes: &[Change]) {
    for change in changes {
        match change {
            Change::SettleTask { id, to, .. } => {
                snapshot.update(*id, |task| task.state = *to);
            }
            Change::ScheduleTask {
                id,
                not_before,
                attempts,
                continuations,
                ..
            } => {
                snapshot.update(*id, |task| {
                    task.not_before = *not_before;
                    task.attempts = *attempts;
                    task.continuations = *continuations;
                });
            }
            _ => {}
        }
    }
}

/// The end of an execution nobody saw end (its engine died, or its node's lease ran out): lost,
/// a transient failure, with nothing claimed or validated.
pub fn lost(execution: &Execution) -> ExecutionEnd {
    ExecutionEnd {
        kind: execution.kind,
        agent: execution.agent.clone(),
        state: ExecutionState::Lost,
        validated: false,
        claimed_complete: None,
        blocked: None,
        handed_off: None,
        failure: None,
        provider_paused: None,
        class: FailureClass::Transient,
    }
}

/// How an execution's end is recorded, once what the model gateway said of it is weighed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: ExecutionState,
    pub summary: Option<String>,
    /// The end of the provider pause the failure is blamed on (see
    /// `scheduler::ExecutionEnd::provider_paused`).
    pub provider_paused: Option<Timestamp>,
}

/// The verdict on an execution that ended in `state` with `summary`, given that a request of it
/// was refused over budget (`over_budget`, the reason) or for a paused provider (`paused`, the
/// pause's description and end).
///
/// An agent that ends after a refusal over budget ended because of the budget, however it
/// exited; only a cancel says otherwise. A failure after a refusal for a paused provider is the
/// provider's: the pause is named first, and the attempt does not count.
pub fn verdict(
    state: ExecutionState,
    summary: Option<String>,
    over_budget: Option<&str>,
    paused: Option<(&str, Timestamp)>,
) -> Verdict {
    let (state, summary) = match over_budget {
        Some(reason) if state != ExecutionState::Cancelled => {
            (ExecutionState::BudgetExceeded, Some(reason.to_string()))
        }
        _ => (state, summary),
    };
    let paused =
        paused.filter(|_| !matches!(state, ExecutionState::Succeeded | ExecutionState::Cancelled));
    let summary = match (paused, summary) {
        (Some((why, _)), Some(s)) => Some(format!("{why}; {s}")),
        (Some((why, _)), None) => Some(why.to_string()),
        (None, s) => s,
    };
    Verdict {
        state,
        summary,
        provider_paused: paused.map(|(_, until)| until),
    }
}

/// Adds the project's approval request to `changes` for each top-level task they make done and
/// the policy (`wants`, on the task's labels) names, in the same batch, so that a crash never
/// leaves a done task the policy wanted a person to see without its request.
pub fn ask_approvals(
    snapshot: &Snapshot,
    wants: impl Fn(&[String]) -> bool,
    changes: &mut Vec<Change>,
) {
    let execution = changes.iter().find_map(|c| match c {
        Change::FinishExecution { id, .. } => Some(*id),
        _ => None,
    });
    let asks: Vec<Change> = changes
        .iter()
        .filter_map(|c| match c {
            Change::SettleTask {
                id,
                to: TaskState::Done,
                reason,
            }
            | Change::SetTaskState {
                id,
                to: TaskState::Done,
                reason,
            } => Some((*id, reason)),
            _ => None,
        })
        .filter_map(|(id, reason)| {
            let task = snapshot.task(id)?;
            (task.parent.is_none() && wants(&task.labels)).then(|| Change::RequestApproval {
                task: id,
                source: ApprovalSource::Policy,
                execution,
                summary: approval_summary(task, reason.as_deref()),
            })
        })
        .collect();
    changes.extend(asks);
}

/// What the queue shows for a task the policy asks about: the agent's own summary of the work
/// when it claimed completion, or why the task is done.
fn approval_summary(task: &Task, reason: Option<&str>) -> String {
    task.summary
        .clone()
        .or_else(|| reason.map(str::to_owned))
        .unwrap_or_else(|| "done".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_after_a_refusal_over_budget_is_over_budget_unless_cancelled() {
        let v = verdict(
            ExecutionState::Failed,
            Some("exit 1".into()),
            Some("tree budget of $1.00 used"),
            None,
        );
        assert_eq!(v.state, ExecutionState::BudgetExceeded);
        assert_eq!(v.summary.as_deref(), Some("tree budget of $1.00 used"));
        let v = verdict(
            ExecutionState::Succeeded,
            None,
            Some("tree budget of $1.00 used"),
            None,
        );
        assert_eq!(v.state, ExecutionState::BudgetExceeded);
        let v = verdict(ExecutionState::Cancelled, None, Some("over"), None);
        assert_eq!(v.state, ExecutionState::Cancelled);
        assert_eq!(v.summary, None);
    }

    #[test]
    fn a_failure_after_a_paused_providers_refusal_names_the_pause_first() {
        let until = Timestamp(5_000);
        let v = verdict(
            ExecutionState::Failed,
            Some("exit 1".into()),
            None,
            Some(("anthropic is paused", until)),
        );
        assert_eq!(v.summary.as_deref(), Some("anthropic is paused; exit 1"));
        assert_eq!(v.provider_paused, Some(until));
        // A success or a cancel is not the provider's failure.
        for state in [ExecutionState::Succeeded, ExecutionState::Cancelled] {
            let v = verdict(state, None, None, Some(("paused", until)));
            assert_eq!((v.summary, v.provider_paused), (None, None));
        }
    }
}
