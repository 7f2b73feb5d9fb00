//! The project Config manifest (`.agentgrid/config.yaml`): types, defaults and decoder.

use std::collections::BTreeMap;
use std::path::PathBuf;

use domain::policy::defaults;
use domain::{ByteSize, Duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{API_VERSION, at_least_one, check_header, positive_duration};
use crate::decode::{Cx, Decode};
use crate::yaml::{Node, Value};

/// Project-wide settings. Every field has a default, and so does the whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Config manifest")]
pub struct ConfigManifest {
    /// Always `agentgrid.dev/v1`.
    #[serde(rename = "apiVersion")]
    #[schemars(extend("const" = "agentgrid.dev/v1"))]
    pub api_version: String,
    /// Always `Config`.
    #[schemars(extend("const" = "Config"))]
    pub kind: String,
    #[serde(default)]
    pub metadata: ConfigMetadata,
    #[serde(default)]
    pub spec: ConfigSpec,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigSpec {
    pub concurrency: Concurrency,
    pub retry: Retry,
    pub continuation: Continuation,
    pub resume: Resume,
    pub guards: Guards,
    pub workspace: WorkspaceConfig,
    /// How long running agents get to stop after a shutdown request before they are killed.
    pub shutdown_grace: Duration,
    /// How long an execution's claim holds without a renewal. The engine renews the leases of
    /// its live executions every third of it; another engine sharing the store records an
    /// execution lost only once its lease ran out.
    pub lease: Duration,
    /// Model providers, aliases and prices for the model gateway.
    pub models: crate::models::Models,
    /// Limits on model use.
    pub budgets: crate::models::Budgets,
    /// Which finished work waits for a person's approval.
    pub approvals: Approvals,
    /// How `agentgrid land` brings a done task's branch into the base branch.
    pub land: Land,
    /// The most handoffs (`ctl handoff`) one task may have; past it a handoff is refused and
    /// the agent is told to escalate. 0 turns handoffs off.
    pub handoffs_per_task: u32,
}

/// How done tasks land on the base branch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Land {
    /// `merge` (a merge commit), `squash` (one commit) or `rebase` (the branch's commits
    /// replayed); `agentgrid land --strategy` overrides it.
    pub strategy: domain::LandStrategy,
}

/// The default of `spec.lease`: long enough that a busy engine renews in time, short enough
/// that another engine takes over a stopped one's tasks within half a minute.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The shortest `spec.lease`: renewals come every third of it, and each is a write.
pub const MIN_LEASE: Duration = Duration::from_secs(3);

impl Default for ConfigSpec {
    fn default() -> Self {
        ConfigSpec {
            concurrency: Concurrency::default(),
            retry: Retry::default(),
            continuation: Continuation::default(),
            resume: Resume::default(),
            guards: Guards::default(),
            workspace: WorkspaceConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            lease: DEFAULT_LEASE,
            models: crate::models::Models::default(),
            budgets: crate::models::Budgets::default(),
            land: Land::default(),
            approvals: Approvals::default(),
            handoffs_per_task: domain::handoff::limits::DEFAULT_PER_TASK,
        }
    }
}

/// How many executions run at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Concurrency {
    /// Across the whole project.
    pub global: u32,
    /// Per task label: at most this many running tasks carrying the label.
    pub per_label: BTreeMap<String, u32>,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency {
            global: defaults::GLOBAL_CONCURRENCY,
            per_label: BTreeMap::new(),
        }
    }
}

/// Backoff after a failed attempt: one type with the scheduler's, and one default.
pub use domain::RetryPolicy as Retry;

/// What happens when an agent exits cleanly but leaves its task open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Continuation {
    /// Wait this long before running the task again.
    pub delay: Duration,
    /// At most this many clean exits in a row before the task counts as failed.
    pub max: u32,
}

impl Default for Continuation {
    fn default() -> Self {
        Continuation {
            delay: defaults::CONTINUATION_DELAY,
            max: defaults::MAX_CONTINUATIONS,
        }
    }
}

/// The approval policy: which top-level tasks, once done, wait for a person's decision
/// (`agentgrid approvals`) before their work lands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Approvals {
    /// Every top-level task that ends done.
    pub before_land: bool,
    /// Only top-level tasks carrying one of these labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub require_labels: Vec<String>,
    /// Land a done task's work on the base branch (as `agentgrid land` does, with
    /// `land.strategy`) as soon as a person approves it.
    pub land_after: bool,
}

impl Approvals {
    /// Whether a done top-level task with these labels waits for a person.
    pub fn wants(&self, labels: &[String]) -> bool {
        self.before_land || labels.iter().any(|l| self.require_labels.contains(l))
    }
}

/// Resume executions of waiting tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Resume {
    /// Look at a waiting task again at least this often, even if no sub-task finished.
    pub interval: Duration,
}

impl Default for Resume {
    fn default() -> Self {
        Resume {
            interval: defaults::RESUME_INTERVAL,
        }
    }
}

/// Limits that stop runaway task trees: one type with the scheduler's, and one default.
pub use domain::Guards;

/// Git worktrees for executions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceConfig {
    pub enabled: bool,
    /// Where workspaces are made, relative to the repository root (the parent of .agentgrid).
    pub root: PathBuf,
    /// The revision new task branches start from.
    pub base: String,
    pub hooks: Hooks,
    /// The most a commit of a worktree may add; over it, nothing is committed.
    pub quota: WorkspaceQuota,
    /// How the engine's own git commands treat the repository.
    pub git: WorkspaceGit,
}

/// Host-side git: what the engine's git commands may run besides git itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceGit {
    /// Filter, diff and merge drivers (`lfs`, say) whose definitions the engine takes from the
    /// user's global and system git configuration and gives to every git command it runs. A
    /// `.gitattributes` can select only these (or drivers the repository's own config defines);
    /// any other name falls back to git's built-in behaviour.
    pub drivers: Vec<GitDriver>,
}

/// A trusted git driver's name, and where the manifest wrote it (for errors found later, when
/// the engine looks for its definition).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct GitDriver {
    pub name: String,
    #[serde(skip)]
    #[schemars(skip)]
    pub place: Option<crate::Place>,
}

impl GitDriver {
    pub fn new(name: impl Into<String>) -> GitDriver {
        GitDriver {
            name: name.into(),
            place: None,
        }
    }
}

/// Two drivers are the same setting whichever line names them.
impl PartialEq for GitDriver {
    fn eq(&self, other: &GitDriver) -> bool {
        self.name == other.name
    }
}

/// The most one commit of an agent's work may add to the repository.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceQuota {
    /// Bytes of new or changed files.
    pub bytes: ByteSize,
    /// New or changed files.
    pub files: u32,
}

impl Default for WorkspaceQuota {
    fn default() -> Self {
        WorkspaceQuota {
            bytes: ByteSize(2 << 30),
            files: 200_000,
        }
    }
}

impl Default for WorkspaceConfig {
    fn default() -> Self {
        WorkspaceConfig {
            enabled: true,
            root: PathBuf::from(".agentgrid/workspaces"),
            base: "HEAD".into(),
            hooks: Hooks::default(),
            quota: WorkspaceQuota::default(),
            git: WorkspaceGit::default(),
        }
    }
}

/// Shell lines run around a workspace's life, each optional. An empty line counts as none.
/// Each runs in the sandbox of the agent whose workspace it is, without the execution's token;
/// `{run: ..., host: true}` runs one on the host instead, which `agentgrid status` warns about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Hooks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_create: Option<Hook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_run: Option<Hook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_run: Option<Hook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_remove: Option<Hook>,
    /// Wall time allowed for each hook.
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            after_create: None,
            before_run: None,
            after_run: None,
            before_remove: None,
            timeout: Duration::from_mins(2),
        }
    }
}

impl Hooks {
    /// The names of the hooks that opt out of the sandbox with `host: true`.
    pub fn on_host(&self) -> Vec<&'static str> {
        [
            ("after_create", &self.after_create),
            ("before_run", &self.before_run),
            ("after_run", &self.after_run),
            ("before_remove", &self.before_remove),
        ]
        .into_iter()
        .filter(|(_, hook)| hook.as_ref().is_some_and(Hook::host))
        .map(|(name, _)| name)
        .collect()
    }
}

/// One hook: a shell line run in the sandbox, or a mapping saying where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Hook {
    Line(String),
    Command(HookCommand),
}

/// A hook written as a mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookCommand {
    /// The shell line.
    pub run: String,
    /// Run it on the host, outside every sandbox, as the engine's user. The hook runs the
    /// workspace's code (an agent can rewrite a Makefile), so only for hooks that must reach
    /// what the sandbox hides.
    #[serde(default)]
    pub host: bool,
}

impl Hook {
    pub fn command(&self) -> &str {
        match self {
            Hook::Line(line) => line,
            Hook::Command(c) => &c.run,
        }
    }

    pub fn host(&self) -> bool {
        matches!(self, Hook::Command(HookCommand { host: true, .. }))
    }
}

pub(crate) const MANIFEST_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
pub(crate) const METADATA_FIELDS: &[&str] = &["name", "labels"];
pub(crate) const SPEC_FIELDS: &[&str] = &[
    "concurrency",
    "retry",
    "continuation",
    "resume",
    "guards",
    "workspace",
    "shutdown_grace",
    "lease",
    "models",
    "budgets",
    "land",
    "approvals",
    "handoffs_per_task",
];
pub(crate) const LAND_FIELDS: &[&str] = &["strategy"];
pub(crate) const APPROVALS_FIELDS: &[&str] = &["before_land", "require_labels", "land_after"];
pub(crate) const CONCURRENCY_FIELDS: &[&str] = &["global", "per_label"];
pub(crate) const RETRY_FIELDS: &[&str] = &["base_delay", "max_delay"];
pub(crate) const CONTINUATION_FIELDS: &[&str] = &["delay", "max"];
pub(crate) const RESUME_FIELDS: &[&str] = &["interval"];
pub(crate) const GUARDS_FIELDS: &[&str] = &[
    "max_depth",
    "max_children",
    "max_executions_per_task",
    "max_executions_per_tree",
    "max_new_executions_per_minute",
];
pub(crate) const WORKSPACE_FIELDS: &[&str] = &["enabled", "root", "base", "hooks", "quota", "git"];
pub(crate) const WORKSPACE_GIT_FIELDS: &[&str] = &["drivers"];
pub(crate) const QUOTA_FIELDS: &[&str] = &["bytes", "files"];
pub(crate) const HOOKS_FIELDS: &[&str] = &[
    "after_create",
    "before_run",
    "after_run",
    "before_remove",
    "timeout",
];
pub(crate) const HOOK_FIELDS: &[&str] = &["run", "host"];

/// Decodes a Config document. Problems are left in `cx`; the spec returned has defaults in their
/// place.
pub(crate) fn decode_config(cx: &mut Cx, node: &Node) -> ConfigManifest {
    let mut manifest = ConfigManifest {
        api_version: API_VERSION.into(),
        kind: "Config".into(),
        metadata: ConfigMetadata::default(),
        spec: ConfigSpec::default(),
    };
    let Some(f) = cx.fields(node, "", MANIFEST_FIELDS) else {
        return manifest;
    };
    let is_config = check_header(
        cx,
        &f,
        "Config",
        "config.yaml holds the project settings (`kind: Config`); agents go in .agentgrid/agents/",
    );
    if let Some(m) = f.value("metadata")
        && let Some(mf) = cx.fields(m, "metadata", METADATA_FIELDS)
    {
        manifest.metadata.name = mf.get(cx, "name");
        manifest.metadata.labels = mf.or(cx, "labels", BTreeMap::new());
    }
    if is_config && let Some(s) = f.value("spec") {
        manifest.spec = decode_spec(cx, s, "spec").unwrap_or_default();
    }
    manifest
}

fn decode_spec(cx: &mut Cx, node: &Node, path: &str) -> Option<ConfigSpec> {
    let f = cx.fields(node, path, SPEC_FIELDS)?;
    let mut spec = ConfigSpec::default();

    if let Some(n) = f.value("concurrency")
        && let Some(c) = cx.fields(n, &f.path("concurrency"), CONCURRENCY_FIELDS)
    {
        spec.concurrency.global = at_least_one(cx, &c, "global", "nothing would ever run")
            .unwrap_or(spec.concurrency.global);
        if let Some(per) = c.value("per_label") {
            let path = c.path("per_label");
            spec.concurrency.per_label = BTreeMap::decode(cx, per, &path).unwrap_or_default();
            if let Value::Map(entries) = &per.value {
                for (key, value) in entries {
                    let label = key.scalar_text(cx.source).unwrap_or_default();
                    if let Err(message) = domain::task::check_label(&label) {
                        cx.error(key, &path, message);
                    }
                    if value.value == Value::Int(0) {
                        cx.error(value, &format!("{path}.{label}"), "must be 1 or more: tasks with this label would never run; remove the label's limit instead");
                        spec.concurrency.per_label.remove(&label);
                    }
                }
            }
        }
    }

    if let Some(n) = f.value("retry")
        && let Some(r) = cx.fields(n, &f.path("retry"), RETRY_FIELDS)
    {
        let d = Retry::default();
        spec.retry.base_delay = r.or(cx, "base_delay", d.base_delay);
        spec.retry.max_delay = r.or(cx, "max_delay", d.max_delay);
        if spec.retry.base_delay > spec.retry.max_delay {
            let at = r.value("base_delay").or(r.value("max_delay")).unwrap_or(n);
            cx.error(at, &r.path("base_delay"), format!(
                    "{} is longer than max_delay {}; the first retry delay must not exceed the largest",
                    spec.retry.base_delay, spec.retry.max_delay
                ));
        }
    }

    if let Some(n) = f.value("continuation")
        && let Some(c) = cx.fields(n, &f.path("continuation"), CONTINUATION_FIELDS)
    {
        let d = Continuation::default();
        spec.continuation.delay = c.or(cx, "delay", d.delay);
        spec.continuation.max = c.or(cx, "max", d.max);
    }

    if let Some(n) = f.value("resume")
        && let Some(r) = cx.fields(n, &f.path("resume"), RESUME_FIELDS)
    {
        spec.resume.interval = positive_duration(cx, &r, "interval", Resume::default().interval);
    }

    if let Some(n) = f.value("approvals")
        && let Some(a) = cx.fields(n, &f.path("approvals"), APPROVALS_FIELDS)
    {
        spec.approvals.before_land = a.or(cx, "before_land", false);
        spec.approvals.land_after = a.or(cx, "land_after", false);
        if let Some(list) = a.value("require_labels") {
            let path = a.path("require_labels");
            spec.approvals.require_labels = Vec::decode(cx, list, &path).unwrap_or_default();
            if let Value::Seq(items) = &list.value {
                for (i, item) in items.iter().enumerate() {
                    let label = item.scalar_text(cx.source).unwrap_or_default();
                    if let Err(message) = domain::task::check_label(&label) {
                        cx.error(item, &format!("{path}[{i}]"), message);
                    } else if spec.approvals.require_labels[..i].contains(&label) {
                        cx.error(
                            item,
                            &format!("{path}[{i}]"),
                            format!("`{label}` is listed twice; list each label once"),
                        );
                    }
                }
            }
            if spec.approvals.before_land && !spec.approvals.require_labels.is_empty() {
                cx.error(list, &path, "has no effect while before_land is true, which asks for an approval of every top-level task: remove one of the two");
            }
        }
    }

    if let Some(n) = f.value("guards")
        && let Some(g) = cx.fields(n, &f.path("guards"), GUARDS_FIELDS)
    {
        let d = Guards::default();
        spec.guards = Guards {
            max_depth: g.or(cx, "max_depth", d.max_depth),
            max_children: g.or(cx, "max_children", d.max_children),
            max_executions_per_task: g.or(cx, "max_executions_per_task", d.max_executions_per_task),
            max_executions_per_tree: g.or(cx, "max_executions_per_tree", d.max_executions_per_tree),
            max_new_executions_per_minute: g.or(
                cx,
                "max_new_executions_per_minute",
                d.max_new_executions_per_minute,
            ),
        };
    }

    if let Some(n) = f.value("workspace")
        && let Some(w) = cx.fields(n, &f.path("workspace"), WORKSPACE_FIELDS)
    {
        let d = WorkspaceConfig::default();
        spec.workspace.enabled = w.or(cx, "enabled", d.enabled);
        spec.workspace.root = non_empty(cx, &w, "root")
            .map(PathBuf::from)
            .unwrap_or(d.root);
        spec.workspace.base = non_empty(cx, &w, "base").unwrap_or(d.base);
        if let Some(q) = w.value("quota")
            && let Some(q) = cx.fields(q, &w.path("quota"), QUOTA_FIELDS)
        {
            let d = WorkspaceQuota::default();
            spec.workspace.quota = WorkspaceQuota {
                bytes: q.get(cx, "bytes").unwrap_or(d.bytes),
                files: at_least_one(cx, &q, "files", "a commit holds files").unwrap_or(d.files),
            };
        }
        if let Some(g) = w.value("git")
            && let Some(g) = cx.fields(g, &w.path("git"), WORKSPACE_GIT_FIELDS)
        {
            spec.workspace.git.drivers = decode_drivers(cx, &g);
        }
        if let Some(h) = w.value("hooks")
            && let Some(h) = cx.fields(h, &w.path("hooks"), HOOKS_FIELDS)
        {
            let line = |cx: &mut Cx, name: &str| decode_hook(cx, &h, name);
            spec.workspace.hooks = Hooks {
                after_create: line(cx, "after_create"),
                before_run: line(cx, "before_run"),
                after_run: line(cx, "after_run"),
                before_remove: line(cx, "before_remove"),
                timeout: positive_duration(cx, &h, "timeout", Hooks::default().timeout),
            };
        }
    }

    if let Some(n) = f.value("land")
        && let Some(l) = cx.fields(n, &f.path("land"), LAND_FIELDS)
        && let Some(text) = l.get::<String>(cx, "strategy")
    {
        match domain::LandStrategy::parse(&text) {
            Some(strategy) => spec.land.strategy = strategy,
            None => {
                let names: Vec<String> = domain::LandStrategy::ALL
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect();
                if let Some(node) = l.value("strategy") {
                    cx.error(
                        node,
                        &l.path("strategy"),
                        format!("expected one of {}, found `{text}`", names.join(", ")),
                    );
                }
            }
        }
    }

    if let Some(n) = f.get::<u32>(cx, "handoffs_per_task") {
        spec.handoffs_per_task = n;
    }
    if let Some(grace) = f.get::<Duration>(cx, "shutdown_grace") {
        spec.shutdown_grace = grace;
    }
    if let Some(lease) = f.get::<Duration>(cx, "lease") {
        if lease < MIN_LEASE
            && let Some(at) = f.value("lease")
        {
            cx.error(
                at,
                &f.path("lease"),
                format!(
                    "{lease} is shorter than {MIN_LEASE}; the engine renews a lease every third \
                     of it, so give it at least {MIN_LEASE}"
                ),
            );
        } else {
            spec.lease = lease;
        }
    }
    if let Some(n) = f.value("models") {
        spec.models = crate::models::decode_models(cx, n, &f.path("models")).unwrap_or_default();
    }
    if let Some(n) = f.value("budgets") {
        spec.budgets = crate::models::decode_budgets(cx, n, &f.path("budgets")).unwrap_or_default();
    }
    Some(spec)
}

/// The trusted driver names: each a plain name (it becomes part of git configuration keys such
/// as `filter.<name>.clean`), each once.
fn decode_drivers(cx: &mut Cx, g: &crate::decode::Fields) -> Vec<GitDriver> {
    let Some(node) = g.value("drivers") else {
        return Vec::new();
    };
    let path = g.path("drivers");
    let Value::Seq(items) = &node.value else {
        cx.expected(node, &path, "a list of driver names such as [lfs]");
        return Vec::new();
    };
    let mut drivers: Vec<GitDriver> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(name) = String::decode(cx, item, &at) else {
            continue;
        };
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plain {
            cx.error(
                item,
                &at,
                format!(
                    "`{name}` is not a driver name; give the name `.gitattributes` uses, such as \
                     `lfs` (letters, digits, `-` and `_`)"
                ),
            );
            continue;
        }
        if drivers.iter().any(|d| d.name == name) {
            cx.error(item, &at, format!("`{name}` is listed twice; remove one"));
            continue;
        }
        drivers.push(GitDriver {
            name,
            place: Some(crate::Place {
                file: cx.file.to_path_buf(),
                line: item.line,
                column: item.column,
            }),
        });
    }
    drivers
}

/// A hook: a shell line, or `{run, host}`. An empty line counts as no hook.
fn decode_hook(cx: &mut Cx, h: &crate::decode::Fields, name: &str) -> Option<Hook> {
    let node = h.value(name)?;
    let path = h.path(name);
    if !matches!(node.value, Value::Map(_)) {
        let line: String = h.get(cx, name)?;
        return (!line.trim().is_empty()).then_some(Hook::Line(line));
    }
    let f = cx.fields(node, &path, HOOK_FIELDS)?;
    let run: String = f.required(cx, "run", "run: make fmt")?;
    let host = f.or(cx, "host", false);
    if run.trim().is_empty() {
        if let Some(n) = f.value("run") {
            cx.error(n, &f.path("run"), "is empty; give the shell line to run");
        }
        return None;
    }
    Some(Hook::Command(HookCommand { run, host }))
}

fn non_empty(cx: &mut Cx, f: &crate::decode::Fields, name: &str) -> Option<String> {
    let value: String = f.get(cx, name)?;
    if value.trim().is_empty() {
        if let Some(n) = f.value(name) {
            cx.error(
                n,
                &f.path(name),
                "is empty; remove the field to use the default or give a value",
            );
        }
        return None;
    }
    Some(value)
}
