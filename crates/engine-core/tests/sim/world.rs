//! One simulated run: the core, a fake executor and workspace jobs, an in-memory store, a
//! virtual clock and a seeded source of faults, all on one thread. Every step is checked
//! against the invariants; the first violation ends the run with what was violated.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use domain::{
    Duration, ExecutionId, ExecutionKind, ExecutionState, NewTask, TaskId, TaskState, Timestamp,
};
use engine_core::{
    BUDGET_GRACE, CallOp, Core, Effect, Finished, Input, JobReport, Notice, Options, Outcome,
    PersistMode, Removal, StopReason, Update, Work,
};
use scheduler::{AgentPolicy, Config, RetryPolicy};
use tracker::{Change, MergeResult, MergeStatus};

use crate::rng::Rng;
use crate::store::MemStore;

/// How long an execution asked to stop may take to end (the executor's grace period).
pub const GRACE: Duration = Duration(200);
/// The agent's timeout for one iteration.
const TIMEOUT: Duration = Duration(300);
/// How often the runner follows the store and ticks, like the engine's follow interval.
const FOLLOW: Duration = Duration(250);
/// The longest a workspace job takes.
const JOB_MAX: u64 = 60;
/// Virtual time after which no new fault or task is injected, so that the run can settle.
const CALM_AFTER: Timestamp = Timestamp(10_000);
/// The length of the core's leases: short, so that executions that run into their timeout
/// see their lease renewed, and long enough for writes the store holds up (400 ms each).
const LEASE: Duration = Duration(2_000);

/// The node the simulated engine claims for.
fn node() -> domain::NodeId {
    "sim-node".parse().expect("a node id")
}
/// Virtual time by which a run must have settled.
const SETTLE_BY: Timestamp = Timestamp(90_000);

/// Deliberate defects, to show that the simulator finds them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defects {
    /// The job runner skips the merges of one job, as if the merge effect were dropped.
    pub skip_a_merge: bool,
    /// The runner drops every lease renewal the core asks to write.
    pub drop_renewals: bool,
}

/// What an agent does in one execution.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Succeed,
    Fail,
    /// Never ends by itself: the timeout or a stop ends it.
    Hang,
    /// Creates sub-tasks, then exits cleanly: a split.
    Plan(u32),
    /// Asks a person, then exits.
    Block,
    /// Comments, then succeeds.
    Comment,
}

#[derive(Debug, Clone)]
struct Proc {
    task: TaskId,
    behaviour: Behaviour,
    /// The engine incarnation that started it; after a crash it is an orphan.
    generation: u32,
    stop_asked_at: Option<Timestamp>,
    /// Sub-task calls still to make.
    calls_left: u32,
    /// Ends at this time at the latest, once set.
    ends_at: Option<Timestamp>,
}

// Events are queued by the thousand and an input is the largest of them by far; the queue's
// memory is not what the simulator measures, so the variants stay unboxed for readability.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Event {
    /// An input for the core of one incarnation.
    Deliver {
        generation: u32,
        input: Input,
    },
    /// A process's own step: start, a call, its end.
    Agent {
        execution: ExecutionId,
        step: AgentStep,
    },
    /// A write of one incarnation, in order.
    Write {
        generation: u32,
        id: engine_core::PersistId,
        changes: Vec<Change>,
        mode: PersistMode,
        crash_after: bool,
    },
    /// Another process (the CLI) writes: a cancel or a new task.
    Cli,
    /// The engine starts again after a crash.
    Restart,
    /// The follow interval.
    Follow {
        generation: u32,
    },
    Shutdown,
}

#[derive(Debug, Clone, Copy)]
enum AgentStep {
    Started,
    Call,
    /// Ends by itself or after a stop, with this state.
    End(ExecutionState),
}

pub struct World {
    seed: u64,
    rng: Rng,
    defects: Defects,
    now: Timestamp,
    queue: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    events: BTreeMap<usize, Event>,
    seq: u64,
    store: MemStore,
    core: Option<Core>,
    generation: u32,
    config: Config,
    procs: BTreeMap<ExecutionId, Proc>,
    /// Per execution, the time its last update is delivered: one executor's updates stay in
    /// order, different executions' interleave.
    update_order: BTreeMap<ExecutionId, Timestamp>,
    /// Inputs that came while the runner was busy, in order.
    inbox: VecDeque<Input>,
    /// Effects still to perform, next first: an effect's own results come before the rest.
    stack: VecDeque<Effect>,
    /// A write is under way: like the engine's loop, the runner waits for it.
    blocked: bool,
    /// Worktrees that exist (made by an execution, gone when removed).
    worktrees: BTreeSet<TaskId>,
    crashes_left: u32,
    crash_chance: u32,
    busy_chance: u32,
    /// Tasks seen cancelled by the core, with when.
    cancels_seen: BTreeMap<TaskId, Timestamp>,
    /// Executions the core heard were refused over budget while they ran, with when.
    over_seen: BTreeMap<ExecutionId, Timestamp>,
    /// Executions the core asked to stop, for whatever reason.
    stops_asked: BTreeSet<ExecutionId>,
    /// When the core last handled an input: time it has seen pass.
    last_handled: Timestamp,
    shutdown_at: Option<Timestamp>,
    /// When the core took the shutdown in (the runner may have been waiting for a write).
    shutdown_seen: Option<Timestamp>,
    /// Calls awaiting their reply, by call id: the execution that made it.
    calls: BTreeMap<u64, ExecutionId>,
    next_call: u64,
    skipped_merge: bool,
    /// A short trace of what happened, printed with a failure.
    pub trace: Vec<String>,
}

/// Why a run failed: the invariant and the moment.
pub type Violation = String;

impl World {
    pub fn new(seed: u64, defects: Defects) -> World {
        let mut rng = Rng::new(seed);
        let mut worker = AgentPolicy::new("worker");
        worker.timeout = TIMEOUT;
        worker.stall_timeout = Duration(2_000);
        worker.max_attempts = 1 + rng.below(3) as u32;
        let config = Config {
            global_concurrency: 1 + rng.below(3) as u32,
            retry: RetryPolicy {
                base_delay: Duration(40),
                max_delay: Duration(400),
            },
            continuation_delay: Duration(50),
            resume_interval: Duration(3_000),
            agents: vec![worker],
            ..Config::default()
        };
        let crash_chance = [0, 2, 5, 10][rng.below(4) as usize];
        let busy_chance = [0, 5, 20][rng.below(3) as usize];
        World {
            seed,
            rng,
            defects,
            now: Timestamp(0),
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            store: MemStore::new(),
            core: None,
            generation: 0,
            config,
            procs: BTreeMap::new(),
            update_order: BTreeMap::new(),
            inbox: VecDeque::new(),
            stack: VecDeque::new(),
            blocked: false,
            worktrees: BTreeSet::new(),
            crashes_left: 3,
            crash_chance,
            busy_chance,
            cancels_seen: BTreeMap::new(),
            over_seen: BTreeMap::new(),
            stops_asked: BTreeSet::new(),
            last_handled: Timestamp(0),
            shutdown_at: None,
            shutdown_seen: None,
            calls: BTreeMap::new(),
            next_call: 0,
            skipped_merge: false,
            trace: Vec::new(),
        }
    }

    fn at(&mut self, at: Timestamp, event: Event) {
        self.seq += 1;
        let key = self.seq as usize;
        self.events.insert(key, event);
        self.queue.push(Reverse((at, self.seq, key)));
    }

    fn after(&mut self, ms: u64, event: Event) {
        self.at(self.now.plus(Duration(ms)), event);
    }

    fn note(&mut self, text: String) {
        // A step that repeats is noted once.
        if self.trace.last().is_some_and(|last| last.ends_with(&text)) {
            return;
        }
        if self.trace.len() >= 400 {
            self.trace.remove(0);
        }
        self.trace.push(format!("{:>6} ms  {text}", self.now.0));
    }

    fn fail(&self, what: impl Into<String>) -> Violation {
        format!(
            "seed {}: at {} ms (virtual): {}",
            self.seed,
            self.now.0,
            what.into()
        )
    }

    /// Runs the world to its end and returns its trace, whatever the outcome.
    pub fn run_traced(mut self) -> Vec<String> {
        let outcome = self.run_inner();
        let mut trace = self.trace;
        trace.push(format!("{outcome:?}"));
        trace
    }

    /// Runs the world to its end; the first invariant violated, if any.
    pub fn run(mut self) -> Result<(), (Violation, Vec<String>)> {
        match self.run_inner() {
            Ok(()) => Ok(()),
            Err(v) => Err((v, self.trace)),
        }
    }

    fn run_inner(&mut self) -> Result<(), Violation> {
        let tasks = 1 + self.rng.below(5);
        for n in 0..tasks {
            let mut new = NewTask::titled(format!("task {n}"));
            new.priority = self.rng.below(3) as i32;
            self.store
                .apply("cli", self.now, &[Change::CreateTask(new)])
                .map_err(|e| self.fail(format!("setup: {e}")))?;
        }
        for _ in 0..self.rng.below(4) {
            let at = self.rng.below(CALM_AFTER.0 as u64);
            self.at(Timestamp(at as i64), Event::Cli);
        }
        let shutdown = self.rng.below(100) < 20;
        if shutdown {
            let at = 200 + self.rng.below(CALM_AFTER.0 as u64);
            self.at(Timestamp(at as i64), Event::Shutdown);
        }
        self.boot()?;
        // Steps at one instant: a core that answers its own effects forever without time
        // passing is stuck in a loop.
        let mut same_instant = 0;
        while let Some(Reverse((at, _, key))) = self.queue.pop() {
            let event = self.events.remove(&key).expect("queued event");
            same_instant = if at == self.now { same_instant + 1 } else { 0 };
            if same_instant > 5_000 {
                return Err(self.fail("the engine loops without time passing"));
            }
            self.now = at;
            if self.now > SETTLE_BY {
                let mut tasks: Vec<String> = self
                    .store
                    .state
                    .tasks()
                    .filter(|t| !t.state.is_terminal())
                    .map(|t| format!("#{} {}", t.id, t.state))
                    .collect();
                tasks.sort();
                let quiet = self.core.as_ref().map(Core::is_quiet);
                return Err(self.fail(format!(
                    "the run did not settle: something waits forever (running: {:?}, engine \
                     quiet: {quiet:?}, tasks not ended: {})",
                    self.procs.keys().collect::<Vec<_>>(),
                    tasks.join(", ")
                )));
            }
            self.step(event)?;
            self.check()?;
            if self.finished()? {
                return self.check_end();
            }
        }
        Err(self.fail("nothing left to happen, yet the run has not settled"))
    }

    /// Starts an incarnation of the engine: load, recover.
    fn boot(&mut self) -> Result<(), Violation> {
        let options = Options {
            workspaces: true,
            lease: Some((node(), LEASE)),
            ..Options::default()
        };
        let mut core = Core::new(self.config.clone(), options);
        let mut tasks: Vec<_> = self.store.state.tasks().cloned().collect();
        tasks.sort_by_key(|t| t.id);
        let mut effects = core.handle(Input::Changed(tasks), self.now);
        let mut orphans: Vec<_> = self
            .store
            .state
            .executions()
            .filter(|e| e.state.is_active())
            .cloned()
            .collect();
        orphans.sort_by_key(|e| e.id);
        let worktrees: Vec<TaskId> = self.worktrees.iter().copied().collect();
        let merges_due = self.store.parents_with_merges_due();
        self.core = Some(core);
        self.note(format!(
            "engine starts (incarnation {}), {} executions left active",
            self.generation,
            orphans.len()
        ));
        let now = self.now;
        effects.extend(self.core_mut().handle(
            Input::Recover {
                orphans,
                merges_due,
                worktrees,
            },
            now,
        ));
        let generation = self.generation;
        self.after(FOLLOW.0, Event::Follow { generation });
        self.push_effects(effects);
        self.pump()
    }

    /// Takes the effects of an input the core has just handled at `self.now`.
    fn push_effects(&mut self, effects: Vec<Effect>) {
        self.last_handled = self.now;
        for effect in &effects {
            if let Effect::Stop { execution, .. } = effect {
                self.stops_asked.insert(*execution);
            }
        }
        for effect in effects.into_iter().rev() {
            self.stack.push_front(effect);
        }
    }

    /// Performs effects and hands the core its inputs, one at a time, until a write is under
    /// way or nothing is left.
    fn pump(&mut self) -> Result<(), Violation> {
        while self.core.is_some() && !self.blocked {
            if let Some(effect) = self.stack.pop_front() {
                self.perform(effect)?;
                continue;
            }
            let Some(mut input) = self.inbox.pop_front() else {
                break;
            };
            // The runner reads from the store whether merges into the task are due as it
            // hands the end over, as the engine does.
            if let Input::Update(Update::Finished(f)) = &mut input
                && let Some(execution) = self.store.state.execution(f.id)
            {
                f.merges_due = !self.store.merges_due(execution.task_id, true).is_empty();
            }
            let now = self.now;
            // From the moment the core hears of a cancel, its task's executions have the grace
            // period to end.
            if input == Input::Shutdown {
                self.shutdown_seen = Some(now);
            }
            // From the moment the core hears an execution is over budget, it has the budget's
            // grace and then the stop's to end.
            if let Input::Notice(Notice::BudgetExceeded { execution, .. }) = &input
                && self.core_mut().running().contains_key(execution)
            {
                self.over_seen.entry(*execution).or_insert(now);
            }
            if let Input::Changed(tasks) | Input::Reloaded(tasks) = &input {
                for task in tasks.iter().filter(|t| t.state == TaskState::Cancelled) {
                    self.cancels_seen.entry(task.id).or_insert(now);
                }
            }
            let effects = self.core_mut().handle(input, now);
            self.push_effects(effects);
        }
        Ok(())
    }

    fn core_mut(&mut self) -> &mut Core {
        self.core.as_mut().expect("a running engine")
    }

    /// Hands `input` to the core when the runner gets to it.
    fn feed(&mut self, input: Input) -> Result<(), Violation> {
        if self.core.is_none() {
            return Ok(());
        }
        self.inbox.push_back(input);
        self.pump()
    }

    fn step(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Deliver { generation, input } => {
                if generation == self.generation {
                    self.feed(input)?;
                }
            }
            Event::Follow { generation } => {
                if generation == self.generation && self.core.is_some() {
                    self.feed(Input::Tick)?;
                    self.after(FOLLOW.0, Event::Follow { generation });
                }
            }
            Event::Agent { execution, step } => self.agent_step(execution, step)?,
            Event::Write {
                generation,
                id,
                changes,
                mode,
                crash_after,
            } => {
                if generation != self.generation {
                    return Ok(());
                }
                let outcome = self.write(&changes, mode)?;
                self.blocked = false;
                if crash_after {
                    self.note("crash just after a write".into());
                    self.crash();
                    return Ok(());
                }
                let now = self.now;
                let effects = self
                    .core_mut()
                    .handle(Input::Persisted { id, outcome }, now);
                self.push_effects(effects);
                self.pump()?;
            }
            Event::Cli => self.cli()?,
            Event::Restart => {
                self.boot()?;
            }
            Event::Shutdown => {
                if self.core.is_some() && self.shutdown_at.is_none() {
                    self.note("shutdown".into());
                    self.shutdown_at = Some(self.now);
                    self.feed(Input::Shutdown)?;
                }
            }
        }
        Ok(())
    }

    /// Writes a batch as the runner does for its mode.
    fn write(&mut self, changes: &[Change], mode: PersistMode) -> Result<Outcome, Violation> {
        let now = self.now;
        match self.store.apply("engine", now, changes) {
            Ok(written) => {
                self.note(format!("wrote {}", names(changes)));
                return Ok(Outcome::Written(written));
            }
            Err(why) if mode == PersistMode::Whole => {
                self.note(format!("refused {}: {why}", names(changes)));
                return Ok(Outcome::Refused(why));
            }
            Err(_) => {}
        }
        // Change by change (held: progress, then each end whole or its finish alone).
        let mut tasks = BTreeSet::new();
        let mut executions = BTreeSet::new();
        let groups = match mode {
            PersistMode::Held => held_groups(changes),
            _ => changes.iter().map(|c| vec![c.clone()]).collect(),
        };
        for group in groups {
            for change in &group {
                touch(change, &mut tasks, &mut executions);
                if let Change::FinishMerge { child, .. } = change
                    && let Some(step) = self.store.state.merge(*child)
                {
                    tasks.insert(step.parent);
                }
            }
            if self.store.apply("engine", now, &group).is_ok() {
                continue;
            }
            let finish: Vec<Change> = group
                .iter()
                .filter(|c| matches!(c, Change::FinishExecution { .. }))
                .cloned()
                .collect();
            if mode == PersistMode::Held
                && !finish.is_empty()
                && let Err(why) = self.store.apply("engine", now, &finish)
            {
                return Err(self.fail(format!("an execution's end could not be recorded: {why}")));
            }
        }
        self.note(format!("wrote in parts {}", names(changes)));
        Ok(Outcome::Written(self.store.rows(tasks, executions)))
    }

    fn perform(&mut self, effect: Effect) -> Result<(), Violation> {
        let generation = self.generation;
        {
            match effect {
                Effect::Persist {
                    id,
                    mut changes,
                    mode,
                } => {
                    if self.defects.drop_renewals {
                        changes.retain(|c| !matches!(c, Change::RenewLease { .. }));
                    }
                    // A crash while stopping ends the run for good: nothing starts it again.
                    let crash = self.crashes_left > 0
                        && self.shutdown_at.is_none()
                        && self.now < CALM_AFTER
                        && self.rng.below(100) < self.crash_chance as u64;
                    if crash && self.rng.below(2) == 0 {
                        self.note(format!("crash before writing {}", names(&changes)));
                        self.crash();
                        return Ok(());
                    }
                    // Another process may hold the write lock: the write waits, in order.
                    let busy = if self.rng.below(100) < self.busy_chance as u64 {
                        1 + self.rng.below(400)
                    } else {
                        0
                    };
                    let at = self.now.plus(Duration(busy));
                    self.blocked = true;
                    self.at(
                        at,
                        Event::Write {
                            generation,
                            id,
                            changes,
                            mode,
                            crash_after: crash,
                        },
                    );
                }
                Effect::Start {
                    execution,
                    task,
                    kind,
                    ..
                } => self.start(execution, task, kind)?,
                Effect::Stop { execution, reason } => self.stop(execution, reason),
                Effect::Revoke { .. } => {}
                Effect::StartJob {
                    task,
                    children: _,
                    work,
                } => self.start_job(task.id, work),
                Effect::Terminate { executions } => {
                    // One round of SIGTERM and SIGKILL for all of them.
                    let ms = 1 + self.rng.below(GRACE.0);
                    for id in &executions {
                        if let Some(proc) = self.procs.get_mut(id) {
                            proc.ends_at = Some(self.now.plus(Duration(ms)));
                        }
                    }
                    let now = self.now.plus(Duration(ms));
                    let dead: Vec<ExecutionId> = executions
                        .iter()
                        .filter(|id| self.procs.contains_key(id))
                        .copied()
                        .collect();
                    for id in dead {
                        self.at(
                            now,
                            Event::Agent {
                                execution: id,
                                step: AgentStep::End(ExecutionState::Cancelled),
                            },
                        );
                    }
                    self.at(
                        now.plus(Duration(1)),
                        Event::Deliver {
                            generation,
                            input: Input::Terminated,
                        },
                    );
                }
                Effect::Reload { tasks } => {
                    // The runner reads them at once: they are the next input.
                    let rows = self.store.rows(tasks, []).tasks;
                    self.inbox.push_front(Input::Reloaded(rows));
                }
                Effect::Reply { call, result } => {
                    let Some(execution) = self.calls.remove(&call) else {
                        return Ok(());
                    };
                    if let Ok(Some(id)) = &result
                        && self.store.state.task(*id).is_none()
                    {
                        return Err(self.fail(format!(
                            "a call was answered with sub-task #{id}, which the store does not have"
                        )));
                    }
                    if self.procs.get(&execution).is_some_and(|p| p.calls_left > 0) {
                        let ms = 1 + self.rng.below(10);
                        self.after(
                            ms,
                            Event::Agent {
                                execution,
                                step: AgentStep::Call,
                            },
                        );
                    } else if self.procs.contains_key(&execution) {
                        let ms = 1 + self.rng.below(10);
                        self.after(
                            ms,
                            Event::Agent {
                                execution,
                                step: AgentStep::End(ExecutionState::Succeeded),
                            },
                        );
                    }
                }
                Effect::Wake { at } => self.at(
                    at.max(self.now),
                    Event::Deliver {
                        generation,
                        input: Input::Tick,
                    },
                ),
            }
        }
        Ok(())
    }

    /// The engine dies: its memory and every message to it are gone; the processes it started
    /// live on as orphans until the next incarnation winds them down.
    fn crash(&mut self) {
        self.crashes_left -= 1;
        self.core = None;
        self.generation += 1;
        self.calls.clear();
        self.cancels_seen.clear();
        // A stop the dead engine had not taken in died with it.
        if self.shutdown_seen.is_none() {
            self.shutdown_at = None;
        }
        self.inbox.clear();
        self.stack.clear();
        self.blocked = false;
        let ms = 1 + self.rng.below(500);
        self.after(ms, Event::Restart);
    }

    fn start(
        &mut self,
        execution: ExecutionId,
        task: TaskId,
        kind: ExecutionKind,
    ) -> Result<(), Violation> {
        if let Some((other, _)) = self.procs.iter().find(|(_, p)| p.task == task) {
            return Err(self.fail(format!(
                "execution #{execution} of task #{task} starts while #{other} of the same task \
                 still runs"
            )));
        }
        let cap = self.config.global_concurrency as usize;
        if self.procs.len() >= cap {
            return Err(self.fail(format!(
                "execution #{execution} starts with {} already running: the cap is {cap}",
                self.procs.len()
            )));
        }
        let depth = self.store.state.task(task).map_or(0, |t| t.depth);
        let roll = self.rng.below(100);
        let behaviour = match roll {
            _ if kind == ExecutionKind::Work && depth == 0 && roll < 35 => {
                Behaviour::Plan(1 + self.rng.below(3) as u32)
            }
            0..=44 => Behaviour::Succeed,
            45..=64 => Behaviour::Fail,
            65..=79 => Behaviour::Hang,
            80..=84 => Behaviour::Block,
            _ => Behaviour::Comment,
        };
        self.note(format!(
            "execution #{execution} of task #{task} starts ({kind:?}, {behaviour:?})"
        ));
        let calls_left = match behaviour {
            Behaviour::Plan(n) => n,
            Behaviour::Block | Behaviour::Comment => 1,
            _ => 0,
        };
        self.procs.insert(
            execution,
            Proc {
                task,
                behaviour,
                generation: self.generation,
                stop_asked_at: None,
                calls_left,
                ends_at: None,
            },
        );
        self.worktrees.insert(task);
        // The gateway refuses a request over budget now and then; the agent may end by itself
        // after the refusal, or go on until it is stopped.
        if self.rng.below(100) < 15 {
            let ms = 5 + self.rng.below(200);
            let generation = self.generation;
            self.after(
                ms,
                Event::Deliver {
                    generation,
                    input: Input::Notice(Notice::BudgetExceeded {
                        execution,
                        reason: "the task tree's budget of $1.00 is used up".into(),
                    }),
                },
            );
            if self.rng.below(2) == 0 {
                let ms = ms + self.rng.below(3_000);
                self.after(
                    ms,
                    Event::Agent {
                        execution,
                        step: AgentStep::End(ExecutionState::Failed),
                    },
                );
            }
        }
        let ms = 1 + self.rng.below(20);
        self.after(
            ms,
            Event::Agent {
                execution,
                step: AgentStep::Started,
            },
        );
        Ok(())
    }

    fn stop(&mut self, execution: ExecutionId, reason: StopReason) {
        let Some(proc) = self.procs.get_mut(&execution) else {
            return;
        };
        if proc.stop_asked_at.is_some() {
            return;
        }
        proc.stop_asked_at = Some(self.now);
        self.note(format!("execution #{execution} asked to stop ({reason:?})"));
        let state = match reason {
            StopReason::TimedOut => ExecutionState::TimedOut,
            StopReason::Stalled => ExecutionState::Stalled,
            StopReason::Cancelled | StopReason::Shutdown => ExecutionState::Cancelled,
            StopReason::BudgetExceeded => ExecutionState::BudgetExceeded,
        };
        // Some agents end at SIGTERM, the rest at SIGKILL when the grace runs out.
        let ms = self.rng.below(GRACE.0 + 1);
        self.after(
            ms,
            Event::Agent {
                execution,
                step: AgentStep::End(state),
            },
        );
    }

    /// Sends an executor's update to the core, delayed but in order for its execution.
    fn report(&mut self, execution: ExecutionId, generation: u32, update: Update) {
        let delay = self.rng.below(8);
        let at = self.now.plus(Duration(delay)).max(
            self.update_order
                .get(&execution)
                .copied()
                .unwrap_or(Timestamp(0)),
        );
        self.update_order.insert(execution, at);
        self.at(
            at,
            Event::Deliver {
                generation,
                input: Input::Update(update),
            },
        );
    }

    fn agent_step(&mut self, execution: ExecutionId, step: AgentStep) -> Result<(), Violation> {
        let Some(proc) = self.procs.get(&execution).cloned() else {
            return Ok(());
        };
        let orphan = proc.generation != self.generation;
        match step {
            AgentStep::Started => {
                if orphan || proc.stop_asked_at.is_some() {
                    return Ok(());
                }
                let preparing = Change::SetExecutionState {
                    id: execution,
                    to: ExecutionState::Preparing,
                    reason: None,
                };
                self.report(
                    execution,
                    proc.generation,
                    Update::Progress {
                        id: execution,
                        change: preparing,
                    },
                );
                let branch = format!("agentgrid/task-{}", proc.task);
                self.report(
                    execution,
                    proc.generation,
                    Update::Branch {
                        task: proc.task,
                        branch,
                    },
                );
                let change = Change::SetExecutionState {
                    id: execution,
                    to: ExecutionState::Running,
                    reason: None,
                };
                let at = self.now;
                self.report(
                    execution,
                    proc.generation,
                    Update::ProcessStarted {
                        id: execution,
                        at,
                        change,
                    },
                );
                if self.rng.below(100) < 30 {
                    let usage = Change::RecordModelUsage {
                        id: execution,
                        model: "fast".into(),
                        tokens: domain::Tokens {
                            input: 100,
                            output: 20,
                            cached: 0,
                        },
                        cost_micros: 150,
                    };
                    let ms = self.rng.below(100);
                    let generation = proc.generation;
                    self.after(
                        ms,
                        Event::Deliver {
                            generation,
                            input: Input::Notice(Notice::Record(usage)),
                        },
                    );
                }
                let ms = 5 + self.rng.below(150);
                match proc.behaviour {
                    Behaviour::Succeed => self.after(
                        ms,
                        Event::Agent {
                            execution,
                            step: AgentStep::End(ExecutionState::Succeeded),
                        },
                    ),
                    Behaviour::Fail => self.after(
                        ms,
                        Event::Agent {
                            execution,
                            step: AgentStep::End(ExecutionState::Failed),
                        },
                    ),
                    Behaviour::Hang => {}
                    Behaviour::Plan(_) | Behaviour::Block | Behaviour::Comment => self.after(
                        ms,
                        Event::Agent {
                            execution,
                            step: AgentStep::Call,
                        },
                    ),
                }
            }
            AgentStep::Call => {
                if orphan || proc.stop_asked_at.is_some() || proc.calls_left == 0 {
                    return Ok(());
                }
                let left = proc.calls_left - 1;
                self.procs.get_mut(&execution).expect("live").calls_left = left;
                let op = match proc.behaviour {
                    Behaviour::Plan(n) => CallOp::SubtaskCreate {
                        title: format!("part {} of #{}", n - left, proc.task),
                        key: format!("part-{}", n - left),
                    },
                    Behaviour::Block => CallOp::Block {
                        reason: "which database?".into(),
                    },
                    _ => CallOp::Comment {
                        text: "halfway".into(),
                    },
                };
                let call = self.next_call;
                self.next_call += 1;
                self.calls.insert(call, execution);
                let generation = proc.generation;
                let ms = self.rng.below(3);
                self.after(
                    ms,
                    Event::Deliver {
                        generation,
                        input: Input::Call {
                            call,
                            execution,
                            op,
                        },
                    },
                );
            }
            AgentStep::End(state) => {
                self.procs.remove(&execution);
                if let Some(asked) = proc.stop_asked_at
                    && self.now > asked.plus(GRACE)
                {
                    return Err(self.fail(format!(
                        "execution #{execution} ended {} ms after it was asked to stop; the grace \
                         is {} ms",
                        self.now.since(asked).0,
                        GRACE.0
                    )));
                }
                self.note(format!("execution #{execution} ends {state:?}"));
                if orphan {
                    return Ok(());
                }
                let merges_due = !self.store.merges_due(proc.task, true).is_empty();
                let mut finished = Finished::plain(execution, state);
                finished.merges_due = merges_due;
                if state == ExecutionState::Failed {
                    finished.exit_code = Some(1);
                    finished.summary = Some("the agent exited with status 1".into());
                }
                self.report(execution, proc.generation, Update::Finished(finished));
            }
        }
        Ok(())
    }

    fn start_job(&mut self, task: TaskId, work: Work) {
        // The job reads the merges due when it starts, as the engine's does.
        let mut merges = Vec::new();
        if let Some(failed) = work.merges {
            for child in self.store.merges_due(task, failed) {
                let outcome = if self.rng.below(100) < 8 {
                    MergeResult::Failed {
                        reason: "merging conflicts in src/lib.rs; the merge was undone".into(),
                    }
                } else {
                    MergeResult::Merged { commit: None }
                };
                let changed = matches!(outcome, MergeResult::Merged { .. });
                merges.push((child, outcome, changed));
            }
        }
        if self.defects.skip_a_merge && !self.skipped_merge && !merges.is_empty() {
            self.skipped_merge = true;
            self.note(format!("(defect) the merges into #{task} are skipped"));
            merges.clear();
        }
        let removal = work.remove.then(|| {
            if self.rng.below(100) < 15 {
                Removal::Busy
            } else {
                Removal::Removed
            }
        });
        if removal == Some(Removal::Removed) {
            self.worktrees.remove(&task);
        }
        self.note(format!("job on #{task}: {work:?}"));
        let ms = 1 + self.rng.below(JOB_MAX);
        let generation = self.generation;
        self.after(
            ms,
            Event::Deliver {
                generation,
                input: Input::JobReported(JobReport {
                    task,
                    merges,
                    removal,
                }),
            },
        );
    }

    /// Another process writes: cancels a task, or adds one. The engine hears of it when it
    /// follows the store.
    fn cli(&mut self) -> Result<(), Violation> {
        // The tracker's state keeps its rows in hash maps: sorted, so that the seed decides.
        let mut open: Vec<TaskId> = self
            .store
            .state
            .tasks()
            .filter(|t| !t.state.is_terminal())
            .map(|t| t.id)
            .collect();
        open.sort();
        let change = if !open.is_empty() && self.rng.below(2) == 0 {
            let id = open[self.rng.below(open.len() as u64) as usize];
            Change::SetTaskState {
                id,
                to: TaskState::Cancelled,
                reason: Some("not wanted".into()),
            }
        } else {
            Change::CreateTask(NewTask::titled("added later"))
        };
        let now = self.now;
        let Ok(written) = self.store.apply("cli", now, std::slice::from_ref(&change)) else {
            return Ok(());
        };
        self.note(format!("the CLI wrote {}", change.name()));
        let generation = self.generation;
        let follow = self.rng.below(FOLLOW.0);
        let tasks = written.tasks.clone();
        self.after(
            follow,
            Event::Deliver {
                generation,
                input: Input::Changed(tasks),
            },
        );
        Ok(())
    }

    /// The invariants that hold after every step.
    fn check(&self) -> Result<(), Violation> {
        let state = &self.store.state;
        // No completion recorded twice.
        let mut finished = BTreeSet::new();
        for entry in &self.store.log {
            if let domain::EventKind::ExecutionFinished { .. } = entry.kind
                && !finished.insert(entry.id)
            {
                return Err(self.fail(format!("execution #{} finished twice", entry.id)));
            }
        }
        // Every child's work merged before its parent is done.
        for task in state.tasks().filter(|t| t.state == TaskState::Done) {
            for child in state.tasks().filter(|c| c.parent == Some(task.id)) {
                if child.state != TaskState::Done {
                    continue;
                }
                if let Some(step) = state.merge(child.id)
                    && step.status != MergeStatus::Done
                {
                    return Err(self.fail(format!(
                        "task #{} is done but the work of its sub-task #{} is not merged into \
                         it ({:?}): every child's work is merged before its parent is done",
                        task.id, child.id, step.status
                    )));
                }
            }
        }
        // Every execution the live core runs was claimed under this node's lease, and the
        // lease holds: the core renews it a third of its length on, whatever the store holds
        // up.
        if let Some(core) = &self.core {
            for id in core.running().keys() {
                let Some(execution) = state.execution(*id).filter(|e| e.state.is_active()) else {
                    continue;
                };
                let Some(lease) = &execution.lease else {
                    return Err(self.fail(format!("execution #{id} was claimed without a lease")));
                };
                if lease.node != node() || lease.expired(self.now) {
                    return Err(self.fail(format!(
                        "execution #{id} runs under a lease of {} until {} ms at {} ms: a \
                         running execution's lease is renewed before it runs out",
                        lease.node, lease.until.0, self.now.0
                    )));
                }
            }
        }
        // At most one active execution per task (the store's own rule, checked from outside).
        let mut active = BTreeSet::new();
        for execution in state.executions().filter(|e| e.state.is_active()) {
            if !active.insert(execution.task_id) {
                return Err(self.fail(format!(
                    "task #{} has two active executions",
                    execution.task_id
                )));
            }
        }
        // Stops are bounded: a cancelled task and a stopping engine have no process left after
        // the grace period.
        for (task, seen) in &self.cancels_seen {
            if self.now > seen.plus(GRACE).plus(Duration(1))
                && let Some((id, _)) = self
                    .procs
                    .iter()
                    .find(|(_, p)| p.task == *task && p.generation == self.generation)
            {
                return Err(self.fail(format!(
                    "execution #{id} of cancelled task #{task} still runs past the grace period"
                )));
            }
        }
        // An execution over budget is asked to stop by the first input the core handles once
        // the budget's grace is out (it then ends within the stop's grace, checked as it ends);
        // it is recorded as over budget unless a cancel or a crash ended it first.
        let running = self.core.as_ref().map(Core::running);
        for (id, seen) in &self.over_seen {
            if self.last_handled >= seen.plus(BUDGET_GRACE)
                && running.is_some_and(|r| r.contains_key(id))
                && !self.stops_asked.contains(id)
            {
                return Err(self.fail(format!(
                    "execution #{id} was refused over budget at {} ms and the core, at {} ms, \
                     has not asked it to stop: the budget's grace is {} ms",
                    seen.0, self.last_handled.0, BUDGET_GRACE.0
                )));
            }
            if let Some(e) = state.execution(*id)
                && e.state.is_terminal()
                && !matches!(
                    e.state,
                    ExecutionState::BudgetExceeded
                        | ExecutionState::Cancelled
                        | ExecutionState::Lost
                )
            {
                return Err(self.fail(format!(
                    "execution #{id} was refused over budget but is recorded {}: an execution \
                     over budget ends as such",
                    e.state
                )));
            }
        }
        if let Some(at) = self.shutdown_seen
            && self.now > at.plus(GRACE).plus(Duration(10))
            && let Some((id, _)) = self
                .procs
                .iter()
                .find(|(_, p)| p.generation == self.generation)
        {
            return Err(self.fail(format!(
                "execution #{id} still runs past the grace period after the shutdown"
            )));
        }
        Ok(())
    }

    /// Whether the run is over: stopped, or nothing left to do.
    fn finished(&mut self) -> Result<bool, Violation> {
        let now = self.now;
        let Some(core) = self.core.as_mut() else {
            return Ok(false);
        };
        if self.shutdown_at.is_some() {
            if core.is_done() {
                return Ok(true);
            }
            let Some(at) = self.shutdown_seen else {
                return Ok(false);
            };
            if now > at.plus(GRACE).plus(Duration(JOB_MAX + 500)) {
                return Err(self.fail("the engine did not finish stopping in time"));
            }
            return Ok(false);
        }
        Ok(now >= CALM_AFTER && self.procs.is_empty() && core.is_idle(now))
    }

    /// What must hold once the run is over.
    fn check_end(&self) -> Result<(), Violation> {
        if let Some((id, _)) = self.procs.iter().next() {
            return Err(self.fail(format!("execution #{id} still runs at the end")));
        }
        if let Some(e) = self.store.state.executions().find(|e| e.state.is_active()) {
            return Err(self.fail(format!(
                "execution #{} is still active in the store at the end: its end was lost",
                e.id
            )));
        }
        Ok(())
    }
}

/// A held batch as the engine's runner splits it when it cannot be written whole: progress
/// change by change, then each end (from its `FinishExecution` on) as one group.
fn held_groups(changes: &[Change]) -> Vec<Vec<Change>> {
    let mut groups: Vec<Vec<Change>> = Vec::new();
    let mut in_ends = false;
    for change in changes {
        let starts_end = matches!(change, Change::FinishExecution { .. });
        if starts_end || !in_ends {
            groups.push(vec![change.clone()]);
            in_ends |= starts_end;
        } else {
            groups
                .last_mut()
                .expect("an end began")
                .push(change.clone());
        }
    }
    groups
}

fn touch(change: &Change, tasks: &mut BTreeSet<TaskId>, executions: &mut BTreeSet<ExecutionId>) {
    match change {
        Change::SettleTask { id, .. }
        | Change::SetTaskState { id, .. }
        | Change::ScheduleTask { id, .. }
        | Change::SetBranch { id, .. }
        | Change::Comment { id, .. } => {
            tasks.insert(*id);
        }
        Change::FinishExecution { id, .. }
        | Change::SetExecutionState { id, .. }
        | Change::ProcessStarted { id, .. } => {
            executions.insert(*id);
        }
        Change::FinishMerge { child, .. } => {
            tasks.insert(*child);
        }
        _ => {}
    }
}

fn names(changes: &[Change]) -> String {
    let names: Vec<&str> = changes.iter().map(Change::name).collect();
    names.join("+")
}
