//! `decide`: from a snapshot and the clock, the actions to take now.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use domain::{Duration, ExecutionKind, Task, TaskId, TaskState, Timestamp};

use crate::routing::route;
use crate::snapshot::{Action, Decision, KillReason, Snapshot};
use crate::{AgentPolicy, Config};

const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Priority, not nudged, age, id: smaller runs first. The last field points at the candidate.
type OrderKey = (i32, bool, Timestamp, TaskId, usize);

/// Decides what should happen now. Pure: the same inputs always give the same actions.
///
/// In order, it asks for kills of executions past their timeout or silent past their stall
/// timeout; then walks the tasks that could run (open tasks whose dependencies are done and whose
/// backoff has passed, and waiting tasks due for a resume) in priority order, applies the runaway
/// guards, routes each to an agent, and dispatches while the caps allow.
pub fn decide(snapshot: &Snapshot, config: &Config, now: Timestamp) -> Decision {
    let mut decision = Decision::default();
    plan_kills(snapshot, config, now, &mut decision);

    let mut counts = Counts::from_snapshot(snapshot, config, now);
    // Built only when a waiting task needs it: most decisions have none.
    let mut children: Option<HashMap<TaskId, Vec<&Task>>> = None;
    let mut candidates = Vec::new();
    for task in snapshot.tasks.values() {
        if counts.busy_tasks.contains(&task.id) {
            continue;
        }
        match task.state {
            TaskState::Open => {
                if !snapshot.dependencies_done(task) {
                    continue;
                }
                if let Some(at) = task.not_before
                    && at > now
                    && task.nudged_at.is_none()
                {
                    decision.wake_at(at);
                    continue;
                }
                candidates.push((task, ExecutionKind::Work));
            }
            TaskState::Waiting => {
                let index = children.get_or_insert_with(|| children_index(snapshot));
                let kids = index.get(&task.id).map(Vec::as_slice).unwrap_or(&[]);
                let all_ended = kids.iter().all(|k| k.state.is_terminal());
                let timer_due = task.not_before.is_some_and(|at| at <= now);
                let backoff_over = task.attempts == 0 || task.not_before.is_none_or(|at| at <= now);
                let due = task.nudged_at.is_some() || timer_due || (all_ended && backoff_over);
                if !due {
                    if let Some(at) = task.not_before {
                        decision.wake_at(at);
                    }
                    continue;
                }
                if route(task, ExecutionKind::Resume, config).is_err() {
                    // No agent resumes this task: once the sub-tasks have ended, the evidence
                    // alone closes it.
                    if all_ended {
                        decision.actions.push(close_from_children(task, kids));
                    }
                    continue;
                }
                candidates.push((task, ExecutionKind::Resume));
            }
            _ => {}
        }
    }

    // A heap rather than a sort: the caps usually stop the walk after a few tasks, and building
    // the heap is linear where sorting every ready task on every decision is not.
    let mut queue: BinaryHeap<Reverse<OrderKey>> = candidates
        .iter()
        .enumerate()
        .map(|(i, (t, _))| Reverse((t.priority, t.nudged_at.is_none(), t.created_at, t.id, i)))
        .collect();
    while let Some(Reverse((.., i))) = queue.pop() {
        let (task, kind) = candidates[i];
        if let Some(reason) = guard_violation(task, &counts, config) {
            decision.actions.push(Action::FailTask {
                task: task.id,
                reason,
            });
            continue;
        }
        let Ok(agent) = route(task, kind, config) else {
            continue;
        };
        if counts.recent_dispatches.len() as u32 >= config.guards.max_new_executions_per_minute {
            if let Some(oldest) = counts.recent_dispatches.iter().min() {
                decision.wake_at(oldest.plus(RATE_WINDOW));
            }
            break;
        }
        if counts.active >= config.global_concurrency {
            break;
        }
        if !counts.agent_has_room(agent) || !counts.labels_have_room(task, config) {
            continue;
        }
        counts.take(task, agent, config, now);
        decision.actions.push(Action::Dispatch {
            task: task.id,
            agent: agent.name.clone(),
            kind,
            attempt: task.attempts + 1,
        });
    }
    decision
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
fn guard_violation(task: &Task, counts: &Counts, config: &Config) -> Option<String> {
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
    let tree = counts.tree_executions.get(&task.root).copied().unwrap_or(0);
    if tree >= guards.max_executions_per_tree {
        return Some(format!(
            "its tree (#{}) already ran {tree} executions, the limit of guards.max_executions_per_tree",
            task.root
        ));
    }
    None
}

fn close_from_children(task: &Task, kids: &[&Task]) -> Action {
    let unfinished: Vec<String> = kids
        .iter()
        .filter(|k| k.state != TaskState::Done)
        .map(|k| format!("#{} {}", k.id, k.state))
        .collect();
    if unfinished.is_empty() {
        Action::CloseParent {
            task: task.id,
            to: TaskState::Done,
            reason: format!("all {} sub-tasks are done", kids.len()),
        }
    } else {
        Action::CloseParent {
            task: task.id,
            to: TaskState::Failed,
            reason: format!("sub-tasks did not finish: {}", unfinished.join(", ")),
        }
    }
}

fn children_index(snapshot: &Snapshot) -> HashMap<TaskId, Vec<&Task>> {
    let mut index: HashMap<TaskId, Vec<&Task>> = HashMap::new();
    for task in snapshot.tasks.values() {
        if let Some(parent) = task.parent {
            index.entry(parent).or_default().push(task);
        }
    }
    index
}

/// Running totals the caps and guards are checked against, updated as the decision dispatches.
struct Counts<'a> {
    active: u32,
    busy_tasks: HashSet<TaskId>,
    per_agent: HashMap<&'a str, u32>,
    per_label: HashMap<&'a str, u32>,
    tree_executions: HashMap<TaskId, u32>,
    recent_dispatches: Vec<Timestamp>,
}

impl<'a> Counts<'a> {
    fn from_snapshot(snapshot: &'a Snapshot, config: &'a Config, now: Timestamp) -> Self {
        let mut counts = Counts {
            active: snapshot.active.len() as u32,
            busy_tasks: snapshot.active.iter().map(|e| e.task).collect(),
            per_agent: HashMap::new(),
            per_label: HashMap::new(),
            tree_executions: HashMap::new(),
            recent_dispatches: snapshot
                .recent_dispatches
                .iter()
                .copied()
                .filter(|t| now.since(*t) < RATE_WINDOW)
                .collect(),
        };
        for exec in &snapshot.active {
            *counts.per_agent.entry(exec.agent.as_str()).or_default() += 1;
            if let Some(task) = snapshot.tasks.get(&exec.task) {
                counts.count_labels(task, config);
            }
        }
        for task in snapshot.tasks.values() {
            *counts.tree_executions.entry(task.root).or_default() += task.executions;
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
        self.count_labels(task, config);
        *self.tree_executions.entry(task.root).or_default() += 1;
        self.recent_dispatches.push(now);
    }
}
