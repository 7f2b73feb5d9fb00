//! The rules of mailboxes: what may be sent, to whom it may be delivered, and that it is
//! acknowledged once.
//!
//! A message's events are its own (`EntityKind::Message`). The rules that matter against an
//! agent that floods or lies:
//! - the payload has its type's shape and size ([`domain::message::check_payload`]);
//! - an execution has at most [`limits::OPEN_PER_SENDER`] messages open and sends at most
//!   [`limits::SENT_PER_EXECUTION`] in all;
//! - an alert identical to an open one is folded into it (`message_coalesced`), not sent again;
//! - a message to an execution is delivered to that execution only, never to a later one of the
//!   same task, and only while it is active;
//! - nothing is delivered or acknowledged once its time to live ran out, and an acknowledgement
//!   is taken once: an announcement's (topic, broadcast) once per reading agent, for itself
//!   only, so that one reader's acknowledgement hides it from no other.

use domain::message::{check_payload, limits};
use domain::{
    EventKind, ExecutionId, Message, MessageId, MessageState, NewMessage, Receiver, Timestamp,
};

use crate::decide::Decision;
use crate::refusal::{Refusal, refused};
use crate::{Entry, Event, Key, State};

/// What one execution has sent: messages still open, and all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub open: u32,
    pub total: u32,
}

/// The keys a message change reads.
pub(crate) fn wants(state: &State, change: &crate::Change, keys: &mut Vec<Key>) {
    use crate::Change;
    match change {
        Change::SendMessage(new) => {
            keys.push(Key::NextMessageId);
            if let Some(e) = new.sender_execution {
                keys.push(Key::Execution(e));
                keys.push(Key::SentBy(e));
            }
            if let Some(e) = new.receiver.execution() {
                keys.push(Key::Execution(e));
            }
            if let Some(task) = new.task {
                keys.push(Key::Task(task));
            }
            if let Receiver::Task(task) = new.receiver {
                keys.push(Key::Task(task));
            }
            if let Some(fp) = new.fingerprint() {
                // An expired alert found open is closed before the new one is sent.
                if let Some(e) = state.open_alert(&fp).and_then(|m| m.sender_execution) {
                    keys.push(Key::SentBy(e));
                }
                keys.push(Key::OpenAlert(fp));
            }
        }
        Change::DeliverMessage { id, to } => {
            keys.push(Key::Message(*id));
            keys.push(Key::Execution(*to));
            // One delivery too many makes it a dead letter.
            sender_of(state, *id, keys);
        }
        Change::AckMessage { id, by } => {
            keys.push(Key::Message(*id));
            if let Some(e) = by {
                keys.push(Key::Execution(*e));
                // An announcement is acknowledged per reading agent.
                if let (Some(m), Some(x)) = (state.message(*id), state.execution(*e))
                    && m.receiver.is_announcement()
                {
                    keys.push(Key::ReadBy {
                        id: *id,
                        reader: x.agent.clone(),
                    });
                }
            }
            sender_of(state, *id, keys);
        }
        Change::ExpireMessage { id } | Change::DeadLetter { id, .. } => {
            keys.push(Key::Message(*id));
            sender_of(state, *id, keys);
        }
        _ => {}
    }
}

/// Closing a message frees a slot of its sender's.
fn sender_of(state: &State, id: MessageId, keys: &mut Vec<Key>) {
    if let Some(e) = state.message(id).and_then(|m| m.sender_execution) {
        keys.push(Key::SentBy(e));
    }
}

impl Decision<'_> {
    fn message_event(&mut self, id: MessageId, kind: EventKind) {
        self.events.push(Event::Logged(Entry {
            entity: domain::EntityKind::Message,
            id: id.0,
            at: self.now,
            kind,
        }));
    }

    fn message(&self, id: MessageId) -> Result<&Message, Refusal> {
        match self.state.message(id) {
            Some(m) => Ok(m),
            None => refused(format!(
                "message M{id} does not exist: see `agentgrid msg list`"
            )),
        }
    }

    /// The message, which must still be open and within its time to live for `what`.
    fn open_message(&self, id: MessageId, what: &str) -> Result<&Message, Refusal> {
        let m = self.message(id)?;
        match m.state {
            MessageState::Acked => {
                return refused(format!(
                    "message M{id} was acknowledged already by {} at {}; a message is \
                     acknowledged once, so it cannot be {what}",
                    m.acked_by.as_deref().unwrap_or("someone"),
                    m.acked_at.unwrap_or(m.updated_at)
                ));
            }
            MessageState::Dead => {
                return refused(format!(
                    "message M{id} is a dead letter ({}), so it cannot be {what}",
                    m.dead_reason.as_deref().unwrap_or("no reason recorded")
                ));
            }
            MessageState::Pending | MessageState::Delivered => {}
        }
        if m.expired(self.now) {
            return refused(format!(
                "message M{id}'s time to live ran out at {}, so it cannot be {what}",
                m.expires_at.unwrap_or(m.updated_at)
            ));
        }
        Ok(m)
    }

    pub(crate) fn send_message(&mut self, new: &NewMessage) -> Result<(), Refusal> {
        check_payload(new.kind, &new.payload).map_err(Refusal::Rule)?;
        if let Some(c) = &new.correlation
            && (c.trim().is_empty()
                || c.chars().count() > limits::CORRELATION_CHARS
                || c.chars().any(char::is_control))
        {
            return refused(format!(
                "a correlation id is one line of 1 to {} characters",
                limits::CORRELATION_CHARS
            ));
        }
        let ttl = match new.ttl {
            Some(ttl) if ttl.0 == 0 || ttl.0 > limits::MAX_TTL_MS => {
                return refused(format!(
                    "a message's time to live is more than 0 and at most {}",
                    domain::Duration(limits::MAX_TTL_MS)
                ));
            }
            Some(ttl) => Some(ttl.0),
            None if new.receiver.is_announcement() => Some(limits::ANNOUNCEMENT_TTL_MS),
            None => None,
        };
        if let Some(task) = new.task {
            self.task(task)?;
        }
        if let Receiver::Task(task) = new.receiver {
            self.task(task)?;
        }
        if let Some(to) = new.receiver.execution() {
            let e = self.execution(to)?;
            if e.state.is_terminal() {
                return refused(format!(
                    "execution #{to} already finished as {}; a message to it would never be \
                     read (address its agent or task's next execution through agent:NAME)",
                    e.state
                ));
            }
        }
        if let Some(from) = new.sender_execution {
            self.active_execution(from, "a message")?;
            let sent = self.state.sent_by(from);
            if sent.open >= limits::OPEN_PER_SENDER {
                return refused(format!(
                    "execution #{from} has {} messages that are neither acknowledged nor \
                     expired, the most it may have open; wait for them to be read",
                    sent.open
                ));
            }
            if sent.total >= limits::SENT_PER_EXECUTION {
                return refused(format!(
                    "execution #{from} has sent {} messages, the most one execution may send",
                    sent.total
                ));
            }
        }
        let fingerprint = new.fingerprint();
        if let Some(fp) = &fingerprint
            && let Some(open) = self.state.open_alert(fp)
        {
            let (id, expired) = (open.id, open.expired(self.now));
            if !expired {
                let by = self.actor.to_string();
                self.message_event(id, EventKind::MessageCoalesced { by });
                return Ok(());
            }
            // Its time ran out but no sweep recorded it: it ends now, and the new one is sent.
            self.message_event(
                id,
                EventKind::MessageDeadLettered {
                    reason: expired_reason(open.expires_at),
                },
            );
        }
        let id = self.state.next_message_id();
        let message = Message {
            id,
            sender: self.actor.to_string(),
            sender_execution: new.sender_execution,
            task_id: new.task,
            receiver: new.receiver.clone(),
            kind: new.kind,
            payload: new.payload.clone(),
            correlation: new.correlation.clone(),
            priority: new.priority,
            created_at: self.now,
            expires_at: ttl.map(|ms| Timestamp(self.now.0.saturating_add(ms as i64))),
            state: MessageState::Pending,
            deliveries: 0,
            delivered_to: None,
            delivered_at: None,
            acked_at: None,
            acked_by: None,
            dead_reason: None,
            coalesced: 0,
            fingerprint,
            updated_at: self.now,
        };
        self.message_event(id, EventKind::MessageSent { message });
        Ok(())
    }

    pub(crate) fn deliver_message(
        &mut self,
        id: MessageId,
        to: ExecutionId,
    ) -> Result<(), Refusal> {
        let m = self.open_message(id, "delivered")?;
        let (receiver, deliveries) = (m.receiver.clone(), m.deliveries);
        let e = self.active_execution(to, "a delivery")?;
        check_receiver(&receiver, id, e)?;
        if !receiver.is_announcement() && deliveries >= limits::DELIVERIES {
            let reason = format!(
                "delivered {deliveries} times and never acknowledged; it is not shown again"
            );
            self.message_event(id, EventKind::MessageDeadLettered { reason });
            return Ok(());
        }
        self.message_event(id, EventKind::MessageDelivered { execution: to });
        Ok(())
    }

    pub(crate) fn ack_message(
        &mut self,
        id: MessageId,
        by: Option<ExecutionId>,
    ) -> Result<(), Refusal> {
        let m = self.open_message(id, "acknowledged")?;
        if m.receiver.is_announcement() {
            return self.ack_announcement(id, by);
        }
        let (receiver, delivered) = (m.receiver.clone(), m.delivered_to);
        if let Some(e) = by {
            let execution = self.active_execution(e, "an acknowledgement")?;
            check_receiver(&receiver, id, execution)?;
            if delivered.is_none() {
                return refused(format!(
                    "message M{id} was never delivered to execution #{e}; read it with \
                     `agentgrid ctl msg inbox` first"
                ));
            }
        }
        let by = self.actor.to_string();
        self.message_event(id, EventKind::MessageAcked { by });
        Ok(())
    }

    /// An announcement is acknowledged by each reading agent for itself, through one of its
    /// executions it was delivered to; it stays open for the others.
    fn ack_announcement(&mut self, id: MessageId, by: Option<ExecutionId>) -> Result<(), Refusal> {
        let m = self.open_message(id, "acknowledged")?;
        let (receiver, deliveries) = (m.receiver.clone(), m.deliveries);
        let Some(e) = by else {
            return refused(format!(
                "message M{id} to {receiver} is an announcement: each agent that reads it \
                 acknowledges it for itself (`agentgrid ctl msg ack`); it ends with its time \
                 to live"
            ));
        };
        let execution = self.active_execution(e, "an acknowledgement")?;
        check_receiver(&receiver, id, execution)?;
        let reader = execution.agent.clone();
        if deliveries == 0 {
            return refused(format!(
                "message M{id} was never delivered to execution #{e}; read it with \
                 `agentgrid ctl msg inbox` first"
            ));
        }
        if self.state.read_by(id, &reader) {
            return refused(format!(
                "message M{id} was acknowledged already for agent {reader}; an announcement \
                 is acknowledged once by each agent that reads it"
            ));
        }
        let by = self.actor.to_string();
        self.message_event(id, EventKind::MessageReaderAcked { reader, by });
        Ok(())
    }

    pub(crate) fn expire_message(&mut self, id: MessageId) -> Result<(), Refusal> {
        let m = self.message(id)?;
        if !m.state.is_open() {
            return refused(format!(
                "message M{id} is {} already, so it cannot expire",
                m.state
            ));
        }
        if !m.expired(self.now) {
            return refused(match m.expires_at {
                Some(at) => format!("message M{id} lives until {at}; it has not expired"),
                None => format!("message M{id} has no time to live, so it never expires"),
            });
        }
        let reason = expired_reason(m.expires_at);
        self.message_event(id, EventKind::MessageDeadLettered { reason });
        Ok(())
    }

    pub(crate) fn dead_letter(&mut self, id: MessageId, reason: &str) -> Result<(), Refusal> {
        let m = self.message(id)?;
        if !m.state.is_open() {
            return refused(format!(
                "message M{id} is {} already, so it cannot become a dead letter",
                m.state
            ));
        }
        domain::text::check_size("a dead letter's reason", reason, 4096).map_err(Refusal::Rule)?;
        if reason.trim().is_empty() {
            return refused("a dead letter needs a reason");
        }
        let reason = reason.to_string();
        self.message_event(id, EventKind::MessageDeadLettered { reason });
        Ok(())
    }
}

fn expired_reason(at: Option<Timestamp>) -> String {
    match at {
        Some(at) => format!("expired: its time to live ran out at {at} before it was acknowledged"),
        None => "expired".to_string(),
    }
}

/// Whether `execution` is one the message is for. A message to an execution is fenced by its
/// id: a later execution of the same task is another execution.
fn check_receiver(
    receiver: &Receiver,
    id: MessageId,
    execution: &domain::Execution,
) -> Result<(), Refusal> {
    let ok = match receiver {
        Receiver::Execution(x) => *x == execution.id,
        Receiver::Task(t) => *t == execution.task_id,
        Receiver::Agent(name) => *name == execution.agent,
        Receiver::People => false,
        Receiver::Role(_) | Receiver::Agency(_) | Receiver::Topic(_) | Receiver::Broadcast => true,
    };
    if ok {
        return Ok(());
    }
    refused(format!(
        "message M{id} is for {receiver}, not for execution #{} of agent {}",
        execution.id, execution.agent
    ))
}

/// Folds a message event into the state.
pub(crate) fn evolve(state: &mut State, entry: &Entry) {
    let id = MessageId(entry.id);
    let at = entry.at;
    if let EventKind::MessageSent { message } = &entry.kind {
        if let Some(e) = message.sender_execution {
            state.count_sent(e, 1, 1);
        }
        state.put_message(message.clone());
        return;
    }
    if let EventKind::MessageReaderAcked { reader, .. } = &entry.kind {
        state.put_read_by(id, reader);
        if let Some(m) = state.message_mut(id) {
            m.updated_at = at;
        }
        return;
    }
    let Some(m) = state.message_mut(id) else {
        return;
    };
    let was_open = m.state.is_open();
    match &entry.kind {
        EventKind::MessageCoalesced { .. } => m.coalesced += 1,
        EventKind::MessageDelivered { execution } => {
            m.deliveries += 1;
            m.delivered_to = Some(*execution);
            m.delivered_at = Some(at);
            if m.state == MessageState::Pending {
                m.state = MessageState::Delivered;
            }
        }
        EventKind::MessageAcked { by } => {
            m.state = MessageState::Acked;
            m.acked_at = Some(at);
            m.acked_by = Some(by.clone());
        }
        EventKind::MessageDeadLettered { reason } => {
            m.state = MessageState::Dead;
            m.dead_reason = Some(reason.clone());
        }
        _ => return,
    }
    m.updated_at = at;
    let closed = was_open && !m.state.is_open();
    if closed && let Some(e) = m.sender_execution {
        state.count_sent(e, -1, 0);
    }
}
