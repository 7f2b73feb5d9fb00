//! The pure step of a workflow instance: one input in, the next instance and its commands out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::definition::{Definition, Outcome, StateKind, Target, When};
use crate::instance::{Entry, Instance, Status, Value};

/// Something that happened to a run. `visit` names the state entry it answers; an input for a
/// visit that is over, or one the current state does not wait for, changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "input")]
pub enum Input {
    /// Enter the start state.
    Start,
    /// The work of an agent, command or sub-workflow state (or of a branch of a parallel one,
    /// named by `state`) ended. `values` are written to the blackboard.
    Ended {
        visit: u32,
        state: String,
        outcome: Outcome,
        score: Option<f64>,
        #[serde(default)]
        values: BTreeMap<String, Value>,
    },
    /// A person decided the approval of an approval state.
    Decided {
        visit: u32,
        approved: bool,
        feedback: Option<String>,
    },
    /// The timer of a state with a timeout fired.
    TimedOut { visit: u32 },
    /// The agent of the agent state `state` (or of that branch of a parallel state) wrote one
    /// blackboard value while its visit runs. The run stays where it is; a value [`check_value`]
    /// refuses, or a visit or state that is not the current one, changes nothing.
    Set {
        visit: u32,
        state: String,
        key: String,
        value: Value,
    },
}

impl Input {
    /// A step's end without a score or values.
    pub fn ended(visit: u32, state: &str, outcome: Outcome) -> Input {
        Input::Ended {
            visit,
            state: state.to_string(),
            outcome,
            score: None,
            values: BTreeMap::new(),
        }
    }
}

/// What the runner must do for the run. Every command but `Finish` belongs to one visit of one
/// state, and its result comes back as an input naming that visit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum Command {
    RunAgent {
        visit: u32,
        state: String,
        agent: String,
        target: Target,
    },
    RunCommand {
        visit: u32,
        state: String,
        run: Vec<String>,
    },
    RequestApproval {
        visit: u32,
        state: String,
        summary: String,
    },
    StartWorkflow {
        visit: u32,
        state: String,
        workflow: String,
    },
    Land {
        visit: u32,
        state: String,
    },
    /// Send `TimedOut { visit }` after `secs` seconds, unless the visit is over by then.
    ArmTimer {
        visit: u32,
        state: String,
        secs: u64,
    },
    /// Stop what the visit started: it timed out.
    Cancel {
        visit: u32,
        state: String,
    },
    /// The run is over.
    Finish {
        outcome: Outcome,
    },
}

/// How a state ended, as its transitions see it.
struct Ending {
    outcome: Outcome,
    timed_out: bool,
    score: Option<f64>,
    decision: Option<bool>,
    how: String,
}

/// The next instance and the commands to carry out for it. Pure: the same definition, instance
/// and input always give the same answer, so a run is the fold of its recorded inputs.
pub fn step(def: &Definition, instance: &Instance, input: Input) -> (Instance, Vec<Command>) {
    let mut next = instance.clone();
    let mut commands = Vec::new();
    match input {
        Input::Start => {
            if next.status != Status::NotStarted {
                return (next, commands);
            }
            next.status = Status::Running;
            enter(def, &mut next, &def.start, &mut commands);
        }
        Input::Ended {
            visit,
            state,
            outcome,
            score,
            values,
        } => {
            let Some(kind) = current(def, &next, visit) else {
                return (next, commands);
            };
            match kind {
                StateKind::Parallel { .. } => {
                    if next.branches.get(&state) != Some(&None) {
                        return (next, commands);
                    }
                    next.branches.insert(state.clone(), Some(outcome));
                    note(&mut next, &state, format!("branch {}", outcome.as_str()));
                    write_values(def, &mut next, &state, values);
                    if next.branches.values().all(Option::is_some) {
                        let all = next
                            .branches
                            .values()
                            .all(|o| *o == Some(Outcome::Succeeded));
                        let outcome = if all {
                            Outcome::Succeeded
                        } else {
                            Outcome::Failed
                        };
                        let ending = Ending {
                            outcome,
                            timed_out: false,
                            score: None,
                            decision: None,
                            how: format!("joined: {}", outcome.as_str()),
                        };
                        leave(def, &mut next, ending, &mut commands);
                    }
                }
                StateKind::Agent { .. }
                | StateKind::Command { .. }
                | StateKind::Land
                | StateKind::Workflow { .. } => {
                    if next.position.as_deref() != Some(state.as_str()) {
                        return (next, commands);
                    }
                    write_values(def, &mut next, &state, values);
                    let how = match score {
                        Some(s) => format!("{} with score {s}", outcome.as_str()),
                        None => outcome.as_str().to_string(),
                    };
                    let ending = Ending {
                        outcome,
                        timed_out: false,
                        score,
                        decision: None,
                        how,
                    };
                    leave(def, &mut next, ending, &mut commands);
                }
                StateKind::Approval { .. } | StateKind::End { .. } => {}
            }
        }
        Input::Decided {
            visit,
            approved,
            feedback,
        } => {
            let Some(StateKind::Approval { .. }) = current(def, &next, visit) else {
                return (next, commands);
            };
            let mut how = if approved { "approved" } else { "rejected" }.to_string();
            if let Some(feedback) = feedback {
                how.push_str(&format!(": {feedback}"));
            }
            let ending = Ending {
                outcome: if approved {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                },
                timed_out: false,
                score: None,
                decision: Some(approved),
                how,
            };
            leave(def, &mut next, ending, &mut commands);
        }
        Input::Set {
            visit,
            state,
            key,
            value,
        } => {
            let Some(kind) = current(def, &next, visit) else {
                return (next, commands);
            };
            let running = match kind {
                StateKind::Parallel { .. } => next.branches.get(&state) == Some(&None),
                StateKind::Agent { .. } => next.position.as_deref() == Some(state.as_str()),
                _ => false,
            };
            let is_agent = matches!(
                def.state(&state).map(|s| &s.kind),
                Some(StateKind::Agent { .. })
            );
            if !running || !is_agent || check_value(def, &key, &value).is_err() {
                return (next, commands);
            }
            write_values(def, &mut next, &state, BTreeMap::from([(key, value)]));
        }
        Input::TimedOut { visit } => {
            if current(def, &next, visit).is_none() {
                return (next, commands);
            }
            let position = next.position.clone().unwrap_or_default();
            if def.state(&position).and_then(|s| s.timeout_secs).is_none() {
                return (next, commands);
            }
            commands.push(Command::Cancel {
                visit,
                state: position,
            });
            let ending = Ending {
                outcome: Outcome::Failed,
                timed_out: true,
                score: None,
                decision: None,
                how: "timed out".to_string(),
            };
            leave(def, &mut next, ending, &mut commands);
        }
    }
    (next, commands)
}

/// The instance a run's recorded inputs make, from the start.
pub fn replay<'a>(def: &Definition, inputs: impl IntoIterator<Item = &'a Input>) -> Instance {
    inputs
        .into_iter()
        .fold(Instance::default(), |instance, input| {
            step(def, &instance, input.clone()).0
        })
}

impl Instance {
    /// What the run waits for in its current visit, as the commands that asked for it: what a
    /// runner that lost its memory (a restart) must make sure is under way. Empty unless
    /// running.
    pub fn awaiting(&self, def: &Definition) -> Vec<Command> {
        let Some(position) = &self.position else {
            return Vec::new();
        };
        if self.status != Status::Running {
            return Vec::new();
        }
        let mut commands = Vec::new();
        if let Some(state) = def.state(position) {
            if let StateKind::Parallel { branches } = &state.kind {
                for branch in branches {
                    if self.branches.get(branch) == Some(&None) {
                        work_of(def, branch, self.visit, &mut commands);
                    }
                }
            } else {
                work_of(def, position, self.visit, &mut commands);
            }
            if let Some(secs) = state.timeout_secs {
                commands.push(Command::ArmTimer {
                    visit: self.visit,
                    state: position.clone(),
                    secs,
                });
            }
        }
        commands
    }
}

/// The kind of the current state when `visit` is the current, running visit.
fn current<'a>(def: &'a Definition, instance: &Instance, visit: u32) -> Option<&'a StateKind> {
    if instance.status != Status::Running || instance.visit != visit {
        return None;
    }
    def.state(instance.position.as_deref()?).map(|s| &s.kind)
}

fn enter(def: &Definition, instance: &mut Instance, name: &str, commands: &mut Vec<Command>) {
    instance.visit += 1;
    instance.position = Some(name.to_string());
    instance.branches.clear();
    note(instance, name, "entered".to_string());
    let Some(state) = def.state(name) else {
        // A checked definition has no such transition; an unchecked one ends the run.
        finish(instance, name, Outcome::Failed, "no such state", commands);
        return;
    };
    match &state.kind {
        StateKind::End { outcome } => {
            finish(instance, name, *outcome, "end", commands);
            return;
        }
        StateKind::Parallel { branches } => {
            for branch in branches {
                instance.branches.insert(branch.clone(), None);
            }
        }
        _ => {}
    }
    let visit = instance.visit;
    if let StateKind::Parallel { branches } = &state.kind {
        for branch in branches {
            work_of(def, branch, visit, commands);
        }
    } else {
        work_of(def, name, visit, commands);
    }
    if let Some(secs) = state.timeout_secs {
        commands.push(Command::ArmTimer {
            visit,
            state: name.to_string(),
            secs,
        });
    }
}

/// The command that starts the work of the agent, command, approval or workflow state `name`.
fn work_of(def: &Definition, name: &str, visit: u32, commands: &mut Vec<Command>) {
    let Some(state) = def.state(name) else {
        return;
    };
    let state_name = name.to_string();
    commands.push(match &state.kind {
        StateKind::Agent { agent, target } => Command::RunAgent {
            visit,
            state: state_name,
            agent: agent.clone(),
            target: target.clone(),
        },
        StateKind::Command { run } => Command::RunCommand {
            visit,
            state: state_name,
            run: run.clone(),
        },
        StateKind::Approval { summary } => Command::RequestApproval {
            visit,
            state: state_name,
            summary: summary.clone(),
        },
        StateKind::Workflow { workflow } => Command::StartWorkflow {
            visit,
            state: state_name,
            workflow: workflow.clone(),
        },
        StateKind::Land => Command::Land {
            visit,
            state: state_name,
        },
        StateKind::Parallel { .. } | StateKind::End { .. } => return,
    });
}

fn leave(def: &Definition, instance: &mut Instance, ending: Ending, commands: &mut Vec<Command>) {
    let from = instance.position.clone().unwrap_or_default();
    let Some(state) = def.state(&from) else {
        return;
    };
    let mut spent = Vec::new();
    for (index, transition) in state.on.iter().enumerate() {
        if !holds(&transition.when, &ending) {
            continue;
        }
        let key = format!("{from}#{index}");
        let taken = instance.taken.get(&key).copied().unwrap_or(0);
        if transition.max.is_some_and(|max| taken >= max) {
            spent.push(format!("to `{}` ({taken} of {taken})", transition.to));
            continue;
        }
        instance.taken.insert(key, taken + 1);
        note(
            instance,
            &from,
            format!("{} → {}", ending.how, transition.to),
        );
        enter(def, instance, &transition.to, commands);
        return;
    }
    let why = if spent.is_empty() {
        format!("{}, and no transition applies", ending.how)
    } else {
        format!(
            "{}, and the budget of every transition that applies is spent: {}",
            ending.how,
            spent.join(", ")
        )
    };
    finish(instance, &from, Outcome::Failed, &why, commands);
}

fn holds(when: &When, ending: &Ending) -> bool {
    match when {
        When::Always => true,
        When::Succeeded => ending.outcome == Outcome::Succeeded,
        When::Failed => ending.outcome == Outcome::Failed,
        When::TimedOut => ending.timed_out,
        When::Approved => ending.decision == Some(true),
        When::Rejected => ending.decision == Some(false),
        When::ScoreAtLeast(t) => ending.score.is_some_and(|s| s >= *t),
        When::ScoreBelow(t) => ending.score.is_none_or(|s| s < *t),
    }
}

fn finish(
    instance: &mut Instance,
    state: &str,
    outcome: Outcome,
    why: &str,
    commands: &mut Vec<Command>,
) {
    instance.status = Status::Finished { outcome };
    note(
        instance,
        state,
        format!("finished: {} ({why})", outcome.as_str()),
    );
    commands.push(Command::Finish { outcome });
}

/// The longest blackboard key an agent may write, in characters.
pub const MAX_KEY_CHARS: usize = 64;
/// The longest string value an agent may write to the blackboard, in characters.
pub const MAX_STRING_CHARS: usize = 4096;

/// Whether `value` may stand under `key` in the blackboard of `def`: the key is declared, the
/// value has its type, and a string is at most [`MAX_STRING_CHARS`] long. The refusal says
/// what to change.
pub fn check_value(def: &Definition, key: &str, value: &Value) -> Result<(), String> {
    let Some(ty) = def.blackboard.get(key) else {
        let known: Vec<&str> = def.blackboard.keys().map(String::as_str).collect();
        return Err(format!(
            "the workflow `{}` has no blackboard key `{}` (keys: {})",
            def.name,
            key.chars().take(MAX_KEY_CHARS).collect::<String>(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    };
    if *ty != value.type_of() {
        return Err(format!(
            "the blackboard's `{key}` is of type {}, not {}",
            ty.as_str(),
            value.type_of().as_str()
        ));
    }
    if let Value::String(s) = value
        && s.chars().count() > MAX_STRING_CHARS
    {
        return Err(format!(
            "the value of `{key}` is {} characters long; at most {MAX_STRING_CHARS} are kept",
            s.chars().count()
        ));
    }
    Ok(())
}

/// Writes the values whose key the blackboard declares with their type; any other is refused
/// and the refusal is kept in the history, since the run goes on either way.
fn write_values(
    def: &Definition,
    instance: &mut Instance,
    state: &str,
    values: BTreeMap<String, Value>,
) {
    for (key, value) in values {
        match def.blackboard.get(&key) {
            Some(ty) if *ty == value.type_of() => {
                note(instance, state, format!("set {key} = {value}"));
                instance.blackboard.insert(key, value);
            }
            Some(ty) => note(
                instance,
                state,
                format!(
                    "refused {key} = {value}: the blackboard's `{key}` is of type {}",
                    ty.as_str()
                ),
            ),
            None => note(
                instance,
                state,
                format!("refused {key}: the blackboard has no such key"),
            ),
        }
    }
}

fn note(instance: &mut Instance, state: &str, note: String) {
    instance.history.push(Entry {
        visit: instance.visit,
        state: state.to_string(),
        note,
    });
}
