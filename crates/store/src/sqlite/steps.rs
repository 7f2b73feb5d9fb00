//! Rows of recorded steps: the idempotency keys of agents' calls, the merges of done
//! sub-tasks into their parents, and approvals.

use domain::{Approval, ApprovalId, ApprovalSource, ApprovalState, TaskId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::Fail;
use crate::{ApprovalFilter, KeyedCall, Land, Merge};

pub(crate) fn call_key(
    conn: &Connection,
    task: TaskId,
    op: &str,
    key: &str,
) -> Result<Option<KeyedCall>, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT result FROM call_keys WHERE task_id = ?1 AND op = ?2 AND key = ?3",
    )?;
    let found = stmt
        .query_row(params![task.0, op, key], |r| r.get::<_, Option<i64>>(0))
        .optional()?;
    Ok(found.map(|result| KeyedCall {
        result: result.map(TaskId),
    }))
}

pub(crate) fn insert_call_key(
    conn: &Connection,
    task: TaskId,
    op: &str,
    key: &str,
    result: Option<TaskId>,
    now: Timestamp,
) -> Result<(), Fail> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO call_keys (task_id, op, key, result, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    stmt.execute(params![task.0, op, key, result.map(|r| r.0), now.0])?;
    Ok(())
}

/// Records that `child`'s branch is due to be merged into `parent`'s. A child is done once, so
/// there is one row per child; a second insert leaves the first as it is.
pub(crate) fn insert_merge(
    conn: &Connection,
    child: TaskId,
    parent: TaskId,
    now: Timestamp,
) -> Result<(), Fail> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO merges (child, parent, state, updated_at) \
         VALUES (?1, ?2, 'pending', ?3)",
    )?;
    stmt.execute(params![child.0, parent.0, now.0])?;
    Ok(())
}

/// The merge of `child` that has not succeeded yet, if there is one.
pub(crate) fn unfinished_merge(conn: &Connection, child: TaskId) -> Result<Option<Merge>, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT child, parent, state, reason FROM merges WHERE child = ?1 AND state <> 'done'",
    )?;
    Ok(stmt.query_row([child.0], merge_from_row).optional()?)
}

pub(crate) fn finish_merge(
    conn: &Connection,
    child: TaskId,
    failed: Option<&str>,
    now: Timestamp,
) -> Result<(), Fail> {
    let state = if failed.is_some() { "failed" } else { "done" };
    let mut stmt = conn.prepare_cached(
        "UPDATE merges SET state = ?2, reason = ?3, updated_at = ?4 WHERE child = ?1",
    )?;
    stmt.execute(params![child.0, state, failed, now.0])?;
    Ok(())
}

pub(crate) fn unfinished_merges(
    conn: &Connection,
    parent: Option<TaskId>,
) -> Result<Vec<Merge>, Fail> {
    let merges = match parent {
        Some(parent) => {
            let mut stmt = conn.prepare_cached(
                "SELECT child, parent, state, reason FROM merges \
                 WHERE parent = ?1 AND state <> 'done' ORDER BY child",
            )?;
            stmt.query_map([parent.0], merge_from_row)?
                .collect::<Result<Vec<_>, _>>()?
        }
        None => {
            let mut stmt = conn.prepare_cached(
                "SELECT child, parent, state, reason FROM merges \
                 WHERE state <> 'done' ORDER BY child",
            )?;
            stmt.query_map([], merge_from_row)?
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    Ok(merges)
}

fn merge_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Merge> {
    let state: String = row.get(2)?;
    let reason: Option<String> = row.get(3)?;
    Ok(Merge {
        child: TaskId(row.get(0)?),
        parent: TaskId(row.get(1)?),
        failed: (state == "failed").then(|| reason.unwrap_or_default()),
    })
}

/// The land of `task`, under way or done, if there is one.
pub(crate) fn land(conn: &Connection, task: TaskId) -> Result<Option<Land>, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT task_id, state, strategy, base_ref, old_commit, new_commit, root FROM lands \
         WHERE task_id = ?1",
    )?;
    Ok(stmt.query_row([task.0], land_from_row).optional()?)
}

/// Writes the land of `task` as it now stands; `None` forgets it.
pub(crate) fn save_land(
    conn: &Connection,
    task: TaskId,
    land: Option<&Land>,
    now: Timestamp,
) -> Result<(), Fail> {
    let Some(land) = land else {
        conn.prepare_cached("DELETE FROM lands WHERE task_id = ?1")?
            .execute([task.0])?;
        return Ok(());
    };
    let mut stmt = conn.prepare_cached(
        "INSERT INTO lands (task_id, state, strategy, base_ref, old_commit, new_commit, root, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (task_id) DO UPDATE SET state = ?2, strategy = ?3, base_ref = ?4, \
             old_commit = ?5, new_commit = ?6, root = ?7, updated_at = ?8",
    )?;
    stmt.execute(params![
        task.0,
        if land.landed { "landed" } else { "started" },
        land.strategy.as_str(),
        land.base,
        land.old,
        land.new,
        land.root.map(|r| r.0),
        now.0
    ])?;
    Ok(())
}

const APPROVAL_COLUMNS: &str = "id, task_id, source, execution_id, summary, state, requested_at, \
     decided_at, decided_by, feedback";

pub(crate) fn approval(conn: &Connection, id: ApprovalId) -> Result<Option<Approval>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"
    ))?;
    Ok(stmt.query_row([id.0], approval_from_row).optional()?)
}

pub(crate) fn pending_approval_of(
    conn: &Connection,
    task: TaskId,
) -> Result<Option<Approval>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE task_id = ?1 AND state = 'pending'"
    ))?;
    Ok(stmt.query_row([task.0], approval_from_row).optional()?)
}

pub(crate) fn next_approval_id(conn: &Connection) -> Result<i64, Fail> {
    let mut stmt = conn.prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM approvals")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

/// Writes an approval as the batch left it: a new row, or the decision on an existing one.
pub(crate) fn save_approval(conn: &Connection, a: &Approval) -> Result<(), Fail> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO approvals (id, task_id, source, execution_id, summary, state, requested_at,
             decided_at, decided_by, feedback)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET state = ?6, decided_at = ?8, decided_by = ?9,
             feedback = ?10",
    )?;
    stmt.execute(params![
        a.id.0,
        a.task_id.0,
        a.source.as_str(),
        a.execution_id.map(|e| e.0),
        a.summary,
        a.state.as_str(),
        a.requested_at.0,
        a.decided_at.map(|t| t.0),
        a.decided_by,
        a.feedback,
    ])?;
    Ok(())
}

fn land_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Land> {
    let strategy: String = row.get(2)?;
    Ok(Land {
        task: TaskId(row.get(0)?),
        landed: row.get::<_, String>(1)? == "landed",
        strategy: domain::LandStrategy::parse(&strategy).unwrap_or_default(),
        base: row.get(3)?,
        old: row.get(4)?,
        new: row.get(5)?,
        root: row.get::<_, Option<i64>>(6)?.map(TaskId),
    })
}

/// The approvals `filter` selects, newest first, at most `filter.limit`.
pub(crate) fn approvals(conn: &Connection, filter: &ApprovalFilter) -> Result<Vec<Approval>, Fail> {
    let limit = filter.limit.map_or(-1, i64::from);
    let state = filter.state.map(ApprovalState::as_str);
    let task = filter.task.map(|t| t.0);
    // Each arm names its condition plainly so that SQLite picks the index for it.
    let rows = match (state, task) {
        (Some(state), Some(task)) => conn
            .prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE task_id = ?1 AND state = ?2 \
                 ORDER BY id DESC LIMIT ?3"
            ))?
            .query_map(params![task, state, limit], approval_from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        (Some(state), None) => conn
            .prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE state = ?1 \
                 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(params![state, limit], approval_from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        (None, Some(task)) => conn
            .prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE task_id = ?1 \
                 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(params![task, limit], approval_from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        (None, None) => conn
            .prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals ORDER BY id DESC LIMIT ?1"
            ))?
            .query_map(params![limit], approval_from_row)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

fn approval_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
    let bad = |column: usize, value: String| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("unknown approval value `{value}`").into(),
        )
    };
    let source: String = row.get(2)?;
    let state: String = row.get(5)?;
    Ok(Approval {
        id: ApprovalId(row.get(0)?),
        task_id: TaskId(row.get(1)?),
        source: ApprovalSource::parse(&source).ok_or_else(|| bad(2, source.clone()))?,
        execution_id: row.get::<_, Option<i64>>(3)?.map(domain::ExecutionId),
        summary: row.get(4)?,
        state: ApprovalState::parse(&state).ok_or_else(|| bad(5, state.clone()))?,
        requested_at: Timestamp(row.get(6)?),
        decided_at: row.get::<_, Option<i64>>(7)?.map(Timestamp),
        decided_by: row.get(8)?,
        feedback: row.get(9)?,
    })
}
