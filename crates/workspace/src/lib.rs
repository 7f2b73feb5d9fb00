//! Git worktrees for tasks: one checkout and one branch per task, with hooks and a cleanup that
//! never loses work.
//!
//! Every task works in its own worktree at `<root>/task-<id>`, on its own branch
//! `agentgrid/task-<id>`. A sub-task's branch starts from its parent's branch, so the parent can
//! later merge the children's work back. All git commands run through the launch crate with a
//! clean environment ([`git_env`]): a fixed identity, no prompts, nothing of the caller's, and
//! on directories the engine names itself (`--git-dir`, `--work-tree`), never on what the
//! worktree's own `.git` file says: everything in a worktree is the agent's to write.
//!
//! The principal types:
//! - [`Workspaces`], built from a [`WorkspaceConfig`]: [`Workspaces::ensure`] makes or finds a
//!   task's worktree, [`Workspaces::run_hook`] runs the configured [`Hooks`] in it,
//!   [`Workspaces::commit_all`] records the agent's work, [`Workspaces::merge_branch`] brings a
//!   sub-task's branch in ([`MergeOutcome`]), and [`Workspaces::remove`] cleans up
//!   ([`RemoveOutcome`]).
//! - [`Workspace`]: one task's worktree, path and branch.
//! - [`WorktreeTurn`]: the right to work in one worktree; host-side work there (checkouts,
//!   commits, merges, removal) takes turns ([`Workspaces::turn`]).
//! - [`Review`]: what a task's branch changed, per file and as a patch, for a person deciding
//!   on an approval ([`Workspaces::review`]).
//!
//! The key decision: removal is conservative and branches are permanent. A worktree is only
//! removed when no process has its working directory or an open file inside it and nothing is
//! uncommitted, and removing it never deletes its branch, so every commit an agent made stays
//! reachable, and a later [`Workspaces::ensure`] checks the branch out again.
//!
//! ```no_run
//! # async fn demo() -> Result<(), workspace::Error> {
//! use std::time::Duration;
//! use domain::TaskId;
//! use workspace::{Hooks, WorkspaceConfig, Workspaces};
//!
//! let workspaces = Workspaces::new(WorkspaceConfig {
//!     repo_root: "/src/project".into(),
//!     root: ".agentgrid/workspaces".into(),
//!     base: "HEAD".into(),
//!     hooks: Hooks { after_create: Some("npm ci".into()), ..Hooks::default() },
//!     hook_timeout: Duration::from_secs(600),
//!     quota: Default::default(),
//!     drivers: Default::default(),
//! });
//! let ws = workspaces.ensure(TaskId(7), None, None).await?;
//! assert_eq!(ws.branch, "agentgrid/task-7");
//! // ... the agent works in ws.path ...
//! let commit = workspaces.commit_all(&ws, "Add CSV export\n\nAgentgrid-Task: 7\n").await?;
//! # Ok(()) }
//! ```

mod busy;
mod config;
mod drivers;
mod error;
mod git;
mod guard;
mod inspect;
mod judge;
mod land;
pub mod message;
mod quota;
mod review;
mod turn;
mod workspaces;

pub use busy::{processes_using, processes_using_blocking};
pub use config::{Hook, HookKind, Hooks, WorkspaceConfig};
pub use drivers::{Driver, DriverSource, TrustedDrivers, trusted_drivers, valid_driver_name};
pub use error::Error;
pub use git::git_env;
pub use inspect::Distance;
pub use judge::{Change, ChangeKind, JudgeTree};
pub use land::{MainCheckout, Prepared};
pub use quota::{Measured, OverQuota, Quota, measure};
pub use review::{FileStat, Review};
pub use turn::WorktreeTurn;
pub use workspaces::{MergeOutcome, RemoveOutcome, Workspace, Workspaces};
