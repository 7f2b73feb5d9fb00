//! `ctl blackboard get|set|list`: an agent reads and writes the blackboard of its task's
//! workflow run through the application layer, which leaves who may write to the tracker.

use app::{Actor, ReadBlackboard, WriteBlackboard};
use control::Op;
use domain::{Task, TaskId};
use manifest::WorkflowView;
use store::WorkflowFilter;
use workflow::{Command, Target};

use super::Engine;

impl Engine {
    /// Answers one blackboard call of an execution on `task`.
    pub(super) async fn blackboard_call(
        &mut self,
        task: TaskId,
        actor: &Actor,
        op: Op,
    ) -> Result<serde_json::Value, String> {
        match op {
            Op::BlackboardSet { key, value } => {
                let written = self
                    .command(
                        actor,
                        WriteBlackboard {
                            key: key.clone(),
                            text: value,
                        },
                    )
                    .await?;
                Ok(serde_json::json!({
                    "run": written.run,
                    "key": key,
                    "value": written.values.get(&key),
                }))
            }
            Op::BlackboardGet { key } => {
                let board = self.read_blackboard(task, actor).await?;
                let Some(ty) = board.types.get(&key) else {
                    let known: Vec<&str> = board.types.keys().map(String::as_str).collect();
                    return Err(format!(
                        "the workflow `{}` has no blackboard key `{key}` (keys: {})",
                        board.workflow,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ));
                };
                Ok(serde_json::json!({
                    "run": board.run,
                    "key": key,
                    "type": ty,
                    "value": board.values.get(&key),
                }))
            }
            Op::BlackboardList => {
                let board = self.read_blackboard(task, actor).await?;
                serde_json::to_value(board).map_err(|e| e.to_string())
            }
            _ => Err("not a blackboard call".to_string()),
        }
    }

    async fn read_blackboard(
        &self,
        task: TaskId,
        actor: &Actor,
    ) -> Result<app::Blackboard, String> {
        let app = app::App::new(self.store.clone(), self.clock.clone());
        app.ask(actor, ReadBlackboard { task })
            .await
            .map_err(super::refusals::of_command)?
            .ok_or_else(|| {
                format!("task #{task} runs no workflow, so it has no blackboard to read")
            })
    }
}

impl Engine {
    /// The workflow run whose current visit runs `agent` on `task` (its own task, or the
    /// sub-task the state made), for the prompt: so the next state's agent reads what the
    /// states before wrote. `None` for an execution no workflow started, or when the store
    /// cannot say (the prompt then goes without it).
    pub(super) async fn workflow_view(&self, task: &Task, agent: &str) -> Option<WorkflowView> {
        // The driver looked at the top of this turn: no run was running, none began since.
        if self.workflows.none_running() && self.known.no_new_workflow() {
            return None;
        }
        let mut runs = Vec::new();
        for on in std::iter::once(task.id).chain(task.parent) {
            let filter = WorkflowFilter {
                task: Some(on),
                running: true,
            };
            match self.store.workflow_runs(&filter).await {
                Ok(found) => runs.extend(found),
                Err(e) => tracing::warn!(task = %task.id, "the workflow of the prompt: {e}"),
            }
        }
        runs.iter().find_map(|run| {
            let state = run
                .instance
                .awaiting(&run.definition)
                .into_iter()
                .find_map(|command| {
                    let Command::RunAgent {
                        state,
                        agent: wanted,
                        target,
                        ..
                    } = &command
                    else {
                        return None;
                    };
                    let on = match target {
                        Target::Task => Some(run.task_id),
                        Target::Subtask { .. } => run.begun_for(&command)?.subtask,
                    };
                    (on == Some(task.id) && wanted == agent).then(|| state.clone())
                })?;
            let board = app::Blackboard::of(run);
            Some(WorkflowView {
                run: run.id.0 as u64,
                name: run.name.clone(),
                state,
                visit: run.instance.visit,
                blackboard: board.text(),
            })
        })
    }
}
