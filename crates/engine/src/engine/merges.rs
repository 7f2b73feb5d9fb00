//! Merges of done sub-tasks into their parents, as recorded steps.
//!
//! The store records a merge as due (`merges` row, `task_merge_pending` on the parent) in the
//! transaction that makes the child done. The engine carries it out whenever the parent is idle:
//! at once when no execution of the parent runs, otherwise when that execution ends (no git
//! command runs under an agent at work). The outcome is recorded as `task_merged` or
//! `task_merge_failed`; a failed merge stands on the parent (`Task::merge_failed`), which keeps
//! it from being done, and is tried again after each execution of the parent (a person who
//! merged by hand and reopened the parent, or a resume that changed the tree, may have made it
//! possible). Nothing else retries it: a merge that conflicts conflicts again until then.
//!
//! A crash between the record and the outcome leaves the step due. On start, a half-done merge
//! in the worktree of a parent with a merge due (`MERGE_HEAD` present) is undone before anything
//! commits in that worktree, and the merge is made again; a merge that was complete but not yet
//! recorded finds nothing new and is recorded as done.

use std::collections::BTreeSet;

use domain::{TaskId, TaskState};
use store::{Change, MergeResult};
use workspace::{MergeOutcome, Workspaces};

use super::Engine;
use crate::Error;

impl Engine {
    /// Carries out the merges due into `parent` (with `retry_failed`, those that failed too),
    /// unless an execution of the parent runs: its end does them. Returns how many changed
    /// the parent's tree.
    pub(super) async fn run_merges(&mut self, parent: TaskId, retry_failed: bool) -> u32 {
        let Some(manager) = self.workspaces.clone() else {
            return 0;
        };
        if self.active.values().any(|a| a.execution.task_id == parent) {
            return 0;
        }
        let due = match self.store.unfinished_merges(Some(parent)).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(task = %parent, "cannot read the merges due: {e}");
                return 0;
            }
        };
        let mut changed = 0;
        for merge in due
            .into_iter()
            .filter(|m| retry_failed || m.failed.is_none())
        {
            let (outcome, tree_changed) = self.merge_child(&manager, merge.child).await;
            if launch::is_cancelled() {
                // The engine is stopping: a merge cut short is no failure of the parent. It
                // stays due, and the next start undoes what is half done and makes it.
                break;
            }
            changed += u32::from(tree_changed);
            let change = Change::FinishMerge {
                child: merge.child,
                outcome,
            };
            if let Err(e) = self.apply("engine", vec![change]).await {
                tracing::warn!(task = %parent, child = %merge.child, "cannot record a merge: {e}");
            }
        }
        changed
    }

    /// Merges the branch of the done sub-task `child` into its parent's: what to record, and
    /// whether the parent's tree changed.
    async fn merge_child(&mut self, manager: &Workspaces, child: TaskId) -> (MergeResult, bool) {
        let nothing = (MergeResult::Merged { commit: None }, false);
        let Some(task) = self.snapshot.task(child).cloned() else {
            return nothing;
        };
        let Some(parent) = task.parent.and_then(|p| self.snapshot.task(p)).cloned() else {
            return nothing;
        };
        // No branch on either side: nothing was worked on in a worktree. A done parent's branch
        // never changes again (it cannot have a sub-task done after it, but a merge recorded as
        // due before a crash may find it so). A failed or cancelled parent still gets the work,
        // so that a person who reopens it finds it there.
        let (Some(branch), Some(_)) = (task.branch.clone(), parent.branch.clone()) else {
            return nothing;
        };
        if parent.state == TaskState::Done {
            return nothing;
        }
        let message = format!(
            "agentgrid: merge #{} {} into #{}",
            task.id, task.title, parent.id
        );
        let hook_sandbox = self.hook_sandbox(parent.id, manager).await;
        let parent_ws = match manager.ensure(parent.id, None, hook_sandbox.as_ref()).await {
            Ok(ws) => ws,
            Err(e) => {
                let reason = format!("the worktree to merge {branch} into is not there: {e}");
                return (MergeResult::Failed { reason }, false);
            }
        };
        let merged = match manager.abort_interrupted_merge(&parent_ws).await {
            Ok(_) => manager.merge_branch(&parent_ws, &branch, &message).await,
            Err(e) => Err(e),
        };
        // A parent that has ended keeps no worktree: the merge is on its branch.
        if parent.state.is_terminal() {
            self.remove_worktree(manager, &parent_ws, hook_sandbox.as_ref())
                .await;
        }
        match merged {
            Ok(MergeOutcome::Merged { commit }) => (
                MergeResult::Merged {
                    commit: Some(commit),
                },
                true,
            ),
            Ok(MergeOutcome::UpToDate) => nothing,
            Ok(MergeOutcome::Conflict { files }) => {
                let reason = format!(
                    "merging {branch} conflicts in {}; the merge was undone",
                    files.join(", ")
                );
                (MergeResult::Failed { reason }, false)
            }
            Err(e) => (
                MergeResult::Failed {
                    reason: format!("merging {branch} failed: {e}"),
                },
                false,
            ),
        }
    }

    /// On start, before anything commits in a worktree: undoes the merges a dead engine left
    /// half done in the worktrees of parents with a merge due, and returns those parents.
    /// (A merge that failed was undone by git when it failed, so only those never finished can
    /// have been cut short.)
    pub(super) async fn undo_interrupted_merges(&mut self) -> Result<BTreeSet<TaskId>, Error> {
        let parents: BTreeSet<TaskId> = self
            .store
            .unfinished_merges(None)
            .await?
            .into_iter()
            .filter(|m| m.failed.is_none())
            .map(|m| m.parent)
            .collect();
        let Some(manager) = self.workspaces.clone() else {
            return Ok(parents);
        };
        for &parent in &parents {
            let path = manager.path_of(parent);
            let Some(branch) = self.snapshot.task(parent).and_then(|t| t.branch.clone()) else {
                continue;
            };
            if !path.exists() {
                continue;
            }
            let ws = workspace::Workspace {
                task: parent,
                path,
                branch,
                created: false,
            };
            match manager.abort_interrupted_merge(&ws).await {
                Ok(false) => {}
                Ok(true) => {
                    let text = "a merge into this task's worktree was interrupted by a crash; it \
                                was undone and is made again"
                        .to_string();
                    self.apply("engine", vec![Change::Comment { id: parent, text }])
                        .await?;
                }
                Err(e) => {
                    tracing::warn!(task = %parent, "cannot undo an interrupted merge: {e}");
                }
            }
        }
        Ok(parents)
    }
}
