//! Forgetting what a task that ended for good left under the state directory: the base
//! commit its judge trees were compared with (`judges/task-<id>.base`).
//!
//! A done task runs again only when a person rejects its pending approval, so its base is
//! pruned when its worktree is removed unless an approval of it is pending, and at every start
//! for done tasks that no longer wait for one (or no longer exist). A rejected task then is
//! judged against the base it was first judged against, never against a fork point computed
//! again later.

use std::path::Path;

use domain::{ApprovalState, Task, TaskState};
use store::{ApprovalFilter, Store};

/// Whether the base of `task` may still be needed: it is not done, or a decision on it is
/// pending, which may reopen it. Not knowing (the store failed) keeps it.
async fn still_needed(store: &dyn Store, task: Option<&Task>) -> bool {
    let Some(task) = task else {
        return false;
    };
    if task.state != TaskState::Done {
        return true;
    }
    let pending = ApprovalFilter {
        state: Some(ApprovalState::Pending),
        task: Some(task.id),
        limit: Some(1),
    };
    store
        .approvals(&pending)
        .await
        .map_or(true, |found| !found.is_empty())
}

/// After a task's worktree was removed.
pub(super) async fn after_end(store: &dyn Store, state_dir: &Path, task: &Task) {
    if !still_needed(store, Some(task)).await
        && let Err(e) = executor::forget_base(state_dir, task.id)
    {
        tracing::warn!(task = %task.id, "judge base kept: {e}");
    }
}

/// At start: every recorded base whose task is done and waits for no decision, or no longer
/// exists in the store.
pub(super) async fn judge_bases(store: &dyn Store, state_dir: &Path) {
    for id in executor::recorded_bases(state_dir) {
        let task = match store.task(id).await {
            Ok(task) => task,
            // Not knowing is no reason to delete: the next start tries again.
            Err(e) => {
                tracing::warn!(task = %id, "judge base kept: {e}");
                continue;
            }
        };
        if !still_needed(store, task.as_ref()).await
            && let Err(e) = executor::forget_base(state_dir, id)
        {
            tracing::warn!(task = %id, "judge base kept: {e}");
        }
    }
}
