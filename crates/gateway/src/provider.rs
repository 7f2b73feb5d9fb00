//! What the gateway keeps per provider across requests: a pause after a used-up quota, and an
//! adaptive limit on requests under way that bursts of 429s lower.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use domain::{Duration, Timestamp};
use tokio::sync::Notify;

use crate::config::Throttle;

/// A provider paused until `until` because it said the account's quota is used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pause {
    pub(crate) until: Timestamp,
    pub(crate) reason: String,
}

#[derive(Debug, Default)]
struct Limiter {
    /// The most requests under way at once; `None` while no burst of 429s lowered it.
    limit: Option<usize>,
    /// Where the limit returns before it is lifted: what was under way when it was first
    /// lowered.
    ceiling: usize,
    under_way: usize,
    /// The 429s since the limit last changed, within the window.
    recent: VecDeque<Timestamp>,
    /// The last 429 or change of the limit: growth waits for a quiet period after it.
    last_stir: Timestamp,
}

/// One provider's shared state.
#[derive(Debug)]
pub(crate) struct ProviderState {
    pause: Mutex<Option<Pause>>,
    limiter: Mutex<Limiter>,
    room: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update below is complete between statements.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A place among a provider's requests under way, given back when dropped.
#[derive(Debug)]
pub(crate) struct Place(Arc<ProviderState>);

impl Drop for Place {
    fn drop(&mut self) {
        let mut limiter = lock(&self.0.limiter);
        limiter.under_way = limiter.under_way.saturating_sub(1);
        drop(limiter);
        self.0.room.notify_waiters();
    }
}

impl ProviderState {
    pub(crate) fn new() -> ProviderState {
        ProviderState {
            pause: Mutex::new(None),
            limiter: Mutex::new(Limiter::default()),
            room: Notify::new(),
        }
    }

    /// The pause in force at `now`; an expired one is forgotten.
    pub(crate) fn paused(&self, now: Timestamp) -> Option<Pause> {
        let mut pause = lock(&self.pause);
        if pause.as_ref().is_some_and(|p| p.until <= now) {
            *pause = None;
        }
        pause.clone()
    }

    /// Pauses the provider until `until`, or longer if it already is. True when this moved the
    /// end of the pause (a new pause, or a later reset), which the engine must hear of.
    pub(crate) fn pause(&self, now: Timestamp, until: Timestamp, reason: &str) -> bool {
        let mut pause = lock(&self.pause);
        match pause.as_mut() {
            Some(p) if p.until > now && p.until >= until => false,
            _ => {
                *pause = Some(Pause {
                    until,
                    reason: reason.to_owned(),
                });
                true
            }
        }
    }

    /// The current limit on requests under way, `None` for none.
    #[cfg(test)]
    pub(crate) fn limit(&self) -> Option<usize> {
        lock(&self.limiter).limit
    }

    /// Waits for a place among the provider's requests under way.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Place {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut limiter = lock(&self.limiter);
                if limiter.limit.is_none_or(|l| limiter.under_way < l) {
                    limiter.under_way += 1;
                    return Place(Arc::clone(self));
                }
            }
            notified.await;
        }
    }

    /// A 429 at `now`: the new limit when this completes a burst.
    pub(crate) fn rate_limited(&self, now: Timestamp, policy: &Throttle) -> Option<usize> {
        let mut limiter = lock(&self.limiter);
        limiter.last_stir = now;
        let window_start = Timestamp(now.0.saturating_sub(policy.window.0 as i64));
        while limiter.recent.front().is_some_and(|t| *t < window_start) {
            limiter.recent.pop_front();
        }
        limiter.recent.push_back(now);
        if (limiter.recent.len() as u64) < u64::from(policy.burst.max(1)) {
            return None;
        }
        limiter.recent.clear();
        // The place of the refused request itself counts: it is still held.
        let current = limiter.limit.unwrap_or(limiter.under_way.max(1));
        let lowered = (current / 2).max(1);
        if limiter.limit.is_none() {
            limiter.ceiling = current;
        }
        if limiter.limit == Some(lowered) {
            return None;
        }
        limiter.limit = Some(lowered);
        Some(lowered)
    }

    /// A success at `now`. When the limit is lowered and the provider has been quiet for the
    /// policy's quiet period, the limit grows by one: `Some(new)`, with `Some(None)` when it is
    /// lifted.
    pub(crate) fn succeeded(&self, now: Timestamp, policy: &Throttle) -> Option<Option<usize>> {
        let mut limiter = lock(&self.limiter);
        let limit = limiter.limit?;
        if now.since(limiter.last_stir) < policy.quiet.max(Duration::from_millis(1)) {
            return None;
        }
        limiter.last_stir = now;
        let grown = limit + 1;
        let new = if grown >= limiter.ceiling {
            None
        } else {
            Some(grown)
        };
        limiter.limit = new;
        drop(limiter);
        self.room.notify_waiters();
        Some(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Throttle {
        Throttle {
            burst: 3,
            window: Duration::from_secs(10),
            quiet: Duration::from_secs(30),
        }
    }

    #[tokio::test]
    async fn a_burst_halves_the_limit_and_quiet_successes_restore_it() {
        let state = Arc::new(ProviderState::new());
        let places: Vec<Place> = futures_places(&state, 8).await;
        let t = |s: i64| Timestamp(s * 1000);
        assert_eq!(state.rate_limited(t(0), &policy()), None);
        assert_eq!(state.rate_limited(t(1), &policy()), None);
        assert_eq!(state.rate_limited(t(2), &policy()), Some(4));
        // Two 429s a window apart are no burst.
        assert_eq!(state.rate_limited(t(3), &policy()), None);
        assert_eq!(state.rate_limited(t(20), &policy()), None);
        assert_eq!(state.rate_limited(t(31), &policy()), None);
        drop(places);
        assert_eq!(state.succeeded(t(40), &policy()), None, "not quiet yet");
        assert_eq!(state.succeeded(t(61), &policy()), Some(Some(5)));
        assert_eq!(
            state.succeeded(t(62), &policy()),
            None,
            "once per quiet period"
        );
        assert_eq!(state.succeeded(t(92), &policy()), Some(Some(6)));
        assert_eq!(state.succeeded(t(122), &policy()), Some(Some(7)));
        assert_eq!(state.succeeded(t(152), &policy()), Some(None), "lifted");
        assert_eq!(state.limit(), None);
        assert_eq!(state.succeeded(t(999), &policy()), None);
    }

    #[tokio::test]
    async fn the_limit_never_goes_below_one_and_waiters_get_in() {
        let state = Arc::new(ProviderState::new());
        let first = state.acquire().await;
        for s in 0..9 {
            state.rate_limited(Timestamp(s), &policy());
        }
        assert_eq!(state.limit(), Some(1));
        let waiter = {
            let state = Arc::clone(&state);
            tokio::spawn(async move { state.acquire().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the one place is taken");
        drop(first);
        let _second = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter gets the place")
            .unwrap();
    }

    #[test]
    fn a_pause_ends_at_its_time_and_only_a_later_reset_extends_it() {
        let state = ProviderState::new();
        assert!(state.pause(Timestamp(0), Timestamp(100), "quota: x"));
        assert!(!state.pause(Timestamp(10), Timestamp(50), "quota: x"));
        assert!(state.pause(Timestamp(10), Timestamp(150), "quota: x"));
        assert_eq!(state.paused(Timestamp(149)).unwrap().until, Timestamp(150));
        assert_eq!(state.paused(Timestamp(150)), None);
        assert!(state.pause(Timestamp(200), Timestamp(300), "quota: y"));
    }

    async fn futures_places(state: &Arc<ProviderState>, n: usize) -> Vec<Place> {
        let mut places = Vec::new();
        for _ in 0..n {
            places.push(state.acquire().await);
        }
        places
    }
}
