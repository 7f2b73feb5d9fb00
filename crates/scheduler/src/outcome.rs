//! What becomes of a task when one of its executions ends: done, split, retried, blocked, failed.

use domain::{ExecutionKind, ExecutionState, FailureClass, Task, TaskState, Timestamp};

use crate::{Completion, Config};

/// The facts about an ended execution that decide its task's fate.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionEnd {
    pub kind: ExecutionKind,
    pub agent: String,
    /// The execution's terminal state. `Succeeded` means a clean exit, and for an agent with
    /// validators that they passed; see `validated`.
    pub state: ExecutionState,
    /// The agent's validators ran in this execution and passed, on the task's tree as it stands
    /// now: with every sub-task that ended meanwhile merged in. False when they did not run (a
    /// split, a block, an agent without validators) or judged a tree that has changed since.
    pub validated: bool,
    /// The agent's `ctl complete` summary, if it called it.
    pub claimed_complete: Option<String>,
    /// The agent's `ctl block` reason, if it called it.
    pub blocked: Option<String>,
    /// Where the agent's `ctl handoff` sent the task, if it called it. A clean exit after it
    /// opens the receiver's part (the task goes back to open, routed there); a handoff is never
    /// completion.
    pub handed_off: Option<HandedOff>,
    /// A one-line reason for a failure, shown on the task.
    pub failure: Option<String>,
    /// A model request of the execution was refused because its provider is paused (a used-up
    /// quota) until this time: a failure then is the provider's, not the agent's, so it costs
    /// no attempt and the task runs again after the pause. `failure` says why.
    pub provider_paused: Option<Timestamp>,
    /// Whether another attempt could go differently. A failure of the configuration fails the
    /// task at once, whatever attempts are left: it would fail the same way after any backoff.
    pub class: FailureClass,
}

pub use domain::handoff::HandedOff;

/// The task's next state and scheduling bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPlan {
    pub to: TaskState,
    pub not_before: Option<Timestamp>,
    pub attempts: u32,
    pub continuations: u32,
    pub reason: String,
}

/// Decides the task's fate after `end`. `children` are the task's sub-tasks as they stand now,
/// including any the execution just created.
///
/// Sub-tasks decide first. While some are open the task waits for them (a split), whatever the
/// execution was. Once they have all ended, the task is done only when every one of them is
/// done and, when its agent has validators, they passed on the merged tree; a failed or
/// cancelled sub-task fails the task. An execution whose validators did not run never makes
/// its task done: for an agent without validators a clean exit is the evidence.
///
/// Nor is a task done while the branch of a done sub-task could not be merged into its own
/// (`Task::merge_failed`): what would have been done is blocked instead, for a person to merge
/// by hand and reopen it (the engine tries the merge again after each execution of the task).
pub fn after_execution(
    task: &Task,
    children: &[&Task],
    end: &ExecutionEnd,
    config: &Config,
    now: Timestamp,
) -> TaskPlan {
    let mut plan = plan_after(task, children, end, config, now);
    if plan.to == TaskState::Done
        && let Some(why) = &task.merge_failed
    {
        plan.to = TaskState::Blocked;
        plan.not_before = None;
        plan.reason = unmerged_reason(task, why);
    }
    plan
}

/// Why a task whose sub-tasks' work is not all merged cannot be done, and what a person does.
pub(crate) fn unmerged_reason(task: &Task, why: &str) -> String {
    let branch = task.branch.as_deref().unwrap_or("this task's branch");
    format!(
        "the work of its sub-tasks is not all merged ({}): merge their branches into {branch} \
         by hand, then reopen #{}",
        clip(why, 300),
        task.id
    )
}

fn plan_after(
    task: &Task,
    children: &[&Task],
    end: &ExecutionEnd,
    config: &Config,
    now: Timestamp,
) -> TaskPlan {
    let plan = |to, not_before, attempts, continuations, reason: String| TaskPlan {
        to,
        not_before,
        attempts,
        continuations,
        reason,
    };
    if let Some(reason) = &end.blocked {
        return plan(
            TaskState::Blocked,
            None,
            task.attempts,
            0,
            format!("blocked: {reason}"),
        );
    }
    if let Some(HandedOff { to, .. }) = &end.handed_off
        && end.state == ExecutionState::Succeeded
    {
        // The receiver's part starts afresh: the sender's failed attempts are not its own.
        return plan(
            TaskState::Open,
            None,
            0,
            0,
            format!("handed off to {to}; its part opens"),
        );
    }
    let running_children = children.iter().filter(|c| !c.state.is_terminal()).count();
    // After an interruption (shutdown, engine crash) the same step runs again at once and the
    // attempt does not count: it was not the agent's failure.
    let back_to = match end.kind {
        ExecutionKind::Work if running_children > 0 => TaskState::Waiting,
        ExecutionKind::Work => TaskState::Open,
        ExecutionKind::Resume => TaskState::Waiting,
    };
    match end.state {
        ExecutionState::Cancelled | ExecutionState::Lost => {
            return plan(
                back_to,
                None,
                task.attempts,
                task.continuations,
                format!("{}; runs again", end.state),
            );
        }
        ExecutionState::BudgetExceeded => {
            return plan(
                TaskState::Blocked,
                None,
                task.attempts,
                0,
                "budget exceeded: raise the budget, then reopen the task".into(),
            );
        }
        ExecutionState::Succeeded => {}
        _ if end.provider_paused.is_some() => {
            let why = end.failure.clone().unwrap_or_else(|| end.state.to_string());
            return plan(
                back_to,
                end.provider_paused,
                task.attempts,
                task.continuations,
                format!("{why}; runs again then, without counting an attempt"),
            );
        }
        // `no_progress` is one of these: a failed attempt, retried after the backoff while
        // attempts are left. What was stuck was the agent's course within one execution, whose
        // every iteration carried the context of the ones before; a new execution starts the
        // agent afresh on the committed tree, so it may take another way.
        _ if end.class == FailureClass::Configuration => {
            let what = end.failure.clone().unwrap_or_else(|| end.state.to_string());
            return plan(
                TaskState::Failed,
                None,
                task.attempts + 1,
                0,
                format!(
                    "{what}; not retried, as only a change to the configuration helps: reopen \
                     #{} once it is fixed",
                    task.id
                ),
            );
        }
        _ => {
            // A resume woken by a failed sub-task that fails itself decided nothing, and the task
            // cannot be done while that sub-task stands: trying it again would only fail again.
            if end.kind == ExecutionKind::Resume
                && let Some(reason) = unfinished_children(children)
            {
                let what = end.failure.clone().unwrap_or_else(|| end.state.to_string());
                return plan(
                    TaskState::Failed,
                    None,
                    task.attempts + 1,
                    0,
                    format!("{reason}; its resume {what}"),
                );
            }
            return failure(task, end, back_to, config, now);
        }
    }

    let unfinished = unfinished_children(children);
    if end.kind == ExecutionKind::Resume
        && let Some(reason) = unfinished.clone()
    {
        // A failed or cancelled sub-task woke this resume, and it neither blocked nor failed:
        // the task cannot be done while that sub-task stands, so it fails now rather than
        // waiting on, and being woken again, for the same failure. Any sub-task still open is
        // left to run; the reason names it.
        return plan(TaskState::Failed, None, task.attempts, 0, reason);
    }
    if running_children > 0 {
        let reason = match end.kind {
            ExecutionKind::Work => format!("split into {} sub-tasks", running_children),
            ExecutionKind::Resume => format!("{running_children} sub-tasks still open"),
        };
        return plan(
            TaskState::Waiting,
            Some(now.plus(config.resume_interval)),
            0,
            0,
            reason,
        );
    }
    if let Some(reason) = unfinished {
        return plan(TaskState::Failed, None, task.attempts, 0, reason);
    }
    let agent = config.agent(&end.agent);
    // An agent the configuration no longer knows is held to the stricter rule.
    let needs_validators = agent.is_none_or(|a| a.validators);
    if needs_validators && !end.validated {
        if !children.is_empty() {
            // The sub-tasks ended while the execution ran, so what its validators saw (if they
            // ran at all) is not the merged tree. The task waits, the engine merges, and the
            // resume that follows at once judges the whole.
            return plan(
                TaskState::Waiting,
                None,
                task.attempts,
                task.continuations,
                format!(
                    "all {} sub-tasks are done; the merged tree is judged next",
                    children.len()
                ),
            );
        }
        let end = ExecutionEnd {
            failure: Some("exited cleanly, but its validators did not pass".into()),
            ..end.clone()
        };
        return failure(task, &end, back_to, config, now);
    }
    let completion = agent.map(|a| a.completion).unwrap_or_default();
    match (&end.claimed_complete, completion) {
        (Some(summary), _) => plan(TaskState::Done, None, task.attempts, 0, summary.clone()),
        (None, Completion::Exit) => {
            let reason = match (end.kind, end.validated) {
                (ExecutionKind::Resume, true) => format!(
                    "all {} sub-tasks are done and the merged tree is validated",
                    children.len()
                ),
                (ExecutionKind::Resume, false) => {
                    format!("all {} sub-tasks are done", children.len())
                }
                (ExecutionKind::Work, true) => "validated".to_string(),
                (ExecutionKind::Work, false) => {
                    "no validators (the agent's exit status decided)".to_string()
                }
            };
            plan(TaskState::Done, None, task.attempts, 0, reason)
        }
        (None, Completion::Claim) if task.continuations < config.max_continuations => plan(
            back_to,
            Some(now.plus(config.continuation_delay)),
            task.attempts,
            task.continuations + 1,
            "exited cleanly without claiming completion; continues".into(),
        ),
        (None, Completion::Claim) => {
            let end = ExecutionEnd {
                failure: Some(format!(
                    "exited cleanly {} times without claiming completion",
                    task.continuations + 1
                )),
                ..end.clone()
            };
            failure(task, &end, back_to, config, now)
        }
    }
}

/// Why a task whose sub-tasks have ended cannot be done: the ones that failed or were
/// cancelled, each with its own reason. `None` when every sub-task is done.
pub(crate) fn unfinished_children(children: &[&Task]) -> Option<String> {
    let unfinished: Vec<String> = children
        .iter()
        .filter(|c| c.state.is_terminal() && c.state != TaskState::Done)
        .map(|c| {
            let why = c
                .summary
                .as_deref()
                .map(|s| format!(" ({})", clip(s, 120)))
                .unwrap_or_default();
            format!("sub-task #{} {}{why}", c.id, c.state)
        })
        .collect();
    if unfinished.is_empty() {
        return None;
    }
    let open: Vec<String> = children
        .iter()
        .filter(|c| !c.state.is_terminal())
        .map(|c| format!("#{}", c.id))
        .collect();
    let mut reason = unfinished.join("; ");
    match open.len() {
        0 => {}
        1 => reason.push_str(&format!("; {} is left open", open[0])),
        _ => reason.push_str(&format!("; {} are left open", open.join(", "))),
    }
    Some(reason)
}

/// At most `max` characters of one line of `text`.
fn clip(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn failure(
    task: &Task,
    end: &ExecutionEnd,
    back_to: TaskState,
    config: &Config,
    now: Timestamp,
) -> TaskPlan {
    let attempts = task.attempts + 1;
    let max_attempts = config
        .agent(&end.agent)
        .map_or(1, |a| a.max_attempts.max(1));
    let what = end.failure.clone().unwrap_or_else(|| end.state.to_string());
    if attempts >= max_attempts {
        return TaskPlan {
            to: TaskState::Failed,
            not_before: None,
            attempts,
            continuations: 0,
            reason: format!("{what} (attempt {attempts} of {max_attempts})"),
        };
    }
    let delay = config.retry.backoff(attempts);
    TaskPlan {
        to: back_to,
        not_before: Some(now.plus(delay)),
        attempts,
        continuations: 0,
        reason: format!(
            "{what}; retry {} of {} in {delay}",
            attempts + 1,
            max_attempts
        ),
    }
}
