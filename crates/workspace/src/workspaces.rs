//! [`Workspaces`]: making, hooking, committing, merging and removing task worktrees.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use domain::TaskId;
use launch::LaunchSpec;
use launch::sandbox::SandboxSpec;

use crate::busy::processes_using_blocking;
use crate::git::{
    WorktreeEntry, discover_common_dir, failure, git, git_ok, parse_worktree_list, split_z,
    transient,
};
use crate::guard::{Head, Repository, TaskGit};
use crate::turn::WorktreeTurn;
use crate::{Error, HookKind, WorkspaceConfig};

/// How much of a hook's output is kept for its error message.
const HOOK_CAPTURE: usize = 16 * 1024;
/// How many characters of a failing hook's output its error shows.
const HOOK_TAIL_CHARS: usize = 4000;
/// The pause before the one retry after losing a lock race; spread by task so that two losers
/// do not collide again.
const LOCK_RETRY_BASE: Duration = Duration::from_millis(150);

/// A task's checked-out worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub task: TaskId,
    pub path: PathBuf,
    pub branch: String,
    /// Whether this call checked it out (and ran `after_create`), rather than finding it.
    pub created: bool,
}

/// What [`Workspaces::merge_branch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// A merge commit was made.
    Merged { commit: String },
    /// The branch held nothing new.
    UpToDate,
    /// The branches conflict in these files; the merge was aborted and nothing changed.
    Conflict { files: Vec<String> },
}

/// What [`Workspaces::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// The worktree is gone; its branch, with every commit, remains.
    Removed,
    /// There was no worktree directory to remove (stale records were pruned).
    AlreadyGone,
    /// These processes still work inside it, so it was left alone. Try again once they ended.
    Busy { pids: Vec<i32> },
}

/// One lock per repository for the commands that change or read git's worktree records (add,
/// prune, remove, list). git reads every worktree's record while adding one, and fails on a
/// record another `git worktree add` is still writing; taking turns inside this process avoids
/// that, and a retry covers other processes.
static WORKTREE_ADMIN: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The worktrees of one repository, one per task, under one root directory.
pub struct Workspaces {
    cfg: WorkspaceConfig,
    root: PathBuf,
    admin: Arc<tokio::sync::Mutex<()>>,
    /// The repository's common git directory, asked of git once (not before every checkout)
    /// and named explicitly to every git command after. Should it stop being a repository, the
    /// next git command fails and says so.
    repository: tokio::sync::OnceCell<Repository>,
    /// The index file each task's git directory had after the engine's last git command on it.
    index_stamps: Mutex<HashMap<TaskId, IndexStamp>>,
}

/// Which file an index is and when it last changed, as the kernel says: a file renamed into
/// place has another inode, and a write moves its change time, which no process can set back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl IndexStamp {
    /// `None` when there is no regular file there.
    fn of(path: &Path) -> Option<IndexStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        meta.file_type().is_file().then(|| IndexStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

impl std::fmt::Debug for Workspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspaces")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl Workspaces {
    pub fn new(cfg: WorkspaceConfig) -> Workspaces {
        let root = if cfg.root.is_absolute() {
            cfg.root.clone()
        } else {
            cfg.repo_root.join(&cfg.root)
        };
        let key = cfg
            .repo_root
            .canonicalize()
            .unwrap_or_else(|_| cfg.repo_root.clone());
        let admin = WORKTREE_ADMIN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        Workspaces {
            cfg,
            root,
            admin,
            repository: tokio::sync::OnceCell::new(),
            index_stamps: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &WorkspaceConfig {
        &self.cfg
    }

    /// The branch holding a task's work: `agentgrid/task-<id>`.
    pub fn branch_name(task: TaskId) -> String {
        format!("agentgrid/task-{}", task.0)
    }

    /// Where a task's worktree lives: `<root>/task-<id>`.
    pub fn path_of(&self, task: TaskId) -> PathBuf {
        self.root.join(format!("task-{}", task.0))
    }

    /// Returns the task's worktree, checking it out first if needed. The branch is created from
    /// `start_from` (a parent task's branch) or the configured base the first time; later calls
    /// reuse the worktree, or check the existing branch out again if its directory was deleted.
    /// `after_create` runs on every fresh checkout, in `sandbox` (see [`Workspaces::run_hook`]);
    /// if it fails, the checkout is undone (the branch stays) so that the next call tries again.
    /// A worktree found in place gets its `.git` pointer checked and put back.
    ///
    /// Takes the worktree's turn for the checkout; [`Workspaces::ensure_in`] is for a caller
    /// that holds it already.
    pub async fn ensure(
        &self,
        task: TaskId,
        start_from: Option<&str>,
        sandbox: Option<&SandboxSpec>,
    ) -> Result<Workspace, Error> {
        let turn = self.turn(task).await;
        self.ensure_in(&turn, start_from, sandbox).await
    }

    /// Waits for the turn at the worktree of `task` (see [`WorktreeTurn`]): while it is held,
    /// no other host-side work of this process checks that worktree out, commits in it, merges
    /// into it or removes it. Every method that works in a worktree takes it itself; the `_in`
    /// methods are for a caller that holds it across several steps.
    pub async fn turn(&self, task: TaskId) -> WorktreeTurn {
        WorktreeTurn::take(task, &self.path_of(task)).await
    }

    /// [`Workspaces::ensure`] for the task of `turn`, which the caller holds.
    pub async fn ensure_in(
        &self,
        turn: &WorktreeTurn,
        start_from: Option<&str>,
        sandbox: Option<&SandboxSpec>,
    ) -> Result<Workspace, Error> {
        let task = turn.task();
        self.check_turn(turn, task)?;
        let path = self.path_of(task);
        let branch = Self::branch_name(task);
        let repository = self.repository().await?;
        let repo = repository.target(&self.cfg.repo_root);

        let mut admin = self.admin.lock().await;
        let worktrees = self.worktrees_unlocked().await?;
        if let Some(entry) = worktrees.iter().find(|e| same_path(&e.path, &path))
            && !entry.prunable
            && path.is_dir()
        {
            return match &entry.branch {
                Some(found) if *found == branch => {
                    repository.task_git(task, &path)?;
                    Ok(Workspace {
                        task,
                        path,
                        branch,
                        created: false,
                    })
                }
                other => Err(Error::WrongBranch {
                    path,
                    expected: branch,
                    found: other.clone().unwrap_or_else(|| "a detached HEAD".into()),
                }),
            };
        }
        if path.exists() {
            return Err(Error::PathTaken { task, path });
        }
        std::fs::create_dir_all(&self.root).map_err(|source| Error::Io {
            action: "create the workspace root",
            path: self.root.clone(),
            source,
        })?;
        self.exclude_root_from_repo();

        let path_arg = path.to_string_lossy().into_owned();
        let stale = worktrees.iter().any(|e| e.prunable);
        for attempt in 0..2 {
            // Forget worktrees whose directories were deleted by hand, this task's included, so
            // that its branch may be checked out again; when there are any, or after a failure.
            if stale || attempt > 0 {
                git_ok(repo, &["worktree", "prune"]).await?;
            }
            let args: Vec<String> = if self.branch_exists(&branch).await? {
                vec![
                    "worktree".into(),
                    "add".into(),
                    path_arg.clone(),
                    branch.clone(),
                ]
            } else {
                let start = self.start_point(task, start_from).await?;
                vec![
                    "worktree".into(),
                    "add".into(),
                    "-b".into(),
                    branch.clone(),
                    path_arg.clone(),
                    start,
                ]
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = git(repo, &args).await?;
            if out.success() {
                break;
            }
            if attempt == 0 && transient(&out) {
                tracing::debug!(%task, output = %out.combined(), "lost a race with another git process; retrying once");
                // The pause is taken without the admin lock, so other tasks are not held up by it.
                drop(admin);
                tokio::time::sleep(LOCK_RETRY_BASE * (1 + (task.0.unsigned_abs() % 5) as u32))
                    .await;
                admin = self.admin.lock().await;
                continue;
            }
            return Err(failure(repo, &args, &out));
        }
        drop(admin);

        let ws = Workspace {
            task,
            path,
            branch,
            created: true,
        };
        // git names a worktree's directory after the last component of its path, adding a
        // number when that name is taken; the engine only ever uses `worktrees/task-<id>`.
        let checked = repository
            .task_git(task, &ws.path)
            .map(|git_dir| self.record_index(&git_dir));
        let hooked = match checked {
            Ok(()) => self
                .run_hook(&ws, HookKind::AfterCreate, &[], sandbox)
                .await
                .and_then(|()| repository.task_git(task, &ws.path).map(|_| ())),
            Err(e) => Err(e),
        };
        if let Err(e) = hooked {
            let path_arg = ws.path.to_string_lossy().into_owned();
            let _admin = self.admin.lock().await;
            // Undone even when the hook failed because the work was cancelled: a checkout whose
            // after_create never finished must not be taken for a ready one next time.
            let args = ["worktree", "remove", "--force", &path_arg];
            if let Err(undo) = launch::shielded(git_ok(repo, &args)).await {
                tracing::warn!(error = %undo, "cannot undo the checkout after a failed after_create hook");
            }
            return Err(e);
        }
        Ok(ws)
    }

    /// Runs one hook with `sh -c` inside the workspace. Besides `env`, it sees
    /// `AGENTGRID_HOOK`, `AGENTGRID_TASK_ID`, `AGENTGRID_WORKSPACE` and `AGENTGRID_BRANCH`.
    /// A hook that is not configured does nothing; one that fails or runs out of time is an error
    /// carrying the tail of its output.
    ///
    /// A hook runs code the agent could have written (its Makefile, its `package.json`), so it
    /// runs in `sandbox`, the sandbox of the execution it belongs to, unless its configuration
    /// says `host`. `None` means the execution itself runs unconfined (its agent's manifest opts
    /// out), and the hook runs on the host like the agent. `env` is the caller's to choose: a
    /// hook is not the agent and gets no execution token.
    pub async fn run_hook(
        &self,
        ws: &Workspace,
        hook: HookKind,
        env: &[(String, String)],
        sandbox: Option<&SandboxSpec>,
    ) -> Result<(), Error> {
        let Some(configured) = self.cfg.hooks.get(hook) else {
            return Ok(());
        };
        let mut spec = LaunchSpec::new("sh", &ws.path)
            .args(["-c", configured.command.as_str()])
            .with_env("AGENTGRID_HOOK", hook.as_str())
            .with_env("AGENTGRID_TASK_ID", ws.task.to_string())
            .with_env("AGENTGRID_WORKSPACE", ws.path.to_string_lossy())
            .with_env("AGENTGRID_BRANCH", ws.branch.as_str());
        for (key, value) in env {
            spec = spec.with_env(key.as_str(), value.as_str());
        }
        if let Some(sandbox) = sandbox.filter(|_| !configured.host) {
            let mut sandbox = sandbox.clone();
            sandbox.workspace = ws.path.clone();
            spec = spec.with_sandbox(sandbox);
        }
        let out = launch::run(spec, self.cfg.hook_timeout, HOOK_CAPTURE).await?;
        if out.success() {
            return Ok(());
        }
        Err(Error::Hook {
            hook,
            path: ws.path.clone(),
            status: out.describe(),
            output: last_chars(&out.combined(), HOOK_TAIL_CHARS),
        })
    }

    /// Commits everything in the workspace, untracked files included (ignored ones excepted).
    /// Returns the new HEAD, or `None` when there was nothing to commit.
    ///
    /// The commit goes onto the task's own branch or nowhere: `HEAD` of the task's git directory
    /// must name `agentgrid/task-<id>` ([`Error::HeadMoved`] otherwise), and the `.git` pointer is
    /// put back to the engine's git directory first.
    ///
    /// Takes the worktree's turn for the whole of it (status, quota, add, commit), so that no
    /// other host-side work of this process changes the index or the files meanwhile.
    pub async fn commit_all(&self, ws: &Workspace, message: &str) -> Result<Option<String>, Error> {
        let turn = self.turn(ws.task).await;
        self.commit_all_in(&turn, ws, message).await
    }

    /// [`Workspaces::commit_all`] in the turn the caller holds, which must be at `ws`'s task.
    pub async fn commit_all_in(
        &self,
        turn: &WorktreeTurn,
        ws: &Workspace,
        message: &str,
    ) -> Result<Option<String>, Error> {
        self.check_turn(turn, ws.task)?;
        let git_dir = self.task_git(ws).await?;
        self.trust_index(&git_dir).await?;
        let committed = self.commit_checked(ws, &git_dir, message).await;
        self.record_index(&git_dir);
        committed
    }

    async fn commit_checked(
        &self,
        ws: &Workspace,
        git_dir: &TaskGit,
        message: &str,
    ) -> Result<Option<String>, Error> {
        let t = git_dir.target();
        // Most executions of a read-only agent leave nothing: one git process tells.
        let status = git_ok(
            t,
            &["status", "--porcelain", "-z", "--ignore-submodules=all"],
        )
        .await?;
        if status_files(&status).is_empty() {
            return Ok(None);
        }
        self.check_head(git_dir, "commit").await?;
        // What the commit would add, file by file (untracked directories listed whole), is
        // measured before anything enters the object store.
        let listing = [
            "status",
            "--porcelain",
            "-z",
            "--ignore-submodules=all",
            "--untracked-files=all",
        ];
        let out = git(t, &listing).await?;
        if !out.success() {
            return Err(failure(t, &listing, &out));
        }
        if out.stdout_cut {
            // A listing past git's capture is itself more files than any quota allows.
            return Err(Error::OverQuota(crate::OverQuota {
                path: ws.path.clone(),
                limit: format!("{} files", self.cfg.quota.files),
            }));
        }
        crate::measure(&ws.path, &status_files(&out.stdout), self.cfg.quota)
            .map_err(Error::OverQuota)?;
        git_ok(t, &["add", "-A"]).await?;
        let diff = [
            "diff",
            "--cached",
            "--quiet",
            "--no-ext-diff",
            "--no-textconv",
        ];
        let staged = git(t, &diff).await?;
        match staged.code {
            Some(0) => return Ok(None),
            Some(1) => {}
            _ => return Err(failure(t, &diff, &staged)),
        }
        // Signing would need a key and repository hooks could veto the commit; neither belongs
        // to an automatic commit whose content the validators judge.
        git_ok(t, &["commit", "--quiet", "--no-verify", "-m", message]).await?;
        Ok(Some(head_of(git_dir).await?))
    }

    /// Merges `branch` into the workspace with a merge commit (`--no-ff`). On a conflict the
    /// merge is aborted, leaving the workspace as it was, and the conflicting files are returned.
    pub async fn merge_branch(
        &self,
        into: &Workspace,
        branch: &str,
        message: &str,
    ) -> Result<MergeOutcome, Error> {
        let _turn = self.turn(into.task).await;
        let git_dir = self.task_git(into).await?;
        self.trust_index(&git_dir).await?;
        let merged = self.merge_checked(into, &git_dir, branch, message).await;
        self.record_index(&git_dir);
        merged
    }

    async fn merge_checked(
        &self,
        into: &Workspace,
        git_dir: &TaskGit,
        branch: &str,
        message: &str,
    ) -> Result<MergeOutcome, Error> {
        let t = git_dir.target();
        let dirty = status_files(
            &git_ok(
                t,
                &[
                    "status",
                    "--porcelain",
                    "-z",
                    "--untracked-files=no",
                    "--ignore-submodules=all",
                ],
            )
            .await?,
        );
        if !dirty.is_empty() {
            return Err(Error::Uncommitted {
                action: "merge into",
                path: into.path.clone(),
                files: dirty,
            });
        }
        self.check_head(git_dir, "merge").await?;
        let before = head_of(git_dir).await?;
        let args = [
            "merge",
            "--no-ff",
            "--no-verify",
            "--no-edit",
            "--no-stat",
            "-m",
            message,
            // A branch name can never be mistaken for an option.
            "--end-of-options",
            branch,
        ];
        let out = git(t, &args).await?;
        if out.success() {
            let after = head_of(git_dir).await?;
            return Ok(if after == before {
                MergeOutcome::UpToDate
            } else {
                MergeOutcome::Merged { commit: after }
            });
        }
        let files = split_z(
            &git_ok(
                t,
                &[
                    "diff",
                    "--name-only",
                    "--diff-filter=U",
                    "-z",
                    "--no-ext-diff",
                    "--no-textconv",
                ],
            )
            .await?,
        );
        if files.is_empty() {
            return Err(failure(t, &args, &out));
        }
        git_ok(t, &["merge", "--abort"]).await?;
        Ok(MergeOutcome::Conflict { files })
    }

    /// Undoes a merge left half done in the workspace: one whose process was stopped before it
    /// committed or aborted, which leaves `MERGE_HEAD` in the task's git directory, conflict
    /// markers in the work tree and unmerged entries in the index. The index and the merged
    /// files go back to the branch's last commit (`merge --abort`, or `reset --merge` when git
    /// cannot abort); changes the merge did not touch stay. Says whether there was one.
    pub async fn abort_interrupted_merge(&self, ws: &Workspace) -> Result<bool, Error> {
        let _turn = self.turn(ws.task).await;
        let git_dir = self.task_git(ws).await?;
        let merge_head = git_dir.git_dir.join("MERGE_HEAD");
        if std::fs::symlink_metadata(&merge_head).is_err() {
            return Ok(false);
        }
        let t = git_dir.target();
        let aborted = git(t, &["merge", "--abort"]).await?;
        if !aborted.success() {
            git_ok(t, &["reset", "--merge"]).await?;
        }
        // A MERGE_HEAD git did not take for a merge of its own is not left for the next one.
        if std::fs::symlink_metadata(&merge_head).is_ok() {
            std::fs::remove_file(&merge_head).map_err(|source| Error::Io {
                action: "remove",
                path: merge_head.clone(),
                source,
            })?;
        }
        Ok(true)
    }

    /// Removes the worktree, keeping its branch so that no commit is ever lost. Leaves it alone
    /// while any process works inside it ([`RemoveOutcome::Busy`]), and refuses with an error if
    /// it holds uncommitted changes. Runs `before_remove` first, in `sandbox` (see
    /// [`Workspaces::run_hook`]); a failing hook keeps it too.
    pub async fn remove(
        &self,
        ws: &Workspace,
        sandbox: Option<&SandboxSpec>,
    ) -> Result<RemoveOutcome, Error> {
        let _turn = self.turn(ws.task).await;
        let repository = self.repository().await?;
        let repo = repository.target(&self.cfg.repo_root);
        if !ws.path.exists() {
            let _admin = self.admin.lock().await;
            git_ok(repo, &["worktree", "prune"]).await?;
            return Ok(RemoveOutcome::AlreadyGone);
        }
        let pids = processes_using_blocking(&ws.path).await;
        if !pids.is_empty() {
            return Ok(RemoveOutcome::Busy { pids });
        }
        let git_dir = repository.task_git(ws.task, &ws.path)?;
        let dirty = status_files(
            &git_ok(
                git_dir.target(),
                &["status", "--porcelain", "-z", "--ignore-submodules=all"],
            )
            .await?,
        );
        if !dirty.is_empty() {
            return Err(Error::Uncommitted {
                action: "remove",
                path: ws.path.clone(),
                files: dirty,
            });
        }
        if self.cfg.hooks.get(HookKind::BeforeRemove).is_some() {
            self.run_hook(ws, HookKind::BeforeRemove, &[], sandbox)
                .await?;
            // The hook may have started something that still runs there. (Without a hook the
            // scan above stands: it reads every process's links in /proc, not a cheap look.)
            let pids = processes_using_blocking(&ws.path).await;
            if !pids.is_empty() {
                return Ok(RemoveOutcome::Busy { pids });
            }
        }
        // `git worktree remove` checks the worktree is clean with a `git status` that finds its
        // repository through the worktree's `.git`, which the hook may have changed.
        repository.task_git(ws.task, &ws.path)?;
        // No --force: should anything have changed since the check, git refuses rather than
        // throwing work away.
        let path_arg = ws.path.to_string_lossy().into_owned();
        let _admin = self.admin.lock().await;
        git_ok(repo, &["worktree", "remove", &path_arg]).await?;
        Ok(RemoveOutcome::Removed)
    }

    /// agentgrid's worktrees: those checked out under the root as `task-<id>`.
    pub async fn list(&self) -> Result<Vec<Workspace>, Error> {
        let mut found: Vec<Workspace> = self
            .worktrees()
            .await?
            .into_iter()
            .filter(|e| !e.prunable && e.path.is_dir())
            .filter_map(|e| {
                let task = e
                    .path
                    .file_name()?
                    .to_str()?
                    .strip_prefix("task-")?
                    .parse::<i64>()
                    .ok()?;
                let task = TaskId(task);
                let path = self.path_of(task);
                same_path(&e.path, &path).then(|| Workspace {
                    task,
                    path,
                    branch: e.branch.unwrap_or_else(|| Self::branch_name(task)),
                    created: false,
                })
            })
            .collect();
        found.sort_by_key(|ws| ws.task);
        Ok(found)
    }

    /// The commit checked out in the workspace.
    pub async fn head(&self, ws: &Workspace) -> Result<String, Error> {
        head_of(&self.task_git(ws).await?).await
    }

    /// Checks the task's git directory and puts the worktree's `.git` pointer (and the git
    /// directory's pointer back to it) as git wrote them. Code that ran in the workspace since
    /// the last host operation (validators, say) may have rewritten them; the sandbox of the
    /// next process in the workspace and the user must see the engine's git directory.
    pub async fn check_git(&self, ws: &Workspace) -> Result<(), Error> {
        self.task_git(ws).await.map(|_| ())
    }

    /// Makes sure the index of the task's git directory is one host git wrote: when it is not
    /// the file the engine's last git command left (an agent that commits by itself writes it,
    /// and an index can hold entries, flags and extensions no checkout would make), it is
    /// removed and built again from `HEAD`, without reading it. The next `add -A` stages the
    /// worktree as it stands, so legitimate staging loses nothing.
    async fn trust_index(&self, git_dir: &TaskGit) -> Result<(), Error> {
        let index = git_dir.index();
        let current = IndexStamp::of(&index);
        let known = self
            .index_stamps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&git_dir.task)
            .cloned();
        if current.is_some() && current == known {
            return Ok(());
        }
        if current.is_some() || std::fs::symlink_metadata(&index).is_ok() {
            tracing::debug!(task = %git_dir.task, "rebuilding an index the engine did not write");
            crate::guard::remove_any(&index).map_err(|source| Error::Io {
                action: "remove",
                path: index.clone(),
                source,
            })?;
        }
        git_ok(git_dir.target(), &["read-tree", "HEAD"]).await?;
        Ok(())
    }

    /// Remembers the index host git just left in the task's git directory.
    fn record_index(&self, git_dir: &TaskGit) {
        let stamp = IndexStamp::of(&git_dir.index());
        let mut stamps = self
            .index_stamps
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match stamp {
            Some(stamp) => stamps.insert(git_dir.task, stamp),
            None => stamps.remove(&git_dir.task),
        };
    }

    /// The task's git directory, checked, with its pointers put back (see [`Repository::task_git`]).
    async fn task_git(&self, ws: &Workspace) -> Result<TaskGit, Error> {
        self.repository().await?.task_git(ws.task, &ws.path)
    }

    /// Refuses unless the task's HEAD names the task's own branch, directly.
    async fn check_head(&self, git_dir: &TaskGit, action: &'static str) -> Result<(), Error> {
        let expected = Self::branch_name(git_dir.task);
        let wanted = format!("refs/heads/{expected}");
        let found = match git_dir.head_file()? {
            Head::Symbolic(name) => name,
            Head::Other(text) => text,
            Head::Reftable => {
                let out = git(git_dir.target(), &["symbolic-ref", "--quiet", "HEAD"]).await?;
                if out.success() {
                    out.stdout.trim().to_string()
                } else {
                    "a detached HEAD".to_string()
                }
            }
        };
        let found = if found == wanted && git_dir.branch_is_indirect(&expected)? {
            format!("{found}, which is itself a link to another ref")
        } else {
            found
        };
        if found == wanted {
            return Ok(());
        }
        Err(Error::HeadMoved {
            action,
            path: git_dir.work_tree.clone(),
            expected,
            found,
        })
    }

    /// Refuses work on the worktree of `task` in a turn taken at another worktree.
    fn check_turn(&self, turn: &WorktreeTurn, task: TaskId) -> Result<(), Error> {
        if turn.is_at(task, &self.path_of(task)) {
            return Ok(());
        }
        Err(Error::WrongTurn {
            held: turn.task(),
            wanted: task,
        })
    }

    /// The repository, found the first time it is needed.
    pub(crate) async fn repository(&self) -> Result<&Repository, Error> {
        self.repository
            .get_or_try_init(|| async {
                let repo = &self.cfg.repo_root;
                if !repo.is_dir() {
                    return Err(Error::NotARepository {
                        repo: repo.clone(),
                        output: "no such directory".into(),
                    });
                }
                let out = discover_common_dir(repo).await?;
                let found = PathBuf::from(out.stdout.trim());
                let common_dir = match found.canonicalize() {
                    Ok(dir) if out.success() && dir.is_dir() => dir,
                    _ => {
                        return Err(Error::NotARepository {
                            repo: repo.clone(),
                            output: out.combined(),
                        });
                    }
                };
                Repository::new(common_dir, self.cfg.drivers.args())
            })
            .await
    }

    async fn worktrees(&self) -> Result<Vec<WorktreeEntry>, Error> {
        let _admin = self.admin.lock().await;
        self.worktrees_unlocked().await
    }

    /// The worktree records, for a caller that holds the admin lock.
    async fn worktrees_unlocked(&self) -> Result<Vec<WorktreeEntry>, Error> {
        let repository = self.repository().await?;
        let text = git_ok(
            repository.target(&self.cfg.repo_root),
            &["worktree", "list", "--porcelain"],
        )
        .await?;
        Ok(parse_worktree_list(&text))
    }

    async fn branch_exists(&self, branch: &str) -> Result<bool, Error> {
        let reference = format!("refs/heads/{branch}");
        let repository = self.repository().await?;
        let out = git(
            repository.target(&self.cfg.repo_root),
            &["rev-parse", "--verify", "--quiet", &reference],
        )
        .await?;
        Ok(out.success())
    }

    /// The commit a new branch starts from, checked so that the error says what is wrong.
    async fn start_point(&self, task: TaskId, start_from: Option<&str>) -> Result<String, Error> {
        let repo = &self.cfg.repo_root;
        let target = self.repository().await?.target(repo);
        let start = start_from.unwrap_or(&self.cfg.base);
        let spec = format!("{start}^{{commit}}");
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
        if out.success() {
            return Ok(out.stdout.trim().to_string());
        }
        let head = git(
            target,
            &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
        )
        .await?;
        if head.success() {
            Err(Error::UnknownStartPoint {
                task,
                start: start.to_string(),
                repo: repo.clone(),
            })
        } else {
            Err(Error::NoCommits { repo: repo.clone() })
        }
    }

    /// Keeps the main checkout from seeing the worktrees as untracked files (and `git add -A`
    /// there from recording them as embedded repositories) when the root lies inside it. The
    /// exclude file is local to the clone, so nothing is committed.
    fn exclude_root_from_repo(&self) {
        let (Ok(repo), Ok(root)) = (self.cfg.repo_root.canonicalize(), self.root.canonicalize())
        else {
            return;
        };
        let Ok(relative) = root.strip_prefix(&repo) else {
            return;
        };
        let git_dir = repo.join(".git");
        if !git_dir.is_dir() || relative.as_os_str().is_empty() {
            return;
        }
        let pattern = format!("/{}/", relative.to_string_lossy());
        let exclude = git_dir.join("info").join("exclude");
        let current = std::fs::read_to_string(&exclude).unwrap_or_default();
        if current.lines().any(|line| line.trim() == pattern) {
            return;
        }
        let appended = std::fs::create_dir_all(git_dir.join("info")).and_then(|()| {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&exclude)?;
            let separator = if current.is_empty() || current.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            file.write_all(format!("{separator}{pattern}\n").as_bytes())
        });
        if let Err(e) = appended {
            tracing::warn!(path = %exclude.display(), error = %e, "cannot add the workspace root to the exclude file");
        }
    }
}

/// The commit checked out in a task's worktree.
async fn head_of(git_dir: &TaskGit) -> Result<String, Error> {
    Ok(git_ok(git_dir.target(), &["rev-parse", "HEAD"])
        .await?
        .trim()
        .to_string())
}

/// Whether two paths name the same place, resolving symbolic links where they exist.
fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    a == b || canon(a) == canon(b)
}

/// The file names in `git status --porcelain -z` output. A rename or copy is followed by its
/// old name as an entry of its own, which is skipped.
pub(crate) fn status_files(text: &str) -> Vec<String> {
    let mut files = Vec::new();
    let mut entries = text.split('\0').filter(|e| !e.is_empty());
    while let Some(entry) = entries.next() {
        files.push(entry.get(3..).unwrap_or(entry).to_string());
        if entry.starts_with(['R', 'C']) {
            entries.next();
        }
    }
    files
}

/// The last `n` characters of `text`.
fn last_chars(text: &str, n: usize) -> String {
    let count = text.chars().count();
    if count <= n {
        return text.to_string();
    }
    let tail: String = text.chars().skip(count - n).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_files_skip_the_old_name_of_a_rename() {
        let text = " M src/lib.rs\0R  new.rs\0old.rs\0?? notes.txt\0";
        assert_eq!(status_files(text), ["src/lib.rs", "new.rs", "notes.txt"]);
    }

    #[test]
    fn last_chars_marks_what_was_left_out() {
        assert_eq!(last_chars("abc", 5), "abc");
        assert_eq!(last_chars("abcdef", 3), "…def");
    }

    #[test]
    fn names_and_paths_follow_the_task_id() {
        let ws = Workspaces::new(WorkspaceConfig {
            repo_root: PathBuf::from("/repo"),
            root: PathBuf::from(".agentgrid/workspaces"),
            base: "HEAD".into(),
            hooks: Default::default(),
            hook_timeout: Duration::from_secs(1),
            quota: Default::default(),
            drivers: Default::default(),
        });
        assert_eq!(Workspaces::branch_name(TaskId(12)), "agentgrid/task-12");
        assert_eq!(
            ws.path_of(TaskId(12)),
            PathBuf::from("/repo/.agentgrid/workspaces/task-12")
        );
    }
}
