//! The git metadata of a workspace, and exactly which parts of it a commit writes.
//!
//! An agentgrid workspace is a linked worktree: its `.git` is a file pointing at
//! `<repo>/.git/worktrees/<name>`, which in turn names the repository's common git directory.
//! Reading (`status`, `diff`, `log`) needs both directories readable; the sandbox makes the
//! directories the spec names ([`crate::SandboxSpec::git`]) visible read-only. It never reads
//! the `.git` file to find them: that file is the agent's.
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

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a worktree's git metadata lives, as the engine knows it.
///
/// The engine that created the worktree names these paths in the [`crate::SandboxSpec`]; the
/// sandbox never finds them by reading the workspace's `.git` file or a `commondir` file,
/// because those are the agent's to rewrite: a pointer aimed at a home directory, `/run` or
/// another task's worktree would otherwise be bound into the next sandbox of that workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitMetadata {
    /// The worktree's own git directory (`<common>/worktrees/<name>`, or the common directory
    /// itself for a main worktree).
    pub git_dir: PathBuf,
    /// The git directory shared by all worktrees of the repository.
    pub common_dir: PathBuf,
}

impl GitMetadata {
    /// The metadata of the linked worktree `name` (the last component of its path, as `git
    /// worktree add` names it) of the repository whose common git directory is `common_dir`.
    pub fn linked(common_dir: &Path, name: &str) -> GitMetadata {
        GitMetadata {
            git_dir: common_dir.join("worktrees").join(name),
            common_dir: common_dir.to_path_buf(),
        }
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

    #[test]
    fn a_linked_worktree_names_its_own_and_the_common_git_directory() {
        let root = tempfile::tempdir().unwrap();
        let common = root.path().canonicalize().unwrap().join("repo/.git");
        for dir in ["worktrees/task-1", "objects", "refs"] {
            std::fs::create_dir_all(common.join(dir)).unwrap();
        }
        let meta = GitMetadata::linked(&common, "task-1");
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
}
