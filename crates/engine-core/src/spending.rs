//! What the model gateway says about running executions, and what is done about it: the rules
//! for gateway notices, kept here once for [`crate::Core`] and the engine's runner.
//!
//! - Usage, fallbacks, throttles and waits are recorded; a wait (a rate limit waited out) is a
//!   sign of life, not a stall.
//! - A provider pause stands in the scheduler's view until it is over, and is then recorded as
//!   ended by the execution whose request started it.
//! - A refusal because a provider is paused is kept for the execution's end: a failure then is
//!   the provider's (see [`crate::ending::verdict`]).
//! - A refusal over budget marks the execution: no timeout or stall kill any more, it ends as
//!   `budget_exceeded` (unless cancelled), and it is stopped [`BUDGET_GRACE`] after the notice
//!   if it has not ended by itself. The refusal reaches the agent in its provider's error shape
//!   at the same moment; an agent CLI prints the error and exits, and stopping it at once would
//!   race that and lose its last words. It can make no more model requests meanwhile: the
//!   gateway refuses every one.
//!
//! All time is what the caller hands in, from the injected clock.

use std::collections::BTreeMap;

use domain::{Duration, ExecutionId, ExecutionState, Timestamp};
use scheduler::Snapshot;
use tracker::Change;

use crate::ending::{Verdict, verdict};

/// How long an execution whose request was refused over budget has to end by itself before it
/// is stopped.
pub const BUDGET_GRACE: Duration = Duration::from_secs(2);

/// A gateway notice, in the core's terms (the runner translates the gateway's own).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Usage, a fallback to another model, a throttled provider: recorded, nothing more.
    Record(Change),
    /// A request of `execution` waited out a rate limit: recorded, and a sign of life.
    Waiting {
        execution: ExecutionId,
        change: Change,
    },
    /// A request of `execution` found `provider`'s quota used up: it is paused until `until`.
    ProviderPaused {
        execution: ExecutionId,
        provider: String,
        until: Timestamp,
        change: Change,
    },
    /// A request of `execution` was refused because its provider is paused until `until`.
    PausedRefusal {
        execution: ExecutionId,
        description: String,
        until: Timestamp,
    },
    /// A request of `execution` was refused because a budget is used up.
    BudgetExceeded {
        execution: ExecutionId,
        reason: String,
    },
}

/// What to do about one notice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Noticed {
    /// A change to record.
    pub record: Option<Change>,
    /// An execution that showed a sign of life now.
    pub activity: Option<ExecutionId>,
    /// An execution newly over budget: no timeout or stall kill for it any more, and the reason
    /// is the summary of its stop.
    pub over_budget: Option<(ExecutionId, String)>,
    /// The scheduler's view changed (a provider paused).
    pub dirty: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Over {
    reason: String,
    /// When it is stopped if it has not ended; `None` once the stop was asked for.
    stop_at: Option<Timestamp>,
}

/// What the gateway said of the executions that run, and the provider pauses that stand.
#[derive(Debug, Clone, Default)]
pub struct Spending {
    over: BTreeMap<ExecutionId, Over>,
    refused: BTreeMap<ExecutionId, (String, Timestamp)>,
    /// For each paused provider, the execution whose request started the pause: its end is
    /// recorded there.
    paused_by: BTreeMap<String, ExecutionId>,
}

impl Spending {
    /// Takes in one notice at `now`. `running` says whether an execution still runs here:
    /// what is said of one that ended is only recorded.
    pub fn notice(
        &mut self,
        notice: Notice,
        running: impl Fn(ExecutionId) -> bool,
        snapshot: &mut Snapshot,
        now: Timestamp,
    ) -> Noticed {
        let mut noticed = Noticed::default();
        match notice {
            Notice::Record(change) => noticed.record = Some(change),
            Notice::Waiting { execution, change } => {
                noticed.activity = running(execution).then_some(execution);
                noticed.record = Some(change);
            }
            Notice::ProviderPaused {
                execution,
                provider,
                until,
                change,
            } => {
                snapshot.paused_providers.insert(provider.clone(), until);
                self.paused_by.insert(provider, execution);
                noticed.dirty = true;
                noticed.record = Some(change);
            }
            Notice::PausedRefusal {
                execution,
                description,
                until,
            } => {
                if running(execution) {
                    self.refused.insert(execution, (description, until));
                }
            }
            Notice::BudgetExceeded { execution, reason } => {
                if running(execution) && !self.over.contains_key(&execution) {
                    self.over.insert(
                        execution,
                        Over {
                            reason: reason.clone(),
                            stop_at: Some(now.plus(BUDGET_GRACE)),
                        },
                    );
                    noticed.over_budget = Some((execution, reason));
                }
            }
        }
        noticed
    }

    /// A pause an engine that stopped recorded, which still stands: in the scheduler's view,
    /// to be recorded as ended by `by` once over.
    pub fn restore_pause(
        &mut self,
        snapshot: &mut Snapshot,
        provider: String,
        until: Timestamp,
        by: ExecutionId,
    ) {
        snapshot.paused_providers.insert(provider.clone(), until);
        self.paused_by.insert(provider, by);
    }

    /// The pauses over by `now`, out of the scheduler's view, as the changes that record their
    /// end; the gateway lets the provider's requests through again by the same clock.
    pub fn end_pauses(&mut self, snapshot: &mut Snapshot, now: Timestamp) -> Vec<Change> {
        let ended: Vec<String> = snapshot
            .paused_providers
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        let mut changes = Vec::new();
        for provider in ended {
            snapshot.paused_providers.remove(&provider);
            if let Some(id) = self.paused_by.remove(&provider) {
                changes.push(Change::ResumeProvider { id, provider });
            }
        }
        changes
    }

    /// Whether `execution` was refused over budget, and why.
    pub fn over_budget(&self, execution: ExecutionId) -> Option<&str> {
        self.over.get(&execution).map(|o| o.reason.as_str())
    }

    /// When the next execution over budget is to be stopped.
    pub fn stop_due(&self) -> Option<Timestamp> {
        self.over.values().filter_map(|o| o.stop_at).min()
    }

    /// The executions over budget whose grace has run out by `now`: stop each, once.
    pub fn take_stops(&mut self, now: Timestamp) -> Vec<ExecutionId> {
        let mut stops = Vec::new();
        for (id, over) in &mut self.over {
            if over.stop_at.is_some_and(|at| at <= now) {
                over.stop_at = None;
                stops.push(*id);
            }
        }
        stops
    }

    /// `execution` ended in `state` with `summary`: the verdict its end is recorded with, and
    /// what was kept of it is forgotten. `metered_over` is the gateway's own count: a budget
    /// used up by the requests it made, though no later request was refused.
    pub fn ended(
        &mut self,
        execution: ExecutionId,
        state: ExecutionState,
        summary: Option<String>,
        metered_over: Option<String>,
    ) -> Verdict {
        let over = self
            .over
            .remove(&execution)
            .map(|o| o.reason)
            .or(metered_over);
        let refused = self.refused.remove(&execution);
        verdict(
            state,
            summary,
            over.as_deref(),
            refused.as_ref().map(|(why, until)| (why.as_str(), *until)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_execution_over_budget_is_stopped_once_after_the_grace_and_ends_over_budget() {
        let mut spending = Spending::default();
        let mut snapshot = Snapshot::default();
        let id = ExecutionId(7);
        let now = Timestamp(1_000);
        let notice = Notice::BudgetExceeded {
            execution: id,
            reason: "the tree's budget is used up".into(),
        };
        let noticed = spending.notice(notice.clone(), |_| true, &mut snapshot, now);
        assert_eq!(
            noticed.over_budget,
            Some((id, "the tree's budget is used up".into()))
        );
        // Said again, it changes nothing: the grace runs from the first.
        let later = now.plus(Duration::from_millis(500));
        let again = spending.notice(notice, |_| true, &mut snapshot, later);
        assert_eq!(again.over_budget, None);
        assert_eq!(spending.stop_due(), Some(now.plus(BUDGET_GRACE)));
        assert!(spending.take_stops(later).is_empty());
        assert_eq!(spending.take_stops(now.plus(BUDGET_GRACE)), vec![id]);
        assert!(spending.take_stops(now.plus(BUDGET_GRACE)).is_empty());
        assert_eq!(spending.stop_due(), None);
        let v = spending.ended(id, ExecutionState::Failed, Some("exit 1".into()), None);
        assert_eq!(v.state, ExecutionState::BudgetExceeded);
        assert_eq!(spending.over_budget(id), None);
    }

    #[test]
    fn what_is_said_of_an_ended_execution_is_only_recorded() {
        let mut spending = Spending::default();
        let mut snapshot = Snapshot::default();
        let id = ExecutionId(3);
        let notice = Notice::BudgetExceeded {
            execution: id,
            reason: "over".into(),
        };
        let noticed = spending.notice(notice, |_| false, &mut snapshot, Timestamp(0));
        assert_eq!(noticed, Noticed::default());
        assert_eq!(spending.stop_due(), None);
    }

    #[test]
    fn a_pause_stands_until_it_is_over_and_is_ended_by_the_execution_that_started_it() {
        let mut spending = Spending::default();
        let mut snapshot = Snapshot::default();
        let until = Timestamp(10_000);
        let change = Change::PauseProvider {
            id: ExecutionId(4),
            provider: "anthropic".into(),
            until,
            reason: "quota".into(),
        };
        let notice = Notice::ProviderPaused {
            execution: ExecutionId(4),
            provider: "anthropic".into(),
            until,
            change: change.clone(),
        };
        let noticed = spending.notice(notice, |_| true, &mut snapshot, Timestamp(0));
        assert!(noticed.dirty);
        assert_eq!(noticed.record, Some(change));
        assert!(
            spending
                .end_pauses(&mut snapshot, Timestamp(9_999))
                .is_empty()
        );
        assert_eq!(
            spending.end_pauses(&mut snapshot, until),
            vec![Change::ResumeProvider {
                id: ExecutionId(4),
                provider: "anthropic".into()
            }]
        );
        assert!(snapshot.paused_providers.is_empty());
    }
}
