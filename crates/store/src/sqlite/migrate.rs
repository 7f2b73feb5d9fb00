//! Schema migrations: an ordered list of SQL scripts compiled into the binary.
//!
//! Each script runs in its own write transaction together with the row that records it in
//! `schema_migrations`, so a crash never leaves a half-applied version. Several processes may
//! open a fresh file at the same moment; each re-checks the version inside its transaction,
//! and the write lock lets exactly one of them apply a script.

use domain::{Clock, SystemClock};
use rusqlite::{Connection, TransactionBehavior};

use super::Place;
use super::rows::Fail;
use crate::Error;

/// Every schema version, oldest first. A new version is appended here and never edited after
/// it was released.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_model_usage.sql")),
];

/// The newest schema version this build knows.
pub(crate) const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

pub(crate) fn current_version(conn: &Connection) -> Result<i64, Fail> {
    let mut stmt =
        conn.prepare_cached("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

/// Brings the schema up to [`LATEST`], refusing files from a newer build.
pub(crate) fn run(conn: &mut Connection, place: &Place) -> Result<(), Error> {
    let fail = |action: &'static str| move |e: Fail| place.error(action, e);
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(|e| fail("creating the migrations table")(e.into()))?;
    let found = current_version(conn).map_err(fail("reading the schema version"))?;
    if found > LATEST {
        return Err(Error::TooNew {
            path: place.path().to_owned(),
            found,
            known: LATEST,
        });
    }
    for &(version, script) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        apply_one(conn, version, script).map_err(fail("migrating the schema"))?;
    }
    Ok(())
}

fn apply_one(conn: &mut Connection, version: i64, script: &str) -> Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have applied this version while this one waited for the lock.
    if current_version(&tx)? >= version {
        return Ok(());
    }
    tx.execute_batch(script)?;
    tx.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
        (version, SystemClock.now().0),
    )?;
    tx.commit()?;
    Ok(())
}
