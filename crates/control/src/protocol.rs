//! The wire format: one JSON object per line in each direction.

use domain::TaskId;
use serde::{Deserialize, Serialize};

/// What the agent asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Create a sub-task of the execution's task.
    SubtaskCreate {
        title: String,
        #[serde(default)]
        body: String,
        #[serde(default)]
        labels: Vec<String>,
        #[serde(default)]
        blocked_by: Vec<TaskId>,
        #[serde(default)]
        priority: Option<i32>,
        /// The idempotency key: a second create under the same key (by this task) answers with
        /// the sub-task the first made and changes nothing. Without one, the engine derives it
        /// from the title, body and labels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Areas reserved for the sub-task in the same transaction as its creation (the
        /// coordinator's lease of `lease_take --task`), so it never runs without them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        areas: Vec<String>,
        /// How long the reservation holds; the longest a lease may be taken for when left out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease_ttl_ms: Option<u64>,
    },
    /// Claim the task is complete (validators still decide).
    Complete { summary: String },
    /// Say the task cannot go on without a person.
    Block { reason: String },
    Comment {
        text: String,
        /// The idempotency key: a second comment under the same key on this task changes
        /// nothing. Without one, every comment is recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Ask a person to approve the work so far; the execution should exit after it, and its
    /// task waits blocked for the decision.
    ApprovalRequest { summary: String },
    /// Hand the execution's part of its task to another agency or role (`to`: `AGENCY`,
    /// `AGENCY/ROLE` or `role:ROLE` in the agent's own agency), with a summary and paths in
    /// the branch for the receiver; the execution should exit after it.
    Handoff {
        to: String,
        summary: String,
        #[serde(default)]
        artifacts: Vec<String>,
    },
    /// Ask that a task run sooner.
    Nudge { task: TaskId },
    /// Start the workflow `name` (one the project defines) on the execution's own task.
    WorkflowStart { name: String },
    /// Write `value` (read as the key's declared type) to the blackboard of the workflow run
    /// whose current visit runs this execution's agent.
    BlackboardSet { key: String, value: String },
    /// One value of the blackboard of the workflow run of the execution's task.
    BlackboardGet { key: String },
    /// The blackboard of the workflow run of the execution's task: keys, types and values.
    BlackboardList,
    /// The execution's task, its parent and its sub-tasks.
    Status,
    /// Send a typed message (`to` as `agent:NAME`, `execution:ID`, `broadcast`, …; `type` as
    /// `STATUS`, `QUESTION`, …; `payload` a JSON object of the type's shape).
    MsgSend {
        to: String,
        #[serde(rename = "type")]
        kind: String,
        payload: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlation: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<String>,
        /// Time to live in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    /// The open messages for this execution; each shown is recorded as delivered to it.
    MsgInbox,
    /// Acknowledge a message delivered to this execution, once.
    MsgAck { id: domain::MessageId },
    /// Ask up the line a question the agent cannot answer: a specialist's goes to its
    /// agency's coordinator, anyone else's to people; the answer comes to the task's next
    /// execution.
    Escalate { severity: String, text: String },
    /// A coordinator sends an escalation it cannot answer on up, to people.
    EscalateUp {
        id: domain::MessageId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A coordinator answers an escalation addressed to it.
    EscalationAnswer { id: domain::MessageId, text: String },
    /// Take area leases on paths of the repository (relative, normalised by the engine) for
    /// `ttl_ms`, for the execution's own task or (`task`) one of its sub-tasks.
    LeaseTake {
        paths: Vec<String>,
        ttl_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
    },
    /// Release this execution's area leases on `paths`, or every one when `paths` is empty.
    LeaseRelease {
        #[serde(default)]
        paths: Vec<String>,
    },
    /// The area leases held now, by every execution.
    LeaseList,
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::SubtaskCreate { .. } => "subtask_create",
            Op::Complete { .. } => "complete",
            Op::Block { .. } => "block",
            Op::Comment { .. } => "comment",
            Op::ApprovalRequest { .. } => "approval_request",
            Op::Handoff { .. } => "handoff",
            Op::Nudge { .. } => "nudge",
            Op::WorkflowStart { .. } => "workflow_start",
            Op::BlackboardSet { .. } => "blackboard_set",
            Op::BlackboardGet { .. } => "blackboard_get",
            Op::BlackboardList => "blackboard_list",
            Op::Status => "status",
            Op::MsgSend { .. } => "msg_send",
            Op::MsgInbox => "msg_inbox",
            Op::MsgAck { .. } => "msg_ack",
            Op::Escalate { .. } => "escalate",
            Op::EscalateUp { .. } => "escalate_up",
            Op::EscalationAnswer { .. } => "escalation_answer",
            Op::LeaseTake { .. } => "lease_take",
            Op::LeaseRelease { .. } => "lease_release",
            Op::LeaseList => "lease_list",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub token: String,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            data: Some(data),
            error: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            data: None,
            error: Some(message.into()),
        }
    }
}
