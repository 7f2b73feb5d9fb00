//! Messages: durable, typed notes between agents, their coordinators and people.
//!
//! A message is an envelope (who sent it, to whom, of which [`MessageType`], with a payload
//! checked against its type, a correlation id, a priority and a time to live) plus where it
//! stands: pending, delivered (shown to an execution, at least once), acknowledged (once), or a
//! dead letter with the reason. Its events are its own (`EntityKind::Message`), so its version
//! orders a delivery and its acknowledgement and two acknowledgements race for one slot.
//!
//! An agent's message is hostile input: every size and count here is bounded, the payload of a
//! type has a fixed shape (unknown fields are refused), and a message addressed to one execution
//! is fenced by that execution's id, so it never reaches a later execution of the same task.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Duration, ExecutionId, TaskId, Timestamp};

/// The bounds on what anyone can make the mailboxes hold.
pub mod limits {
    /// The payload, encoded as JSON.
    pub const PAYLOAD_BYTES: usize = 16 * 1024;
    /// A correlation id.
    pub const CORRELATION_CHARS: usize = 200;
    /// A receiver's name (agent, role, agency, topic).
    pub const NAME_CHARS: usize = 100;
    /// The longest time to live, and the one a broadcast or topic message gets when it names
    /// none (they are announcements, ended by their time to live rather than an acknowledgement).
    pub const MAX_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
    pub const ANNOUNCEMENT_TTL_MS: u64 = 24 * 3600 * 1000;
    /// Messages one execution may have open (neither acknowledged nor dead) at once.
    pub const OPEN_PER_SENDER: u32 = 100;
    /// Messages one execution may send in all.
    pub const SENT_PER_EXECUTION: u32 = 1000;
    /// A message delivered this many times without an acknowledgement becomes a dead letter.
    pub const DELIVERIES: u32 = 20;
}

crate::ids::id_type!(MessageId, "M", "a message");

/// What a message is about; each type has its own payload shape ([`check_payload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageType {
    Task,
    Status,
    Question,
    Answer,
    Complete,
    Blocked,
    Handoff,
    Results,
    Alert,
    Heartbeat,
    /// An agent stuck at a question it cannot answer: to its coordinator, then a person.
    Escalation,
}

/// How urgent an escalation is, as its payload's `severity` says.
pub const SEVERITIES: [&str; 4] = ["low", "normal", "high", "critical"];

/// How a payload field must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A non-empty string.
    Text,
    /// An array of non-empty strings.
    List,
}

impl MessageType {
    pub const ALL: [MessageType; 11] = [
        MessageType::Task,
        MessageType::Status,
        MessageType::Question,
        MessageType::Answer,
        MessageType::Complete,
        MessageType::Blocked,
        MessageType::Handoff,
        MessageType::Results,
        MessageType::Alert,
        MessageType::Heartbeat,
        MessageType::Escalation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Task => "TASK",
            MessageType::Status => "STATUS",
            MessageType::Question => "QUESTION",
            MessageType::Answer => "ANSWER",
            MessageType::Complete => "COMPLETE",
            MessageType::Blocked => "BLOCKED",
            MessageType::Handoff => "HANDOFF",
            MessageType::Results => "RESULTS",
            MessageType::Alert => "ALERT",
            MessageType::Heartbeat => "HEARTBEAT",
            MessageType::Escalation => "ESCALATION",
        }
    }

    /// The payload's fields: name, shape, required.
    fn fields(self) -> &'static [(&'static str, Field, bool)] {
        use Field::{List, Text};
        match self {
            MessageType::Task => &[("title", Text, true), ("body", Text, false)],
            MessageType::Status | MessageType::Question | MessageType::Answer => {
                &[("text", Text, true)]
            }
            MessageType::Complete => &[("summary", Text, true)],
            MessageType::Blocked => &[("reason", Text, true)],
            MessageType::Handoff => &[
                ("summary", Text, true),
                ("artifacts", List, false),
                ("notes", Text, false),
            ],
            MessageType::Results => &[("summary", Text, true), ("items", List, false)],
            MessageType::Alert => &[("text", Text, true), ("level", Text, false)],
            MessageType::Heartbeat => &[("note", Text, false)],
            MessageType::Escalation => &[("text", Text, true), ("severity", Text, true)],
        }
    }

    /// The field a one-line view shows.
    pub fn headline(self, payload: &serde_json::Value) -> String {
        let (name, _, _) = self.fields()[0];
        payload
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "`{}` is not a message type; the types are {}",
                    clip(s, 40),
                    names.join(", ")
                )
            })
    }
}

/// At most `chars` characters of `text`, escaped for one line.
fn clip(text: &str, chars: usize) -> String {
    let cut: String = text.chars().take(chars).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!("{}{more}", crate::text::one_line(&cut))
}

/// Checks `payload` against the shape of `kind`: a JSON object with the type's required fields,
/// no others, each of its shape, and at most [`limits::PAYLOAD_BYTES`] encoded.
pub fn check_payload(kind: MessageType, payload: &serde_json::Value) -> Result<(), String> {
    let encoded = payload.to_string().len();
    if encoded > limits::PAYLOAD_BYTES {
        return Err(format!(
            "the payload is {encoded} bytes; a message's payload is at most {} bytes",
            limits::PAYLOAD_BYTES
        ));
    }
    let Some(object) = payload.as_object() else {
        return Err(format!("a {kind} payload is a JSON object"));
    };
    let fields = kind.fields();
    let expected = || {
        fields
            .iter()
            .map(|(name, field, required)| {
                let shape = match field {
                    Field::Text => "text",
                    Field::List => "list of text",
                };
                let optional = if *required { "" } else { ", optional" };
                format!("`{name}` ({shape}{optional})")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for name in object.keys() {
        if !fields.iter().any(|(f, _, _)| f == name) {
            return Err(format!(
                "a {kind} payload has no field `{}`; its fields are {}",
                clip(name, 40),
                expected()
            ));
        }
    }
    for (name, field, required) in fields {
        let Some(value) = object.get(*name) else {
            if *required {
                return Err(format!(
                    "a {kind} payload needs `{name}`; its fields are {}",
                    expected()
                ));
            }
            continue;
        };
        let text = |v: &serde_json::Value| v.as_str().is_some_and(|s| !s.trim().is_empty());
        let ok = match field {
            Field::Text => text(value),
            Field::List => value.as_array().is_some_and(|a| a.iter().all(text)),
        };
        if !ok {
            let shape = match field {
                Field::Text => "a non-empty string",
                Field::List => "a list of non-empty strings",
            };
            return Err(format!("`{name}` of a {kind} payload must be {shape}"));
        }
    }
    if kind == MessageType::Escalation
        && let Some(severity) = object.get("severity").and_then(|v| v.as_str())
        && !SEVERITIES.contains(&severity)
    {
        return Err(format!(
            "`{}` is not a severity: {}",
            clip(severity, 40),
            SEVERITIES.join(", ")
        ));
    }
    Ok(())
}

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Receiver {
    /// Every execution of the agent named so.
    Agent(String),
    /// The agents of a role, and the agency that holds them.
    Role(String),
    Agency(String),
    /// Whoever follows the topic; an announcement.
    Topic(String),
    /// Everyone; an announcement.
    Broadcast,
    /// One execution and no other: never a later execution of the same task.
    Execution(ExecutionId),
    /// Whichever execution of the task reads it next (an answer to its agent's question).
    Task(TaskId),
    /// The people who run the project (`agentgrid msg list`).
    People,
}

impl Receiver {
    /// True for the announcements: shown to every reader until their time to live ends, or
    /// until that reader (an agent) acknowledges it for itself.
    pub fn is_announcement(&self) -> bool {
        matches!(self, Receiver::Topic(_) | Receiver::Broadcast)
    }

    pub fn execution(&self) -> Option<ExecutionId> {
        match self {
            Receiver::Execution(id) => Some(*id),
            _ => None,
        }
    }
}

impl fmt::Display for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Receiver::Agent(n) => write!(f, "agent:{n}"),
            Receiver::Role(n) => write!(f, "role:{n}"),
            Receiver::Agency(n) => write!(f, "agency:{n}"),
            Receiver::Topic(n) => write!(f, "topic:{n}"),
            Receiver::Broadcast => f.write_str("broadcast"),
            Receiver::Execution(id) => write!(f, "execution:{id}"),
            Receiver::Task(id) => write!(f, "task:{id}"),
            Receiver::People => f.write_str("people"),
        }
    }
}

impl FromStr for Receiver {
    type Err = String;

    /// `agent:NAME`, `role:NAME`, `agency:NAME`, `topic:NAME`, `broadcast`, `execution:ID` or
    /// `people`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let usage = "a receiver is agent:NAME, role:NAME, agency:NAME, topic:NAME, broadcast, \
                     execution:ID, task:ID or people";
        match s {
            "broadcast" => return Ok(Receiver::Broadcast),
            "people" => return Ok(Receiver::People),
            _ => {}
        }
        let Some((kind, rest)) = s.split_once(':') else {
            return Err(format!("`{}` is not a receiver: {usage}", clip(s, 60)));
        };
        if kind == "execution" {
            let id = rest.parse::<ExecutionId>()?;
            return Ok(Receiver::Execution(id));
        }
        if kind == "task" {
            let id = rest.parse::<TaskId>()?;
            return Ok(Receiver::Task(id));
        }
        let named: fn(String) -> Receiver = match kind {
            "agent" => Receiver::Agent,
            "role" => Receiver::Role,
            "agency" => Receiver::Agency,
            "topic" => Receiver::Topic,
            _ => {
                return Err(format!("`{}` is not a receiver: {usage}", clip(s, 60)));
            }
        };
        let ok = !rest.is_empty()
            && rest.chars().count() <= limits::NAME_CHARS
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if !ok {
            return Err(format!(
                "`{}` is not a {kind} name: 1 to {} letters, digits, `-`, `_`, `.` or `/`",
                clip(rest, 60),
                limits::NAME_CHARS
            ));
        }
        Ok(named(rest.to_string()))
    }
}

impl Serialize for Receiver {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Receiver {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Receiver {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Receiver".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// How soon a message should be read: the inbox shows the most urgent first.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// The stored rank, growing with urgency.
    pub fn rank(self) -> i64 {
        self as i64
    }

    pub fn from_rank(rank: i64) -> Option<Priority> {
        [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ]
        .into_iter()
        .find(|p| p.rank() == rank)
    }
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            "urgent" => Ok(Priority::Urgent),
            other => Err(format!(
                "`{}` is not a priority: low, normal, high or urgent",
                clip(other, 40)
            )),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Sent, not shown to anyone yet.
    Pending,
    /// Shown to an execution at least once, not acknowledged yet.
    Delivered,
    /// Acknowledged, once; shown no more.
    Acked,
    /// Never to be delivered: expired, its execution ended, or delivered too often unread.
    Dead,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Pending => "pending",
            MessageState::Delivered => "delivered",
            MessageState::Acked => "acked",
            MessageState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<MessageState> {
        match s {
            "pending" => Some(MessageState::Pending),
            "delivered" => Some(MessageState::Delivered),
            "acked" => Some(MessageState::Acked),
            "dead" => Some(MessageState::Dead),
            _ => None,
        }
    }

    /// Pending or delivered: it may still be delivered and acknowledged.
    pub fn is_open(self) -> bool {
        matches!(self, MessageState::Pending | MessageState::Delivered)
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to send: the envelope without what the store and the rules fill in.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub receiver: Receiver,
    pub kind: MessageType,
    pub payload: serde_json::Value,
    pub correlation: Option<String>,
    pub priority: Priority,
    /// How long it may wait to be acknowledged; `None` for no end (announcements get
    /// [`limits::ANNOUNCEMENT_TTL_MS`]).
    pub ttl: Option<Duration>,
    /// The execution that sends it, when an agent does; its open and sent messages are counted.
    pub sender_execution: Option<ExecutionId>,
    /// The task it is about: the sending agent's, or the one a person names.
    pub task: Option<TaskId>,
}

impl NewMessage {
    /// A message of `kind` to `receiver` with `payload`, from no execution, with no end.
    pub fn new(receiver: Receiver, kind: MessageType, payload: serde_json::Value) -> NewMessage {
        NewMessage {
            receiver,
            kind,
            payload,
            correlation: None,
            priority: Priority::Normal,
            ttl: None,
            sender_execution: None,
            task: None,
        }
    }

    /// Identical alerts share this, so a second one is coalesced into the first while it is open.
    pub fn fingerprint(&self) -> Option<String> {
        (self.kind == MessageType::Alert).then(|| format!("{}|{}", self.receiver, self.payload))
    }
}

/// A message as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Message {
    pub id: MessageId,
    /// Who sent it, as the log names actors (`cli`, `agent:NAME#ID`, `engine`).
    pub sender: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_execution: Option<ExecutionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    pub receiver: Receiver,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    pub priority: Priority,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    pub state: MessageState,
    /// How many times it was shown to an execution.
    #[serde(default)]
    pub deliveries: u32,
    /// The last execution it was shown to, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<ExecutionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
    /// Why it is a dead letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
    /// How many identical alerts were folded into this one.
    #[serde(default)]
    pub coalesced: u32,
    /// What identical alerts share; none for other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub updated_at: Timestamp,
}

impl Message {
    /// True once its time to live has run out at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// One line for lists and prompts: type, sender and the payload's headline.
    pub fn headline(&self) -> String {
        clip(&self.kind.headline(&self.payload), 120)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn receivers_round_trip_and_bad_ones_say_what_a_receiver_is() {
        for s in [
            "agent:coder",
            "role:qa",
            "agency:code",
            "topic:builds/main",
            "broadcast",
            "execution:7",
            "task:3",
            "people",
        ] {
            let r: Receiver = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        for bad in ["", "nobody", "agent:", "agent:a b", "execution:0", "team:x"] {
            let err = bad.parse::<Receiver>().unwrap_err();
            assert!(
                err.contains("receiver") || err.contains("name") || err.contains("id"),
                "{bad}: {err}"
            );
        }
        let long = format!("agent:{}", "a".repeat(limits::NAME_CHARS + 1));
        assert!(long.parse::<Receiver>().is_err());
    }

    #[test]
    fn payloads_are_checked_per_type() {
        let ok = [
            (MessageType::Task, json!({"title": "Fix it"})),
            (MessageType::Status, json!({"text": "halfway"})),
            (
                MessageType::Handoff,
                json!({"summary": "done", "artifacts": ["a.txt"]}),
            ),
            (MessageType::Heartbeat, json!({})),
            (MessageType::Alert, json!({"text": "disk", "level": "high"})),
            (
                MessageType::Escalation,
                json!({"text": "which DB?", "severity": "high"}),
            ),
        ];
        for (kind, payload) in ok {
            assert_eq!(check_payload(kind, &payload), Ok(()), "{kind} {payload}");
        }
        let bad = [
            (
                MessageType::Escalation,
                json!({"text": "x", "severity": "dire"}),
                "not a severity",
            ),
            (MessageType::Task, json!({}), "needs `title`"),
            (MessageType::Task, json!("text"), "is a JSON object"),
            (MessageType::Status, json!({"text": ""}), "non-empty string"),
            (
                MessageType::Status,
                json!({"text": "x", "rm": 1}),
                "no field `rm`",
            ),
            (
                MessageType::Handoff,
                json!({"summary": "s", "artifacts": [1]}),
                "list of non-empty strings",
            ),
            (
                MessageType::Alert,
                json!({"text": "x".repeat(limits::PAYLOAD_BYTES)}),
                "at most",
            ),
        ];
        for (kind, payload, says) in bad {
            let err = check_payload(kind, &payload).unwrap_err();
            assert!(err.contains(says), "{kind}: {err}");
        }
    }

    #[test]
    fn types_parse_in_any_case_and_unknown_ones_list_the_types() {
        assert_eq!("alert".parse::<MessageType>(), Ok(MessageType::Alert));
        assert_eq!("HANDOFF".parse::<MessageType>(), Ok(MessageType::Handoff));
        let err = "GOSSIP".parse::<MessageType>().unwrap_err();
        assert!(err.contains("TASK, STATUS"), "{err}");
    }

    #[test]
    fn only_alerts_have_a_fingerprint() {
        let alert = NewMessage::new(
            Receiver::Broadcast,
            MessageType::Alert,
            json!({"text": "disk"}),
        );
        assert_eq!(
            alert.fingerprint().as_deref(),
            Some(r#"broadcast|{"text":"disk"}"#)
        );
        let status = NewMessage::new(
            Receiver::Broadcast,
            MessageType::Status,
            json!({"text": "disk"}),
        );
        assert_eq!(status.fingerprint(), None);
    }
}
