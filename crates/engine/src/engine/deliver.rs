//! The organisation's tick: on the engine's clock, every [`MAIL_TICK`], the messages that can
//! never be delivered become dead letters with their reason, and the escalations a coordinator
//! left open past its agency's deadline go up to people — each bounded per tick, so that a
//! backlog is worked off over a few ticks instead of holding the loop — and the agencies'
//! spend today is read again for the scheduler (`agency_budgets.rs`).

use app::Actor;
use domain::{Duration, Timestamp};

use super::Engine;

/// How often the tick runs.
pub(super) const MAIL_TICK: Duration = Duration(1000);

/// The most dead letters, and the most escalations sent up, one tick records.
pub(super) const PER_TICK: u32 = 100;

/// When the tick is next due; `None` until the first, which runs at once.
#[derive(Debug, Default)]
pub(super) struct MailTick {
    next: Option<Timestamp>,
}

impl MailTick {
    pub(super) fn due(&self) -> Option<Timestamp> {
        self.next
    }

    fn take_due(&mut self, now: Timestamp) -> bool {
        if self.next.is_some_and(|at| at > now) {
            return false;
        }
        self.next = Some(Timestamp(now.0.saturating_add(MAIL_TICK.0 as i64)));
        true
    }
}

impl Engine {
    /// Runs the tick when it is due. A failure is logged and tried again at the next tick:
    /// the mailboxes' upkeep never stops the engine.
    pub(super) async fn tend_mail(&mut self) {
        if self.stopping || !self.mail.take_due(self.clock.now()) {
            return;
        }
        match self
            .command(&Actor::Engine, app::SweepMessages { limit: PER_TICK })
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!("{n} messages became dead letters"),
            Err(e) => tracing::warn!("sweeping the mailboxes failed: {e}"),
        }
        match self
            .command(&Actor::Engine, app::EscalateOverdue { limit: PER_TICK })
            .await
        {
            Ok(up) => {
                for m in up {
                    tracing::info!(
                        "escalation {} went up to people: {}",
                        m.correlation.as_deref().unwrap_or("?"),
                        m.headline()
                    );
                }
            }
            Err(e) => tracing::warn!("sending overdue escalations up failed: {e}"),
        }
        if let Err(e) = self.refresh_agency_spend().await {
            tracing::warn!("reading the agencies' spend failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_runs_at_once_then_every_mail_tick() {
        let mut tick = MailTick::default();
        assert!(tick.take_due(Timestamp(5_000)));
        assert_eq!(tick.due(), Some(Timestamp(6_000)));
        assert!(!tick.take_due(Timestamp(5_999)));
        assert!(tick.take_due(Timestamp(6_000)));
        assert_eq!(tick.due(), Some(Timestamp(7_000)));
    }
}
