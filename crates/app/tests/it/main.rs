//! Tests of the application layer against a real SQLite store in a temporary directory.

mod approvals;
mod commands;
mod deliver;
mod land;
mod views;

use std::sync::Arc;

use app::{Actor, App};
use domain::{ManualClock, Timestamp};
use store::SqliteStore;
use tempfile::TempDir;

/// The time the tests pretend it is.
pub const T0: Timestamp = Timestamp(1_700_000_000_000);

/// An app on a fresh store, with its clock at [`T0`] and the store beside it for setting up
/// what no command makes (executions, merges).
pub struct Fixture {
    pub _dir: TempDir,
    pub store: Arc<SqliteStore>,
    pub clock: ManualClock,
    pub app: App,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(SqliteStore::open(&dir.path().join("agentgrid.db")).expect("a store"));
    let clock = ManualClock::new(T0);
    let app = App::new(store.clone(), Arc::new(clock.clone()));
    Fixture {
        _dir: dir,
        store,
        clock,
        app,
    }
}

pub fn ada() -> Actor {
    Actor::person("ada")
}
