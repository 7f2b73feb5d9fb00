//! `agentgrid land`: a thin face over `app::Land` with the local git lander.

use std::sync::Arc;

use app::{Actor, Land, Landed};
use domain::{LandStrategy, TaskId};

use crate::project::Project;
use crate::user_error;

/// The project's local git lander, as `land` and the approval queue's `approvals.land_after`
/// use it: the manifests' agents judge the landed tree, `land.strategy` is the default.
pub(super) async fn local_lander(project: &Project) -> anyhow::Result<engine::LocalLander> {
    let manifests = project.manifests()?;
    let mut setup = engine::setup_from_project(&manifests, &project.root)?;
    engine::resolve_git_drivers(&manifests, &project.root, &mut setup).await?;
    let Some(config) = setup.workspace.clone() else {
        return Err(user_error(
            "workspaces are off (workspace.enabled: false), so tasks have no branches to land",
        ));
    };
    let judges = engine::Judges {
        agents: setup.agents.clone(),
        project_dir: project.root.clone(),
        state_dir: project.state_dir.clone(),
        run_dir: engine::runtime_dir(&project.state_dir),
        agentgrid_bin: std::env::current_exe()?,
        grace: setup.grace,
    };
    Ok(engine::LocalLander::new(
        Arc::new(workspace::Workspaces::new(config)),
        manifests.config.land.strategy,
        judges,
    ))
}

pub async fn land(
    project: &Project,
    task: TaskId,
    strategy: Option<String>,
    dry_run: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    let strategy = strategy.as_deref().and_then(LandStrategy::parse);
    let lander = local_lander(project).await?;
    let app = project.app().await?;
    let landed = app
        .execute(
            &Actor::command_line(),
            Land {
                task,
                strategy,
                dry_run,
                lander: Arc::new(lander),
            },
        )
        .await?;
    let code = match &landed {
        Landed::Conflict { .. } => crate::exit::FAILED,
        _ => crate::exit::OK,
    };
    if as_json {
        let value = match &landed {
            Landed::Moved {
                strategy,
                base,
                old,
                new,
                dry_run,
                tree,
            } => serde_json::json!({
                "outcome": if *dry_run { "would_land" } else { "landed" },
                "task": task, "strategy": strategy, "base": base, "old": old, "new": new,
                "tree": tree,
            }),
            Landed::UpToDate { base, commit } => serde_json::json!({
                "outcome": "up_to_date", "task": task, "base": base, "new": commit,
            }),
            Landed::Conflict {
                base,
                files,
                task: made,
            } => serde_json::json!({
                "outcome": "conflict", "task": task, "base": base, "files": files,
                "conflict_task": made,
            }),
        };
        crate::output::json(&value)?;
        return Ok(code);
    }
    for line in landed_lines(task, &landed) {
        outln!("{line}");
    }
    Ok(code)
}

/// What a land did, in words: the first line says it all (the approval queue shows only that).
pub(super) fn landed_lines(task: TaskId, landed: &Landed) -> Vec<String> {
    let base_name = |base: &str| base.strip_prefix("refs/heads/").unwrap_or(base).to_string();
    let mut lines = Vec::new();
    match landed {
        Landed::Moved {
            strategy,
            base,
            old,
            new,
            dry_run,
            tree,
        } => {
            let verb = if *dry_run { "would land" } else { "landed" };
            lines.push(format!(
                "#{task} {verb} on {} ({strategy}): {} → {}",
                base_name(base),
                domain::event::short(old),
                domain::event::short(new)
            ));
            if !tree.is_empty() {
                let ids: Vec<String> = tree.iter().map(|t| format!("#{t}")).collect();
                lines.push(format!("with its sub-tasks {}", ids.join(", ")));
            }
        }
        Landed::UpToDate { base, commit } => lines.push(format!(
            "#{task}: {} already holds its work (at {}); recorded as landed",
            base_name(base),
            domain::event::short(commit)
        )),
        Landed::Conflict {
            base,
            files,
            task: made,
        } => {
            lines.push(format!(
                "#{task} conflicts with {} in {}; {} is unchanged",
                base_name(base),
                files.join(", "),
                base_name(base)
            ));
            lines.push(match made {
                Some(id) => format!("task #{id} is for an agent to resolve the conflicts"),
                None => "(dry run: no task made)".to_string(),
            });
        }
    }
    lines
}
