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

/// How long progress updates may wait before they are written, unless told otherwise.
pub const WRITE_BEHIND: Duration = Duration::from_millis(50);

/// Progress and ends not yet written, and when they must be at the latest.
#[derive(Debug, Clone)]
pub struct Held {
    progress: Vec<Change>,
    ends: Vec<Vec<Change>>,
    due: Option<Timestamp>,
    /// How long progress may wait.
    behind: Duration,
}

impl Default for Held {
    fn default() -> Held {
        Held::new(WRITE_BEHIND)
    }
}

/// What [`Held::take_apart`] hands over, to be written in this order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Taken {
    pub progress: Vec<Change>,
    pub ends: Vec<Vec<Change>>,
}

impl Taken {
    pub fn is_empty(&self) -> bool {
        self.progress.is_empty() && self.ends.is_empty()
    }

    /// Progress, then ends, as one batch.
    pub fn joined(&self) -> Vec<Change> {
        self.progress
            .iter()
            .chain(self.ends.iter().flatten())
            .cloned()
            .collect()
    }
}

impl Held {
    /// Nothing held; progress may wait `behind`.
    pub fn new(behind: Duration) -> Held {
        Held {
            progress: Vec::new(),
            ends: Vec::new(),
            due: None,
            behind,
        }
    }

    /// Holds one progress update that came in at `now`, due the write-behind delay later at
    /// the latest.
    pub fn progress(&mut self, change: Change, now: Timestamp) {
        self.progress.push(change);
        self.due.get_or_insert(now.plus(self.behind));
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
        self.take_apart().joined()
    }

    /// Everything held, to be written now, progress apart from each end (a runner that cannot
    /// write the batch whole writes them one by one).
    pub fn take_apart(&mut self) -> Taken {
        self.due = None;
        Taken {
            progress: std::mem::take(&mut self.progress),
            ends: std::mem::take(&mut self.ends),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use domain::{Duration, ExecutionId, ExecutionState, TaskId, Timestamp};
    use tracker::Change;

    use super::{Held, WRITE_BEHIND};

    /// A change that carries a number, to tell the changes apart.
    fn numbered(n: u64) -> Change {
        Change::SetExecutionState {
            id: ExecutionId(n as i64),
            to: ExecutionState::Running,
            reason: None,
        }
    }

    fn number(change: &Change) -> u64 {
        match change {
            Change::SetExecutionState { id, .. } => id.0 as u64,
            Change::Comment { id, .. } => id.0 as u64,
            other => panic!("not a numbered change: {other:?}"),
        }
    }

    /// An end of two changes, both carrying `n`.
    fn end_of(n: u64) -> Vec<Change> {
        vec![
            numbered(n),
            Change::Comment {
                id: TaskId(n as i64),
                text: "settled".into(),
            },
        ]
    }

    /// A small deterministic generator (xorshift), so that every seed replays exactly.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// The model: what is held, each with when it came in, in the order it came in.
    #[derive(Default)]
    struct Model {
        progress: VecDeque<(u64, Timestamp)>,
        ends: VecDeque<(u64, Timestamp)>,
    }

    #[test]
    fn held_changes_come_out_once_in_order_and_never_wait_past_their_deadline() {
        for seed in 1..=500u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut held = Held::default();
            let mut model = Model::default();
            let mut now = Timestamp(1_000_000);
            let mut next = 0u64;
            let mut written: Vec<u64> = Vec::new();
            // How many changes each numbered item is: one for progress, two for an end.
            let mut made = BTreeMap::new();
            for step in 0..200 {
                match rng.below(10) {
                    0..=3 => {
                        next += 1;
                        held.progress(numbered(next), now);
                        model.progress.push_back((next, now));
                        made.insert(next, 1);
                    }
                    4..=5 => {
                        next += 1;
                        held.end(end_of(next), now);
                        model.ends.push_back((next, now));
                        made.insert(next, 2);
                    }
                    6..=7 => now = now.plus(Duration::from_millis(rng.below(80))),
                    _ => {
                        let taken = held.take_apart();
                        let expected: Vec<u64> = model
                            .progress
                            .drain(..)
                            .map(|(n, _)| n)
                            .chain(model.ends.drain(..).flat_map(|(n, _)| [n, n]))
                            .collect();
                        let got: Vec<u64> = taken.joined().iter().map(number).collect();
                        assert_eq!(got, expected, "seed {seed}, step {step}: what was taken");
                        assert_eq!(taken.is_empty(), expected.is_empty());
                        written.extend(got);
                    }
                }
                // The deadline stands exactly while something is held, and is never later than
                // what the oldest held change allows.
                let oldest_progress = model.progress.front().map(|(_, at)| at.plus(WRITE_BEHIND));
                let oldest_end = model.ends.front().map(|(_, at)| *at);
                let latest = [oldest_progress, oldest_end].into_iter().flatten().min();
                match (held.due(), latest) {
                    (None, None) => {}
                    (Some(due), Some(latest)) => assert!(
                        due <= latest,
                        "seed {seed}, step {step}: due {due:?} after {latest:?}"
                    ),
                    (due, latest) => {
                        panic!("seed {seed}, step {step}: due {due:?}, model {latest:?}")
                    }
                }
                assert_eq!(held.is_due(now), held.due().is_some_and(|d| d <= now));
            }
            // Whatever was held comes out once: nothing lost, nothing twice.
            written.extend(held.take().iter().map(number));
            assert_eq!(held.due(), None);
            let mut seen = BTreeMap::new();
            for n in written {
                *seen.entry(n).or_insert(0) += 1;
            }
            assert_eq!(seen, made, "seed {seed}");
        }
    }
}
