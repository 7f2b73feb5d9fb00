//! From the project's agencies to the scheduler's [`AgencyPolicy`]s and to what each member's
//! prompt sees of its agency (`{{ agency }}`: name, role, the text of its context files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use manifest::{AgencyRouting, AgencyView, Project};
use scheduler::{AgencyPolicy, RoutingMode, SpecialistPolicy};

/// The most of one context file a prompt is shown; the rest is cut with a note.
const CONTEXT_FILE_LIMIT: usize = 64 * 1024;

/// Per member agent: its agency, its role and the context files to show.
#[derive(Debug, Clone, Default)]
pub struct Agencies {
    members: HashMap<String, Member>,
}

#[derive(Debug, Clone)]
struct Member {
    agency: String,
    role: String,
    /// Each file's path as written and where it is on disk.
    context: Vec<(String, PathBuf)>,
}

impl Agencies {
    pub fn from_project(project: &Project, repo_root: &Path) -> Agencies {
        let mut members = HashMap::new();
        for agency in &project.agencies {
            let context: Vec<(String, PathBuf)> = agency
                .spec()
                .context
                .iter()
                .map(|p| (p.clone(), repo_root.join(p)))
                .collect();
            for (agent, role) in agency.members() {
                members.insert(
                    agent.to_string(),
                    Member {
                        agency: agency.name.clone(),
                        role: role.to_string(),
                        context: context.clone(),
                    },
                );
            }
        }
        Agencies { members }
    }

    /// What `agent`'s prompt sees of its agency, read now so that memory files written by an
    /// earlier execution are seen by the next. A file that cannot be read is named as such.
    pub fn view_for(&self, agent: &str) -> Option<AgencyView> {
        let member = self.members.get(agent)?;
        let mut context = String::new();
        for (name, path) in &member.context {
            context.push_str(&format!("## {name}\n"));
            match std::fs::read(path) {
                Ok(bytes) => {
                    let cut = bytes.len() > CONTEXT_FILE_LIMIT;
                    let text =
                        String::from_utf8_lossy(&bytes[..bytes.len().min(CONTEXT_FILE_LIMIT)]);
                    context.push_str(&text);
                    if !text.ends_with('\n') {
                        context.push('\n');
                    }
                    if cut {
                        context.push_str(&format!("[cut at {CONTEXT_FILE_LIMIT} bytes]\n"));
                    }
                }
                Err(err) => context.push_str(&format!("[not readable: {err}]\n")),
            }
        }
        Some(AgencyView {
            name: member.agency.clone(),
            role: member.role.clone(),
            context,
        })
    }
}

/// The scheduler's view of every agency, in the order the project declares them.
pub fn policies(project: &Project) -> Vec<AgencyPolicy> {
    project
        .agencies
        .iter()
        .map(|a| {
            let spec = a.spec();
            AgencyPolicy {
                name: a.name.clone(),
                labels: spec.labels.clone(),
                capabilities: spec.capabilities.clone(),
                coordinator: spec.coordinator.clone(),
                specialists: spec
                    .specialists
                    .iter()
                    .map(|s| SpecialistPolicy {
                        capabilities: s.capabilities.clone(),
                        cost: s.cost,
                        ..SpecialistPolicy::new(s.agent.clone(), s.role.clone())
                    })
                    .collect(),
                concurrency: spec.limits.concurrency,
                mode: match spec.routing {
                    AgencyRouting::Rule => RoutingMode::Rule,
                    AgencyRouting::ContractNet => RoutingMode::ContractNet {
                        deadline: spec.bid_deadline,
                    },
                },
            }
        })
        .collect()
}
