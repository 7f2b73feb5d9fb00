//! [`Core`]: the engine's in-memory view and what it does with each input.

use std::collections::{BTreeMap, BTreeSet};

use domain::{Duration, Execution, ExecutionId, ExecutionState, NewTask, Task, TaskId, Timestamp};
use scheduler::{ActiveExecution, Config, ExecutionEnd, Snapshot};
use tracker::Change;

use crate::claims::{Claim, Refused};
use crate::decision::Act;
use crate::effect::{Effect, PersistId, PersistMode, StopReason};
use crate::finalize::{Finalizer, JobStart, Next};
use crate::held::Held;
use crate::input::{CallOp, Finished, Input, JobReport, Outcome, Removal, Update, Written};
use crate::lease::Leases;
use crate::spending::{Notice, Spending};

/// The core asks no approvals of its own: its `Options` carry no policy.
const NO_POLICY: fn(&[String]) -> bool = |_| false;

/// What the core must know of its surroundings, fixed for its life.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Tasks work in git worktrees: ended tasks are merged into their parents and removed.
    pub workspaces: bool,
    /// How long progress updates may wait before they are written.
    pub write_behind: Duration,
    /// How often a worktree that was busy is tried again.
    pub removal_retry: Duration,
    /// The node the core claims for and the length of its leases: each claim takes a lease
    /// and every live execution's lease is renewed a third of the length on (see
    /// [`crate::lease`]). `None`: claims carry no lease.
    pub lease: Option<(domain::NodeId, Duration)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workspaces: true,
            write_behind: crate::held::WRITE_BEHIND,
            removal_retry: crate::worktrees::REMOVAL_RETRY,
            lease: None,
        }
    }
}

/// An execution the core has started and not yet seen end.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub execution: Execution,
    pub kill_requested: bool,
    /// The last validation passed.
    pub validated: bool,
    pub iteration_started_at: Option<Timestamp>,
    pub last_activity_at: Timestamp,
    /// `ctl complete` and `ctl block`, as the core answered them.
    pub claimed_complete: Option<String>,
    pub blocked: Option<String>,
    /// When the core first asked it to stop.
    pub stop_asked_at: Option<Timestamp>,
}

/// What to do when a write the core asked for comes back.
#[derive(Debug, Clone, PartialEq)]
enum Then {
    Nothing,
    /// A claim (with what was held and went first in its batch).
    Claim(Claim),
    /// An ended task's end is written: its workspace work may start.
    TaskEnded(TaskId),
    /// A job's merges are recorded: the rest of its report follows.
    JobRecorded {
        task: TaskId,
        removal: Option<Removal>,
        changed: u32,
    },
    /// Answer a call; for a sub-task, with the one the write created.
    Reply {
        call: u64,
        execution: ExecutionId,
        subtask_of: Option<TaskId>,
        flag: Option<Flag>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Flag {
    Blocked(String),
    Claimed(String),
}

/// Recovery that waits for the processes of lost executions to be gone.
#[derive(Debug, Clone, PartialEq)]
struct Recovery {
    orphans: Vec<Execution>,
    merges_due: BTreeSet<TaskId>,
    worktrees: Vec<TaskId>,
}

/// The engine as a state machine. See the crate's documentation.
#[derive(Debug, Clone)]
pub struct Core {
    config: Config,
    options: Options,
    snapshot: Snapshot,
    running: BTreeMap<ExecutionId, Running>,
    held: Held,
    /// What the model gateway said of running executions, and the provider pauses.
    spending: Spending,
    /// Workspace jobs, ends parked behind the merges into their task, worktrees that were busy.
    finalizer: Finalizer,
    /// This node's leases, made at the first input (they start on its time).
    leases: Option<Leases>,
    pending: BTreeMap<PersistId, Then>,
    next_persist: u64,
    recovery: Option<Recovery>,
    /// Reloads asked for and not yet answered.
    reloads: u32,
    /// [`Input::Recover`] has come: until then the core only learns tasks, and decides nothing.
    recovering_started: bool,
    stopping: bool,
    /// Something the scheduler looks at changed since it last decided.
    dirty: bool,
    /// The scheduler's last requested wake-up.
    wakeup: Option<Timestamp>,
    /// When the scheduler must look again, for a process that started since it last decided.
    recheck_at: Option<Timestamp>,
    /// The last wake-up handed to the runner.
    armed: Option<Timestamp>,
    /// The time of the input being handled.
    now: Timestamp,
    /// Executions started and lost executions wound down, for the closing summary.
    pub started: u32,
    pub recovered: u32,
}

impl Core {
    pub fn new(config: Config, options: Options) -> Core {
        let held = Held::new(options.write_behind);
        let finalizer = Finalizer::new(options.workspaces);
        Core {
            config,
            options,
            snapshot: Snapshot::default(),
            running: BTreeMap::new(),
            held,
            spending: Spending::default(),
            finalizer,
            leases: None,
            pending: BTreeMap::new(),
            next_persist: 0,
            recovery: None,
            recovering_started: false,
            reloads: 0,
            stopping: false,
            dirty: true,
            wakeup: None,
            recheck_at: None,
            armed: None,
            now: Timestamp(0),
            started: 0,
            recovered: 0,
        }
    }

    /// The scheduler's view, as the core keeps it.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn snapshot_mut(&mut self) -> &mut Snapshot {
        &mut self.snapshot
    }

    pub fn running(&self) -> &BTreeMap<ExecutionId, Running> {
        &self.running
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether stopping is under way.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Whether a job works on (or waits to work on) the worktree of `task`.
    pub fn job_busy(&self, task: TaskId) -> bool {
        self.finalizer.is_busy(task)
    }

    /// Whether an execution's end waits for a merge into its task.
    pub fn is_parked(&self, task: TaskId) -> bool {
        self.finalizer.is_parked(task)
    }

    /// Stopping has finished: nothing runs, no job or write is under way, nothing is held.
    pub fn is_done(&self) -> bool {
        self.stopping && self.is_quiet() && self.held.is_empty()
    }

    /// No execution runs and no job, write or recovery is under way.
    pub fn is_quiet(&self) -> bool {
        self.running.is_empty()
            && self.finalizer.is_empty()
            && self.pending.is_empty()
            && self.reloads == 0
            && self.recovery.is_none()
            && self.recovering_started
    }

    /// Nothing runs, nothing is due and the scheduler has nothing to do at `now`: a run that
    /// ends when idle may end.
    pub fn is_idle(&mut self, now: Timestamp) -> bool {
        if !self.is_quiet() || !self.held.is_empty() || self.wakeup.is_some() {
            return false;
        }
        self.refresh_active_view();
        let decision = scheduler::decide(&self.snapshot, &self.config, now);
        decision.actions.is_empty() && decision.next_wakeup.is_none()
    }

    /// Takes in the executor's view of a running execution's timers, which it keeps itself.
    pub fn observe(
        &mut self,
        id: ExecutionId,
        iteration_started_at: Option<Timestamp>,
        last_activity_at: Timestamp,
    ) {
        if let Some(r) = self.running.get_mut(&id) {
            r.iteration_started_at = iteration_started_at;
            r.last_activity_at = r.last_activity_at.max(last_activity_at);
        }
    }

    /// How many sub-tasks of `task` are open, which makes a clean exit a split or not.
    pub fn open_children(&self, task: TaskId) -> u32 {
        self.snapshot
            .children_of(task)
            .filter(|c| !c.state.is_terminal())
            .count() as u32
    }

    /// Takes one input at `now` and says what to do about it.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Vec<Effect> {
        let mut out = Vec::new();
        self.now = now;
        if self.leases.is_none()
            && let Some((node, length)) = self.options.lease.clone()
        {
            self.leases = Some(Leases::new(node, length, now));
        }
        match input {
            Input::Tick => {}
            Input::Update(update) => self.update(update, now, &mut out),
            Input::Call {
                call,
                execution,
                op,
            } => self.call(call, execution, op, now, &mut out),
            Input::Notice(notice) => self.notice(notice, now, &mut out),
            Input::Changed(tasks) => self.changed(tasks, now, &mut out),
            Input::Reloaded(tasks) => {
                self.reloads = self.reloads.saturating_sub(1);
                self.changed(tasks, now, &mut out);
            }
            Input::Persisted { id, outcome } => self.persisted(id, outcome, &mut out),
            Input::JobReported(report) => self.job_reported(report, now, &mut out),
            Input::Terminated => self.terminated(now, &mut out),
            Input::Recover {
                orphans,
                merges_due,
                worktrees,
            } => self.recover(orphans, merges_due, worktrees, &mut out),
            Input::Shutdown => self.shutdown(now, &mut out),
        }
        self.step(now, &mut out);
        out
    }

    /// After every input: decide when due, write what is held when due, arm the next wake-up.
    /// Nothing is decided while a write is outstanding or recovery runs: the next decision is
    /// made on what the store said.
    fn step(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        if self.pending.is_empty()
            && self.reloads == 0
            && self.recovery.is_none()
            && self.recovering_started
        {
            let recheck_due = self.recheck_at.is_some_and(|at| at <= now);
            let wakeup_due = self.wakeup.is_some_and(|at| at <= now);
            if !self.stopping && (self.dirty || recheck_due || wakeup_due) {
                self.decide(now, out);
            }
            if self.pending.is_empty() && self.held.is_due(now) {
                self.flush(Then::Nothing, out);
            }
            self.retry_removals(now, out);
        }
        for execution in self.spending.take_stops(now) {
            self.stop(execution, StopReason::BudgetExceeded, now, out);
        }
        if self.stopping && self.is_quiet() && !self.held.is_empty() {
            self.flush(Then::Nothing, out);
        }
        self.renew_leases(now, out);
        let wake = [
            self.wakeup.filter(|_| !self.stopping),
            self.recheck_at.filter(|_| !self.stopping),
            self.held.due(),
            self.spending.stop_due(),
            self.finalizer.removal_due(self.options.removal_retry, now),
            self.leases
                .as_ref()
                .filter(|l| l.holds_any())
                .map(Leases::due),
        ]
        .into_iter()
        .flatten()
        .min();
        if wake != self.armed {
            self.armed = wake;
            if let Some(at) = wake {
                out.push(Effect::Wake { at });
            }
        }
    }

    /// When a round is due, the leases of every execution claimed here and not yet ended are
    /// renewed, one write per batch; a renewal the store refuses (the execution ended
    /// meanwhile, or another node took it) is dropped, change by change.
    fn renew_leases(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        let Some(leases) = &mut self.leases else {
            return;
        };
        if !leases.holds_any() || !leases.take_due(now) {
            return;
        }
        for batch in leases.renewal_batches(now) {
            self.persist(batch, PersistMode::Tolerant, Then::Nothing, out);
        }
    }

    fn persist(
        &mut self,
        changes: Vec<Change>,
        mode: PersistMode,
        then: Then,
        out: &mut Vec<Effect>,
    ) {
        let id = PersistId(self.next_persist);
        self.next_persist += 1;
        self.pending.insert(id, then);
        out.push(Effect::Persist { id, changes, mode });
    }

    /// Writes everything held back so far.
    fn flush(&mut self, then: Then, out: &mut Vec<Effect>) {
        if self.held.is_empty() {
            if then != Then::Nothing {
                // Nothing to write: what was to follow the write follows now.
                self.after_write(then, Outcome::Written(Written::default()), out);
            }
            return;
        }
        let batch = self.held.take();
        self.persist(batch, PersistMode::Held, then, out);
    }

    fn refresh_active_view(&mut self) {
        self.snapshot.busy_workspaces = self.finalizer.busy();
        self.snapshot.active.clear();
        for (id, r) in &self.running {
            self.snapshot.active.push(ActiveExecution {
                id: *id,
                task: r.execution.task_id,
                agent: r.execution.agent.clone(),
                kind: r.execution.kind,
                iteration_started_at: r.iteration_started_at,
                last_activity_at: r.last_activity_at,
                kill_requested: r.kill_requested,
            });
        }
    }

    fn decide(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        crate::decision::forget_old_dispatches(&mut self.snapshot, now);
        let resumed = self.spending.end_pauses(&mut self.snapshot, now);
        if !resumed.is_empty() {
            self.persist(resumed, PersistMode::Tolerant, Then::Nothing, out);
        }
        self.refresh_active_view();
        self.recheck_at = None;
        let decision = scheduler::decide(&self.snapshot, &self.config, now);
        let lease = self.leases.as_ref().map(|l| l.first(now));
        let cx = crate::decision::Context {
            can_run: &|_| true,
            lease: &|| lease.clone(),
            approvals: &NO_POLICY,
        };
        let acts = crate::decision::acts(decision, &self.snapshot, &mut self.held, &cx);
        for act in acts.acts {
            match act {
                Act::Claim(claim) => {
                    let batch = claim.batch();
                    self.persist(batch, PersistMode::Whole, Then::Claim(claim), out);
                }
                Act::Stop { execution, reason } => {
                    self.stop(execution, reason, now, out);
                    if let Some(r) = self.running.get_mut(&execution) {
                        r.kill_requested = true;
                    }
                }
                Act::Write {
                    held,
                    changes,
                    ended,
                } => {
                    if !held.is_empty() {
                        self.persist(held.joined(), PersistMode::Held, Then::Nothing, out);
                    }
                    let then = ended.map_or(Then::Nothing, Then::TaskEnded);
                    self.persist(changes, PersistMode::Whole, then, out);
                }
            }
        }
        self.dirty = acts.again;
        self.wakeup = acts.next_wakeup;
    }

    fn stop(&mut self, id: ExecutionId, reason: StopReason, now: Timestamp, out: &mut Vec<Effect>) {
        if let Some(r) = self.running.get_mut(&id) {
            r.stop_asked_at.get_or_insert(now);
            out.push(Effect::Stop {
                execution: id,
                reason,
            });
        }
    }

    fn update(&mut self, update: Update, now: Timestamp, out: &mut Vec<Effect>) {
        let behind = self.options.write_behind;
        match update {
            Update::Progress { id, change } => {
                if self.running.contains_key(&id) {
                    self.held.progress(change, now);
                }
            }
            Update::ProcessStarted { id, at, change } => {
                let Some(r) = self.running.get_mut(&id) else {
                    return;
                };
                r.iteration_started_at = Some(at);
                r.last_activity_at = r.last_activity_at.max(at);
                self.held.progress(change, now);
                // A process now runs against its timeout and stall limits, so the scheduler must
                // plan when to look at it; but not at once: most short processes end within the
                // write-behind delay, and their end makes the scheduler look anyway.
                self.recheck_at.get_or_insert(now.plus(behind));
            }
            Update::Validated { id, passed, change } => {
                let Some(r) = self.running.get_mut(&id) else {
                    return;
                };
                r.validated = passed;
                r.iteration_started_at = None;
                self.held.progress(change, now);
            }
            Update::Branch { task, branch } => {
                if self
                    .snapshot
                    .task(task)
                    .is_some_and(|t| t.branch.as_deref() != Some(&branch))
                {
                    self.held
                        .progress(Change::SetBranch { id: task, branch }, now);
                }
            }
            Update::Activity { id, at } => {
                if let Some(r) = self.running.get_mut(&id) {
                    r.last_activity_at = r.last_activity_at.max(at);
                }
            }
            Update::Finished(finished) => self.finish(finished, now, out),
        }
    }

    /// Finishes an execution and settles its task, or parks the end behind the merges due into
    /// its task (they are made only now that its processes are gone).
    fn finish(&mut self, f: Finished, now: Timestamp, out: &mut Vec<Effect>) {
        let Some(r) = self.running.remove(&f.id) else {
            return;
        };
        out.push(Effect::Revoke { execution: f.id });
        let task = r.execution.task_id;
        let verdict = self
            .spending
            .ended(f.id, f.state, f.summary, f.metered_over);
        let (finish, end) = crate::ending::Ended {
            verdict,
            exit_code: f.exit_code,
            usage: f.usage,
            validated: r.validated,
            claimed_complete: f.claimed_complete.or(r.claimed_complete),
            blocked: f.blocked.or(r.blocked),
            handed_off: None,
            class: f.class,
        }
        .record(&r.execution);
        let next = self.finalizer.ended(
            &self.snapshot,
            &self.config,
            task,
            (finish, end),
            f.merges_due,
            now,
            &NO_POLICY,
        );
        self.follow_up(next, now, out);
    }

    /// Starts the jobs the finalizer asks for and records the end it concluded: held for the
    /// decision that follows, or written at once when workspace work follows it (the job reads
    /// the store).
    fn follow_up(&mut self, next: Next, now: Timestamp, out: &mut Vec<Effect>) {
        self.start_jobs(next.jobs, out);
        if let Some(concluded) = next.concluded {
            self.dirty = true;
            if let Some(task) = concluded.hold(&mut self.snapshot, &mut self.held, now) {
                self.flush(Then::TaskEnded(task), out);
            }
        }
    }

    fn start_jobs(&mut self, jobs: Vec<JobStart>, out: &mut Vec<Effect>) {
        for JobStart {
            task,
            children,
            work,
        } in jobs
        {
            out.push(Effect::StartJob {
                task,
                children,
                work,
            });
        }
    }

    /// What becomes of a running task when its execution ends (the scheduler decides), and
    /// whether the task ended. A task no longer running (cancelled meanwhile) is left alone.
    fn settle(&self, task_id: TaskId, end: &ExecutionEnd, now: Timestamp) -> (Vec<Change>, bool) {
        crate::ending::settle(&self.snapshot, &self.config, task_id, end, now)
    }

    /// A task reached a terminal state and the store says so: its workspace work follows.
    fn after_task_ended(&mut self, task: TaskId, out: &mut Vec<Effect>) {
        let running = &self.running;
        let jobs = self.finalizer.task_ended(&self.snapshot, task, &|t| {
            running.values().any(|r| r.execution.task_id == t)
        });
        self.start_jobs(jobs, out);
    }

    /// Asks for the merges due into `parent`, unless an execution of the parent runs.
    fn request_merges(&mut self, parent: TaskId, retry_failed: bool, out: &mut Vec<Effect>) {
        let running = &self.running;
        let jobs = self
            .finalizer
            .request_merges(&self.snapshot, parent, retry_failed, &|t| {
                running.values().any(|r| r.execution.task_id == t)
            });
        self.start_jobs(jobs, out);
    }

    fn retry_removals(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        let jobs = self
            .finalizer
            .retry_removals(&self.snapshot, self.options.removal_retry, now);
        self.start_jobs(jobs, out);
    }

    fn job_reported(&mut self, report: JobReport, now: Timestamp, out: &mut Vec<Effect>) {
        self.dirty = true;
        let changed = report.tree_changes();
        if report.merges.is_empty() {
            self.job_settled(report.task, report.removal, changed, now, out);
            return;
        }
        // The merges are recorded first: what the parked end makes of the task depends on
        // whether one failed (`Task::merge_failed`).
        let changes = report
            .merges
            .into_iter()
            .map(|(child, outcome, _)| Change::FinishMerge { child, outcome })
            .collect();
        let then = Then::JobRecorded {
            task: report.task,
            removal: report.removal,
            changed,
        };
        self.persist(changes, PersistMode::Tolerant, then, out);
    }

    /// A job's report is recorded: starts the work queued behind it, and settles an end that
    /// waited for it.
    fn job_settled(
        &mut self,
        task: TaskId,
        removal: Option<Removal>,
        changed: u32,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let next = self.finalizer.job_settled(
            &self.snapshot,
            &self.config,
            task,
            removal.as_ref(),
            changed,
            now,
            &NO_POLICY,
        );
        self.follow_up(next, now, out);
    }

    fn call(
        &mut self,
        call: u64,
        execution: ExecutionId,
        op: CallOp,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let Some(r) = self.running.get_mut(&execution) else {
            out.push(Effect::Reply {
                call,
                result: Err(format!(
                    "execution #{execution} has ended; its token is no longer valid"
                )),
            });
            return;
        };
        r.last_activity_at = r.last_activity_at.max(now);
        let task_id = r.execution.task_id;
        let Some(task) = self.snapshot.task(task_id).cloned() else {
            out.push(Effect::Reply {
                call,
                result: Err("the execution's task is gone".into()),
            });
            return;
        };
        self.dirty = true;
        // Held progress is written first, so that the agent and the store agree on where the
        // execution stands.
        self.flush(Then::Nothing, out);
        let reply = |subtask_of, flag| Then::Reply {
            call,
            execution,
            subtask_of,
            flag,
        };
        let (change, then) = match op {
            CallOp::SubtaskCreate { title, key } => {
                let existing = self.snapshot.children_of(task_id).count() as u32;
                if let Err(why) = scheduler::guards::check_new_child(&task, existing, &self.config)
                {
                    out.push(Effect::Reply {
                        call,
                        result: Err(why),
                    });
                    return;
                }
                let new = NewTask {
                    parent: Some(task_id),
                    priority: task.priority,
                    ..NewTask::titled(title)
                };
                (
                    Change::CreateKeyedTask { new, key },
                    reply(Some(task_id), None),
                )
            }
            CallOp::Block { reason } => (
                Change::Comment {
                    id: task_id,
                    text: format!("blocked: {reason}"),
                },
                reply(None, Some(Flag::Blocked(reason))),
            ),
            CallOp::Comment { text } => (Change::Comment { id: task_id, text }, reply(None, None)),
            CallOp::Complete { summary } => (
                Change::ClaimCompletion {
                    id: task_id,
                    summary: summary.clone(),
                },
                reply(None, Some(Flag::Claimed(summary))),
            ),
        };
        self.persist(vec![change], PersistMode::Whole, then, out);
    }

    /// A gateway notice: recorded, and for a budget used up, the execution marked to end as
    /// over budget (see `spending.rs`).
    fn notice(&mut self, notice: Notice, now: Timestamp, out: &mut Vec<Effect>) {
        let running = &self.running;
        let noticed = self.spending.notice(
            notice,
            |id| running.contains_key(&id),
            &mut self.snapshot,
            now,
        );
        if let Some(id) = noticed.activity
            && let Some(r) = self.running.get_mut(&id)
        {
            r.last_activity_at = r.last_activity_at.max(now);
        }
        if let Some((id, _)) = noticed.over_budget
            && let Some(r) = self.running.get_mut(&id)
        {
            // No timeout or stall kill either: this execution ends as over budget.
            r.kill_requested = true;
            self.dirty = true;
        }
        self.dirty |= noticed.dirty;
        if let Some(change) = noticed.record {
            self.persist(vec![change], PersistMode::Tolerant, Then::Nothing, out);
        }
    }

    fn changed(&mut self, tasks: Vec<Task>, now: Timestamp, out: &mut Vec<Effect>) {
        for task in tasks {
            self.dirty = true;
            let running = self
                .running
                .values()
                .map(|r| (r.execution.id, r.execution.task_id));
            let stops = crate::stops::on_change(&task, running);
            self.snapshot.insert(task);
            for (execution, reason) in stops {
                self.stop(execution, reason, now, out);
            }
        }
    }

    fn reload(&mut self, task: TaskId, out: &mut Vec<Effect>) {
        self.reloads += 1;
        out.push(Effect::Reload { tasks: vec![task] });
    }

    fn absorb(&mut self, written: &Written) {
        if !written.tasks.is_empty() {
            self.dirty = true;
        }
        for task in &written.tasks {
            self.snapshot.insert(task.clone());
        }
        for execution in &written.executions {
            if let Some(r) = self.running.get_mut(&execution.id) {
                r.execution = execution.clone();
            }
            if execution.state.is_terminal()
                && let Some(leases) = &mut self.leases
            {
                leases.ended(execution.id);
            }
        }
    }

    fn persisted(&mut self, id: PersistId, outcome: Outcome, out: &mut Vec<Effect>) {
        let Some(then) = self.pending.remove(&id) else {
            return;
        };
        if let Outcome::Written(written) = &outcome {
            self.absorb(written);
        }
        self.after_write(then, outcome, out);
    }

    fn after_write(&mut self, then: Then, outcome: Outcome, out: &mut Vec<Effect>) {
        match (then, outcome) {
            (Then::Nothing, Outcome::Written(_)) => {}
            (Then::Nothing, Outcome::Refused(_)) => self.dirty = true,
            (Then::Claim(claim), Outcome::Written(written)) => {
                let now = self.now;
                let Some(execution) = claim.claimed(&mut self.snapshot, &written.executions, now)
                else {
                    self.dirty = true;
                    return;
                };
                self.started += 1;
                if let Some(leases) = &mut self.leases {
                    // The first claim after none were held starts the renewal timer afresh:
                    // its lease was just taken, and a round left due while nothing was held
                    // would renew it at once.
                    if !leases.holds_any() {
                        leases.take_due(now);
                    }
                    leases.claimed(&execution);
                }
                let id = execution.id;
                self.running.insert(
                    id,
                    Running {
                        execution,
                        kill_requested: false,
                        validated: false,
                        iteration_started_at: None,
                        last_activity_at: now,
                        claimed_complete: None,
                        blocked: None,
                        stop_asked_at: None,
                    },
                );
                out.push(Effect::Start {
                    execution: id,
                    task: claim.task,
                    agent: claim.agent,
                    kind: claim.kind,
                    attempt: claim.attempt,
                });
            }
            (Then::Claim(claim), Outcome::Refused(_)) => {
                self.dirty = true;
                match claim.refused() {
                    Refused::Reload(task) => self.reload(task, out),
                    Refused::Apart { held, claim } => {
                        self.persist(held.joined(), PersistMode::Held, Then::Nothing, out);
                        let batch = claim.batch();
                        self.persist(batch, PersistMode::Whole, Then::Claim(claim), out);
                    }
                }
            }
            (Then::TaskEnded(task), Outcome::Written(_)) => self.after_task_ended(task, out),
            (Then::TaskEnded(task), Outcome::Refused(_)) => {
                self.dirty = true;
                self.reload(task, out);
            }
            (
                Then::JobRecorded {
                    task,
                    removal,
                    changed,
                },
                _,
            ) => {
                self.job_settled(task, removal, changed, self.now, out);
            }
            (
                Then::Reply {
                    call,
                    execution,
                    subtask_of,
                    flag,
                },
                outcome,
            ) => {
                let result = match outcome {
                    Outcome::Refused(why) => Err(why),
                    Outcome::Written(written) => {
                        if let Some(r) = self.running.get_mut(&execution) {
                            match flag {
                                Some(Flag::Blocked(reason)) => r.blocked = Some(reason),
                                Some(Flag::Claimed(summary)) => r.claimed_complete = Some(summary),
                                None => {}
                            }
                        }
                        match subtask_of {
                            Some(parent) => written
                                .tasks
                                .iter()
                                .find(|t| t.parent == Some(parent))
                                .map(|t| Some(t.id))
                                .ok_or_else(|| "no task created".to_string()),
                            None => Ok(None),
                        }
                    }
                };
                out.push(Effect::Reply { call, result });
            }
        }
    }

    fn recover(
        &mut self,
        orphans: Vec<Execution>,
        merges_due: BTreeSet<TaskId>,
        worktrees: Vec<TaskId>,
        out: &mut Vec<Effect>,
    ) {
        self.recovering_started = true;
        out.push(Effect::Terminate {
            executions: orphans.iter().map(|e| e.id).collect(),
        });
        self.recovery = Some(Recovery {
            orphans,
            merges_due,
            worktrees,
        });
    }

    /// The processes of lost executions are gone: each is wound down as lost and its task
    /// settled; merges left due are made, and the worktrees of tasks that ended just before the
    /// crash are finished with.
    fn terminated(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        let Some(recovery) = self.recovery.take() else {
            return;
        };
        for execution in recovery.orphans {
            let mut changes = vec![Change::FinishExecution {
                id: execution.id,
                state: ExecutionState::Lost,
                exit_code: None,
                usage: execution.usage,
                summary: Some(crate::ending::LOST_ON_RESTART.into()),
            }];
            let end = crate::ending::lost(&execution);
            let (settle, _) = self.settle(execution.task_id, &end, now);
            changes.extend(settle);
            // Written as an end: a task cancelled since it was read keeps its state, and the
            // execution is recorded as lost all the same.
            self.persist(changes, PersistMode::Held, Then::Nothing, out);
            self.recovered += 1;
        }
        for parent in recovery.merges_due {
            self.request_merges(parent, false, out);
        }
        for task in recovery.worktrees {
            if self
                .snapshot
                .task(task)
                .is_some_and(|t| t.state.is_terminal())
            {
                self.after_task_ended(task, out);
            }
        }
        self.dirty = true;
    }

    fn shutdown(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.finalizer.stop();
        let stops = crate::stops::at_shutdown(&self.spending, self.running.keys().copied());
        for (id, reason) in stops {
            self.stop(id, reason, now, out);
        }
    }
}
