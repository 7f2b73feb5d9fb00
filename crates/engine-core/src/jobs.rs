//! The core's book of workspace jobs: at most one per task's worktree, work asked for meanwhile
//! queued and joined.

use std::collections::{BTreeMap, BTreeSet};

use domain::TaskId;

/// What a job does to one task's worktree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Make the merges due into this task; `Some(true)` tries those that failed before too.
    pub merges: Option<bool>,
    /// Remove the worktree afterwards (the task has ended).
    pub remove: bool,
}

impl Work {
    pub const REMOVE: Work = Work {
        merges: None,
        remove: true,
    };

    /// Both works in one: whatever either asks for.
    pub fn join(self, other: Work) -> Work {
        let merges = match (self.merges, other.merges) {
            (None, m) | (m, None) => m,
            (Some(a), Some(b)) => Some(a || b),
        };
        Work {
            merges,
            remove: self.remove || other.remove,
        }
    }
}

/// Jobs in flight and the work queued behind them, by task: the book both the core and the
/// engine's runner keep.
#[derive(Debug, Clone, Default)]
pub struct JobBook {
    in_flight: BTreeSet<TaskId>,
    queued: BTreeMap<TaskId, Work>,
}

impl JobBook {
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.queued.is_empty()
    }

    pub fn is_busy(&self, task: TaskId) -> bool {
        self.in_flight.contains(&task) || self.queued.contains_key(&task)
    }

    pub fn busy(&self) -> BTreeSet<TaskId> {
        self.in_flight
            .iter()
            .chain(self.queued.keys())
            .copied()
            .collect()
    }

    /// Queues `work` behind the job in flight for `task`; false when there is none.
    pub fn queue_behind(&mut self, task: TaskId, work: Work) -> bool {
        if !self.in_flight.contains(&task) {
            return false;
        }
        let joined = self.queued.get(&task).map_or(work, |q| q.join(work));
        self.queued.insert(task, joined);
        true
    }

    pub fn started(&mut self, task: TaskId) {
        self.in_flight.insert(task);
    }

    /// The job for `task` reported: what was queued behind it.
    pub fn finished(&mut self, task: TaskId) -> Option<Work> {
        self.in_flight.remove(&task);
        self.queued.remove(&task)
    }

    /// Forgets queued work that only removes worktrees (the next start removes them anyway).
    pub fn drop_queued_removals(&mut self) {
        self.queued.retain(|_, work| work.merges.is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::Work;

    #[test]
    fn joined_work_asks_for_whatever_either_asked_for() {
        let merge = Work {
            merges: Some(false),
            remove: false,
        };
        let retry = Work {
            merges: Some(true),
            remove: false,
        };
        assert_eq!(
            merge.join(Work::REMOVE),
            Work {
                merges: Some(false),
                remove: true
            }
        );
        assert_eq!(merge.join(retry).merges, Some(true));
        assert_eq!(Work::REMOVE.join(Work::REMOVE), Work::REMOVE);
        assert_eq!(Work::default().join(Work::default()), Work::default());
    }
}
