//! Reading and writing single rows of the SQLite tables, and the internal failure type.
//!
//! Every statement goes through `prepare_cached`, so after the first use of a statement the
//! store only binds and steps it; `apply` does no per-call schema or parsing work.

use std::str::FromStr;

use domain::{
    EntityKind, Event, EventKind, Execution, ExecutionId, ExecutionState, Task, TaskId, TaskState,
    Timestamp, Usage,
};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Why an internal step failed, before the store adds the database path and the change index.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The driver failed.
    Sql(rusqlite::Error),
    /// A stored value could not be read back.
    Corrupt(String),
    /// The change broke a rule; the text explains it to a person.
    Refused(String),
    AlreadyActive {
        task: TaskId,
        execution: ExecutionId,
    },
    AlreadyFinished {
        execution: ExecutionId,
        state: ExecutionState,
    },
    Stale {
        execution: ExecutionId,
        why: String,
    },
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            // Conversion failures mean a stored value is not what this build wrote, which is
            // a different problem for the user than a failing disk.
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..) => Fail::Corrupt(e.to_string()),
            other => Fail::Sql(other),
        }
    }
}

impl From<serde_json::Error> for Fail {
    fn from(e: serde_json::Error) -> Self {
        Fail::Corrupt(format!("bad JSON: {e}"))
    }
}

impl From<tracker::Refusal> for Fail {
    fn from(refusal: tracker::Refusal) -> Self {
        match refusal {
            tracker::Refusal::Rule(reason) => Fail::Refused(reason),
            tracker::Refusal::AlreadyActive { task, execution } => {
                Fail::AlreadyActive { task, execution }
            }
            tracker::Refusal::AlreadyFinished { execution, state } => {
                Fail::AlreadyFinished { execution, state }
            }
            tracker::Refusal::Stale { execution, why } => Fail::Stale { execution, why },
        }
    }
}

pub(crate) fn refused<T>(reason: impl Into<String>) -> Result<T, Fail> {
    Err(Fail::Refused(reason.into()))
}

/// The columns of a task row, in the order [`task_from_row`] reads them. The last column
/// gathers the task's dependencies so one statement reads a consistent task.
pub(crate) const TASK_COLUMNS: &str = "id, title, body, labels, priority, state, parent, root, \
     depth, agent, created_at, updated_at, nudged_at, not_before, attempts, continuations, \
     executions, summary, branch, merge_failed, \
     (SELECT json_group_array(d.blocked_by) FROM task_deps d WHERE d.task_id = tasks.id), \
     handoff, handoffs";

/// The columns of an execution row, in the order [`execution_from_row`] reads them.
pub(crate) const EXECUTION_COLUMNS: &str = "id, task_id, kind, agent, attempt, iteration, state, \
     queued_at, started_at, ended_at, pid, exit_code, score, wall_ms, cpu_ms, summary, log_path, \
     lease_node, lease_until, fence";

const EVENT_COLUMNS: &str = "seq, at, entity, entity_id, entity_seq, actor, data";

/// The condition that an execution is active, written exactly as in the WHERE clause of the
/// partial unique index (migrations 3 and 4) so that SQLite uses the index for queries with it. A list
/// (`state IN (...)`) would mean the same but build a temporary b-tree at every run.
pub(crate) const ACTIVE_SQL: &str =
    "(state = 'queued' OR state = 'preparing' OR state = 'running' OR state = 'validating')";

fn parsed<T: FromStr<Err = String>>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    text.parse()
        .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, e.into()))
}

fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, e.into()))
}

fn timestamp(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(idx)?.map(Timestamp))
}

/// The lease in columns `idx` (its node) and `idx + 1` (its end): both or neither.
fn lease(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<domain::Lease>> {
    let node: Option<String> = row.get(idx)?;
    let until = timestamp(row, idx + 1)?;
    match (node, until) {
        (None, None) => Ok(None),
        (Some(node), Some(until)) => {
            let node = node.parse().map_err(|e: String| {
                rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, e.into())
            })?;
            Ok(Some(domain::Lease { node, until }))
        }
        _ => Err(rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            "a lease needs both its node and its end".into(),
        )),
    }
}

fn unsigned(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, value))
}

/// Stores a `u64` counter in SQLite's signed integer; values past `i64::MAX` cannot occur for
/// milliseconds or sequence numbers, so they saturate instead of failing a write.
pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    let mut blocked_by: Vec<TaskId> = json(row, 20)?;
    blocked_by.sort();
    Ok(Task {
        id: TaskId(row.get(0)?),
        title: row.get(1)?,
        body: row.get(2)?,
        labels: json(row, 3)?,
        priority: row.get(4)?,
        state: parsed(row, 5)?,
        parent: row.get::<_, Option<i64>>(6)?.map(TaskId),
        root: TaskId(row.get(7)?),
        depth: row.get(8)?,
        blocked_by,
        agent: row.get(9)?,
        created_at: Timestamp(row.get(10)?),
        updated_at: Timestamp(row.get(11)?),
        nudged_at: timestamp(row, 12)?,
        not_before: timestamp(row, 13)?,
        attempts: row.get(14)?,
        continuations: row.get(15)?,
        executions: row.get(16)?,
        summary: row.get(17)?,
        branch: row.get(18)?,
        merge_failed: row.get(19)?,
        handoff: row
            .get::<_, Option<String>>(21)?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(21, Type::Text, e.into()))?,
        handoffs: row.get(22)?,
    })
}

pub(crate) fn execution_from_row(row: &Row<'_>) -> rusqlite::Result<Execution> {
    Ok(Execution {
        id: ExecutionId(row.get(0)?),
        task_id: TaskId(row.get(1)?),
        kind: parsed(row, 2)?,
        agent: row.get(3)?,
        attempt: row.get(4)?,
        iteration: row.get(5)?,
        state: parsed(row, 6)?,
        queued_at: Timestamp(row.get(7)?),
        started_at: timestamp(row, 8)?,
        ended_at: timestamp(row, 9)?,
        pid: row.get(10)?,
        exit_code: row.get(11)?,
        score: row.get(12)?,
        usage: Usage {
            wall_ms: unsigned(row, 13)?,
            cpu_ms: unsigned(row, 14)?,
        },
        summary: row.get(15)?,
        log_path: row.get(16)?,
        lease: lease(row, 17)?,
        fence: row.get(19)?,
    })
}

fn entity_from_str(idx: usize, text: &str) -> rusqlite::Result<EntityKind> {
    match text {
        "task" => Ok(EntityKind::Task),
        "execution" => Ok(EntityKind::Execution),
        "message" => Ok(EntityKind::Message),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            format!("`{other}` is not an entity kind").into(),
        )),
    }
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let entity: String = row.get(2)?;
    Ok(Event {
        seq: unsigned(row, 0)?,
        at: Timestamp(row.get(1)?),
        entity: entity_from_str(2, &entity)?,
        entity_id: row.get(3)?,
        entity_seq: unsigned(row, 4)?,
        actor: row.get(5)?,
        kind: json(row, 6)?,
    })
}

pub(crate) fn load_task(conn: &Connection, id: TaskId) -> Result<Option<Task>, Fail> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt.query_row([id.0], task_from_row).optional()?)
}

pub(crate) fn load_execution(
    conn: &Connection,
    id: ExecutionId,
) -> Result<Option<Execution>, Fail> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt.query_row([id.0], execution_from_row).optional()?)
}

/// The task's execution in an active state, if any.
pub(crate) fn active_execution_of(
    conn: &Connection,
    task: TaskId,
) -> Result<Option<ExecutionId>, Fail> {
    let sql = format!(
        "SELECT id FROM executions WHERE task_id = ?1 AND {ACTIVE_SQL} \
         ORDER BY id LIMIT 1"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt
        .query_row([task.0], |r| r.get(0))
        .optional()?
        .map(ExecutionId))
}

/// Inserts a new task row under the id the rules gave it.
pub(crate) fn insert_task(conn: &Connection, task: &Task) -> Result<(), Fail> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO tasks (id, title, body, labels, priority, state, parent, root, depth, agent, \
         created_at, updated_at, nudged_at, not_before, attempts, continuations, executions, \
         summary, branch, merge_failed, handoff, handoffs) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?20, ?21, ?22)",
    )?;
    stmt.execute(params![
        task.id.0,
        task.title,
        task.body,
        serde_json::to_string(&task.labels)?,
        task.priority,
        task.state.as_str(),
        task.parent.map(|p| p.0),
        task.root.0,
        task.depth,
        task.agent,
        task.created_at.0,
        task.updated_at.0,
        task.nudged_at.map(|t| t.0),
        task.not_before.map(|t| t.0),
        task.attempts,
        task.continuations,
        task.executions,
        task.summary,
        task.branch,
        task.merge_failed,
        handoff_json(task)?,
        task.handoffs,
    ])?;
    Ok(())
}

/// The task's open part after a handoff, as its column holds it.
fn handoff_json(task: &Task) -> Result<Option<String>, Fail> {
    Ok(task
        .handoff
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?)
}

/// The tables whose ids the rules hand out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdTable {
    Tasks,
    Executions,
}

/// The id the next row of `table` gets: one more than any it ever had, as SQLite's
/// AUTOINCREMENT would choose (ids of deleted rows are not used again).
pub(crate) fn next_id(conn: &Connection, table: IdTable) -> Result<i64, Fail> {
    let sql = match table {
        IdTable::Tasks => {
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0), \
             COALESCE((SELECT MAX(id) FROM tasks), 0)) + 1"
        }
        IdTable::Executions => {
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'executions'), 0), \
             COALESCE((SELECT MAX(id) FROM executions), 0)) + 1"
        }
    };
    Ok(conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?)
}

/// Writes the columns of a task row that change over its life, and `state` when it is given
/// (it changed).
///
/// Columns that never change (`parent`, `root`, `depth`, `created_at`) are left out, and
/// `state` is named only when it changed, on purpose: SQLite rewrites the entry of every index
/// whose column is named in an UPDATE, even when the value stays the same, and each rewritten
/// index page is one more page to write to the log at commit.
pub(crate) fn save_task(
    conn: &Connection,
    task: &Task,
    state: Option<TaskState>,
) -> Result<(), Fail> {
    const COLUMNS: &str = "UPDATE tasks SET title = ?2, body = ?3, labels = ?4, priority = ?5, \
         agent = ?6, updated_at = ?7, nudged_at = ?8, not_before = ?9, attempts = ?10, \
         continuations = ?11, executions = ?12, summary = ?13, branch = ?14, merge_failed = ?15, \
         handoff = ?16, handoffs = ?17";
    let mut stmt = match state {
        Some(_) => conn.prepare_cached(&format!("{COLUMNS}, state = ?18 WHERE id = ?1"))?,
        None => conn.prepare_cached(&format!("{COLUMNS} WHERE id = ?1"))?,
    };
    let labels = serde_json::to_string(&task.labels)?;
    let handoff = handoff_json(task)?;
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &task.id.0,
        &task.title,
        &task.body,
        &labels,
        &task.priority,
        &task.agent,
        &task.updated_at.0,
    ];
    let nudged_at = task.nudged_at.map(|t| t.0);
    let not_before = task.not_before.map(|t| t.0);
    values.extend([
        &nudged_at as &dyn rusqlite::ToSql,
        &not_before,
        &task.attempts,
        &task.continuations,
        &task.executions,
        &task.summary,
        &task.branch,
        &task.merge_failed,
        &handoff,
        &task.handoffs,
    ]);
    let state = state.map(TaskState::as_str);
    if state.is_some() {
        values.push(&state);
    }
    stmt.execute(values.as_slice())?;
    Ok(())
}

pub(crate) fn insert_dependency(
    conn: &Connection,
    task: TaskId,
    blocked_by: TaskId,
) -> Result<(), Fail> {
    let mut stmt =
        conn.prepare_cached("INSERT INTO task_deps (task_id, blocked_by) VALUES (?1, ?2)")?;
    stmt.execute([task.0, blocked_by.0])?;
    Ok(())
}

pub(crate) fn delete_dependency(
    conn: &Connection,
    task: TaskId,
    blocked_by: TaskId,
) -> Result<(), Fail> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM task_deps WHERE task_id = ?1 AND blocked_by = ?2")?;
    stmt.execute([task.0, blocked_by.0])?;
    Ok(())
}

/// Inserts a new execution row under the id the rules gave it.
pub(crate) fn insert_execution(conn: &Connection, e: &Execution) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO executions (id, task_id, kind, agent, attempt, iteration, state, queued_at, \
         started_at, ended_at, pid, exit_code, score, wall_ms, cpu_ms, summary, log_path, \
         lease_node, lease_until, fence) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?20)",
    )?;
    stmt.execute(params![
        e.id.0,
        e.task_id.0,
        e.kind.as_str(),
        e.agent,
        e.attempt,
        e.iteration,
        e.state.as_str(),
        e.queued_at.0,
        e.started_at.map(|t| t.0),
        e.ended_at.map(|t| t.0),
        e.pid,
        e.exit_code,
        e.score,
        signed(e.usage.wall_ms),
        signed(e.usage.cpu_ms),
        e.summary,
        e.log_path,
        e.lease.as_ref().map(|l| l.node.as_str()),
        e.lease.as_ref().map(|l| l.until.0),
        e.fence,
    ])?;
    Ok(())
}

/// Writes the columns of an execution row that change over its life, and `state` when it is
/// given (it changed), for the reason given at [`save_task`].
pub(crate) fn save_execution(
    conn: &Connection,
    e: &Execution,
    state: Option<ExecutionState>,
) -> Result<(), Fail> {
    const COLUMNS: &str = "UPDATE executions SET iteration = ?2, started_at = ?3, \
         ended_at = ?4, pid = ?5, exit_code = ?6, score = ?7, wall_ms = ?8, cpu_ms = ?9, \
         summary = ?10, log_path = ?11, lease_until = ?12";
    let mut stmt = match state {
        Some(_) => conn.prepare_cached(&format!("{COLUMNS}, state = ?13 WHERE id = ?1"))?,
        None => conn.prepare_cached(&format!("{COLUMNS} WHERE id = ?1"))?,
    };
    let started_at = e.started_at.map(|t| t.0);
    let ended_at = e.ended_at.map(|t| t.0);
    let wall_ms = signed(e.usage.wall_ms);
    let cpu_ms = signed(e.usage.cpu_ms);
    let lease_until = e.lease.as_ref().map(|l| l.until.0);
    let state = state.map(ExecutionState::as_str);
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &e.id.0,
        &e.iteration,
        &started_at,
        &ended_at,
        &e.pid,
        &e.exit_code,
        &e.score,
        &wall_ms,
        &cpu_ms,
        &e.summary,
        &e.log_path,
        &lease_until,
    ];
    if state.is_some() {
        values.push(&state);
    }
    stmt.execute(values.as_slice())?;
    Ok(())
}

/// The `entity_seq` the next event of this entity gets.
pub(crate) fn next_entity_seq(
    conn: &Connection,
    entity: EntityKind,
    entity_id: i64,
) -> Result<u64, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(MAX(entity_seq), 0) + 1 FROM events \
         WHERE entity = ?1 AND entity_id = ?2",
    )?;
    let next: i64 = stmt.query_row(params![entity.as_str(), entity_id], |r| r.get(0))?;
    Ok(next as u64)
}

/// The event types the partial index `events_remarks` holds (migration 19): what is said to
/// a task's agent. The WHERE clause repeats the index's, so that SQLite reads only the index.
const REMARKS: &str = "entity = 'task' AND (type = 'task_commented' OR type = 'task_feedback_given' \
     OR type = 'task_answered' OR type = 'task_approval_decided')";

/// Every task with a remark (see [`REMARKS`]), by id.
pub(crate) fn remarked_tasks(conn: &Connection) -> Result<Vec<TaskId>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT DISTINCT entity_id FROM events INDEXED BY events_remarks WHERE {REMARKS} \
         ORDER BY entity_id"
    ))?;
    let rows = stmt.query_map([], |r| r.get(0).map(TaskId))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An event a batch decided, not yet in the log.
pub(crate) struct NewEvent {
    pub at: Timestamp,
    pub entity: EntityKind,
    pub entity_id: i64,
    pub entity_seq: u64,
    pub kind: EventKind,
}

/// The most rows one INSERT of [`append_events`] carries. Chunks are powers of two up to it,
/// so that a handful of statements, each prepared once, serve every batch.
const EVENTS_PER_INSERT: usize = 16;

/// Appends `events` in order, a chunk of rows per statement: an engine's batch appends about
/// ten, and one statement per row cost most of their time in statement overhead (and an
/// update of the log's sequence counter each). The returned events carry their global `seq`.
/// On an error the position of the event that failed comes with it.
pub(crate) fn append_events(
    conn: &Connection,
    actor: &str,
    events: Vec<NewEvent>,
) -> Result<Vec<Event>, (Fail, usize)> {
    let mut appended = Vec::with_capacity(events.len());
    let mut rest = events.into_iter().peekable();
    while rest.peek().is_some() {
        let remaining = rest.len();
        let size = if remaining >= EVENTS_PER_INSERT {
            EVENTS_PER_INSERT
        } else {
            1 << (usize::BITS - 1 - remaining.leading_zeros())
        };
        let chunk: Vec<NewEvent> = rest.by_ref().take(size).collect();
        let first = appended.len();
        match insert_chunk(conn, actor, &chunk) {
            Ok(seqs) => {
                for (new, seq) in chunk.into_iter().zip(seqs) {
                    appended.push(logged(new, seq, actor));
                }
            }
            // The failed statement changed nothing; row by row, the one that fails is found.
            Err(_) if chunk.len() > 1 => {
                for (i, new) in chunk.into_iter().enumerate() {
                    let seqs = insert_chunk(conn, actor, std::slice::from_ref(&new))
                        .map_err(|e| (e, first + i))?;
                    appended.push(logged(new, seqs[0], actor));
                }
            }
            Err(e) => return Err((e, first)),
        }
    }
    Ok(appended)
}

fn logged(new: NewEvent, seq: u64, actor: &str) -> Event {
    Event {
        seq,
        at: new.at,
        entity: new.entity,
        entity_id: new.entity_id,
        entity_seq: new.entity_seq,
        actor: actor.to_owned(),
        kind: new.kind,
    }
}

/// One INSERT of `chunk`; the `seq` each row got, in the chunk's order. One statement
/// inserts its rows one after another, and the log's `seq` (AUTOINCREMENT) gives each the
/// next number: the chunk's are the last `len` numbers up to the last row's. Debug builds read
/// each row back by its number to check that.
fn insert_chunk(conn: &Connection, actor: &str, chunk: &[NewEvent]) -> Result<Vec<u64>, Fail> {
    let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO events (at, entity, entity_id, entity_seq, actor, type, data) VALUES {rows}"
    ))?;
    let data = chunk
        .iter()
        .map(|n| serde_json::to_string(&n.kind))
        .collect::<Result<Vec<_>, _>>()?;
    let fixed: Vec<(&str, i64, &str)> = chunk
        .iter()
        .map(|n| (n.entity.as_str(), signed(n.entity_seq), n.kind.name()))
        .collect();
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 7);
    for (i, new) in chunk.iter().enumerate() {
        let (entity, version, kind) = &fixed[i];
        values.extend([
            &new.at.0 as &dyn rusqlite::ToSql,
            entity,
            &new.entity_id,
            version,
            &actor,
            kind,
            &data[i],
        ]);
    }
    stmt.execute(values.as_slice())?;
    let last = conn.last_insert_rowid() as u64;
    let first = last + 1 - chunk.len() as u64;
    let seqs: Vec<u64> = (first..=last).collect();
    #[cfg(debug_assertions)]
    for (new, seq) in chunk.iter().zip(&seqs) {
        let (entity, id, version): (String, i64, i64) = conn.query_row(
            "SELECT entity, entity_id, entity_seq FROM events WHERE seq = ?1",
            [signed(*seq)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        assert_eq!(
            (entity.as_str(), id, version),
            (new.entity.as_str(), new.entity_id, signed(new.entity_seq)),
            "event {seq} of a batch is not where its number says"
        );
    }
    Ok(seqs)
}

pub(crate) fn events_after(conn: &Connection, seq: u64, limit: u32) -> Result<Vec<Event>, Fail> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![signed(seq), limit], event_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn entity_events(
    conn: &Connection,
    entity: EntityKind,
    id: i64,
) -> Result<Vec<Event>, Fail> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE entity = ?1 AND entity_id = ?2 \
         ORDER BY entity_seq"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![entity.as_str(), id], event_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn last_seq(conn: &Connection) -> Result<u64, Fail> {
    let mut stmt = conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")?;
    let seq: i64 = stmt.query_row([], |r| r.get(0))?;
    Ok(seq.max(0) as u64)
}
