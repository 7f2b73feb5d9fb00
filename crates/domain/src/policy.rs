//! Settings the manifests declare and the scheduler obeys, defined once here so that the
//! configuration file, the scheduler and the JSON Schema agree on their fields and defaults.

use schemars::JsonSchema;

use crate::Duration;
use serde::{Deserialize, Serialize};

/// Limits that stop a runaway tree of agents: too deep, too wide, too many runs, too fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Guards {
    /// Deepest allowed sub-task (a top-level task has depth 0).
    pub max_depth: u32,
    /// Most sub-tasks one task may have.
    pub max_children: u32,
    /// Most executions one task may run.
    pub max_executions_per_task: u32,
    /// Executions summed over a whole tree (a top-level task and all below it).
    pub max_executions_per_tree: u32,
    /// New executions started in any 60-second window.
    pub max_new_executions_per_minute: u32,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            max_depth: 3,
            max_children: 20,
            max_executions_per_task: 20,
            max_executions_per_tree: 200,
            max_new_executions_per_minute: 120,
        }
    }
}

/// How an agent says it has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// A clean exit whose validators pass finishes the task.
    #[default]
    Exit,
    /// The agent must also run `agentgrid ctl complete`; a clean exit without it runs the agent
    /// again shortly (a continuation), as CLIs that work in turns need.
    Claim,
}

/// The defaults of the scheduling settings that are plain numbers: the project's `config.yaml`
/// (`spec.concurrency.global`, `spec.continuation`, `spec.resume`) and the scheduler's own
/// configuration both start from these, so that neither holds a second default.
pub mod defaults {
    use crate::Duration;

    /// Executions at once across the project.
    pub const GLOBAL_CONCURRENCY: u32 = 2;
    /// The wait before a task runs again after a clean exit that left it open.
    pub const CONTINUATION_DELAY: Duration = Duration::from_secs(1);
    /// Clean exits in a row that may leave a task open before it counts as a failed attempt.
    pub const MAX_CONTINUATIONS: u32 = 3;
    /// How often a parent waiting for its sub-tasks is resumed all the same.
    pub const RESUME_INTERVAL: Duration = Duration::from_mins(10);
}

/// Backoff after a failed attempt: `base_delay * 2^(attempt-1)`, capped at `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_mins(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next try after `failed_attempts` failures (1 = the first failure).
    pub fn backoff(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(32);
        let delay = self.base_delay.saturating_mul(1u64 << exponent);
        delay.min(self.max_delay)
    }
}

/// What a sandboxed execution may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FilesystemMode {
    /// The workspace (and the `writable` paths) are writable; the system is read-only; home
    /// directories, `/run`, `/tmp` and the `hide` paths are replaced by empty directories.
    #[default]
    WorkspaceWrite,
    /// As `workspace-write`, but the workspace is read-only too: only a private `/tmp`, the
    /// private home and the `writable` paths can be written.
    ReadOnly,
    /// No filesystem isolation: the host's filesystem as it is (only `/proc` is private).
    /// Must be chosen explicitly; shown in `agentgrid status`.
    None,
}

/// What a sandboxed execution may reach over the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// An empty network namespace (loopback down) and no IP sockets at all.
    #[default]
    None,
    /// Only agentgrid's own gateways: a network namespace with loopback only, where a relay
    /// listens on `127.0.0.1:<port>` and forwards each connection to the gateway's socket.
    Gateway,
    /// The host's network, unchanged. Must be chosen explicitly; shown in `agentgrid status`.
    Host,
}
