//! A claim as it is written, the same for [`crate::Core`] and the engine's runner.

use domain::{ExecutionKind, Lease, TaskId};
use tracker::Change;

/// The changes that claim `task` for a new execution of `agent`: why the scheduler runs it now,
/// when it said (on the task, just before the claim), then the execution with its first lease
/// when the claimer holds leases. The runner puts what it held back before them, in the same
/// transaction; if that batch is refused, the held changes are written on their own first and
/// the claim is tried alone.
pub fn claim(
    task: TaskId,
    agent: &str,
    kind: ExecutionKind,
    attempt: u32,
    reason: Option<String>,
    lease: Option<Lease>,
) -> Vec<Change> {
    let mut claim: Vec<Change> = reason
        .map(|text| Change::Comment { id: task, text })
        .into_iter()
        .collect();
    claim.push(Change::CreateExecution {
        task_id: task,
        kind,
        agent: agent.to_string(),
        attempt,
        lease,
    });
    claim
}
