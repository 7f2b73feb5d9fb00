//! Escalations: an agent stuck at a question it cannot answer asks up the line. Today the line
//! ends at the people (agency coordinators come with agency manifests): an escalation is an
//! `ESCALATION` message to `people`, shown by `status` with its age while unanswered, and a
//! person's answer is an `ANSWER` to the asking task (`task:ID`), which its next execution
//! reads in its prompt's `{{ inbox }}`; a task that blocked to wait for it is reopened.

//! Escalations: an agent stuck at a question it cannot answer asks up the line. A specialist
//! of an agency asks its coordinator first: the escalation is an `ESCALATION` message to
//! `role:AGENCY/coordinator`, and the coordinator is woken (the nearest task above the
//! specialist's that the coordinator works on is nudged, or, when there is none, a task is
//! made for it) so that it reads the question in its next prompt's `{{ inbox }}`. The
//! coordinator answers it ([`AnswerEscalation`]) or sends it on up to people
//! ([`EscalateUp`]); one it leaves open past its agency's `escalation_deadline` goes up by
//! itself ([`EscalateOverdue`], the engine's tick). Everyone else (an agent outside
//! agencies, a coordinator, a person) escalates to `people` directly. The line has two steps
//! and no way back down: people never escalate, an escalation at people goes no higher, and
//! an agent cannot send an `ESCALATION` as a plain message, so no loop between a coordinator
//! and a specialist can form.
//!
//! Open escalations are shown by `status` with their age and where they sit; an answer is an
//! `ANSWER` to the asking task (`task:ID`), which its next execution reads in its prompt's
//! `{{ inbox }}`, and a task that blocked to wait for it is reopened.

use domain::{
    ExecutionId, Message, MessageId, MessageState, MessageType, NewMessage, NewTask, Priority,
    Receiver, TaskState, Timestamp,
};
use store::{Change, ExecutionFilter};

use crate::{Actor, App, COORDINATOR_ROLE, Command, Error, Query};

/// How many tasks up from the asking one the coordinator's own task is looked for.
const ANCESTORS: usize = 16;

/// The label of a task made to wake a coordinator for an escalation.
pub const WAKE_LABEL: &str = "escalation";

/// Ask up the line: `severity` is low, normal, high or critical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalate {
    pub severity: String,
    pub text: String,
    /// The task it is about, for a person's escalation; an agent's is its own task.
    pub task: Option<domain::TaskId>,
}

/// What an escalation did: the message, and the task that was nudged or made to wake the
/// coordinator it went to.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalated {
    pub message: Message,
    pub woke: Option<domain::TaskId>,
}

#[async_trait::async_trait]
impl Command for Escalate {
    type Output = Escalated;

    async fn run(self, app: &App, actor: &Actor) -> Result<Escalated, Error> {
        let priority = match self.severity.as_str() {
            "critical" => Priority::Urgent,
            "high" => Priority::High,
            "low" => Priority::Low,
            _ => Priority::Normal,
        };
        let payload = serde_json::json!({ "text": self.text, "severity": self.severity });
        let mut message = NewMessage {
            priority,
            task: self.task,
            ..NewMessage::new(Receiver::People, MessageType::Escalation, payload)
        };
        // A specialist's question goes to its coordinator first.
        let mut coordinator = None;
        if let Actor::Execution { id, .. } = actor
            && let Some(e) = app.store.execution(*id).await?
            && let Some((agency, role)) = app.directory.member(&e.agent)
            && role != COORDINATOR_ROLE
            && let Some(entry) = app.directory.agency(agency)
        {
            message.receiver = Receiver::Role(format!("{agency}/{COORDINATOR_ROLE}"));
            coordinator = Some((entry.coordinator.clone(), e));
        }
        // The message's checks come first (severity, size), so that nothing is woken for a
        // question that is refused.
        domain::message::check_payload(message.kind, &message.payload).map_err(Error::invalid)?;
        let Some((lead, asking)) = coordinator else {
            let sent = crate::messages::send(app, actor, message).await?;
            return Ok(Escalated {
                message: sent.message,
                woke: None,
            });
        };
        let wake = app.wake_change(&lead, &asking).await?;
        let sent = crate::messages::send_with(app, actor, message, vec![wake]).await?;
        let woke = sent.tasks.last().map(|t| t.id);
        Ok(Escalated {
            message: sent.sent.message,
            woke,
        })
    }
}

/// A coordinator sends an escalation addressed to it on up to people: it is acknowledged and
/// an `ESCALATION` with the same question (and the coordinator's note) goes to `people`,
/// correlated with it, about the same task, in one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalateUp {
    pub id: MessageId,
    pub note: Option<String>,
}

#[async_trait::async_trait]
impl Command for EscalateUp {
    type Output = Message;

    async fn run(self, app: &App, actor: &Actor) -> Result<Message, Error> {
        let by = match actor {
            Actor::Execution { id, .. } => Some(*id),
            _ => None,
        };
        let m = at_coordinator(app, self.id, by).await?;
        let note = self.note.map(|n| format!("the coordinator says: {n}"));
        up(app, actor, &m, by, note).await
    }
}

/// The engine's tick: escalations that waited at a coordinator past their agency's
/// `escalation_deadline` at `now` go up to people, at most `limit` of them. Returns the
/// escalations it sent up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalateOverdue {
    pub limit: u32,
}

#[async_trait::async_trait]
impl Command for EscalateOverdue {
    type Output = Vec<Message>;

    async fn run(self, app: &App, actor: &Actor) -> Result<Vec<Message>, Error> {
        if let Actor::Execution { .. } = actor {
            return Err(Error::invalid("an agent does not move others' escalations"));
        }
        let now = app.now();
        let mut sent = Vec::new();
        for (name, entry) in app.directory.agencies() {
            let receiver = Receiver::Role(format!("{name}/{COORDINATOR_ROLE}"));
            // The oldest are due first: one agency's deadline is the same for all of them.
            let left = self.limit.saturating_sub(sent.len() as u32);
            if left == 0 {
                break;
            }
            for m in app.store.open_escalations(&receiver, left).await? {
                if sent.len() >= self.limit as usize {
                    return Ok(sent);
                }
                let due = Timestamp(
                    m.created_at
                        .0
                        .saturating_add(entry.escalation_deadline.0 as i64),
                );
                if due > now {
                    continue;
                }
                let note = format!(
                    "the coordinator {} left it unanswered for {} (the agency's \
                     escalation_deadline)",
                    entry.coordinator, entry.escalation_deadline
                );
                // Another process may have answered it meanwhile: that one stands.
                match up(app, actor, &m, None, Some(note)).await {
                    Ok(m) => sent.push(m),
                    Err(Error::Refused { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(sent)
    }
}

/// The open escalation `id`, which must sit at a coordinator, and, for an execution, be one
/// addressed to that execution's agent's role.
async fn at_coordinator(
    app: &App,
    id: MessageId,
    by: Option<ExecutionId>,
) -> Result<Message, Error> {
    let m = escalation(app, id).await?;
    match m.state {
        MessageState::Acked => {
            return Err(Error::invalid(format!(
                "escalation M{id} was acknowledged already by {}: it was answered or sent up",
                m.acked_by.as_deref().unwrap_or("someone")
            )));
        }
        MessageState::Dead => {
            return Err(Error::invalid(format!(
                "escalation M{id} is a dead letter ({})",
                m.dead_reason.as_deref().unwrap_or("no reason recorded")
            )));
        }
        MessageState::Pending | MessageState::Delivered => {}
    }
    if m.receiver == Receiver::People {
        return Err(Error::invalid(format!(
            "escalation M{id} is with people already; it goes no higher"
        )));
    }
    if let Some(e) = by {
        app.check_reader(id, e).await?;
    }
    Ok(m)
}

async fn escalation(app: &App, id: MessageId) -> Result<Message, Error> {
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
    Ok(m)
}

/// Acknowledges `m` and sends its question on to people, in one batch.
async fn up(
    app: &App,
    actor: &Actor,
    m: &Message,
    by: Option<ExecutionId>,
    note: Option<String>,
) -> Result<Message, Error> {
    let mut payload = m.payload.clone();
    if let Some(note) = note {
        let text = payload["text"].as_str().unwrap_or_default();
        payload["text"] = serde_json::Value::String(format!("{text} ({note})"));
    }
    let changes = vec![
        Change::AckMessage { id: m.id, by },
        Change::SendMessage(NewMessage {
            correlation: Some(format!("M{}", m.id)),
            priority: m.priority,
            task: m.task_id,
            ..NewMessage::new(Receiver::People, MessageType::Escalation, payload)
        }),
    ];
    let applied = app.apply(actor, changes).await?;
    applied
        .messages
        .into_iter()
        .find(|x| x.id != m.id)
        .ok_or_else(|| Error::invalid("the escalation was not recorded"))
}

impl App {
    /// How to wake coordinator `lead` for a question of `asking`: nudge the nearest task above
    /// the asking one that `lead` works on, while it is not over; else make it a task.
    async fn wake_change(&self, lead: &str, asking: &domain::Execution) -> Result<Change, Error> {
        let mut task = self.find(asking.task_id).await?;
        for _ in 0..ANCESTORS {
            let Some(parent) = task.parent else {
                break;
            };
            task = self.find(parent).await?;
            let last = self
                .store
                .executions(&ExecutionFilter {
                    task: Some(task.id),
                    active_only: false,
                    limit: Some(1),
                })
                .await?;
            let works_on =
                task.agent.as_deref() == Some(lead) || last.last().is_some_and(|e| e.agent == lead);
            if works_on && !task.state.is_terminal() {
                return Ok(Change::Nudge { id: task.id });
            }
        }
        // One task that has not started yet reads every escalation waiting for it, so a
        // specialist that escalates again and again makes its coordinator one task, not many.
        let waiting = self
            .store
            .tasks(&store::TaskFilter {
                states: vec![TaskState::Open],
                labels: vec![WAKE_LABEL.to_string()],
                ..store::TaskFilter::default()
            })
            .await?;
        if let Some(t) = waiting
            .iter()
            .find(|t| t.agent.as_deref() == Some(lead) && t.executions == 0)
        {
            return Ok(Change::Nudge { id: t.id });
        }
        let mut new = NewTask::titled(format!(
            "Answer an escalation from {} (task #{})",
            asking.agent, asking.task_id
        ));
        new.body = "Your inbox holds an ESCALATION from a specialist of your agency. Answer it \
                    with `agentgrid ctl escalation answer M<ID> --text '…'`, or, if a person \
                    must decide, send it up with `agentgrid ctl escalate --up M<ID>`."
            .to_string();
        new.agent = Some(lead.to_string());
        new.labels = vec![WAKE_LABEL.to_string()];
        new.priority = 1;
        Ok(Change::CreateTask(new))
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
        let id = self.id;
        // A coordinator answers what was escalated to it; people answer any escalation.
        let by = match actor {
            Actor::Execution { id: e, .. } => Some(*e),
            _ => None,
        };
        let m = match by {
            Some(e) => at_coordinator(app, id, Some(e)).await?,
            None => escalation(app, id).await?,
        };
        let Some(task) = m.task_id else {
            return Err(Error::invalid(format!(
                "escalation M{id} names no task, so there is nobody to answer; acknowledge it \
                 with `agentgrid msg ack M{id}`"
            )));
        };
        let mut changes = vec![
            Change::AckMessage { id, by },
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

/// The `limit` oldest open escalations, with people and at every agency's coordinator, oldest
/// first: at most `limit` read per receiver.
pub(crate) async fn open_escalations(app: &App, limit: u32) -> Result<Vec<Message>, Error> {
    let mut open = app.store.open_escalations(&Receiver::People, limit).await?;
    for (name, _) in app.directory.agencies() {
        let at = Receiver::Role(format!("{name}/{COORDINATOR_ROLE}"));
        open.extend(app.store.open_escalations(&at, limit).await?);
    }
    open.sort_by_key(|m| m.id);
    open.truncate(limit as usize);
    Ok(open)
}
