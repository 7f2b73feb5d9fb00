//! `agentgrid land`: a thin face over `app::Land` with the local git lander.

use std::sync::Arc;

use app::{Actor, Land, Landed};
use domain::{LandStrategy, TaskId};

use crate::project::Project;
use crate::user_error;

pub async fn land(
    project: &Project,
    task: TaskId,
    strategy: Option<String>,
    dry_run: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    let manifests = project.manifests()?;
    let mut setup = engine::setup_from_project(&manifests, &project.root)?;
    engine::resolve_git_drivers(&manifests, &project.root, &mut setup).await?;
    let Some(config) = setup.workspace.clone() else {
        return Err(user_error(
            "workspaces are off (workspace.enabled: false), so tasks have no branches to land",
        ));
    };
    let strategy = strategy.as_deref().and_then(LandStrategy::parse);
    let judges = engine::Judges {
        agents: setup.agents.clone(),
        project_dir: project.root.clone(),
        state_dir: project.state_dir.clone(),
        run_dir: engine::runtime_dir(&project.state_dir),
        agentgrid_bin: std::env::current_exe()?,
        grace: setup.grace,
    };
    let lander = engine::LocalLander::new(
        Arc::new(workspace::Workspaces::new(config)),
        manifests.config.land.strategy,
        judges,
    );
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
    let base_name = |base: &str| base.strip_prefix("refs/heads/").unwrap_or(base).to_string();
    match landed {
        Landed::Moved {
            strategy,
            base,
            old,
            new,
            dry_run,
            tree,
        } => {
            let verb = if dry_run { "would land" } else { "landed" };
            outln!(
                "#{task} {verb} on {} ({strategy}): {} → {}",
                base_name(&base),
                domain::event::short(&old),
                domain::event::short(&new)
            );
            if !tree.is_empty() {
                let ids: Vec<String> = tree.iter().map(|t| format!("#{t}")).collect();
                outln!("with its sub-tasks {}", ids.join(", "));
            }
        }
        Landed::UpToDate { base, commit } => outln!(
            "#{task}: {} already holds its work (at {}); recorded as landed",
            base_name(&base),
            domain::event::short(&commit)
        ),
        Landed::Conflict {
            base,
            files,
            task: made,
        } => {
            outln!(
                "#{task} conflicts with {} in {}; {} is unchanged",
                base_name(&base),
                files.join(", "),
                base_name(&base)
            );
            match made {
                Some(id) => outln!("made task #{id} for an agent to resolve the conflicts"),
                None => outln!("(dry run: no task made)"),
            }
        }
    }
    Ok(code)
}
