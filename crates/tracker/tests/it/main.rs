//! Tests of the tracker's rules: one per rule family, and properties over random commands.

mod approvals;
mod blackboard;
mod fold;
mod leases;
mod messages;
mod rules;
mod workflow_driver;
mod workflows;

use domain::{Execution, ExecutionId, ExecutionKind, NewTask, Task, TaskId, Timestamp};
use tracker::{Change, Command, Event, Refusal, State, decide, evolve};

pub const T0: Timestamp = Timestamp(1_700_000_000_000);

/// A complete tracker in memory, with every event it ever emitted.
pub struct World {
    pub state: State,
    pub log: Vec<Event>,
    pub now: Timestamp,
    pub actor: &'static str,
}

impl World {
    pub fn new() -> World {
        World {
            state: State::complete(),
            log: Vec::new(),
            now: T0,
            actor: "cli",
        }
    }

    /// Decides `change` and, when it is allowed, folds its events in.
    pub fn apply(&mut self, change: Change) -> Result<Vec<Event>, Refusal> {
        let command = Command {
            actor: self.actor,
            now: self.now,
            change: &change,
        };
        let events = decide(&self.state, &command)?;
        for event in &events {
            evolve(&mut self.state, event);
        }
        self.log.extend(events.iter().cloned());
        Ok(events)
    }

    /// Applies a change the test expects to be allowed.
    pub fn ok(&mut self, change: Change) -> Vec<Event> {
        let name = change.name();
        self.apply(change)
            .unwrap_or_else(|r| panic!("{name} was refused: {r}"))
    }

    /// The message of a change the test expects to be refused; the state must not move.
    pub fn refused(&mut self, change: Change) -> String {
        let before = self.state.clone();
        let name = change.name();
        let refusal = match self.apply(change) {
            Ok(events) => panic!("{name} was allowed, making {events:?}"),
            Err(r) => r,
        };
        assert_eq!(self.state, before, "a refused {name} changed the state");
        refusal.to_string()
    }

    pub fn create(&mut self, new: NewTask) -> TaskId {
        let id = self.state.next_task_id();
        self.ok(Change::CreateTask(new));
        id
    }

    pub fn titled(&mut self, title: &str) -> TaskId {
        self.create(NewTask::titled(title))
    }

    pub fn sub_task(&mut self, title: &str, parent: TaskId) -> TaskId {
        self.create(NewTask {
            parent: Some(parent),
            ..NewTask::titled(title)
        })
    }

    /// Claims `task` for a work execution.
    pub fn claim(&mut self, task: TaskId) -> ExecutionId {
        let id = self.state.next_execution_id();
        self.ok(Change::CreateExecution {
            task_id: task,
            kind: ExecutionKind::Work,
            agent: "coder".into(),
            attempt: 1,
            lease: None,
        });
        id
    }

    pub fn task(&self, id: TaskId) -> &Task {
        self.state.task(id).expect("the task exists")
    }

    pub fn execution(&self, id: ExecutionId) -> &Execution {
        self.state.execution(id).expect("the execution exists")
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}
