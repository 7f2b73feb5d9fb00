//! `SqliteStore`: the [`Store`] on one SQLite file, shared by the engine and CLI processes.

mod apply;
mod area_leases;
mod cache;
mod checkpoint;
mod messages;
mod metrics;
mod migrate;
mod rows;
mod steps;
mod usage;
mod workflows;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, mpsc};

use async_trait::async_trait;
use domain::{EntityKind, Event, Execution, ExecutionId, Task, TaskId, TaskState, Timestamp};
use rusqlite::config::DbConfig;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, TransactionBehavior, params_from_iter};

use crate::{
    Applied, Change, Error, ExecutionFilter, KeyedCall, Merge, ModelUsage, Store, TaskFilter,
    UsageScope,
};
use rows::{ACTIVE_SQL, EXECUTION_COLUMNS, Fail, TASK_COLUMNS};

/// How long a writer waits for another process's write transaction before giving up, unless
/// [`OpenOptions`] say otherwise.
pub const DEFAULT_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Pages written to the WAL before a commit copies them back into the database file. Each
/// checkpoint costs two fsyncs, which dominate the time of small transactions; SQLite's default
/// of 1000 pages made `apply` about twice as slow. 10000 pages bound the WAL to about 40 MB.
/// The checkpoint thread (`checkpoint.rs`) copies most pages before this limit comes; the
/// writer's own checkpoint at it is what lets a continuously written log start over.
const WAL_AUTOCHECKPOINT: i64 = 10_000;

/// Enough room for every statement the store prepares, including a few shapes of task filter.
const STATEMENT_CACHE: usize = 64;

/// Turns off SQLite's initial bulk allocation for page caches, once per process, before the
/// first connection is opened.
///
/// SQLite checks a constant `IN (...)` list of more than two values (as the CHECK constraints
/// and the partial index of schema versions 1 and 2 did, and task filters by state still do)
/// with a temporary b-tree built for the statement. Each temporary b-tree starts a page cache of its
/// own with a bulk allocation of 20 pages (about 85 KB) and frees it when the statement ends;
/// glibc hands that memory back to the kernel and takes it again at the next statement, page
/// fault by page fault. Every state change runs three such checks, so this churn was most of
/// the cost of a write: an execution's closing batch took about 230 µs with the bulk allocation
/// and 80 µs without it. Pages are then allocated one at a time as they are needed, which is
/// what SQLite does anyway once the bulk is used up.
///
/// The setting is global to the process and can only be made before SQLite initialises itself.
/// If something else in the process used SQLite first, SQLite refuses it (`SQLITE_MISUSE`), and
/// the store works as before, only slower.
fn configure_sqlite_once() {
    static CONFIGURE: std::sync::Once = std::sync::Once::new();
    CONFIGURE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_PAGECACHE takes a pointer, the size of a cache line and the
        // number of lines; a null pointer with zero lines asks for no preallocated memory and
        // no bulk allocation. `call_once` keeps every connection the store opens from starting
        // while the call runs, and SQLite itself rejects the call once initialised.
        let _ = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<std::ffi::c_void>(),
                0 as std::ffi::c_int,
                0 as std::ffi::c_int,
            )
        };
    });
}

/// Puts the file in WAL mode (a no-op when it already is) and returns the mode it is in.
///
/// On a fresh file the switch needs the file to itself. When several processes open the same
/// fresh file at once, SQLite answers the ones that would otherwise wait on each other with
/// `SQLITE_BUSY` at once, without calling the busy handler, so the switch is retried here
/// until `timeout`.
fn switch_to_wal(conn: &Connection, timeout: std::time::Duration) -> rusqlite::Result<String> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < timeout =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// The SQLite implementation of [`Store`].
///
/// The connection is served by a thread of its own: a call is a job sent to that thread, whose
/// answer the async method awaits. SQLite calls block: for well under a millisecond usually,
/// but for as long as the busy timeout when another process holds the write lock (a long `task
/// import`, a database browser). On the caller's thread that would stall an async worker, and
/// with it every task scheduled there; on its own thread it stalls nothing but the store's
/// callers, which await it. The thread serves jobs in order, so a read sent after a write sees
/// it. The hand-off wakes two threads per call, which on a small virtual machine costs a few
/// tens of microseconds (see the `store_latency` example), as much as a small batch itself.
///
/// So a batch that can take the write lock at once is applied on the caller's thread instead:
/// when no job is queued for the thread and the connection is free, [`Store::apply`] tries
/// `BEGIN IMMEDIATE` without waiting, and only when another process holds the lock does the
/// batch go to the thread, which waits for it as before. Once the lock is held nothing in the
/// batch waits for another process (in WAL mode readers never block the writer, and the
/// automatic checkpoint after a commit is passive), so no async worker is stalled by another
/// process. rusqlite was chosen over sqlx for SQLite because its transactions are synchronous
/// and cheap: a batch is one job, while sqlx's driver hops threads for every statement.
///
/// Several processes open the same file at once (the engine and CLI commands). The file is in
/// WAL mode so readers never block the writer, and every write transaction starts with
/// `BEGIN IMMEDIATE`, taking the write lock up front: a transaction that read first and asked
/// for the lock later could fail with a busy error that waiting cannot cure. A write that waits
/// longer than the busy timeout fails with [`Error::Busy`], which writes nothing; trying again
/// is always safe. A call whose future is dropped before its answer still runs to its end.
pub struct SqliteStore {
    /// Jobs for the thread that serves the connection; `None` only while the store is dropped.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    place: Arc<Place>,
    shared: Arc<Shared>,
}

/// The connection, and how many jobs wait for the thread or run there.
struct Shared {
    /// Shared with the checkpoint thread, which holds it for the last pass before the log
    /// starts over (see `checkpoint.rs`).
    conn: Arc<Mutex<Connection>>,
    /// Counted up before a job is sent and down once it ran: while it is above zero, a batch
    /// on the caller's thread could overtake a call made before it.
    queued: AtomicUsize,
    /// `PRAGMA data_version` when [`Store::written_elsewhere`] last read it: it changes when
    /// another connection commits, and never for this connection's own writes.
    data_version: AtomicI64,
    /// The rows this connection last committed, for the next batch (see `cache.rs`).
    rows: Mutex<cache::RowCache>,
    /// Checkpoints beside the writer (see `checkpoint.rs`), stopped when the store is dropped.
    checkpoints: checkpoint::Checkpoints,
    /// The bell each commit rings, unless the store was opened not to (see [`bell_path`]).
    bell: Option<PathBuf>,
}

/// Work for the connection's thread. It sends its own answer, so one kind of job serves the
/// async methods (a oneshot) and the blocking ones (a std channel).
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// How to open a [`SqliteStore`]. `OpenOptions::default()` is what [`SqliteStore::open`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    /// How long a write waits for another process to release the write lock before it fails
    /// with [`Error::Busy`].
    pub busy_timeout: std::time::Duration,
    /// Whether each commit rings the bell that a follower in another process watches (see
    /// [`bell_path`]). Off only for the follower itself, the engine: it knows its own writes,
    /// and a ring it watched would wake it for each of them.
    pub ring_bell: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            ring_bell: true,
        }
    }
}

/// The file beside the database that every commit rings, by opening it for writing and
/// closing it (an `IN_CLOSE_WRITE` for a follower's inotify watch), so that a follower can
/// notice another process's commit without being woken by every write to the log: the
/// engine's own commits write about thirteen frames each, and a watch that took every one
/// cost about a quarter of what writing them cost (the kernel queues an event per write).
pub fn bell_path(database: &Path) -> PathBuf {
    let mut bell = database.as_os_str().to_owned();
    bell.push("-bell");
    PathBuf::from(bell)
}

/// Rings the bell at `path`; a bell that cannot be rung is left (a follower also polls).
fn ring(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
}

/// Where the store lives and how long it waits: what every error message needs.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    path: PathBuf,
    busy_timeout: std::time::Duration,
}

impl Place {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The answer to a call whose job never answered: it panicked on the connection's thread
    /// (which carries on with the next job).
    fn stopped(&self, action: &'static str) -> Error {
        Error::Database {
            path: self.path.clone(),
            action,
            source: "the call panicked on the thread that owns the connection".into(),
        }
    }

    /// Adds the position and name of the change that failed.
    fn change_error(&self, fail: Fail, index: usize, change: &'static str) -> Error {
        match fail {
            Fail::Refused(reason) => Error::Refused {
                index,
                change,
                reason,
            },
            Fail::AlreadyActive { task, execution } => Error::AlreadyActive {
                index,
                task,
                execution,
            },
            Fail::AlreadyFinished { execution, state } => Error::AlreadyFinished {
                index,
                execution,
                state,
            },
            Fail::Stale { execution, why } => Error::Stale {
                index,
                change,
                execution,
                why,
            },
            other => self.error("applying changes", other),
        }
    }

    /// Turns an internal failure that is not tied to one change of a batch into an [`Error`].
    pub(crate) fn error(&self, action: &'static str, fail: Fail) -> Error {
        let path = self.path.clone();
        match fail {
            Fail::Sql(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) =>
            {
                let waited_ms = u64::try_from(self.busy_timeout.as_millis()).unwrap_or(u64::MAX);
                Error::Busy {
                    path,
                    action,
                    waited_ms,
                }
            }
            Fail::Sql(e) => Error::Database {
                path,
                action,
                source: Box::new(e),
            },
            Fail::Corrupt(detail) => Error::Corrupt { path, detail },
            // Refusals arise only while applying a batch, where `Place::change_error` maps
            // them with the change's index before they could reach here; index 0 is the only
            // sensible fallback.
            Fail::Refused(reason) => Error::Refused {
                index: 0,
                change: "unknown",
                reason,
            },
            Fail::AlreadyActive { task, execution } => Error::AlreadyActive {
                index: 0,
                task,
                execution,
            },
            Fail::AlreadyFinished { execution, state } => Error::AlreadyFinished {
                index: 0,
                execution,
                state,
            },
            Fail::Stale { execution, why } => Error::Stale {
                index: 0,
                change: "unknown",
                execution,
                why,
            },
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.place.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path` with the default [`OpenOptions`], creating the file when it
    /// is missing, and brings its schema up to date. Fails with [`Error::TooNew`] on a file
    /// written by a newer build.
    pub fn open(path: &Path) -> Result<SqliteStore, Error> {
        SqliteStore::open_with(path, &OpenOptions::default())
    }

    /// Like [`SqliteStore::open`], with explicit options.
    pub fn open_with(path: &Path, options: &OpenOptions) -> Result<SqliteStore, Error> {
        let place = Place {
            path: path.to_owned(),
            busy_timeout: options.busy_timeout,
        };
        let db = |action: &'static str| {
            let place = &place;
            move |e: rusqlite::Error| place.error(action, e.into())
        };
        configure_sqlite_once();
        let mut conn = Connection::open(path).map_err(db("opening the file"))?;
        // The timeout comes first so that switching to WAL waits for other openers too.
        conn.busy_timeout(options.busy_timeout)
            .map_err(db("setting the busy timeout"))?;
        let mode =
            switch_to_wal(&conn, options.busy_timeout).map_err(db("switching to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Database {
                path: path.to_owned(),
                action: "switching to WAL mode",
                source: format!(
                    "SQLite kept journal mode `{mode}`; the file must be on a local file system \
                     that supports WAL"
                )
                .into(),
            });
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db("setting synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db("enabling foreign keys"))?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)
            .map_err(db("setting the checkpoint interval"))?;
        // With the query planner stability guarantee on, SQLite no longer re-compiles a
        // statement each time a new id is bound to it, which it otherwise does for every query
        // that could use the partial index on executions: a large cost on the hot path.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(db("configuring the query planner"))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate::run(&mut conn, &place)?;
        let conn = Arc::new(Mutex::new(conn));
        let shared = Arc::new(Shared {
            checkpoints: checkpoint::Checkpoints::new(path, Arc::clone(&conn)),
            data_version: AtomicI64::new(0),
            rows: Mutex::default(),
            conn,
            queued: AtomicUsize::new(0),
            bell: options.ring_bell.then(|| bell_path(path)),
        });
        let (jobs, queue) = mpsc::channel::<Job>();
        let served = Arc::clone(&shared);
        let busy_timeout = options.busy_timeout;
        let thread = std::thread::Builder::new()
            .name("agentgrid-db".into())
            .spawn(move || {
                // Ends when the store is dropped: the last sender goes and `recv` fails.
                while let Ok(job) = queue.recv() {
                    let mut conn = served.lock();
                    // A batch tried on a caller's thread may have left it at zero.
                    let _ = conn.busy_timeout(busy_timeout);
                    job(&mut conn);
                    drop(conn);
                    served.queued.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .map_err(|e| Error::Database {
                path: path.to_owned(),
                action: "starting the database thread",
                source: Box::new(e),
            })?;
        Ok(SqliteStore {
            jobs: Some(jobs),
            thread: Some(thread),
            place: Arc::new(place),
            shared,
        })
    }

    /// The file this store was opened on.
    pub fn path(&self) -> &Path {
        self.place.path()
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, Error> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.submit(move |conn, place| {
            let _ = reply.send(
                migrate::current_version(conn)
                    .map_err(|e| place.error("reading the schema version", e)),
            );
        });
        answer
            .recv()
            .unwrap_or_else(|_| Err(self.place.stopped("reading the schema version")))
    }

    /// Sends `job` to the connection's thread. A panic in the job is caught there, so the
    /// thread outlives it; the job's answer channel is dropped unanswered and the caller
    /// learns of it. (A transaction open at the panic is rolled back as it unwinds.)
    fn submit(&self, job: impl FnOnce(&mut Connection, &Place) + Send + 'static) {
        let place = Arc::clone(&self.place);
        let job: Job = Box::new(move |conn| {
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(conn, &place)));
        });
        if let Some(jobs) = &self.jobs {
            self.shared.queued.fetch_add(1, Ordering::SeqCst);
            // A send fails only when the thread has gone, which the unanswered job reports.
            if jobs.send(job).is_err() {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Applies `changes` on the caller's thread if that needs no waiting: nothing is queued
    /// for the connection's thread, the connection is free, and the write lock can be taken at
    /// once. Otherwise hands `changes` back, to be sent to the thread.
    fn apply_here(
        &self,
        actor: &str,
        now: Timestamp,
        changes: Vec<Change>,
    ) -> Result<Result<Applied, Error>, Vec<Change>> {
        if self.shared.queued.load(Ordering::SeqCst) != 0 {
            return Err(changes);
        }
        let mut conn = match self.shared.conn.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(changes),
        };
        // The lock is tried without SQLite's busy wait; the thread waits for it instead.
        if conn.busy_timeout(std::time::Duration::ZERO).is_err() {
            return Err(changes);
        }
        let place = &self.place;
        let begun = conn.transaction_with_behavior(TransactionBehavior::Immediate);
        let tx = match begun {
            Ok(tx) => tx,
            // The thread sets the busy timeout again before each of its jobs.
            Err(e) => {
                return match e.sqlite_error_code() {
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Err(changes),
                    _ => Ok(Err(place.error("starting a write transaction", e.into()))),
                };
            }
        };
        if let Err(e) = tx.busy_timeout(place.busy_timeout) {
            return Ok(Err(place.error("setting the busy timeout", e.into())));
        }
        // As on the thread, a panic in the batch is an error for the caller, and the
        // transaction is rolled back as it unwinds.
        let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
            fill_batch(tx, place, &self.shared, actor, now, changes)
        }));
        Ok(applied.unwrap_or_else(|_| Err(place.stopped("applying changes"))))
    }

    /// Runs `job` on the connection's thread and awaits its answer.
    async fn run<T: Send + 'static>(
        &self,
        action: &'static str,
        job: impl FnOnce(&mut Connection, &Place) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(move |conn, place| {
            let _ = reply.send(job(conn, place));
        });
        answer
            .await
            .unwrap_or_else(|_| Err(self.place.stopped(action)))
    }

    /// Runs a short read on the caller's thread when that needs no waiting, and on the
    /// connection's thread otherwise.
    ///
    /// Like a batch (see [`SqliteStore`]), a read is answered here when nothing is queued for
    /// the thread (so it overtakes no call made before it) and the connection is free. A read
    /// in WAL mode waits for no other process's write; in the rare cases where SQLite would
    /// wait all the same (another connection recovering the log after a crash), it is tried
    /// without SQLite's busy wait, and on `SQLITE_BUSY` it goes to the thread, which waits.
    /// The hand-off to the thread wakes two threads, about 25 µs on the bench machine, more
    /// than a read by key costs itself, and the engine makes several per execution. Only reads
    /// bounded by a key or a limit come here: a long one would hold up an async worker.
    async fn quick_read<T: Send + 'static>(
        &self,
        action: &'static str,
        f: impl Fn(&Connection) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, Error> {
        if let Some(answer) = self.read_here(action, &f) {
            return answer;
        }
        self.read(action, f).await
    }

    /// The read of [`SqliteStore::quick_read`] on the caller's thread, or `None` when it must
    /// go to the connection's thread.
    fn read_here<T>(
        &self,
        action: &'static str,
        f: &impl Fn(&Connection) -> Result<T, Fail>,
    ) -> Option<Result<T, Error>> {
        if self.shared.queued.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let conn = match self.shared.conn.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        conn.busy_timeout(std::time::Duration::ZERO).ok()?;
        let answer = std::panic::catch_unwind(AssertUnwindSafe(|| f(&conn)));
        // The thread sets it again before each of its jobs, but a batch on a caller's thread
        // takes the connection as it finds it.
        let _ = conn.busy_timeout(self.place.busy_timeout);
        match answer {
            Ok(Err(Fail::Sql(e)))
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) =>
            {
                None
            }
            Ok(answer) => Some(answer.map_err(|e| self.place.error(action, e))),
            Err(_) => Some(Err(self.place.stopped(action))),
        }
    }

    /// Runs a read on the connection's thread.
    async fn read<T: Send + 'static>(
        &self,
        action: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, Error> {
        self.run(action, move |conn, place| {
            f(conn).map_err(|e| place.error(action, e))
        })
        .await
    }

    /// The tasks of a filtered list that `rows` selects, in id order.
    async fn task_rows(&self, filter: &TaskFilter, rows: TaskRows) -> Result<Vec<Task>, Error> {
        let (sql, values) = task_query(filter, rows);
        self.read("listing tasks", move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(values), rows::task_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        // Jobs catch their own panics, so the lock is never poisoned by one; if it were, the
        // connection is still sound (SQLite rolls back an unfinished transaction).
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // The checkpoint thread's connection closes first, so that the writer's is the last
        // of this store's to close.
        self.shared.checkpoints.stop();
        // Closing the queue lets the thread finish the jobs already sent and close the
        // connection, which checkpoints the WAL when no other connection is open. Waiting for
        // it means a file dropped here can be opened, copied or removed at once.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Applies one batch in one `BEGIN IMMEDIATE` transaction on `conn`.
fn apply_batch(
    conn: &mut Connection,
    place: &Place,
    shared: &Shared,
    actor: &str,
    now: Timestamp,
    changes: Vec<Change>,
) -> Result<Applied, Error> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| place.error("starting a write transaction", e.into()))?;
    fill_batch(tx, place, shared, actor, now, changes)
}

/// Applies one batch in `tx`, a write transaction just begun, and commits it.
fn fill_batch(
    tx: rusqlite::Transaction<'_>,
    place: &Place,
    shared: &Shared,
    actor: &str,
    now: Timestamp,
    changes: Vec<Change>,
) -> Result<Applied, Error> {
    let mut cache = shared.rows.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .check(&tx)
        .map_err(|e| place.error("reading the data version", e))?;
    let mut batch = apply::Batch::new(&tx, &cache, actor, now);
    for (index, change) in changes.iter().enumerate() {
        // On error the transaction is dropped unfinished, which rolls the whole batch back.
        batch
            .apply(index, change)
            .map_err(|e| place.change_error(e, index, change.name()))?;
    }
    batch.write_back().map_err(|(e, index)| match index {
        Some(index) => place.change_error(e, index, changes[index].name()),
        None => place.error("applying changes", e),
    })?;
    let (read_tasks, read_executions) = batch.take_loaded();
    let applied = batch.applied();
    tx.commit()
        .map_err(|e| place.error("committing changes", e.into()))?;
    cache.committed(&applied, read_tasks, read_executions);
    shared.checkpoints.committed();
    if let Some(bell) = &shared.bell {
        ring(bell);
    }
    Ok(applied)
}

/// Builds the query for a task filter, of the `newest` matching tasks when given. Values are
/// bound, never spliced into the SQL.
/// Which rows of a filtered task list a query reads.
enum TaskRows {
    /// Every match.
    All,
    /// The `n` newest matches.
    Newest(u32),
    /// At most `n` matches with ids above the first field's: one page of a keyset walk.
    After(Option<TaskId>, u32),
}

fn task_query(filter: &TaskFilter, rows: TaskRows) -> (String, Vec<Value>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let TaskRows::After(Some(after), _) = rows {
        clauses.push("id > ?".into());
        values.push(Value::Integer(after.0));
    }
    if !filter.states.is_empty() {
        let marks = vec!["?"; filter.states.len()].join(", ");
        clauses.push(format!("state IN ({marks})"));
        values.extend(
            filter
                .states
                .iter()
                .map(|s| Value::Text(s.as_str().to_owned())),
        );
    }
    match filter.parent {
        None => {}
        Some(None) => clauses.push("parent IS NULL".into()),
        Some(Some(parent)) => {
            clauses.push("parent = ?".into());
            values.push(Value::Integer(parent.0));
        }
    }
    for label in &filter.labels {
        clauses.push("EXISTS (SELECT 1 FROM json_each(tasks.labels) l WHERE l.value = ?)".into());
        values.push(Value::Text(label.clone()));
    }
    if let Some(root) = filter.root {
        clauses.push("root = ?".into());
        values.push(Value::Integer(root.0));
    }
    let condition = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let sql = match rows {
        // Walked backwards along the primary key (or the state index of migration 7), so the
        // query stops after `limit` rows; handed back oldest first like every other list.
        TaskRows::Newest(limit) => {
            values.push(Value::Integer(i64::from(limit)));
            format!(
                "SELECT * FROM (SELECT {TASK_COLUMNS} FROM tasks{condition} \
                 ORDER BY id DESC LIMIT ?) ORDER BY id"
            )
        }
        // Starts along the same key where the last page ended, so every page costs alike.
        TaskRows::After(_, limit) => {
            values.push(Value::Integer(i64::from(limit)));
            format!("SELECT {TASK_COLUMNS} FROM tasks{condition} ORDER BY id LIMIT ?")
        }
        TaskRows::All => format!("SELECT {TASK_COLUMNS} FROM tasks{condition} ORDER BY id"),
    };
    (sql, values)
}

fn execution_query(filter: &ExecutionFilter) -> (String, Vec<Value>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(task) = filter.task {
        clauses.push("task_id = ?".into());
        values.push(Value::Integer(task.0));
    }
    if filter.active_only {
        clauses.push(ACTIVE_SQL.to_string());
    }
    let condition = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let sql = match filter.limit {
        // The most recent `limit` executions, handed back oldest first like every other list.
        Some(limit) => {
            values.push(Value::Integer(i64::from(limit)));
            format!(
                "SELECT * FROM (SELECT {EXECUTION_COLUMNS} FROM executions{condition} \
                 ORDER BY id DESC LIMIT ?) ORDER BY id"
            )
        }
        None => format!("SELECT {EXECUTION_COLUMNS} FROM executions{condition} ORDER BY id"),
    };
    (sql, values)
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply(
        &self,
        actor: &str,
        now: Timestamp,
        changes: Vec<Change>,
    ) -> Result<Applied, Error> {
        let changes = match self.apply_here(actor, now, changes) {
            Ok(applied) => return applied,
            Err(changes) => changes,
        };
        let actor = actor.to_owned();
        let shared = Arc::clone(&self.shared);
        self.run("applying changes", move |conn, place| {
            apply_batch(conn, place, &shared, &actor, now, changes)
        })
        .await
    }

    async fn task(&self, id: TaskId) -> Result<Option<Task>, Error> {
        self.quick_read("reading a task", move |c| rows::load_task(c, id))
            .await
    }

    async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, Error> {
        self.task_rows(filter, TaskRows::All).await
    }

    async fn children(&self, id: TaskId) -> Result<Vec<Task>, Error> {
        self.tasks(&TaskFilter {
            parent: Some(Some(id)),
            ..TaskFilter::default()
        })
        .await
    }

    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, Error> {
        self.quick_read("reading an execution", move |c| rows::load_execution(c, id))
            .await
    }

    async fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, Error> {
        let (sql, values) = execution_query(filter);
        let list = move |c: &Connection| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(values.iter()), rows::execution_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        // One task's executions are few; every execution of the store may be very many.
        if filter.task.is_some() {
            self.quick_read("listing executions", list).await
        } else {
            self.read("listing executions", list).await
        }
    }

    async fn events_after(&self, seq: u64, limit: u32) -> Result<Vec<Event>, Error> {
        self.read("reading events", move |c| rows::events_after(c, seq, limit))
            .await
    }

    async fn entity_events(&self, entity: EntityKind, id: i64) -> Result<Vec<Event>, Error> {
        self.quick_read("reading events", move |c| {
            rows::entity_events(c, entity, id)
        })
        .await
    }

    async fn last_seq(&self) -> Result<u64, Error> {
        self.read("reading the last event number", rows::last_seq)
            .await
    }

    fn watched_files(&self) -> Vec<PathBuf> {
        let mut wal = self.place.path.clone().into_os_string();
        wal.push("-wal");
        vec![
            self.place.path.clone(),
            PathBuf::from(wal),
            bell_path(&self.place.path),
        ]
    }

    async fn written_elsewhere(&self) -> Result<bool, Error> {
        fn check(c: &Connection, shared: &Shared) -> Result<bool, Fail> {
            let version: i64 = c
                .prepare_cached("PRAGMA data_version")?
                .query_row([], |r| r.get(0))?;
            Ok(shared.data_version.swap(version, Ordering::Relaxed) != version)
        }
        const ACTION: &str = "reading the data version";
        // The engine asks after each burst of its own writes, so the question is answered on
        // the caller's thread when the connection is free: it waits for no other process (a
        // WAL read never blocks), and the hand-off to the thread would cost more than it.
        if self.shared.queued.load(Ordering::SeqCst) == 0
            && let Ok(conn) = self.shared.conn.try_lock()
        {
            return check(&conn, &self.shared).map_err(|e| self.place.error(ACTION, e));
        }
        let shared = Arc::clone(&self.shared);
        self.read(ACTION, move |c| check(c, &shared)).await
    }

    async fn model_usage(&self, scope: &UsageScope) -> Result<ModelUsage, Error> {
        let scope = scope.clone();
        self.read("summing model usage", move |c| usage::total(c, &scope))
            .await
    }

    async fn model_usage_grouped(
        &self,
        by: crate::UsageGroup,
    ) -> Result<Vec<crate::UsageGroupSum>, Error> {
        self.read("summing model usage", move |c| usage::grouped(c, by))
            .await
    }

    async fn providers(&self) -> Result<Vec<crate::ProviderStanding>, Error> {
        self.read("reading providers", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, paused_until, pause_reason, paused_by, concurrency, updated_at
                 FROM providers ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(crate::ProviderStanding {
                    name: r.get(0)?,
                    paused_until: r.get::<_, Option<i64>>(1)?.map(Timestamp),
                    pause_reason: r.get(2)?,
                    paused_by: r.get::<_, Option<i64>>(3)?.map(ExecutionId),
                    concurrency: r.get(4)?,
                    updated_at: Timestamp(r.get(5)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn model_usage_by_model(
        &self,
        scope: &UsageScope,
    ) -> Result<Vec<(String, ModelUsage)>, Error> {
        let scope = scope.clone();
        self.read("summing model usage", move |c| usage::by_model(c, &scope))
            .await
    }

    async fn call_key(
        &self,
        task: TaskId,
        op: &str,
        key: &str,
    ) -> Result<Option<KeyedCall>, Error> {
        let (op, key) = (op.to_owned(), key.to_owned());
        self.quick_read("reading a call key", move |c| {
            steps::call_key(c, task, &op, &key)
        })
        .await
    }

    async fn land(&self, task: TaskId) -> Result<Option<crate::Land>, Error> {
        self.read("reading a land", move |c| steps::land(c, task))
            .await
    }

    async fn approval(&self, id: domain::ApprovalId) -> Result<Option<domain::Approval>, Error> {
        self.read("reading an approval", move |c| steps::approval(c, id))
            .await
    }

    async fn message(&self, id: domain::MessageId) -> Result<Option<domain::Message>, Error> {
        self.read("reading a message", move |c| messages::message(c, id))
            .await
    }

    async fn messages(&self, filter: &crate::MessageFilter) -> Result<Vec<domain::Message>, Error> {
        let filter = filter.clone();
        self.read("listing messages", move |c| messages::list(c, &filter))
            .await
    }

    async fn inbox(
        &self,
        receivers: &[String],
        execution: Option<ExecutionId>,
        reader: Option<&str>,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<domain::Message>, Error> {
        let receivers = receivers.to_vec();
        let reader = reader.map(str::to_string);
        self.quick_read("reading an inbox", move |c| {
            messages::inbox(c, &receivers, execution, reader.as_deref(), now, limit)
        })
        .await
    }

    async fn open_escalations(
        &self,
        receiver: &domain::Receiver,
        limit: u32,
    ) -> Result<Vec<domain::Message>, Error> {
        let receiver = receiver.to_string();
        self.quick_read("reading open escalations", move |c| {
            messages::open_escalations(c, &receiver, limit)
        })
        .await
    }

    async fn remarked_tasks(&self) -> Result<Option<Vec<TaskId>>, Error> {
        self.read("listing the tasks with remarks", |c| {
            rows::remarked_tasks(c).map(Some)
        })
        .await
    }

    async fn any_open_message(&self) -> Result<bool, Error> {
        self.quick_read("looking for open messages", messages::any_open)
            .await
    }

    async fn open_escalation_count(&self) -> Result<u64, Error> {
        self.quick_read("counting open escalations", messages::open_escalation_count)
            .await
    }

    async fn messages_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::MessageSweep>, Error> {
        self.quick_read("finding messages to sweep", move |c| {
            messages::due(c, now, limit)
        })
        .await
    }

    async fn area_leases(
        &self,
        filter: &crate::AreaLeaseFilter,
    ) -> Result<Vec<domain::AreaLease>, Error> {
        let filter = *filter;
        self.read("listing area leases", move |c| {
            area_leases::list(c, &filter)
        })
        .await
    }

    async fn agent_metrics(
        &self,
        since: Option<Timestamp>,
    ) -> Result<Vec<crate::AgentMetrics>, Error> {
        self.read("summing the agency metrics", move |c| {
            metrics::agent_metrics(c, since)
        })
        .await
    }

    async fn area_leases_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<domain::AreaLease>, Error> {
        self.read("finding area leases that ran out", move |c| {
            area_leases::due(c, now, limit)
        })
        .await
    }

    async fn workflow_run(
        &self,
        id: domain::WorkflowId,
    ) -> Result<Option<tracker::WorkflowRun>, Error> {
        self.read("reading a workflow run", move |c| workflows::run(c, id))
            .await
    }

    async fn workflow_runs(
        &self,
        filter: &crate::WorkflowFilter,
    ) -> Result<Vec<tracker::WorkflowRun>, Error> {
        let filter = *filter;
        self.read("listing workflow runs", move |c| {
            workflows::runs(c, &filter)
        })
        .await
    }

    async fn approvals(
        &self,
        filter: &crate::ApprovalFilter,
    ) -> Result<Vec<domain::Approval>, Error> {
        let filter = *filter;
        self.read("listing approvals", move |c| steps::approvals(c, &filter))
            .await
    }

    async fn unfinished_merges(&self, parent: Option<TaskId>) -> Result<Vec<Merge>, Error> {
        let list = move |c: &Connection| steps::unfinished_merges(c, parent);
        // The merges into one parent are few; every merge due in the store may be many.
        if parent.is_some() {
            self.quick_read("listing merges", list).await
        } else {
            self.read("listing merges", list).await
        }
    }

    async fn task_counts(&self) -> Result<Vec<(TaskState, u64)>, Error> {
        self.read("counting tasks", |c| {
            // Answered from the `tasks_by_state` index alone (migration 7).
            let mut stmt = c.prepare_cached(
                "SELECT state, COUNT(*) FROM tasks GROUP BY state ORDER BY state",
            )?;
            let rows = stmt.query_map([], |r| {
                let state: String = r.get(0)?;
                let count: i64 = r.get(1)?;
                Ok((state, count))
            })?;
            let mut counts = Vec::new();
            for row in rows {
                let (state, count) = row?;
                let state: TaskState = state
                    .parse()
                    .map_err(|e: String| Fail::Corrupt(format!("a task's state: {e}")))?;
                counts.push((state, u64::try_from(count).unwrap_or(0)));
            }
            Ok(counts)
        })
        .await
    }

    async fn newest_tasks(&self, filter: &TaskFilter, limit: u32) -> Result<Vec<Task>, Error> {
        self.task_rows(filter, TaskRows::Newest(limit)).await
    }

    async fn tasks_after(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<Vec<Task>, Error> {
        self.task_rows(filter, TaskRows::After(after, limit)).await
    }

    async fn tasks_with_timers(&self, limit: u32) -> Result<Vec<Task>, Error> {
        self.read("listing timers", move |c| {
            // Reads the open and waiting tasks along the state index (migration 7): the cost
            // grows with the backlog, not with every task ever made.
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE (state = 'open' OR state = 'waiting') \
                 AND not_before IS NOT NULL ORDER BY not_before, id LIMIT ?1"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([i64::from(limit)], rows::task_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn tasks_handed_off(&self, limit: u32) -> Result<(Vec<Task>, u64), Error> {
        self.read("listing handed-off tasks", move |c| {
            // Along the state index (migration 7), over the unfinished tasks only: the cost
            // grows with the backlog, not with every task ever handed off.
            const OPEN: &str = "state IN ('open', 'running', 'waiting', 'blocked') \
                                AND handoff IS NOT NULL";
            let sql = format!(
                "SELECT * FROM (SELECT {TASK_COLUMNS} FROM tasks WHERE {OPEN} \
                 ORDER BY id DESC LIMIT ?1) ORDER BY id"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([i64::from(limit)], rows::task_from_row)?;
            let tasks: Vec<Task> = rows.collect::<Result<_, _>>()?;
            let total: i64 = c.query_row(
                &format!("SELECT COUNT(*) FROM tasks WHERE {OPEN}"),
                [],
                |r| r.get(0),
            )?;
            Ok((tasks, u64::try_from(total).unwrap_or(0)))
        })
        .await
    }

    async fn tasks_with_failed_merge(&self, limit: u32) -> Result<Vec<Task>, Error> {
        self.read("listing failed merges", move |c| {
            // The condition of the partial index `tasks_merge_failed` (migration 7).
            let sql = format!(
                "SELECT * FROM (SELECT {TASK_COLUMNS} FROM tasks WHERE merge_failed IS NOT NULL \
                 ORDER BY id DESC LIMIT ?1) ORDER BY id"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([i64::from(limit)], rows::task_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
