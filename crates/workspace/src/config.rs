//! How workspaces are laid out and which hooks run in them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where the repository and its task worktrees live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceConfig {
    /// The top of the main checkout.
    pub repo_root: PathBuf,
    /// The directory holding one worktree per task, such as `<repo>/.agentgrid/workspaces`.
    /// A relative path is taken from `repo_root`.
    pub root: PathBuf,
    /// What a top-level task's branch starts from: `HEAD` or a branch name.
    pub base: String,
    pub hooks: Hooks,
    /// How long one hook may run before its process group is killed.
    pub hook_timeout: Duration,
    /// The most one commit of the agent's work may add.
    pub quota: crate::Quota,
    /// The filter, diff and merge drivers every git command is given (see
    /// [`crate::trusted_drivers`]).
    pub drivers: crate::TrustedDrivers,
}

/// Shell lines run with `sh -c` inside a workspace at fixed moments of its life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Once, right after the worktree was checked out (install dependencies, say).
    pub after_create: Option<Hook>,
    /// Before each agent run.
    pub before_run: Option<Hook>,
    /// After each agent run.
    pub after_run: Option<Hook>,
    /// Before the worktree is removed; a failure keeps it.
    pub before_remove: Option<Hook>,
}

impl Hooks {
    pub fn get(&self, kind: HookKind) -> Option<&Hook> {
        match kind {
            HookKind::AfterCreate => self.after_create.as_ref(),
            HookKind::BeforeRun => self.before_run.as_ref(),
            HookKind::AfterRun => self.after_run.as_ref(),
            HookKind::BeforeRemove => self.before_remove.as_ref(),
        }
    }
}

/// One hook: a shell line, and where it runs.
///
/// A hook runs code from the workspace (`make fmt` runs the agent's Makefile), so by default it
/// runs in the sandbox of the execution it belongs to (see [`crate::Workspaces::run_hook`]).
/// `host` is the explicit opt-out for a hook that must reach what a sandbox hides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub command: String,
    /// Runs on the host, unconfined, as the engine's user.
    pub host: bool,
}

impl From<&str> for Hook {
    fn from(command: &str) -> Hook {
        Hook {
            command: command.to_string(),
            host: false,
        }
    }
}

impl From<String> for Hook {
    fn from(command: String) -> Hook {
        Hook {
            command,
            host: false,
        }
    }
}

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    AfterCreate,
    BeforeRun,
    AfterRun,
    BeforeRemove,
}

impl HookKind {
    pub const ALL: [HookKind; 4] = [
        HookKind::AfterCreate,
        HookKind::BeforeRun,
        HookKind::AfterRun,
        HookKind::BeforeRemove,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::AfterCreate => "after_create",
            HookKind::BeforeRun => "before_run",
            HookKind::AfterRun => "after_run",
            HookKind::BeforeRemove => "before_remove",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
