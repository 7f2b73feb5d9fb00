//! Properties that hold in any world: random tasks, agents and caps, driven through a simulated
//! run in which executions end with random outcomes and time moves in random steps.

use std::collections::{BTreeMap, HashMap, HashSet};

use domain::{
    Duration, ExecutionId, ExecutionKind, ExecutionState, NewTask, Task, TaskId, TaskState,
    Timestamp,
};
use proptest::prelude::*;

use crate::world::{push_linked, start_split};
use scheduler::{
    Action, ActiveExecution, AgentPolicy, Config, ExecutionEnd, Guards, Snapshot, after_execution,
    decide,
};

const LABELS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
struct World {
    config: Config,
    tasks: Vec<Task>,
    /// Per step: which active executions end (by index parity) and whether they succeed.
    outcomes: Vec<(bool, u8)>,
}

fn arb_world() -> impl Strategy<Value = World> {
    let agents = prop::collection::vec(
        (
            prop::collection::vec(0..3usize, 0..2),
            prop::option::of(1..3u32),
            1..4u32,
            any::<bool>(),
        ),
        1..4,
    );
    let tasks = prop::collection::vec(
        (
            prop::collection::vec(0..3usize, 0..3),
            0..5i32,
            prop::option::of(0..40usize),
            prop::collection::vec(0..40usize, 0..2),
        ),
        1..40,
    );
    let caps = (
        1..5u32,
        prop::collection::vec((0..3usize, 1..3u32), 0..2),
        2..30u32,
        1..4u32,
    );
    let outcomes = prop::collection::vec((any::<bool>(), any::<u8>()), 200);
    (agents, tasks, caps, outcomes).prop_map(
        |(agents, tasks, (global, label_caps, rate, depth), outcomes)| {
            let agents: Vec<AgentPolicy> = agents
                .into_iter()
                .enumerate()
                .map(|(i, (labels, concurrency, attempts, validators))| {
                    let mut a = AgentPolicy::new(format!("agent{i}"));
                    a.validators = validators;
                    a.labels = labels.into_iter().map(|l| LABELS[l].to_string()).collect();
                    a.default = i == 0;
                    a.concurrency = concurrency;
                    a.max_attempts = attempts;
                    a
                })
                .collect();
            let per_label: BTreeMap<String, u32> = label_caps
                .into_iter()
                .map(|(l, n)| (LABELS[l].to_string(), n))
                .collect();
            let config = Config {
                global_concurrency: global,
                agents,
                per_label,
                guards: Guards {
                    max_depth: depth,
                    max_new_executions_per_minute: rate,
                    max_executions_per_task: 6,
                    max_executions_per_tree: 40,
                    ..Guards::default()
                },
                retry: scheduler::RetryPolicy {
                    base_delay: Duration::from_secs(5),
                    max_delay: Duration::from_secs(40),
                },
                ..Config::default()
            };
            let mut built: Vec<Task> = Vec::new();
            for (i, (labels, priority, parent, deps)) in tasks.into_iter().enumerate() {
                let mut new = NewTask::titled(format!("t{}", i + 1));
                new.labels = labels.into_iter().map(|l| LABELS[l].to_string()).collect();
                new.priority = priority;
                push_linked(&mut built, new, parent, deps);
            }
            start_split(&mut built);
            World {
                config,
                tasks: built,
                outcomes,
            }
        },
    )
}

/// The same worlds with room for everything: no cap and no rate guard holds a task back, so
/// whatever is due must be acted on in the same decision.
fn arb_roomy_world() -> impl Strategy<Value = World> {
    (arb_world(), prop::collection::vec(any::<bool>(), 4)).prop_map(|(mut world, no_resume)| {
        world.config.global_concurrency = 1000;
        world.config.per_label.clear();
        world.config.guards.max_new_executions_per_minute = 100_000;
        for (agent, no_resume) in world.config.agents.iter_mut().zip(no_resume) {
            agent.concurrency = None;
            // Some agents take no resume executions, so the evidence closes their parents.
            if no_resume {
                agent.kinds = vec![ExecutionKind::Work];
            }
        }
        world
    })
}

/// Runs the world until it is quiet, checking every decision against the invariants. Returns
/// the final snapshot.
fn simulate(world: &World, roomy: bool) -> Result<Snapshot, TestCaseError> {
    let config = &world.config;
    let mut s = Snapshot::default();
    for t in &world.tasks {
        s.insert(t.clone());
    }
    let mut now = Timestamp(10_000_000);
    let mut next_exec = 1;
    let mut all_dispatches: Vec<Timestamp> = Vec::new();
    let mut step = 0usize;
    let mut quiet_rounds = 0;
    while quiet_rounds < 3 {
        prop_assert!(step < 5000, "the simulation did not settle");
        s.recent_dispatches
            .retain(|t| now.since(*t) < Duration::from_secs(60));
        let decision = decide(&s, config, now);
        check_decision(&s, config, &decision, now)?;
        check_indexes(&s, config, &decision, now)?;
        check_parents(&s, config, &decision, now, roomy)?;
        let acted = !decision.actions.is_empty();
        for action in &decision.actions {
            match action {
                Action::Dispatch {
                    task, agent, kind, ..
                } => {
                    s.update(*task, |t| {
                        t.state = TaskState::Running;
                        t.executions += 1;
                        t.nudged_at = None;
                    });
                    s.active.push(ActiveExecution {
                        id: ExecutionId(next_exec),
                        task: *task,
                        agent: agent.clone(),
                        kind: *kind,
                        iteration_started_at: Some(now),
                        last_activity_at: now,
                        kill_requested: false,
                    });
                    next_exec += 1;
                    s.recent_dispatches.push(now);
                    all_dispatches.push(now);
                }
                Action::FailTask { task, .. } => {
                    s.update(*task, |t| t.state = TaskState::Failed);
                }
                Action::CloseParent { task, to, .. } => {
                    s.update(*task, |t| t.state = *to);
                }
                Action::Kill { .. } => {}
            }
        }
        // End some executions. Late in the run everything succeeds, so the world must settle.
        let (coin, pick) = world.outcomes[step % world.outcomes.len()];
        let ending: Vec<usize> = (0..s.active.len())
            .filter(|i| (*i as u8 ^ pick).is_multiple_of(2))
            .collect();
        for i in ending.into_iter().rev() {
            let exec = s.active.remove(i);
            let state = if coin || step > 300 {
                ExecutionState::Succeeded
            } else {
                ExecutionState::Failed
            };
            // Validators, where the agent has them, pass on most clean exits and always late.
            let validated = state == ExecutionState::Succeeded
                && (!pick.is_multiple_of(3) || step > 300)
                && config.agent(&exec.agent).is_some_and(|a| a.validators);
            let task = s.task(exec.task).unwrap().clone();
            // Found by a walk over every task, not by the snapshot's own index.
            let kids: Vec<&Task> = s.tasks().filter(|k| k.parent == Some(task.id)).collect();
            let end = ExecutionEnd {
                kind: exec.kind,
                agent: exec.agent.clone(),
                state,
                validated,
                claimed_complete: None,
                blocked: None,
                handed_off: None,
                failure: None,
                provider_paused: None,
                class: domain::FailureClass::Transient,
            };
            let plan = after_execution(&task, &kids, &end, config, now);
            prop_assert!(
                TaskState::Running.can_transition_to(plan.to),
                "after_execution planned running -> {}",
                plan.to
            );
            if plan.to == TaskState::Done {
                let judged = config.agent(&exec.agent).is_none_or(|a| a.validators);
                prop_assert!(
                    validated || !judged,
                    "task {} done without its validators passing",
                    task.id
                );
                prop_assert!(
                    kids.iter().all(|k| k.state == TaskState::Done),
                    "task {} done with a sub-task not done",
                    task.id
                );
            }
            s.update(exec.task, |t| {
                t.state = plan.to;
                t.not_before = plan.not_before;
                t.attempts = plan.attempts;
                t.continuations = plan.continuations;
            });
        }
        let moved = decision
            .next_wakeup
            .map_or(Duration::from_secs(1), |w| w.since(now))
            .min(Duration::from_secs(30));
        now = now.plus(moved.max(Duration::from_millis(1)));
        quiet_rounds = if acted || !s.active.is_empty() || decision.next_wakeup.is_some() {
            0
        } else {
            quiet_rounds + 1
        };
        step += 1;
    }
    // The rate guard held over the whole run, in every 60-second window.
    for (i, start) in all_dispatches.iter().enumerate() {
        let in_window = all_dispatches[i..]
            .iter()
            .take_while(|t| t.since(*start) < Duration::from_secs(60))
            .count();
        prop_assert!(in_window as u32 <= config.guards.max_new_executions_per_minute);
    }
    Ok(s)
}

/// The snapshot's indexes, kept up to date through every insert and update of the run, agree
/// with the tasks themselves: a snapshot built afresh from the same tasks decides the same, and
/// children and tree counts match a walk over all tasks.
fn check_indexes(
    s: &Snapshot,
    config: &Config,
    decision: &scheduler::Decision,
    now: Timestamp,
) -> Result<(), TestCaseError> {
    let mut fresh = Snapshot::default();
    for t in s.tasks() {
        fresh.insert(t.clone());
    }
    fresh.active = s.active.clone();
    fresh.recent_dispatches = s.recent_dispatches.clone();
    prop_assert_eq!(&decide(&fresh, config, now), decision);
    for task in s.tasks() {
        let mut walked: Vec<TaskId> = s
            .tasks()
            .filter(|k| k.parent == Some(task.id))
            .map(|k| k.id)
            .collect();
        walked.sort();
        let indexed: Vec<TaskId> = s.children_of(task.id).map(|k| k.id).collect();
        prop_assert_eq!(indexed, walked, "children of {}", task.id);
        let tree: u32 = s
            .tasks()
            .filter(|k| k.root == task.id)
            .map(|k| k.executions)
            .sum();
        prop_assert_eq!(
            s.tree_executions(task.id),
            tree,
            "executions in tree {}",
            task.id
        );
    }
    Ok(())
}

/// The rules for parents: a task is done only when every sub-task is done (and, closed from the
/// evidence, only when the agent working on it has no validators to run on the merged tree);
/// and in a world with room, a parent whose sub-task failed is acted on at once.
pub(crate) fn check_parents(
    s: &Snapshot,
    config: &Config,
    decision: &scheduler::Decision,
    now: Timestamp,
    roomy: bool,
) -> Result<(), TestCaseError> {
    let kids_of =
        |id: TaskId| -> Vec<&Task> { s.tasks().filter(|k| k.parent == Some(id)).collect() };
    for task in s.tasks().filter(|t| t.state == TaskState::Done) {
        for kid in kids_of(task.id) {
            prop_assert_eq!(
                kid.state,
                TaskState::Done,
                "task {} is done while its sub-task {} is not",
                task.id,
                kid.id
            );
        }
    }
    for action in &decision.actions {
        if let Action::CloseParent {
            task,
            to: TaskState::Done,
            ..
        } = action
        {
            let kids = kids_of(*task);
            prop_assert!(kids.iter().all(|k| k.state == TaskState::Done));
            let t = s.task(*task).unwrap();
            let judged =
                scheduler::route(t, ExecutionKind::Work, config).is_ok_and(|a| a.validators);
            prop_assert!(
                !judged,
                "task {} closed from the evidence although its agent has validators",
                task
            );
        }
    }
    if !roomy {
        return Ok(());
    }
    let busy: HashSet<TaskId> = s.active.iter().map(|e| e.task).collect();
    for task in s.tasks().filter(|t| t.state == TaskState::Waiting) {
        let failed_kid = kids_of(task.id)
            .iter()
            .any(|k| matches!(k.state, TaskState::Failed | TaskState::Cancelled));
        let backoff_over = task.attempts == 0 || task.not_before.is_none_or(|at| at <= now);
        if !failed_kid || !backoff_over || busy.contains(&task.id) {
            continue;
        }
        let acted = decision.actions.iter().any(|a| match a {
            Action::Dispatch { task: t, .. }
            | Action::FailTask { task: t, .. }
            | Action::CloseParent { task: t, .. } => *t == task.id,
            Action::Kill { .. } => false,
        });
        prop_assert!(
            acted,
            "task {} has a failed sub-task and was left waiting: {:?}",
            task.id,
            decision.actions
        );
    }
    Ok(())
}

pub(crate) fn check_decision(
    s: &Snapshot,
    config: &Config,
    decision: &scheduler::Decision,
    now: Timestamp,
) -> Result<(), TestCaseError> {
    let mut seen = HashSet::new();
    let mut per_agent: HashMap<String, u32> = HashMap::new();
    let mut per_label: HashMap<String, u32> = HashMap::new();
    let busy: HashSet<TaskId> = s.active.iter().map(|e| e.task).collect();
    let count_labels = |task: &Task, per_label: &mut HashMap<String, u32>| {
        let distinct: HashSet<&String> = task.labels.iter().collect();
        for l in distinct {
            if config.per_label.contains_key(l) {
                *per_label.entry(l.clone()).or_default() += 1;
            }
        }
    };
    for e in &s.active {
        *per_agent.entry(e.agent.clone()).or_default() += 1;
        count_labels(s.task(e.task).unwrap(), &mut per_label);
    }
    let mut total = s.active.len() as u32;
    for (task_id, agent, kind) in decision.dispatches() {
        prop_assert!(
            seen.insert(task_id),
            "task {task_id} dispatched twice in one decision"
        );
        prop_assert!(
            !busy.contains(&task_id),
            "task {task_id} already has an active execution"
        );
        let task = s.task(task_id).unwrap();
        match kind {
            ExecutionKind::Work => {
                prop_assert_eq!(task.state, TaskState::Open);
                prop_assert!(
                    s.dependencies_done(task),
                    "task {} dispatched before its dependencies",
                    task_id
                );
                prop_assert!(task.nudged_at.is_some() || task.not_before.is_none_or(|t| t <= now));
            }
            ExecutionKind::Resume => prop_assert_eq!(task.state, TaskState::Waiting),
        }
        prop_assert!(task.depth <= config.guards.max_depth);
        prop_assert!(task.executions < config.guards.max_executions_per_task);
        total += 1;
        *per_agent.entry(agent.to_string()).or_default() += 1;
        count_labels(task, &mut per_label);
    }
    prop_assert!(total <= config.global_concurrency.max(s.active.len() as u32));
    for (agent, n) in per_agent {
        if let Some(cap) = config.agent(&agent).and_then(|a| a.concurrency) {
            prop_assert!(
                n <= cap,
                "agent {agent} would run {n} executions, cap {cap}"
            );
        }
    }
    for (label, n) in per_label {
        let cap = config.per_label[&label];
        prop_assert!(
            n <= cap,
            "label {label} would have {n} executions, cap {cap}"
        );
    }
    let trees: HashMap<TaskId, u32> = s.tasks().fold(HashMap::new(), |mut m, t| {
        *m.entry(t.root).or_default() += t.executions;
        m
    });
    for (root, n) in trees {
        prop_assert!(
            n <= config.guards.max_executions_per_tree,
            "tree {root} ran {n} executions"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Caps, claims and guards hold at every step, and when the world settles no task is left
    /// that could run: every ready task was eventually dispatched.
    #[test]
    fn invariants_hold_and_every_ready_task_is_eventually_dispatched(world in arb_world()) {
        let end = simulate(&world, false)?;
        for task in end.tasks() {
            let stuck = match task.state {
                TaskState::Open => end.dependencies_done(task),
                TaskState::Waiting => {
                    let kids: Vec<&Task> =
                        end.tasks().filter(|k| k.parent == Some(task.id)).collect();
                    // A failed sub-task must have woken its parent: it is never left waiting.
                    kids.iter().all(|k| k.state.is_terminal())
                        || kids
                            .iter()
                            .any(|k| matches!(k.state, TaskState::Failed | TaskState::Cancelled))
                }
                TaskState::Running => true,
                _ => false,
            };
            prop_assert!(!stuck, "task {} ended {} although it could run: {:?}", task.id, task.state, task);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// With room for everything, a parent whose sub-task failed or was cancelled is resumed,
    /// failed or closed in the very decision that sees it, never left for its resume timer;
    /// and the rules for parents hold at every step.
    #[test]
    fn a_failed_sub_task_is_acted_on_at_once(world in arb_roomy_world()) {
        simulate(&world, true)?;
    }
}
