//! How a refused control call reads to the agent that made it.
//!
//! An agent sees only what `agentgrid ctl` prints, and acts on it: a refusal must say which of
//! its calls was refused, why in its own terms (the task ids it passed, the flag it left
//! empty), what was left unchanged and where to look before calling again. Every refusal, the
//! server's own (a token, a limit) and the engine's, is worded here as the call's.

use crate::Op;

/// The command an agent typed for `op`, as it reads in a message.
pub fn call_name(op: &Op) -> &'static str {
    match op {
        Op::SubtaskCreate { .. } => "agentgrid ctl subtask create",
        Op::Complete { .. } => "agentgrid ctl complete",
        Op::Block { .. } => "agentgrid ctl block",
        Op::Comment { .. } => "agentgrid ctl comment",
        Op::ApprovalRequest { .. } => "agentgrid ctl approval request",
        Op::Handoff { .. } => "agentgrid ctl handoff",
        Op::Nudge { .. } => "agentgrid ctl nudge",
        Op::WorkflowStart { .. } => "agentgrid ctl workflow start",
        Op::BlackboardSet { .. } => "agentgrid ctl blackboard set",
        Op::BlackboardGet { .. } => "agentgrid ctl blackboard get",
        Op::BlackboardList => "agentgrid ctl blackboard list",
        Op::Status => "agentgrid ctl status",
        Op::MsgSend { .. } => "agentgrid ctl msg send",
        Op::MsgInbox => "agentgrid ctl msg inbox",
        Op::MsgAck { .. } => "agentgrid ctl msg ack",
        Op::Escalate { .. } => "agentgrid ctl escalate",
        Op::EscalateUp { .. } => "agentgrid ctl escalate --up",
        Op::EscalationAnswer { .. } => "agentgrid ctl escalation answer",
        Op::LeaseTake { .. } => "agentgrid ctl lease take",
        Op::LeaseRelease { .. } => "agentgrid ctl lease release",
        Op::LeaseList => "agentgrid ctl lease list",
    }
}

/// What the refusal left as it was, and where the agent can look before it calls again.
fn next_step(call: &str) -> &'static str {
    match call {
        "agentgrid ctl subtask create" => {
            "no sub-task was created; `agentgrid ctl status` shows your task, its parent and its sub-tasks with their ids"
        }
        "agentgrid ctl nudge" => {
            "nothing was nudged; `agentgrid ctl status` shows your task, its parent and its sub-tasks with their ids"
        }
        "agentgrid ctl complete" => "no completion was claimed",
        "agentgrid ctl block" => "the task is not blocked",
        "agentgrid ctl comment" => "no comment was recorded",
        "agentgrid ctl approval request" => "no approval was requested",
        "agentgrid ctl workflow start" => "no workflow was started",
        "agentgrid ctl blackboard set" => {
            "the blackboard is as it was; `agentgrid ctl blackboard list` shows its keys, types and values"
        }
        "agentgrid ctl msg send" => "no message was sent",
        "agentgrid ctl escalate" | "agentgrid ctl escalate --up" => "nothing was escalated",
        "agentgrid ctl escalation answer" => "nothing was answered",
        "agentgrid ctl msg ack" => {
            "nothing was acknowledged; `agentgrid ctl msg inbox` shows your open messages with their ids"
        }
        _ => "nothing was changed",
    }
}

/// The refusal of `call` for `why`, as the agent reads it.
pub fn for_agent(call: &str, why: &str) -> String {
    format!("`{call}` was refused: {why}; {}", next_step(call))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_call_and_what_was_left_unchanged() {
        let op = Op::Nudge {
            task: domain::TaskId(9),
        };
        assert_eq!(
            for_agent(call_name(&op), "task #9 does not exist"),
            "`agentgrid ctl nudge` was refused: task #9 does not exist; nothing was nudged; \
             `agentgrid ctl status` shows your task, its parent and its sub-tasks with their ids"
        );
    }
}
