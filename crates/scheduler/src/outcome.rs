//! What becomes of a task when one of its executions ends: done, split, retried, blocked, failed.

use domain::{ExecutionKind, ExecutionState, Task, TaskState, Timestamp};

use crate::{Completion, Config};

/// The facts about an ended execution that decide its task's fate.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionEnd {
    pub kind: ExecutionKind,
    pub agent: String,
    /// The execution's terminal state. `Succeeded` means a clean exit whose validators passed.
    pub state: ExecutionState,
    /// The agent's `ctl complete` summary, if it called it.
    pub claimed_complete: Option<String>,
    /// The agent's `ctl block` reason, if it called it.
    pub blocked: Option<String>,
    /// A one-line reason for a failure, shown on the task.
    pub failure: Option<String>,
}

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
pub fn after_execution(
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
        _ => return failure(task, end, back_to, config, now),
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
    if end.kind == ExecutionKind::Resume && !children.is_empty() {
        let unfinished: Vec<String> = children
            .iter()
            .filter(|c| c.state != TaskState::Done)
            .map(|c| format!("#{} {}", c.id, c.state))
            .collect();
        if !unfinished.is_empty() {
            return plan(
                TaskState::Failed,
                None,
                task.attempts,
                0,
                format!("sub-tasks did not finish: {}", unfinished.join(", ")),
            );
        }
    }
    let completion = config
        .agent(&end.agent)
        .map(|a| a.completion)
        .unwrap_or_default();
    match (&end.claimed_complete, completion) {
        (Some(summary), _) => plan(TaskState::Done, None, task.attempts, 0, summary.clone()),
        (None, Completion::Exit) => {
            let reason = match end.kind {
                ExecutionKind::Work => "validated".to_string(),
                ExecutionKind::Resume => format!("all {} sub-tasks are done", children.len()),
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
