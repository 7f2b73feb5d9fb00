//! The engine lock: at most one engine per project, released by the kernel if the engine dies.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::Error;

/// Held for as long as the engine runs. An flock vanishes with its process, so a crashed
/// engine never leaves a stale lock behind.
pub struct EngineLock {
    _lock: Flock<File>,
}

impl EngineLock {
    pub fn acquire(path: &Path) -> Result<EngineLock, Error> {
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
                let _ = write!(lock, "{}", std::process::id());
                Ok(EngineLock { _lock: lock })
            }
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                Err(Error::Locked {
                    pid: pid.trim().to_string(),
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
}
