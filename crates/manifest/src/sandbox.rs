//! The agent's sandbox profile: what it may see and write, what it may reach, what it may use.

use std::path::PathBuf;

use domain::{ByteSize, Duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::at_least_one;
use crate::decode::{Cx, Decode};
use crate::yaml::Node;

/// Where an execution may write, and what it may reach: one type each with the sandbox's.
pub use domain::{FilesystemMode, NetworkMode};

/// Resource limits of one execution's processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// Address space of each process.
    pub memory: ByteSize,
    /// Processes and threads the execution may have at once.
    pub processes: u32,
    pub open_files: u32,
    /// Largest file a process may write.
    pub file_size: ByteSize,
    /// CPU time of each process.
    pub cpu_time: Duration,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            memory: ByteSize(8 << 30),
            processes: 1024,
            open_files: 4096,
            file_size: ByteSize(8 << 30),
            cpu_time: Duration::from_mins(60),
        }
    }
}

/// The `sandbox` section of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxProfile {
    /// `false` runs the agent with no isolation and no limits at all. Must be chosen explicitly;
    /// shown in `agentgrid status`.
    pub enabled: bool,
    pub filesystem: FilesystemMode,
    pub network: NetworkMode,
    pub limits: ResourceLimits,
    /// Host paths shown read-only inside, at the same place (a toolchain under the home
    /// directory, say). Absolute; each one is a relaxation, shown in `agentgrid status`.
    pub expose: Vec<PathBuf>,
    /// Host paths the agent may write, at the same place (a package cache, say). Absolute;
    /// each one is a relaxation, shown in `agentgrid status`.
    pub writable: Vec<PathBuf>,
}

impl Default for SandboxProfile {
    fn default() -> Self {
        SandboxProfile {
            enabled: true,
            filesystem: FilesystemMode::default(),
            network: NetworkMode::default(),
            limits: ResourceLimits::default(),
            expose: Vec::new(),
            writable: Vec::new(),
        }
    }
}

impl SandboxProfile {
    /// The profile's opt-outs of isolation, in words for `status` and warnings.
    pub fn relaxations(&self) -> Vec<String> {
        if !self.enabled {
            return vec!["no sandbox at all (no isolation and no limits)".into()];
        }
        let mut out = Vec::new();
        if self.filesystem == FilesystemMode::None {
            out.push("filesystem: none (no filesystem isolation)".into());
        }
        if self.network == NetworkMode::Host {
            out.push("network: host (full network access)".into());
        }
        if self.filesystem != FilesystemMode::None {
            for path in &self.expose {
                out.push(format!("expose: {} (read-only)", path.display()));
            }
            for path in &self.writable {
                out.push(format!("writable: {} (read-write)", path.display()));
            }
        }
        out
    }
}

pub(crate) const SANDBOX_FIELDS: &[&str] = &[
    "enabled",
    "filesystem",
    "network",
    "limits",
    "expose",
    "writable",
];
pub(crate) const SANDBOX_LIMITS_FIELDS: &[&str] =
    &["memory", "processes", "open_files", "file_size", "cpu_time"];

impl Decode for ByteSize {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        let Some(text) = node.scalar_text(cx.source) else {
            cx.expected(node, path, "a size such as 512MiB or 1GiB");
            return None;
        };
        match text.parse::<ByteSize>() {
            Ok(ByteSize(0)) => {
                cx.error(node, path, "must be more than 0 bytes");
                None
            }
            Ok(size) => Some(size),
            Err(message) => {
                cx.error(node, path, message);
                None
            }
        }
    }
}

fn choice<T: Copy>(cx: &mut Cx, node: &Node, path: &str, options: &[(&str, T)]) -> Option<T> {
    let text = String::decode(cx, node, path)?;
    match options.iter().find(|(name, _)| *name == text) {
        Some((_, value)) => Some(*value),
        None => {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("`{n}`")).collect();
            cx.error(
                node,
                path,
                format!("expected one of {}, found `{text}`", names.join(", ")),
            );
            None
        }
    }
}

pub(crate) fn decode_sandbox(cx: &mut Cx, node: &Node, path: &str) -> Option<SandboxProfile> {
    let f = cx.fields(node, path, SANDBOX_FIELDS)?;
    let mut profile = SandboxProfile {
        enabled: f.or(cx, "enabled", true),
        ..SandboxProfile::default()
    };
    if let Some(n) = f.value("filesystem") {
        let options = [
            ("workspace-write", FilesystemMode::WorkspaceWrite),
            ("read-only", FilesystemMode::ReadOnly),
            ("none", FilesystemMode::None),
        ];
        profile.filesystem = choice(cx, n, &f.path("filesystem"), &options).unwrap_or_default();
    }
    if let Some(n) = f.value("network") {
        let options = [
            ("none", NetworkMode::None),
            ("gateway", NetworkMode::Gateway),
            ("host", NetworkMode::Host),
        ];
        profile.network = choice(cx, n, &f.path("network"), &options).unwrap_or_default();
    }
    if let Some(n) = f.value("limits")
        && let Some(l) = cx.fields(n, &f.path("limits"), SANDBOX_LIMITS_FIELDS)
    {
        let d = ResourceLimits::default();
        profile.limits = ResourceLimits {
            memory: l.get(cx, "memory").unwrap_or(d.memory),
            processes: at_least_one(cx, &l, "processes", "the agent itself is a process")
                .unwrap_or(d.processes),
            open_files: at_least_one(cx, &l, "open_files", "a process needs its standard streams")
                .unwrap_or(d.open_files),
            file_size: l.get(cx, "file_size").unwrap_or(d.file_size),
            cpu_time: crate::agent::positive_duration(cx, &l, "cpu_time", d.cpu_time),
        };
    }
    profile.expose = paths(cx, &f, "expose");
    profile.writable = paths(cx, &f, "writable");
    Some(profile)
}

/// A list of host paths: each absolute and in its plain form (no `..`), since the sandbox
/// binds it at the same place. Whether it exists and may be shown is the host's to say
/// (`agentgrid validate`).
fn paths(cx: &mut Cx, f: &crate::decode::Fields<'_>, name: &str) -> Vec<PathBuf> {
    let Some(node) = f.value(name) else {
        return Vec::new();
    };
    let path = f.path(name);
    let crate::yaml::Value::Seq(items) = &node.value else {
        cx.expected(node, &path, "a list of absolute paths such as [/opt/tools]");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(text) = String::decode(cx, item, &at) else {
            continue;
        };
        let p = PathBuf::from(&text);
        if !p.is_absolute() {
            cx.error(
                item,
                &at,
                format!("`{text}` is not an absolute path; give the host path from `/`"),
            );
        } else if p.components().any(|c| c == std::path::Component::ParentDir) {
            cx.error(
                item,
                &at,
                format!("`{text}` contains `..`; give the path in its plain form"),
            );
        } else {
            out.push(p);
        }
    }
    out
}
