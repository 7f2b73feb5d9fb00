//! The Agent manifest: its types, their defaults, and the decoder that checks a document.

use std::collections::BTreeMap;

use domain::{Duration, ExecutionKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decode::{Cx, Decode, Fields, join};
use crate::template::Names;
use crate::yaml::{Node, Value};

/// The only manifest API version so far.
pub const API_VERSION: &str = "agentgrid.dev/v1";

/// The prompt used when an agent's manifest has none.
pub const DEFAULT_PROMPT: &str = "\
You are the agent `{{ agent }}`, working on task #{{ task.id }}: {{ task.title }}

{{ task.body }}
{% if parent %}
This task is part of #{{ parent.id }}: {{ parent.title }}
{% endif %}{% if children %}
Its sub-tasks so far:
{% for child in children %}- #{{ child.id }} {{ child.title }} ({{ child.state }}){% if child.summary %}: {{ child.summary }}{% endif %}
{% endfor %}{% endif %}{% if answer %}
You asked a person a question; their answer:
{{ answer }}
{% endif %}{% if comments %}
Comments on the task since your last execution:
{{ comments }}
{% endif %}{% if feedback %}
Feedback on the work so far:
{{ feedback }}
{% endif %}{% if handoff %}
This part of the task was handed to you:
{{ handoff }}
{% endif %}{% if inbox %}
Messages for you (acknowledge each with `agentgrid ctl msg ack ID` once handled):
{{ inbox }}
{% endif %}{% if workflow and workflow.blackboard %}
The workflow `{{ workflow.name }}` runs you as its state `{{ workflow.state }}`; its blackboard holds:
{{ workflow.blackboard }}
{% endif %}";

/// An agent: a command that works on tasks, how tasks reach it, and how its work is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Agent manifest")]
pub struct AgentManifest {
    /// Always `agentgrid.dev/v1`.
    #[serde(rename = "apiVersion")]
    #[schemars(extend("const" = "agentgrid.dev/v1"))]
    pub api_version: String,
    /// Always `Agent`.
    #[schemars(extend("const" = "Agent"))]
    pub kind: String,
    pub metadata: AgentMetadata,
    pub spec: AgentSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentMetadata {
    /// Unique across the project: lowercase letters, digits and dashes, at most 63.
    #[schemars(pattern(r"^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// One line for people choosing an agent.
    #[serde(default)]
    pub description: String,
    pub runtime: Runtime,
    /// A minijinja template for the prompt; see `PromptContext` for the names it can use.
    #[serde(default = "default_prompt")]
    pub prompt: String,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub validation: Validation,
    /// How the agent says it is finished.
    #[serde(default)]
    pub completion: Completion,
    /// What the agent's processes may see, write, reach and use.
    #[serde(default)]
    pub sandbox: crate::sandbox::SandboxProfile,
    /// The agency the agent belongs to; the agency must list it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// The agent's role in its agency (`coordinator` for its coordinator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The topics whose messages (`topic:NAME` announcements) its executions read in their
    /// inbox; at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
}

/// How an agent says it has finished: one type with the scheduler's.
pub use domain::Completion;

fn default_prompt() -> String {
    DEFAULT_PROMPT.to_string()
}

/// How the agent process is started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// A command agent needs its command and takes no `model`; the built-in one takes no command
// (nor `stdin`); a CLI's type may name either: the decoder's rules, said to editors.
#[schemars(extend(
    "if" = {"required": ["type"], "properties": {"type": {"const": "builtin"}}},
    "then" = {"not": {"anyOf": [{"required": ["command"]}, {"required": ["stdin"]}]}},
    "else" = {
        "if": {"required": ["type"], "properties": {"type": {"enum": ["claude", "codex", "gemini", "aider", "opencode"]}}},
        "then": {"not": {"required": ["stdin"]}},
        "else": {"required": ["command"], "not": {"required": ["model"]}}
    }
))]
pub struct Runtime {
    #[serde(rename = "type", default)]
    pub kind: RuntimeKind,
    /// The program and its arguments; each element is a template that also sees `prompt`.
    /// Required for `type: command`; refused for `type: builtin`. For a CLI's type it is
    /// optional: the CLI's usual program name when absent, and whatever is given comes before
    /// the arguments agentgrid adds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// For `type: builtin` or a CLI's type: the model alias (of the config's `models.aliases`)
    /// it asks the gateway for. When absent, the alias `default`, else the only alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Extra environment; values are templates. Names starting with AGENTGRID_ are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub stdin: StdinMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// Run `command` as a child process.
    #[default]
    Command,
    /// agentgrid's own tool-using model loop (`agentgrid __agent-builtin`), run in the
    /// sandbox like any agent and talking to the model gateway.
    Builtin,
    /// Claude Code (`claude -p`), its `stream-json` output read as events.
    Claude,
    /// Codex (`codex exec --json`), its JSON lines read as events.
    Codex,
    /// Gemini CLI (`gemini --output-format stream-json`), its JSON lines read as events.
    Gemini,
    /// OpenCode (`opencode run --format json`), its JSON lines read as events.
    Opencode,
    /// Aider (`aider --message-file`), its plain text output read as events.
    Aider,
}

impl RuntimeKind {
    /// Every type with the name the manifest gives it.
    pub const NAMES: &[(&str, RuntimeKind)] = &[
        ("command", RuntimeKind::Command),
        ("builtin", RuntimeKind::Builtin),
        ("claude", RuntimeKind::Claude),
        ("codex", RuntimeKind::Codex),
        ("gemini", RuntimeKind::Gemini),
        ("opencode", RuntimeKind::Opencode),
        ("aider", RuntimeKind::Aider),
    ];

    /// The name the manifest gives this type.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Command => "command",
            RuntimeKind::Builtin => "builtin",
            RuntimeKind::Claude => "claude",
            RuntimeKind::Codex => "codex",
            RuntimeKind::Gemini => "gemini",
            RuntimeKind::Opencode => "opencode",
            RuntimeKind::Aider => "aider",
        }
    }

    /// The program a CLI's type runs when `command` names none.
    pub fn default_program(self) -> Option<&'static str> {
        match self {
            RuntimeKind::Command | RuntimeKind::Builtin => None,
            RuntimeKind::Claude => Some("claude"),
            RuntimeKind::Codex => Some("codex"),
            RuntimeKind::Gemini => Some("gemini"),
            RuntimeKind::Opencode => Some("opencode"),
            RuntimeKind::Aider => Some("aider"),
        }
    }
}

/// What the agent process reads on its standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StdinMode {
    /// Nothing: stdin is closed.
    #[default]
    None,
    /// The rendered prompt.
    Prompt,
}

/// Which tasks the agent takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Routing {
    /// The agent takes tasks having at least one of these labels (empty: no label requirement).
    pub labels: Vec<String>,
    /// A task label `needs:X` requires capability X.
    pub capabilities: Vec<String>,
    /// Takes tasks no other agent matches.
    pub default: bool,
    /// Which execution kinds the agent runs.
    pub kinds: Vec<ExecutionKind>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            labels: Vec::new(),
            capabilities: Vec::new(),
            default: false,
            kinds: vec![ExecutionKind::Work, ExecutionKind::Resume],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall time per iteration of the agent process.
    pub timeout: Duration,
    /// No output for this long means the agent stalled.
    pub stall_timeout: Duration,
    /// A cap on simultaneous executions of this agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Generate → validate passes in one execution. When omitted: 1 without validators, 3 with.
    pub max_iterations: u32,
    /// Executions after failures before the task fails.
    pub max_attempts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_mins(30),
            stall_timeout: Duration::from_mins(5),
            concurrency: None,
            max_iterations: 1,
            max_attempts: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Validation {
    /// The weighted score needed to pass, from 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: f64,
    pub validators: Vec<Validator>,
    /// Paths of the main checkout that validators see, read-only, in the tree they judge:
    /// dependencies the owner installed and never committed (`node_modules`, `.venv`). The
    /// agent's copies of them are never used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub share: Vec<String>,
    /// Globs of files the agent may not change: existing ones that differ from the task's base
    /// commit fail the iteration before any validator runs. When omitted: the validators' own
    /// files, existing tests and the test runners' configuration; `[]` protects nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protect: Option<Vec<String>>,
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            threshold: 1.0,
            validators: Vec::new(),
            share: Vec::new(),
            protect: None,
        }
    }
}

/// One check of the agent's work. Give either `command` or `run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    pub name: String,
    /// The program and its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// A shell line, run with `sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default = "default_validator_timeout")]
    pub timeout: Duration,
    /// This validator's share of the score; 0 or more.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0.0))]
    pub weight: f64,
    #[serde(default)]
    pub score: ScoreMethod,
    /// For `score: junit`: the JUnit XML report the command writes, relative to the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Only this validator's score counts: its failure (a non-zero exit, failing tests, no
    /// summary) does not fail the iteration by itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub score_only: bool,
}

impl Validator {
    /// The argv to run: `command`, or `sh -c <run>`.
    pub fn argv(&self) -> Vec<String> {
        match &self.run {
            Some(line) => vec!["sh".into(), "-c".into(), line.clone()],
            None => self.command.clone(),
        }
    }
}

fn default_validator_timeout() -> Duration {
    Duration::from_mins(5)
}

fn default_weight() -> f64 {
    1.0
}

/// How a validator's run becomes a verdict and a score from 0 to 1. Whatever the method, a
/// validator fails when its command exits non-zero, is killed or times out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreMethod {
    /// 1 if the exit code is 0, else 0.
    #[default]
    Exit,
    /// Passed / (passed + failed + errors), counted from the last line that has them; any
    /// failure or error fails the validator.
    PassedFailed,
    /// pytest's closing summary line; errors, failures and "no tests ran" fail.
    Pytest,
    /// unittest's `Ran N tests` and the `OK` / `FAILED (…)` line after it.
    Unittest,
    /// The `test result:` line of every test binary, summed.
    CargoTest,
    /// cargo-nextest's `Summary […] N tests run:` line.
    Nextest,
    /// go test's package lines, and with `-v` its `--- PASS/FAIL/SKIP` lines.
    GoTest,
    /// jest's `Test Suites:` and `Tests:` lines.
    Jest,
    /// vitest's `Test Files`, `Tests` and `Errors` lines.
    Vitest,
    /// mocha's `N passing`, `pending` and `failing` lines.
    Mocha,
    /// The JUnit XML report named by `report`: its test cases are counted.
    Junit,
    /// A regular expression whose `score` group captures the score in the output; no match
    /// fails the validator.
    Regex(String),
}

impl ScoreMethod {
    /// The method's name as the manifest spells it, for the ones that are plain words.
    pub const WORDS: &[(&str, ScoreMethod)] = &[
        ("exit", ScoreMethod::Exit),
        ("passed-failed", ScoreMethod::PassedFailed),
        ("pytest", ScoreMethod::Pytest),
        ("unittest", ScoreMethod::Unittest),
        ("cargo-test", ScoreMethod::CargoTest),
        ("nextest", ScoreMethod::Nextest),
        ("go-test", ScoreMethod::GoTest),
        ("jest", ScoreMethod::Jest),
        ("vitest", ScoreMethod::Vitest),
        ("mocha", ScoreMethod::Mocha),
        ("junit", ScoreMethod::Junit),
    ];
}

pub(crate) const MANIFEST_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
pub(crate) const METADATA_FIELDS: &[&str] = &["name", "labels"];
pub(crate) const SPEC_FIELDS: &[&str] = &[
    "description",
    "runtime",
    "prompt",
    "routing",
    "limits",
    "validation",
    "completion",
    "sandbox",
    "agency",
    "role",
    "topics",
];
pub(crate) const RUNTIME_FIELDS: &[&str] = &["type", "command", "env", "stdin", "model"];
pub(crate) const ROUTING_FIELDS: &[&str] = &["labels", "capabilities", "default", "kinds"];
pub(crate) const LIMITS_FIELDS: &[&str] = &[
    "timeout",
    "stall_timeout",
    "concurrency",
    "max_iterations",
    "max_attempts",
];
pub(crate) const VALIDATION_FIELDS: &[&str] = &["threshold", "validators", "share", "protect"];
pub(crate) const VALIDATOR_FIELDS: &[&str] = &[
    "name",
    "command",
    "run",
    "timeout",
    "weight",
    "score",
    "report",
    "score_only",
];

/// What decoding one Agent document gave: the name (with its position, for the duplicate check
/// across files) even when the rest has problems, and the manifest when it could be built.
pub(crate) struct AgentDocument {
    pub name: Option<(String, usize, usize)>,
    pub manifest: Option<AgentManifest>,
    /// Where `spec.runtime` and `spec.runtime.model` are, for the checks against the config
    /// (a built-in agent's alias must exist and speak its wire format).
    pub runtime_at: Option<(usize, usize)>,
    pub model_at: Option<(usize, usize)>,
    /// Where `spec.agency` and `spec.role` are, for the checks against the agencies.
    pub agency_at: Option<(usize, usize)>,
    pub role_at: Option<(usize, usize)>,
}

pub(crate) fn decode_agent(cx: &mut Cx, node: &Node) -> AgentDocument {
    let mut doc = AgentDocument {
        name: None,
        manifest: None,
        runtime_at: None,
        model_at: None,
        agency_at: None,
        role_at: None,
    };
    let Some(f) = cx.fields(node, "", MANIFEST_FIELDS) else {
        return doc;
    };
    let header = check_header(
        cx,
        &f,
        "Agent",
        "agent files hold `kind: Agent`; project settings (`kind: Config`) go in .agentgrid/config.yaml",
    );
    let metadata = match f.value("metadata") {
        Some(m) => decode_agent_metadata(cx, m, "metadata", &mut doc),
        None => {
            f.missing(cx, "metadata", "metadata: {name: worker}");
            None
        }
    };
    // A document of another kind is not an agent: its spec would only produce noise.
    if !header {
        return doc;
    }
    let runtime = f.value("spec").and_then(|s| child(s, "runtime", cx.source));
    doc.runtime_at = runtime.map(|n| (n.line, n.column));
    doc.model_at = runtime
        .and_then(|r| child(r, "model", cx.source))
        .map(|n| (n.line, n.column));
    let spec_node = f.value("spec");
    doc.agency_at = spec_node
        .and_then(|s| child(s, "agency", cx.source))
        .map(|n| (n.line, n.column));
    doc.role_at = spec_node
        .and_then(|s| child(s, "role", cx.source))
        .map(|n| (n.line, n.column));
    let spec = match f.value("spec") {
        Some(s) => decode_spec(cx, s, "spec"),
        None => {
            f.missing(cx, "spec", "spec: {runtime: {command: [my-agent]}}");
            None
        }
    };
    if let (Some(metadata), Some(spec)) = (metadata, spec) {
        doc.manifest = Some(AgentManifest {
            api_version: API_VERSION.into(),
            kind: "Agent".into(),
            metadata,
            spec,
        });
    }
    doc
}

/// The `metadata.name` of a manifest of `kind` (`agency`, `workflow`) with its place, reading only
/// `fields` in `metadata`; every mistake is reported with `example` as the name to give.
pub(crate) fn metadata_name(
    cx: &mut Cx,
    f: &Fields,
    fields: &[&str],
    kind: &str,
    example: &str,
) -> Option<(String, usize, usize)> {
    let Some(m) = f.value("metadata") else {
        f.missing(cx, "metadata", &format!("metadata: {{name: {example}}}"));
        return None;
    };
    let mf = cx.fields(m, "metadata", fields)?;
    let node = mf.value("name");
    let name: String = mf.required(cx, "name", &format!("name: {example}"))?;
    let node = node?;
    if !valid_name(&name) {
        cx.error(
            node,
            "metadata.name",
            format!(
                "`{name}` is not a valid {kind} name: use lowercase letters, digits and dashes, \
                 such as `{example}`"
            ),
        );
        return None;
    }
    Some((name, node.line, node.column))
}

/// Checks `apiVersion` and `kind`. Returns false when the document is of another kind.
pub(crate) fn check_header(cx: &mut Cx, f: &Fields, kind: &str, other_kind_hint: &str) -> bool {
    match f.value("apiVersion") {
        None => f.missing(cx, "apiVersion", &format!("apiVersion: {API_VERSION}")),
        Some(node) => {
            if let Some(v) = String::decode(cx, node, "apiVersion")
                && v != API_VERSION
            {
                cx.error(
                    node,
                    "apiVersion",
                    format!("expected `{API_VERSION}`, found `{v}`"),
                );
            }
        }
    }
    match f.value("kind") {
        None => {
            f.missing(cx, "kind", &format!("kind: {kind}"));
            true
        }
        Some(node) => match String::decode(cx, node, "kind") {
            Some(k) if k == kind => true,
            Some(k) => {
                cx.error(
                    node,
                    "kind",
                    format!("expected `{kind}`, found `{k}`; {other_kind_hint}"),
                );
                false
            }
            None => false,
        },
    }
}

/// `[a-z0-9][a-z0-9-]{0,62}`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The value under `key` of a mapping node, without checking anything (the decoder does).
fn child<'n>(node: &'n Node, key: &str, source: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.scalar_text(source).as_deref() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn decode_agent_metadata(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    doc: &mut AgentDocument,
) -> Option<AgentMetadata> {
    let f = cx.fields(node, path, METADATA_FIELDS)?;
    let labels = f.or(cx, "labels", BTreeMap::new());
    let name_node = f.value("name");
    let name: String = f.required(cx, "name", "name: worker")?;
    let name_node = name_node?;
    if !valid_name(&name) {
        cx.error(
            name_node,
            &f.path("name"),
            format!(
                "`{name}` is not a valid agent name: use lowercase letters, digits and dashes \
                 (at most 63, not starting with a dash), such as `worker`"
            ),
        );
        return None;
    }
    doc.name = Some((name.clone(), name_node.line, name_node.column));
    Some(AgentMetadata { name, labels })
}

fn decode_spec(cx: &mut Cx, node: &Node, path: &str) -> Option<AgentSpec> {
    let f = cx.fields(node, path, SPEC_FIELDS)?;
    let description = f.or(cx, "description", String::new());
    let runtime = match f.value("runtime") {
        Some(n) => decode_runtime(cx, n, &f.path("runtime")),
        None => {
            f.missing(cx, "runtime", "runtime: {command: [my-agent]}");
            None
        }
    };
    let prompt = match f.value("prompt") {
        Some(n) => {
            let text = String::decode(cx, n, &f.path("prompt"));
            if let Some(text) = &text {
                cx.check_template(n, &f.path("prompt"), text, Names::Prompt);
            }
            text.unwrap_or_default()
        }
        None => DEFAULT_PROMPT.to_string(),
    };
    let routing = f
        .value("routing")
        .and_then(|n| decode_routing(cx, n, &f.path("routing")));
    let validation = f
        .value("validation")
        .and_then(|n| decode_validation(cx, n, &f.path("validation")));
    let validation = validation.unwrap_or_default();
    let has_validators = !validation.validators.is_empty();
    let limits = match f.value("limits") {
        Some(n) => decode_limits(cx, n, &f.path("limits"), has_validators),
        None => Some(default_limits(has_validators)),
    };
    let completion = match f.value("completion") {
        None => Completion::Exit,
        Some(n) => match String::decode(cx, n, &f.path("completion")).as_deref() {
            Some("exit") | None => Completion::Exit,
            Some("claim") => Completion::Claim,
            Some(other) => {
                cx.error(
                    n,
                    &f.path("completion"),
                    format!("expected `exit` or `claim`, found `{other}`"),
                );
                Completion::Exit
            }
        },
    };
    let sandbox = f
        .value("sandbox")
        .and_then(|n| crate::sandbox::decode_sandbox(cx, n, &f.path("sandbox")))
        .unwrap_or_default();
    if let (Some(runtime), Some(node)) = (&runtime, f.value("runtime"))
        && runtime.kind == RuntimeKind::Builtin
        && sandbox.enabled
        && sandbox.network == crate::sandbox::NetworkMode::None
    {
        cx.error(
            node,
            &f.path("runtime"),
            "the built-in agent talks to the model gateway, which `sandbox.network: none` cuts \
             off; add `sandbox: {network: gateway}` (and a `models:` section in the config)",
        );
    }
    let agency = named(cx, &f, "agency", "agency");
    let role = named(cx, &f, "role", "role");
    let topics = decode_topics(cx, &f);
    Some(AgentSpec {
        agency,
        role,
        topics,
        sandbox,
        completion,
        description,
        runtime: runtime?,
        prompt,
        routing: routing.unwrap_or_default(),
        limits: limits.unwrap_or_else(|| default_limits(has_validators)),
        validation,
    })
}

/// The most topics an agent may follow.
pub const MAX_TOPICS: usize = 32;

/// `topics:`: each a name a message can be addressed to (`topic:NAME`), none twice.
fn decode_topics(cx: &mut Cx, f: &Fields) -> Vec<String> {
    let Some(n) = f.value("topics") else {
        return Vec::new();
    };
    let path = f.path("topics");
    let topics: Vec<String> = Vec::decode(cx, n, &path).unwrap_or_default();
    let Value::Seq(items) = &n.value else {
        return topics;
    };
    if items.len() > MAX_TOPICS {
        cx.error(
            n,
            &path,
            format!(
                "{} topics; an agent follows at most {MAX_TOPICS}: drop some, or have one \
                 broader topic",
                items.len()
            ),
        );
    }
    for (i, item) in items.iter().enumerate() {
        let Value::Str(topic) = &item.value else {
            continue;
        };
        if let Err(problem) = format!("topic:{topic}").parse::<domain::Receiver>() {
            cx.error(item, &format!("{path}[{i}]"), problem);
        } else if items[..i]
            .iter()
            .any(|x| matches!(&x.value, Value::Str(t) if t == topic))
        {
            cx.error(
                item,
                &format!("{path}[{i}]"),
                format!("`{topic}` is listed twice; list each topic once"),
            );
        }
    }
    topics
}

fn default_limits(has_validators: bool) -> Limits {
    Limits {
        max_iterations: if has_validators { 3 } else { 1 },
        ..Limits::default()
    }
}

fn decode_runtime(cx: &mut Cx, node: &Node, path: &str) -> Option<Runtime> {
    let f = cx.fields(node, path, RUNTIME_FIELDS)?;
    let mut kind = RuntimeKind::Command;
    // With a type that is not known, what the other fields need is not known either: only the
    // type is reported, not a `command` that a CLI's type would not need.
    let mut unknown_type = false;
    if let Some(n) = f.value("type")
        && let Some(name) = String::decode(cx, n, &f.path("type"))
    {
        match RuntimeKind::NAMES.iter().find(|(known, _)| *known == name) {
            Some((_, known)) => kind = *known,
            None => {
                unknown_type = true;
                let known: Vec<&str> = RuntimeKind::NAMES.iter().map(|(k, _)| *k).collect();
                let names: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                let guess = crate::decode::closest(&name, &known)
                    .map(|g| format!(" (did you mean `{g}`?)"))
                    .unwrap_or_default();
                cx.error(
                    n,
                    &f.path("type"),
                    format!(
                        "expected one of {}, found `{name}`{guess}",
                        names.join(", ")
                    ),
                );
            }
        }
    }
    let model = match f.value("model") {
        None => None,
        Some(n) => {
            let model = String::decode(cx, n, &f.path("model"));
            if kind == RuntimeKind::Command && !unknown_type {
                cx.error(
                    n,
                    &f.path("model"),
                    "`model` is for `type: builtin` or a CLI's runtime type (such as `claude`); a \
                     `command` runtime picks its model itself: drop `model` or set `type`",
                );
            } else if model.as_deref().is_some_and(|m| m.trim().is_empty()) {
                cx.error(
                    n,
                    &f.path("model"),
                    "the model alias is empty; name an alias of `models.aliases` or leave `model` out",
                );
            }
            model
        }
    };
    let stdin = match f.value("stdin") {
        None => StdinMode::None,
        Some(n) => match String::decode(cx, n, &f.path("stdin")).as_deref() {
            Some("none") | None => StdinMode::None,
            Some("prompt") => StdinMode::Prompt,
            Some(other) => {
                cx.error(
                    n,
                    &f.path("stdin"),
                    format!("expected `none` or `prompt`, found `{other}`"),
                );
                StdinMode::None
            }
        },
    };
    let env = f
        .value("env")
        .and_then(|n| decode_env(cx, n, &f.path("env")))
        .unwrap_or_default();

    if kind == RuntimeKind::Builtin {
        // The built-in agent is agentgrid's own program and always reads the prompt on its
        // standard input; a command or stdin setting would be silently ignored, so it is
        // refused instead.
        for field in ["command", "stdin"] {
            if let Some(n) = f.value(field) {
                cx.error(
                    n,
                    &f.path(field),
                    format!(
                        "`{field}` is not used with `type: builtin` (agentgrid runs its own agent, \
                         which reads the prompt itself); remove it"
                    ),
                );
            }
        }
        return Some(Runtime {
            kind,
            command: Vec::new(),
            model,
            env,
            stdin: StdinMode::Prompt,
        });
    }
    let example = r#"command: ["my-agent", "--prompt-file", "$AGENTGRID_PROMPT_FILE"]"#;
    let command_path = f.path("command");
    let Some(command_node) = f.value("command") else {
        if unknown_type {
            return None;
        }
        if kind != RuntimeKind::Command {
            return Some(Runtime {
                kind,
                command: Vec::new(),
                model,
                env,
                stdin,
            });
        }
        f.missing(cx, "command", example);
        return None;
    };
    let command: Vec<String> = Vec::decode(cx, command_node, &command_path)?;
    if command.is_empty() {
        cx.error(
            command_node,
            &command_path,
            format!(
                "the command is empty; give the program and its arguments, for example `{example}`"
            ),
        );
        return None;
    }
    if let Value::Seq(items) = &command_node.value {
        if let Some(first) = items.first()
            && let Value::Str(program) = &first.value
            && program.trim().is_empty()
        {
            cx.error(
                first,
                &format!("{command_path}[0]"),
                "the program name is empty; name the program to run",
            );
        }
        for (i, item) in items.iter().enumerate() {
            if let Value::Str(text) = &item.value {
                cx.check_template(item, &format!("{command_path}[{i}]"), text, Names::Arg);
            }
        }
    }
    Some(Runtime {
        kind,
        command,
        model,
        env,
        stdin,
    })
}

fn decode_env(cx: &mut Cx, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
    let env: BTreeMap<String, String> = BTreeMap::decode(cx, node, path)?;
    let Value::Map(entries) = &node.value else {
        return Some(env);
    };
    for (key, value) in entries {
        let Some(name) = key.scalar_text(cx.source) else {
            continue;
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            cx.error(key, path, format!("`{name}` is not a valid variable name: use capital letters, digits and _, not starting with a digit (such as MY_VAR)"));
        } else if name.starts_with("AGENTGRID_") {
            cx.error(key, path, format!("`{name}` is reserved: agentgrid sets the AGENTGRID_* variables itself; pick another name"));
        }
        if let Value::Str(text) = &value.value {
            cx.check_template(value, &join(path, &name), text, Names::Arg);
        }
    }
    Some(env)
}

fn decode_routing(cx: &mut Cx, node: &Node, path: &str) -> Option<Routing> {
    let f = cx.fields(node, path, ROUTING_FIELDS)?;
    let d = Routing::default();
    let labels = checked_labels(cx, &f, "labels", "label");
    let capabilities = checked_labels(cx, &f, "capabilities", "capability");
    let default = f.or(cx, "default", d.default);
    let kinds = match f.value("kinds") {
        None => d.kinds,
        Some(n) => {
            let kinds: Vec<ExecutionKind> = Vec::decode(cx, n, &f.path("kinds")).unwrap_or(d.kinds);
            if kinds.is_empty() {
                cx.error(n, &f.path("kinds"), "no execution kinds listed, so the agent would never run; list work, resume or both");
            }
            kinds
        }
    };
    Some(Routing {
        labels,
        capabilities,
        default,
        kinds,
    })
}

/// An optional name field (`agency`, `role`): lowercase letters, digits and dashes.
fn named(cx: &mut Cx, f: &Fields, name: &str, what: &str) -> Option<String> {
    let value: String = f.get(cx, name)?;
    if !valid_name(&value) {
        if let Some(n) = f.value(name) {
            cx.error(
                n,
                &f.path(name),
                format!(
                    "`{value}` is not a valid {what} name: use lowercase letters, digits and dashes"
                ),
            );
        }
        return None;
    }
    Some(value)
}

/// A list of task labels (or capabilities, which appear in labels as `needs:X`).
pub(crate) fn checked_labels(cx: &mut Cx, f: &Fields, name: &str, what: &str) -> Vec<String> {
    let Some(n) = f.value(name) else {
        return Vec::new();
    };
    let path = f.path(name);
    let labels: Vec<String> = Vec::decode(cx, n, &path).unwrap_or_default();
    if let Value::Seq(items) = &n.value {
        for (i, item) in items.iter().enumerate() {
            if let Value::Str(label) = &item.value
                && let Err(message) = domain::task::check_label(label)
            {
                cx.error(
                    item,
                    &format!("{path}[{i}]"),
                    message.replacen("label", what, 1),
                );
            }
        }
    }
    labels
}

fn decode_limits(cx: &mut Cx, node: &Node, path: &str, has_validators: bool) -> Option<Limits> {
    let f = cx.fields(node, path, LIMITS_FIELDS)?;
    let d = default_limits(has_validators);
    let timeout = positive_duration(cx, &f, "timeout", d.timeout);
    let stall_timeout = positive_duration(cx, &f, "stall_timeout", d.stall_timeout);
    let concurrency = at_least_one(
        cx,
        &f,
        "concurrency",
        "run at most this many executions of the agent at once",
    );
    let max_iterations = at_least_one(
        cx,
        &f,
        "max_iterations",
        "the agent needs at least one pass",
    )
    .unwrap_or(d.max_iterations);
    let max_attempts = at_least_one(cx, &f, "max_attempts", "a task needs at least one attempt")
        .unwrap_or(d.max_attempts);
    Some(Limits {
        timeout,
        stall_timeout,
        concurrency,
        max_iterations,
        max_attempts,
    })
}

pub(crate) fn positive_duration(
    cx: &mut Cx,
    f: &Fields,
    name: &str,
    default: Duration,
) -> Duration {
    let Some(d) = f.get::<Duration>(cx, name) else {
        return default;
    };
    if d == Duration::ZERO {
        if let Some(n) = f.value(name) {
            cx.error(n, &f.path(name), "must be longer than 0s");
        }
        return default;
    }
    d
}

pub(crate) fn at_least_one(cx: &mut Cx, f: &Fields, name: &str, why: &str) -> Option<u32> {
    let n = f.get::<u32>(cx, name)?;
    if n == 0 {
        if let Some(node) = f.value(name) {
            cx.error(node, &f.path(name), format!("must be 1 or more: {why}"));
        }
        return None;
    }
    Some(n)
}

fn decode_validation(cx: &mut Cx, node: &Node, path: &str) -> Option<Validation> {
    let f = cx.fields(node, path, VALIDATION_FIELDS)?;
    let mut threshold = f.get::<f64>(cx, "threshold").unwrap_or(1.0);
    if !(0.0..=1.0).contains(&threshold) {
        if let Some(n) = f.value("threshold") {
            cx.error(n, &f.path("threshold"), format!("{threshold} is outside 0..1; give the score needed to pass, from 0 to 1 (1.0 = every validator must pass)"));
        }
        threshold = 1.0;
    }
    let mut validators = Vec::new();
    if let Some(list) = f.value("validators") {
        let list_path = f.path("validators");
        match &list.value {
            Value::Seq(items) => {
                let mut seen: Vec<String> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{list_path}[{i}]");
                    let Some(v) = decode_validator(cx, item, &item_path) else {
                        continue;
                    };
                    if seen.contains(&v.name) {
                        cx.error(item, &item_path, format!("a validator named `{}` is already listed; give each validator its own name", v.name));
                    }
                    seen.push(v.name.clone());
                    validators.push(v);
                }
                if !validators.is_empty() && validators.iter().all(|v| v.weight == 0.0) {
                    let at = f.key("validators").unwrap_or(list);
                    cx.error(at, &list_path, "every validator has weight 0, so no score can be computed; give at least one a positive weight");
                }
            }
            _ => cx.expected(list, &list_path, "a list of validators"),
        }
    }
    let share = match f.value("share") {
        None => Vec::new(),
        Some(n) => {
            let share_path = f.path("share");
            let share: Vec<String> = Vec::decode(cx, n, &share_path).unwrap_or_default();
            for entry in &share {
                if let Some(why) = bad_share(entry) {
                    cx.error(n, &share_path, format!("`{entry}` {why}; name a directory of the main checkout relative to its top, such as `node_modules` or `.venv`"));
                }
            }
            share
        }
    };
    let protect = match f.value("protect") {
        None => None,
        Some(n) => {
            let protect_path = f.path("protect");
            let globs: Vec<String> = Vec::decode(cx, n, &protect_path).unwrap_or_default();
            for glob in &globs {
                if glob.is_empty() || glob.starts_with('/') || glob.split('/').any(|c| c == "..") {
                    cx.error(n, &protect_path, format!("`{glob}` is not a relative glob; give paths from the top of the repository, such as `tests/**` or `**/conftest.py`"));
                }
            }
            Some(globs)
        }
    };
    Some(Validation {
        threshold,
        validators,
        share,
        protect,
    })
}

/// Why a `share` entry cannot be used, if it cannot.
fn bad_share(entry: &str) -> Option<&'static str> {
    let path = std::path::Path::new(entry);
    if entry.is_empty() || path.is_absolute() {
        return Some("is not a relative path");
    }
    if path
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Some("must not contain `.`, `..` or a root");
    }
    if entry == ".agentgrid"
        || entry.starts_with(".agentgrid/")
        || entry == ".git"
        || entry.starts_with(".git/")
    {
        return Some("is the engine's own");
    }
    None
}

fn decode_validator(cx: &mut Cx, node: &Node, path: &str) -> Option<Validator> {
    let f = cx.fields(node, path, VALIDATOR_FIELDS)?;
    let name: Option<String> = f.required(cx, "name", "name: tests");
    if let (Some(n), Some(name)) = (f.value("name"), &name)
        && name.trim().is_empty()
    {
        cx.error(
            n,
            &f.path("name"),
            "the name is empty; name the validator, such as `tests`",
        );
    }
    let command: Option<Vec<String>> = f.get(cx, "command");
    let run: Option<String> = f.get(cx, "run");
    match (f.value("command"), f.value("run")) {
        (Some(_), Some(run_node)) => {
            cx.error(run_node, path, "give either `command` or `run`, not both");
        }
        (None, None) => {
            cx.error(node, path, r#"missing the check to run; add `command: ["pytest", "-q"]` or `run: "pytest -q"`"#);
        }
        (Some(n), None) if command.as_ref().is_some_and(Vec::is_empty) => {
            cx.error(
                n,
                &f.path("command"),
                "the command is empty; give the program and its arguments",
            );
        }
        (None, Some(n)) if run.as_ref().is_some_and(|r| r.trim().is_empty()) => {
            cx.error(
                n,
                &f.path("run"),
                "the shell line is empty; give the command to run",
            );
        }
        _ => {}
    }
    let timeout = positive_duration(cx, &f, "timeout", default_validator_timeout());
    let mut weight = f.get::<f64>(cx, "weight").unwrap_or(1.0);
    if weight < 0.0 {
        if let Some(n) = f.value("weight") {
            cx.error(
                n,
                &f.path("weight"),
                format!("{weight} is negative; give a weight of 0 or more"),
            );
        }
        weight = 1.0;
    }
    let score = f
        .value("score")
        .and_then(|n| decode_score(cx, n, &f.path("score")))
        .unwrap_or_default();
    let score_only = f.get::<bool>(cx, "score_only").unwrap_or(false);
    let report: Option<String> = f.get(cx, "report");
    match (&score, f.value("report"), &report) {
        (ScoreMethod::Junit, None, _) => {
            let at = f.value("score").unwrap_or(node);
            cx.error(at, &f.path("score"), "`score: junit` reads a report; add `report: path/to/junit.xml` (relative to the workspace)");
        }
        (ScoreMethod::Junit, Some(n), Some(path)) => {
            if let Some(why) = report_path_problem(path) {
                cx.error(n, &f.path("report"), why);
            }
        }
        (_, Some(n), _) if score != ScoreMethod::Junit => {
            cx.error(
                n,
                &f.path("report"),
                "only `score: junit` reads a report; add `score: junit` or remove `report`",
            );
        }
        _ => {}
    }
    Some(Validator {
        name: name?,
        command: command.unwrap_or_default(),
        run,
        timeout,
        weight,
        score,
        report,
        score_only,
    })
}

/// Why a report path cannot be used: it must name a file inside the workspace.
fn report_path_problem(path: &str) -> Option<String> {
    let p = std::path::Path::new(path);
    if path.trim().is_empty() {
        return Some("the report path is empty; give the file the command writes, such as `reports/junit.xml`".into());
    }
    if p.is_absolute() {
        return Some(format!(
            "`{path}` is absolute; give a path relative to the workspace, such as `reports/junit.xml`"
        ));
    }
    if p.components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Some(format!(
            "`{path}` leaves the workspace or names a directory; give a file path inside it without `..`, such as `reports/junit.xml`"
        ));
    }
    None
}

fn decode_score(cx: &mut Cx, node: &Node, path: &str) -> Option<ScoreMethod> {
    let expected = r#"`exit`, `passed-failed`, `pytest`, `unittest`, `cargo-test`, `nextest`, `go-test`, `jest`, `vitest`, `mocha`, `junit` or `{regex: "score=(?P<score>[0-9.]+)"}`"#;
    match &node.value {
        Value::Str(s) if ScoreMethod::WORDS.iter().any(|(w, _)| w == s) => ScoreMethod::WORDS
            .iter()
            .find(|(w, _)| w == s)
            .map(|(_, m)| m.clone()),
        Value::Map(_) => {
            let f = cx.fields(node, path, &["regex"])?;
            let pattern: String =
                f.required(cx, "regex", r#"regex: "score=(?P<score>[0-9.]+)""#)?;
            let at = f.value("regex")?;
            match regex::Regex::new(&pattern) {
                Err(err) => {
                    cx.error(
                        at,
                        &f.path("regex"),
                        format!(
                            "`{pattern}` is not a valid regular expression: {}",
                            regex_reason(&err)
                        ),
                    );
                    None
                }
                Ok(re) if !re.capture_names().any(|n| n == Some("score")) => {
                    cx.error(at, &f.path("regex"), format!("`{pattern}` has no group named `score`; capture the number with (?P<score>[0-9.]+)"));
                    None
                }
                Ok(_) => Some(ScoreMethod::Regex(pattern)),
            }
        }
        _ => {
            cx.expected(node, path, expected);
            None
        }
    }
}

/// The one-line reason from a regex error; its display draws a multi-line caret diagram.
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for good in ["worker", "a", "0", "code-review-2", &"a".repeat(63)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-x", "Worker", "my_agent", "a b", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_default_prompt_is_a_valid_template() {
        assert_eq!(
            crate::template::check_template(DEFAULT_PROMPT, Names::Prompt),
            vec![]
        );
    }

    #[test]
    fn regex_reasons_fit_on_one_line() {
        // Built at run time: a literal bad pattern would (rightly) fail clippy's regex lint.
        let pattern = ["(", "unclosed"].concat();
        let err = regex::Regex::new(&pattern).unwrap_err();
        assert_eq!(regex_reason(&err), "unclosed group");
    }

    #[test]
    fn run_lines_become_sh_c() {
        let v = Validator {
            name: "t".into(),
            command: vec![],
            run: Some("make test".into()),
            timeout: default_validator_timeout(),
            weight: 1.0,
            score: ScoreMethod::Exit,
            report: None,
            score_only: false,
        };
        assert_eq!(v.argv(), ["sh", "-c", "make test"]);
    }
}
