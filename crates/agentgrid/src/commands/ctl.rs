//! `agentgrid ctl …`: an agent's requests to the engine over its execution's control socket.

use std::path::PathBuf;

use control::Op;

use crate::cli::{
    CtlApproval, CtlBlackboard, CtlCommand, CtlEscalation, CtlLease, CtlMsg, CtlSubtask,
    CtlWorkflow,
};
use crate::user_error;

pub fn ctl(cmd: CtlCommand) -> anyhow::Result<u8> {
    let socket = std::env::var_os("AGENTGRID_CONTROL_SOCKET").map(PathBuf::from);
    let token = std::env::var("AGENTGRID_TOKEN").ok();
    let (Some(socket), Some(token)) = (socket, token) else {
        return Err(user_error(
            "`agentgrid ctl` works only inside an execution: AGENTGRID_CONTROL_SOCKET and AGENTGRID_TOKEN are not set",
        ));
    };
    let op = match cmd {
        CtlCommand::Subtask(CtlSubtask::Create {
            title,
            body,
            labels,
            blocked_by,
            priority,
            key,
            areas,
            lease_ttl,
        }) => Op::SubtaskCreate {
            title,
            body,
            labels,
            blocked_by,
            priority,
            key,
            areas,
            lease_ttl_ms: lease_ttl.map(|t| t.as_millis()),
        },
        CtlCommand::Complete { summary } => Op::Complete { summary },
        CtlCommand::Block { reason } => Op::Block { reason },
        CtlCommand::Comment { text, key } => Op::Comment { text, key },
        CtlCommand::Approval(CtlApproval::Request { summary }) => Op::ApprovalRequest { summary },
        CtlCommand::Nudge { task } => Op::Nudge { task },
        CtlCommand::Workflow(CtlWorkflow::Start { name }) => Op::WorkflowStart { name },
        CtlCommand::Status => Op::Status,
        CtlCommand::Msg(CtlMsg::Send {
            to,
            kind,
            payload,
            correlation,
            priority,
            ttl,
        }) => {
            let payload: serde_json::Value = serde_json::from_str(&payload).map_err(|e| {
                user_error(format!(
                    "--payload is not JSON ({e}): give a JSON object such as '{{\"text\": \"halfway\"}}'"
                ))
            })?;
            Op::MsgSend {
                to,
                kind,
                payload,
                correlation,
                priority,
                ttl_ms: ttl.map(|t| t.as_millis()),
            }
        }
        CtlCommand::Msg(CtlMsg::Inbox) => Op::MsgInbox,
        CtlCommand::Msg(CtlMsg::Ack { id }) => Op::MsgAck { id },
        CtlCommand::Escalate {
            up: Some(id), text, ..
        } => Op::EscalateUp { id, note: text },
        CtlCommand::Escalate {
            severity,
            text,
            up: None,
        } => Op::Escalate {
            severity,
            text: text.unwrap_or_default(),
        },
        CtlCommand::Escalation(CtlEscalation::Answer { id, text }) => {
            Op::EscalationAnswer { id, text }
        }
        CtlCommand::Blackboard(CtlBlackboard::Get { key }) => Op::BlackboardGet { key },
        CtlCommand::Blackboard(CtlBlackboard::Set { key, value }) => {
            Op::BlackboardSet { key, value }
        }
        CtlCommand::Blackboard(CtlBlackboard::List) => Op::BlackboardList,
        CtlCommand::Lease(CtlLease::Take { paths, ttl, task }) => Op::LeaseTake {
            paths,
            ttl_ms: ttl.as_millis(),
            task,
        },
        CtlCommand::Lease(CtlLease::Release { paths }) => Op::LeaseRelease { paths },
        CtlCommand::Lease(CtlLease::List) => Op::LeaseList,
        CtlCommand::Handoff {
            to,
            summary,
            artifacts,
        } => Op::Handoff {
            to,
            summary,
            artifacts,
        },
    };
    let is_get = matches!(op, Op::BlackboardGet { .. });
    let is_create = matches!(op, Op::SubtaskCreate { .. });
    match control::call(&socket, &token, &op) {
        Ok(answer) => {
            if is_create {
                // Scripts capture the id: `id=$(agentgrid ctl subtask create …)`.
                outln!("{}", answer["id"]);
                if answer["existed"].as_bool() == Some(true) {
                    eprintln!(
                        "sub-task #{} existed already under this key; nothing was created",
                        answer["id"]
                    );
                }
            } else if is_get {
                // Scripts capture the value: a string as it is, nothing when it is unset.
                match &answer["value"] {
                    serde_json::Value::Null => {}
                    serde_json::Value::String(s) => outln!("{s}"),
                    other => outln!("{other}"),
                }
            } else {
                outln!("{}", serde_json::to_string_pretty(&answer)?);
            }
            Ok(crate::exit::OK)
        }
        Err(control::Error::Refused(reason)) => Err(user_error(reason)),
        Err(e) => Err(e.into()),
    }
}
