//! Noticing other processes' writes to the store without polling: an inotify watch on the
//! directory of the store's files (the SQLite database, its write-ahead log and the bell).
//!
//! The directory is watched rather than the files, because the log is made and removed as
//! connections come and go and a watch on a file that is replaced would go quiet. What wakes
//! the follower is a watched file closed after it was opened for writing: every commit of
//! another process's store rings the bell that way (`store::bell_path`), and a process that
//! does not (an older binary, a database browser) is noticed when it closes the log. Writes
//! as such do not wake it: the engine's own commits write the log about thirteen times each,
//! and the kernel queued an event for every one of them. A wake-up then asks the store
//! whether another connection wrote (`PRAGMA data_version`). Where inotify is not available
//! (or the store has no files), the engine polls, less often than it did before it watched;
//! while it watches, it still reads the log every [`WATCHED_POLL`] for a change the watch
//! cannot see.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How often the log is read when nothing watches the store's files.
pub(crate) const POLL: Duration = Duration::from_secs(2);

/// How often the log is read anyway while the files are watched: a safety net for a change the
/// watch cannot see (the database replaced under the engine, a lost event).
pub(crate) const WATCHED_POLL: Duration = Duration::from_secs(10);

/// How long after a wake-up the store is asked whether another process wrote: the engine's
/// own writes wake the watch too, and a burst of them is answered by one question.
const SETTLE: Duration = Duration::from_millis(5);

/// When the follower reads the log: on a watched change (after asking the store whether it
/// was another process's), and on a slow poll.
pub(crate) struct Follower {
    watch: Option<StoreWatch>,
    check_at: Option<Instant>,
    polled_at: Instant,
    poll: Duration,
}

/// What is due now: see [`Follower::due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    /// A watched file changed: read the log if another process wrote.
    Check,
    /// The poll interval passed: read the log.
    Poll,
}

impl Follower {
    /// Watches `files` (the store's); polls every [`POLL`] when that is not possible.
    pub fn new(files: &[PathBuf], now: Instant) -> Follower {
        let watch = match StoreWatch::new(files) {
            Ok(watch) => watch,
            Err(e) => {
                tracing::warn!(
                    "cannot watch the store's files ({e}); other processes' changes are picked \
                     up every {} s",
                    POLL.as_secs()
                );
                None
            }
        };
        let poll = if watch.is_some() { WATCHED_POLL } else { POLL };
        Follower {
            watch,
            check_at: None,
            polled_at: now,
            poll,
        }
    }

    #[cfg(test)]
    fn is_watching(&self) -> bool {
        self.watch.is_some()
    }

    /// Resolves when a watched file changed; never without a watch (or after it failed).
    pub async fn changed(&self) {
        match &self.watch {
            Some(watch) if watch.changed().await.is_ok() => {}
            _ => std::future::pending().await,
        }
    }

    /// Whether a check is due soon already: further changes until then ask nothing new, so
    /// the loop does not wake for each of them (its own commits among them). The watch's queue
    /// keeps them, and the next wait after the check sees them.
    pub fn check_pending(&self) -> bool {
        self.check_at.is_some()
    }

    /// A watched file changed at `now`.
    pub fn woke(&mut self, now: Instant) {
        self.check_at.get_or_insert(now + SETTLE);
    }

    /// When the loop must wake for [`Follower::due`] at the latest.
    pub fn deadline(&self) -> Instant {
        let poll = self.polled_at + self.poll;
        self.check_at.map_or(poll, |at| at.min(poll))
    }

    /// What is due at `now`; the caller does it.
    pub fn due(&mut self, now: Instant) -> Due {
        if now >= self.polled_at + self.poll {
            self.polled_at = now;
            self.check_at = None;
            Due::Poll
        } else if self.check_at.is_some_and(|at| now >= at) {
            self.check_at = None;
            Due::Check
        } else {
            Due::Nothing
        }
    }
}

/// A watch on the directory holding the store's files.
pub(crate) struct StoreWatch {
    /// `None` only once dropped (see the `Drop` impl).
    fd: Option<AsyncFd<OwnedFd>>,
    /// The file names (within the watched directory) whose changes count.
    names: Vec<OsString>,
}

/// The events that say another process may have changed a file: the bell rung (or a
/// connection closed) after a commit, a new log or bell made. Not `IN_MODIFY`, which every
/// write of the engine's own would raise (see the module's comment).
const MASK: u32 = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;

/// Closing an inotify descriptor waits for the kernel to retire its watches (a grace period,
/// 5-13 ms measured here), so it is closed on a thread of its own: the engine's shutdown goes
/// on meanwhile (closing the store takes longer) instead of waiting for it.
impl Drop for StoreWatch {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        // Deregistered here, on the runtime; only the close moves. If no thread can be
        // started, the descriptor is closed here after all.
        let fd = fd.into_inner();
        let _ = std::thread::Builder::new()
            .name("agentgrid-unwatch".into())
            .spawn(move || drop(fd));
    }
}

impl StoreWatch {
    /// Watches `files`, which must all lie in one directory. `None` when there are none. Must
    /// be called on a tokio runtime, whose reactor then wakes [`StoreWatch::changed`].
    pub fn new(files: &[PathBuf]) -> io::Result<Option<StoreWatch>> {
        let Some(first) = files.first() else {
            return Ok(None);
        };
        let dir = first
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let names = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
            .collect();
        // SAFETY: inotify_init1 takes flags only and returns a new descriptor or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just returned to us and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
        // SAFETY: `fd` is an inotify descriptor and `path` a NUL-terminated string that lives
        // through the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the `OwnedFd` moves into the `AsyncFd` and is closed only when it is dropped,
        // so the descriptor stays open and the same for the registration's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Some(StoreWatch {
            fd: Some(fd),
            names,
        }))
    }

    /// Waits until a watched file changed. Every event queued so far is read, so a burst of
    /// writes wakes the caller once.
    pub async fn changed(&self) -> io::Result<()> {
        let Some(fd) = &self.fd else {
            return std::future::pending().await;
        };
        loop {
            let mut guard = fd.readable().await?;
            let mut relevant = false;
            loop {
                let mut buf = [0u8; 4096];
                // SAFETY: `buf` is writable for its whole length, and the descriptor is ours.
                let n = unsafe {
                    libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                };
                if n < 0 {
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::WouldBlock {
                        guard.clear_ready();
                        break;
                    }
                    return Err(err);
                }
                relevant |= self.names_any(&buf[..n as usize]);
            }
            if relevant {
                return Ok(());
            }
        }
    }

    /// Whether any event in `events` (as read from the descriptor) names a watched file, or is
    /// an overflow, after which anything may have changed.
    fn names_any(&self, mut events: &[u8]) -> bool {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut any = false;
        while events.len() >= HEADER {
            // SAFETY: at least HEADER bytes remain; read_unaligned copes with the buffer's
            // alignment.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(events.as_ptr().cast()) };
            let len = event.len as usize;
            let name_bytes = events.get(HEADER..HEADER + len).unwrap_or_default();
            let name: Vec<u8> = name_bytes.iter().copied().take_while(|b| *b != 0).collect();
            if event.mask & libc::IN_Q_OVERFLOW != 0
                || self.names.contains(&OsString::from_vec(name))
            {
                any = true;
            }
            events = events.get(HEADER + len..).unwrap_or_default();
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_to_a_watched_file_wakes_the_watch_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let wal = dir.path().join("state.db-wal");
        let watch = StoreWatch::new(&[db.clone(), wal.clone()])
            .unwrap()
            .expect("a watch");
        std::fs::write(dir.path().join("other"), "x").unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
        assert!(quiet.is_err(), "a file that is not watched woke it");
        std::fs::write(&wal, "commit").unwrap();
        tokio::time::timeout(Duration::from_secs(10), watch.changed())
            .await
            .expect("the write to the log wakes it")
            .unwrap();
    }

    /// The engine's own commits write the log through a descriptor it keeps open: those
    /// writes do not wake it. Another process's ring of the bell does.
    #[tokio::test]
    async fn writes_through_an_open_log_do_not_wake_it_and_a_ring_does() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let wal = dir.path().join("state.db-wal");
        let bell = dir.path().join("state.db-bell");
        let mut log = std::fs::File::create(&wal).unwrap();
        let watch = StoreWatch::new(&[db, wal, bell.clone()])
            .unwrap()
            .expect("a watch");
        for _ in 0..50 {
            log.write_all(&[0; 4096]).unwrap();
        }
        let quiet = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
        assert!(quiet.is_err(), "a write through the open log woke it");
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&bell)
                .unwrap(),
        );
        tokio::time::timeout(Duration::from_secs(10), watch.changed())
            .await
            .expect("the ring wakes it")
            .unwrap();
    }

    #[test]
    fn no_files_no_watch_and_a_faster_poll() {
        assert!(StoreWatch::new(&[]).unwrap().is_none());
        let start = Instant::now();
        let mut follower = Follower::new(&[], start);
        assert!(!follower.is_watching());
        assert_eq!(follower.deadline(), start + POLL);
        assert_eq!(follower.due(start + POLL / 2), Due::Nothing);
        assert_eq!(follower.due(start + POLL), Due::Poll);
        assert_eq!(follower.deadline(), start + POLL * 2);
    }

    #[tokio::test]
    async fn a_wake_up_asks_once_soon_and_the_poll_stays_slow() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let mut follower = Follower::new(&[dir.path().join("db")], start);
        assert!(follower.is_watching());
        assert_eq!(follower.deadline(), start + WATCHED_POLL);
        assert!(!follower.check_pending());
        follower.woke(start);
        assert!(
            follower.check_pending(),
            "later changes need not wake the loop"
        );
        follower.woke(start + Duration::from_millis(1));
        assert_eq!(follower.deadline(), start + SETTLE);
        assert_eq!(follower.due(start), Due::Nothing);
        assert_eq!(follower.due(start + SETTLE), Due::Check);
        assert!(!follower.check_pending(), "the next change wakes it again");
        assert_eq!(follower.due(start + SETTLE), Due::Nothing, "asked once");
        assert_eq!(follower.due(start + WATCHED_POLL), Due::Poll);
    }
}
