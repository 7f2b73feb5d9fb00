//! Handoffs (`ctl handoff`): an execution ends its agency's (or role's) part of a task and
//! opens another's on the same task, with a summary and artifacts; and the handoffs of a task
//! as `task show` and the receiver's prompt see them.
//!
//! Who may hand off to whom is the agencies' policy, which the engine resolves from the
//! manifests before it asks for this command (it knows the agencies); here the rule about the
//! actor holds (an execution hands off only its own task, while it is active), and the
//! tracker's: the task is running and within its handoff budget. The handoff and the
//! `HANDOFF` message to the task's next execution are one batch.

use domain::{
    EntityKind, Event, EventKind, ExecutionId, HandoffTarget, MessageType, NewMessage, Receiver,
    TaskId, Timestamp,
};
use serde::Serialize;
use store::Change;

use crate::{Actor, App, Command, Error};

/// Hand `task` from the part `from` to the part `to`. Only an execution hands off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOff {
    pub task: TaskId,
    pub from: HandoffTarget,
    pub to: HandoffTarget,
    pub summary: String,
    /// Paths in the task's branch, already checked by the caller to exist in the worktree.
    pub artifacts: Vec<String>,
    /// The most handoffs the task may have (`handoffs_per_task`).
    pub budget: u32,
}

/// What a handoff did: the task's handoffs so far, this one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandedOff {
    pub handoffs: u32,
    pub message: domain::MessageId,
}

#[async_trait::async_trait]
impl Command for HandOff {
    type Output = HandedOff;

    async fn run(self, app: &App, actor: &Actor) -> Result<HandedOff, Error> {
        let Actor::Execution { id, .. } = actor else {
            return Err(Error::invalid(
                "only an agent hands its part of a task off (agentgrid ctl handoff); a person \
                 reassigns a task with `agentgrid task edit --agent`",
            ));
        };
        let execution = app.store.execution(*id).await?;
        match execution {
            Some(e) if e.state.is_active() && e.task_id == self.task => {}
            Some(e) if e.state.is_active() => {
                return Err(Error::invalid(format!(
                    "execution #{id} works on task #{}, not #{}",
                    e.task_id, self.task
                )));
            }
            _ => {
                return Err(Error::invalid(format!(
                    "execution #{id} has ended; its token is no longer valid"
                )));
            }
        }
        let payload = serde_json::json!({
            "summary": self.summary,
            "artifacts": self.artifacts,
            "notes": format!("handed off by {} to {}", self.from, self.to),
        });
        let message = NewMessage {
            sender_execution: Some(*id),
            task: Some(self.task),
            correlation: Some(format!("handoff:{}:{id}", self.task)),
            ..NewMessage::new(Receiver::Task(self.task), MessageType::Handoff, payload)
        };
        let changes = vec![
            Change::HandOff {
                id: self.task,
                execution: *id,
                from: self.from,
                to: self.to,
                summary: self.summary,
                artifacts: self.artifacts,
                budget: self.budget,
            },
            Change::SendMessage(message),
        ];
        let applied = app.apply(actor, changes).await?;
        let handoffs = applied
            .tasks
            .iter()
            .find(|t| t.id == self.task)
            .map_or(0, |t| t.handoffs);
        let message = applied
            .messages
            .first()
            .map(|m| m.id)
            .ok_or_else(|| Error::invalid("the handoff's message was not recorded"))?;
        Ok(HandedOff { handoffs, message })
    }
}

/// One handoff of a task, as `task show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandoffRecord {
    pub at: Timestamp,
    pub from_agency: String,
    pub from_role: String,
    pub to_agency: String,
    pub to_role: Option<String>,
    pub summary: String,
    pub artifacts: Vec<String>,
    pub execution: ExecutionId,
    /// Why it did not take effect (its execution did not exit cleanly); `None` when it did.
    pub voided: Option<String>,
}

impl HandoffRecord {
    /// The receiving part: `qa/tester`, or `qa` for the whole agency.
    pub fn receiver(&self) -> String {
        match &self.to_role {
            Some(role) => format!("{}/{role}", self.to_agency),
            None => self.to_agency.clone(),
        }
    }

    /// Who handed to whom: `code/developer → qa/tester`.
    pub fn route(&self) -> String {
        format!(
            "{}/{} → {}",
            self.from_agency,
            self.from_role,
            self.receiver()
        )
    }
}

/// The handoffs among a task's events, oldest first, each with whether it was voided.
pub fn handoffs_of(events: &[Event]) -> Vec<HandoffRecord> {
    let mut records: Vec<HandoffRecord> = Vec::new();
    for event in events.iter().filter(|e| e.entity == EntityKind::Task) {
        match &event.kind {
            EventKind::TaskHandedOff {
                from_agency,
                from_role,
                to_agency,
                to_role,
                summary,
                artifacts,
                execution,
            } => records.push(HandoffRecord {
                at: event.at,
                from_agency: from_agency.clone(),
                from_role: from_role.clone(),
                to_agency: to_agency.clone(),
                to_role: to_role.clone(),
                summary: summary.clone(),
                artifacts: artifacts.clone(),
                execution: *execution,
                voided: None,
            }),
            EventKind::TaskHandoffVoided {
                execution, reason, ..
            } => {
                if let Some(r) = records.iter_mut().rev().find(|r| r.execution == *execution) {
                    r.voided = Some(reason.clone());
                }
            }
            _ => {}
        }
    }
    records
}

/// An unfinished task whose open part a handoff chose, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenHandoff {
    pub task: TaskId,
    pub state: domain::TaskState,
    /// The part that handed off, `code/developer`, and the one it handed to, `qa/tester`.
    pub from: String,
    pub to: String,
    /// When the newest handoff that took effect was accepted.
    pub at: Timestamp,
    /// The task's handoffs so far, which `handoffs_per_task` bounds.
    pub handoffs: u32,
}

/// The `limit` newest unfinished tasks a handoff sent to another part, and how many there are
/// in all. Reads those tasks and their events: no more than `limit` of each.
pub(crate) async fn open_handoffs(app: &App, limit: u32) -> Result<(Vec<OpenHandoff>, u64), Error> {
    let (tasks, total) = app.store.tasks_handed_off(limit).await?;
    let mut open = Vec::with_capacity(tasks.len());
    for task in tasks {
        let Some(part) = &task.handoff else { continue };
        let events = app.store.entity_events(EntityKind::Task, task.id.0).await?;
        let records = handoffs_of(&events);
        let last = records.iter().rev().find(|r| r.voided.is_none());
        open.push(OpenHandoff {
            task: task.id,
            state: task.state,
            from: last.map_or_else(
                || "?".to_string(),
                |r| format!("{}/{}", r.from_agency, r.from_role),
            ),
            to: part.to_string(),
            at: last.map_or(task.updated_at, |r| r.at),
            handoffs: task.handoffs,
        });
    }
    Ok((open, total))
}

/// What the prompt's `{{ handoff }}` says: the newest handoff of the task that took effect,
/// `agent_of` names the sending execution's agent when it is known.
pub fn handoff_text(
    records: &[HandoffRecord],
    agent_of: impl Fn(ExecutionId) -> Option<String>,
) -> Option<String> {
    let last = records.iter().rev().find(|r| r.voided.is_none())?;
    let by = match agent_of(last.execution) {
        Some(agent) => format!(" (agent {agent}, execution #{})", last.execution),
        None => format!(" (execution #{})", last.execution),
    };
    let mut text = format!(
        "Handed off by {}/{}{by} to {}:\n{}",
        last.from_agency,
        last.from_role,
        last.receiver(),
        last.summary.trim_end()
    );
    if !last.artifacts.is_empty() {
        text.push_str(&format!(
            "\nArtifacts (paths in the branch): {}",
            last.artifacts.join(", ")
        ));
    }
    Some(text)
}
