//! A workflow run's blackboard as an agent sees it (`agentgrid ctl blackboard get|set|list`):
//! the agent of the current visit writes typed values; any execution of the run's task (or of
//! a sub-task it made) reads them, so the next state's agent reads what QA wrote.

use std::collections::BTreeMap;

use domain::{TaskId, WorkflowId};
use serde::Serialize;
use store::{Change, WorkflowFilter};
use workflow::{Value, ValueType};

use crate::{Actor, App, Command, Error, Query};

/// The agent writes `text`, read as the declared type of `key`, to the blackboard of the run
/// whose current visit started it. The tracker decides who may (see
/// `store::Change::WriteBlackboard`); only an execution asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBlackboard {
    pub key: String,
    pub text: String,
}

/// A run's blackboard: its declared keys with their types, and the values written so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blackboard {
    pub run: WorkflowId,
    pub workflow: String,
    /// The state the run is in, and its visit.
    pub position: Option<String>,
    pub visit: u32,
    pub types: BTreeMap<String, ValueType>,
    pub values: BTreeMap<String, Value>,
}

impl Blackboard {
    pub fn of(run: &store::WorkflowRun) -> Blackboard {
        Blackboard {
            run: run.id,
            workflow: run.name.clone(),
            position: run.instance.position.clone(),
            visit: run.instance.visit,
            types: run.definition.blackboard.clone(),
            values: run.instance.blackboard.clone(),
        }
    }

    /// The values for a prompt, one `key = value` a line (strings quoted), keys in order;
    /// `None` when nothing was written.
    pub fn text(&self) -> Option<String> {
        (!self.values.is_empty()).then(|| {
            self.values
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }
}

#[async_trait::async_trait]
impl Command for WriteBlackboard {
    type Output = Blackboard;

    async fn run(self, app: &App, actor: &Actor) -> Result<Blackboard, Error> {
        let Actor::Execution { id, .. } = actor else {
            return Err(Error::invalid(
                "only the agent of a workflow's visit writes its blackboard, from inside its \
                 execution (`agentgrid ctl blackboard set`)",
            ));
        };
        let change = Change::WriteBlackboard {
            execution: *id,
            key: self.key,
            text: self.text,
        };
        let applied = app.apply(actor, vec![change]).await?;
        let run = applied.events.iter().find_map(|e| match &e.kind {
            domain::EventKind::TaskWorkflowStepped { workflow, .. } => Some(*workflow),
            _ => None,
        });
        let run = match run {
            Some(run) => app.store.workflow_run(run).await?,
            None => None,
        };
        run.as_ref()
            .map(Blackboard::of)
            .ok_or_else(|| Error::invalid("the blackboard was not written"))
    }
}

/// The blackboard of the workflow run of `task`: its running run, else its latest, else the
/// one of its parent (an agent state that runs on a sub-task). `None` when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadBlackboard {
    pub task: TaskId,
}

#[async_trait::async_trait]
impl Query for ReadBlackboard {
    type Output = Option<Blackboard>;

    async fn run(self, app: &App, _actor: &Actor) -> Result<Option<Blackboard>, Error> {
        if let Some(run) = run_of(app, self.task).await? {
            return Ok(Some(Blackboard::of(&run)));
        }
        let parent = app.store.task(self.task).await?.and_then(|t| t.parent);
        match parent {
            Some(parent) => Ok(run_of(app, parent).await?.as_ref().map(Blackboard::of)),
            None => Ok(None),
        }
    }
}

/// The running top-level run of `task`, else its latest run.
async fn run_of(app: &App, task: TaskId) -> Result<Option<store::WorkflowRun>, Error> {
    let filter = WorkflowFilter {
        task: Some(task),
        running: false,
    };
    let runs = app.store.workflow_runs(&filter).await?;
    let running = runs
        .iter()
        .filter(|r| !r.instance.is_finished() && r.parent.is_none())
        .max_by_key(|r| r.id);
    Ok(running
        .or_else(|| runs.iter().max_by_key(|r| r.id))
        .cloned())
}
