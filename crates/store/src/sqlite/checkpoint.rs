//! Checkpoints beside the writer: copying the write-ahead log back into the database file on a
//! thread and connection of their own, and letting the log start over.
//!
//! SQLite checkpoints automatically in the connection whose commit takes the log past its
//! limit, inside that commit: the log's pages are copied and both files are synced, which on
//! a real disk took 45 ms in the middle of an engine's run (scenario A of `cargo xtask
//! bench`), during which the loop answered nobody and started nothing. Here a thread with its
//! own connection checkpoints every [`EVERY`] commits of the store instead. The thread starts
//! at the store's [`EVERY`]th commit, so a process that only reads (most CLI commands) never
//! starts it.
//!
//! A log starts over (its next frame is written at its start again) only when a write
//! transaction begins with every frame copied. While the writer commits continuously, a
//! passive checkpoint never gets there, and the log grew to the writer's own limit (40 MB)
//! before its checkpoint let it start over. That costs more than the stall: a frame that
//! extends the file costs the file system about twice what one that overwrites it does, and
//! removing a 40 MB log when the store closes took 13-17 ms (the disk is mounted with
//! `discard`). So a round is a few passes that do not hold up the writer, each copying what
//! was committed during the one before, and a last one with the writer's connection held,
//! which copies the few frames left: the writer's next transaction then starts the log over,
//! and the log stays within about [`EVERY`] commits' frames. The held pass copies and syncs
//! what was committed during one short pass (a few commits), about a millisecond here.
//! The writer's automatic checkpoint stays as the fallback: a reader in another process can
//! keep a round from copying everything.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Commits between two rounds: an engine's batch writes about thirteen pages, so about 3,300
/// pages (13 MB of log) at most.
pub(crate) const EVERY: u64 = 256;

/// Passes in a round before the held one, at most.
const FREE_PASSES: usize = 4;

/// A round holds the writer for its last pass once fewer frames than this were committed
/// during the pass before.
const HELD_FRAMES: i64 = 128;

/// The store's side: counts commits, starts the thread when first needed, stops it on drop.
pub(crate) struct Checkpoints {
    path: PathBuf,
    /// The writer's connection: every write transaction of this store holds its lock.
    writer: Arc<Mutex<Connection>>,
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
    pub(crate) fn new(path: &Path, writer: Arc<Mutex<Connection>>) -> Checkpoints {
        Checkpoints {
            path: path.to_owned(),
            writer,
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
            *worker = Worker::start(&self.path, Arc::clone(&self.writer));
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
    fn start(path: &Path, writer: Arc<Mutex<Connection>>) -> Option<Worker> {
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
                        round(&conn, &writer);
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

/// One round (see the module's comment). A pass that fails ends the round; the next round, or
/// the writer's own checkpoint, does the work.
fn round(conn: &Connection, writer: &Mutex<Connection>) {
    let Some(mut log) = passive(conn) else { return };
    for _ in 1..FREE_PASSES {
        let Some(now) = passive(conn) else { return };
        let committed_meanwhile = now - log;
        log = now;
        if committed_meanwhile < HELD_FRAMES {
            break;
        }
    }
    let _writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
    passive(conn);
}

/// A passive checkpoint: copies what no reader still needs and returns, never waiting for a
/// lock. Returns the frames in the log when it began.
fn passive(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
        .ok()
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

    /// A log written continuously starts over after each round (its header's checkpoint
    /// sequence number counts the restarts), long before the writer's own checkpoint would
    /// let it: with passive checkpoints alone it grew with every commit, to 40 MB, each new
    /// frame extending the file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_continuously_written_log_starts_over_after_each_round() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agentgrid.db");
        let wal = dir.path().join("agentgrid.db-wal");
        let restarts = || {
            let header = std::fs::read(&wal).unwrap();
            u32::from_be_bytes(header[12..16].try_into().unwrap())
        };
        let store = crate::SqliteStore::open(&path).unwrap();
        let passes = || store.shared.checkpoints.passes();
        let commit = |i: u64| {
            let task = domain::NewTask::titled(format!("task {i}"));
            store.apply("test", domain::Timestamp(1), vec![Change::CreateTask(task)])
        };
        // Commits go on while the rounds run, at about six frames each: 1,000 of them stay
        // clear of the writer's own checkpoint at 10,000 frames. (On a machine so loaded that
        // the rounds have not ended by then, the test waits for them without committing.)
        const ROUNDS: u64 = 2;
        let mut first = None;
        let mut i = 0;
        let started = std::time::Instant::now();
        while passes() < ROUNDS {
            if i < 1_000 {
                commit(i).await.unwrap();
                first.get_or_insert_with(restarts);
                i += 1;
            } else {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{ROUNDS} rounds did not end"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // The commit after a round is the one that starts over.
        commit(i).await.unwrap();
        let frames = (std::fs::metadata(&wal).unwrap().len() - 32) / (24 + 4096);
        assert!(
            frames < super::super::WAL_AUTOCHECKPOINT as u64,
            "the test must stay clear of the writer's own checkpoint ({frames} frames)"
        );
        // Two rounds with no commit between them start it over once.
        let started_over = restarts() - first.unwrap();
        assert!(
            started_over >= 1,
            "after {ROUNDS} rounds ({i} commits) the log started over {started_over} times"
        );
    }
}
