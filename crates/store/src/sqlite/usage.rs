//! Recording model requests and summing them, for the model gateway's accounting.

use domain::{ExecutionId, Tokens};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::rows::{Fail, refused, signed};
use crate::{ModelUsage, UsageGroup, UsageGroupSum, UsageKey, UsageScope};

/// One model request to record, as the rules accepted it.
pub(crate) struct NewUsage {
    pub execution: ExecutionId,
    pub model: String,
    pub tokens: Tokens,
    pub cost_micros: u64,
}

/// Inserts one usage row, copying the task, its root and the agent from the execution.
/// Usage is recorded on a finished execution too: a stream that ends after its execution did
/// still spent the tokens.
pub(crate) fn insert(
    conn: &Connection,
    usage: &NewUsage,
    at: domain::Timestamp,
) -> Result<(), Fail> {
    let owner = {
        let mut stmt = conn.prepare_cached(
            "SELECT e.task_id, t.root, e.agent FROM executions e \
             JOIN tasks t ON t.id = e.task_id WHERE e.id = ?1",
        )?;
        stmt.query_row([usage.execution.0], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()?
    };
    let Some((task_id, root, agent)) = owner else {
        return refused(format!("execution #{} does not exist", usage.execution));
    };
    let mut stmt = conn.prepare_cached(
        "INSERT INTO model_usage (execution_id, task_id, root, agent, model, at, input_tokens, \
         output_tokens, cached_tokens, cost_micros) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    stmt.execute(params![
        usage.execution.0,
        task_id,
        root,
        agent,
        usage.model,
        at.0,
        signed(usage.tokens.input),
        signed(usage.tokens.output),
        signed(usage.tokens.cached),
        signed(usage.cost_micros),
    ])?;
    Ok(())
}

const SUMS: &str = "COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), \
     COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(cost_micros), 0)";

fn condition(scope: &UsageScope) -> (&'static str, Vec<Value>) {
    match scope {
        UsageScope::Execution(id) => ("execution_id = ?", vec![Value::Integer(id.0)]),
        UsageScope::Tree(root) => ("root = ?", vec![Value::Integer(root.0)]),
        UsageScope::Agent { agent, from, until } => (
            "agent = ? AND at >= ? AND at < ?",
            vec![
                Value::Text(agent.clone()),
                Value::Integer(from.0),
                Value::Integer(until.0),
            ],
        ),
        UsageScope::Since(from) => ("at >= ?", vec![Value::Integer(from.0)]),
    }
}

fn sums_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<ModelUsage> {
    // SQLite sums integers exactly and fails on overflow, so every sum is non-negative here.
    let get = |i: usize| -> rusqlite::Result<u64> {
        let value: i64 = row.get(first + i)?;
        u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(first + i, value))
    };
    Ok(ModelUsage {
        requests: get(0)?,
        tokens: Tokens {
            input: get(1)?,
            output: get(2)?,
            cached: get(3)?,
        },
        cost_micros: get(4)?,
    })
}

pub(crate) fn total(conn: &Connection, scope: &UsageScope) -> Result<ModelUsage, Fail> {
    let (condition, values) = condition(scope);
    let sql = format!("SELECT {SUMS} FROM model_usage WHERE {condition}");
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt.query_row(params_from_iter(values), |r| sums_from_row(r, 0))?)
}

pub(crate) fn by_model(
    conn: &Connection,
    scope: &UsageScope,
) -> Result<Vec<(String, ModelUsage)>, Fail> {
    let (condition, values) = condition(scope);
    let sql = format!(
        "SELECT model, {SUMS} FROM model_usage WHERE {condition} GROUP BY model ORDER BY model"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), |r| {
        Ok((r.get::<_, String>(0)?, sums_from_row(r, 1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn grouped(conn: &Connection, by: UsageGroup) -> Result<Vec<UsageGroupSum>, Fail> {
    // `at` is never negative, so integer division floors it to the day's first millisecond.
    let key = match by {
        UsageGroup::Task => "task_id",
        UsageGroup::Tree => "root",
        UsageGroup::Agent => "agent",
        UsageGroup::Day => "(at / 86400000) * 86400000",
    };
    let sql = format!("SELECT {key} AS k, {SUMS} FROM model_usage GROUP BY k ORDER BY k");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |r| {
        let key = match by {
            UsageGroup::Task | UsageGroup::Tree => UsageKey::Task(domain::TaskId(r.get(0)?)),
            UsageGroup::Agent => UsageKey::Agent(r.get(0)?),
            UsageGroup::Day => UsageKey::Day(domain::Timestamp(r.get::<_, i64>(0)?)),
        };
        Ok(UsageGroupSum {
            key,
            usage: sums_from_row(r, 1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
