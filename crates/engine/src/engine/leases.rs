//! The engine's side of leases (see `engine_core::lease`): renewing its live executions' leases in one
//! batch, recording other nodes' executions lost once their lease ran out, and stopping an
//! execution whose claim another engine took.

use domain::Timestamp;
use executor::StopReason;
use store::{Change, ExecutionFilter};

use super::Engine;
use crate::Error;

impl Engine {
    /// Renews the leases of the live executions and looks for other nodes' expired ones, when
    /// that is due.
    pub(super) async fn tend_leases(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        let due = self.leases.as_mut().is_some_and(|l| l.take_due(now));
        if !due {
            return Ok(());
        }
        self.renew_leases(now).await?;
        self.lose_expired_elsewhere(now).await
    }

    /// One batch for every execution whose end is not recorded yet; when a renewal in it is refused (another engine
    /// recorded that execution lost), each goes on its own, and an execution whose renewal is
    /// refused as stale is stopped: its work can no longer be recorded.
    async fn renew_leases(&mut self, now: Timestamp) -> Result<(), Error> {
        let Some(leases) = &self.leases else {
            return Ok(());
        };
        let renewals = leases.renewals(now);
        if renewals.is_empty() {
            return Ok(());
        }
        if self.apply("engine", renewals.clone()).await.is_ok() {
            return Ok(());
        }
        for renewal in renewals {
            let Change::RenewLease { id, .. } = renewal else {
                continue;
            };
            match self.apply("engine", vec![renewal]).await {
                Ok(_) => {}
                Err(Error::Store(e)) if e.is_stale() => {
                    tracing::warn!(execution = %id, "another engine took this execution's claim ({e}); stopping it");
                    if let Some(leases) = &mut self.leases {
                        leases.ended(id);
                    }
                    if let Some(active) = self.active.get(&id) {
                        active.stop.stop(StopReason::Cancelled);
                    }
                }
                Err(e) => tracing::warn!(execution = %id, "could not renew the lease: {e}"),
            }
        }
        Ok(())
    }

    /// Records other nodes' executions lost whose lease ran out, and puts their tasks back by
    /// the normal rules. The store refuses it for a lease renewed meanwhile, which is left be.
    pub(super) async fn lose_expired_elsewhere(&mut self, now: Timestamp) -> Result<(), Error> {
        let Some(leases) = &self.leases else {
            return Ok(());
        };
        let active = self
            .store
            .executions(&ExecutionFilter {
                active_only: true,
                ..ExecutionFilter::default()
            })
            .await?;
        let expired: Vec<domain::Execution> = leases
            .expired_elsewhere(active.iter(), now)
            .into_iter()
            .cloned()
            .collect();
        for execution in expired {
            let end = engine_core::ending::lost(&execution);
            // The task as the store has it now: the other node may have changed it last.
            if let Some(task) = self.store.task(execution.task_id).await? {
                self.snapshot.insert(task);
            }
            let mut changes = vec![Change::LoseExpired { id: execution.id }];
            changes.extend(self.settle(execution.task_id, &end, now).0);
            match self.apply("engine", changes).await {
                Ok(_) => {
                    tracing::warn!(
                        execution = %execution.id,
                        task = %execution.task_id,
                        "recorded lost: the lease of the node running it ran out"
                    );
                    self.summary.recovered += 1;
                }
                Err(e) => tracing::debug!(execution = %execution.id, "left as it is: {e}"),
            }
        }
        Ok(())
    }
}
