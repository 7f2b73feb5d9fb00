//! Approvals: a person's decision on a task's work, asked for by the project's policy or by the
//! agent, recorded once.
//!
//! An approval is a step of its task (its events are the task's), so the task's version orders
//! a request and its decision, and a decision made by two people at once is refused for one of
//! them. The state machine is two steps long: pending, then approved or rejected, never again.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ApprovalId, ExecutionId, TaskId, Timestamp};

/// Who asked for the approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalSource {
    /// The project's `approvals` policy: the task ended done and the policy names it.
    Policy,
    /// The agent, with `agentgrid ctl approval request`; its task waits blocked meanwhile.
    Agent,
    /// An approval state of a workflow run on the task: the decision is the run's input.
    Workflow,
}

impl ApprovalSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalSource::Policy => "policy",
            ApprovalSource::Agent => "agent",
            ApprovalSource::Workflow => "workflow",
        }
    }

    /// The stored name back, `None` for a name this build does not know.
    pub fn parse(s: &str) -> Option<ApprovalSource> {
        match s {
            "policy" => Some(ApprovalSource::Policy),
            "agent" => Some(ApprovalSource::Agent),
            "workflow" => Some(ApprovalSource::Workflow),
            _ => None,
        }
    }
}

impl fmt::Display for ApprovalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
        }
    }

    /// The stored name back, `None` for a name this build does not know.
    pub fn parse(s: &str) -> Option<ApprovalState> {
        match s {
            "pending" => Some(ApprovalState::Pending),
            "approved" => Some(ApprovalState::Approved),
            "rejected" => Some(ApprovalState::Rejected),
            _ => None,
        }
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a person decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Approve,
    /// Send the work back: the task is reopened and `feedback` is for its next execution.
    Reject {
        feedback: String,
    },
}

impl Decision {
    /// The state the approval reaches.
    pub fn outcome(&self) -> ApprovalState {
        match self {
            Decision::Approve => ApprovalState::Approved,
            Decision::Reject { .. } => ApprovalState::Rejected,
        }
    }
}

/// One approval, as its task's events leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Approval {
    pub id: ApprovalId,
    pub task_id: TaskId,
    pub source: ApprovalSource,
    /// The execution whose work is to be decided on: the one that asked, or the last one of a
    /// task the policy names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<ExecutionId>,
    /// What the agent says it did (or the task's summary, for the policy).
    pub summary: String,
    pub state: ApprovalState,
    pub requested_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    /// Who decided, as the store records actors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The feedback of a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            ApprovalSource::Policy,
            ApprovalSource::Agent,
            ApprovalSource::Workflow,
        ] {
            assert_eq!(ApprovalSource::parse(s.as_str()), Some(s));
        }
        for s in [
            ApprovalState::Pending,
            ApprovalState::Approved,
            ApprovalState::Rejected,
        ] {
            assert_eq!(ApprovalState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(ApprovalState::parse("maybe"), None);
    }
}
