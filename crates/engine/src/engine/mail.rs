//! Messages on the engine's side: the agent's `ctl msg send|inbox|ack` calls, run as the
//! app's commands for the execution, and the inbox its prompt starts with.

use app::Actor;
use control::Op;
use domain::{Duration, Execution, ExecutionId, MessageType, NewMessage, Priority, Receiver};

use super::Engine;

impl Engine {
    /// Answers a `ctl msg` call of `execution`.
    pub(super) async fn msg_call(
        &mut self,
        execution: ExecutionId,
        actor: &Actor,
        op: Op,
    ) -> Result<serde_json::Value, String> {
        match op {
            Op::MsgSend {
                to,
                kind,
                payload,
                correlation,
                priority,
                ttl_ms,
            } => {
                let receiver: Receiver = to.parse()?;
                let kind: MessageType = kind.parse()?;
                let priority: Priority = match priority {
                    Some(p) => p.parse()?,
                    None => Priority::Normal,
                };
                let message = NewMessage {
                    correlation,
                    priority,
                    ttl: ttl_ms.map(Duration),
                    ..NewMessage::new(receiver, kind, payload)
                };
                let sent = self.command(actor, app::SendMessage { message }).await?;
                Ok(serde_json::json!({
                    "id": sent.message.id,
                    "coalesced": sent.coalesced,
                }))
            }
            Op::MsgInbox => {
                let inbox = app::ReadInbox { execution };
                let messages = self.command(actor, inbox).await?;
                Ok(serde_json::json!({ "messages": messages }))
            }
            Op::MsgAck { id } => {
                let acked = self.command(actor, app::AckMessage { id }).await?;
                Ok(serde_json::json!({ "acked": acked.id }))
            }
            Op::Escalate { severity, text } => {
                let escalate = app::Escalate {
                    severity,
                    text,
                    task: None,
                };
                let sent = self.command(actor, escalate).await?;
                Ok(serde_json::json!({
                    "id": sent.message.id,
                    "to": sent.message.receiver,
                    "woke": sent.woke,
                }))
            }
            Op::EscalateUp { id, note } => {
                let up = self.command(actor, app::EscalateUp { id, note }).await?;
                Ok(serde_json::json!({ "id": up.id, "to": up.receiver }))
            }
            Op::EscalationAnswer { id, text } => {
                let answer = app::AnswerEscalation { id, text };
                let answered = self.command(actor, answer).await?;
                Ok(serde_json::json!({
                    "answered": answered.escalation.id,
                    "answer": answered.answer.id,
                }))
            }
            other => Err(format!("`{}` is not a message call", other.name())),
        }
    }

    /// The inbox a new execution's prompt starts with, each message recorded as delivered to
    /// it; what can never be delivered any more is swept first. A failure to read it is
    /// logged and leaves the prompt without it: the agent can still read it with `ctl msg
    /// inbox`.
    pub(super) async fn prompt_inbox(&mut self, execution: &Execution) -> Option<String> {
        // No message open anywhere: no inbox holds one, and nothing is there to sweep.
        if self.known.no_open_message() {
            return None;
        }
        if let Err(e) = self
            .command(&Actor::Engine, app::SweepMessages { limit: 100 })
            .await
        {
            tracing::warn!(execution_id = %execution.id, "sweeping the mailboxes failed: {e}");
        }
        let inbox = app::ReadInbox {
            execution: execution.id,
        };
        let text = match self.command(&Actor::Engine, inbox).await {
            Ok(messages) => app::inbox_text(&messages),
            Err(e) => {
                tracing::warn!(execution_id = %execution.id, "reading the inbox failed: {e}");
                None
            }
        };
        // Whether any message is open still, after this sweep and delivery; a failed probe
        // leaves it unknown, and the next prompt reads again.
        match self.store.any_open_message().await {
            Ok(open) => self.known.messages_looked(open),
            Err(e) => tracing::warn!("looking for open messages failed: {e}"),
        }
        text
    }
}
