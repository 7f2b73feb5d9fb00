//! Rows of area leases (migration 17): the projection of their events, and the reads of the
//! held ones.

use domain::{AreaLease, AreaLeaseId, AreaLeaseState, AreaPath, ExecutionId, TaskId, Timestamp};
use rusqlite::{Connection, params};

use super::rows::Fail;
use crate::AreaLeaseFilter;

const COLUMNS: &str = "id, path, execution_id, holder_task, agent, task_id, taken_at, expires_at, \
                       state, ended_at, end_reason";

/// Every held lease, expired ones not yet recorded included, in id order.
pub(crate) fn held(conn: &Connection) -> Result<Vec<AreaLease>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM area_leases WHERE state = 'held' ORDER BY id"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The held leases of one execution, in id order.
pub(crate) fn held_by(conn: &Connection, e: ExecutionId) -> Result<Vec<AreaLease>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM area_leases WHERE execution_id = ?1 AND state = 'held' ORDER BY id"
    ))?;
    let rows = stmt.query_map([e.0], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(crate) fn next_id(conn: &Connection) -> Result<i64, Fail> {
    let mut stmt = conn.prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM area_leases")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

/// Held leases whose time ran out at `now`, oldest first, at most `limit`.
pub(crate) fn due(conn: &Connection, now: Timestamp, limit: u32) -> Result<Vec<AreaLease>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM area_leases WHERE state = 'held' AND expires_at <= ?1
         ORDER BY expires_at, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now.0, limit], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The leases `filter` selects: the held ones in id order, or, with `ended`, the newest first.
pub(crate) fn list(conn: &Connection, filter: &AreaLeaseFilter) -> Result<Vec<AreaLease>, Fail> {
    let limit = filter.limit.unwrap_or(u32::MAX);
    let execution = filter.execution.map(|e| e.0);
    let task = filter.task.map(|t| t.0);
    let sql = if filter.ended {
        format!(
            "SELECT {COLUMNS} FROM area_leases
             WHERE (?1 IS NULL OR execution_id = ?1) AND (?2 IS NULL OR task_id = ?2)
             ORDER BY id DESC LIMIT ?3"
        )
    } else {
        format!(
            "SELECT {COLUMNS} FROM area_leases WHERE state = 'held'
                 AND (?1 IS NULL OR execution_id = ?1) AND (?2 IS NULL OR task_id = ?2)
             ORDER BY id LIMIT ?3"
        )
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![execution, task, limit], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Writes a lease as the batch left it.
pub(crate) fn save(conn: &Connection, l: &AreaLease) -> Result<(), Fail> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO area_leases (id, path, execution_id, holder_task, agent, task_id, taken_at,
             expires_at, state, ended_at, end_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET state = ?9, ended_at = ?10, end_reason = ?11",
    )?;
    stmt.execute(params![
        l.id.0,
        l.path.as_str(),
        l.execution.0,
        l.holder_task.0,
        l.agent,
        l.task.0,
        l.taken_at.0,
        l.expires_at.0,
        l.state.as_str(),
        l.ended_at.map(|t| t.0),
        l.end_reason,
    ])?;
    Ok(())
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AreaLease> {
    let bad = |column: usize, what: String| -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("a stored area lease does not decode: {what}").into(),
        )
    };
    let path: String = row.get(1)?;
    let state: String = row.get(8)?;
    Ok(AreaLease {
        id: AreaLeaseId(row.get(0)?),
        path: AreaPath::parse(&path).map_err(|e| bad(1, e))?,
        execution: ExecutionId(row.get(2)?),
        holder_task: TaskId(row.get(3)?),
        agent: row.get(4)?,
        task: TaskId(row.get(5)?),
        taken_at: Timestamp(row.get(6)?),
        expires_at: Timestamp(row.get(7)?),
        state: state.parse::<AreaLeaseState>().map_err(|e| bad(8, e))?,
        ended_at: row.get::<_, Option<i64>>(9)?.map(Timestamp),
        end_reason: row.get(10)?,
    })
}
