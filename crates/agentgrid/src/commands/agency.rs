//! `agentgrid agency add|list|show`: write a seed agency into the project, and show the
//! agencies the project declares with their members, roles and what they accept.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::cli::AgencyCommand;
use crate::project::Project;
use crate::user_error;

pub async fn agency(project: &Project, command: AgencyCommand) -> anyhow::Result<u8> {
    match command {
        AgencyCommand::Add {
            name,
            template,
            runtime,
        } => {
            let template = template.unwrap_or_else(|| name.clone());
            let existing = existing_agencies(&project.state_dir);
            let mut present: Vec<&str> = existing.iter().map(String::as_str).collect();
            present.push(&name);
            let written = write_agencies(
                &project.state_dir,
                &[(name.as_str(), template.as_str())],
                runtime.as_deref(),
                &present,
            )?;
            report(&project.root, &written);
            outln!("\nNext: agentgrid validate, then label tasks for it (`--label {name}`).");
            Ok(crate::exit::OK)
        }
        AgencyCommand::List { json: as_json } => {
            let manifests = project.manifests()?;
            if as_json {
                let list: Vec<_> = manifests.agencies.iter().map(agency_json).collect();
                crate::output::json(&serde_json::Value::Array(list))?;
                return Ok(crate::exit::OK);
            }
            if manifests.agencies.is_empty() {
                outln!(
                    "no agencies: add one with `agentgrid agency add code` (templates: {})",
                    manifest::agency_template_names().join(", ")
                );
                return Ok(crate::exit::OK);
            }
            let rows: Vec<Vec<String>> = manifests
                .agencies
                .iter()
                .map(|a| {
                    let s = a.spec();
                    vec![
                        a.name.clone(),
                        s.coordinator.clone(),
                        s.specialists.len().to_string(),
                        s.labels.join(","),
                        s.routing.name().to_string(),
                        s.limits
                            .concurrency
                            .map_or("-".to_string(), |c| c.to_string()),
                    ]
                })
                .collect();
            crate::output::table(
                &[
                    "AGENCY",
                    "COORDINATOR",
                    "SPECIALISTS",
                    "LABELS",
                    "ROUTING",
                    "CAP",
                ],
                &rows,
            );
            Ok(crate::exit::OK)
        }
        AgencyCommand::Show {
            name,
            json: as_json,
        } => {
            let manifests = project.manifests()?;
            let Some(a) = manifests.agency(&name) else {
                let known: Vec<&str> = manifests.agencies.iter().map(|a| a.name.as_str()).collect();
                return Err(user_error(format!(
                    "no agency `{name}` (agencies: {}); `agentgrid agency list` shows them",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if as_json {
                crate::output::json(&agency_json(a))?;
                return Ok(crate::exit::OK);
            }
            let s = a.spec();
            outln!("agency {}: {}", a.name, s.description);
            outln!(
                "  file:         {}",
                a.source
                    .strip_prefix(&project.root)
                    .unwrap_or(&a.source)
                    .display()
            );
            outln!("  coordinator:  {}", s.coordinator);
            for sp in &s.specialists {
                outln!(
                    "  specialist:   {} ({}){}",
                    sp.agent,
                    sp.role,
                    if sp.capabilities.is_empty() {
                        String::new()
                    } else {
                        format!(", capabilities {}", sp.capabilities.join(", "))
                    }
                );
            }
            outln!(
                "  accepts:      labels [{}], capabilities [{}]",
                s.labels.join(", "),
                s.capabilities.join(", ")
            );
            outln!(
                "  routing:      {}{}",
                s.routing.name(),
                match s.routing {
                    manifest::AgencyRouting::ContractNet =>
                        format!(" (bids close after {})", s.bid_deadline),
                    manifest::AgencyRouting::Rule => String::new(),
                }
            );
            outln!(
                "  cap:          {}",
                s.limits
                    .concurrency
                    .map_or("none".to_string(), |c| format!("{c} execution(s) at once"))
            );
            if !s.context.is_empty() {
                outln!("  context:      {}", s.context.join(", "));
            }
            for h in &s.policies.handoffs {
                outln!("  hands off:    {} → {}", h.from, h.to.join(", "));
            }
            if s.policies.approval {
                outln!("  approval:     its done top-level work waits for a person");
            }
            Ok(crate::exit::OK)
        }
    }
}

fn agency_json(a: &manifest::Agency) -> serde_json::Value {
    let s = a.spec();
    json!({
        "name": a.name,
        "description": s.description,
        "file": a.source,
        "coordinator": s.coordinator,
        "specialists": s.specialists.iter().map(|sp| json!({
            "agent": sp.agent,
            "role": sp.role,
            "capabilities": sp.capabilities,
            "cost": sp.cost,
        })).collect::<Vec<_>>(),
        "labels": s.labels,
        "capabilities": s.capabilities,
        "context": s.context,
        "concurrency": s.limits.concurrency,
        "routing": s.routing.name(),
        "bid_deadline_ms": s.bid_deadline.as_millis(),
        "handoffs": s.policies.handoffs.iter().map(|h| json!({"from": h.from, "to": h.to})).collect::<Vec<_>>(),
        "approval": s.policies.approval,
    })
}

/// The names of the agency files already in `.agentgrid/agencies/`.
fn existing_agencies(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("agencies")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let ext = path.extension()?;
            (ext == "yaml" || ext == "yml")
                .then(|| path.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names
}

/// The runtime the templates are written for: the one asked, else the first agent CLI found
/// on PATH (claude, then codex), else a command to fill in.
fn runtime_for(asked: Option<&str>) -> anyhow::Result<manifest::TemplateRuntime> {
    if let Some(name) = asked {
        let names: Vec<&str> = manifest::TemplateRuntime::NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect();
        return manifest::TemplateRuntime::parse(name).ok_or_else(|| {
            user_error(format!(
                "`{name}` is not a runtime of the templates; use one of {}",
                names.join(", ")
            ))
        });
    }
    let on_path = |binary: &str| {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
            .unwrap_or(false)
    };
    Ok(if on_path("claude") {
        manifest::TemplateRuntime::Claude
    } else if on_path("codex") {
        manifest::TemplateRuntime::Codex
    } else {
        manifest::TemplateRuntime::Command
    })
}

/// Which files were written and which kept.
pub struct Written {
    pub made: Vec<std::path::PathBuf>,
    pub kept: Vec<std::path::PathBuf>,
}

/// Writes the seed agencies `(name, template)` under `state_dir`, for `runtime`, handing off
/// to the agencies in `present`. A file that exists is kept as it is. An unknown template or a
/// bad name is refused before anything is written.
pub fn write_agencies(
    state_dir: &Path,
    chosen: &[(&str, &str)],
    runtime: Option<&str>,
    present: &[&str],
) -> anyhow::Result<Written> {
    let runtime = runtime_for(runtime)?;
    let mut files = Vec::new();
    for (name, template) in chosen {
        let valid = !name.is_empty()
            && name.len() <= 58
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(user_error(format!(
                "`{name}` is not a valid agency name: use lowercase letters, digits and dashes (at most 58, so that its agents' names fit)"
            )));
        }
        let t = manifest::agency_template(template).ok_or_else(|| {
            user_error(format!(
                "there is no agency template `{template}`; the templates are {}",
                manifest::agency_template_names().join(", ")
            ))
        })?;
        files.extend(t.files(name, runtime, present));
    }
    let mut written = Written {
        made: Vec::new(),
        kept: Vec::new(),
    };
    for f in files {
        let path = state_dir.join(&f.path);
        if path.exists() {
            written.kept.push(path);
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, &f.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.made.push(path);
    }
    Ok(written)
}

pub fn report(root: &Path, written: &Written) {
    for p in &written.made {
        outln!("created {}", p.strip_prefix(root).unwrap_or(p).display());
    }
    for p in &written.kept {
        outln!("kept    {}", p.strip_prefix(root).unwrap_or(p).display());
    }
}
