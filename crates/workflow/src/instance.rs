//! The recorded state of one workflow run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::definition::{Outcome, ValueType};

/// Where a run is. `Instance::default()` is a run that has not started.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Instance {
    pub status: Status,
    /// The state the run is in; `None` before the start.
    pub position: Option<String>,
    /// The number of state entries so far: the current state's visit.
    pub visit: u32,
    /// In a parallel state: each branch and, once it ended, its outcome.
    pub branches: BTreeMap<String, Option<Outcome>>,
    pub blackboard: BTreeMap<String, Value>,
    /// How many times each transition was taken, by `state#index`.
    pub taken: BTreeMap<String, u32>,
    pub history: Vec<Entry>,
}

impl Instance {
    /// How the run ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.status {
            Status::Finished { outcome } => Some(outcome),
            _ => None,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.outcome().is_some()
    }
}

/// The life of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    NotStarted,
    Running,
    Finished {
        outcome: Outcome,
    },
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "not started",
            Status::Running => "running",
            Status::Finished {
                outcome: Outcome::Succeeded,
            } => "succeeded",
            Status::Finished {
                outcome: Outcome::Failed,
            } => "failed",
        }
    }
}

/// One line of a run's history: what happened in which visit of which state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub visit: u32,
    pub state: String,
    pub note: String,
}

/// A blackboard value; its type must be the one the definition gives its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    String(String),
}

impl Value {
    pub fn type_of(&self) -> ValueType {
        match self {
            Value::Bool(_) => ValueType::Bool,
            Value::Int(_) => ValueType::Int,
            Value::String(_) => ValueType::String,
        }
    }
}

impl Value {
    /// Reads `text` as a value of type `ty`, as a command line gives it: an int in decimal, a
    /// bool as `true` or `false`, a string as it is.
    pub fn parse(ty: ValueType, text: &str) -> Result<Value, String> {
        match ty {
            ValueType::String => Ok(Value::String(text.to_string())),
            ValueType::Int => text.trim().parse().map(Value::Int).map_err(|_| {
                format!(
                    "`{}` is not an int",
                    text.chars().take(40).collect::<String>()
                )
            }),
            ValueType::Bool => match text.trim() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!(
                    "`{}` is not a bool: say true or false",
                    text.chars().take(40).collect::<String>()
                )),
            },
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::String(s) => write!(f, "{s:?}"),
        }
    }
}
