//! Checkpoints beside the writer: copying the write-ahead log back into the database file on a
//! thread and connection of their own.
//!
//! SQLite checkpoints automatically in the connection whose commit takes the log past its
//! limit, inside that commit: the log's pages are copied and both files are synced, which on
//! a real disk took 45 ms in the middle of an engine's run (scenario A of `cargo xtask
//! bench`), during which the loop answered nobody and started nothing. Here a thread with its
//! own connection runs a passive checkpoint every [`EVERY`] commits of the store instead,
//! which never waits for a lock and never holds up the writer (a log can take new frames while
//! it is copied). The connection's automatic checkpoint stays as a safety net, at a limit a
//! store's ordinary batches never reach between two passes of the thread (one huge batch, an
//! import say, may).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Commits between two checkpoints: an engine's batch writes about thirteen pages, so about
/// 3,300 pages (13 MB of log) at most.
pub(crate) const EVERY: u64 = 256;

/// The commits counted since the last pass, shared with the thread.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    commits: AtomicU64,
    stop: AtomicBool,
    passes: AtomicU64,
}

/// The thread, stopped and joined when dropped.
pub(crate) struct Checkpointer {
    counter: Arc<Counter>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on `path`; `None` when its connection cannot be opened (the
    /// connection's automatic checkpoint then does the work, as SQLite's default).
    pub(crate) fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        // Never the last connection to close: the writer's close checkpoints and removes the log.
        conn.pragma_update(None, "wal_autocheckpoint", 0).ok()?;
        let counter = Arc::new(Counter::default());
        let shared = Arc::clone(&counter);
        let thread = std::thread::Builder::new()
            .name("agentgrid-ckpt".into())
            .spawn(move || {
                while !shared.stop.load(Ordering::Acquire) {
                    std::thread::park_timeout(Duration::from_secs(5));
                    if shared.commits.load(Ordering::Relaxed) >= EVERY {
                        shared.commits.store(0, Ordering::Relaxed);
                        // A passive checkpoint copies what no reader still needs and returns;
                        // a failure is left for the next pass (or the writer's own).
                        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                        shared.passes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .ok()?;
        Some(Checkpointer {
            counter,
            thread: Some(thread),
        })
    }

    /// One commit of the store; every [`EVERY`] wakes the thread.
    pub(crate) fn committed(&self) {
        if self.counter.commits.fetch_add(1, Ordering::Relaxed) + 1 == EVERY
            && let Some(thread) = &self.thread
        {
            thread.thread().unpark();
        }
    }

    /// Checkpoints the thread has run.
    #[cfg(test)]
    pub(crate) fn passes(&self) -> u64 {
        self.counter.passes.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.counter.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Change, Store};

    /// The thread checkpoints once the store committed [`EVERY`] batches, and the log is gone
    /// once the store is dropped: the writer's connection closed last.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_wake_the_thread_and_the_writer_closes_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agentgrid.db");
        let store = crate::SqliteStore::open(&path).unwrap();
        let passes = || {
            store
                .shared
                .checkpointer
                .lock()
                .unwrap()
                .as_ref()
                .expect("the thread runs")
                .passes()
        };
        for i in 0..EVERY {
            let task = domain::NewTask::titled(format!("task {i}"));
            store
                .apply("test", domain::Timestamp(1), vec![Change::CreateTask(task)])
                .await
                .unwrap();
        }
        let waited = std::time::Instant::now();
        while passes() == 0 {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "no checkpoint ran"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(store);
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        assert!(
            !Path::new(&wal).exists(),
            "the last connection to close checkpoints and removes the log"
        );
    }
}
