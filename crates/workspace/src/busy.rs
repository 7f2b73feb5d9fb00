//! Finding the processes that still use a directory, so a workspace is never pulled from under
//! a running program.

use std::path::Path;

use launch::procfs;

/// The pids of processes whose working directory, root, executable or any open file lies inside
/// `dir`. Processes whose /proc entries cannot be read (another user's, without privileges) are
/// not seen; every agentgrid child runs as the same user, so its own children always are.
///
/// This reads every process's links, so it is blocking work: async callers use
/// [`processes_using_blocking`].
pub fn processes_using(dir: &Path) -> Vec<i32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    // The table is sorted by pid, and so is the answer.
    procfs::scan()
        .entries()
        .iter()
        .map(|e| e.pid)
        .filter(|&pid| procfs::uses_path(pid, &dir))
        .collect()
}

/// [`processes_using`] on tokio's blocking pool. When that pool cannot take the job (the
/// runtime is shutting down), the directory counts as busy with an unknown process (pid 0),
/// so that nothing is removed on a guess.
pub async fn processes_using_blocking(dir: &Path) -> Vec<i32> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || processes_using(&dir))
        .await
        .unwrap_or_else(|_| vec![0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_file_marks_this_process_as_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        assert!(!processes_using(dir.path()).contains(&me));
        let file = std::fs::File::create(dir.path().join("held")).unwrap();
        assert!(processes_using(dir.path()).contains(&me));
        drop(file);
        assert!(!processes_using(dir.path()).contains(&me));
    }

    #[tokio::test]
    async fn the_blocking_pool_gives_the_same_answer() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let _file = std::fs::File::create(dir.path().join("held")).unwrap();
        assert!(processes_using_blocking(dir.path()).await.contains(&me));
    }
}
