//! Approvals the engine asks for: the project's policy, as a top-level task ends done, and the
//! agent's `ctl approval request`, after which its execution ends and the task waits blocked,
//! with no process and no tokens, until a person decides.
//!
//! The decision itself is a person's (`agentgrid approvals`); the tracker reopens the task
//! when it must, and the engine, following the store, runs it again then.

use domain::{ApprovalSource, Task, TaskState};
use executor::ExecutionShared;
use store::Change;

use super::Engine;

impl Engine {
    /// Adds the policy's approval request to `changes` for each top-level task they make done
    /// and the policy names, in the same batch, so that a crash never leaves a done task the
    /// policy wanted a person to see without its request.
    pub(super) fn ask_policy_approvals(&self, changes: &mut Vec<Change>) {
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
                let task = self.snapshot.task(id)?;
                (task.parent.is_none() && self.setup.approvals.wants(&task.labels)).then(|| {
                    Change::RequestApproval {
                        task: id,
                        source: ApprovalSource::Policy,
                        execution,
                        summary: policy_summary(task, reason.as_deref()),
                    }
                })
            })
            .collect();
        changes.extend(asks);
    }

    /// `ctl approval request`: records the agent's request and marks the execution so that its
    /// end leaves the task blocked until the decision. A request made again by a later run of
    /// the same step (a rerun after a crash) finds the pending one.
    pub(super) async fn request_approval(
        &mut self,
        task: &Task,
        actor: &app::Actor,
        shared: &ExecutionShared,
        summary: String,
    ) -> Result<serde_json::Value, String> {
        let request = app::RequestApproval {
            task: task.id,
            summary,
        };
        let (id, existed) = self.command(actor, request).await?;
        shared.update_flags(|f| f.blocked = Some(format!("waiting for approval #{id}")));
        Ok(serde_json::json!({
            "approval": id,
            "existed": existed,
            "note": "exit now: the task waits for a person's decision, and runs again after it",
        }))
    }
}

/// What the queue shows for a task the policy asks about: the agent's own summary of the work
/// when it claimed completion, or why the task is done.
fn policy_summary(task: &Task, reason: Option<&str>) -> String {
    task.summary
        .clone()
        .or_else(|| reason.map(str::to_owned))
        .unwrap_or_else(|| "done".to_owned())
}
