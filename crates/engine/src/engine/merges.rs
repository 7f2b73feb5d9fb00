//! Merges of done sub-tasks into their parents, as recorded steps.
//!
//! The store records a merge as due (`merges` row, `task_merge_pending` on the parent) in the
//! transaction that makes the child done. The engine carries it out whenever the parent is idle:
//! at once when no execution of the parent runs, otherwise when that execution ends (no git
//! command runs under an agent at work). The git work runs as a job off the loop (`jobs.rs`);
//! the loop records its outcome, and the parent is busy for the scheduler until then. The outcome is recorded as `task_merged` or
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

use domain::{Task, TaskId, TaskState};
use store::{Change, MergeResult};
use workspace::MergeOutcome;

use super::Engine;
use super::jobs::{Job, JobContext, Report};
use crate::Error;

/// In a job: makes the merges due into `job.task` (with `retry_failed`, those that failed too),
/// each with its outcome and whether it changed the parent's tree. Records nothing: the loop
/// records the report.
pub(super) async fn make_merges(
    context: &JobContext,
    job: &Job,
    retry_failed: bool,
) -> Vec<(TaskId, MergeResult, bool)> {
    let parent = &job.task;
    let due = match context.store.unfinished_merges(Some(parent.id)).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(task = %parent.id, "cannot read the merges due: {e}");
            return Vec::new();
        }
    };
    let mut made = Vec::new();
    for merge in due
        .into_iter()
        .filter(|m| retry_failed || m.failed.is_none())
    {
        let known = job.children.iter().find(|c| c.id == merge.child).cloned();
        // A child whose end the snapshot had not seen when the job started is read from the
        // store: taking it for absent would record its merge as made with nothing merged.
        let child = match known {
            Some(child) => Some(child),
            None => context.store.task(merge.child).await.ok().flatten(),
        };
        let (outcome, changed) = match child {
            Some(child) => merge_child(context, parent, &child).await,
            None => (MergeResult::Merged { commit: None }, false),
        };
        if launch::is_cancelled() {
            // The engine is stopping: a merge cut short is no failure of the parent. It stays
            // due, and the next start undoes what is half done and makes it.
            break;
        }
        made.push((merge.child, outcome, changed));
    }
    made
}

/// Merges the branch of the done sub-task `task` into its parent's: what to record, and
/// whether the parent's tree changed.
async fn merge_child(context: &JobContext, parent: &Task, task: &Task) -> (MergeResult, bool) {
    let nothing = (MergeResult::Merged { commit: None }, false);
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
    let manager = &context.workspaces;
    let message = format!(
        "agentgrid: merge #{} {} into #{}",
        task.id, task.title, parent.id
    );
    let hook_sandbox = super::jobs::hook_sandbox(context, parent.id).await;
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

impl Engine {
    /// Asks for the merges due into `parent` (with `retry_failed`, those that failed too),
    /// unless an execution of the parent runs (see `engine_core::finalize`).
    pub(super) fn request_merges(&mut self, parent: TaskId, retry_failed: bool) {
        let active = &self.active;
        let jobs = self
            .jobs
            .finalizer
            .request_merges(&self.snapshot, parent, retry_failed, &|t| {
                active.values().any(|a| a.execution.task_id == t)
            });
        self.jobs.start(jobs);
    }

    /// Records what a job made of the merges into its task: each outcome as the step's end.
    pub(super) async fn record_merges(&mut self, report: &Report) {
        for (child, outcome, _) in &report.merges {
            let change = Change::FinishMerge {
                child: *child,
                outcome: outcome.clone(),
            };
            if let Err(e) = self.apply("engine", vec![change]).await {
                tracing::warn!(task = %report.task, child = %child, "cannot record a merge: {e}");
            }
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
