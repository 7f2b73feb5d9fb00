//! What a workflow is: its states, their transitions and the blackboard's keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One workflow, as its manifest describes it. States are kept in the order they were written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub name: String,
    /// The state an instance enters first.
    pub start: String,
    /// The keys of the blackboard and the type of each; a value of another type is refused.
    pub blackboard: BTreeMap<String, ValueType>,
    pub states: Vec<State>,
}

impl Definition {
    pub fn state(&self, name: &str) -> Option<&State> {
        self.states.iter().find(|s| s.name == name)
    }
}

/// One named state of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub kind: StateKind,
    /// How long the state may take, in seconds; past it the state ends as timed out.
    pub timeout_secs: Option<u64>,
    /// Tried in order; the first whose condition holds and whose budget is not spent is taken.
    pub on: Vec<Transition>,
}

impl State {
    pub fn new(name: &str, kind: StateKind) -> State {
        State {
            name: name.to_string(),
            kind,
            timeout_secs: None,
            on: Vec::new(),
        }
    }

    pub fn on(mut self, transition: Transition) -> State {
        self.on.push(transition);
        self
    }

    pub fn timeout(mut self, secs: u64) -> State {
        self.timeout_secs = Some(secs);
        self
    }
}

/// What a state does while an instance is in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// Run the agent on the target; the state ends with the execution's outcome and score.
    Agent { agent: String, target: Target },
    /// Run a command in the task's workspace, sandboxed; exit status 0 is success.
    Command { run: Vec<String> },
    /// Ask a person; the state ends with the decision.
    Approval { summary: String },
    /// Enter every branch state at once and end when all of them have: succeeded when every
    /// branch did, failed otherwise. A branch is an agent or command state.
    Parallel { branches: Vec<String> },
    /// Start another workflow on the same task; the state ends with its outcome.
    Workflow { workflow: String },
    /// Land the task's branch on the base branch (`agentgrid land`); it succeeds when the base
    /// branch moved.
    Land,
    /// The instance ends here.
    End { outcome: Outcome },
}

/// Where an agent state runs its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The workflow's own task.
    Task,
    /// A sub-task of the workflow's task with this title, made for the step.
    Subtask { title: String },
}

/// How a step or an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        }
    }
}

/// A way out of a state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub to: String,
    pub when: When,
    /// How many times an instance may take this transition; `None` is no limit, which a check
    /// refuses on any transition that closes a loop.
    pub max: Option<u32>,
}

impl Transition {
    pub fn to(state: &str) -> Transition {
        Transition {
            to: state.to_string(),
            when: When::Always,
            max: None,
        }
    }

    pub fn when(mut self, when: When) -> Transition {
        self.when = when;
        self
    }

    pub fn max(mut self, max: u32) -> Transition {
        self.max = Some(max);
        self
    }
}

/// The condition of a transition, on how the state ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    Always,
    Succeeded,
    Failed,
    TimedOut,
    Approved,
    Rejected,
    /// The step reported a score of at least this.
    ScoreAtLeast(f64),
    /// The step reported a score below this, or none.
    ScoreBelow(f64),
}

impl When {
    /// Whether the condition only makes sense after an approval state.
    pub fn is_decision(&self) -> bool {
        matches!(self, When::Approved | When::Rejected)
    }
}

/// The type of a blackboard key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    String,
    Int,
    Bool,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Int => "int",
            ValueType::Bool => "bool",
        }
    }
}
