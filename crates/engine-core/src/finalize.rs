//! What follows an execution's end in its task's worktree, in one place for [`crate::Core`] and
//! the engine's runner: whether the end is parked behind the merges due into its task, when the
//! end is written (at once when workspace work follows, so that the job reads it from the store;
//! otherwise with the decision that follows), and which jobs an ended task, a job's report or a
//! busy worktree's retry start.
//!
//! A [`Finalizer`] keeps the book this needs (the jobs in flight and the work queued behind
//! them, the parked ends, the worktrees that were busy) and answers each event with the jobs to
//! start ([`JobStart`]) and, when an end is to be recorded, what to record ([`Concluded`]). The
//! caller performs: the core as effects, the runner by spawning the job and writing the changes.
//! Ordering is held by this book, not by waiting: a task with a job in flight or queued is busy
//! for the scheduler ([`Finalizer::busy`]).

use std::collections::BTreeSet;

use domain::{Duration, Task, TaskId, Timestamp};
use scheduler::{Config, ExecutionEnd, Snapshot};
use tracker::Change;

use crate::held::Held;
use crate::input::Removal;
use crate::jobs::{JobBook, Work};
use crate::worktrees::{BusyWorktrees, Parking};

/// A job to start on `task`'s worktree, with what the view knew of the task and its sub-tasks
/// when it started (the job reads a child recorded later from the store).
#[derive(Debug, Clone, PartialEq)]
pub struct JobStart {
    pub task: Task,
    pub children: Vec<Task>,
    pub work: Work,
}

/// An execution's end with what it makes of its task, ready to be recorded.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a concluded end must be held or written"]
pub struct Concluded {
    pub task: TaskId,
    pub changes: Vec<Change>,
    /// The task has ended and workspace work follows: the end is written at once, and once it
    /// is, [`Finalizer::task_ended`] says which jobs start.
    pub write_now: bool,
}

impl Concluded {
    /// Holds the end back, with the task's new state and schedule already in the view the next
    /// decision looks at (the store's rows replace them when it is written). Returns the task
    /// whose end must be written now (everything held with it), after which its workspace work
    /// follows; `None` when the end may wait for the decision that follows.
    pub fn hold(self, snapshot: &mut Snapshot, held: &mut Held, now: Timestamp) -> Option<TaskId> {
        crate::ending::hold_in_view(snapshot, &self.changes);
        held.end(self.changes, now);
        self.write_now.then_some(self.task)
    }
}

/// What an event makes the caller do: start these jobs, and record this end.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "the jobs must be started and the end recorded"]
pub struct Next {
    pub jobs: Vec<JobStart>,
    pub concluded: Option<Concluded>,
}

/// The workspace work that follows executions' ends. See the module's documentation.
#[derive(Debug, Clone, Default)]
pub struct Finalizer {
    /// Tasks work in git worktrees; without them nothing follows an end.
    workspaces: bool,
    /// Stopping: no removal starts (the next start removes what is left).
    stopping: bool,
    parked: Parking,
    jobs: JobBook,
    busy_worktrees: BusyWorktrees,
}

impl Finalizer {
    pub fn new(workspaces: bool) -> Finalizer {
        Finalizer {
            workspaces,
            ..Finalizer::default()
        }
    }

    /// No job is in flight or queued.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Whether a job works on (or waits to work on) the worktree of `task`.
    pub fn is_busy(&self, task: TaskId) -> bool {
        self.jobs.is_busy(task)
    }

    /// Every task with a job in flight or queued: busy for the scheduler.
    pub fn busy(&self) -> BTreeSet<TaskId> {
        self.jobs.busy()
    }

    /// Whether an execution's end waits for a merge into its task.
    pub fn is_parked(&self, task: TaskId) -> bool {
        self.parked.is_parked(task)
    }

    /// Stopping: queued work that only removes worktrees is forgotten, and no removal starts.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.jobs.drop_queued_removals();
    }

    /// When the busy worktrees are next tried, trying every `retry`; `None` while stopping.
    pub fn removal_due(&self, retry: Duration, now: Timestamp) -> Option<Timestamp> {
        self.busy_worktrees
            .due(retry, now)
            .filter(|_| !self.stopping)
    }

    /// An execution of `task` ended (`finish` records it, `end` is what the scheduler judges).
    /// With merges due into the task (`merges_due`, which the caller reads: another process may
    /// have recorded them), the end is parked and the merges start: sub-tasks done while it ran
    /// are merged only now that its processes are gone, and its end waits for them. Otherwise
    /// the end is concluded at once.
    #[allow(clippy::too_many_arguments)]
    pub fn ended(
        &mut self,
        snapshot: &Snapshot,
        config: &Config,
        task: TaskId,
        (finish, end): (Change, ExecutionEnd),
        merges_due: bool,
        now: Timestamp,
        approvals: &dyn Fn(&[String]) -> bool,
    ) -> Next {
        let mut next = Next::default();
        if self.workspaces && merges_due {
            self.parked.park(task, finish, end);
            let merge = Work {
                merges: Some(true),
                remove: false,
            };
            self.request_job(snapshot, task, merge, &mut next.jobs);
            return next;
        }
        next.concluded = Some(self.conclude(snapshot, config, task, finish, &end, now, approvals));
        next
    }

    /// An end with what it makes of its task (`ending::conclude`) and the project's approval
    /// requests (`approvals`, the policy's test on labels), and whether it is written at once.
    #[allow(clippy::too_many_arguments)]
    fn conclude(
        &self,
        snapshot: &Snapshot,
        config: &Config,
        task: TaskId,
        finish: Change,
        end: &ExecutionEnd,
        now: Timestamp,
        approvals: &dyn Fn(&[String]) -> bool,
    ) -> Concluded {
        let (mut changes, task_ended) =
            crate::ending::conclude(snapshot, config, task, finish, end, now);
        crate::ending::ask_approvals(snapshot, approvals, &mut changes);
        Concluded {
            task,
            changes,
            write_now: task_ended && self.workspaces,
        }
    }

    /// `task` reached a terminal state and the store says so: a done sub-task's branch is
    /// merged into its parent, and the worktree removed (its branch stays). `running` says
    /// whether an execution of a task runs.
    pub fn task_ended(
        &mut self,
        snapshot: &Snapshot,
        task: TaskId,
        running: &dyn Fn(TaskId) -> bool,
    ) -> Vec<JobStart> {
        let mut jobs = Vec::new();
        if !self.workspaces {
            return jobs;
        }
        let Some(t) = snapshot.task(task) else {
            return jobs;
        };
        let (parent, branch) = (t.parent, t.branch.is_some());
        if let Some(parent) = parent {
            self.merges_into(snapshot, parent, false, running, &mut jobs);
        }
        if branch {
            self.request_job(snapshot, task, Work::REMOVE, &mut jobs);
        }
        jobs
    }

    /// Asks for the merges due into `parent` (with `retry_failed`, those that failed too),
    /// unless an execution of the parent runs: its end asks for them (no git command runs under
    /// an agent at work). A parent that has ended keeps no worktree, so the job removes the one
    /// the merges checked out again.
    pub fn request_merges(
        &mut self,
        snapshot: &Snapshot,
        parent: TaskId,
        retry_failed: bool,
        running: &dyn Fn(TaskId) -> bool,
    ) -> Vec<JobStart> {
        let mut jobs = Vec::new();
        self.merges_into(snapshot, parent, retry_failed, running, &mut jobs);
        jobs
    }

    fn merges_into(
        &mut self,
        snapshot: &Snapshot,
        parent: TaskId,
        retry_failed: bool,
        running: &dyn Fn(TaskId) -> bool,
        jobs: &mut Vec<JobStart>,
    ) {
        if !self.workspaces || running(parent) {
            return;
        }
        let ended = snapshot.task(parent).is_some_and(|t| t.state.is_terminal());
        let work = Work {
            merges: Some(retry_failed),
            remove: ended,
        };
        self.request_job(snapshot, parent, work, jobs);
    }

    /// A job's report is recorded (its merges first: what a parked end makes of the task
    /// depends on whether one failed): the work queued behind it starts, and an end that waited
    /// for it is concluded, unvalidated if a merge changed the tree its validators judged.
    #[allow(clippy::too_many_arguments)]
    pub fn job_settled(
        &mut self,
        snapshot: &Snapshot,
        config: &Config,
        task: TaskId,
        removal: Option<&Removal>,
        tree_changes: u32,
        now: Timestamp,
        approvals: &dyn Fn(&[String]) -> bool,
    ) -> Next {
        let mut next = Next::default();
        self.busy_worktrees.removal(task, removal);
        self.parked.merged(task, tree_changes);
        if let Some(queued) = self.jobs.finished(task) {
            self.start_job(snapshot, task, queued, &mut next.jobs);
            // A merge asked for meanwhile is one more the parked end must wait for.
            if self.jobs.is_busy(task) {
                return next;
            }
        }
        if let Some((finish, end)) = self.parked.release(task) {
            next.concluded =
                Some(self.conclude(snapshot, config, task, finish, &end, now, approvals));
        }
        next
    }

    /// Tries again to remove the worktrees that were busy, at most once per `retry` (each try
    /// reads every process's links in /proc), for the tasks still ended.
    pub fn retry_removals(
        &mut self,
        snapshot: &Snapshot,
        retry: Duration,
        now: Timestamp,
    ) -> Vec<JobStart> {
        let mut jobs = Vec::new();
        if self.stopping {
            return jobs;
        }
        for task in self.busy_worktrees.take_due(retry, now) {
            // A task reopened meanwhile works in its worktree again.
            let ended = snapshot
                .task(task)
                .is_some_and(|t| t.state.is_terminal() && t.branch.is_some());
            if ended {
                self.request_job(snapshot, task, Work::REMOVE, &mut jobs);
            }
        }
        jobs
    }

    /// Starts `work` on the worktree of `task`, or queues it behind the job already there.
    /// While stopping, a removal alone is left for the next start.
    fn request_job(
        &mut self,
        snapshot: &Snapshot,
        task: TaskId,
        work: Work,
        jobs: &mut Vec<JobStart>,
    ) {
        if !self.workspaces || (self.stopping && work.merges.is_none()) {
            return;
        }
        if !self.jobs.queue_behind(task, work) {
            self.start_job(snapshot, task, work, jobs);
        }
    }

    /// Starts a job with what the view knows now of `task` and its sub-tasks.
    fn start_job(
        &mut self,
        snapshot: &Snapshot,
        task: TaskId,
        mut work: Work,
        jobs: &mut Vec<JobStart>,
    ) {
        let Some(t) = snapshot.task(task).cloned() else {
            return;
        };
        // A task reopened since the removal was asked for works in its worktree again.
        work.remove &= t.state.is_terminal();
        if work.merges.is_none() && (self.stopping || !work.remove) {
            return;
        }
        let children = match work.merges {
            Some(_) => snapshot.children_of(task).cloned().collect(),
            None => Vec::new(),
        };
        self.jobs.started(task);
        jobs.push(JobStart {
            task: t,
            children,
            work,
        });
    }
}

#[cfg(test)]
mod tests {
    use domain::{
        ExecutionId, ExecutionKind, ExecutionState, FailureClass, NewTask, TaskState, Usage,
    };

    use super::*;

    fn task(id: i64, parent: Option<i64>, state: TaskState) -> Task {
        let mut new = NewTask::titled(format!("t{id}"));
        new.parent = parent.map(TaskId);
        let root = TaskId(parent.unwrap_or(id));
        let mut t = Task::new(TaskId(id), new, root, parent.map_or(0, |_| 1), Timestamp(0));
        t.state = state;
        t.branch = Some(format!("agentgrid/{id}"));
        t
    }

    fn end_of(id: i64) -> (Change, ExecutionEnd) {
        let finish = Change::FinishExecution {
            id: ExecutionId(id),
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
        (finish, end)
    }

    const NONE: fn(&[String]) -> bool = |_| false;
    const IDLE: fn(TaskId) -> bool = |_| false;

    #[test]
    fn an_end_with_merges_due_waits_for_every_merge_job_into_its_task() {
        let mut snapshot = Snapshot::default();
        // Cancelled meanwhile: nothing settles it, and its end is written at once.
        snapshot.insert(task(1, None, TaskState::Cancelled));
        let config = Config::default();
        let now = Timestamp(1_000);
        let mut f = Finalizer::new(true);
        let next = f.ended(&snapshot, &config, TaskId(1), end_of(7), true, now, &NONE);
        assert_eq!(next.concluded, None, "parked behind the merges");
        assert_eq!(next.jobs.len(), 1);
        assert_eq!(next.jobs[0].work.merges, Some(true));
        assert!(f.is_parked(TaskId(1)) && f.is_busy(TaskId(1)));
        // A merge asked for while the job runs is one more the end waits for.
        assert!(
            f.request_merges(&snapshot, TaskId(1), false, &IDLE)
                .is_empty()
        );
        let next = f.job_settled(&snapshot, &config, TaskId(1), None, 0, now, &NONE);
        assert_eq!(next.jobs.len(), 1, "the queued merge starts");
        assert_eq!(next.concluded, None, "still parked");
        let next = f.job_settled(&snapshot, &config, TaskId(1), None, 1, now, &NONE);
        let concluded = next.concluded.expect("released");
        assert!(concluded.write_now, "the task has ended: its work follows");
        assert!(matches!(
            concluded.changes[0],
            Change::FinishExecution { .. }
        ));
        assert!(f.is_empty() && !f.is_parked(TaskId(1)));
    }

    #[test]
    fn without_workspaces_nothing_parks_and_nothing_is_written_at_once() {
        let mut snapshot = Snapshot::default();
        snapshot.insert(task(1, None, TaskState::Cancelled));
        let mut f = Finalizer::new(false);
        let next = f.ended(
            &snapshot,
            &Config::default(),
            TaskId(1),
            end_of(7),
            true,
            Timestamp(0),
            &NONE,
        );
        assert!(next.jobs.is_empty());
        assert!(!next.concluded.expect("concluded").write_now);
        assert!(f.task_ended(&snapshot, TaskId(1), &IDLE).is_empty());
    }

    #[test]
    fn a_merge_into_a_running_parent_waits_and_removals_stop_with_the_engine() {
        let mut snapshot = Snapshot::default();
        snapshot.insert(task(1, None, TaskState::Running));
        snapshot.insert(task(2, Some(1), TaskState::Done));
        snapshot.insert(task(3, Some(1), TaskState::Done));
        let mut f = Finalizer::new(true);
        let jobs = f.task_ended(&snapshot, TaskId(2), &|t| t == TaskId(1));
        assert_eq!(jobs.len(), 1, "only the child's removal: {jobs:?}");
        assert_eq!((jobs[0].task.id, jobs[0].work), (TaskId(2), Work::REMOVE));
        let jobs = f.task_ended(&snapshot, TaskId(3), &IDLE);
        let parent = jobs.iter().find(|j| j.task.id == TaskId(1)).expect("merge");
        assert_eq!(parent.children.len(), 2, "the job knows the children");
        assert!(!parent.work.remove, "a running parent keeps its worktree");
        // A busy worktree is tried again, but not once the engine stops.
        let next = f.job_settled(
            &snapshot,
            &Config::default(),
            TaskId(2),
            Some(&Removal::Busy),
            0,
            Timestamp(0),
            &NONE,
        );
        assert!(next.jobs.is_empty() && next.concluded.is_none());
        let retry = Duration::from_secs(1);
        assert_eq!(f.removal_due(retry, Timestamp(0)), Some(Timestamp(0)));
        f.stop();
        assert_eq!(f.removal_due(retry, Timestamp(0)), None);
        assert!(f.retry_removals(&snapshot, retry, Timestamp(0)).is_empty());
        // A merge still starts while stopping: it is a recorded step.
        let jobs = f.request_merges(&snapshot, TaskId(1), false, &IDLE);
        assert!(jobs.is_empty(), "queued behind the merge in flight");
        assert!(f.task_ended(&snapshot, TaskId(3), &IDLE).is_empty());
    }
}
