//! `agentgrid msg send|list|show|ack`: a person's face on the mailboxes. The rules are the
//! tracker's and the app's; this module turns arguments into their commands and prints.

use app::{AckMessage, Actor, MessageList, MessageShow, SendMessage, SweepMessages};
use domain::{Message, MessageState, MessageType, NewMessage, Priority, Receiver};
use store::MessageFilter;

use crate::cli::{EscalationsCommand, MsgCommand};
use crate::output::{block, json, one_line, table};
use crate::project::Project;
use crate::{exit, user_error};

pub async fn msg(project: &Project, command: MsgCommand) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let actor = Actor::command_line();
    match command {
        MsgCommand::Send {
            to,
            kind,
            payload,
            correlation,
            priority,
            ttl,
            task,
            json: as_json,
        } => {
            let receiver: Receiver = to
                .parse()
                .map_err(|e: String| user_error(format!("--to: {e}")))?;
            let kind: MessageType = kind
                .parse()
                .map_err(|e: String| user_error(format!("--type: {e}")))?;
            let priority: Priority = match priority {
                Some(p) => p
                    .parse()
                    .map_err(|e: String| user_error(format!("--priority: {e}")))?,
                None => Priority::Normal,
            };
            let payload: serde_json::Value = serde_json::from_str(&payload).map_err(|e| {
                user_error(format!(
                    "--payload is not JSON ({e}): give a JSON object such as '{{\"text\": \"halfway\"}}'"
                ))
            })?;
            let message = NewMessage {
                correlation,
                priority,
                ttl,
                task,
                ..NewMessage::new(receiver, kind, payload)
            };
            let sent = app.execute(&actor, SendMessage { message }).await?;
            if as_json {
                json(&sent.message)?;
            } else if sent.coalesced {
                outln!(
                    "M{} (the same alert was open already; counted, not sent again)",
                    sent.message.id
                );
            } else {
                outln!("M{}", sent.message.id);
            }
            Ok(exit::OK)
        }
        MsgCommand::List {
            state,
            task,
            to,
            limit,
            json: as_json,
        } => {
            let state = match state {
                Some(s) => Some(MessageState::parse(&s).ok_or_else(|| {
                    user_error(format!(
                        "--state `{}` is not a message state: pending, delivered, acked or dead",
                        one_line(&s)
                    ))
                })?),
                None => None,
            };
            let receiver = match to {
                Some(r) => Some(
                    r.parse::<Receiver>()
                        .map_err(|e| user_error(format!("--to: {e}")))?,
                ),
                None => None,
            };
            app.execute(&actor, SweepMessages { limit: 1000 }).await?;
            let filter = MessageFilter {
                state,
                task,
                receiver,
                limit: Some(limit),
            };
            let messages = app.ask(&actor, MessageList { filter }).await?;
            if as_json {
                json(&messages)?;
            } else if messages.is_empty() {
                outln!("no messages");
            } else {
                let rows: Vec<Vec<String>> = messages.iter().map(row).collect();
                table(&["ID", "TYPE", "FROM", "TO", "STATE", "WHAT"], &rows);
            }
            Ok(exit::OK)
        }
        MsgCommand::Show { id, json: as_json } => {
            let (message, events) = app.ask(&actor, MessageShow { id }).await?;
            if as_json {
                json(&serde_json::json!({ "message": message, "events": events }))?;
                return Ok(exit::OK);
            }
            let row = row(&message);
            outln!(
                "M{} {} from {} to {}: {}",
                message.id,
                row[1],
                row[2],
                row[3],
                row[4]
            );
            if let Some(c) = &message.correlation {
                outln!("correlation: {}", one_line(c));
            }
            if let Some(reason) = &message.dead_reason {
                outln!("dead letter: {}", one_line(reason));
            }
            outln!("payload:");
            block(&serde_json::to_string_pretty(&message.payload)?, "  ");
            outln!("history:");
            for e in &events {
                outln!(
                    "  {} {} {}",
                    e.at,
                    one_line(&e.actor),
                    one_line(&e.kind.describe())
                );
            }
            Ok(exit::OK)
        }
        MsgCommand::Ack { id, json: as_json } => {
            let acked = app.execute(&actor, AckMessage { id }).await?;
            if as_json {
                json(&acked)?;
            } else {
                outln!("M{} acknowledged", acked.id);
            }
            Ok(exit::OK)
        }
    }
}

pub async fn escalations(
    project: &Project,
    command: Option<EscalationsCommand>,
) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let actor = Actor::command_line();
    match command.unwrap_or(EscalationsCommand::List { json: false }) {
        EscalationsCommand::List { json: as_json } => {
            let open = app.ask(&actor, app::EscalationList { limit: 200 }).await?;
            if as_json {
                json(&open)?;
            } else if open.is_empty() {
                outln!("no escalation waits for an answer");
            } else {
                let now = super::approvals::now();
                let rows: Vec<Vec<String>> = open.iter().map(|m| escalation_row(m, now)).collect();
                table(
                    &["ID", "TASK", "SEVERITY", "FROM", "AT", "AGE", "QUESTION"],
                    &rows,
                );
            }
            Ok(exit::OK)
        }
        EscalationsCommand::Answer {
            id,
            text,
            json: as_json,
        } => {
            let answered = app
                .execute(&actor, app::AnswerEscalation { id, text })
                .await?;
            if as_json {
                json(&serde_json::json!({
                    "escalation": answered.escalation,
                    "answer": answered.answer,
                }))?;
            } else {
                outln!(
                    "M{} answered (M{} to {})",
                    answered.escalation.id,
                    answered.answer.id,
                    answered.answer.receiver
                );
            }
            Ok(exit::OK)
        }
    }
}

/// One unanswered escalation as `status` and `escalations` show it.
pub(super) fn escalation_row(m: &Message, now: domain::Timestamp) -> Vec<String> {
    let severity = m.payload["severity"].as_str().unwrap_or_default();
    vec![
        format!("M{}", m.id),
        m.task_id.map(|t| format!("#{t}")).unwrap_or_default(),
        one_line(severity).into_owned(),
        one_line(&m.sender).into_owned(),
        m.receiver.to_string(),
        super::approvals::age(m.created_at, now),
        crate::output::clip(&m.headline(), 80),
    ]
}

fn row(m: &Message) -> Vec<String> {
    let mut state = m.state.to_string();
    if m.coalesced > 0 {
        state.push_str(&format!(" (+{})", m.coalesced));
    }
    vec![
        format!("M{}", m.id),
        m.kind.to_string(),
        one_line(&m.sender).into_owned(),
        m.receiver.to_string(),
        state,
        crate::output::clip(&m.headline(), 60),
    ]
}
