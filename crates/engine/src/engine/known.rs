//! What the engine knows the store does not hold, so that the loop does not read it again at
//! every decision and every dispatch: no open message, no workflow run started since the
//! driver last looked, no change to the area leases since they were last read.
//!
//! Every write to the store is an event the engine sees: its own in the batches it applies
//! (`absorb`), every other writer's when it follows the log (`follow`). An event of a kind that
//! can end an absence ends it, and the next look reads the store again. Each absence starts
//! unknown, so the first look after a start always reads.
//!
//! What another process writes is seen when the log is followed, a few milliseconds after its
//! commit, as it was for every other change before: a message sent by `agentgrid msg send` in
//! that window reaches the agent through `ctl msg inbox` rather than its prompt.

use std::collections::HashSet;

use domain::{EntityKind, Event, EventKind, TaskId};

#[derive(Debug, Default)]
pub(super) struct Known {
    /// No message was open (pending or delivered) at the last look, and none was sent since.
    no_open_message: bool,
    /// No workflow run was started since the driver last read the running ones.
    no_new_workflow: bool,
    /// The snapshot's area leases are the store's: none was taken, released or expired since.
    area_leases_current: bool,
    /// The tasks anything was said to (a comment, feedback, an answer, a decided approval),
    /// when the store could tell at the start; a prompt reads what was said only for those.
    remarked: Option<HashSet<TaskId>>,
}

impl Known {
    /// Takes in one event of the log, the engine's own or another writer's.
    pub fn observe(&mut self, event: &Event) {
        if event.entity == EntityKind::Message {
            self.no_open_message = false;
        }
        if event.entity == EntityKind::Task
            && super::said::is_remark(&event.kind)
            && let Some(remarked) = &mut self.remarked
        {
            remarked.insert(TaskId(event.entity_id));
        }
        match event.kind {
            EventKind::TaskWorkflowStarted { .. } => self.no_new_workflow = false,
            EventKind::ExecutionAreaLeaseTaken { .. }
            | EventKind::ExecutionAreaLeaseReleased { .. }
            | EventKind::ExecutionAreaLeaseExpired { .. } => self.area_leases_current = false,
            _ => {}
        }
    }

    pub fn no_open_message(&self) -> bool {
        self.no_open_message
    }

    /// The store was just asked whether a message is open; `open` is its answer.
    pub fn messages_looked(&mut self, open: bool) {
        self.no_open_message = !open;
    }

    pub fn no_new_workflow(&self) -> bool {
        self.no_new_workflow
    }

    /// The driver is about to read the running runs: a start seen from now on is new.
    pub fn workflows_looked(&mut self) {
        self.no_new_workflow = true;
    }

    pub fn area_leases_current(&self) -> bool {
        self.area_leases_current
    }

    /// The area leases are about to be read: a change seen from now on is newer.
    pub fn area_leases_looked(&mut self) {
        self.area_leases_current = true;
    }

    /// A read that was to refresh what is known failed: nothing is taken for known. (What was
    /// said is known from the start on and kept up by every event, so it stays.)
    pub fn forget(&mut self) {
        let remarked = self.remarked.take();
        *self = Known {
            remarked,
            ..Known::default()
        };
    }

    /// The store's answer at the start: the tasks with a remark, or `None` when it cannot tell.
    pub fn remarks_read(&mut self, tasks: Option<Vec<TaskId>>) {
        self.remarked = tasks.map(|t| t.into_iter().collect());
    }

    /// Whether anything may have been said to `task`: unless the store told at the start and
    /// no remark came since, its events are read for the prompt.
    pub fn may_have_remarks(&self, task: TaskId) -> bool {
        self.remarked.as_ref().is_none_or(|r| r.contains(&task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{AreaLeaseId, AreaPath, Timestamp, WorkflowId};

    fn event(entity: EntityKind, kind: EventKind) -> Event {
        Event {
            seq: 1,
            at: Timestamp(0),
            entity,
            entity_id: 1,
            entity_seq: 1,
            actor: "test".into(),
            kind,
        }
    }

    fn comment() -> Event {
        event(
            EntityKind::Task,
            EventKind::TaskCommented {
                author: "person".into(),
                text: "hello".into(),
            },
        )
    }

    #[test]
    fn nothing_is_known_before_a_look() {
        let known = Known::default();
        assert!(!known.no_open_message());
        assert!(!known.no_new_workflow());
        assert!(!known.area_leases_current());
    }

    #[test]
    fn an_event_of_its_kind_ends_each_absence_and_others_do_not() {
        let mut known = Known::default();
        known.messages_looked(false);
        known.workflows_looked();
        known.area_leases_looked();
        let unrelated = comment();
        known.observe(&unrelated);
        assert!(known.no_open_message() && known.no_new_workflow());
        assert!(known.area_leases_current());

        let mut sent = unrelated.clone();
        sent.entity = EntityKind::Message;
        known.observe(&sent);
        assert!(!known.no_open_message(), "any message event may open one");
        assert!(known.no_new_workflow() && known.area_leases_current());

        known.observe(&event(
            EntityKind::Task,
            EventKind::TaskWorkflowStarted {
                workflow: WorkflowId(1),
                name: "review".into(),
                definition: serde_json::Value::Null,
                parent: None,
            },
        ));
        assert!(!known.no_new_workflow());

        known.observe(&event(
            EntityKind::Execution,
            EventKind::ExecutionAreaLeaseExpired {
                lease: AreaLeaseId(1),
                path: AreaPath::parse("src").expect("a path"),
            },
        ));
        assert!(!known.area_leases_current());
    }

    #[test]
    fn what_was_said_is_read_unless_the_store_told_and_nothing_came_since() {
        let mut known = Known::default();
        assert!(known.may_have_remarks(TaskId(1)), "unknown: read");
        known.remarks_read(Some(vec![TaskId(2)]));
        assert!(!known.may_have_remarks(TaskId(1)));
        assert!(known.may_have_remarks(TaskId(2)));
        known.observe(&comment());
        assert!(known.may_have_remarks(TaskId(1)), "task 1 was commented");
        known.forget();
        assert!(
            known.may_have_remarks(TaskId(1)),
            "what was said survives a failed read"
        );
        assert!(!known.may_have_remarks(TaskId(3)));
        known.remarks_read(None);
        assert!(
            known.may_have_remarks(TaskId(3)),
            "a store that cannot tell: read"
        );
    }

    #[test]
    fn a_look_that_finds_an_open_message_knows_nothing_absent() {
        let mut known = Known::default();
        known.messages_looked(true);
        assert!(!known.no_open_message());
        known.messages_looked(false);
        assert!(known.no_open_message());
        known.forget();
        assert!(!known.no_open_message());
    }
}
