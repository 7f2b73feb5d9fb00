//! The git metadata of a workspace, and exactly which parts of it a commit writes.
//!
//! An agentgrid workspace is a linked worktree: its `.git` is a file pointing at
//! `<repo>/.git/worktrees/<name>`, which in turn names the repository's common git directory.
//! Reading (`status`, `diff`, `log`) needs both directories readable; the sandbox makes them
//! visible read-only on its own.
//!
//! Writing is a separate decision. agentgrid commits the agent's work itself, from outside the
//! sandbox, after the agent exits, so by default the agent cannot write git metadata at all:
//! it cannot move other branches, rewrite history or touch the object store other worktrees
//! share. An agent that must commit by itself (`git add` and `git commit` inside its worktree)
//! needs exactly [`GitMetadata::commit_paths`] writable:
//!
//! - `<common>/worktrees/<name>`: the worktree's `index`, `HEAD`, `ORIG_HEAD`,
//!   `COMMIT_EDITMSG` and `logs/HEAD`, and their lock files;
//! - `<common>/objects`: new loose objects (and their temporary files);
//! - `<common>/refs`: the branch's loose ref and its lock file (a packed ref is overridden by a
//!   new loose one, so `packed-refs` itself is not written);
//! - `<common>/logs`: the branch's reflog, when the repository keeps reflogs;
//! - `<common>/reftable`, instead of `refs` and `logs`, in repositories that use reftables.
//!
//! Writable `objects` and `refs` let the agent change any branch of the repository, not only
//! its own; that is the price of committing from inside.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;

/// Where a worktree's git metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitMetadata {
    /// The worktree's own git directory (`<common>/worktrees/<name>`, or `<workspace>/.git` for
    /// a main worktree).
    pub git_dir: PathBuf,
    /// The git directory shared by all worktrees of the repository.
    pub common_dir: PathBuf,
}

impl GitMetadata {
    /// Reads `<workspace>/.git`. `None` when the workspace is not a git worktree at all.
    pub fn read(workspace: &Path) -> Result<Option<GitMetadata>, Error> {
        let dot_git = workspace.join(".git");
        let meta = match fs::symlink_metadata(&dot_git) {
            Ok(meta) => meta,
            Err(_) => return Ok(None),
        };
        let bad = |reason: String| Error::GitMetadata {
            path: workspace.to_path_buf(),
            reason,
        };
        if meta.is_dir() {
            return Ok(Some(GitMetadata {
                git_dir: dot_git.clone(),
                common_dir: dot_git,
            }));
        }
        let text = fs::read_to_string(&dot_git)
            .map_err(|e| bad(format!("cannot read {}: {e}", dot_git.display())))?;
        let pointer = text
            .trim()
            .strip_prefix("gitdir:")
            .ok_or_else(|| bad(format!("{} has no `gitdir:` line", dot_git.display())))?
            .trim();
        let git_dir = workspace.join(pointer);
        let common_dir = match fs::read_to_string(git_dir.join("commondir")) {
            Ok(common) => git_dir.join(common.trim()),
            Err(_) => git_dir.clone(),
        };
        let canonical = |p: &Path| {
            p.canonicalize()
                .map_err(|e| bad(format!("cannot resolve {}: {e}", p.display())))
        };
        Ok(Some(GitMetadata {
            git_dir: canonical(&git_dir)?,
            common_dir: canonical(&common_dir)?,
        }))
    }

    /// What must be writable for `git add` and `git commit` inside the worktree (see the module
    /// documentation). Only paths that exist are listed.
    pub fn commit_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.git_dir.clone()];
        for name in ["objects", "refs", "logs", "reftable"] {
            let path = self.common_dir.join(name);
            if path.exists() && !paths.contains(&path) {
                paths.push(path);
            }
        }
        paths
    }

    /// What must be readable for git to work in the worktree at all.
    pub fn read_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.common_dir.clone()];
        if !self.git_dir.starts_with(&self.common_dir) {
            paths.push(self.git_dir.clone());
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout `git worktree add` leaves, made by hand.
    fn linked_worktree(root: &Path) -> (PathBuf, PathBuf) {
        let common = root.join("repo/.git");
        let git_dir = common.join("worktrees/task-1");
        let ws = root.join("repo/.agentgrid/workspaces/task-1");
        for dir in [&git_dir, &common.join("objects"), &common.join("refs"), &ws] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(git_dir.join("commondir"), "../..\n").unwrap();
        fs::write(ws.join(".git"), format!("gitdir: {}\n", git_dir.display())).unwrap();
        (ws, common)
    }

    #[test]
    fn a_linked_worktree_names_its_own_and_the_common_git_directory() {
        let root = tempfile::tempdir().unwrap();
        let root_path = root.path().canonicalize().unwrap();
        let (ws, common) = linked_worktree(&root_path);
        let meta = GitMetadata::read(&ws).unwrap().unwrap();
        assert_eq!(meta.common_dir, common);
        assert_eq!(meta.git_dir, common.join("worktrees/task-1"));
        // `logs` and `reftable` do not exist here, so they are not listed.
        assert_eq!(
            meta.commit_paths(),
            vec![
                common.join("worktrees/task-1"),
                common.join("objects"),
                common.join("refs")
            ]
        );
        assert_eq!(meta.read_paths(), vec![common]);
    }

    #[test]
    fn a_main_worktree_and_a_plain_directory() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(GitMetadata::read(root.path()).unwrap(), None);
        fs::create_dir(root.path().join(".git")).unwrap();
        let meta = GitMetadata::read(root.path()).unwrap().unwrap();
        assert_eq!(meta.git_dir, meta.common_dir);
    }

    #[test]
    fn a_broken_pointer_is_an_error_naming_the_workspace() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join(".git"), "not a pointer\n").unwrap();
        let err = GitMetadata::read(root.path()).unwrap_err().to_string();
        assert!(
            err.contains("gitdir:") && err.contains(&root.path().display().to_string()),
            "{err}"
        );
    }
}
