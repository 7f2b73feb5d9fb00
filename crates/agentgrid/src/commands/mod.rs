//! One module per command; `run` dispatches.

mod boundary;
mod ctl;
mod demo;
mod doctor;
mod events;
mod init;
mod run;
mod status;
mod task;
mod validate;
mod verdicts;

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
        Command::Logs {
            execution,
            follow,
            raw,
        } => events::logs(&Project::find(project)?, execution, follow, raw).await,
        Command::Validate { json } => validate::validate(&Project::find(project)?, json),
        Command::Schema => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&manifest::json_schema())?
            );
            Ok(crate::exit::OK)
        }
        Command::Demo { dir } => demo::demo(dir).await,
        Command::Ctl(cmd) => ctl::ctl(cmd),
        Command::Doctor { json } => doctor::doctor(json, Project::find(project).ok()).await,
    }
}
