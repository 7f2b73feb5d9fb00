//! Every rule family in one random world: kills of timed-out and silent executions, tasks no
//! agent can take, parents closed from their children's evidence, claims, nudges, blocks,
//! cancels from outside, caps and guards, backoff timers, resumes, worktrees in the engine's
//! hands and paused providers. The world is driven by a script of outside events; every
//! decision is checked against what the rules promise, and once the script is over the world
//! must settle with nothing left that could still run.

use std::collections::HashSet;

use domain::{
    Duration, ExecutionId, ExecutionKind, ExecutionState, FailureClass, NewTask, Task, TaskId,
    TaskState, Timestamp,
};
use proptest::prelude::*;
use scheduler::{
    Action, ActiveExecution, AgentPolicy, Config, Decision, ExecutionEnd, Guards, KillReason,
    RetryPolicy, Snapshot, after_execution, decide, route,
};

use crate::props::{check_decision, check_parents};
use crate::world::{push_linked, start_split};

const LABELS: [&str; 4] = ["a", "b", "needs:x", "needs:y"];
const PROVIDERS: [&str; 2] = ["p0", "p1"];

/// How an execution that the script ends comes out.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Succeeded,
    Failed,
    Blocked,
}

/// Something that happens from outside between two decisions.
#[derive(Debug, Clone, Copy)]
enum Poke {
    Nothing,
    /// A person nudges the task at this index.
    Nudge(usize),
    /// A person cancels it; its execution, if any, ends.
    Cancel(usize),
    /// The engine starts work on its worktree (a merge, a removal), or finishes it.
    ToggleWorkspace(usize),
    /// A provider reports its quota used up for this many seconds.
    Pause(usize, u64),
}

#[derive(Debug, Clone, Copy)]
struct Step {
    /// Which active executions end (by position parity), and how.
    pick: u8,
    outcome: Outcome,
    poke: Poke,
    /// How far the clock moves after this step, unless a wake-up comes first.
    advance_secs: u64,
}

#[derive(Debug, Clone)]
struct World {
    config: Config,
    tasks: Vec<Task>,
    script: Vec<Step>,
}

fn arb_agent() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Option<u32>, u32, u8)> {
    (
        prop::collection::vec(0..2usize, 0..2),
        prop::collection::vec(0..2usize, 0..2),
        prop::option::of(1..3u32),
        1..4u32,
        any::<u8>(),
    )
}

fn arb_step() -> impl Strategy<Value = Step> {
    let outcome = prop_oneof![
        3 => Just(Outcome::Succeeded),
        2 => Just(Outcome::Failed),
        1 => Just(Outcome::Blocked),
    ];
    let poke = prop_oneof![
        6 => Just(Poke::Nothing),
        2 => (0..30usize).prop_map(Poke::Nudge),
        1 => (0..30usize).prop_map(Poke::Cancel),
        1 => (0..30usize).prop_map(Poke::ToggleWorkspace),
        1 => (0..2usize, 1..120u64).prop_map(|(p, s)| Poke::Pause(p, s)),
    ];
    (any::<u8>(), outcome, poke, 0..90u64).prop_map(|(pick, outcome, poke, advance_secs)| Step {
        pick,
        outcome,
        poke,
        advance_secs,
    })
}

fn arb_world() -> impl Strategy<Value = World> {
    let agents = prop::collection::vec(arb_agent(), 1..4);
    let tasks = prop::collection::vec(
        (
            prop::collection::vec(0..LABELS.len(), 0..3),
            0..4i32,
            prop::option::of(0..30usize),
            prop::collection::vec(0..30usize, 0..2),
            // An explicit assignment: none, one of the agents, or one that is not defined.
            prop::option::of(0..4usize),
            // Starts in backoff after this many failed attempts.
            0..3u32,
        ),
        1..30,
    );
    let caps = (1..5u32, 2..40u32, 1..4u32);
    let script = prop::collection::vec(arb_step(), 20..120);
    (agents, tasks, caps, script).prop_map(|(agents, tasks, (global, rate, depth), script)| {
        let agents: Vec<AgentPolicy> = agents
            .into_iter()
            .enumerate()
            .map(|(i, (labels, capabilities, concurrency, attempts, bits))| {
                let mut a = AgentPolicy::new(format!("agent{i}"));
                a.labels = labels.into_iter().map(|l| LABELS[l].to_string()).collect();
                a.capabilities = capabilities
                    .into_iter()
                    .map(|c| ["x", "y"][c].to_string())
                    .collect();
                a.default = i == 0;
                a.concurrency = concurrency;
                a.max_attempts = attempts;
                a.validators = bits & 1 == 1;
                if bits & 2 == 2 {
                    a.kinds = vec![ExecutionKind::Work];
                }
                a.providers = PROVIDERS
                    .iter()
                    .enumerate()
                    .filter(|(p, _)| bits >> (2 + p) & 1 == 1)
                    .map(|(_, name)| name.to_string())
                    .collect();
                a.timeout = Duration::from_secs(30 + u64::from(bits >> 4) * 20);
                a.stall_timeout = Duration::from_secs(20 + u64::from(bits >> 5) * 10);
                a
            })
            .collect();
        let names: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
        let config = Config {
            global_concurrency: global,
            agents,
            guards: Guards {
                max_depth: depth,
                max_new_executions_per_minute: rate,
                max_executions_per_task: 5,
                max_executions_per_tree: 30,
                ..Guards::default()
            },
            retry: RetryPolicy {
                base_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(40),
            },
            resume_interval: Duration::from_secs(90),
            ..Config::default()
        };
        let start = Timestamp(10_000_000);
        let mut built: Vec<Task> = Vec::new();
        for (i, (labels, priority, parent, deps, assigned, failed)) in tasks.into_iter().enumerate()
        {
            let mut new = NewTask::titled(format!("t{}", i + 1));
            new.labels = labels.into_iter().map(|l| LABELS[l].to_string()).collect();
            new.priority = priority;
            new.agent = assigned.map(|a| names.get(a).cloned().unwrap_or("ghost".into()));
            let task = push_linked(&mut built, new, parent, deps);
            if failed > 0 {
                task.attempts = failed;
                task.not_before = Some(start.plus(config.retry.backoff(failed)));
            }
        }
        start_split(&mut built);
        World {
            config,
            tasks: built,
            script,
        }
    })
}

/// An execution as the simulation tracks it: the scheduler's view, and whether its agent
/// has gone silent (it then ends only by a kill).
struct Running {
    exec: ActiveExecution,
    silent: bool,
}

struct Sim<'w> {
    config: &'w Config,
    s: Snapshot,
    running: Vec<Running>,
    now: Timestamp,
    next_exec: i64,
    /// Every task ever dispatched, to tell that a task no agent can take never was.
    dispatched: HashSet<TaskId>,
}

impl<'w> Sim<'w> {
    fn new(world: &'w World) -> Sim<'w> {
        let mut s = Snapshot::default();
        for t in &world.tasks {
            s.insert(t.clone());
        }
        Sim {
            config: &world.config,
            s,
            running: Vec::new(),
            now: Timestamp(10_000_000),
            next_exec: 1,
            dispatched: HashSet::new(),
        }
    }

    fn task_at(&self, index: usize) -> Option<TaskId> {
        let id = TaskId(index as i64 + 1);
        self.s.task(id).map(|t| t.id)
    }

    fn sync_active(&mut self) {
        self.s.active = self.running.iter().map(|r| r.exec.clone()).collect();
    }

    /// What a person or the engine does from outside between decisions.
    fn poke(&mut self, poke: Poke) -> Result<(), TestCaseError> {
        match poke {
            Poke::Nothing => {}
            Poke::Nudge(i) => {
                if let Some(id) = self.task_at(i) {
                    let now = self.now;
                    self.s.update(id, |t| {
                        if !t.state.is_terminal() {
                            t.nudged_at = Some(now);
                        }
                    });
                }
            }
            Poke::Cancel(i) => {
                if let Some(id) = self.task_at(i) {
                    let state = self.s.task(id).unwrap().state;
                    if !state.is_terminal() {
                        prop_assert!(state.can_transition_to(TaskState::Cancelled));
                        self.s.update(id, |t| t.state = TaskState::Cancelled);
                        // The engine stops a cancelled task's execution; its end changes
                        // nothing more.
                        self.running.retain(|r| r.exec.task != id);
                    }
                }
            }
            Poke::ToggleWorkspace(i) => {
                if let Some(id) = self.task_at(i)
                    && !self.s.busy_workspaces.remove(&id)
                    && !self.running.iter().any(|r| r.exec.task == id)
                {
                    self.s.busy_workspaces.insert(id);
                }
            }
            Poke::Pause(p, secs) => {
                let until = self.now.plus(Duration::from_secs(secs));
                self.s
                    .paused_providers
                    .insert(PROVIDERS[p].to_string(), until);
            }
        }
        // Agents that are not silent show signs of life at every step.
        let now = self.now;
        for r in self.running.iter_mut().filter(|r| !r.silent) {
            r.exec.last_activity_at = now;
        }
        self.s
            .recent_dispatches
            .retain(|t| now.since(*t) < Duration::from_secs(60));
        self.sync_active();
        Ok(())
    }

    fn decide_and_check(&self) -> Result<Decision, TestCaseError> {
        let decision = decide(&self.s, self.config, self.now);
        check_decision(&self.s, self.config, &decision, self.now)?;
        check_parents(&self.s, self.config, &decision, self.now, false)?;
        check_families(&self.s, self.config, &decision, self.now)?;
        Ok(decision)
    }

    fn carry_out(&mut self, decision: &Decision, silent_bits: u8) -> Result<(), TestCaseError> {
        for (n, action) in decision.actions.iter().enumerate() {
            match action {
                Action::Dispatch {
                    task, agent, kind, ..
                } => {
                    let now = self.now;
                    self.s.update(*task, |t| {
                        t.state = TaskState::Running;
                        t.executions += 1;
                        t.nudged_at = None;
                    });
                    self.running.push(Running {
                        exec: ActiveExecution {
                            id: ExecutionId(self.next_exec),
                            task: *task,
                            agent: agent.clone(),
                            kind: *kind,
                            iteration_started_at: Some(now),
                            last_activity_at: now,
                            kill_requested: false,
                        },
                        silent: (silent_bits >> (n % 8)) & 1 == 1 && n % 3 == 0,
                    });
                    self.next_exec += 1;
                    self.dispatched.insert(*task);
                    self.s.recent_dispatches.push(now);
                }
                Action::Kill { execution, .. } => {
                    let r = self.running.iter_mut().find(|r| r.exec.id == *execution);
                    r.expect("a kill names an active execution")
                        .exec
                        .kill_requested = true;
                }
                Action::FailTask { task, .. } => {
                    self.s.update(*task, |t| t.state = TaskState::Failed);
                }
                Action::CloseParent { task, to, .. } => {
                    self.s.update(*task, |t| t.state = *to);
                }
            }
        }
        self.sync_active();
        Ok(())
    }

    /// Ends the killed executions (as failures) and, of the others that are not silent, those
    /// the step picks, with the step's outcome.
    fn end_executions(&mut self, pick: u8, outcome: Outcome) -> Result<(), TestCaseError> {
        let mut ending = Vec::new();
        for (i, r) in self.running.iter().enumerate() {
            let picked = !r.silent && (i as u8 ^ pick).is_multiple_of(2);
            if r.exec.kill_requested || picked {
                ending.push(i);
            }
        }
        for i in ending.into_iter().rev() {
            let r = self.running.remove(i);
            let outcome = if r.exec.kill_requested {
                Outcome::Failed
            } else {
                outcome
            };
            self.end(&r.exec, outcome)?;
        }
        self.sync_active();
        Ok(())
    }

    fn end(&mut self, exec: &ActiveExecution, outcome: Outcome) -> Result<(), TestCaseError> {
        let task = self.s.task(exec.task).unwrap().clone();
        prop_assert_eq!(
            task.state,
            TaskState::Running,
            "an active execution's task runs"
        );
        let kids: Vec<&Task> = self
            .s
            .tasks()
            .filter(|k| k.parent == Some(task.id))
            .collect();
        let judged = self.config.agent(&exec.agent).is_some_and(|a| a.validators);
        let end = ExecutionEnd {
            kind: exec.kind,
            agent: exec.agent.clone(),
            state: match outcome {
                Outcome::Failed => ExecutionState::Failed,
                Outcome::Succeeded | Outcome::Blocked => ExecutionState::Succeeded,
            },
            validated: matches!(outcome, Outcome::Succeeded) && judged,
            claimed_complete: None,
            blocked: matches!(outcome, Outcome::Blocked).then(|| "which database?".to_string()),
            handed_off: None,
            failure: None,
            provider_paused: None,
            class: FailureClass::Transient,
        };
        let plan = after_execution(&task, &kids, &end, self.config, self.now);
        prop_assert!(TaskState::Running.can_transition_to(plan.to));
        if matches!(outcome, Outcome::Blocked) {
            prop_assert_eq!(plan.to, TaskState::Blocked, "a block waits for a person");
        }
        if plan.to == TaskState::Failed && matches!(outcome, Outcome::Failed) {
            // A failure fails the task only when its attempts are used up (or, for a resume,
            // when a sub-task's failure stands).
            let max = self.config.agent(&exec.agent).unwrap().max_attempts;
            let failed_kid = kids
                .iter()
                .any(|k| matches!(k.state, TaskState::Failed | TaskState::Cancelled));
            prop_assert!(
                plan.attempts >= max || failed_kid,
                "task {} failed after {} of {} attempts",
                task.id,
                plan.attempts,
                max
            );
        }
        if plan.to == TaskState::Open && matches!(outcome, Outcome::Failed) {
            // A retry waits out its backoff.
            prop_assert!(plan.attempts > task.attempts);
            prop_assert_eq!(
                plan.not_before,
                Some(self.now.plus(self.config.retry.backoff(plan.attempts)))
            );
        }
        self.s.update(exec.task, |t| {
            t.state = plan.to;
            t.not_before = plan.not_before;
            t.attempts = plan.attempts;
            t.continuations = plan.continuations;
        });
        Ok(())
    }

    fn advance(&mut self, decision: &Decision, at_most: Duration) {
        let moved = decision
            .next_wakeup
            .map_or(at_most, |w| w.since(self.now).min(at_most));
        self.now = self.now.plus(moved.max(Duration::from_millis(1)));
    }
}

/// What each decision promises, family by family, beyond the caps and claims `props` checks.
fn check_families(
    s: &Snapshot,
    config: &Config,
    decision: &Decision,
    now: Timestamp,
) -> Result<(), TestCaseError> {
    // A wake-up in the past would make the engine spin; one at `now` would be due already.
    if let Some(at) = decision.next_wakeup {
        prop_assert!(at > now, "woken for {at:?}, which is not after {now:?}");
    }
    // Kills: exactly the executions past their timeout or silent past their stall timeout,
    // each once.
    let mut killed = HashSet::new();
    for action in &decision.actions {
        if let Action::Kill { execution, reason } = action {
            prop_assert!(killed.insert(*execution), "{execution} killed twice");
            let exec = s.active.iter().find(|e| e.id == *execution).unwrap();
            prop_assert!(!exec.kill_requested, "{execution} was already being killed");
            let agent = config.agent(&exec.agent).unwrap();
            let started = exec.iteration_started_at.unwrap();
            let due = match reason {
                KillReason::TimedOut => started.plus(agent.timeout),
                KillReason::Stalled => exec.last_activity_at.max(started).plus(agent.stall_timeout),
            };
            prop_assert!(due <= now, "{execution} killed ({reason:?}) before {due:?}");
        }
    }
    for exec in s.active.iter().filter(|e| !e.kill_requested) {
        let agent = config.agent(&exec.agent).unwrap();
        let started = exec.iteration_started_at.unwrap();
        let stall_at = exec.last_activity_at.max(started).plus(agent.stall_timeout);
        if now >= started.plus(agent.timeout) || now >= stall_at {
            prop_assert!(
                killed.contains(&exec.id),
                "{} is past its time and was not killed",
                exec.id
            );
        }
    }
    // The rate guard: no more new executions in the last minute than it allows.
    let recent = s
        .recent_dispatches
        .iter()
        .filter(|t| now.since(**t) < Duration::from_secs(60))
        .count()
        + decision.dispatches().count();
    prop_assert!(
        recent as u32
            <= config
                .guards
                .max_new_executions_per_minute
                .max(s.recent_dispatches.len() as u32)
    );
    let busy_workspace = |id: TaskId| s.busy_workspaces.contains(&id);
    for action in &decision.actions {
        match action {
            Action::Dispatch {
                task, agent, kind, ..
            } => {
                let t = s.task(*task).unwrap();
                // Claims: only a task with nothing of the engine's on it starts.
                prop_assert!(
                    !busy_workspace(*task),
                    "{task} dispatched while its worktree is busy"
                );
                // Work starts from the parent's branch, which must hold the done siblings'
                // work first; a resume goes on in the worktree the task already has.
                prop_assert!(
                    *kind == ExecutionKind::Resume || t.parent.is_none_or(|p| !busy_workspace(p)),
                    "{task} dispatched while its parent's branch is being merged into"
                );
                let expected = match kind {
                    ExecutionKind::Work => TaskState::Open,
                    ExecutionKind::Resume => TaskState::Waiting,
                };
                prop_assert_eq!(t.state, expected, "{} dispatched as {}", task, kind);
                // Routing: the agent is the one the rules choose, and it has a provider that
                // is not paused (or needs none).
                let routed = route(t, *kind, config).ok().or_else(|| {
                    (*kind == ExecutionKind::Resume)
                        .then(|| route(t, ExecutionKind::Work, config).ok())
                        .flatten()
                        .filter(|a| a.validators)
                });
                prop_assert_eq!(routed.map(|a| a.name.as_str()), Some(agent.as_str()));
                let a = config.agent(agent).unwrap();
                let all_paused = !a.providers.is_empty()
                    && a.providers
                        .iter()
                        .all(|p| s.paused_providers.get(p).is_some_and(|until| *until > now));
                prop_assert!(
                    !all_paused,
                    "{agent} got {task} while its providers are paused"
                );
                // A resume runs only when it is due: its children ended or one failed, its
                // timer fired, or it was nudged.
                if *kind == ExecutionKind::Resume {
                    let kids: Vec<&Task> = s.children_of(*task).collect();
                    let due = t.nudged_at.is_some()
                        || t.not_before.is_some_and(|at| at <= now)
                        || kids.iter().all(|k| k.state.is_terminal())
                        || kids
                            .iter()
                            .any(|k| matches!(k.state, TaskState::Failed | TaskState::Cancelled));
                    prop_assert!(due, "{task} resumed before it was due");
                }
            }
            Action::FailTask { task, reason } => {
                let t = s.task(*task).unwrap();
                prop_assert!(t.state.can_transition_to(TaskState::Failed));
                prop_assert!(!busy_workspace(*task));
                // The decision's own dispatches in the tree count toward its limit.
                let tree = s.tree_executions(t.root)
                    + decision
                        .dispatches()
                        .filter(|(d, ..)| s.task(*d).is_some_and(|d| d.root == t.root))
                        .count() as u32;
                let tripped = t.depth > config.guards.max_depth
                    || t.executions >= config.guards.max_executions_per_task
                    || tree >= config.guards.max_executions_per_tree;
                prop_assert!(tripped, "{task} failed without a guard tripping: {reason}");
            }
            Action::CloseParent { task, to, .. } => {
                let t = s.task(*task).unwrap();
                prop_assert_eq!(t.state, TaskState::Waiting);
                prop_assert!(
                    !busy_workspace(*task),
                    "{task} closed while its worktree is busy"
                );
                prop_assert!(
                    route(t, ExecutionKind::Resume, config).is_err(),
                    "{task} closed although an agent resumes it"
                );
                let kids: Vec<&Task> = s.children_of(*task).collect();
                if *to == TaskState::Failed {
                    prop_assert!(
                        kids.iter()
                            .any(|k| matches!(k.state, TaskState::Failed | TaskState::Cancelled))
                    );
                }
            }
            Action::Kill { .. } => {}
        }
    }
    Ok(())
}

/// Runs the script, then lets the world settle with nothing from outside and every execution
/// succeeding, and returns what the simulation ended with.
fn simulate(world: &World) -> Result<Sim<'_>, TestCaseError> {
    let mut sim = Sim::new(world);
    for step in &world.script {
        sim.poke(step.poke)?;
        let decision = sim.decide_and_check()?;
        sim.carry_out(&decision, step.pick)?;
        sim.end_executions(step.pick, step.outcome)?;
        sim.advance(&decision, Duration::from_secs(step.advance_secs));
    }
    // Calm: worktrees come back, pauses end when they end, executions that speak succeed, and
    // silent ones must be ended by the scheduler's kills.
    sim.s.busy_workspaces.clear();
    let mut quiet = 0;
    let mut rounds = 0;
    while quiet < 3 {
        rounds += 1;
        prop_assert!(rounds < 3000, "the world did not settle");
        sim.poke(Poke::Nothing)?;
        let decision = sim.decide_and_check()?;
        sim.carry_out(&decision, 0)?;
        sim.end_executions(rounds as u8, Outcome::Succeeded)?;
        let calm =
            decision.actions.is_empty() && sim.running.is_empty() && decision.next_wakeup.is_none();
        quiet = if calm { quiet + 1 } else { 0 };
        sim.advance(&decision, Duration::from_secs(30));
    }
    Ok(sim)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Every decision keeps every family's promise, and the settled world has nothing left
    /// that could run: what stays open is blocked by an unfinished task or taken by no agent,
    /// and a task no agent takes was never started.
    #[test]
    fn every_rule_family_keeps_its_promise(world in arb_world()) {
        let sim = simulate(&world)?;
        let config = &world.config;
        for task in sim.s.tasks() {
            let routable = route(task, ExecutionKind::Work, config).is_ok();
            match task.state {
                TaskState::Open => {
                    prop_assert!(
                        !routable || !sim.s.dependencies_done(task),
                        "task {} was left open although it could run: {:?}", task.id, task
                    );
                }
                TaskState::Waiting => {
                    let kids: Vec<&Task> = sim.s.children_of(task.id).collect();
                    let ended = kids.iter().all(|k| k.state.is_terminal());
                    prop_assert!(!ended, "task {} waits for sub-tasks that ended", task.id);
                }
                TaskState::Running => prop_assert!(false, "task {} still runs", task.id),
                _ => {}
            }
            let resumable = route(task, ExecutionKind::Resume, config).is_ok();
            if !routable && !resumable {
                prop_assert!(
                    !sim.dispatched.contains(&task.id),
                    "task {} was started though no agent takes it", task.id
                );
            }
        }
    }
}
