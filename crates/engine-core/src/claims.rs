//! A claim as it is written, the same for [`crate::Core`] and the engine's runner: its changes,
//! the held writes that go before it, what to do when it is refused, and the execution it made.

use domain::{Execution, ExecutionKind, Lease, TaskId, Timestamp};
use scheduler::Snapshot;
use tracker::Change;

use crate::held::Taken;

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

/// A claim as the scheduler's dispatch makes it: what was held back goes first in its
/// transaction (one commit instead of two), the claim after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub task: TaskId,
    pub agent: String,
    pub kind: ExecutionKind,
    pub attempt: u32,
    /// Progress and ends held back when the claim was made (the ends of executions that made
    /// room for this one among them).
    pub held: Taken,
    /// The claim's own changes ([`claim`]).
    pub changes: Vec<Change>,
}

/// What to do when a claim's batch was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// Someone else changed the task first (a cancel from the CLI): read it again and take the
    /// store's word. Nothing is decided until then, or the same claim would be made again.
    Reload(TaskId),
    /// Any part may be what failed: write what was held on its own (piecewise, as held
    /// writes are), then try the claim alone.
    Apart { held: Taken, claim: Claim },
}

impl Claim {
    /// Everything the claim writes, in one transaction: what was held, then the claim.
    pub fn batch(&self) -> Vec<Change> {
        let mut batch = self.held.joined();
        batch.extend(self.changes.iter().cloned());
        batch
    }

    /// The claim's batch was refused as a whole.
    pub fn refused(mut self) -> Refused {
        if self.held.is_empty() {
            return Refused::Reload(self.task);
        }
        let held = std::mem::take(&mut self.held);
        Refused::Apart { held, claim: self }
    }

    /// The claim was written: the execution it made (the batch may have touched ended
    /// executions too; the claim is the task's active one), counted among the recent
    /// dispatches. `None` when the write made none.
    pub fn claimed(
        &self,
        snapshot: &mut Snapshot,
        executions: &[Execution],
        now: Timestamp,
    ) -> Option<Execution> {
        let execution = executions
            .iter()
            .rev()
            .find(|e| e.task_id == self.task && e.state.is_active())
            .cloned()?;
        snapshot.recent_dispatches.push(now);
        Some(execution)
    }
}
