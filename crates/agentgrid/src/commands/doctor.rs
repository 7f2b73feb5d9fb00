//! `agentgrid doctor`: what this host offers for sandboxed executions, and the boundary's
//! self-test (see [`super::boundary`]) to prove the isolation holds end to end.

use launch::sandbox::{self, FilesystemMode, HostSupport, Mechanism, NetworkMode, SandboxSpec};
use serde::Serialize;

/// One sandbox profile and whether this host can run it.
#[derive(Debug, Serialize)]
struct Profile {
    name: &'static str,
    ok: bool,
    /// Why not, with the setting that opts out knowingly.
    problem: Option<String>,
}

#[derive(Debug, Serialize)]
struct SmokeTest {
    ok: bool,
    detail: String,
    /// What the self-test found, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    boundary: Option<super::boundary::Boundary>,
}

/// Pathname Unix sockets the host keeps in a tree every sandbox shows.
#[derive(Debug, Serialize)]
struct Sockets {
    ok: bool,
    mechanism: String,
    visible: Vec<std::path::PathBuf>,
}

/// One git driver the project trusts (`workspace.git.drivers`) and whether host git will have
/// it.
#[derive(Debug, Serialize)]
struct GitDriver {
    name: String,
    ok: bool,
    /// Where its definition comes from (`system`, `global`, `repository`).
    sources: Vec<&'static str>,
    /// The settings host git is given.
    settings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    support: &'a HostSupport,
    profiles: Vec<Profile>,
    unix_sockets: Sockets,
    smoke_test: SmokeTest,
    /// Only inside a project whose manifests load.
    #[serde(skip_serializing_if = "Option::is_none")]
    git_drivers: Option<Vec<GitDriver>>,
    /// What `validate` finds beyond the manifests (commands, interpreters, the repository,
    /// keys, ignored manifests); only inside a project whose manifests load.
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<Vec<crate::checks::Finding>>,
    /// The file each agent that runs a known CLI will run; only inside a project whose
    /// manifests load.
    #[serde(skip_serializing_if = "Option::is_none")]
    programs: Option<Vec<crate::checks::AgentProgram>>,
    /// By agent name, the sandbox settings its manifest relaxes (as in `status --json`); only
    /// inside a project whose manifests load.
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox_relaxations: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// The node id the project's engine records on its claims; only inside a project, and
    /// `null` before its first run.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<Option<domain::NodeId>>,
}

/// The project's trusted git drivers, each looked up as `agentgrid run` does at setup.
async fn git_drivers(project: &crate::project::Project) -> Option<Vec<GitDriver>> {
    let manifests = project.manifests().ok()?;
    let mut found = Vec::new();
    for driver in &manifests.config.workspace.git.drivers {
        let name = driver.name.clone();
        found.push(
            match workspace::trusted_drivers(std::slice::from_ref(&name), &project.root).await {
                Ok(resolved) => {
                    let d = resolved.drivers.into_iter().next();
                    GitDriver {
                        name,
                        ok: true,
                        sources: d
                            .iter()
                            .flat_map(|d| d.sources.iter().map(|s| s.as_str()))
                            .collect(),
                        settings: d
                            .iter()
                            .flat_map(|d| d.settings.iter().map(|(k, v)| format!("{k}={v}")))
                            .collect(),
                        problem: None,
                    }
                }
                Err(e) => GitDriver {
                    name,
                    ok: false,
                    sources: Vec::new(),
                    settings: Vec::new(),
                    problem: Some(e.to_string()),
                },
            },
        );
    }
    Some(found)
}

pub async fn doctor(json: bool, project: Option<crate::project::Project>) -> anyhow::Result<u8> {
    let support = sandbox::probe();
    let profiles = profiles(&support);
    let smoke_test = if profiles[0].ok {
        smoke_test().await
    } else {
        SmokeTest {
            ok: false,
            detail: "not tried: the default profile cannot run here".into(),
            boundary: None,
        }
    };
    let visible = sandbox::sockets_in_system_trees(20);
    let unix_sockets = Sockets {
        ok: visible.is_empty() || support.landlock_abi.is_some_and(|abi| abi >= 9),
        mechanism: sandbox::unix_socket_defence(&support),
        visible,
    };
    let git_drivers = match &project {
        Some(project) => git_drivers(project).await,
        None => None,
    };
    let drivers_ok = git_drivers.iter().flatten().all(|d| d.ok);
    let (findings, programs, relaxations) = match project.as_ref().map(|p| (p, p.manifests())) {
        Some((p, Ok(manifests))) => (
            Some(crate::checks::project(&p.root, &manifests).await),
            Some(crate::checks::programs(&p.root, &manifests)),
            Some(
                manifests
                    .agents
                    .iter()
                    .map(|a| (a.name.clone(), a.spec().sandbox.relaxations()))
                    .filter(|(_, r)| !r.is_empty())
                    .collect(),
            ),
        ),
        _ => (None, None, None),
    };
    let project_ok = findings
        .iter()
        .flatten()
        .all(|f| f.severity != crate::checks::Severity::Error);
    let healthy = profiles[0].ok && smoke_test.ok && unix_sockets.ok && drivers_ok && project_ok;
    let report = Report {
        support: &support,
        profiles,
        unix_sockets,
        smoke_test,
        git_drivers,
        project: findings,
        programs,
        sandbox_relaxations: relaxations,
        node: project.as_ref().map(super::status::node_id),
    };
    if json {
        crate::output::json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(if healthy {
        crate::exit::OK
    } else {
        crate::exit::FAILED
    })
}

fn profiles(support: &HostSupport) -> Vec<Profile> {
    let workspace = std::env::temp_dir();
    let with = |name, change: &dyn Fn(&mut SandboxSpec)| {
        let mut spec = SandboxSpec::new(&workspace);
        change(&mut spec);
        let problem = sandbox::check(&spec, support).err().map(|e| e.to_string());
        Profile {
            name,
            ok: problem.is_none(),
            problem,
        }
    };
    vec![
        with(
            "default (filesystem: workspace-write, network: none)",
            &|_| {},
        ),
        with("network: gateway", &|s| {
            s.network = NetworkMode::Gateway;
        }),
        with("filesystem: none, network: host", &|s| {
            s.filesystem = FilesystemMode::None;
            s.network = NetworkMode::Host;
        }),
        with("limits.processes", &|s| s.limits.processes = Some(1024)),
    ]
}

/// Runs the boundary's self-test in the default sandbox, with its bait under the current
/// directory (a place no sandbox hides by name), or the temporary directory.
async fn smoke_test() -> SmokeTest {
    let base = std::env::current_dir()
        .ok()
        .filter(|d| {
            let probe = d.join(format!(".agentgrid-doctor-{}", std::process::id()));
            let writable = std::fs::create_dir(&probe).is_ok();
            let _ = std::fs::remove_dir(&probe);
            writable
        })
        .unwrap_or_else(std::env::temp_dir);
    match super::boundary::self_test(&base).await {
        Ok(boundary) => SmokeTest {
            ok: boundary.holds(),
            detail: if boundary.holds() {
                format!(
                    "the sandbox's self-test held every check in {} ms",
                    boundary.elapsed_ms
                )
            } else {
                format!("the sandbox boundary leaks:\n{}", boundary.leaks())
            },
            boundary: Some(boundary),
        },
        Err(e) => SmokeTest {
            ok: false,
            detail: e,
            boundary: None,
        },
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn print_report(report: &Report) {
    match &report.node {
        Some(Some(node)) => {
            outln!("Node: {node} (recorded on every execution this engine claims)\n")
        }
        Some(None) => outln!("Node: not chosen yet (the first `agentgrid run` chooses one)\n"),
        None => {}
    }
    outln!("Sandbox mechanisms on this host:");
    let rows: Vec<Vec<String>> = Mechanism::ALL
        .iter()
        .filter_map(|&m| report.support.get(m))
        .map(|m| {
            vec![
                format!("  {}", mark(m.available)),
                m.mechanism.title().to_string(),
                m.detail.clone(),
            ]
        })
        .collect();
    crate::output::table(&["", "mechanism", "detail"], &rows);
    outln!();
    outln!("Profiles:");
    for p in &report.profiles {
        outln!("  {} {}", mark(p.ok), p.name);
        if let Some(problem) = &p.problem {
            for line in problem.lines().skip(1) {
                outln!("      {}", line.trim_start_matches("  - "));
            }
        }
    }
    outln!();
    let sockets = &report.unix_sockets;
    outln!("Unix sockets: {} {}", mark(sockets.ok), sockets.mechanism);
    if sockets.visible.is_empty() {
        outln!("      no socket lies inside the system trees (all of them walked)");
    } else {
        outln!("      sockets inside the system trees, visible in every sandbox:");
        for path in &sockets.visible {
            outln!("        {}", path.display());
        }
    }
    outln!();
    outln!(
        "End to end: {} {}",
        mark(report.smoke_test.ok),
        report.smoke_test.detail
    );
    if let Some(boundary) = &report.smoke_test.boundary {
        for check in &boundary.checks {
            outln!("  {} {}: {}", mark(check.ok), check.name, check.detail);
        }
        let engine_uid = sandbox::selftest::engine_uid();
        match boundary.uid {
            Some(0) => outln!(
                "  ! the agent runs as uid 0 of its user namespace, mapped to the engine's \
                 own uid {engine_uid}: files in the system trees that only that uid may read \
                 are readable to it"
            ),
            Some(uid) if engine_uid == 0 => outln!(
                "  ✓ the agent runs as uid {uid} of its user namespace, mapped to a host uid \
                 no account uses, with no groups: root-only files are unreadable to it; its \
                 workspace is shown as its own through an idmapped mount"
            ),
            Some(uid) => {
                outln!("  the agent runs as uid {uid}, mapped to the engine's own uid {engine_uid}")
            }
            None => outln!("  ! the self-test did not say which uid it ran as"),
        }
    }
    if let Some(drivers) = &report.git_drivers {
        outln!();
        if drivers.is_empty() {
            outln!(
                "Git drivers: none trusted; host git runs no filter, diff or merge driver but \
                 those the repository's own config defines (workspace.git.drivers adds some)"
            );
        }
        for driver in drivers {
            match &driver.problem {
                None => outln!(
                    "Git driver `{}`: {} trusted, defined in the {} configuration ({})",
                    driver.name,
                    mark(true),
                    driver.sources.join(" and "),
                    if driver.settings.is_empty() {
                        "read by git from the repository".to_string()
                    } else {
                        driver.settings.join(", ")
                    }
                ),
                Some(problem) => {
                    outln!("Git driver `{}`: {} {problem}", driver.name, mark(false))
                }
            }
        }
    }
    if let Some(relaxed) = &report.sandbox_relaxations {
        outln!();
        if relaxed.is_empty() {
            outln!("Agent sandboxes: every agent runs in the default view (nothing exposed)");
        } else {
            outln!("Agent sandboxes (relaxations their manifests choose):");
        }
        for (agent, relaxations) in relaxed {
            for relaxation in relaxations {
                outln!("  ! {agent}: {relaxation}");
            }
        }
    }
    if let Some(findings) = &report.project {
        outln!();
        if findings.is_empty() {
            outln!(
                "Project: {} every agent's command and interpreter found, the base ref exists, \
                 keys set",
                mark(true)
            );
        } else {
            outln!("Project:");
            for f in findings {
                outln!(
                    "  {} {}",
                    mark(f.severity != crate::checks::Severity::Error),
                    domain::text::one_line(&f.render())
                );
            }
        }
    }
    for p in report.programs.iter().flatten() {
        outln!(
            "  agent `{}` ({}) runs {}",
            p.agent,
            p.runtime,
            domain::text::one_line(&p.program.display().to_string())
        );
    }
    if !report.support.available(Mechanism::MemoryCgroup)
        || !report.support.available(Mechanism::PidsCgroup)
    {
        outln!();
        outln!(
            "Without a writable cgroup, limits fall back to per-process rlimits: memory is the \
             data segment of each process, and the process limit is RLIMIT_NPROC (not enforced \
             for root)."
        );
    }
}
