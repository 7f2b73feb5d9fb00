//! The model gateway's notices, carried out: each is translated into the core's terms and
//! handed to `engine_core::spending::Spending`, which decides (see its documentation: budget
//! stops after `BUDGET_GRACE`, provider pauses, refusals kept for an execution's end); what it
//! decides is recorded and done here. All time is the engine's clock.

use engine_core::spending::Notice;
use executor::StopReason;
use store::Change;

use super::Engine;
use crate::Error;

/// A gateway notice in the core's terms.
fn translate(notice: gateway::Notice) -> Notice {
    match notice {
        gateway::Notice::Usage(u) => Notice::Record(Change::RecordModelUsage {
            id: u.execution,
            tokens: u.tokens,
            model: u.model,
            cost_micros: u.cost_micros,
        }),
        gateway::Notice::Waiting(w) => Notice::Waiting {
            execution: w.execution,
            change: Change::RecordModelWaiting {
                id: w.execution,
                model: w.model,
                attempt: w.attempt,
                delay_ms: w.delay.as_millis(),
                status: w.status,
            },
        },
        gateway::Notice::ProviderPaused(p) => Notice::ProviderPaused {
            execution: p.execution,
            provider: p.provider.clone(),
            until: p.until,
            change: Change::PauseProvider {
                id: p.execution,
                provider: p.provider,
                until: p.until,
                reason: p.reason,
            },
        },
        gateway::Notice::PausedRefusal(p) => Notice::PausedRefusal {
            execution: p.execution,
            description: p.describe(),
            until: p.until,
        },
        gateway::Notice::Fallback(f) => Notice::Record(Change::RecordModelFallback {
            id: f.execution,
            model: f.model,
            fallback: f.fallback,
            reason: f.reason,
        }),
        gateway::Notice::ProviderThrottled(t) => Notice::Record(Change::ThrottleProvider {
            id: t.execution,
            provider: t.provider,
            limit: t.limit,
        }),
        gateway::Notice::BudgetExceeded(b) => Notice::BudgetExceeded {
            execution: b.execution,
            reason: b.reason,
        },
    }
}

impl Engine {
    /// Records what the gateway reports and does what `Spending` decides of it.
    pub(super) async fn record_notices(
        &mut self,
        notices: Vec<gateway::Notice>,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let mut changes = Vec::new();
        for notice in notices {
            let active = &self.active;
            let noticed = self.spending.notice(
                translate(notice),
                |id| active.contains_key(&id),
                &mut self.snapshot,
                now,
            );
            if let Some(active) = noticed.activity.and_then(|id| self.active.get(&id)) {
                active.shared.touch(now);
            }
            if let Some((id, reason)) = noticed.over_budget
                && let Some(active) = self.active.get_mut(&id)
            {
                // No timeout or stall kill either: this execution ends as over budget.
                active.kill_requested = true;
                active.shared.set_stop_summary(reason);
            }
            self.dirty |= noticed.dirty;
            changes.extend(noticed.record);
        }
        self.apply_tolerant(changes).await
    }

    /// Records the end of every provider pause that is over by `now`; the gateway lets the
    /// provider's requests through again by the same clock.
    pub(super) async fn end_pauses(&mut self, now: domain::Timestamp) -> Result<(), Error> {
        let changes = self.spending.end_pauses(&mut self.snapshot, now);
        self.apply_tolerant(changes).await
    }

    /// Pauses recorded by an engine that stopped before they ended hold on: in the
    /// scheduler's view and at the gateway.
    pub(super) async fn restore_pauses(&mut self) -> Result<(), Error> {
        for standing in self.store.providers().await? {
            let (Some(until), Some(id)) = (standing.paused_until, standing.paused_by) else {
                continue;
            };
            if let Some(gateway) = &self.gateway {
                gateway.handle.pause_provider(
                    &standing.name,
                    until,
                    standing.pause_reason.as_deref().unwrap_or("quota"),
                );
            }
            // One already over is recorded as ended at the first decision.
            self.spending
                .restore_pause(&mut self.snapshot, standing.name, until, id);
        }
        Ok(())
    }

    /// Stops the executions over budget whose grace has run out.
    pub(super) fn stop_over_budget(&mut self) {
        for id in self.spending.take_stops(self.clock.now()) {
            if let Some(active) = self.active.get(&id) {
                active.stop.stop(StopReason::BudgetExceeded);
            }
        }
    }
}
