//! The validators' evidence, read from the executions' events.

use domain::event::ValidatorResult;
use domain::{EntityKind, EventKind, Execution, ExecutionId, TaskId};
use serde::Serialize;
use store::Store;

/// One validation of one iteration, as recorded in the execution's events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    pub execution: ExecutionId,
    pub task: TaskId,
    pub iteration: u32,
    pub score: f64,
    pub passed: bool,
    pub results: Vec<ValidatorResult>,
}

/// Every validation an execution recorded, in order.
pub async fn of_execution(
    store: &dyn Store,
    e: &Execution,
) -> Result<Vec<Validation>, store::Error> {
    let events = store.entity_events(EntityKind::Execution, e.id.0).await?;
    Ok(events
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::ExecutionValidated {
                iteration,
                score,
                passed,
                results,
            } => Some(Validation {
                execution: e.id,
                task: e.task_id,
                iteration,
                score,
                passed,
                results,
            }),
            _ => None,
        })
        .collect())
}

/// The most recent failed validator among `executions` that still matters, newest first,
/// with its validation. A failure stops mattering once its task is done or cancelled, or once a
/// later validation of the same task passed: a project whose tasks all ended well shows none.
pub async fn last_failure(
    store: &dyn Store,
    executions: &[Execution],
) -> Result<Option<(Validation, ValidatorResult)>, store::Error> {
    let mut newest: Vec<&Execution> = executions.iter().collect();
    newest.sort_by_key(|e| std::cmp::Reverse(e.id));
    // Tasks whose older failures are answered: ended well, or passed since.
    let mut settled: Vec<TaskId> = Vec::new();
    for e in newest {
        if settled.contains(&e.task_id) {
            continue;
        }
        let ended_well = store.task(e.task_id).await?.is_none_or(|t| {
            matches!(
                t.state,
                domain::TaskState::Done | domain::TaskState::Cancelled
            )
        });
        if ended_well {
            settled.push(e.task_id);
            continue;
        }
        let validations = of_execution(store, e).await?;
        for v in validations.iter().rev() {
            if v.passed {
                settled.push(e.task_id);
                break;
            }
            if let Some(r) = v.results.iter().find(|r| !r.passed) {
                return Ok(Some((v.clone(), r.clone())));
            }
        }
    }
    Ok(None)
}
