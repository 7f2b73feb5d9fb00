//! Checkpoints beside the writer: copying the write-ahead log back into the database file on a
//! thread and connection of their own.
//!
//! SQLite checkpoints automatically in the connection whose commit takes the log past its
//! limit, inside that commit: the log's pages are copied and both files are synced, which on
//! a real disk took 45 ms in the middle of an engine's run (scenario A of `cargo xtask
//! bench`), during which the loop answered nobody and started nothing. Here a thread with its
//! own connection runs a passive checkpoint every [`EVERY`] commits of the store instead,
//! which never waits for a lock and never holds up the writer (a log can take new frames while
//! it is copied). The thread starts at the store's [`EVERY`]th commit, so a process that only
//! reads (most CLI commands) never starts it. The connection's automatic checkpoint stays: while
//! the writer commits continuously, no pass finds every frame copied, and only a checkpoint in
//! the writer lets the log start over; it still comes once per 10,000 pages, but with the pages
//! already copied its stall shrinks to the fsyncs (18 ms against 43 ms on the bench disk).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Commits between two checkpoints: an engine's batch writes about thirteen pages, so about
/// 3,300 pages (13 MB of log) at most.
pub(crate) const EVERY: u64 = 256;

/// The store's side: counts commits, starts the thread when first needed, stops it on drop.
pub(crate) struct Checkpoints {
    path: PathBuf,
    commits: AtomicU64,
    worker: Mutex<Option<Worker>>,
    /// The thread could not be started (its connection failed to open): the writer's own
    /// automatic checkpoint does the work, as SQLite's default.
    unavailable: AtomicBool,
}

/// The running thread.
struct Worker {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Signal {
    due: AtomicBool,
    stop: AtomicBool,
    passes: AtomicU64,
}

impl Checkpoints {
    pub(crate) fn new(path: &Path) -> Checkpoints {
        Checkpoints {
            path: path.to_owned(),
            commits: AtomicU64::new(0),
            worker: Mutex::new(None),
            unavailable: AtomicBool::new(false),
        }
    }

    /// One commit of the store; every [`EVERY`]th asks the thread for a pass.
    pub(crate) fn committed(&self) {
        if !(self.commits.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(EVERY)
            || self.unavailable.load(Ordering::Relaxed)
        {
            return;
        }
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if worker.is_none() {
            *worker = Worker::start(&self.path);
            if worker.is_none() {
                self.unavailable.store(true, Ordering::Relaxed);
            }
        }
        if let Some(worker) = &*worker {
            worker.signal.due.store(true, Ordering::Release);
            if let Some(thread) = &worker.thread {
                thread.thread().unpark();
            }
        }
    }

    /// Stops the thread and closes its connection, so that the writer's is the last of this
    /// store's to close (and checkpoints and removes the log).
    pub(crate) fn stop(&self) {
        drop(
            self.worker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Checkpoints the thread has run.
    #[cfg(test)]
    pub(crate) fn passes(&self) -> u64 {
        self.worker
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |w| w.signal.passes.load(Ordering::Relaxed))
    }
}

impl Worker {
    fn start(path: &Path) -> Option<Worker> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        conn.pragma_update(None, "wal_autocheckpoint", 0).ok()?;
        let signal = Arc::new(Signal::default());
        let shared = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("agentgrid-ckpt".into())
            .spawn(move || {
                while !shared.stop.load(Ordering::Acquire) {
                    if shared.due.swap(false, Ordering::AcqRel) {
                        // A passive checkpoint copies what no reader still needs and returns;
                        // a failure is left for the next pass (or the writer's own).
                        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                        shared.passes.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::park_timeout(Duration::from_secs(5));
                }
            })
            .ok()?;
        Some(Worker {
            signal,
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.signal.stop.store(true, Ordering::Release);
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

    /// No thread runs before the store's [`EVERY`]th commit; then it checkpoints, and the log is
    /// gone once the store is dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_wake_the_thread_and_the_writer_closes_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agentgrid.db");
        let store = crate::SqliteStore::open(&path).unwrap();
        let passes = || store.shared.checkpoints.passes();
        assert_eq!(passes(), 0);
        for i in 0..EVERY {
            let started = store.shared.checkpoints.worker.lock().unwrap().is_some();
            assert!(!started, "the thread started after {i} commits");
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
