//! Changes the core holds back before writing them: write-behind progress and held ends.
//!
//! Progress (preparing, a process's start and exit, a validation) may wait up to the
//! write-behind delay, and goes with the execution's end when that comes sooner; an end (with
//! what it makes of its task) waits for the decision that follows at once and goes into the
//! transaction of the claims that decision makes. So a short execution costs one transaction.
//! Nothing depends on them being written sooner: the live state is in memory, and a crash finds
//! the execution active either way.
//!
//! What [`Held`] guarantees: whatever is taken comes out exactly once, progress first and then
//! ends, each in the order it came in; while anything is held a deadline stands no later than
//! the write-behind delay after the oldest held progress, and no later than the moment the
//! oldest held end came in.

use domain::{Duration, Timestamp};
use tracker::Change;

/// Progress and ends not yet written, and when they must be at the latest.
#[derive(Debug, Clone, Default)]
pub struct Held {
    progress: Vec<Change>,
    ends: Vec<Vec<Change>>,
    due: Option<Timestamp>,
}

impl Held {
    /// Holds one progress update that came in at `now`, due `behind` later at the latest.
    pub fn progress(&mut self, change: Change, now: Timestamp, behind: Duration) {
        self.progress.push(change);
        self.due.get_or_insert(now.plus(behind));
    }

    /// Holds an execution's end for the decision that follows: due at once.
    pub fn end(&mut self, changes: Vec<Change>, now: Timestamp) {
        self.ends.push(changes);
        self.due = Some(self.due.map_or(now, |at| at.min(now)));
    }

    /// When what is held must be written at the latest; `None` when nothing is held.
    pub fn due(&self) -> Option<Timestamp> {
        self.due
    }

    pub fn is_due(&self, now: Timestamp) -> bool {
        self.due.is_some_and(|at| now >= at)
    }

    pub fn is_empty(&self) -> bool {
        self.progress.is_empty() && self.ends.is_empty()
    }

    /// Everything held, progress then ends, as one batch to write now.
    pub fn take(&mut self) -> Vec<Change> {
        self.due = None;
        let mut batch = std::mem::take(&mut self.progress);
        batch.extend(std::mem::take(&mut self.ends).into_iter().flatten());
        batch
    }
}
