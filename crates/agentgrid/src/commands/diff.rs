//! `agentgrid diff TASK`: what a task's work changed, its branch against the base it started
//! from, read with the project's hardened host git.

use std::io::IsTerminal;

use domain::{Task, TaskId};
use workspace::Workspaces;

use crate::project::Project;
use crate::user_error;

/// The project's worktree manager, to read task branches with; `None` when the config turns
/// workspaces off (agents then work in the checkout itself, on no branch of their own).
pub async fn workspaces(project: &Project) -> anyhow::Result<Option<Workspaces>> {
    let manifests = project.manifests()?;
    let mut setup = engine::setup_from_project(&manifests, &project.root)?;
    engine::resolve_git_drivers(&manifests, &project.root, &mut setup).await?;
    Ok(setup.workspace.map(Workspaces::new))
}

/// Whether the task has a branch to read, or why not, in words a person can act on.
pub async fn readable_branch(manager: &Workspaces, task: &Task) -> anyhow::Result<Option<String>> {
    if task.branch.is_none() || !manager.has_branch(task.id).await? {
        return Ok(Some(format!(
            "task #{} has no branch yet: its first execution makes {} (see `agentgrid run`)",
            task.id,
            Workspaces::branch_name(task.id)
        )));
    }
    Ok(None)
}

pub async fn diff(project: &Project, id: TaskId, stat: bool) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let Some(task) = app.store().task(id).await? else {
        return Err(user_error(format!(
            "task #{id} does not exist: see `agentgrid task list`"
        )));
    };
    let Some(manager) = workspaces(project).await? else {
        return Err(user_error(
            "workspaces are off in .agentgrid/config.yaml, so tasks have no branches: agents \
             change the checkout itself (see `git diff`)",
        ));
    };
    if let Some(why) = readable_branch(&manager, &task).await? {
        return Err(user_error(why));
    }
    let text = manager.branch_diff(id, task.parent, stat).await?;
    if text.is_empty() {
        eprintln!(
            "task #{id}'s branch changes nothing against {}",
            base_name(&manager, &task)
        );
        return Ok(crate::exit::OK);
    }
    // The patch holds what the agent wrote: escaped on a terminal, where control characters
    // would act, and passed through unchanged to a pipe, so that `git apply` takes it.
    if std::io::stdout().is_terminal() {
        crate::output::bytes(domain::text::multi_line(&text).as_bytes());
    } else {
        crate::output::bytes(text.as_bytes());
    }
    Ok(crate::exit::OK)
}

/// What the task's branch is compared with, for messages.
pub fn base_name(manager: &Workspaces, task: &Task) -> String {
    match task.parent {
        Some(parent) => format!("its parent's branch {}", Workspaces::branch_name(parent)),
        None => format!("the base {}", manager.config().base),
    }
}
