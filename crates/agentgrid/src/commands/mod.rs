//! One module per command; `run` dispatches.

mod agency;
mod agent_builtin;
mod approvals;
mod approvals_tui;
mod boundary;
mod ctl;
mod demo;
mod demo_agencies;
mod demo_builtin;
mod diff;
mod doctor;
mod events;
mod feedback_editor;
mod init;
mod land;
mod leases;
mod metrics;
mod msg;
mod run;
mod run_checks;
mod run_status;
mod shell;
mod status;
mod task;
mod task_list;
mod usage;
mod validate;
mod verdicts;
mod workflow;

pub use demo::DemoAgents;

use crate::cli::{Cli, Command};
use crate::project::Project;

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let project = cli.project.as_deref();
    match cli.command {
        Command::Init {
            dir,
            agencies,
            runtime,
        } => init::init(dir.as_deref().or(project), &agencies, runtime.as_deref()).await,
        Command::Agency(cmd) => agency::agency(&Project::find(project)?, cmd).await,
        Command::Task(cmd) => task::task(&Project::find(project)?, cmd).await,
        Command::Workflow(cmd) => workflow::workflow(&Project::find(project)?, cmd).await,
        Command::Run {
            forever,
            quiet,
            status_every,
        } => run::run(&Project::find(project)?, forever, quiet, status_every).await,
        Command::Status {
            json,
            watch,
            interval,
        } => {
            let project = Project::find(project)?;
            if watch {
                status::watch(&project, json, std::time::Duration::from_secs_f64(interval)).await
            } else {
                status::status(&project, json).await
            }
        }
        Command::Land {
            task,
            strategy,
            dry_run,
            json,
        } => land::land(&Project::find(project)?, task, strategy, dry_run, json).await,
        Command::Events {
            from,
            tail,
            follow,
            task,
            json,
        } => {
            let start = match tail {
                Some(count) => events::Start::Tail(count),
                None => events::Start::After(from),
            };
            events::events(&Project::find(project)?, start, follow, task, json).await
        }
        Command::Usage { by, json } => usage::usage(&Project::find(project)?, by, json).await,
        Command::Diff { task, stat } => diff::diff(&Project::find(project)?, task, stat).await,
        Command::Logs {
            execution,
            follow,
            json,
            raw,
        } => events::logs(&Project::find(project)?, execution, follow, json, raw).await,
        Command::Validate { json } => validate::validate(&Project::find(project)?, json).await,
        Command::Schema => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&manifest::json_schema())?
            );
            Ok(crate::exit::OK)
        }
        Command::Demo {
            agencies: true,
            dir,
            ..
        } => demo_agencies::demo(dir).await,
        Command::Demo { dir, agents, .. } => demo::demo(dir, agents).await,
        Command::Approvals { command } => {
            approvals::approvals(&Project::find(project)?, command).await
        }
        Command::Msg(cmd) => msg::msg(&Project::find(project)?, cmd).await,
        Command::Escalations { command } => {
            msg::escalations(&Project::find(project)?, command).await
        }
        Command::Ctl(cmd) => ctl::ctl(cmd),
        Command::AgentBuiltin { model, max_turns } => {
            agent_builtin::agent_builtin(model, max_turns).await
        }
        Command::Doctor { json } => doctor::doctor(json, Project::find(project).ok()).await,
        Command::Completions { shell } => shell::completions(shell),
        Command::Man { dir } => shell::man(dir.as_deref()),
        Command::Leases { all, json } => leases::leases(&Project::find(project)?, all, json).await,
        Command::Metrics { since, json } => {
            metrics::metrics(&Project::find(project)?, since.as_deref(), json).await
        }
    }
}
