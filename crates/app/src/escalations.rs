//! Escalations: an agent stuck at a question it cannot answer asks up the line. Today the line
//! ends at the people (agency coordinators come with agency manifests): an escalation is an
//! `ESCALATION` message to `people`, shown by `status` with its age while unanswered, and a
//! person's answer is an `ANSWER` to the asking task (`task:ID`), which its next execution
//! reads in its prompt's `{{ inbox }}`; a task that blocked to wait for it is reopened.

use domain::{
    Message, MessageId, MessageState, MessageType, NewMessage, Priority, Receiver, TaskState,
};
use store::{Change, MessageFilter};

use crate::{Actor, App, Command, Error, Query, SendMessage};

/// Ask up the line: `severity` is low, normal, high or critical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalate {
    pub severity: String,
    pub text: String,
    /// The task it is about, for a person's escalation; an agent's is its own task.
    pub task: Option<domain::TaskId>,
}

#[async_trait::async_trait]
impl Command for Escalate {
    type Output = Message;

    async fn run(self, app: &App, actor: &Actor) -> Result<Message, Error> {
        let priority = match self.severity.as_str() {
            "critical" => Priority::Urgent,
            "high" => Priority::High,
            "low" => Priority::Low,
            _ => Priority::Normal,
        };
        let payload = serde_json::json!({ "text": self.text, "severity": self.severity });
        let message = NewMessage {
            priority,
            task: self.task,
            ..NewMessage::new(Receiver::People, MessageType::Escalation, payload)
        };
        Ok(SendMessage { message }.run(app, actor).await?.message)
    }
}

/// A person answers an open escalation: it is acknowledged, the answer goes to the asking
/// task's next execution, and the task is reopened if it blocked to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerEscalation {
    pub id: MessageId,
    pub text: String,
}

/// The escalation, acknowledged, and the answer sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub escalation: Message,
    pub answer: Message,
}

#[async_trait::async_trait]
impl Command for AnswerEscalation {
    type Output = Answered;

    async fn run(self, app: &App, actor: &Actor) -> Result<Answered, Error> {
        if let Actor::Execution { .. } = actor {
            return Err(Error::invalid(
                "escalations are answered by people: `agentgrid escalations answer`",
            ));
        }
        let id = self.id;
        let Some(m) = app.store.message(id).await? else {
            return Err(Error::invalid(format!(
                "escalation M{id} does not exist: see `agentgrid escalations`"
            )));
        };
        if m.kind != MessageType::Escalation {
            return Err(Error::invalid(format!(
                "message M{id} is a {}, not an escalation: see `agentgrid escalations`",
                m.kind
            )));
        }
        let Some(task) = m.task_id else {
            return Err(Error::invalid(format!(
                "escalation M{id} names no task, so there is nobody to answer; acknowledge it \
                 with `agentgrid msg ack M{id}`"
            )));
        };
        let mut changes = vec![
            Change::AckMessage { id, by: None },
            Change::SendMessage(NewMessage {
                correlation: Some(format!("M{id}")),
                priority: Priority::High,
                task: Some(task),
                ..NewMessage::new(
                    Receiver::Task(task),
                    MessageType::Answer,
                    serde_json::json!({ "text": self.text }),
                )
            }),
        ];
        if app.find(task).await?.state == TaskState::Blocked {
            changes.push(Change::SetTaskState {
                id: task,
                to: TaskState::Open,
                reason: Some(format!("escalation M{id} answered")),
            });
        }
        let applied = app.apply(actor, changes).await?;
        let mut escalation = None;
        let mut answer = None;
        for m in applied.messages {
            if m.id == id {
                escalation = Some(m);
            } else {
                answer = Some(m);
            }
        }
        match (escalation, answer) {
            (Some(escalation), Some(answer)) => Ok(Answered { escalation, answer }),
            _ => Err(Error::invalid("the answer was not recorded")),
        }
    }
}

/// The escalations not answered yet, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationList {
    pub limit: u32,
}

#[async_trait::async_trait]
impl Query for EscalationList {
    type Output = Vec<Message>;

    async fn run(self, app: &App, _actor: &Actor) -> Result<Vec<Message>, Error> {
        open_escalations(app, self.limit).await
    }
}

pub(crate) async fn open_escalations(app: &App, limit: u32) -> Result<Vec<Message>, Error> {
    let mut open = Vec::new();
    for state in [MessageState::Pending, MessageState::Delivered] {
        let filter = MessageFilter {
            state: Some(state),
            receiver: Some(Receiver::People),
            ..MessageFilter::default()
        };
        open.extend(
            app.store
                .messages(&filter)
                .await?
                .into_iter()
                .filter(|m| m.kind == MessageType::Escalation),
        );
    }
    open.sort_by_key(|m| m.id);
    open.truncate(limit as usize);
    Ok(open)
}
