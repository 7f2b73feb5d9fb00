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
fn the_database_and_its_write_ahead_log_are_watched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).unwrap();
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    assert_eq!(store.watched_files(), vec![path, wal.into()]);
}
