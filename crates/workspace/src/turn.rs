//! Turns at a task's worktree: host-side work in one worktree is done one piece at a time.
//!
//! Everything the host does to a task's worktree and its git directory — a checkout, an
//! execution's commit, a workflow command and the commit of what it changed, a merge into a
//! parent, recovery's commit of what a lost execution left, the removal — goes through one
//! index, one `HEAD` and one set of files. Two at once race for git's `index.lock`, and worse,
//! a commit made while other work is still writing files takes that work half done. So each
//! takes the worktree's [`WorktreeTurn`] first and holds it until it is finished with the
//! worktree; a caller whose work spans several steps (a workflow command: check out, run,
//! commit) takes the turn once and does every step inside it.
//!
//! Decision: the lock is keyed by the worktree's path and lives in the process, not in a
//! [`crate::Workspaces`] value, because it guards a place on disk: two managers of the same
//! repository in one process (the engine's, and one a command builds for itself) take turns
//! too. Other processes never write a task's worktree while an engine runs: the engine lock
//! keeps a second engine out, and the CLI's lands work in the object store only.
//!
//! What a turn cannot cover is an agent at work: its process writes the worktree without
//! asking. The engine keeps host work out of a worktree while an execution runs there (merges
//! wait for its end, a workflow command begins only once no execution of its task is active),
//! and the execution's own commit is made after its processes are gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use domain::TaskId;

/// One lock per task worktree in this process, by the worktree's path. An entry nobody holds
/// or waits for is dropped the next time a turn is taken, so the map stays as small as the
/// number of worktrees in use.
static TURNS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The right to work in one task's worktree, held until dropped.
#[derive(Debug)]
pub struct WorktreeTurn {
    task: TaskId,
    path: PathBuf,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl WorktreeTurn {
    /// Waits for the turn at the worktree of `task` at `path`.
    pub(crate) async fn take(task: TaskId, path: &Path) -> WorktreeTurn {
        let lock = {
            let mut turns = TURNS.lock().unwrap_or_else(PoisonError::into_inner);
            // Only the map holds an entry nobody holds or waits for (a waiter holds a clone).
            turns.retain(|_, lock| Arc::strong_count(lock) > 1);
            turns.entry(path.to_path_buf()).or_default().clone()
        };
        WorktreeTurn {
            task,
            path: path.to_path_buf(),
            _held: lock.lock_owned().await,
        }
    }

    /// The task whose worktree this turn is at.
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// Whether this is the turn at the worktree of `task` at `path`.
    pub(crate) fn is_at(&self, task: TaskId, path: &Path) -> bool {
        self.task == task && self.path == path
    }
}
