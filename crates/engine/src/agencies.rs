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
    /// The repository root the context paths are relative to.
    root: PathBuf,
    /// The agencies as declared, for their handoff policies.
    declared: Vec<manifest::Agency>,
}

#[derive(Debug, Clone)]
struct Member {
    agency: String,
    role: String,
    /// Each file's path as written and that path relative to the repository root.
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
                .map(|p| (p.clone(), PathBuf::from(p)))
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
        // The checked-out tree holds files agents wrote (merged work), so a context file is
        // read only inside it: the root as it really is, with no link followed out of it.
        let root = std::fs::canonicalize(repo_root).unwrap_or_else(|_| repo_root.to_path_buf());
        Agencies {
            members,
            root,
            declared: project.agencies.clone(),
        }
    }

    /// The agencies as the project declares them, in order.
    pub fn declared(&self) -> &[manifest::Agency] {
        &self.declared
    }

    /// What `agent`'s prompt sees of its agency, read now so that memory files written by an
    /// earlier execution are seen by the next. A file that cannot be read is named as such.
    pub fn view_for(&self, agent: &str) -> Option<AgencyView> {
        let member = self.members.get(agent)?;
        let mut context = String::new();
        for (name, path) in &member.context {
            context.push_str(&format!("## {name}\n"));
            match read_context_file(&self.root, path) {
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

/// Reads at most one byte past [`CONTEXT_FILE_LIMIT`] of the context file `rel` under `root`,
/// which files an agent wrote may have reached (merged work in the checked-out tree): the file
/// must really be inside `root` (no symlink, of the file or a directory above it, leads out),
/// be a regular file (not a FIFO, which would block the engine, nor a device such as
/// `/dev/zero`, which never ends), and is opened without following a final symlink and without
/// blocking, then checked again through the descriptor so that a swap after the check is caught.
fn read_context_file(root: &Path, rel: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let outside = || {
        Error::new(
            ErrorKind::PermissionDenied,
            "it leads out of the repository (a symlink); only files inside it are read",
        )
    };
    let real = std::fs::canonicalize(root.join(rel))?;
    if !real.starts_with(root) {
        return Err(outside());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&real)?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file; only regular files are read",
        ));
    }
    {
        use std::os::fd::AsRawFd;
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        if !opened.starts_with(root) {
            return Err(outside());
        }
    }
    let mut bytes = Vec::new();
    file.take(CONTEXT_FILE_LIMIT as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Who is who for delivery and escalation: each agency's members and roles, its coordinator
/// and escalation deadline, and the topics each agent follows.
pub fn directory(project: &Project) -> app::Directory {
    let mut directory = app::Directory::known();
    for a in &project.agencies {
        let spec = a.spec();
        let specialists: Vec<(String, String)> = spec
            .specialists
            .iter()
            .map(|s| (s.agent.clone(), s.role.clone()))
            .collect();
        directory.add_agency(
            &a.name,
            &spec.coordinator,
            &specialists,
            spec.escalation_deadline,
        );
    }
    for agent in &project.agents {
        directory.subscribe(&agent.manifest.metadata.name, &agent.manifest.spec.topics);
    }
    directory
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
                day_budget: scheduler::DayBudget {
                    tokens: spec.budgets.per_day.tokens,
                    cost_micros: spec
                        .budgets
                        .per_day
                        .cost
                        .map(crate::setup::dollars_to_micros),
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn a_regular_file_inside_is_read_and_bounded() {
        let (_dir, root) = root();
        std::fs::write(root.join("a.md"), vec![b'x'; CONTEXT_FILE_LIMIT * 3]).unwrap();
        let bytes = read_context_file(&root, Path::new("a.md")).unwrap();
        assert_eq!(bytes.len(), CONTEXT_FILE_LIMIT + 1);
        std::fs::create_dir(root.join("docs")).unwrap();
        std::os::unix::fs::symlink("../a.md", root.join("docs/link.md")).unwrap();
        assert!(read_context_file(&root, Path::new("docs/link.md")).is_ok());
    }

    #[test]
    fn links_out_fifos_and_devices_are_refused_without_blocking() {
        let (_dir, root) = root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("file")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("dir")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        for name in ["file", "dir/secret", "zero"] {
            let err = read_context_file(&root, Path::new(name)).unwrap_err();
            assert!(
                err.to_string().contains("out of the repository"),
                "{name}: {err}"
            );
        }
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_context_file(&root, Path::new("fifo")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
