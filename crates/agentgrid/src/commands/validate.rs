//! `agentgrid validate`: every manifest problem, as file:line:col, then the mistakes that
//! would only show once agents run (see [`crate::checks`]).

use crate::checks::{Finding, Severity};
use crate::project::Project;

pub async fn validate(project: &Project, json: bool) -> anyhow::Result<u8> {
    match manifest::load_project(&project.state_dir) {
        Ok(loaded) => {
            let mut findings = crate::checks::project(&project.root, &loaded).await;
            findings.extend(crate::toolchains::suggestions(&project.root, &loaded));
            let programs = crate::checks::programs(&project.root, &loaded);
            let errors = findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            // As before these checks: no agents is printed as a problem, not reported in JSON.
            let ok = errors == 0;
            if json {
                crate::output::json(&serde_json::json!({
                    "ok": ok,
                    "agents": loaded.agents.iter().map(|a| a.manifest.metadata.name.clone()).collect::<Vec<_>>(),
                    "problems": findings.iter().filter(|f| f.severity == Severity::Error).map(problem).collect::<Vec<_>>(),
                    "warnings": findings.iter().filter(|f| f.severity == Severity::Warning).map(problem).collect::<Vec<_>>(),
                    "suggestions": findings.iter().filter(|f| f.severity == Severity::Suggestion).map(problem).collect::<Vec<_>>(),
                    "programs": programs,
                }))?;
                return Ok(if ok {
                    crate::exit::OK
                } else {
                    crate::exit::FAILED
                });
            }
            for finding in &findings {
                eprintln!("{}", domain::text::one_line(&finding.render()));
            }
            for p in &programs {
                outln!(
                    "agent `{}` ({}) runs {}",
                    p.agent,
                    p.runtime,
                    domain::text::one_line(&p.program.display().to_string())
                );
            }
            if loaded.agents.is_empty() {
                outln!(
                    "config is valid, but no agents are defined: add one under {}/agents/",
                    project.state_dir.display()
                );
                return Ok(crate::exit::FAILED);
            }
            if errors > 0 {
                eprintln!(
                    "{errors} problem(s) found; the manifests themselves are valid (config and {} agent(s))",
                    loaded.agents.len()
                );
                return Ok(crate::exit::FAILED);
            }
            outln!("ok: config and {} agent(s) are valid", loaded.agents.len());
            Ok(crate::exit::OK)
        }
        Err(diagnostics) => {
            if json {
                let problems: Vec<_> = diagnostics
                    .iter()
                    .map(|d| serde_json::json!({"file": d.file, "line": d.line, "column": d.column, "message": d.message}))
                    .collect();
                crate::output::json(
                    &serde_json::json!({"ok": false, "problems": problems, "warnings": [], "suggestions": []}),
                )?;
            } else {
                eprintln!("{diagnostics}");
                eprintln!("{} problem(s) found", diagnostics.len());
            }
            Ok(crate::exit::FAILED)
        }
    }
}

/// A finding in the shape of a manifest problem in `--json`.
fn problem(f: &Finding) -> serde_json::Value {
    serde_json::json!({"file": f.file, "line": f.line, "column": f.column, "message": f.message})
}
