//! Identifiers of tasks, executions, approvals and workflow runs.
//!
//! Both are positive integers allocated by the store. They are distinct types so a task id can
//! never be passed where an execution id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            Serialize,
            Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;

            /// Accepts `12`, `#12` and the prefixed form (`T12`, `E12`).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let trimmed = s.trim();
                let digits = trimmed
                    .strip_prefix('#')
                    .or_else(|| trimmed.strip_prefix($prefix))
                    .or_else(|| trimmed.strip_prefix(&$prefix.to_ascii_lowercase()))
                    .unwrap_or(trimmed);
                match digits.parse::<i64>() {
                    Ok(n) if n > 0 => Ok($name(n)),
                    _ => Err(format!(
                        "`{s}` is not {} id: expected a positive number such as 12",
                        $what
                    )),
                }
            }
        }
    };
}

pub(crate) use id_type;

id_type!(TaskId, "T", "a task");
id_type!(ExecutionId, "E", "an execution");
id_type!(ApprovalId, "A", "an approval");
id_type!(WorkflowId, "W", "a workflow run");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_hash_and_prefixed_forms() {
        assert_eq!("12".parse::<TaskId>(), Ok(TaskId(12)));
        assert_eq!("#12".parse::<TaskId>(), Ok(TaskId(12)));
        assert_eq!("T12".parse::<TaskId>(), Ok(TaskId(12)));
        assert_eq!("e7".parse::<ExecutionId>(), Ok(ExecutionId(7)));
    }

    #[test]
    fn rejects_zero_negative_and_garbage_with_a_clear_message() {
        for bad in ["0", "-3", "abc", "", "T"] {
            let err = bad.parse::<TaskId>().unwrap_err();
            assert!(err.contains("is not a task id"), "{err}");
        }
    }
}

/// The state visit of a workflow run that started another run (a `workflow` state): the child's
/// end is the input of that visit.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct WorkflowParent {
    pub run: WorkflowId,
    pub visit: u32,
    pub state: String,
}
