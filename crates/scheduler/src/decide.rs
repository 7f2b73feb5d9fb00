//! `decide`: from a snapshot and the clock, the actions to take now.

use std::collections::{HashMap, HashSet};

use domain::{Duration, ExecutionKind, Task, TaskId, TaskState, Timestamp};

use crate::outcome::unfinished_children;
use crate::routing::{Routed, assign};
use crate::snapshot::{Action, Decision, KillReason, RunOrder, Snapshot};
use crate::{AgentPolicy, Config};

const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Decides what should happen now. Pure: the same inputs always give the same actions.
///
/// In order, it asks for kills of executions past their timeout or silent past their stall
/// timeout; then walks the tasks that could run (open tasks whose dependencies are done and whose
/// backoff has passed, and waiting tasks due for a resume) in priority order, applies the runaway
/// guards, routes each to an agent, and dispatches while the caps allow.
///
/// The walk stops when the global cap or the rate guard is reached: nothing further could start
/// before an execution ends or the rate window moves, and either makes the engine decide again.
///
/// Cost: O(running + waiting tasks and their sub-tasks + open tasks walked), each open task
/// walked costing its dependencies and the routing over the agents. Done, failed, cancelled,
/// blocked and running tasks are never walked. The open tasks walked are those ahead of the
/// point where the global cap or the rate guard stops the walk; a task passed over for another
/// reason (its dependencies, its backoff, an agent or label cap, no agent to take it) does not
/// stop it, so while the global cap has room every open task is walked.
pub fn decide(snapshot: &Snapshot, config: &Config, now: Timestamp) -> Decision {
    let mut decision = Decision::default();
    plan_kills(snapshot, config, now, &mut decision);

    let mut counts = Counts::from_snapshot(snapshot, config, now);
    // Waiting tasks are few (parents of running sub-tasks), so all of them are looked at; the
    // due ones join the walk over open tasks in run order.
    let mut resumes: Vec<Resume> = Vec::new();
    for task in snapshot.waiting() {
        // A workflow run's task is resumed (or closed) only by the run: a split under an agent
        // state whose visit is over must not start an execution outside any visit.
        if counts.busy_tasks.contains(&task.id) || snapshot.workflow_held.contains(&task.id) {
            continue;
        }
        let kids: Vec<&Task> = snapshot.children_of(task.id).collect();
        let all_ended = kids.iter().all(|k| k.state.is_terminal());
        // A failed or cancelled sub-task means the task cannot be done as split: that is news
        // for its resume now, not at the next timer.
        let unfinished = unfinished_children(&kids);
        let timer_due = task.not_before.is_some_and(|at| at <= now);
        let backoff_over = task.attempts == 0 || task.not_before.is_none_or(|at| at <= now);
        let due = task.nudged_at.is_some()
            || timer_due
            || ((all_ended || unfinished.is_some()) && backoff_over);
        if !due {
            if let Some(at) = task.not_before {
                decision.wake_at(at);
            }
            continue;
        }
        let (routed, reason) = match assign(
            task,
            ExecutionKind::Resume,
            config,
            &|a| counts.load(a),
            now,
        ) {
            Ok(routed) => {
                let reason = unfinished.map(|why| format!("resumed at once: {why}"));
                (routed, reason)
            }
            Err(_) => {
                // No agent resumes this task, so the evidence decides: a sub-task that failed
                // fails it at once (the open ones are left to run).
                if let Some(why) = unfinished {
                    decision.actions.push(Action::CloseParent {
                        task: task.id,
                        to: TaskState::Failed,
                        reason: why,
                    });
                    continue;
                }
                if !all_ended {
                    continue;
                }
                // Every sub-task is done. An agent with validators must see them pass on the
                // merged tree first, so the agent that works on the task runs once more, as a
                // resume; without validators the sub-tasks' evidence is all there is.
                match assign(task, ExecutionKind::Work, config, &|a| counts.load(a), now) {
                    Ok(routed) if routed.agent.validators => {
                        let why = format!(
                            "all {} sub-tasks are done; {}'s validators judge the merged tree",
                            kids.len(),
                            routed.agent.name
                        );
                        (routed, Some(why))
                    }
                    // A sub-task's work that could not be merged keeps the task from being
                    // done; it waits for a person, and `run` reports it as stuck.
                    _ if task.merge_failed.is_some() => continue,
                    _ => {
                        decision.actions.push(Action::CloseParent {
                            task: task.id,
                            to: TaskState::Done,
                            reason: format!("all {} sub-tasks are done", kids.len()),
                        });
                        continue;
                    }
                }
            }
        };
        resumes.push(Resume {
            order: RunOrder::of(task),
            task,
            routed,
            reason,
        });
    }
    resumes.sort_by_key(|r| r.order);
    let mut resumes = resumes.into_iter().peekable();
    let mut open = snapshot.open_in_order().peekable();

    loop {
        let resume_first = match (open.peek(), resumes.peek()) {
            (Some(o), Some(r)) => r.order < RunOrder::of(o),
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => break,
        };
        let (task, kind, routed, reason) = if resume_first {
            let r = resumes.next().expect("peeked");
            (r.task, ExecutionKind::Resume, Some(r.routed), r.reason)
        } else {
            let task = open.next().expect("peeked");
            if counts.busy_tasks.contains(&task.id)
                || snapshot.workflow_held.contains(&task.id)
                || !snapshot.dependencies_done(task)
                || parent_busy(task, snapshot)
            {
                continue;
            }
            if let Some(at) = task.not_before
                && at > now
                && task.nudged_at.is_none()
            {
                decision.wake_at(at);
                continue;
            }
            (task, ExecutionKind::Work, None, None)
        };
        if let Some(until) = area_wait(task, snapshot, &counts, now) {
            // It runs when that lease ends: released, expired, or with its execution.
            decision.wake_at(until);
            continue;
        }
        if let Some(reason) = guard_violation(task, snapshot, &counts, config) {
            decision.actions.push(Action::FailTask {
                task: task.id,
                reason,
            });
            continue;
        }
        let Some(routed) =
            routed.or_else(|| assign(task, kind, config, &|a| counts.load(a), now).ok())
        else {
            continue;
        };
        let agent = routed.agent;
        if let Some(until) = paused_until(agent, snapshot, now) {
            // Its models would only be refused: it waits for the first provider to come back.
            decision.wake_at(until);
            continue;
        }
        if counts.recent_dispatches.len() as u32 >= config.guards.max_new_executions_per_minute {
            if let Some(oldest) = counts.recent_dispatches.iter().min() {
                decision.wake_at(oldest.plus(RATE_WINDOW));
            }
            break;
        }
        if counts.active >= config.global_concurrency {
            break;
        }
        if !counts.agent_has_room(agent)
            || !counts.labels_have_room(task, config)
            || !counts.agency_has_room(routed.agency)
            || agency_budget_spent(routed.agency, snapshot).is_some()
        {
            continue;
        }
        counts.take(task, agent, config, now);
        // How the agency chose the agent goes with any other reason into the task's history.
        let reason = match (reason, routed.reason) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        decision.actions.push(Action::Dispatch {
            task: task.id,
            agent: agent.name.clone(),
            kind,
            attempt: task.attempts + 1,
            reason,
        });
    }
    decision
}

/// A sub-task starts from its parent's branch, so it waits while done siblings' work is being
/// merged into that branch: a sub-task blocked by a sibling must find the sibling's work there.
fn parent_busy(task: &Task, snapshot: &Snapshot) -> bool {
    task.parent
        .is_some_and(|p| snapshot.busy_workspaces.contains(&p))
}

/// Why the agency's daily budget is used up, or `None` (also outside agencies). The task waits:
/// the budget comes back with the next day, and what the agency's running executions spend
/// meanwhile is the gateway's to hold.
pub fn agency_budget_spent(
    agency: Option<&crate::AgencyPolicy>,
    snapshot: &Snapshot,
) -> Option<String> {
    let agency = agency?;
    let used = snapshot.agency_spend.get(&agency.name)?;
    agency
        .day_budget
        .spent(used)
        .map(|why| format!("agency {}'s daily budget of {why} is used up", agency.name))
}

/// Until when the task waits for an area reserved for it (`domain::area::waits_for`): an
/// overlapping lease of a running execution of another task, or an overlapping reservation of
/// another task that runs now, this decision's dispatches included (so two sub-tasks reserved
/// overlapping areas are never started by the same decision).
fn area_wait(
    task: &Task,
    snapshot: &Snapshot,
    counts: &Counts<'_>,
    now: Timestamp,
) -> Option<Timestamp> {
    if snapshot.area_leases.is_empty() {
        return None;
    }
    let running = |e| snapshot.active.iter().any(|a| a.id == e);
    let task_running = |t| counts.busy_tasks.contains(&t);
    domain::area::waits_for(task.id, &snapshot.area_leases, running, task_running, now)
        .map(|(_, until)| until)
}

/// When the first of the agent's providers comes back, while every one of them is paused.
fn paused_until(agent: &AgentPolicy, snapshot: &Snapshot, now: Timestamp) -> Option<Timestamp> {
    if agent.providers.is_empty() {
        return None;
    }
    let mut first_back: Option<Timestamp> = None;
    for provider in &agent.providers {
        let until = snapshot
            .paused_providers
            .get(provider)
            .copied()
            .filter(|until| *until > now)?;
        first_back = Some(first_back.map_or(until, |t| t.min(until)));
    }
    first_back
}

/// A waiting task due for a resume, with the agent that runs it and why it runs now, when
/// that is worth saying.
struct Resume<'a> {
    order: RunOrder,
    task: &'a Task,
    routed: Routed<'a>,
    reason: Option<String>,
}

fn plan_kills(snapshot: &Snapshot, config: &Config, now: Timestamp, decision: &mut Decision) {
    for exec in &snapshot.active {
        if exec.kill_requested {
            continue;
        }
        let Some(started) = exec.iteration_started_at else {
            continue;
        };
        let Some(agent) = config.agent(&exec.agent) else {
            continue;
        };
        let deadline = started.plus(agent.timeout);
        let stall_at = exec.last_activity_at.max(started).plus(agent.stall_timeout);
        let reason = if now >= deadline {
            Some(KillReason::TimedOut)
        } else if now >= stall_at {
            Some(KillReason::Stalled)
        } else {
            decision.wake_at(deadline.min(stall_at));
            None
        };
        if let Some(reason) = reason {
            decision.actions.push(Action::Kill {
                execution: exec.id,
                reason,
            });
        }
    }
}

/// A runaway guard that stops this task from running again, if any.
fn guard_violation(
    task: &Task,
    snapshot: &Snapshot,
    counts: &Counts,
    config: &Config,
) -> Option<String> {
    let guards = &config.guards;
    if task.depth > guards.max_depth {
        return Some(format!(
            "task is at depth {}, deeper than guards.max_depth ({})",
            task.depth, guards.max_depth
        ));
    }
    if task.executions >= guards.max_executions_per_task {
        return Some(format!(
            "task already ran {} executions, the limit of guards.max_executions_per_task",
            task.executions
        ));
    }
    let tree = snapshot.tree_executions(task.root)
        + counts.tree_dispatched.get(&task.root).copied().unwrap_or(0);
    if tree >= guards.max_executions_per_tree {
        return Some(format!(
            "its tree (#{}) already ran {tree} executions, the limit of guards.max_executions_per_tree",
            task.root
        ));
    }
    None
}

/// Running totals the caps and guards are checked against, updated as the decision dispatches.
struct Counts<'a> {
    active: u32,
    busy_tasks: HashSet<TaskId>,
    per_agent: HashMap<&'a str, u32>,
    per_label: HashMap<&'a str, u32>,
    /// Executions of each agency's agents.
    per_agency: HashMap<&'a str, u32>,
    /// Executions this decision dispatched, per tree root (the snapshot counts the earlier ones).
    tree_dispatched: HashMap<TaskId, u32>,
    recent_dispatches: Vec<Timestamp>,
}

impl<'a> Counts<'a> {
    fn from_snapshot(snapshot: &'a Snapshot, config: &'a Config, now: Timestamp) -> Self {
        let mut counts = Counts {
            active: snapshot.active.len() as u32,
            // A task with an execution, or with its worktree in the engine's hands, is busy.
            busy_tasks: snapshot
                .active
                .iter()
                .map(|e| e.task)
                .chain(snapshot.busy_workspaces.iter().copied())
                .collect(),
            per_agent: HashMap::new(),
            per_label: HashMap::new(),
            per_agency: HashMap::new(),
            tree_dispatched: HashMap::new(),
            recent_dispatches: snapshot
                .recent_dispatches
                .iter()
                .copied()
                .filter(|t| now.since(*t) < RATE_WINDOW)
                .collect(),
        };
        for exec in &snapshot.active {
            *counts.per_agent.entry(exec.agent.as_str()).or_default() += 1;
            if let Some(agency) = config.agency_of(&exec.agent) {
                *counts.per_agency.entry(agency.name.as_str()).or_default() += 1;
            }
            if let Some(task) = snapshot.task(exec.task) {
                counts.count_labels(task, config);
            }
        }
        counts
    }

    fn count_labels(&mut self, task: &'a Task, config: &'a Config) {
        for (i, label) in task.labels.iter().enumerate() {
            // A label listed twice still counts once.
            if task.labels[..i].contains(label) {
                continue;
            }
            if let Some((name, _)) = config.per_label.get_key_value(label) {
                *self.per_label.entry(name.as_str()).or_default() += 1;
            }
        }
    }

    /// The executions `agent` runs now, this decision's dispatches included.
    fn load(&self, agent: &str) -> u32 {
        self.per_agent.get(agent).copied().unwrap_or(0)
    }

    fn agency_has_room(&self, agency: Option<&crate::AgencyPolicy>) -> bool {
        agency.is_none_or(|a| {
            let running = self.per_agency.get(a.name.as_str()).copied().unwrap_or(0);
            a.concurrency.is_none_or(|cap| running < cap)
        })
    }

    fn agent_has_room(&self, agent: &AgentPolicy) -> bool {
        let running = self
            .per_agent
            .get(agent.name.as_str())
            .copied()
            .unwrap_or(0);
        agent.concurrency.is_none_or(|cap| running < cap)
    }

    fn labels_have_room(&self, task: &Task, config: &Config) -> bool {
        task.labels
            .iter()
            .all(|label| match config.per_label.get(label) {
                Some(cap) => self.per_label.get(label.as_str()).copied().unwrap_or(0) < *cap,
                None => true,
            })
    }

    fn take(&mut self, task: &'a Task, agent: &'a AgentPolicy, config: &'a Config, now: Timestamp) {
        self.active += 1;
        self.busy_tasks.insert(task.id);
        *self.per_agent.entry(agent.name.as_str()).or_default() += 1;
        if let Some(agency) = config.agency_of(&agent.name) {
            *self.per_agency.entry(agency.name.as_str()).or_default() += 1;
        }
        self.count_labels(task, config);
        *self.tree_dispatched.entry(task.root).or_default() += 1;
        self.recent_dispatches.push(now);
    }
}
