//! Changes the engine holds back before writing them: write-behind progress and held ends.
//!
//! An execution's progress updates (preparing, running, process started and exited, validated)
//! may wait up to [`WRITE_BEHIND`] before they are written, and are written together with the
//! execution's end when that comes sooner; an end (with what it makes of its task) waits for the
//! decision that follows at once and goes into the transaction of the claims that decision makes.
//! So a short execution costs one transaction instead of four or five. Nothing depends on them
//! being written sooner: the engine keeps the live state in memory, and a crash finds the
//! execution active either way.
//!
//! [`Held`] is the one place that keeps them and says when they are due. What it guarantees,
//! and the model-based test below checks: whatever is taken comes out exactly once, progress
//! first and then ends, each in the order it came in; and while anything is held a deadline
//! stands that is no later than [`WRITE_BEHIND`] after the oldest held progress, and no later
//! than the moment the oldest held end came in.

use std::time::{Duration, Instant};

use store::Change;

/// How long progress updates may wait before they are written.
pub(super) const WRITE_BEHIND: Duration = Duration::from_millis(50);

/// Progress and ends not yet written, and when they must be at the latest.
#[derive(Debug, Default)]
pub(super) struct Held {
    progress: Vec<Change>,
    ends: Vec<Vec<Change>>,
    due: Option<Instant>,
}

/// What [`Held::take`] hands over, to be written in this order.
#[derive(Debug, Default)]
pub(super) struct Taken {
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
    /// Holds one progress update that came in at `now`: it is due [`WRITE_BEHIND`] later at the
    /// latest.
    pub fn progress(&mut self, change: Change, now: Instant) {
        self.progress.push(change);
        self.due.get_or_insert(now + WRITE_BEHIND);
    }

    /// Holds an execution's end for the decision that follows: due at once, so it waits for
    /// nothing but that decision.
    pub fn end(&mut self, changes: Vec<Change>, now: Instant) {
        self.ends.push(changes);
        self.due = Some(self.due.map_or(now, |at| at.min(now)));
    }

    /// When what is held must be written at the latest; `None` when nothing is held.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_some_and(|at| now >= at)
    }

    /// Everything held, to be written now.
    pub fn take(&mut self) -> Taken {
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
    use std::time::{Duration, Instant};

    use domain::{ExecutionId, ExecutionState, TaskId};
    use store::Change;

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
        progress: VecDeque<(u64, Instant)>,
        ends: VecDeque<(u64, Instant)>,
    }

    #[test]
    fn held_changes_come_out_once_in_order_and_never_wait_past_their_deadline() {
        for seed in 1..=500u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut held = Held::default();
            let mut model = Model::default();
            let mut now = Instant::now();
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
                    6..=7 => now += Duration::from_millis(rng.below(80)),
                    _ => {
                        let taken = held.take();
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
                let oldest_progress = model.progress.front().map(|(_, at)| *at + WRITE_BEHIND);
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
            written.extend(held.take().joined().iter().map(number));
            assert_eq!(held.due(), None);
            let mut seen = BTreeMap::new();
            for n in written {
                *seen.entry(n).or_insert(0) += 1;
            }
            assert_eq!(seen, made, "seed {seed}");
        }
    }
}
