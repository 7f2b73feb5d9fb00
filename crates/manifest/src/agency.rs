//! `kind: Agency` manifests (`.agentgrid/agencies/*.yaml`): a coordinator agent and its
//! specialists, the work the agency accepts, the context its agents see, its caps and its
//! policies; and the checks of every reference between agencies and agents.
//!
//! ```yaml
//! apiVersion: agentgrid.dev/v1
//! kind: Agency
//! metadata: {name: code}
//! spec:
//!   description: Writes and fixes code.
//!   coordinator: code-lead            # an agent; takes what no specialist fits
//!   specialists:
//!     - {agent: coder, role: developer, capabilities: [rust, python]}
//!     - {agent: fixer, role: bugfixer, cost: 2}
//!   labels: [code, bug]               # tasks with one of these labels come to this agency
//!   capabilities: [rust, python]      # and tasks whose every `needs:X` is listed here
//!   context: [docs/standards.md]      # files (from the repository root) shown to its prompts
//!   limits: {concurrency: 2}          # executions of its agents at once
//!   routing: rule                     # rule | contract-net
//!   bid_deadline: 30s                 # contract net: how long a call for proposals stays open
//!   escalation_deadline: 10m          # a specialist's escalation left open this long goes up
//!   budgets: {per_day: {cost: 20.0, tokens: 2000000}, per_tree: {cost: 5.0}}
//!   policies:
//!     handoffs: [{from: developer, to: [qa]}]
//!     approval: true                  # its done top-level work waits for a person
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use domain::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Diagnostic;
use crate::agent::{
    API_VERSION, AgentDocument, MANIFEST_FIELDS, check_header, metadata_name, valid_name,
};
use crate::decode::{Cx, Decode, Fields};
use crate::yaml::{Node, Value};

/// A group of agents that takes one kind of work: a coordinator plus specialists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Agency manifest")]
pub struct AgencyManifest {
    /// Always `agentgrid.dev/v1`.
    #[serde(rename = "apiVersion")]
    #[schemars(extend("const" = "agentgrid.dev/v1"))]
    pub api_version: String,
    /// Always `Agency`.
    #[schemars(extend("const" = "Agency"))]
    pub kind: String,
    pub metadata: AgencyMetadata,
    pub spec: AgencySpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgencyMetadata {
    /// Unique across the project: lowercase letters, digits and dashes, at most 63.
    #[schemars(pattern(r"^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgencySpec {
    /// One line for people choosing an agency.
    #[serde(default)]
    pub description: String,
    /// The agent that leads the agency; it takes the tasks no specialist fits.
    pub coordinator: String,
    #[serde(default)]
    pub specialists: Vec<Specialist>,
    /// Tasks carrying one of these labels are routed to this agency.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Tasks whose every `needs:X` label is covered here are routed to this agency.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Files, relative to the repository root, whose text the agency's agents see in their
    /// prompts as `{{ agency.context }}`: standards, memory.
    #[serde(default)]
    pub context: Vec<String>,
    #[serde(default)]
    pub limits: AgencyLimits,
    /// How a task that reached the agency finds its agent.
    #[serde(default)]
    pub routing: AgencyRouting,
    /// Contract net: how long a call for proposals waits for bids before the coordinator
    /// takes the task.
    #[serde(default = "default_bid_deadline")]
    pub bid_deadline: Duration,
    #[serde(default)]
    pub policies: Policies,
    /// How long the coordinator may leave a specialist's escalation open before it goes up
    /// to people by itself.
    #[serde(default = "default_escalation_deadline")]
    pub escalation_deadline: Duration,
    /// Model spend of the agency's agents together, held by the gateway during their runs.
    #[serde(default)]
    pub budgets: AgencyBudgets,
}

/// An agency's budgets: what all its agents' model requests together may use.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgencyBudgets {
    /// Per UTC day: tokens (input plus output) and/or cost in US dollars. Once it is used up
    /// the gateway refuses the agents' model requests and no task of the agency is started
    /// until the next day.
    pub per_day: crate::models::Budget,
    /// Per task tree: the most a tree may have used (by any agent) for the agency's agents
    /// to make more requests in it; the gateway refuses them past it.
    pub per_tree: crate::models::Budget,
}

fn default_escalation_deadline() -> Duration {
    Duration::from_secs(600)
}

fn default_bid_deadline() -> Duration {
    Duration::from_secs(30)
}

/// One agent of an agency besides its coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Specialist {
    /// The agent's name.
    pub agent: String,
    /// Its role in the agency; a task labelled `role:R` goes to the specialist of role R.
    pub role: String,
    /// What it can do beyond its agent's own `routing.capabilities`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Its cost estimate per task for contract-net bids, relative to the others; 0 or more.
    #[serde(default = "default_cost")]
    #[schemars(range(min = 0.0))]
    pub cost: f64,
}

fn default_cost() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgencyLimits {
    /// Most executions of the agency's agents at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// How a task that reached the agency finds its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgencyRouting {
    /// By rule: the specialist of the task's role with the capabilities it needs and the
    /// least load; the coordinator when none fits.
    #[default]
    Rule,
    /// A call for proposals to the capable specialists, bids by rule (cost and confidence from
    /// the manifest and the load), an award with its reasons; the coordinator when nobody bids.
    ContractNet,
}

impl AgencyRouting {
    pub fn name(self) -> &'static str {
        match self {
            AgencyRouting::Rule => "rule",
            AgencyRouting::ContractNet => "contract-net",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policies {
    /// Which of the agency's roles may hand work off to which agencies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<HandoffRule>,
    /// Done top-level work of this agency waits for a person's approval.
    pub approval: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRule {
    /// A role of this agency (`coordinator` for the coordinator).
    pub from: String,
    /// The agencies it may hand off to.
    pub to: Vec<String>,
}

/// One agency and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Agency {
    pub name: String,
    pub source: PathBuf,
    pub manifest: AgencyManifest,
}

impl Agency {
    pub fn spec(&self) -> &AgencySpec {
        &self.manifest.spec
    }

    /// Every member: the coordinator first (role `coordinator`), then the specialists.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once((self.spec().coordinator.as_str(), COORDINATOR_ROLE)).chain(
            self.spec()
                .specialists
                .iter()
                .map(|s| (s.agent.as_str(), s.role.as_str())),
        )
    }

    /// The role of `agent` in this agency, if it is a member.
    pub fn role_of(&self, agent: &str) -> Option<&str> {
        self.members().find(|(a, _)| *a == agent).map(|(_, r)| r)
    }
}

/// The role the coordinator holds.
pub const COORDINATOR_ROLE: &str = "coordinator";

pub(crate) const SPEC_FIELDS: &[&str] = &[
    "description",
    "coordinator",
    "specialists",
    "labels",
    "capabilities",
    "context",
    "limits",
    "routing",
    "bid_deadline",
    "policies",
    "escalation_deadline",
    "budgets",
];
pub(crate) const BUDGETS_FIELDS: &[&str] = &["per_day", "per_tree"];
pub(crate) const METADATA_FIELDS: &[&str] = &["name"];
pub(crate) const SPECIALIST_FIELDS: &[&str] = &["agent", "role", "capabilities", "cost"];
pub(crate) const LIMITS_FIELDS: &[&str] = &["concurrency"];
pub(crate) const POLICIES_FIELDS: &[&str] = &["handoffs", "approval"];
pub(crate) const HANDOFF_FIELDS: &[&str] = &["from", "to"];

/// A line and a column.
type At = (usize, usize);

/// Where each reference of a decoded agency is written, for the checks across files.
#[derive(Debug, Default)]
pub(crate) struct AgencyPlaces {
    pub name: (usize, usize),
    pub coordinator: (usize, usize),
    /// Per specialist: its agent and its role.
    pub specialists: Vec<((usize, usize), (usize, usize))>,
    /// Per handoff rule: its `from` and each of its `to`.
    pub handoffs: Vec<(At, Vec<At>)>,
    pub context: Vec<(usize, usize)>,
}

pub(crate) struct AgencyDocument {
    pub file: PathBuf,
    pub name: Option<(String, usize, usize)>,
    pub agency: Option<Agency>,
    pub places: AgencyPlaces,
}

/// Reads the agency documents of one file.
pub(crate) fn agencies_from(
    source: &str,
    file: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<AgencyDocument> {
    crate::decode::each_document(source, file, diagnostics, decode_agency)
}

fn at(node: &Node) -> (usize, usize) {
    (node.line, node.column)
}

fn decode_agency(cx: &mut Cx, node: &Node) -> AgencyDocument {
    let mut doc = AgencyDocument {
        file: cx.file.to_path_buf(),
        name: None,
        agency: None,
        places: AgencyPlaces::default(),
    };
    let Some(f) = cx.fields(node, "", MANIFEST_FIELDS) else {
        return doc;
    };
    if !check_header(
        cx,
        &f,
        "Agency",
        "agency files (.agentgrid/agencies/) hold `kind: Agency`; agents go in .agentgrid/agents/",
    ) {
        return doc;
    }
    let name = metadata_name(cx, &f, METADATA_FIELDS, "agency", "code");
    doc.name = name.clone();
    if let Some((_, line, column)) = &name {
        doc.places.name = (*line, *column);
    }
    let Some(spec) = f.value("spec") else {
        f.missing(cx, "spec", "spec: {coordinator: lead, specialists: [...]}");
        return doc;
    };
    let spec = decode_spec(cx, spec, &mut doc.places);
    if let (Some((name, ..)), Some(spec)) = (name, spec) {
        doc.agency = Some(Agency {
            name: name.clone(),
            source: cx.file.to_path_buf(),
            manifest: AgencyManifest {
                api_version: API_VERSION.into(),
                kind: "Agency".into(),
                metadata: AgencyMetadata { name },
                spec,
            },
        });
    }
    doc
}

fn decode_spec(cx: &mut Cx, node: &Node, places: &mut AgencyPlaces) -> Option<AgencySpec> {
    let f = cx.fields(node, "spec", SPEC_FIELDS)?;
    let description = f.or(cx, "description", String::new());
    let coordinator_node = f.value("coordinator");
    let coordinator: Option<String> = f.required(cx, "coordinator", "coordinator: lead");
    if let Some(n) = coordinator_node {
        places.coordinator = at(n);
    }
    let mut specialists = Vec::new();
    let mut complete = true;
    if let Some(list) = f.value("specialists") {
        match &list.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    match decode_specialist(cx, item, &format!("spec.specialists[{i}]")) {
                        Some((s, agent_at, role_at)) => {
                            specialists.push(s);
                            places.specialists.push((agent_at, role_at));
                        }
                        None => complete = false,
                    }
                }
            }
            _ => cx.expected(
                list,
                "spec.specialists",
                "a list such as [{agent: coder, role: developer}]",
            ),
        }
    }
    let labels = checked_labels(cx, &f, "labels", "label");
    let capabilities = checked_labels(cx, &f, "capabilities", "capability");
    if labels.is_empty() && capabilities.is_empty() {
        cx.error(
            node,
            "spec",
            "the agency accepts no work: list the task `labels` it takes, or the `capabilities` \
             (`needs:X` labels) it covers",
        );
    }
    let context: Vec<String> = f.or(cx, "context", Vec::new());
    if let Some(Value::Seq(items)) = f.value("context").map(|n| &n.value) {
        for (i, item) in items.iter().enumerate() {
            places.context.push(at(item));
            if let Value::Str(path) = &item.value
                && let Some(problem) = context_path_problem(path)
            {
                cx.error(item, &format!("spec.context[{i}]"), problem);
            }
        }
    }
    let limits = match f.value("limits") {
        None => AgencyLimits::default(),
        Some(n) => match cx.fields(n, "spec.limits", LIMITS_FIELDS) {
            None => AgencyLimits::default(),
            Some(lf) => AgencyLimits {
                concurrency: crate::agent::at_least_one(
                    cx,
                    &lf,
                    "concurrency",
                    "run at most this many executions of the agency's agents at once",
                ),
            },
        },
    };
    let routing = match f.value("routing") {
        None => AgencyRouting::Rule,
        Some(n) => match String::decode(cx, n, "spec.routing").as_deref() {
            Some("rule") | None => AgencyRouting::Rule,
            Some("contract-net") => AgencyRouting::ContractNet,
            Some(other) => {
                cx.error(
                    n,
                    "spec.routing",
                    format!("expected `rule` or `contract-net`, found `{other}`"),
                );
                AgencyRouting::Rule
            }
        },
    };
    let bid_deadline =
        crate::agent::positive_duration(cx, &f, "bid_deadline", default_bid_deadline());
    let policies = match f.value("policies") {
        None => Policies::default(),
        Some(n) => decode_policies(cx, n, places).unwrap_or_default(),
    };
    let budgets = match f.value("budgets") {
        None => AgencyBudgets::default(),
        Some(n) => match cx.fields(n, "spec.budgets", BUDGETS_FIELDS) {
            None => AgencyBudgets::default(),
            Some(bf) => AgencyBudgets {
                per_day: bf
                    .value("per_day")
                    .map(|d| crate::models::decode_budget(cx, d, "spec.budgets.per_day"))
                    .unwrap_or_default(),
                per_tree: bf
                    .value("per_tree")
                    .map(|d| crate::models::decode_budget(cx, d, "spec.budgets.per_tree"))
                    .unwrap_or_default(),
            },
        },
    };
    let escalation_deadline = crate::agent::positive_duration(
        cx,
        &f,
        "escalation_deadline",
        default_escalation_deadline(),
    );
    if !complete {
        return None;
    }
    Some(AgencySpec {
        description,
        coordinator: coordinator?,
        specialists,
        labels,
        capabilities,
        context,
        limits,
        routing,
        bid_deadline,
        policies,
        escalation_deadline,
        budgets,
    })
}

/// A context file must stay inside the repository: relative, without `..`.
fn context_path_problem(path: &str) -> Option<String> {
    let p = Path::new(path);
    if path.trim().is_empty() {
        return Some("the path is empty; name a file of the repository".into());
    }
    if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
        return Some(format!(
            "`{path}` leaves the repository: give a path relative to the repository root, \
             without `..`"
        ));
    }
    None
}

fn decode_specialist(cx: &mut Cx, node: &Node, path: &str) -> Option<(Specialist, At, At)> {
    let f = cx.fields(node, path, SPECIALIST_FIELDS)?;
    let agent_at = f.value("agent").map(at).unwrap_or(at(node));
    let role_at = f.value("role").map(at).unwrap_or(at(node));
    let agent: Option<String> = f.required(cx, "agent", "agent: coder");
    let role: Option<String> = f.required(cx, "role", "role: developer");
    if let (Some(role), Some(n)) = (&role, f.value("role"))
        && !valid_name(role)
    {
        cx.error(
            n,
            &f.path("role"),
            format!("`{role}` is not a valid role: use lowercase letters, digits and dashes"),
        );
    }
    if role.as_deref() == Some(COORDINATOR_ROLE)
        && let Some(n) = f.value("role")
    {
        cx.error(
            n,
            &f.path("role"),
            "`coordinator` is the coordinator's role; name the agent in `spec.coordinator` \
             instead, or give this specialist another role",
        );
    }
    let capabilities = checked_labels(cx, &f, "capabilities", "capability");
    let cost = f.get::<f64>(cx, "cost").unwrap_or(1.0);
    if cost < 0.0
        && let Some(n) = f.value("cost")
    {
        cx.error(n, &f.path("cost"), "the cost estimate must be 0 or more");
    }
    Some((
        Specialist {
            agent: agent?,
            role: role?,
            capabilities,
            cost: cost.max(0.0),
        },
        agent_at,
        role_at,
    ))
}

fn decode_policies(cx: &mut Cx, node: &Node, places: &mut AgencyPlaces) -> Option<Policies> {
    let f = cx.fields(node, "spec.policies", POLICIES_FIELDS)?;
    let approval = f.or(cx, "approval", false);
    let mut handoffs = Vec::new();
    if let Some(list) = f.value("handoffs") {
        match &list.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("spec.policies.handoffs[{i}]");
                    let Some(hf) = cx.fields(item, &path, HANDOFF_FIELDS) else {
                        continue;
                    };
                    let from_at = hf.value("from").map(at).unwrap_or(at(item));
                    let from: Option<String> = hf.required(cx, "from", "from: developer");
                    let to: Option<Vec<String>> = hf.required(cx, "to", "to: [qa]");
                    let to_at = match hf.value("to").map(|n| &n.value) {
                        Some(Value::Seq(targets)) => targets.iter().map(at).collect(),
                        _ => Vec::new(),
                    };
                    if let (Some(from), Some(to)) = (from, to) {
                        handoffs.push(HandoffRule { from, to });
                        places.handoffs.push((from_at, to_at));
                    }
                }
            }
            _ => cx.expected(
                list,
                "spec.policies.handoffs",
                "a list such as [{from: developer, to: [qa]}]",
            ),
        }
    }
    Some(Policies { handoffs, approval })
}

fn checked_labels(cx: &mut Cx, f: &Fields, name: &str, what: &str) -> Vec<String> {
    crate::agent::checked_labels(cx, f, name, what)
}

/// Where an agent's `spec.agency` and `spec.role` are written.
pub(crate) struct AgentRefs<'a> {
    pub file: &'a Path,
    pub agent: &'a str,
    pub agency: Option<(&'a str, (usize, usize))>,
    pub role: Option<(&'a str, (usize, usize))>,
}

impl<'a> AgentRefs<'a> {
    pub(crate) fn of(file: &'a Path, doc: &'a AgentDocument) -> Option<AgentRefs<'a>> {
        let (agent, line, column) = doc.name.as_ref()?;
        let manifest = doc.manifest.as_ref()?;
        Some(AgentRefs {
            file,
            agent,
            agency: manifest
                .spec
                .agency
                .as_deref()
                .map(|a| (a, doc.agency_at.unwrap_or((*line, *column)))),
            role: manifest
                .spec
                .role
                .as_deref()
                .map(|r| (r, doc.role_at.unwrap_or((*line, *column)))),
        })
    }
}

/// The checks across agencies and agents: unique agency names, members that are agents, an
/// agent in one agency at most, handoffs to agencies that exist from roles the agency has,
/// and each agent's `agency:` and `role:` matching the agency that lists it.
pub(crate) fn check_agencies(
    documents: &[AgencyDocument],
    agents: &[AgentRefs],
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut seen: BTreeMap<&str, (&Path, usize, usize)> = BTreeMap::new();
    for doc in documents {
        if let Some((name, line, column)) = &doc.name {
            if let Some((file, l, c)) = seen.get(name.as_str()) {
                diagnostics.push(Diagnostic::new(
                    &doc.file,
                    *line,
                    *column,
                    format!(
                        "metadata.name: the agency name `{name}` is already used at {}:{l}:{c}; \
                         agency names must be unique across the project",
                        file.display()
                    ),
                ));
            } else {
                seen.insert(name, (&doc.file, *line, *column));
            }
        }
    }
    let agent_names: Vec<&str> = agents.iter().map(|a| a.agent).collect();
    let known_agents = || {
        if agent_names.is_empty() {
            "none".to_string()
        } else {
            agent_names.join(", ")
        }
    };
    let known_agencies = seen.keys().copied().collect::<Vec<_>>().join(", ");
    // Which agency (and where) first listed each agent.
    let mut membership: BTreeMap<&str, (&str, &Path, (usize, usize))> = BTreeMap::new();
    for doc in documents {
        let Some(agency) = &doc.agency else {
            continue;
        };
        let spec = agency.spec();
        let mut members: Vec<(&str, (usize, usize), &str)> = vec![(
            &spec.coordinator,
            doc.places.coordinator,
            "spec.coordinator",
        )];
        for (i, s) in spec.specialists.iter().enumerate() {
            let place = doc.places.specialists.get(i).map(|p| p.0).unwrap_or((1, 1));
            members.push((&s.agent, place, "spec.specialists"));
        }
        for (agent, (line, column), path) in members {
            if !agent_names.contains(&agent) {
                diagnostics.push(Diagnostic::new(
                    &doc.file,
                    line,
                    column,
                    format!(
                        "{path}: `{agent}` is not an agent of the project (agents: {}); add \
                         .agentgrid/agents/{agent}.yaml or name an existing agent",
                        known_agents()
                    ),
                ));
                continue;
            }
            match membership.get(agent) {
                Some((other, file, (l, c))) if *other == agency.name.as_str() => {
                    diagnostics.push(Diagnostic::new(
                        &doc.file,
                        line,
                        column,
                        format!(
                            "{path}: `{agent}` is already a member of this agency at \
                             {}:{l}:{c}; an agent holds one role in its agency",
                            file.display()
                        ),
                    ));
                }
                Some((other, file, (l, c))) => {
                    diagnostics.push(Diagnostic::new(
                        &doc.file,
                        line,
                        column,
                        format!(
                            "{path}: `{agent}` is already in the agency `{other}` at \
                             {}:{l}:{c}; an agent belongs to one agency at most: remove it \
                             from one of them or copy it under another name",
                            file.display()
                        ),
                    ));
                }
                None => {
                    membership.insert(agent, (&agency.name, &doc.file, (line, column)));
                }
            }
        }
        let roles: Vec<&str> = agency.members().map(|(_, r)| r).collect();
        for (i, rule) in spec.policies.handoffs.iter().enumerate() {
            let (from_at, to_at) = doc
                .places
                .handoffs
                .get(i)
                .cloned()
                .unwrap_or(((1, 1), Vec::new()));
            if !roles.contains(&rule.from.as_str()) {
                diagnostics.push(Diagnostic::new(
                    &doc.file,
                    from_at.0,
                    from_at.1,
                    format!(
                        "spec.policies.handoffs[{i}].from: `{}` is not a role of this agency \
                         (roles: {}); name one of them",
                        rule.from,
                        roles.join(", ")
                    ),
                ));
            }
            for (j, target) in rule.to.iter().enumerate() {
                if !seen.contains_key(target.as_str()) {
                    let (line, column) = to_at.get(j).copied().unwrap_or(from_at);
                    diagnostics.push(Diagnostic::new(
                        &doc.file,
                        line,
                        column,
                        format!(
                            "spec.policies.handoffs[{i}].to[{j}]: `{target}` is not an agency \
                             of the project (agencies: {known_agencies}); add \
                             .agentgrid/agencies/{target}.yaml or name an existing one"
                        ),
                    ));
                }
            }
        }
    }
    let agency = |name: &str| {
        documents
            .iter()
            .filter_map(|d| d.agency.as_ref())
            .find(|a| a.name == name)
    };
    for refs in agents {
        let listed = membership.get(refs.agent).map(|(a, ..)| *a);
        match (refs.agency, listed) {
            (Some((name, (line, column))), _) if !seen.contains_key(name) => {
                diagnostics.push(Diagnostic::new(
                    refs.file,
                    line,
                    column,
                    format!(
                        "spec.agency: `{name}` is not an agency of the project (agencies: {}); \
                         add .agentgrid/agencies/{name}.yaml or name an existing one",
                        if known_agencies.is_empty() {
                            "none"
                        } else {
                            &known_agencies
                        }
                    ),
                ));
                continue;
            }
            (Some((name, (line, column))), Some(listed)) if name != listed => {
                diagnostics.push(Diagnostic::new(
                    refs.file,
                    line,
                    column,
                    format!(
                        "spec.agency: the agent says it belongs to `{name}`, but the agency \
                         `{listed}` lists it; make the two agree"
                    ),
                ));
                continue;
            }
            (Some((name, (line, column))), None) => {
                diagnostics.push(Diagnostic::new(
                    refs.file,
                    line,
                    column,
                    format!(
                        "spec.agency: the agency `{name}` does not list `{}`; add it to the \
                         agency's `specialists` (with its role) or as its `coordinator`",
                        refs.agent
                    ),
                ));
                continue;
            }
            _ => {}
        }
        let Some((role, (line, column))) = refs.role else {
            continue;
        };
        let Some(member_of) = listed.and_then(agency) else {
            diagnostics.push(Diagnostic::new(
                refs.file,
                line,
                column,
                format!(
                    "spec.role: `{}` is in no agency, so it has no role; add `agency:` and list \
                     the agent in that agency, or remove `role:`",
                    refs.agent
                ),
            ));
            continue;
        };
        let actual = member_of.role_of(refs.agent).unwrap_or(COORDINATOR_ROLE);
        if actual != role {
            let roles: Vec<&str> = member_of.members().map(|(_, r)| r).collect();
            let message = if roles.contains(&role) {
                format!(
                    "spec.role: the agency `{}` gives `{}` the role `{actual}`, not `{role}`; \
                     make the two agree",
                    member_of.name, refs.agent
                )
            } else {
                format!(
                    "spec.role: `{role}` is not a role of the agency `{}` (roles: {}); the \
                     agency gives `{}` the role `{actual}`",
                    member_of.name,
                    roles.join(", "),
                    refs.agent
                )
            };
            diagnostics.push(Diagnostic::new(refs.file, line, column, message));
        }
    }
}
