//! Approvals the engine asks for: the project's policy, as a top-level task ends done, and the
//! agent's `ctl approval request`, after which its execution ends and the task waits blocked,
//! with no process and no tokens, until a person decides.
//!
//! The decision itself is a person's (`agentgrid approvals`); the tracker reopens the task
//! when it must, and the engine, following the store, runs it again then, resuming the CLI
//! session the gated execution parked (see `executor::runtime::parked_home`).

use domain::{ApprovalSource, ApprovalState, ExecutionId, Task, TaskId};
use executor::ExecutionShared;
use store::{ApprovalFilter, ExecutionFilter};

use super::Engine;

impl Engine {
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
        if summary.trim().is_empty() {
            return Err("say what a person is to approve: --summary must not be empty".into());
        }
        let request = app::RequestApproval {
            task: task.id,
            summary,
        };
        let (id, existed) = self.command(actor, request).await?;
        // The execution stops at a gate: its CLI session is parked for the run after the
        // decision.
        shared.update_flags(|f| {
            f.blocked = Some(format!("waiting for approval #{id}"));
            f.gate = true;
        });
        Ok(serde_json::json!({
            "approval": id,
            "existed": existed,
            "note": "exit now: the task waits for a person's decision, and runs again after it",
        }))
    }
}

impl Engine {
    /// The CLI session to resume in `task`'s next execution: the one its previous execution
    /// reported, when that execution stopped at a gate (asked for an approval) that a person
    /// has decided since. `None` starts afresh; so does any trouble reading the record, since
    /// a new session loses only the CLI's memory, never work.
    pub(super) async fn parked_session(&self, task: TaskId, next: ExecutionId) -> Option<String> {
        // A task's first execution (its claim count is 1) has none before it to resume, and
        // most executions are first ones: no read of the store for them.
        if self.snapshot.task(task).is_some_and(|t| t.executions <= 1) {
            return None;
        }
        let executions = self
            .store
            .executions(&ExecutionFilter {
                task: Some(task),
                ..ExecutionFilter::default()
            })
            .await
            .ok()?;
        let previous = executions
            .into_iter()
            .filter(|e| e.id < next)
            .max_by_key(|e| e.id)?;
        let decided = ApprovalFilter {
            state: None,
            task: Some(task),
            limit: None,
        };
        let gated = self
            .store
            .approvals(&decided)
            .await
            .ok()?
            .into_iter()
            .any(|a| {
                a.source == ApprovalSource::Agent
                    && a.execution_id == Some(previous.id)
                    && a.state != ApprovalState::Pending
            });
        if !gated {
            return None;
        }
        let records = app::agent_events(self.store.as_ref(), previous.id)
            .await
            .ok()?;
        records.into_iter().rev().find_map(|r| match r.event {
            domain::AgentEvent::Session { id } => Some(id),
            _ => None,
        })
    }
}
