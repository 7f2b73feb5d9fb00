//! The land state of a workflow run, carried out by the face that just approved its gate, the
//! way the engine's workflow driver carries it out: the begin mark first (so the land happens
//! at most once for its visit), the land with the given lander, then its end as the visit's
//! input. The caller holds the engine lock while it runs: an engine that found the begin mark
//! without the work in its own hands would take the land for cut short.

use std::sync::Arc;

use domain::{TaskId, WorkflowId};
use store::{Change, WorkflowFilter};
use workflow::{Command as WorkflowCommand, Input, Outcome};

use crate::approvals::LandAfter;
use crate::{Actor, App, Command, Error, Land, Landed, Lander};

/// Carry out the land the running workflow run of `task` waits for, if it waits for one that
/// nothing began yet. `None` when it does not.
#[derive(Clone)]
pub struct LandWorkflowState {
    pub task: TaskId,
    pub lander: Arc<dyn Lander>,
}

impl std::fmt::Debug for LandWorkflowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LandWorkflowState")
            .field("task", &self.task)
            .finish()
    }
}

/// The land a workflow's run waits for: the run, and the command to begin.
pub async fn awaited_land(
    app: &App,
    task: TaskId,
) -> Result<Option<(WorkflowId, WorkflowCommand)>, Error> {
    let filter = WorkflowFilter {
        task: Some(task),
        running: true,
    };
    for run in app.store.workflow_runs(&filter).await? {
        for command in run.instance.awaiting(&run.definition) {
            if matches!(command, WorkflowCommand::Land { .. }) && run.begun_for(&command).is_none()
            {
                return Ok(Some((run.id, command)));
            }
        }
    }
    Ok(None)
}

#[async_trait::async_trait]
impl Command for LandWorkflowState {
    type Output = Option<LandAfter>;

    async fn run(self, app: &App, actor: &Actor) -> Result<Option<LandAfter>, Error> {
        let Some((id, command)) = awaited_land(app, self.task).await? else {
            return Ok(None);
        };
        let WorkflowCommand::Land { visit, state } = command.clone() else {
            return Ok(None);
        };
        let begin = Change::BeginWorkflowCommand {
            id,
            command,
            child: None,
        };
        app.apply(actor, vec![begin]).await?;
        let land = Land {
            task: self.task,
            strategy: None,
            dry_run: false,
            lander: self.lander,
        };
        let (outcome, result, note) = match land.run(app, actor).await {
            Ok(landed @ (Landed::Moved { .. } | Landed::UpToDate { .. })) => {
                (Outcome::Succeeded, LandAfter::Landed(landed), None)
            }
            Ok(landed @ Landed::Conflict { .. }) => {
                let Landed::Conflict { files, .. } = &landed else {
                    unreachable!("matched above");
                };
                let note = format!(
                    "the land of task #{} conflicts in {}",
                    self.task,
                    files.join(", ")
                );
                (Outcome::Failed, LandAfter::Landed(landed), Some(note))
            }
            Err(e) => {
                let why = match e {
                    Error::Invalid { message, .. } => message,
                    other => other.to_string(),
                };
                let note = format!("the land of task #{} failed: {why}", self.task);
                (Outcome::Failed, LandAfter::Failed(why), Some(note))
            }
        };
        let mut changes = vec![Change::StepWorkflow {
            id,
            input: Input::ended(visit, &state, outcome),
        }];
        if let Some(text) = note {
            changes.push(Change::Comment {
                id: self.task,
                text,
            });
        }
        app.apply(actor, changes).await?;
        Ok(Some(result))
    }
}
