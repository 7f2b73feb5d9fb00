//! The rules of claims shared between engines: fencing tokens, lease renewals, and recording as
//! lost an execution whose lease ran out.
//!
//! The token check needs nothing but the execution and its task: an execution holds its task's
//! claim while it is not lost and no later claim of the task was made (the task's claim count is
//! still its token). Leases are about time only; the token is what refuses a stale worker, so a
//! worker whose lease ran out unnoticed by anyone may go on until another engine records its
//! execution lost.

use domain::{EventKind, ExecutionId, ExecutionState, Fence, Timestamp};

use crate::decide::Decision;
use crate::refusal::refused;
use crate::{Change, Refusal};

impl Decision<'_> {
    /// Decides `change` for `execution` if its token `fence` still holds the task's claim.
    pub(crate) fn fenced(
        &mut self,
        execution: ExecutionId,
        fence: Fence,
        change: &Change,
    ) -> Result<(), Refusal> {
        if matches!(change, Change::Fenced { .. }) {
            return refused("a fenced change holds one plain change, not another fenced one");
        }
        self.check_fence(execution, fence)?;
        self.change(change)
    }

    fn check_fence(&self, execution: ExecutionId, fence: Fence) -> Result<(), Refusal> {
        let e = self.execution(execution)?;
        let stale = |why: String| Err(Refusal::Stale { execution, why });
        if e.fence != fence {
            return stale(format!(
                "the change carries token {fence}, but the execution's token is {}",
                e.fence
            ));
        }
        if e.state == ExecutionState::Lost {
            return stale("it was recorded lost".into());
        }
        let task = self.task(e.task_id)?;
        if task.executions != fence {
            return stale(format!(
                "task #{} was claimed again since: its claim {} is not token {fence}",
                task.id, task.executions
            ));
        }
        Ok(())
    }

    pub(crate) fn renew_lease(
        &mut self,
        id: ExecutionId,
        fence: Fence,
        until: Timestamp,
    ) -> Result<(), Refusal> {
        let e = self.execution(id)?;
        if e.state.is_terminal() {
            return Err(Refusal::Stale {
                execution: id,
                why: format!("it finished as {}", e.state),
            });
        }
        if e.fence != fence {
            return Err(Refusal::Stale {
                execution: id,
                why: format!(
                    "the renewal carries token {fence}, but the execution's token is {}",
                    e.fence
                ),
            });
        }
        if e.lease.is_none() {
            return refused(format!(
                "execution #{id} was claimed without a lease, so there is none to renew"
            ));
        }
        if until <= self.now {
            return refused(format!(
                "a renewed lease must end after the renewal, but {until} is not after {}",
                self.now
            ));
        }
        self.execution_event(id, EventKind::ExecutionLeaseRenewed { until });
        Ok(())
    }

    pub(crate) fn lose_expired(&mut self, id: ExecutionId) -> Result<(), Refusal> {
        let e = self.execution(id)?;
        if e.state.is_terminal() {
            return Err(Refusal::AlreadyFinished {
                execution: id,
                state: e.state,
            });
        }
        let Some(lease) = &e.lease else {
            return refused(format!(
                "execution #{id} was claimed without a lease: only the engine that claimed it \
                 can find it lost, when it starts again"
            ));
        };
        if !lease.expired(self.now) {
            return refused(format!(
                "execution #{id} is held by node {} until {}; it can be recorded lost only once \
                 that lease runs out",
                lease.node, lease.until
            ));
        }
        let (from, kind, usage) = (e.state, e.kind, e.usage);
        let summary = format!(
            "node {} stopped renewing its lease, which ran out at {}; recorded lost",
            lease.node, lease.until
        );
        self.execution_event(
            id,
            EventKind::ExecutionStateChanged {
                from,
                to: ExecutionState::Lost,
                reason: Some("its lease ran out".into()),
            },
        );
        self.execution_event(
            id,
            EventKind::ExecutionFinished {
                kind,
                state: ExecutionState::Lost,
                usage,
                summary: Some(summary),
                exit_code: None,
            },
        );
        Ok(())
    }
}
