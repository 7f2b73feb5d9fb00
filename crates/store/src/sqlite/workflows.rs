//! Rows of workflow runs (migrations 10 and 14): the projection of each run's events.

use domain::{TaskId, Timestamp, WorkflowId};
use rusqlite::{Connection, OptionalExtension, params};
use tracker::WorkflowRun;

use super::rows::Fail;
use crate::WorkflowFilter;

const COLUMNS: &str =
    "id, task_id, name, steps, definition, instance, started_at, updated_at, begun, parent";

pub(crate) fn run(conn: &Connection, id: WorkflowId) -> Result<Option<WorkflowRun>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM workflow_runs WHERE id = ?1"
    ))?;
    Ok(stmt.query_row([id.0], from_row).optional()?)
}

pub(crate) fn next_id(conn: &Connection) -> Result<i64, Fail> {
    let mut stmt = conn.prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM workflow_runs")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

/// The runs `filter` selects, oldest first.
pub(crate) fn runs(conn: &Connection, filter: &WorkflowFilter) -> Result<Vec<WorkflowRun>, Fail> {
    // Each arm names its condition plainly so that SQLite picks the index for it.
    let rows = match (filter.task, filter.running) {
        (Some(task), true) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM workflow_runs WHERE task_id = ?1 AND status = 'running' \
                 ORDER BY id"
            ))?
            .query_map([task.0], from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        (Some(task), false) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM workflow_runs WHERE task_id = ?1 ORDER BY id"
            ))?
            .query_map([task.0], from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        (None, true) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM workflow_runs WHERE status = 'running' ORDER BY id"
            ))?
            .query_map([], from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        (None, false) => conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM workflow_runs ORDER BY id"))?
            .query_map([], from_row)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

/// Writes a run as the batch left it: a new row, or the step it took.
pub(crate) fn save(conn: &Connection, run: &WorkflowRun) -> Result<(), Fail> {
    let json = |e: serde_json::Error| Fail::Corrupt(format!("a workflow run does not encode: {e}"));
    let definition = serde_json::to_string(&run.definition).map_err(json)?;
    let instance = serde_json::to_string(&run.instance).map_err(json)?;
    let begun = serde_json::to_string(&run.begun).map_err(json)?;
    let parent = run
        .parent
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(json)?;
    // `not started` is never stored: a start enters the first state in the same batch.
    let status = match run.instance.status {
        workflow::Status::Finished { outcome } => outcome.as_str(),
        _ => "running",
    };
    let mut stmt = conn.prepare_cached(
        "INSERT INTO workflow_runs (id, task_id, name, status, position, steps, definition,
             instance, started_at, updated_at, begun, parent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (id) DO UPDATE SET status = ?4, position = ?5, steps = ?6, instance = ?8,
             updated_at = ?10, begun = ?11",
    )?;
    stmt.execute(params![
        run.id.0,
        run.task_id.0,
        run.name,
        status,
        run.instance.position,
        run.steps,
        definition,
        instance,
        run.started_at.0,
        run.updated_at.0,
        begun,
        parent,
    ])?;
    Ok(())
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WorkflowRun> {
    let json = |column: usize, text: String| -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("a workflow run's stored JSON does not decode: {text}").into(),
        )
    };
    let definition: String = row.get(4)?;
    let instance: String = row.get(5)?;
    let begun: String = row.get(8)?;
    let parent: Option<String> = row.get(9)?;
    Ok(WorkflowRun {
        id: WorkflowId(row.get(0)?),
        task_id: TaskId(row.get(1)?),
        name: row.get(2)?,
        steps: row.get(3)?,
        definition: serde_json::from_str(&definition).map_err(|e| json(4, e.to_string()))?,
        instance: serde_json::from_str(&instance).map_err(|e| json(5, e.to_string()))?,
        started_at: Timestamp(row.get(6)?),
        updated_at: Timestamp(row.get(7)?),
        begun: serde_json::from_str(&begun).map_err(|e| json(8, e.to_string()))?,
        parent: parent
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| json(9, e.to_string()))?,
    })
}
