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
    (
        3,
        include_str!("../../migrations/0003_checks_without_lists.sql"),
    ),
    (4, include_str!("../../migrations/0004_no_progress.sql")),
    (5, include_str!("../../migrations/0005_keys_and_merges.sql")),
    (6, include_str!("../../migrations/0006_providers.sql")),
    (7, include_str!("../../migrations/0007_views.sql")),
    (8, include_str!("../../migrations/0008_approvals.sql")),
    (9, include_str!("../../migrations/0009_lands.sql")),
    (10, include_str!("../../migrations/0010_workflow_runs.sql")),
    (11, include_str!("../../migrations/0011_leases.sql")),
    (12, include_str!("../../migrations/0012_messages.sql")),
    (
        14,
        include_str!("../../migrations/0014_workflow_driver.sql"),
    ),
    (15, include_str!("../../migrations/0015_handoffs.sql")),
    (17, include_str!("../../migrations/0017_area_leases.sql")),
    (
        18,
        include_str!("../../migrations/0018_escalations_and_reads.sql"),
    ),
    (19, include_str!("../../migrations/0019_remarks.sql")),
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
    let pending: Vec<_> = MIGRATIONS.iter().filter(|(v, _)| *v > found).collect();
    if pending.is_empty() {
        return Ok(());
    }
    // A script that rebuilds a table drops the old one, which foreign keys would refuse while
    // other tables point at it. They are switched off while scripts run (SQLite ignores the
    // switch inside a transaction) and every script must leave them intact: it is checked
    // before its transaction commits.
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(|e| fail("switching foreign keys off to migrate")(e.into()))?;
    let migrated = pending
        .into_iter()
        .try_for_each(|&(version, script)| apply_one(conn, version, script));
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| fail("switching foreign keys back on")(e.into()))?;
    migrated.map_err(fail("migrating the schema"))
}

fn apply_one(conn: &mut Connection, version: i64, script: &str) -> Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have applied this version while this one waited for the lock.
    if current_version(&tx)? >= version {
        return Ok(());
    }
    // Rows that already point nowhere (written with foreign keys off by some other tool) are
    // not the script's doing and must not block the upgrade; new ones must not appear.
    let dangling = |tx: &Connection| -> Result<i64, Fail> {
        Ok(
            tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?,
        )
    };
    let before = dangling(&tx)?;
    tx.execute_batch(script)?;
    let after = dangling(&tx)?;
    if after > before {
        return Err(Fail::Refused(format!(
            "schema version {version} would leave {} more row(s) pointing at rows that do not \
             exist; the database was left as it was",
            after - before
        )));
    }
    tx.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
        (version, SystemClock.now().0),
    )?;
    tx.commit()?;
    Ok(())
}
