//! Workspace bookkeeping that both [`crate::Core`] and the engine's runner keep: ends parked
//! behind the merges into their task, and ended tasks' worktrees that were busy when removed.
//!
//! An execution's end waits for the merges due into its task (sub-tasks done while it ran are
//! merged only once its processes are gone), so that its validators' verdict is not taken for
//! a tree that changed under them: a merge that changed the tree makes the end unvalidated. A
//! worktree a process still works in is tried again every [`REMOVAL_RETRY`] (each try reads
//! every process's links in /proc), for as long as its task stays ended.

use std::collections::{BTreeMap, BTreeSet};

use domain::{Duration, TaskId, Timestamp};
use scheduler::ExecutionEnd;
use tracker::Change;

use crate::input::Removal;

/// How often a worktree that was busy is tried again, unless told otherwise.
pub const REMOVAL_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq)]
struct Parked {
    finish: Change,
    end: ExecutionEnd,
    /// Merges made for it so far that changed the task's tree.
    changed: u32,
}

/// Ends that wait for a merge job into their task. The store still calls such an execution
/// active until its end is written, so a crash meanwhile finds it lost.
#[derive(Debug, Clone, Default)]
pub struct Parking {
    ends: BTreeMap<TaskId, Parked>,
}

impl Parking {
    /// Parks the end of `task`'s execution (its `FinishExecution` and what the scheduler is to
    /// judge) until the merges into `task` are made.
    pub fn park(&mut self, task: TaskId, finish: Change, end: ExecutionEnd) {
        self.ends.insert(
            task,
            Parked {
                finish,
                end,
                changed: 0,
            },
        );
    }

    pub fn is_parked(&self, task: TaskId) -> bool {
        self.ends.contains_key(&task)
    }

    /// A job made merges into `task`; `changed` of them changed its tree.
    pub fn merged(&mut self, task: TaskId, changed: u32) {
        if let Some(parked) = self.ends.get_mut(&task) {
            parked.changed += changed;
        }
    }

    /// The merges into `task` are done: its end, to be concluded now, validated only if no
    /// merge changed the tree its validators judged.
    pub fn release(&mut self, task: TaskId) -> Option<(Change, ExecutionEnd)> {
        let parked = self.ends.remove(&task)?;
        let mut end = parked.end;
        end.validated &= parked.changed == 0;
        Some((parked.finish, end))
    }
}

/// Ended tasks whose worktree could not be removed because a process worked in it, and when
/// that was last tried.
#[derive(Debug, Clone, Default)]
pub struct BusyWorktrees {
    tasks: BTreeSet<TaskId>,
    tried: Option<Timestamp>,
}

impl BusyWorktrees {
    /// What became of a removal of `task`'s worktree: busy is tried again; removed, or kept for
    /// a person (uncommitted work, a failing hook), is not.
    pub fn removal(&mut self, task: TaskId, removal: Option<&Removal>) {
        match removal {
            Some(Removal::Busy) => {
                self.tasks.insert(task);
            }
            Some(Removal::Removed | Removal::Kept(_)) => {
                self.tasks.remove(&task);
            }
            None => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// When the next try is due, trying every `retry`; `None` when no worktree waits.
    pub fn due(&self, retry: Duration, now: Timestamp) -> Option<Timestamp> {
        (!self.tasks.is_empty()).then(|| self.tried.map_or(now, |at| at.plus(retry)))
    }

    /// The worktrees to try again at `now`, if a try is due; they leave the book until a
    /// removal finds them busy again.
    pub fn take_due(&mut self, retry: Duration, now: Timestamp) -> Vec<TaskId> {
        if self.tasks.is_empty() || self.tried.is_some_and(|at| now < at.plus(retry)) {
            return Vec::new();
        }
        self.tried = Some(now);
        std::mem::take(&mut self.tasks).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{ExecutionId, ExecutionKind, ExecutionState, FailureClass, Usage};

    #[test]
    fn a_merge_that_changed_the_tree_makes_the_parked_end_unvalidated() {
        let mut parking = Parking::default();
        let finish = Change::FinishExecution {
            id: ExecutionId(1),
            state: ExecutionState::Succeeded,
            exit_code: Some(0),
            usage: Usage::default(),
            summary: None,
        };
        let end = ExecutionEnd {
            kind: ExecutionKind::Work,
            agent: "coder".into(),
            state: ExecutionState::Succeeded,
            validated: true,
            claimed_complete: None,
            blocked: None,
            handed_off: None,
            failure: None,
            provider_paused: None,
            class: FailureClass::Transient,
        };
        parking.park(TaskId(4), finish.clone(), end.clone());
        parking.merged(TaskId(4), 0);
        let (_, kept) = parking.release(TaskId(4)).expect("parked");
        assert!(kept.validated, "no merge changed the tree");
        parking.park(TaskId(4), finish, end);
        assert!(parking.is_parked(TaskId(4)));
        parking.merged(TaskId(4), 1);
        let (_, changed) = parking.release(TaskId(4)).expect("parked");
        assert!(!changed.validated);
        assert!(parking.release(TaskId(4)).is_none());
    }

    #[test]
    fn a_busy_worktree_is_tried_again_once_per_retry() {
        let retry = Duration::from_secs(1);
        let mut busy = BusyWorktrees::default();
        let now = Timestamp(10_000);
        assert_eq!(busy.due(retry, now), None);
        busy.removal(TaskId(1), Some(&Removal::Busy));
        busy.removal(TaskId(2), Some(&Removal::Busy));
        busy.removal(TaskId(2), Some(&Removal::Kept("uncommitted work".into())));
        assert_eq!(busy.due(retry, now), Some(now));
        assert_eq!(busy.take_due(retry, now), vec![TaskId(1)]);
        busy.removal(TaskId(1), Some(&Removal::Busy));
        assert_eq!(busy.due(retry, now), Some(now.plus(retry)));
        assert!(busy.take_due(retry, now.plus(Duration(999))).is_empty());
        assert_eq!(busy.take_due(retry, now.plus(retry)), vec![TaskId(1)]);
        assert!(busy.is_empty());
    }
}
