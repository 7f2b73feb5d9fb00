//! The simulator's store: the tracker's rules over an in-memory state, with the log kept for
//! the invariants. A batch is all or nothing, like a transaction.

use std::collections::BTreeSet;

use domain::{EntityKind, ExecutionId, TaskId, Timestamp};
use engine_core::Written;
use tracker::{Change, Command, Entry, Event, State, decide, evolve};

#[derive(Debug, Clone)]
pub struct MemStore {
    pub state: State,
    pub log: Vec<Entry>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore {
            state: State::complete(),
            log: Vec::new(),
        }
    }

    /// Applies `changes` in one transaction: every change or none.
    pub fn apply(
        &mut self,
        actor: &str,
        now: Timestamp,
        changes: &[Change],
    ) -> Result<Written, String> {
        let mut state = self.state.clone();
        let mut events = Vec::new();
        for change in changes {
            let command = Command { actor, now, change };
            let made = decide(&state, &command).map_err(|r| r.to_string())?;
            for event in &made {
                evolve(&mut state, event);
            }
            events.extend(made);
        }
        self.state = state;
        let mut tasks = Vec::new();
        let mut executions = Vec::new();
        for event in events {
            if let Event::Logged(entry) = event {
                match entry.entity {
                    EntityKind::Task if !tasks.contains(&entry.id) => tasks.push(entry.id),
                    EntityKind::Execution if !executions.contains(&entry.id) => {
                        executions.push(entry.id)
                    }
                    _ => {}
                }
                self.log.push(entry);
            }
        }
        Ok(self.rows(
            tasks.into_iter().map(TaskId),
            executions.into_iter().map(ExecutionId),
        ))
    }

    /// The rows of these tasks and executions as they stand.
    pub fn rows(
        &self,
        tasks: impl IntoIterator<Item = TaskId>,
        executions: impl IntoIterator<Item = ExecutionId>,
    ) -> Written {
        Written {
            tasks: tasks
                .into_iter()
                .filter_map(|id| self.state.task(id).cloned())
                .collect(),
            executions: executions
                .into_iter()
                .filter_map(|id| self.state.execution(id).cloned())
                .collect(),
        }
    }

    /// Parents with a merge due that was never tried or failed (`failed` too).
    pub fn merges_due(&self, parent: TaskId, failed: bool) -> Vec<TaskId> {
        self.state
            .unfinished_merges_into(parent)
            .into_iter()
            .filter(|(_, step)| failed || matches!(step.status, tracker::MergeStatus::Pending))
            .map(|(child, _)| child)
            .collect()
    }

    /// Every parent with a merge never tried.
    pub fn parents_with_merges_due(&self) -> BTreeSet<TaskId> {
        self.state
            .tasks()
            .filter(|t| !self.merges_due(t.id, false).is_empty())
            .map(|t| t.id)
            .collect()
    }
}
