//! A stop that does not wait: the processes of the given executions end at once, by the same
//! `/proc` scan recovery uses, and nothing is written. What the store still calls active is
//! then exactly what a crash leaves behind, and the next engine's recovery (the crash rule)
//! winds it down: work committed, executions `lost`, tasks back without an attempt counted.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use domain::ExecutionId;

/// Kills the process groups of `executions` in the project at `project_dir` with SIGKILL
/// (after one SIGTERM, with no grace) and returns the groups it found; those are gone when it
/// returns unless the kernel could not show it, which is logged.
pub async fn kill_executions(project_dir: &Path, executions: &BTreeSet<ExecutionId>) -> Vec<i32> {
    let project = project_dir.to_path_buf();
    let ids = executions.clone();
    // The scan reads /proc: blocking IO, off the async threads.
    let groups: Vec<i32> =
        tokio::task::spawn_blocking(move || crate::engine::orphan_groups(&project, &ids))
            .await
            .map(|g| g.into_iter().collect())
            .unwrap_or_default();
    let left = launch::terminate_groups(&groups, Duration::ZERO).await;
    if !left.is_empty() {
        tracing::warn!(groups = ?left, "process groups outlived SIGKILL on a forced stop");
    }
    groups
}
