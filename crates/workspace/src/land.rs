//! Landing a task's branch on the base branch with host git, without a checkout of the agent's
//! files until the validators' judge tree.
//!
//! The land commit is made in the object store alone: `git merge-tree --write-tree` computes the
//! merged tree (no work tree, no index, so no checkout filter, hook or worktree configuration
//! is ever involved, and a conflict leaves nothing behind), and `git commit-tree` makes the
//! commit. The base ref then moves with `git update-ref <ref> <new> <old>`, which git refuses
//! when the ref no longer holds `old`: the move is atomic, and a base that moved meanwhile is
//! never overwritten. Between the two, the caller judges the new commit in a judge tree.
//!
//! The main checkout is the user's: when it has the base branch checked out, a land refuses
//! while tracked files there have changes, and otherwise brings its index and files from the
//! old commit to the new one (`read-tree -m -u`, checked first with `-n`, which refuses rather
//! than overwrite an untracked file).

use std::path::{Path, PathBuf};

use domain::{LandStrategy, TaskId};

use crate::git::{Target, git, git_ok};
use crate::message::with_trailers;
use crate::{Error, Workspaces};

/// A commit that would land a task, made but not yet on the base branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The new commit for the base ref; `old` is what the ref held when it was made.
    Ready { old: String, new: String },
    /// The base already holds everything of the branch.
    UpToDate { old: String },
    /// The branch conflicts with the base in these files; nothing was made.
    Conflict { old: String, files: Vec<String> },
}

/// Whether the main checkout has the base branch checked out, and in what state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainCheckout {
    /// Another branch (or a detached HEAD) is checked out there: only the ref moves.
    Elsewhere,
    /// The base branch, with no change to a tracked file.
    Clean,
    /// The base branch, with changes to these tracked files.
    Dirty { files: Vec<String> },
}

impl Workspaces {
    /// The full name of the branch tasks land on: the configured base when it names a branch,
    /// or the branch the main checkout's `HEAD` names when the base is `HEAD`.
    pub async fn base_ref(&self) -> Result<String, Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let base = &self.config().base;
        let full = if base == "HEAD" {
            let out = git(target, &["symbolic-ref", "-q", "HEAD"]).await?;
            if !out.success() {
                return Err(Error::NoBaseBranch {
                    base: base.clone(),
                    why: "HEAD is detached".into(),
                });
            }
            out.stdout.trim().to_string()
        } else if base.starts_with("refs/heads/") {
            base.clone()
        } else {
            format!("refs/heads/{base}")
        };
        let spec = format!("{full}^{{commit}}");
        let out = git(
            target,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &spec,
            ],
        )
        .await?;
        if !out.success() {
            return Err(Error::NoBaseBranch {
                base: base.clone(),
                why: format!("there is no branch `{full}`"),
            });
        }
        Ok(full)
    }

    /// The commit `reference` holds.
    pub async fn ref_commit(&self, reference: &str) -> Result<String, Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let spec = format!("{reference}^{{commit}}");
        Ok(git_ok(
            target,
            &["rev-parse", "--verify", "--end-of-options", &spec],
        )
        .await?
        .trim()
        .to_string())
    }

    /// Makes the commit that lands `task`'s branch on `base_ref` by `strategy`, with `message`
    /// (for a rebase, `message`'s trailers are added to each replayed commit's own message).
    pub async fn prepare_land(
        &self,
        task: TaskId,
        base_ref: &str,
        strategy: LandStrategy,
        message: &str,
        trailers: &str,
    ) -> Result<Prepared, Error> {
        let repository = self.repository().await?;
        repository.check_objects()?;
        let target = repository.target(&self.config().repo_root);
        let old = self.ref_commit(base_ref).await?;
        let branch = self.branch_commit(task).await?;
        let contained = git(
            target,
            &[
                "merge-base",
                "--is-ancestor",
                "--end-of-options",
                &branch,
                &old,
            ],
        )
        .await?;
        if contained.success() {
            return Ok(Prepared::UpToDate { old });
        }
        let new = match strategy {
            LandStrategy::Merge | LandStrategy::Squash => {
                let tree = match merged_tree(target, None, &old, &branch).await? {
                    Merged::Tree(tree) => tree,
                    Merged::Conflict(files) => return Ok(Prepared::Conflict { old, files }),
                };
                let mut args = vec!["commit-tree", tree.as_str(), "-p", old.as_str()];
                if strategy == LandStrategy::Merge {
                    args.extend(["-p", branch.as_str()]);
                }
                args.extend(["-m", message]);
                git_ok(target, &args).await?.trim().to_string()
            }
            LandStrategy::Rebase => {
                let range = format!("{old}..{branch}");
                let listed = git_ok(
                    target,
                    &[
                        "rev-list",
                        "--reverse",
                        "--first-parent",
                        "--end-of-options",
                        &range,
                    ],
                )
                .await?;
                let mut tip = old.clone();
                for commit in listed.split_whitespace() {
                    // The first parent is what the commit changed from: a merge of a sub-task
                    // replays as one commit bringing that sub-task's work in.
                    let parent = format!("{commit}^1");
                    let tree = match merged_tree(target, Some(&parent), &tip, commit).await? {
                        Merged::Tree(tree) => tree,
                        Merged::Conflict(files) => return Ok(Prepared::Conflict { old, files }),
                    };
                    let tip_tree = format!("{tip}^{{tree}}");
                    let unchanged = git_ok(target, &["rev-parse", "--verify", &tip_tree]).await?;
                    if unchanged.trim() == tree {
                        continue;
                    }
                    let own = git_ok(target, &["log", "-1", "--format=%B", commit]).await?;
                    let replayed = with_trailers(&own, trailers);
                    tip = git_ok(target, &["commit-tree", &tree, "-p", &tip, "-m", &replayed])
                        .await?
                        .trim()
                        .to_string();
                }
                if tip == old {
                    return Ok(Prepared::UpToDate { old });
                }
                tip
            }
        };
        Ok(Prepared::Ready { old, new })
    }

    /// Where the main checkout stands with respect to `base_ref`. A base branch checked out in
    /// some other worktree of the repository is an error: moving it would leave that checkout
    /// behind its own branch.
    pub async fn main_checkout(&self, base_ref: &str) -> Result<MainCheckout, Error> {
        let repository = self.repository().await?;
        let repo_root = &self.config().repo_root;
        let target = repository.target(repo_root);
        let branch = base_ref.strip_prefix("refs/heads/").unwrap_or(base_ref);
        let listed = git_ok(target, &["worktree", "list", "--porcelain"]).await?;
        let mut here = false;
        for entry in crate::git::parse_worktree_list(&listed) {
            if entry.branch.as_deref() != Some(branch) {
                continue;
            }
            if same_dir(&entry.path, repo_root) {
                here = true;
            } else {
                return Err(Error::BaseCheckedOutElsewhere {
                    branch: branch.to_string(),
                    path: entry.path,
                });
            }
        }
        if !here {
            return Ok(MainCheckout::Elsewhere);
        }
        let main = self.main_target(repository.common_dir.as_path(), repo_root);
        let status = git_ok(
            main.target(),
            &[
                "status",
                "--porcelain",
                "-z",
                "--untracked-files=no",
                "--ignore-submodules=all",
            ],
        )
        .await?;
        let files = crate::workspaces::status_files(&status);
        Ok(if files.is_empty() {
            MainCheckout::Clean
        } else {
            MainCheckout::Dirty { files }
        })
    }

    /// Checks that the main checkout can go from `old` to `new` (no untracked file in the way).
    pub async fn check_main_update(&self, old: &str, new: &str) -> Result<(), Error> {
        let repository = self.repository().await?;
        let main = self.main_target(&repository.common_dir, &self.config().repo_root);
        git_ok(main.target(), &["read-tree", "-m", "-u", "-n", old, new]).await?;
        Ok(())
    }

    /// Whether the main checkout stands where a land cut short between moving the base and
    /// updating the checkout leaves it: `base_ref` at `new`, the index still `old`'s tree.
    pub async fn main_checkout_lags(
        &self,
        base_ref: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, Error> {
        if self.ref_commit(base_ref).await? != new {
            return Ok(false);
        }
        let repository = self.repository().await?;
        let main = self.main_target(&repository.common_dir, &self.config().repo_root);
        let same = git(
            main.target(),
            &[
                "diff-index",
                "--cached",
                "--quiet",
                "--end-of-options",
                old,
                "--",
            ],
        )
        .await?;
        Ok(same.success())
    }

    /// Brings the main checkout's index and files from `old` to `new`, after its branch moved.
    pub async fn update_main_checkout(&self, old: &str, new: &str) -> Result<(), Error> {
        let repository = self.repository().await?;
        let main = self.main_target(&repository.common_dir, &self.config().repo_root);
        git_ok(main.target(), &["read-tree", "-m", "-u", old, new]).await?;
        Ok(())
    }

    /// Moves `reference` from `old` to `new`, or fails (changing nothing) when it no longer
    /// holds `old`.
    pub async fn move_ref(
        &self,
        reference: &str,
        old: &str,
        new: &str,
        reason: &str,
    ) -> Result<(), Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let out = git(
            target,
            &[
                "update-ref",
                "-m",
                reason,
                "--end-of-options",
                reference,
                new,
                old,
            ],
        )
        .await?;
        if out.success() {
            return Ok(());
        }
        let now = self.ref_commit(reference).await.unwrap_or_default();
        if now != old {
            return Err(Error::BaseMoved {
                reference: reference.to_string(),
                expected: old.to_string(),
                found: now,
            });
        }
        Err(crate::git::failure(
            target,
            &["update-ref", reference, new, old],
            &out,
        ))
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `commit`.
    pub async fn is_ancestor(&self, ancestor: &str, commit: &str) -> Result<bool, Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let out = git(
            target,
            &[
                "merge-base",
                "--is-ancestor",
                "--end-of-options",
                ancestor,
                commit,
            ],
        )
        .await?;
        match out.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(crate::git::failure(
                target,
                &["merge-base", "--is-ancestor", ancestor, commit],
                &out,
            )),
        }
    }

    fn main_target(&self, common_dir: &Path, repo_root: &Path) -> MainTarget {
        MainTarget {
            common_dir: common_dir.to_path_buf(),
            index: common_dir.join("index"),
            work_tree: repo_root.to_path_buf(),
            drivers: self.config().drivers.args(),
        }
    }
}

/// The main checkout as host git addresses it: the common directory, its own index and the
/// checkout itself, all named, so that nothing is looked up from the checkout's files.
struct MainTarget {
    common_dir: PathBuf,
    index: PathBuf,
    work_tree: PathBuf,
    drivers: Vec<String>,
}

impl MainTarget {
    fn target(&self) -> Target<'_> {
        Target::Judge {
            common_dir: &self.common_dir,
            index: &self.index,
            work_tree: &self.work_tree,
            drivers: &self.drivers,
        }
    }
}

enum Merged {
    Tree(String),
    Conflict(Vec<String>),
}

/// The tree of merging `theirs` into `ours` (from their merge base, or `base` when given),
/// computed without a work tree.
async fn merged_tree(
    target: Target<'_>,
    base: Option<&str>,
    ours: &str,
    theirs: &str,
) -> Result<Merged, Error> {
    let merge_base = base.map(|b| format!("--merge-base={b}"));
    let mut args = vec![
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
    ];
    if let Some(arg) = merge_base.as_deref() {
        args.push(arg);
    }
    args.extend(["--end-of-options", ours, theirs]);
    let out = git(target, &args).await?;
    // On success, the tree; on a conflict (exit 1), the tree, then the conflicted files, each
    // NUL-terminated.
    let mut fields = out.stdout.split('\0');
    let tree = fields.next().unwrap_or("").trim().to_string();
    match out.code {
        Some(0) if !tree.is_empty() => Ok(Merged::Tree(tree)),
        Some(1) => {
            let mut files: Vec<String> = fields
                .take_while(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
            files.dedup();
            Ok(Merged::Conflict(files))
        }
        _ => Err(crate::git::failure(target, &args, &out)),
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
