//! Sessions parked at a gate: an agent CLI that asked for an approval ends its execution, and
//! the home that holds its session (Claude Code keeps its transcripts under `$HOME`) is kept
//! under the task's name instead of being removed, so that the execution after the decision
//! resumes the same session (`--resume ID`) instead of starting over.
//!
//! Waiting costs no process: the home is only a directory in the engine's run directory,
//! which outlives an engine restart (a reboot clears it, and the next execution then starts a
//! new session, its prompt still telling the decision). The host never reads what is inside;
//! it only moves the directory between the task's executions, which are the same agent's.

use std::path::{Path, PathBuf};

use domain::TaskId;

use super::AgentHome;

/// Where the parked home of `task` waits.
pub fn parked_home(run_dir: &Path, task: TaskId) -> PathBuf {
    run_dir.join(format!("task-{task}-parked-home"))
}

impl AgentHome {
    /// Keeps this home for the task's next execution instead of removing it.
    pub fn park(self, run_dir: &Path, task: TaskId) -> std::io::Result<()> {
        let to = parked_home(run_dir, task);
        forget_parked(run_dir, task)?;
        std::fs::rename(self.path(), &to)?;
        // Moved: nothing is left to remove.
        std::mem::forget(self);
        Ok(())
    }

    /// The home `task` parked, adopted as the home of `execution`; `None` when none is
    /// parked (never, or lost with a reboot).
    pub fn adopt(
        run_dir: &Path,
        task: TaskId,
        execution: domain::ExecutionId,
    ) -> std::io::Result<Option<AgentHome>> {
        let from = parked_home(run_dir, task);
        match std::fs::symlink_metadata(&from) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                forget_parked(run_dir, task)?;
                return Ok(None);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        let home = AgentHome::create(run_dir, execution)?;
        std::fs::remove_dir(home.path())?;
        std::fs::rename(&from, home.path())?;
        Ok(Some(home))
    }
}

/// Removes what `task` parked, if anything: its session will not be resumed.
pub fn forget_parked(run_dir: &Path, task: TaskId) -> std::io::Result<()> {
    let path = parked_home(run_dir, task);
    let result = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
        Ok(_) => std::fs::remove_file(&path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ExecutionId;

    #[test]
    fn a_parked_home_is_adopted_once_with_what_it_held() {
        let run = tempfile::tempdir().unwrap();
        let home = AgentHome::create(run.path(), ExecutionId(1)).unwrap();
        std::fs::write(home.path().join("session.jsonl"), "kept").unwrap();
        home.park(run.path(), TaskId(7)).unwrap();
        assert!(!run.path().join("1-home").exists());

        let adopted = AgentHome::adopt(run.path(), TaskId(7), ExecutionId(2))
            .unwrap()
            .expect("the parked home");
        assert_eq!(adopted.path(), run.path().join("2-home"));
        assert_eq!(
            std::fs::read_to_string(adopted.path().join("session.jsonl")).unwrap(),
            "kept"
        );
        assert!(
            AgentHome::adopt(run.path(), TaskId(7), ExecutionId(3))
                .unwrap()
                .is_none(),
            "adopted once"
        );
        drop(adopted);
        assert!(!run.path().join("2-home").exists());
    }

    #[test]
    fn forgetting_removes_the_parked_home_and_nothing_is_fine() {
        let run = tempfile::tempdir().unwrap();
        forget_parked(run.path(), TaskId(1)).unwrap();
        let home = AgentHome::create(run.path(), ExecutionId(1)).unwrap();
        home.park(run.path(), TaskId(1)).unwrap();
        forget_parked(run.path(), TaskId(1)).unwrap();
        assert!(!parked_home(run.path(), TaskId(1)).exists());
    }
}
