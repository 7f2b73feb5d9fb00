//! Agency metrics in SQL: one grouped read per measure, each along an index, so that the cost
//! grows with the tasks in the window and never with every event of the log.

use std::collections::BTreeMap;

use domain::Timestamp;
use rusqlite::{Connection, params};

use super::rows::Fail;
use crate::AgentMetrics;

/// Each task for the agent of its latest execution (SQLite takes `agent` from the row of the
/// MAX), with what its done state, approvals, answers and spend say.
const PER_TASK: &str = "WITH last AS (
             SELECT task_id, agent, MAX(id) AS execution FROM executions GROUP BY task_id
         ),
         scoped AS (
             SELECT l.task_id, l.agent, t.state = 'done' AS done FROM last AS l
             JOIN tasks AS t ON t.id = l.task_id
             WHERE ?1 IS NULL OR t.updated_at >= ?1
         ),
         judged AS (
             SELECT s.agent, s.task_id, s.done,
                 s.done AND NOT EXISTS (
                     SELECT 1 FROM events AS ev
                     WHERE ev.entity = 'task' AND ev.entity_id = s.task_id
                         AND (ev.type = 'task_answered' OR ev.type = 'task_feedback_given')
                 ) AND NOT EXISTS (
                     SELECT 1 FROM approvals AS a
                     WHERE a.task_id = s.task_id AND a.state = 'rejected'
                 ) AND NOT EXISTS (
                     SELECT 1 FROM messages AS m
                     WHERE m.task_id = s.task_id AND m.type = 'ESCALATION' AND m.state = 'acked'
                 ) AS unaided,
                 (SELECT a.state FROM approvals AS a
                  WHERE a.task_id = s.task_id AND a.state <> 'pending'
                  ORDER BY a.decided_at, a.id LIMIT 1) AS first_decision
             FROM scoped AS s
         )
         SELECT j.agent, COUNT(*), COALESCE(SUM(j.done), 0), COALESCE(SUM(j.unaided), 0),
             COALESCE(SUM(j.first_decision IS NOT NULL), 0),
             COALESCE(SUM(j.first_decision = 'approved'), 0),
             COALESCE(SUM(CASE WHEN j.done THEN (
                 SELECT COALESCE(SUM(mu.cost_micros), 0) FROM executions AS e
                 JOIN model_usage AS mu ON mu.execution_id = e.id
                 WHERE e.task_id = j.task_id) END), 0),
             COALESCE(SUM(CASE WHEN j.done THEN (
                 SELECT COALESCE(SUM(e.wall_ms), 0) FROM executions AS e
                 WHERE e.task_id = j.task_id) END), 0)
         FROM judged AS j GROUP BY j.agent";

/// Executions per agent, and the tasks they ran on.
const PER_EXECUTION: &str = "SELECT agent, COUNT(*), COUNT(DISTINCT task_id) FROM executions
         WHERE ?1 IS NULL OR queued_at >= ?1 GROUP BY agent";

/// Each handoff (the few `task_handed_off` events, by their partial index) to the first
/// process started on its task after it, and that process's agent.
const PER_HANDOFF: &str = "WITH h AS (
             SELECT entity_id AS task_id, at FROM events
             WHERE type = 'task_handed_off' AND entity = 'task' AND (?1 IS NULL OR at >= ?1)
         ),
         n AS (
             SELECT h.at AS handed, (
                 SELECT ev.seq FROM executions AS e
                 JOIN events AS ev ON ev.entity = 'execution' AND ev.entity_id = e.id
                 WHERE e.task_id = h.task_id AND ev.type = 'execution_process_started'
                     AND ev.at >= h.at
                 ORDER BY ev.at, ev.seq LIMIT 1
             ) AS started
             FROM h
         )
         SELECT e.agent, COUNT(*), COALESCE(SUM(ev.at - n.handed), 0) FROM n
         JOIN events AS ev ON ev.seq = n.started
         JOIN executions AS e ON e.id = ev.entity_id
         GROUP BY e.agent";

/// The sums per agent of the tasks updated since `since` (all with `None`), by agent name.
pub(crate) fn agent_metrics(
    conn: &Connection,
    since: Option<Timestamp>,
) -> Result<Vec<AgentMetrics>, Fail> {
    let since = since.map(|t| t.0);
    let mut by: BTreeMap<String, AgentMetrics> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(PER_TASK)?;
    let rows = stmt.query_map(params![since], |r| {
        Ok(AgentMetrics {
            agent: r.get(0)?,
            tasks: count(r, 1)?,
            done: count(r, 2)?,
            done_unaided: count(r, 3)?,
            approvals_decided: count(r, 4)?,
            approvals_first_pass: count(r, 5)?,
            done_cost_micros: count(r, 6)?,
            done_wall_ms: count(r, 7)?,
            ..AgentMetrics::default()
        })
    })?;
    for row in rows {
        let row = row?;
        by.insert(row.agent.clone(), row);
    }
    let mut stmt = conn.prepare_cached(PER_EXECUTION)?;
    let rows = stmt.query_map(params![since], |r| {
        Ok((r.get::<_, String>(0)?, count(r, 1)?, count(r, 2)?))
    })?;
    for row in rows {
        let (agent, executions, tasks) = row?;
        let m = by.entry(agent.clone()).or_insert_with(|| AgentMetrics {
            agent,
            ..AgentMetrics::default()
        });
        m.executions = executions;
        m.executed_tasks = tasks;
    }
    let mut stmt = conn.prepare_cached(PER_HANDOFF)?;
    let rows = stmt.query_map(params![since], |r| {
        Ok((r.get::<_, String>(0)?, count(r, 1)?, count(r, 2)?))
    })?;
    for row in rows {
        let (agent, handoffs, ms) = row?;
        let m = by.entry(agent.clone()).or_insert_with(|| AgentMetrics {
            agent,
            ..AgentMetrics::default()
        });
        m.handoffs = handoffs;
        m.handoff_ms = ms;
    }
    Ok(by.into_values().collect())
}

/// A count or a sum, never negative (a handoff recorded after its start is not counted).
fn count(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No read walks the whole event log or the whole messages table: every look at them goes
    /// along an index, so the cost grows with the tasks counted, not with their history.
    #[test]
    fn no_read_scans_the_events_or_the_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agentgrid.db");
        drop(crate::SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        for sql in [PER_TASK, PER_EXECUTION, PER_HANDOFF] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map([Option::<i64>::None], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            for step in &plan {
                // `SCAN t USING INDEX i` walks a (partial) index; a bare `SCAN t` reads it all.
                let scanned = step.strip_prefix("SCAN ").and_then(|r| r.split(' ').next());
                let whole = scanned.is_some_and(|t| {
                    !step.contains(" USING ")
                        && [
                            "events",
                            "ev",
                            "messages",
                            "m",
                            "approvals",
                            "a",
                            "model_usage",
                            "mu",
                        ]
                        .contains(&t)
                });
                assert!(!whole, "{step} in {plan:#?}");
            }
        }
    }
}
