//! `agentgrid doctor`: what this host offers for sandboxed executions, and a sandboxed run of
//! `true` to prove it works end to end.

use std::time::{Duration, Instant};

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
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    support: &'a HostSupport,
    profiles: Vec<Profile>,
    smoke_test: SmokeTest,
}

pub async fn doctor(json: bool) -> anyhow::Result<u8> {
    let support = sandbox::probe();
    let profiles = profiles(&support);
    let smoke_test = if profiles[0].ok {
        smoke_test().await
    } else {
        SmokeTest {
            ok: false,
            detail: "not tried: the default profile cannot run here".into(),
        }
    };
    let healthy = profiles[0].ok && smoke_test.ok;
    let report = Report {
        support: &support,
        profiles,
        smoke_test,
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

/// Runs `true` in the default sandbox around a fresh temporary directory.
async fn smoke_test() -> SmokeTest {
    let dir = std::env::temp_dir().join(format!("agentgrid-doctor-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return SmokeTest {
            ok: false,
            detail: format!("cannot create {}: {e}", dir.display()),
        };
    }
    let mut spec = SandboxSpec::new(&dir);
    spec.limits.wall_time = Some(domain::Duration::from_secs(20));
    let started = Instant::now();
    let result = launch::run(
        launch::LaunchSpec::new("true", &dir).with_sandbox(spec),
        Duration::from_secs(30),
        16 * 1024,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(out) if out.success() => SmokeTest {
            ok: true,
            detail: format!(
                "a sandboxed `true` ran in {} ms",
                started.elapsed().as_millis()
            ),
        },
        Ok(out) => SmokeTest {
            ok: false,
            detail: format!("a sandboxed `true` {}: {}", out.describe(), out.combined()),
        },
        Err(e) => SmokeTest {
            ok: false,
            detail: e.to_string(),
        },
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn print_report(report: &Report) {
    println!("Sandbox mechanisms on this host:");
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
    println!();
    println!("Profiles:");
    for p in &report.profiles {
        println!("  {} {}", mark(p.ok), p.name);
        if let Some(problem) = &p.problem {
            for line in problem.lines().skip(1) {
                println!("      {}", line.trim_start_matches("  - "));
            }
        }
    }
    println!();
    println!(
        "End to end: {} {}",
        mark(report.smoke_test.ok),
        report.smoke_test.detail
    );
    if !report.support.available(Mechanism::MemoryCgroup)
        || !report.support.available(Mechanism::PidsCgroup)
    {
        println!();
        println!(
            "Without a writable cgroup, limits fall back to per-process rlimits: memory is the \
             data segment of each process, and the process limit is RLIMIT_NPROC (not enforced \
             for root)."
        );
    }
}
