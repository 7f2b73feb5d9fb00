//! The checks of a definition that its manifest's decoder cannot make field by field: names
//! that must exist, states that can be reached, and loops that must be bounded.

use std::collections::{BTreeMap, BTreeSet};

use crate::definition::{Definition, StateKind, When};

/// The names a definition may refer to outside itself. `None` skips that check (a definition
/// read alone, without its project).
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub agents: Option<BTreeSet<String>>,
    pub workflows: Option<BTreeSet<String>>,
}

/// Where in a definition a problem is, for the manifest to turn into `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Where {
    Start,
    /// The state as a whole (its name).
    State(String),
    /// What the state names: its agent, or its sub-workflow.
    Names(String),
    /// A branch of a parallel state, by index.
    Branch(String, usize),
    /// A transition of a state, by index.
    Transition(String, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Where,
    pub message: String,
}

fn problem(at: Where, message: String) -> Problem {
    Problem { at, message }
}

/// Every problem of `def`, in the order of the states.
pub fn check(def: &Definition, known: &Known) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for state in &def.states {
        if !names.insert(state.name.as_str()) {
            out.push(problem(
                Where::State(state.name.clone()),
                format!(
                    "the state `{}` is defined twice; state names must be unique",
                    state.name
                ),
            ));
        }
    }
    let listing = names.iter().copied().collect::<Vec<_>>().join(", ");
    if def.state(&def.start).is_none() {
        out.push(problem(
            Where::Start,
            format!(
                "`{}` is not a state of this workflow (states: {listing})",
                def.start
            ),
        ));
    }
    let mut branch_of: BTreeMap<&str, &str> = BTreeMap::new();
    for state in &def.states {
        if let StateKind::Parallel { branches } = &state.kind {
            for b in branches {
                branch_of.insert(b, &state.name);
            }
        }
    }
    for state in &def.states {
        let name = &state.name;
        check_kind(def, known, state, &listing, &mut out);
        let is_end = matches!(state.kind, StateKind::End { .. });
        if let Some(parallel) = branch_of.get(name.as_str()) {
            if !state.on.is_empty() {
                out.push(problem(
                    Where::Transition(name.clone(), 0),
                    format!(
                        "`{name}` is a branch of the parallel state `{parallel}`, which leaves by \
                         its own transitions once every branch ended; remove these"
                    ),
                ));
            }
        } else if is_end && !state.on.is_empty() {
            out.push(problem(
                Where::Transition(name.clone(), 0),
                "an end state has no transitions; remove `on`".to_string(),
            ));
        } else if !is_end && state.on.is_empty() {
            out.push(problem(
                Where::State(name.clone()),
                format!(
                    "the state `{name}` has no transitions, so a run would stop in it: add `on` \
                     (or make it an end state)"
                ),
            ));
        }
        for (i, t) in state.on.iter().enumerate() {
            let at = || Where::Transition(name.clone(), i);
            if def.state(&t.to).is_none() {
                out.push(problem(
                    at(),
                    format!(
                        "`{}` is not a state of this workflow (states: {listing})",
                        t.to
                    ),
                ));
            }
            let approval = matches!(state.kind, StateKind::Approval { .. });
            if t.when.is_decision() && !approval {
                out.push(problem(
                    at(),
                    format!(
                        "`{name}` is not an approval state, so it is never approved or rejected; \
                         use succeeded or failed"
                    ),
                ));
            }
            if t.when == When::TimedOut && state.timeout_secs.is_none() {
                out.push(problem(
                    at(),
                    format!("`{name}` has no timeout, so it never times out; add `timeout`"),
                ));
            }
            if t.max == Some(0) {
                out.push(problem(
                    at(),
                    "`max: 0` could never be taken; remove the transition or raise it".to_string(),
                ));
            }
        }
    }
    check_reachable(def, &mut out);
    check_loops(def, &mut out);
    out
}

fn check_kind(
    def: &Definition,
    known: &Known,
    state: &crate::State,
    listing: &str,
    out: &mut Vec<Problem>,
) {
    let name = &state.name;
    match &state.kind {
        StateKind::Agent { agent, .. } => {
            if let Some(agents) = &known.agents
                && !agents.contains(agent)
            {
                let all = agents.iter().cloned().collect::<Vec<_>>().join(", ");
                out.push(problem(
                    Where::Names(name.clone()),
                    format!(
                        "no agent is called `{agent}` (agents: {})",
                        if all.is_empty() { "none" } else { &all }
                    ),
                ));
            }
        }
        StateKind::Workflow { workflow } => {
            if *workflow == def.name {
                out.push(problem(
                    Where::Names(name.clone()),
                    format!("the workflow `{workflow}` would start itself without end"),
                ));
            } else if let Some(workflows) = &known.workflows
                && !workflows.contains(workflow)
            {
                out.push(problem(
                    Where::Names(name.clone()),
                    format!("no workflow is called `{workflow}`"),
                ));
            }
        }
        StateKind::Parallel { branches } => {
            if branches.is_empty() {
                out.push(problem(
                    Where::Names(name.clone()),
                    "a parallel state needs at least one branch".to_string(),
                ));
            }
            for (i, b) in branches.iter().enumerate() {
                match def.state(b).map(|s| &s.kind) {
                    None => out.push(problem(
                        Where::Branch(name.clone(), i),
                        format!("`{b}` is not a state of this workflow (states: {listing})"),
                    )),
                    Some(StateKind::Agent { .. } | StateKind::Command { .. }) => {}
                    Some(_) => out.push(problem(
                        Where::Branch(name.clone(), i),
                        format!("the branch `{b}` must be an agent or command state"),
                    )),
                }
            }
        }
        StateKind::Command { run } if run.is_empty() => out.push(problem(
            Where::Names(name.clone()),
            "the command is empty; give the program and its arguments".to_string(),
        )),
        _ => {}
    }
}

/// The states a state leads to: its transitions and, for a parallel state, its branches.
fn successors(state: &crate::State) -> impl Iterator<Item = &str> {
    let branches = match &state.kind {
        StateKind::Parallel { branches } => branches.as_slice(),
        _ => &[],
    };
    state
        .on
        .iter()
        .map(|t| t.to.as_str())
        .chain(branches.iter().map(String::as_str))
}

fn check_reachable(def: &Definition, out: &mut Vec<Problem>) {
    let mut seen = BTreeSet::new();
    let mut todo = vec![def.start.as_str()];
    while let Some(name) = todo.pop() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(state) = def.state(name) {
            todo.extend(successors(state));
        }
    }
    for state in &def.states {
        if !seen.contains(state.name.as_str()) {
            out.push(problem(
                Where::State(state.name.clone()),
                format!(
                    "no run can reach the state `{}` from the start `{}`; remove it or add a \
                     transition to it",
                    state.name, def.start
                ),
            ));
        }
    }
}

/// A loop is bounded when one of its transitions has a budget. Each loop made only of
/// transitions without one is reported once, at its closing transition; the transition is then
/// left out and the search goes on, so every such loop is found.
fn check_loops(def: &Definition, out: &mut Vec<Problem>) {
    let mut cut: BTreeSet<(String, usize)> = BTreeSet::new();
    while let Some(path) = find_unbounded_cycle(def, &cut) {
        let (state, index) = path.last().cloned().expect("a cycle has an edge");
        let names: Vec<&str> = path
            .iter()
            .map(|(s, _)| s.as_str())
            .chain(std::iter::once(path[0].0.as_str()))
            .collect();
        out.push(problem(
            Where::Transition(state.clone(), index),
            format!(
                "the loop {} can run forever: give one of its transitions a budget (`max: N`)",
                names.join(" → ")
            ),
        ));
        cut.insert((state, index));
    }
}

/// A cycle of transitions without a budget (and not in `cut`), as the edges `(state, index)`
/// along it, or `None`.
fn find_unbounded_cycle(
    def: &Definition,
    cut: &BTreeSet<(String, usize)>,
) -> Option<Vec<(String, usize)>> {
    // Depth-first search from every state, in order, with the path of edges taken.
    fn visit(
        def: &Definition,
        cut: &BTreeSet<(String, usize)>,
        name: &str,
        path: &mut Vec<(String, usize)>,
        on_path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<(String, usize)>> {
        if done.contains(name) {
            return None;
        }
        let state = def.state(name)?;
        on_path.push(name.to_string());
        for (i, t) in state.on.iter().enumerate() {
            if t.max.is_some() || cut.contains(&(name.to_string(), i)) {
                continue;
            }
            path.push((name.to_string(), i));
            if let Some(at) = on_path.iter().position(|n| *n == t.to) {
                return Some(path[at..].to_vec());
            }
            if let Some(cycle) = visit(def, cut, &t.to, path, on_path, done) {
                return Some(cycle);
            }
            path.pop();
        }
        on_path.pop();
        done.insert(name.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for state in &def.states {
        let mut path = Vec::new();
        let mut on_path = Vec::new();
        if let Some(cycle) = visit(def, cut, &state.name, &mut path, &mut on_path, &mut done) {
            return Some(cycle);
        }
    }
    None
}
