//! `agentgrid metrics`: agency metrics per agency and per agent.

use crate::project::Project;

pub async fn metrics(project: &Project, since: Option<&str>, as_json: bool) -> anyhow::Result<u8> {
    let _ = (project, since, as_json);
    Ok(crate::exit::OK)
}
