//! Why running executions are asked to stop when the scheduler is not the one asking: a cancel
//! another process wrote, and the engine's own shutdown. One rule for [`crate::Core`] and the
//! engine's runner; the scheduler's kills are `crate::decision`'s, and a budget that ran out is
//! `crate::spending`'s.

use domain::{ExecutionId, Task, TaskId, TaskState};

use crate::effect::StopReason;
use crate::spending::Spending;

/// The executions to stop now that `task` reads as another process wrote it: every running
/// execution of a task that was cancelled is over (its end keeps the task cancelled).
/// `running` lists each running execution with its task.
pub fn on_change(
    task: &Task,
    running: impl IntoIterator<Item = (ExecutionId, TaskId)>,
) -> Vec<(ExecutionId, StopReason)> {
    if task.state != TaskState::Cancelled {
        return Vec::new();
    }
    running
        .into_iter()
        .filter(|(_, t)| *t == task.id)
        .map(|(id, _)| (id, StopReason::Cancelled))
        .collect()
}

/// Why each running execution is stopped when the engine stops: as over budget when a request
/// of it was refused so (grace or not: the budget is why it ends), otherwise for the shutdown,
/// after which its task runs again later.
pub fn at_shutdown(
    spending: &Spending,
    running: impl IntoIterator<Item = ExecutionId>,
) -> Vec<(ExecutionId, StopReason)> {
    running
        .into_iter()
        .map(|id| {
            let reason = match spending.over_budget(id) {
                Some(_) => StopReason::BudgetExceeded,
                None => StopReason::Shutdown,
            };
            (id, reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use domain::{NewTask, Timestamp};

    use super::*;

    #[test]
    fn only_a_cancelled_tasks_executions_stop_and_shutdown_stops_every_one() {
        let mut task = Task::new(TaskId(1), NewTask::titled("t"), TaskId(1), 0, Timestamp(0));
        let running = [(ExecutionId(10), TaskId(1)), (ExecutionId(11), TaskId(2))];
        task.state = TaskState::Running;
        assert!(on_change(&task, running).is_empty());
        task.state = TaskState::Cancelled;
        assert_eq!(
            on_change(&task, running),
            vec![(ExecutionId(10), StopReason::Cancelled)]
        );
        let stops = at_shutdown(&Spending::default(), [ExecutionId(10), ExecutionId(11)]);
        assert!(stops.iter().all(|(_, r)| *r == StopReason::Shutdown));
        assert_eq!(stops.len(), 2);
    }
}
