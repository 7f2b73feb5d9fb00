//! What a follower in another process needs to notice writes without polling: the files to
//! watch, and a check that tells another connection's commit from this one's own.

use domain::NewTask;
use store::{Change, SqliteStore, Store};

use crate::{T0, db_path};

#[tokio::test]
async fn only_another_connections_commit_counts_as_written_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let follower = SqliteStore::open(&db_path(&dir)).unwrap();
    let writer = SqliteStore::open(&db_path(&dir)).unwrap();
    assert!(
        follower.written_elsewhere().await.unwrap(),
        "the first check knows nothing yet"
    );
    assert!(!follower.written_elsewhere().await.unwrap());
    let add = || vec![Change::CreateTask(NewTask::titled("t"))];
    follower.apply("engine", T0, add()).await.unwrap();
    assert!(
        !follower.written_elsewhere().await.unwrap(),
        "its own write is not another's"
    );
    writer.apply("cli", T0, add()).await.unwrap();
    assert!(follower.written_elsewhere().await.unwrap());
    assert!(
        !follower.written_elsewhere().await.unwrap(),
        "one commit is noticed once"
    );
}

#[test]
fn the_database_its_write_ahead_log_and_the_bell_are_watched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).unwrap();
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    assert_eq!(
        store.watched_files(),
        vec![path.clone(), wal.into(), store::bell_path(&path)]
    );
}

/// Each commit rings the bell (the file is opened for writing and closed), unless the store
/// was opened not to: the engine, which follows everyone else's commits.
#[tokio::test]
async fn a_commit_rings_the_bell_unless_the_store_was_opened_quiet() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let bell = store::bell_path(&path);
    let add = || vec![Change::CreateTask(NewTask::titled("t"))];
    let quiet = SqliteStore::open_with(
        &path,
        &store::OpenOptions {
            ring_bell: false,
            ..Default::default()
        },
    )
    .unwrap();
    quiet.apply("engine", T0, add()).await.unwrap();
    assert!(!bell.exists(), "the quiet store rang");
    let loud = SqliteStore::open(&path).unwrap();
    loud.apply("cli", T0, add()).await.unwrap();
    let rung = std::fs::metadata(&bell).expect("a commit rings the bell");
    assert_eq!(rung.size(), 0, "ringing writes nothing");
}
