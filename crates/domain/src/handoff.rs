//! Handoffs: one agency's (or role's) part of a task ending and another's opening on the same
//! task (`agentgrid ctl handoff`), and the bounds on what a handoff may carry.
//!
//! A handoff is never completion: it only says who works on the task next. The task's
//! [`crate::Task::handoff`] names the part open now, which routing honours; the
//! `task_handed_off` event records each handoff when it is accepted.

use serde::{Deserialize, Serialize};

/// Where a handoff sends a task: an agency, and within it a role when one is named (else the
/// agency's routing picks its specialist by the task's labels, or its coordinator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HandoffTarget {
    pub agency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl std::fmt::Display for HandoffTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.role {
            Some(role) => write!(f, "{}/{role}", self.agency),
            None => write!(f, "{}", self.agency),
        }
    }
}

/// A handoff an execution made, as its end sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOff {
    /// The receiving part.
    pub to: HandoffTarget,
    /// The part the task was in before, which it goes back to when the execution does not
    /// exit cleanly (the handoff is void then).
    pub restore: Option<HandoffTarget>,
}

/// The bounds on one handoff, checked before anything is written: the agent chooses every
/// byte of it, and all of it is kept in the log and shown to the next prompt.
pub mod limits {
    /// The summary, in bytes. With the artifacts it fits the `HANDOFF` message's payload
    /// (`message::limits::PAYLOAD_BYTES`), which carries both.
    pub const SUMMARY_BYTES: usize = 8 * 1024;
    /// Artifacts named by one handoff.
    pub const ARTIFACTS: usize = 16;
    /// One artifact's path, in bytes.
    pub const ARTIFACT_PATH_BYTES: usize = 256;
    /// The handoffs a task may have when the configuration says nothing.
    pub const DEFAULT_PER_TASK: u32 = 6;
}
