//! The engine lock: at most one engine per project, released by the kernel if the engine dies.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::Error;

/// Held for as long as the engine runs. An flock vanishes with its process, so a crashed
/// engine never leaves a stale lock behind.
///
/// The file holds the engine's pid on its first line and, on the second, when it took the
/// lock (milliseconds since the epoch), for [`EngineLock::holder`].
pub struct EngineLock {
    _lock: Flock<File>,
}

/// The engine that holds a project's lock now, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: Option<u32>,
    /// When it took the lock; `None` for a file written before the time was recorded.
    pub since: Option<domain::Timestamp>,
}

/// How often, and how far apart, `acquire` tries again when the lock is held: a reader asking
/// [`EngineLock::holder`] holds it (shared) for a few microseconds, which must not look like a
/// second engine.
const ACQUIRE_TRIES: u32 = 5;
const ACQUIRE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

impl EngineLock {
    /// Takes the lock, recording this process's pid and `now`.
    pub fn acquire_at(path: &Path, now: domain::Timestamp) -> Result<EngineLock, Error> {
        let mut tries = 0;
        loop {
            match Self::try_acquire(path, now) {
                Err(Error::Locked { .. }) if tries + 1 < ACQUIRE_TRIES => {
                    tries += 1;
                    std::thread::sleep(ACQUIRE_PAUSE);
                }
                other => return other,
            }
        }
    }

    /// Takes the lock at the system clock's time.
    pub fn acquire(path: &Path) -> Result<EngineLock, Error> {
        Self::acquire_at(path, domain::Clock::now(&domain::SystemClock))
    }

    /// Who holds the lock now, or `None` when no engine runs (or there is no lock file). It
    /// never blocks an engine: a shared lock that is granted is dropped at once, and one that is
    /// refused means an engine holds the exclusive lock.
    pub fn holder(path: &Path) -> Result<Option<LockHolder>, Error> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io(format!(
                    "cannot open the engine lock {}: {e}",
                    path.display()
                )));
            }
        };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(free) => {
                drop(free);
                Ok(None)
            }
            Err((mut file, _)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let mut lines = text.lines();
                let pid = lines.next().and_then(|l| l.trim().parse().ok());
                let since = lines
                    .next()
                    .and_then(|l| l.trim().parse().ok())
                    .map(domain::Timestamp);
                Ok(Some(LockHolder { pid, since }))
            }
        }
    }

    fn try_acquire(path: &Path, now: domain::Timestamp) -> Result<EngineLock, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                Error::Io(format!(
                    "cannot open the engine lock {}: {e}",
                    path.display()
                ))
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = lock.rewind();
                let _ = write!(lock, "{}\n{}\n", std::process::id(), now.0);
                Ok(EngineLock { _lock: lock })
            }
            Err((mut file, _)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Err(Error::Locked {
                    pid: text.lines().next().unwrap_or("").trim().to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.lock");
        let first = EngineLock::acquire(&path).unwrap();
        let err = EngineLock::acquire(&path)
            .err()
            .expect("second lock must fail");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(EngineLock::acquire(&path).is_ok());
    }

    #[test]
    fn the_holder_is_read_without_taking_the_lock_from_an_engine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.lock");
        assert_eq!(
            EngineLock::holder(&path).unwrap(),
            None,
            "no file, no engine"
        );
        let lock = EngineLock::acquire_at(&path, domain::Timestamp(1_700_000_000_000)).unwrap();
        assert_eq!(
            EngineLock::holder(&path).unwrap(),
            Some(LockHolder {
                pid: Some(std::process::id()),
                since: Some(domain::Timestamp(1_700_000_000_000)),
            })
        );
        drop(lock);
        assert_eq!(EngineLock::holder(&path).unwrap(), None, "a freed lock");
        // Asking leaves the lock free for the next engine.
        assert!(EngineLock::acquire(&path).is_ok());
    }
}
