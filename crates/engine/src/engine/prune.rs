//! Forgetting what a task that ended for good left under the state directory: the base
//! commit its judge trees were compared with (`judges/task-<id>.base`).
//!
//! A done task never runs again (only failed, cancelled and blocked tasks can be reopened), so
//! its base is pruned when its worktree is removed, and at every start for tasks that ended
//! while no engine ran or before bases were pruned at all.

use std::path::Path;

use domain::{Task, TaskState};

/// Whether the base of a task in this state may still be needed.
fn still_needed(task: Option<&Task>) -> bool {
    task.is_some_and(|t| t.state != TaskState::Done)
}

/// After a task's worktree was removed.
pub(super) fn after_end(state_dir: &Path, task: &Task) {
    if !still_needed(Some(task))
        && let Err(e) = executor::forget_base(state_dir, task.id)
    {
        tracing::warn!(task = %task.id, "judge base kept: {e}");
    }
}

/// At start: every recorded base whose task is done, or no longer exists in the store.
pub(super) async fn judge_bases(store: &dyn store::Store, state_dir: &Path) {
    for id in executor::recorded_bases(state_dir) {
        let task = match store.task(id).await {
            Ok(task) => task,
            // Not knowing is no reason to delete: the next start tries again.
            Err(e) => {
                tracing::warn!(task = %id, "judge base kept: {e}");
                continue;
            }
        };
        if !still_needed(task.as_ref())
            && let Err(e) = executor::forget_base(state_dir, id)
        {
            tracing::warn!(task = %id, "judge base kept: {e}");
        }
    }
}
