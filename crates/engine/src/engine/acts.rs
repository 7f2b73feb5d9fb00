//! Performing a decision: the acts `engine_core::decision` makes of the scheduler's actions
//! (claims with the writes held before them, stops, tasks failed or closed), carried out in
//! order. The rules of what a decision writes live there, once, for the core and this runner.

use std::sync::Arc;

use control::ControlHub;
use domain::Timestamp;
use engine_core::decision::{Act, Acts, Context};

use super::Engine;
use crate::Error;
use crate::bus::Bus;

impl Engine {
    /// The acts `decision` asks for, with what this engine holds back, its leases and its
    /// approval policy.
    pub(super) fn acts(&mut self, decision: scheduler::Decision, now: Timestamp) -> Acts {
        let agents = &self.setup.agents;
        let leases = &self.leases;
        let policy = &self.setup.approvals;
        let cx = Context {
            can_run: &|agent| agents.contains_key(agent),
            lease: &|| leases.as_ref().map(|l| l.first(now)),
            approvals: &|labels| policy.wants(labels),
        };
        engine_core::decision::acts(decision, &self.snapshot, &mut self.held, &cx)
    }

    /// Carries out one act; false when a claim came to nothing.
    pub(super) async fn perform(
        &mut self,
        act: Act,
        now: Timestamp,
        bus: &dyn Bus,
        control: &Arc<ControlHub>,
    ) -> Result<bool, Error> {
        match act {
            Act::Claim(claim) => return self.dispatch(claim, now, bus, control).await,
            Act::Stop { execution, reason } => {
                if let Some(active) = self.active.get_mut(&execution) {
                    active.kill_requested = true;
                    active.stop.stop(reason);
                }
            }
            Act::Write {
                held,
                changes,
                ended,
            } => {
                self.write_held(held).await?;
                self.apply("engine", changes).await?;
                if let Some(task) = ended {
                    self.after_task_ended(task);
                }
            }
        }
        Ok(true)
    }
}

impl Engine {
    /// Asks a running execution to stop, for a reason the core gave; one no longer running is
    /// left be.
    pub(super) fn stop_execution(
        &self,
        execution: domain::ExecutionId,
        reason: engine_core::StopReason,
    ) {
        if let Some(active) = self.active.get(&execution) {
            active.stop.stop(reason);
        }
    }
}
