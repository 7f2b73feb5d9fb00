//! One module per command; `run` dispatches.

mod agent_builtin;
mod boundary;
mod ctl;
mod demo;
mod demo_builtin;
mod doctor;
mod events;
mod init;
mod run;
mod status;
mod task;
mod validate;
mod verdicts;

pub use demo::DemoAgents;

use crate::cli::{Cli, Command};
use crate::project::Project;

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let project = cli.project.as_deref();
    match cli.command {
        Command::Init { dir } => init::init(dir.as_deref().or(project)).await,
        Command::Task(cmd) => task::task(&Project::find(project)?, cmd).await,
        Command::Run { forever, quiet } => run::run(&Project::find(project)?, forever, quiet).await,
        Command::Status { json } => status::status(&Project::find(project)?, json).await,
        Command::Events {
            from,
            follow,
            task,
            json,
        } => events::events(&Project::find(project)?, from, follow, task, json).await,
        Command::Logs { execution, follow } => {
            events::logs(&Project::find(project)?, execution, follow).await
        }
        Command::Validate { json } => validate::validate(&Project::find(project)?, json),
        Command::Schema => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&manifest::json_schema())?
            );
            Ok(crate::exit::OK)
        }
        Command::Demo { dir, agents } => demo::demo(dir, agents).await,
        Command::Ctl(cmd) => ctl::ctl(cmd),
        Command::AgentBuiltin { model, max_turns } => {
            agent_builtin::agent_builtin(model, max_turns).await
        }
        Command::Doctor { json } => doctor::doctor(json, Project::find(project).ok()).await,
    }
}
