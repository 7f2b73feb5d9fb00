//! Reading a task's branch for a person: what it changed against its base, and how far it has
//! moved from it. Host git as everywhere else (see `git.rs`): the common git directory named
//! explicitly, no hooks, no configuration from the worktree, no external diff or textconv
//! drivers, so nothing the agent wrote runs or is read as configuration.

use domain::TaskId;

use crate::git::git_ok;
use crate::{Error, Workspaces};

/// How far a task's branch is from its base: commits only it has, and commits only the base
/// has (work the branch has not taken in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distance {
    pub ahead: u64,
    pub behind: u64,
}

impl Workspaces {
    /// Whether the task's branch exists yet (its first execution makes it).
    pub async fn has_branch(&self, task: TaskId) -> Result<bool, Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let branch = format!("refs/heads/{}", Self::branch_name(task));
        let out = crate::git::git(
            target,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &branch,
            ],
        )
        .await?;
        Ok(out.success())
    }

    /// The task's base: the branch of its parent for a sub-task, otherwise the configured base.
    fn base_of(&self, parent: Option<TaskId>) -> String {
        match parent {
            Some(parent) => format!("refs/heads/{}", Self::branch_name(parent)),
            None => self.config().base.clone(),
        }
    }

    /// The changes of the task's branch since it forked from its base (`base...branch`), as a
    /// patch or, with `stat`, as git's summary of files and lines.
    pub async fn branch_diff(
        &self,
        task: TaskId,
        parent: Option<TaskId>,
        stat: bool,
    ) -> Result<String, Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let range = format!(
            "{}...refs/heads/{}",
            self.base_of(parent),
            Self::branch_name(task)
        );
        let mut args = vec![
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "--submodule=short",
        ];
        if stat {
            args.push("--stat");
        }
        args.extend(["--end-of-options", &range]);
        git_ok(target, &args).await
    }

    /// How far the task's branch is from its base.
    pub async fn distance(&self, task: TaskId, parent: Option<TaskId>) -> Result<Distance, Error> {
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let range = format!(
            "{}...refs/heads/{}",
            self.base_of(parent),
            Self::branch_name(task)
        );
        let out = git_ok(
            target,
            &[
                "rev-list",
                "--left-right",
                "--count",
                "--end-of-options",
                &range,
            ],
        )
        .await?;
        let mut counts = out
            .split_whitespace()
            .map(|n| n.parse::<u64>().unwrap_or(0));
        let behind = counts.next().unwrap_or(0);
        let ahead = counts.next().unwrap_or(0);
        Ok(Distance { ahead, behind })
    }
}
