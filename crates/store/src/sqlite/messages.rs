//! Rows of messages (migration 12): the projection of each message's events, and the reads of
//! mailboxes.

use domain::{
    ExecutionId, Message, MessageId, MessageState, MessageType, Priority, Receiver, TaskId,
    Timestamp,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::Fail;
use crate::{MessageFilter, MessageSweep};

const COLUMNS: &str = "id, sender, sender_execution, task_id, receiver, type, payload, \
                       correlation, priority, created_at, expires_at, state, deliveries, \
                       delivered_to, delivered_at, acked_at, acked_by, dead_reason, coalesced, \
                       fingerprint, updated_at";

/// Open: pending or delivered. Written as comparisons so that SQLite uses the partial indexes.
const OPEN: &str = "(state = 'pending' OR state = 'delivered')";

pub(crate) fn message(conn: &Connection, id: MessageId) -> Result<Option<Message>, Fail> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"))?;
    Ok(stmt.query_row([id.0], from_row).optional()?)
}

pub(crate) fn next_id(conn: &Connection) -> Result<i64, Fail> {
    let mut stmt = conn.prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM messages")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

pub(crate) fn open_alert(conn: &Connection, fingerprint: &str) -> Result<Option<Message>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE fingerprint = ?1 AND {OPEN} ORDER BY id LIMIT 1"
    ))?;
    Ok(stmt.query_row([fingerprint], from_row).optional()?)
}

pub(crate) fn sent_by(conn: &Connection, e: ExecutionId) -> Result<tracker::Sent, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT COUNT(*), COALESCE(SUM({OPEN}), 0) FROM messages WHERE sender_execution = ?1"
    ))?;
    Ok(stmt.query_row([e.0], |r| {
        Ok(tracker::Sent {
            total: r.get(0)?,
            open: r.get(1)?,
        })
    })?)
}

/// Whether any message is open. The engine reads an inbox and looks for messages to sweep at
/// every claim, and most projects send no messages: the queries below each build a temporary
/// b-tree (the OR over two states, the mixed order), seven of them per claim even on an empty
/// table, which made these reads a seventh of the engine's instructions in scenario A of
/// `cargo xtask bench`. One probe of the partial index on open messages (every open message is
/// in it) answers first, and builds none.
pub(crate) fn any_open(conn: &Connection) -> Result<bool, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_open_by_receiver          WHERE {OPEN})"
    ))?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

/// The open messages for any of `receivers` (and, with `execution`, those addressed to it)
/// that are still within their time to live at `now`: the most urgent first, then the oldest.
pub(crate) fn inbox(
    conn: &Connection,
    receivers: &[String],
    execution: Option<ExecutionId>,
    reader: Option<&str>,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<Message>, Fail> {
    if !any_open(conn)? {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    let live = "(expires_at IS NULL OR expires_at > ?2)";
    // Only announcements have reads: one the reader acknowledged is not shown to it again.
    let unread = "NOT EXISTS (SELECT 1 FROM message_reads r \
                  WHERE r.message_id = messages.id AND r.reader = ?4)";
    for receiver in receivers {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE receiver = ?1 AND {OPEN} AND {live} \
             AND {unread} ORDER BY priority DESC, id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![receiver, now.0, limit, reader], from_row)?;
        for m in rows {
            found.push(m?);
        }
    }
    if let Some(e) = execution {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE receiver_execution = ?1 AND {OPEN} AND {live} \
             ORDER BY priority DESC, id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![e.0, now.0, limit], from_row)?;
        for m in rows {
            found.push(m?);
        }
    }
    found.sort_by_key(|m: &Message| (std::cmp::Reverse(m.priority), m.id));
    found.dedup_by_key(|m| m.id);
    found.truncate(limit as usize);
    Ok(found)
}

/// Open messages that can never be delivered: their time to live ran out at `now`, or the
/// execution they are for ended. Oldest first, at most `limit`.
pub(crate) fn due(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<MessageSweep>, Fail> {
    if !any_open(conn)? {
        return Ok(Vec::new());
    }
    let mut due = Vec::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ?1 AND {OPEN} \
         ORDER BY expires_at, id LIMIT ?2"
    ))?;
    for id in stmt.query_map(params![now.0, limit], |r| r.get::<_, i64>(0))? {
        due.push(MessageSweep::Expired(MessageId(id?)));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, e.id, e.state FROM messages AS m JOIN executions AS e
             ON e.id = m.receiver_execution
         WHERE m.receiver_execution IS NOT NULL AND (m.state = 'pending' OR m.state = 'delivered')
             AND e.state <> 'queued' AND e.state <> 'preparing' AND e.state <> 'running'
             AND e.state <> 'validating'
         ORDER BY m.id LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (id, execution, state) = row?;
        let id = MessageId(id);
        if due.iter().any(|d| d.id() == id) {
            continue;
        }
        due.push(MessageSweep::ExecutionEnded {
            id,
            execution: ExecutionId(execution),
            state,
        });
    }
    due.truncate(limit as usize);
    Ok(due)
}

/// The messages `filter` selects, newest first.
pub(crate) fn list(conn: &Connection, filter: &MessageFilter) -> Result<Vec<Message>, Fail> {
    let limit = filter.limit.unwrap_or(u32::MAX);
    let state = filter.state.map(MessageState::as_str);
    let task = filter.task.map(|t| t.0);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR task_id = ?2)
             AND (?3 IS NULL OR receiver = ?3)
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let receiver = filter.receiver.as_ref().map(ToString::to_string);
    let rows = stmt.query_map(params![state, task, receiver, limit], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Whether agent `reader` acknowledged the announcement `id` for itself.
pub(crate) fn read_by(conn: &Connection, id: MessageId, reader: &str) -> Result<bool, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM message_reads WHERE message_id = ?1 AND reader = ?2)",
    )?;
    Ok(stmt.query_row(params![id.0, reader], |r| r.get(0))?)
}

/// Records that agent `reader` acknowledged the announcement `id`; the primary key refuses a
/// second time, whatever the rules let through.
pub(crate) fn insert_read(
    conn: &Connection,
    id: MessageId,
    reader: &str,
    by: &str,
    at: Timestamp,
) -> Result<(), Fail> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO message_reads (message_id, reader, acked_by, acked_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    stmt.execute(params![id.0, reader, by, at.0])?;
    Ok(())
}

/// The condition of the partial index `messages_open_escalations` (migration 18).
const OPEN_ESCALATION: &str = "type = 'ESCALATION' AND (state = 'pending' OR state = 'delivered')";

/// The open escalations to `receiver`, oldest first, at most `limit`.
pub(crate) fn open_escalations(
    conn: &Connection,
    receiver: &str,
    limit: u32,
) -> Result<Vec<Message>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE receiver = ?1 AND {OPEN_ESCALATION} \
         ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![receiver, limit], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// How many escalations are open, at every receiver.
pub(crate) fn open_escalation_count(conn: &Connection) -> Result<u64, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT COUNT(*) FROM messages WHERE {OPEN_ESCALATION}"
    ))?;
    let n: i64 = stmt.query_row([], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Writes a message as the batch left it.
pub(crate) fn save(conn: &Connection, m: &Message) -> Result<(), Fail> {
    let payload = m.payload.to_string();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO messages (id, sender, sender_execution, task_id, receiver, receiver_execution,
             type, payload, correlation, priority, created_at, expires_at, state, deliveries,
             delivered_to, delivered_at, acked_at, acked_by, dead_reason, coalesced, fingerprint,
             updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21, ?22)
         ON CONFLICT (id) DO UPDATE SET state = ?13, deliveries = ?14, delivered_to = ?15,
             delivered_at = ?16, acked_at = ?17, acked_by = ?18, dead_reason = ?19,
             coalesced = ?20, updated_at = ?22",
    )?;
    stmt.execute(params![
        m.id.0,
        m.sender,
        m.sender_execution.map(|e| e.0),
        m.task_id.map(|t| t.0),
        m.receiver.to_string(),
        m.receiver.execution().map(|e| e.0),
        m.kind.as_str(),
        payload,
        m.correlation,
        m.priority.rank(),
        m.created_at.0,
        m.expires_at.map(|t| t.0),
        m.state.as_str(),
        m.deliveries,
        m.delivered_to.map(|e| e.0),
        m.delivered_at.map(|t| t.0),
        m.acked_at.map(|t| t.0),
        m.acked_by,
        m.dead_reason,
        m.coalesced,
        m.fingerprint,
        m.updated_at.0,
    ])?;
    Ok(())
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let bad = |column: usize, what: String| -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("a stored message does not decode: {what}").into(),
        )
    };
    let receiver: String = row.get(4)?;
    let kind: String = row.get(5)?;
    let payload: String = row.get(6)?;
    let priority: i64 = row.get(8)?;
    let state: String = row.get(11)?;
    Ok(Message {
        id: MessageId(row.get(0)?),
        sender: row.get(1)?,
        sender_execution: row.get::<_, Option<i64>>(2)?.map(ExecutionId),
        task_id: row.get::<_, Option<i64>>(3)?.map(TaskId),
        receiver: receiver.parse::<Receiver>().map_err(|e| bad(4, e))?,
        kind: kind.parse::<MessageType>().map_err(|e| bad(5, e))?,
        payload: serde_json::from_str(&payload).map_err(|e| bad(6, e.to_string()))?,
        correlation: row.get(7)?,
        priority: Priority::from_rank(priority)
            .ok_or_else(|| bad(8, format!("priority {priority}")))?,
        created_at: Timestamp(row.get(9)?),
        expires_at: row.get::<_, Option<i64>>(10)?.map(Timestamp),
        state: MessageState::parse(&state).ok_or_else(|| bad(11, format!("state {state}")))?,
        deliveries: row.get(12)?,
        delivered_to: row.get::<_, Option<i64>>(13)?.map(ExecutionId),
        delivered_at: row.get::<_, Option<i64>>(14)?.map(Timestamp),
        acked_at: row.get::<_, Option<i64>>(15)?.map(Timestamp),
        acked_by: row.get(16)?,
        dead_reason: row.get(17)?,
        coalesced: row.get(18)?,
        fingerprint: row.get(19)?,
        updated_at: Timestamp(row.get(20)?),
    })
}
