//! What validators judge: a commit of the task's branch, checked out by the engine into a tree
//! of its own, and the differences between that commit and the one the task started from.
//!
//! The agent's worktree is never judged directly: whatever it holds besides its commits
//! (ignored files, a planted `node_modules/.bin/jest`, a `.pth` in an ignored virtualenv) is not
//! the work, and whatever the validators write must never reach the task's branch. So the
//! engine checks the commit out into a judge tree with its own index file, kept outside the
//! tree (`GIT_INDEX_FILE`), and with the same hardened git as everywhere else. The tree is
//! reused: `read-tree --reset -u` rewrites only what differs from the index (including files a
//! validator changed, which the index's stat data shows), and `clean -ffdx` removes everything
//! else the last validators left.

use std::path::{Path, PathBuf};

use domain::TaskId;

use crate::git::{Target, git, git_ok, split_z};
use crate::{Error, Workspaces};

/// How a path differs between two commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    /// A file became a link or the other way round.
    TypeChanged,
}

/// One path that differs between two commits (renames are a deletion and an addition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
}

/// A tree the engine checks commits out into for validators: `<dir>/tree`, with its index at
/// `<dir>/index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeTree {
    pub dir: PathBuf,
}

impl JudgeTree {
    pub fn new(dir: impl Into<PathBuf>) -> JudgeTree {
        JudgeTree { dir: dir.into() }
    }

    /// The checkout the validators run in.
    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    fn index(&self) -> PathBuf {
        self.dir.join("index")
    }

    /// Removes the tree and its index.
    pub fn remove(&self) -> Result<(), Error> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io {
                action: "remove the judge tree",
                path: self.dir.clone(),
                source,
            }),
        }
    }
}

impl Workspaces {
    /// The commit the task's branch points at.
    pub async fn branch_commit(&self, task: TaskId) -> Result<String, Error> {
        self.ref_commit(&format!("refs/heads/{}", Self::branch_name(task)))
            .await
    }

    /// Where the task's branch left what it started from (`start_from`, a parent's branch, or
    /// the configured base): their merge base. Asked right after the branch is made, that is
    /// the commit it was made from.
    pub async fn fork_point(
        &self,
        task: TaskId,
        start_from: Option<&str>,
    ) -> Result<String, Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let branch = format!("refs/heads/{}", Self::branch_name(task));
        let start = start_from.unwrap_or(&self.config().base);
        Ok(
            git_ok(target, &["merge-base", "--end-of-options", &branch, start])
                .await?
                .trim()
                .to_string(),
        )
    }

    /// Every path that differs between the commits `base` and `commit`.
    pub async fn changes(&self, base: &str, commit: &str) -> Result<Vec<Change>, Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let out = git_ok(
            target,
            &[
                "diff",
                "--no-renames",
                "--no-ext-diff",
                "--no-textconv",
                "--name-status",
                "-z",
                "--end-of-options",
                base,
                commit,
            ],
        )
        .await?;
        Ok(parse_name_status(&out))
    }

    /// The content of `path` in `commit`, or `None` when the commit has no such file.
    pub async fn file_at(&self, commit: &str, path: &str) -> Result<Option<String>, Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let object = format!("{commit}:{path}");
        let exists = git(target, &["cat-file", "-e", "--end-of-options", &object]).await?;
        if !exists.success() {
            return Ok(None);
        }
        Ok(Some(
            git_ok(target, &["cat-file", "blob", "--end-of-options", &object]).await?,
        ))
    }

    /// Makes `judge`'s tree hold exactly `commit`: its files as committed, nothing else.
    pub async fn check_out_for_judging(
        &self,
        judge: &JudgeTree,
        commit: &str,
    ) -> Result<(), Error> {
        let repository = self.repository().await?;
        let tree = judge.tree();
        let index = judge.index();
        let prepare = |tree: &Path| {
            std::fs::create_dir_all(tree).map_err(|source| Error::Io {
                action: "create the judge tree",
                path: tree.to_path_buf(),
                source,
            })
        };
        prepare(&tree)?;
        let target = Target::Judge {
            common_dir: &repository.common_dir,
            index: &index,
            work_tree: &tree,
            drivers: &repository.drivers,
        };
        let incremental = async {
            git_ok(target, &["read-tree", "--reset", "-u", commit]).await?;
            git_ok(target, &["clean", "-ffdxq"]).await?;
            Ok::<(), Error>(())
        };
        match incremental.await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Whatever validators did to the tree (a directory they made unreadable, say),
                // a fresh checkout starts from nothing.
                tracing::debug!(error = %e, "checking out the judge tree again from scratch");
                judge.remove()?;
                prepare(&tree)?;
                git_ok(target, &["read-tree", "--reset", "-u", commit]).await?;
                Ok(())
            }
        }
    }
}

/// Reads `git diff --name-status -z`: a status, then its path, each NUL-terminated.
fn parse_name_status(text: &str) -> Vec<Change> {
    let fields = split_z(text);
    fields
        .chunks(2)
        .filter_map(|pair| {
            let [status, path] = pair else {
                return None;
            };
            let kind = match status.chars().next()? {
                'A' => ChangeKind::Added,
                'D' => ChangeKind::Deleted,
                'T' => ChangeKind::TypeChanged,
                _ => ChangeKind::Modified,
            };
            Some(Change {
                kind,
                path: path.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_pairs_each_status_with_its_path() {
        let changes = parse_name_status("M\0src/a.py\0A\0tests/new test.py\0D\0old.py\0T\0l\0");
        let kinds: Vec<_> = changes.iter().map(|c| (c.kind, c.path.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::Modified, "src/a.py"),
                (ChangeKind::Added, "tests/new test.py"),
                (ChangeKind::Deleted, "old.py"),
                (ChangeKind::TypeChanged, "l"),
            ]
        );
    }
}
