//! The engine's side of leases (see `engine_core::lease`): renewing its live executions' leases in
//! batches written beside the loop, recording other nodes' executions lost once their lease ran out, and stopping an
//! execution whose claim another engine took.

use std::sync::Arc;

use domain::{Clock, ExecutionId, Timestamp};
use executor::StopReason;
use store::{Applied, Change, ExecutionFilter, Store};
use tokio::sync::mpsc;

use super::Engine;
use crate::Error;

/// The renewal round being written beside the loop, and where it reports.
///
/// The loop does not wait for the store while leases are renewed: a round is a task of the
/// runtime that writes its batches (see `engine_core::lease::RENEWAL_BATCH`) and reports what
/// was written and refused, which the loop takes in like any other input. A round that is
/// still being written when the next falls due is not doubled; the next comes a third of the
/// lease later, which the length allows for (two renewals in a row may be late).
pub(super) struct Renewing {
    reports: mpsc::UnboundedSender<Renewed>,
    /// Taken by the loop when it starts.
    receiver: Option<mpsc::UnboundedReceiver<Renewed>>,
    in_flight: bool,
}

/// What a round of renewals wrote and what the store refused.
#[derive(Default)]
pub(super) struct Renewed {
    applied: Vec<Applied>,
    /// Renewals refused as stale: another engine recorded the execution lost, or its end was
    /// written after the round began.
    stale: Vec<(ExecutionId, store::Error)>,
    failed: Vec<(ExecutionId, store::Error)>,
}

impl Renewing {
    pub(super) fn new() -> Renewing {
        let (reports, receiver) = mpsc::unbounded_channel();
        Renewing {
            reports,
            receiver: Some(receiver),
            in_flight: false,
        }
    }

    /// Where the rounds report; the loop takes it once.
    pub(super) fn take_reports(&mut self) -> mpsc::UnboundedReceiver<Renewed> {
        self.receiver.take().expect("an engine serves once")
    }
}

impl Engine {
    /// Renews the leases of the live executions and looks for other nodes' expired ones, when
    /// that is due. The renewals are written beside the loop (see [`Renewing`]).
    pub(super) async fn tend_leases(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        let due = self.leases.as_mut().is_some_and(|l| l.take_due(now));
        if !due {
            return Ok(());
        }
        self.start_renewals(now);
        self.lose_expired_elsewhere(now).await
    }

    /// Starts writing the renewals of every execution whose end is not recorded yet, in
    /// batches, unless the round before is still being written.
    fn start_renewals(&mut self, now: Timestamp) {
        let Some(leases) = &self.leases else {
            return;
        };
        if self.renewing.in_flight {
            tracing::debug!("the last round of lease renewals is still being written");
            return;
        }
        let batches = leases.renewal_batches(now);
        if batches.is_empty() {
            return;
        }
        self.renewing.in_flight = true;
        let store = self.store.clone();
        let clock = self.clock.clone();
        let reports = self.renewing.reports.clone();
        tokio::spawn(async move {
            let renewed = renew(&*store, &clock, batches).await;
            // A closed channel means the loop has ended; nothing is left to renew for.
            let _ = reports.send(renewed);
        });
    }

    /// Takes in what a round of renewals wrote. An execution whose renewal was refused as
    /// stale while this engine still holds it is stopped: another engine took its claim, and
    /// its work can no longer be recorded. One whose end was written meanwhile is left be.
    pub(super) fn renewed(&mut self, renewed: Renewed) {
        self.renewing.in_flight = false;
        for applied in &renewed.applied {
            self.absorb_renewal(applied);
        }
        for (id, e) in renewed.stale {
            let held = self.leases.as_ref().is_some_and(|l| l.holds(id));
            if !held {
                tracing::debug!(execution = %id, "a renewal overtaken by the execution's end: {e}");
                continue;
            }
            tracing::warn!(execution = %id, "another engine took this execution's claim ({e}); stopping it");
            if let Some(leases) = &mut self.leases {
                leases.ended(id);
            }
            if let Some(active) = self.active.get(&id) {
                active.stop.stop(StopReason::Cancelled);
            }
        }
        for (id, e) in renewed.failed {
            tracing::warn!(execution = %id, "could not renew the lease: {e}");
        }
    }

    /// The events of a renewal batch, for following the log: the engine's own, so following
    /// skips them. The rows are left out of the view: a renewal changes only the lease, which
    /// the view does not use, and the loop may have taken in a newer row of the same execution
    /// (its end) before this report came. Events the loop already read back from the log
    /// while the round was written are not counted twice.
    fn absorb_renewal(&mut self, applied: &Applied) {
        for event in &applied.events {
            if event.seq <= self.followed_seq {
                continue;
            }
            self.own_seqs.insert(event.seq);
            if let Some(tx) = &self.options.events {
                let _ = tx.send(event.clone());
            }
        }
        // The loop's own writes may have come after the round's in the log but before it in
        // the view: what is now known to be the engine's own, in a row, needs no reading back.
        while self.own_seqs.first() == Some(&(self.followed_seq + 1)) {
            self.own_seqs.pop_first();
            self.followed_seq += 1;
        }
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

/// Writes a round of renewals, batch by batch, letting other callers of the store in between.
/// A batch that is refused is written lease by lease, so that one execution another engine
/// took does not keep the others' leases from being renewed.
async fn renew(store: &dyn Store, clock: &Arc<dyn Clock>, batches: Vec<Vec<Change>>) -> Renewed {
    let mut renewed = Renewed::default();
    for batch in batches {
        let now = || clock.now();
        match super::apply_waiting(store, "engine", now, batch.clone()).await {
            Ok(applied) => renewed.applied.push(applied),
            Err(e) => {
                tracing::debug!("renewing a batch of leases together failed: {e}");
                for renewal in batch {
                    let Change::RenewLease { id, .. } = renewal else {
                        continue;
                    };
                    match super::apply_waiting(store, "engine", now, vec![renewal]).await {
                        Ok(applied) => renewed.applied.push(applied),
                        Err(e) if e.is_stale() => renewed.stale.push((id, e)),
                        Err(e) => renewed.failed.push((id, e)),
                    }
                }
            }
        }
        tokio::task::yield_now().await;
    }
    renewed
}
