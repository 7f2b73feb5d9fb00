//! `agentgrid validate`: every manifest problem, as file:line:col.

use crate::project::Project;

pub fn validate(project: &Project, json: bool) -> anyhow::Result<u8> {
    match manifest::load_project(&project.state_dir) {
        Ok(loaded) => {
            if json {
                crate::output::json(&serde_json::json!({
                    "ok": true,
                    "agents": loaded.agents.iter().map(|a| a.manifest.metadata.name.clone()).collect::<Vec<_>>(),
                    "problems": [],
                }))?;
            } else if loaded.agents.is_empty() {
                outln!(
                    "config is valid, but no agents are defined: add one under {}/agents/",
                    project.state_dir.display()
                );
                return Ok(crate::exit::FAILED);
            } else {
                outln!("ok: config and {} agent(s) are valid", loaded.agents.len());
            }
            Ok(crate::exit::OK)
        }
        Err(diagnostics) => {
            if json {
                let problems: Vec<_> = diagnostics
                    .iter()
                    .map(|d| serde_json::json!({"file": d.file, "line": d.line, "column": d.column, "message": d.message}))
                    .collect();
                crate::output::json(&serde_json::json!({"ok": false, "problems": problems}))?;
            } else {
                eprintln!("{diagnostics}");
                eprintln!("{} problem(s) found", diagnostics.len());
            }
            Ok(crate::exit::FAILED)
        }
    }
}
