//! The sandbox boundary's self-test, shared by `agentgrid doctor` and the start of
//! `agentgrid run`: the agentgrid binary, started in the default sandbox, tries to read a
//! secret in the home directory and beside its workspace, to connect to a host socket, to make
//! an IP socket and to see the host's processes.

use std::path::Path;
use std::time::{Duration, Instant};

use launch::sandbox::{self, SandboxSpec, SelfTest, selftest::Check};

/// What the self-test found.
#[derive(Debug, serde::Serialize)]
pub struct Boundary {
    /// Every isolation property, held or not.
    pub checks: Vec<Check>,
    /// The uid the sandboxed program ran as (inside its user namespace).
    pub uid: Option<u32>,
    /// Which mechanism keeps host Unix sockets out of reach here.
    pub unix_sockets: String,
    pub elapsed_ms: u64,
}

impl Boundary {
    pub fn holds(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The checks that failed, one per line.
    pub fn leaks(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("  - {}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs the self-test with its bait under `base` (a directory not hidden by name, such as the
/// project's state directory). An error means the test could not run at all.
pub async fn self_test(base: &Path) -> Result<Boundary, String> {
    let bait = SelfTest::prepare(base).map_err(|e| {
        format!(
            "cannot prepare the sandbox self-test under {}: {e}",
            base.display()
        )
    })?;
    let workspace = bait.workspace();
    std::fs::create_dir_all(&workspace)
        .map_err(|e| format!("cannot create {}: {e}", workspace.display()))?;
    let binary =
        std::env::current_exe().map_err(|e| format!("cannot find the agentgrid binary: {e}"))?;
    let mut spec = SandboxSpec::new(&workspace);
    spec.limits.wall_time = Some(domain::Duration::from_secs(20));
    let started = Instant::now();
    let out = launch::run(
        launch::LaunchSpec::new(binary.display().to_string(), &workspace)
            .args(bait.args())
            .with_sandbox(spec),
        Duration::from_secs(30),
        64 * 1024,
    )
    .await
    .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!(
            "the sandboxed self-test {}: {}",
            out.describe(),
            out.combined()
        ));
    }
    let (checks, uid) = bait.verdict(&out.combined());
    Ok(Boundary {
        checks,
        uid,
        unix_sockets: sandbox::unix_socket_defence(sandbox::host_support()),
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}
