//! Messages between agents, coordinators and people: sending, reading an inbox (which records
//! each delivery), acknowledging, sweeping what can never be delivered, and the views.
//!
//! The rule about who may write to whom lives here: an agent writes to agents, agencies,
//! topics, everyone and people freely, to the roles of its own agency only (`role:R` is
//! stored as `role:AGENCY/R`, see [`Directory`](crate::Directory)), but to one execution or
//! one task (`task:ID`) only when it works on the same task, its parent or one of its
//! sub-tasks; it sends an `ESCALATION` only through [`Escalate`](crate::Escalate). It reads
//! only its own inbox: its agent's, task's and execution's messages, everyone's, and those for
//! its agency, role and topics. Acknowledgement: a message to an agent, a task, a role or an
//! agency is acknowledged once, by any one of its readers (a job for whoever takes it); an
//! execution acknowledges only a message it is a reader of and that was delivered to it.
//! Announcements (topics, broadcast) are never acknowledged: every reader sees them until
//! their time to live ends. Everything else (payload shapes, bounds per sender, coalescing,
//! fencing and time to live) is the tracker's.

use domain::{EntityKind, Event, ExecutionId, Message, MessageId, NewMessage, Receiver};
use store::{Change, MessageFilter};

use crate::{Actor, App, Command, Error, Query};

/// How many messages one inbox read shows at most.
pub const INBOX_LIMIT: u32 = 20;

/// Send a message. An agent's is sent from its execution, about its task.
#[derive(Debug, Clone, PartialEq)]
pub struct SendMessage {
    pub message: NewMessage,
}

/// What a send did: the message, and whether it was folded into an identical open alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub message: Message,
    pub coalesced: bool,
}

#[async_trait::async_trait]
impl Command for SendMessage {
    type Output = Sent;

    async fn run(self, app: &App, actor: &Actor) -> Result<Sent, Error> {
        if let Actor::Execution { .. } = actor
            && self.message.kind == domain::MessageType::Escalation
        {
            return Err(Error::invalid(
                "an agent escalates with `agentgrid ctl escalate`, which sends the question up \
                 its line (its coordinator, then people); an ESCALATION cannot be sent as a \
                 message",
            ));
        }
        // A coordinator's `ANSWER` correlated with an escalation waiting for it answers that
        // escalation: acknowledged, the answer to the asking task, its task reopened.
        if let Actor::Execution { .. } = actor
            && self.message.kind == domain::MessageType::Answer
            && let Some(id) = self
                .message
                .correlation
                .as_deref()
                .and_then(|c| c.parse::<MessageId>().ok())
            && let Some(m) = app.store.message(id).await?
            && m.kind == domain::MessageType::Escalation
            && matches!(m.receiver, Receiver::Role(_))
        {
            domain::message::check_payload(self.message.kind, &self.message.payload)
                .map_err(Error::invalid)?;
            let text = self.message.payload["text"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let answered = crate::AnswerEscalation { id, text }.run(app, actor).await?;
            return Ok(Sent {
                message: answered.answer,
                coalesced: false,
            });
        }
        send(app, actor, self.message).await
    }
}

/// Sends `message` for `actor` under the rules of who may write to whom; an escalation too.
pub(crate) async fn send(app: &App, actor: &Actor, message: NewMessage) -> Result<Sent, Error> {
    Ok(send_with(app, actor, message, Vec::new()).await?.sent)
}

/// What [`send_with`] did: the send, and the tasks its other changes wrote.
pub(crate) struct SentWith {
    pub sent: Sent,
    pub tasks: Vec<domain::Task>,
}

/// [`send`], with `more` changes in the same batch after the message.
pub(crate) async fn send_with(
    app: &App,
    actor: &Actor,
    mut message: NewMessage,
    more: Vec<Change>,
) -> Result<SentWith, Error> {
    let mut agent = None;
    if let Actor::Execution { id, .. } = actor {
        let sender = app.active_execution(*id).await?;
        message.sender_execution = Some(*id);
        message.task = Some(sender.task_id);
        match message.receiver {
            Receiver::Execution(to) => app.authorize_execution_receiver(&sender, to).await?,
            Receiver::Task(to) => app.authorize_task_receiver(&sender, to).await?,
            _ => {}
        }
        agent = Some(sender.agent);
    }
    message.receiver = app.directory.resolve(agent.as_deref(), message.receiver)?;
    let mut changes = vec![Change::SendMessage(message)];
    changes.extend(more);
    let applied = app.apply(actor, changes).await?;
    let coalesced = applied
        .events
        .iter()
        .any(|e| e.kind.name() == "message_coalesced");
    let message = applied
        .messages
        .into_iter()
        .find(|m| m.state.is_open())
        .ok_or_else(|| Error::invalid("the message was not recorded"))?;
    Ok(SentWith {
        sent: Sent { message, coalesced },
        tasks: applied.tasks,
    })
}

/// Read the open messages for an execution, recording each as delivered to it: those for
/// its agent, its task, for everyone, for its agency, role and topics (the app's
/// [`Directory`](crate::Directory)), and for the execution itself. Most urgent first, at most
/// [`INBOX_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadInbox {
    pub execution: ExecutionId,
}

#[async_trait::async_trait]
impl Command for ReadInbox {
    type Output = Vec<Message>;

    async fn run(self, app: &App, actor: &Actor) -> Result<Vec<Message>, Error> {
        if let Actor::Execution { id, .. } = actor
            && *id != self.execution
        {
            return Err(Error::invalid(format!(
                "execution #{id} may read only its own inbox, not execution #{}'s",
                self.execution
            )));
        }
        let e = app.active_execution(self.execution).await?;
        let mut receivers = vec![
            Receiver::Agent(e.agent.clone()).to_string(),
            Receiver::Task(e.task_id).to_string(),
            Receiver::Broadcast.to_string(),
        ];
        receivers.extend(
            app.directory
                .receivers_of(&e.agent)
                .iter()
                .map(ToString::to_string),
        );
        // A message may end between the read and the write (acknowledged or swept by another
        // process): the batch is refused as a whole, and read again.
        let mut tries = 0;
        loop {
            let now = app.now();
            let open = app
                .store
                .inbox(&receivers, Some(e.id), Some(&e.agent), now, INBOX_LIMIT)
                .await?;
            if open.is_empty() {
                return Ok(Vec::new());
            }
            let changes = open
                .iter()
                .map(|m| Change::DeliverMessage { id: m.id, to: e.id })
                .collect();
            match app.apply_batch(actor, changes).await {
                Ok(applied) => {
                    let mut shown: Vec<Message> = applied
                        .messages
                        .into_iter()
                        .filter(|m| m.delivered_to == Some(e.id) && m.state.is_open())
                        .collect();
                    shown.sort_by_key(|m| (std::cmp::Reverse(m.priority), m.id));
                    return Ok(shown);
                }
                Err(store::Error::Refused { .. }) if tries < 3 => tries += 1,
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// Acknowledge a message, once. An agent acknowledges what was delivered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckMessage {
    pub id: MessageId,
}

#[async_trait::async_trait]
impl Command for AckMessage {
    type Output = Message;

    async fn run(self, app: &App, actor: &Actor) -> Result<Message, Error> {
        let by = match actor {
            Actor::Execution { id, .. } => Some(*id),
            _ => None,
        };
        if let Some(e) = by {
            app.check_reader(self.id, e).await?;
        }
        let applied = app
            .apply(actor, vec![Change::AckMessage { id: self.id, by }])
            .await?;
        applied
            .messages
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("the acknowledgement was not recorded"))
    }
}

/// Record as dead letters the open messages that can never be delivered: expired, or for an
/// execution that ended. Returns how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepMessages {
    pub limit: u32,
}

#[async_trait::async_trait]
impl Command for SweepMessages {
    type Output = usize;

    async fn run(self, app: &App, actor: &Actor) -> Result<usize, Error> {
        if let Actor::Execution { .. } = actor {
            return Err(Error::invalid("an agent does not sweep the mailboxes"));
        }
        let due = app.store.messages_due(app.now(), self.limit).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let changes = due.iter().map(store::MessageSweep::change).collect();
        app.apply(actor, changes).await?;
        Ok(due.len())
    }
}

/// The messages a filter selects, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageList {
    pub filter: MessageFilter,
}

#[async_trait::async_trait]
impl Query for MessageList {
    type Output = Vec<Message>;

    async fn run(self, app: &App, _actor: &Actor) -> Result<Vec<Message>, Error> {
        Ok(app.store.messages(&self.filter).await?)
    }
}

/// One message with its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageShow {
    pub id: MessageId,
}

#[async_trait::async_trait]
impl Query for MessageShow {
    type Output = (Message, Vec<Event>);

    async fn run(self, app: &App, _actor: &Actor) -> Result<(Message, Vec<Event>), Error> {
        let Some(message) = app.store.message(self.id).await? else {
            return Err(Error::invalid(format!(
                "message M{} does not exist: see `agentgrid msg list`",
                self.id
            )));
        };
        let events = app
            .store
            .entity_events(EntityKind::Message, self.id.0)
            .await?;
        Ok((message, events))
    }
}

/// An inbox as a prompt shows it: one message a line, most urgent first, with its id to
/// acknowledge it by. `None` when it is empty.
pub fn inbox_text(messages: &[Message]) -> Option<String> {
    if messages.is_empty() {
        return None;
    }
    let lines: Vec<String> = messages
        .iter()
        .map(|m| {
            let mut line = format!("M{} {} from {}", m.id, m.kind, m.sender);
            if m.priority != domain::Priority::Normal {
                line.push_str(&format!(" ({})", m.priority));
            }
            if let Some(c) = &m.correlation {
                line.push_str(&format!(" [re {}]", domain::text::one_line(c)));
            }
            // JSON escapes the C0 controls only: C1 controls, bidi overrides and U+2028/U+2029
            // in the payload's strings could still start a line of their own in the prompt.
            line.push_str(&format!(
                ": {}",
                domain::text::one_line(&m.payload.to_string())
            ));
            line
        })
        .collect();
    Some(lines.join("\n"))
}

impl App {
    /// An execution acknowledges (or answers) only a message it is a reader of, while it is
    /// active, and only once the message was delivered to it: a stale execution, or one of an
    /// agent outside the role, agency or topic, cannot.
    pub(crate) async fn check_reader(
        &self,
        id: MessageId,
        e: ExecutionId,
    ) -> Result<Message, Error> {
        let execution = self.active_execution(e).await?;
        let Some(m) = self.store.message(id).await? else {
            return Err(Error::invalid(format!(
                "message M{id} does not exist: see `agentgrid ctl msg inbox`"
            )));
        };
        let reader = match &m.receiver {
            Receiver::Agent(name) => *name == execution.agent,
            Receiver::Task(t) => *t == execution.task_id,
            Receiver::Execution(x) => *x == execution.id,
            Receiver::People => false,
            Receiver::Broadcast => true,
            other => self.directory.eligible(&execution.agent, other),
        };
        if !reader {
            return Err(Error::invalid(format!(
                "message M{id} is for {}, and agent {} of execution #{e} is not one of its \
                 readers",
                m.receiver, execution.agent
            )));
        }
        // A message that is over (acknowledged, dead) is the tracker's to refuse, in its own
        // words.
        if !m.state.is_open() {
            return Ok(m);
        }
        let delivered = self
            .store
            .entity_events(EntityKind::Message, id.0)
            .await?
            .iter()
            .any(|ev| {
                matches!(&ev.kind, domain::EventKind::MessageDelivered { execution } if *execution == e)
            });
        if !delivered {
            return Err(Error::invalid(format!(
                "message M{id} was never delivered to execution #{e}; read it with \
                 `agentgrid ctl msg inbox` first"
            )));
        }
        Ok(m)
    }

    /// The execution, which must exist and be active.
    async fn active_execution(&self, id: ExecutionId) -> Result<domain::Execution, Error> {
        match self.store.execution(id).await? {
            Some(e) if e.state.is_active() => Ok(e),
            Some(_) => Err(Error::invalid(format!(
                "execution #{id} has ended; its token is no longer valid"
            ))),
            None => Err(Error::invalid(format!("execution #{id} does not exist"))),
        }
    }

    /// An agent writes to one execution only within its family of tasks: its own task, its
    /// parent, its sub-tasks.
    async fn authorize_execution_receiver(
        &self,
        sender: &domain::Execution,
        to: ExecutionId,
    ) -> Result<(), Error> {
        let Some(receiver) = self.store.execution(to).await? else {
            return Err(Error::invalid(format!("execution #{to} does not exist")));
        };
        if self.in_family(sender.task_id, receiver.task_id).await? {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "execution #{} works on task #{} and may not write to execution #{to} of task #{}, \
             which is neither its task, its parent nor one of its sub-tasks",
            sender.id, sender.task_id, receiver.task_id
        )))
    }

    /// A message to `task:ID` reaches whichever execution of that task reads next, so an agent
    /// writes to a task under the same rule as to one of its executions.
    async fn authorize_task_receiver(
        &self,
        sender: &domain::Execution,
        to: domain::TaskId,
    ) -> Result<(), Error> {
        if self.in_family(sender.task_id, to).await? {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "execution #{} works on task #{} and may not write to task #{to}, which is neither \
             its task, its parent nor one of its sub-tasks",
            sender.id, sender.task_id
        )))
    }

    /// Whether `theirs` is `mine`, its parent or one of its sub-tasks.
    async fn in_family(&self, mine: domain::TaskId, theirs: domain::TaskId) -> Result<bool, Error> {
        if mine == theirs {
            return Ok(true);
        }
        let mine = self.find(mine).await?;
        let theirs = self.find(theirs).await?;
        Ok(mine.parent == Some(theirs.id) || theirs.parent == Some(mine.id))
    }
}
