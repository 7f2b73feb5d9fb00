//! `kind: Workflow` manifests (`.agentgrid/workflows/*.yaml`): decoded into a
//! [`workflow::Definition`], with every problem of the graph reported at its line.
//!
//! ```yaml
//! apiVersion: agentgrid.dev/v1
//! kind: Workflow
//! metadata: {name: review}
//! spec:
//!   labels: [reviewed]         # a new task with one of these labels starts the workflow
//!   start: code
//!   blackboard: {bugs: int}
//!   states:
//!     code:
//!       agent: coder
//!       on: [{when: succeeded, to: qa}, {to: failed}]
//!     qa:
//!       agent: tester
//!       on:
//!         - {when: {score_at_least: 0.8}, to: approve}
//!         - {to: code, max: 3}
//!     approve:
//!       approval: "Ready to land?"
//!       timeout: 7d
//!       on: [{when: approved, to: land}, {when: rejected, to: code, max: 2}, {to: failed}]
//!     land: {land: true, on: [{when: succeeded, to: done}, {to: failed}]}
//!     done: {end: succeeded}
//!     failed: {end: failed}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use domain::Duration;
use workflow::{
    Definition, Known, Outcome, State, StateKind, Target, Transition, ValueType, When, Where,
};

use crate::Diagnostic;
use crate::agent::{MANIFEST_FIELDS, check_header, metadata_name};
use crate::decode::{Cx, Decode, Fields};
use crate::yaml::{Node, Value};

/// The example the README shows: code, QA until clean, a person's approval, land.
pub const EXAMPLE_WORKFLOW: &str = include_str!("../workflows/review.yaml");

/// One workflow and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub source: PathBuf,
    /// The labels that start the workflow on a new task.
    pub labels: Vec<String>,
    pub definition: Definition,
}

const SPEC_FIELDS: &[&str] = &["description", "labels", "start", "blackboard", "states"];
const STATE_FIELDS: &[&str] = &[
    "agent", "subtask", "run", "approval", "parallel", "workflow", "land", "end", "timeout", "on",
];
const KIND_FIELDS: &[&str] = &[
    "agent", "run", "approval", "parallel", "workflow", "land", "end",
];
const TRANSITION_FIELDS: &[&str] = &["when", "to", "max"];

/// A decoded workflow document: the workflow when it decoded, and where each part of it is
/// written, for the checks of the graph that come after decoding.
pub(crate) struct WorkflowDocument {
    pub file: PathBuf,
    pub name: Option<(String, usize, usize)>,
    pub workflow: Option<Workflow>,
    places: BTreeMap<Where, (usize, usize)>,
    /// Where `spec.labels` is written, when it is.
    labels_at: Option<(usize, usize)>,
}

/// Reads the workflow documents of one file.
pub(crate) fn workflows_from(
    source: &str,
    file: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<WorkflowDocument> {
    crate::decode::each_document(source, file, diagnostics, decode_workflow)
}

/// The checks across a project's workflows: unique names, the graph of each against the
/// agents and workflows there are, and sub-workflows that start each other in a circle.
pub(crate) fn check_workflows(
    documents: &[WorkflowDocument],
    agents: BTreeSet<String>,
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
                        "metadata.name: the workflow name `{name}` is already used at {}:{l}:{c}; \
                         workflow names must be unique across the project",
                        file.display()
                    ),
                ));
            } else {
                seen.insert(name, (&doc.file, *line, *column));
            }
        }
    }
    let known = Known {
        agents: Some(agents),
        workflows: Some(seen.keys().map(|n| n.to_string()).collect()),
    };
    let starts = |w: &Workflow| -> Vec<String> {
        w.definition
            .states
            .iter()
            .filter_map(|s| match &s.kind {
                StateKind::Workflow { workflow } => Some(workflow.clone()),
                _ => None,
            })
            .collect()
    };
    let graph: BTreeMap<String, Vec<String>> = documents
        .iter()
        .filter_map(|d| d.workflow.as_ref())
        .map(|w| (w.name.clone(), starts(w)))
        .collect();
    for doc in documents {
        let Some(w) = &doc.workflow else {
            continue;
        };
        for problem in workflow::check(&w.definition, &known) {
            let (line, column) = doc.places.get(&problem.at).copied().unwrap_or((1, 1));
            diagnostics.push(Diagnostic::new(&doc.file, line, column, problem.message));
        }
        if let Some(path) = circle_from(&w.name, &graph) {
            let (line, column) = doc.name.as_ref().map(|n| (n.1, n.2)).unwrap_or((1, 1));
            diagnostics.push(Diagnostic::new(
                &doc.file,
                line,
                column,
                format!(
                    "the workflows start each other without end: {}; break the circle",
                    path.join(" → ")
                ),
            ));
        }
    }
}

/// Refuses a workflow that labels start and that lands (itself or through a sub-workflow)
/// in a project whose approvals policy asks a person about the same tasks once done
/// (`approvals.before_land`, or one of the workflow's labels in `require_labels`). The
/// workflow's agent state makes the task done, so the policy asks about it, and while that
/// approval is pending the workflow's land is refused (a task waiting for an approval does
/// not land), failing the run; with `approvals.land_after` the approval then lands the task a
/// second way.
pub(crate) fn check_policy_lands(
    documents: &[WorkflowDocument],
    approvals: &crate::config::Approvals,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let by_name: BTreeMap<&str, &Workflow> = documents
        .iter()
        .filter_map(|d| d.workflow.as_ref())
        .map(|w| (w.name.as_str(), w))
        .collect();
    for doc in documents {
        let Some(w) = &doc.workflow else {
            continue;
        };
        let asked: Vec<&String> = w
            .labels
            .iter()
            .filter(|l| approvals.before_land || approvals.require_labels.contains(l))
            .collect();
        if asked.is_empty() {
            continue;
        }
        let Some(landing) = landing_state(&w.name, &by_name) else {
            continue;
        };
        let policy = if approvals.before_land {
            "`approvals.before_land: true`".to_string()
        } else {
            let names: Vec<String> = asked.iter().map(|l| format!("`{l}`")).collect();
            format!("`approvals.require_labels` ({})", names.join(", "))
        };
        let twice = if approvals.land_after {
            ", and `land_after` lands the task a second way once the person approves"
        } else {
            ""
        };
        diagnostics.push(Diagnostic::new(
            &doc.file,
            doc.labels_at.map_or(1, |at| at.0),
            doc.labels_at.map_or(1, |at| at.1),
            format!(
                "labels: a task these labels start `{}` on is landed by its state {landing}, but \
                 config.yaml's {policy} makes the same task, once done, wait for a person's \
                 approval, which refuses the workflow's land and fails the run{twice}. Decide \
                 in one place: take the label out of the approvals policy (the workflow's own \
                 approval state asks the person), or remove the land state from the workflow",
                w.name
            ),
        ));
    }
}

/// The first land state a workflow reaches, itself or through the sub-workflows it starts
/// (`` `land` `` or `` `land` of `deploy` ``).
fn landing_state(name: &str, by_name: &BTreeMap<&str, &Workflow>) -> Option<String> {
    let mut todo = vec![name.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(next) = todo.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        let Some(w) = by_name.get(next.as_str()) else {
            continue;
        };
        for state in &w.definition.states {
            match &state.kind {
                StateKind::Land if next == name => return Some(format!("`{}`", state.name)),
                StateKind::Land => {
                    return Some(format!("`{}` of the sub-workflow `{next}`", state.name));
                }
                StateKind::Workflow { workflow } => todo.push(workflow.clone()),
                _ => {}
            }
        }
    }
    None
}

/// A path of sub-workflow starts from `name` back to itself, longer than one step (a workflow
/// that starts itself is reported by its own check).
fn circle_from(name: &str, graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    let mut todo: Vec<Vec<String>> = graph
        .get(name)?
        .iter()
        .filter(|n| *n != name)
        .map(|n| vec![name.to_string(), n.clone()])
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(path) = todo.pop() {
        let last = path.last().expect("a path is never empty").clone();
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in graph.get(&last).into_iter().flatten() {
            let mut longer = path.clone();
            longer.push(next.clone());
            if next == name {
                return Some(longer);
            }
            todo.push(longer);
        }
    }
    None
}

fn decode_workflow(cx: &mut Cx, node: &Node) -> WorkflowDocument {
    let mut doc = WorkflowDocument {
        file: cx.file.to_path_buf(),
        name: None,
        workflow: None,
        places: BTreeMap::new(),
        labels_at: None,
    };
    let Some(f) = cx.fields(node, "", MANIFEST_FIELDS) else {
        return doc;
    };
    if !check_header(
        cx,
        &f,
        "Workflow",
        "workflow files (.agentgrid/workflows/) hold `kind: Workflow`; agents go in .agentgrid/agents/",
    ) {
        return doc;
    }
    let name = metadata_name(cx, &f, &["name", "labels"], "workflow", "review");
    doc.name = name.clone();
    let Some(spec) = f.value("spec") else {
        f.missing(cx, "spec", "spec: {start: code, states: {...}}");
        return doc;
    };
    let Some(s) = cx.fields(spec, "spec", SPEC_FIELDS) else {
        return doc;
    };
    let labels: Vec<String> = s.or(cx, "labels", Vec::new());
    doc.labels_at = s.value("labels").map(|n| (n.line, n.column));
    let blackboard = decode_blackboard(cx, &s);
    let start: Option<String> = s.required(cx, "start", "start: code");
    if let Some(n) = s.value("start") {
        doc.places.insert(Where::Start, (n.line, n.column));
    }
    let states = match s.value("states") {
        Some(n) => decode_states(cx, n, &mut doc.places),
        None => {
            s.missing(
                cx,
                "states",
                "states: {code: {agent: coder, on: [{to: done}]}}",
            );
            None
        }
    };
    if let (Some((name, ..)), Some(start), Some(states)) = (name, start, states) {
        doc.workflow = Some(Workflow {
            name: name.clone(),
            source: cx.file.to_path_buf(),
            labels,
            definition: Definition {
                name,
                start,
                blackboard,
                states,
            },
        });
    }
    doc
}

/// The most keys a workflow's blackboard declares.
pub const MAX_BLACKBOARD_KEYS: usize = 32;

fn decode_blackboard(cx: &mut Cx, s: &Fields) -> BTreeMap<String, ValueType> {
    let types: BTreeMap<String, String> = s.or(cx, "blackboard", BTreeMap::new());
    let mut out = BTreeMap::new();
    // Agents write the blackboard: the number of its keys and their length bound what a
    // run can be made to hold.
    if types.len() > MAX_BLACKBOARD_KEYS {
        let at = s.value("blackboard").expect("decoded from it");
        cx.error(
            at,
            "spec.blackboard",
            format!(
                "{} keys; a blackboard has at most {MAX_BLACKBOARD_KEYS}",
                types.len()
            ),
        );
    }
    for (key, ty) in types {
        if key.chars().count() > workflow::MAX_KEY_CHARS {
            let at = s.value("blackboard").expect("decoded from it");
            cx.error(
                at,
                "spec.blackboard",
                format!(
                    "a key is at most {} characters long; shorten `{}…`",
                    workflow::MAX_KEY_CHARS,
                    key.chars().take(20).collect::<String>()
                ),
            );
            continue;
        }
        let ty = match ty.as_str() {
            "string" => ValueType::String,
            "int" => ValueType::Int,
            "bool" => ValueType::Bool,
            other => {
                let at = s.value("blackboard").expect("decoded from it");
                cx.error(
                    at,
                    &format!("spec.blackboard.{key}"),
                    format!("`{other}` is not a type; use string, int or bool"),
                );
                continue;
            }
        };
        out.insert(key, ty);
    }
    out
}

/// The states, in the order written; `None` when the node is not a mapping of them.
fn decode_states(
    cx: &mut Cx,
    node: &Node,
    places: &mut BTreeMap<Where, (usize, usize)>,
) -> Option<Vec<State>> {
    let Value::Map(entries) = &node.value else {
        cx.expected(node, "spec.states", "a mapping of state names to states");
        return None;
    };
    // A state that does not decode leaves the whole graph unchecked: its absence would only be
    // reported again as unknown and unreachable states.
    let mut states = Vec::new();
    let mut complete = true;
    for (key, value) in entries {
        let Some(name) = key.scalar_text(cx.source) else {
            cx.expected(key, "spec.states", "a state name");
            continue;
        };
        places.insert(Where::State(name.clone()), (key.line, key.column));
        match decode_state(cx, value, &name, places) {
            Some(state) => states.push(state),
            None => complete = false,
        }
    }
    complete.then_some(states)
}

fn decode_state(
    cx: &mut Cx,
    node: &Node,
    name: &str,
    places: &mut BTreeMap<Where, (usize, usize)>,
) -> Option<State> {
    let path = format!("spec.states.{name}");
    let f = cx.fields(node, &path, STATE_FIELDS)?;
    let given: Vec<&str> = KIND_FIELDS
        .iter()
        .copied()
        .filter(|k| f.key(k).is_some())
        .collect();
    if given.len() != 1 {
        let message = if given.is_empty() {
            format!(
                "a state says what it does with one of {}",
                KIND_FIELDS.join(", ")
            )
        } else {
            format!("a state does one thing; it has {}", given.join(" and "))
        };
        cx.error(node, &path, message);
        return None;
    }
    let field = given[0];
    let at = f.value(field).unwrap_or(node);
    places.insert(Where::Names(name.to_string()), (at.line, at.column));
    if f.key("subtask").is_some() && field != "agent" {
        cx.error(f.key("subtask")?, &path, "`subtask` goes with `agent` only");
    }
    let kind = match field {
        "agent" => {
            let agent: String = f.required(cx, "agent", "agent: coder")?;
            let target = match f.get::<String>(cx, "subtask") {
                Some(title) => Target::Subtask { title },
                None => Target::Task,
            };
            StateKind::Agent { agent, target }
        }
        "run" => StateKind::Command {
            run: f.required(cx, "run", "run: [make, test]")?,
        },
        "approval" => StateKind::Approval {
            summary: f.required(cx, "approval", "approval: \"Ready to land?\"")?,
        },
        "parallel" => {
            let branches: Vec<String> = f.required(cx, "parallel", "parallel: [write, lint]")?;
            if let Some(Value::Seq(items)) = f.value("parallel").map(|n| &n.value) {
                for (i, item) in items.iter().enumerate() {
                    places.insert(Where::Branch(name.to_string(), i), (item.line, item.column));
                }
            }
            StateKind::Parallel { branches }
        }
        "workflow" => StateKind::Workflow {
            workflow: f.required(cx, "workflow", "workflow: review")?,
        },
        "land" => {
            if f.get::<bool>(cx, "land") != Some(true) {
                cx.error(at, &f.path("land"), "write `land: true` for a land state");
                return None;
            }
            StateKind::Land
        }
        _ => {
            let outcome: String = f.required(cx, "end", "end: succeeded")?;
            let outcome = match outcome.as_str() {
                "succeeded" => Outcome::Succeeded,
                "failed" => Outcome::Failed,
                other => {
                    cx.error(
                        at,
                        &f.path("end"),
                        format!("`{other}` is not an outcome; use succeeded or failed"),
                    );
                    return None;
                }
            };
            StateKind::End { outcome }
        }
    };
    let timeout_secs = f
        .get::<Duration>(cx, "timeout")
        .map(|d| d.as_millis().div_ceil(1000));
    let mut on = Vec::new();
    if let Some(list) = f.value("on") {
        match &list.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    places.insert(
                        Where::Transition(name.to_string(), i),
                        (item.line, item.column),
                    );
                    match decode_transition(cx, item, &format!("{path}.on[{i}]")) {
                        Some(t) => on.push(t),
                        None => return None,
                    }
                }
            }
            _ => cx.expected(
                list,
                &f.path("on"),
                "a list of transitions such as [{to: done}]",
            ),
        }
    }
    Some(State {
        name: name.to_string(),
        kind,
        timeout_secs,
        on,
    })
}

fn decode_transition(cx: &mut Cx, node: &Node, path: &str) -> Option<Transition> {
    let f = cx.fields(node, path, TRANSITION_FIELDS)?;
    let to: String = f.required(cx, "to", "to: done")?;
    let max: Option<u32> = f.get(cx, "max");
    let when = match f.value("when") {
        None => When::Always,
        Some(n) => When::decode(cx, n, &f.path("when"))?,
    };
    Some(Transition { to, when, max })
}

const CONDITIONS: &str =
    "succeeded, failed, timed_out, approved, rejected, {score_at_least: N} or {score_below: N}";

impl Decode for When {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        if let Value::Map(entries) = &node.value
            && entries.len() == 1
        {
            let f = cx.fields(node, path, &["score_at_least", "score_below"])?;
            if let Some(t) = f.get::<f64>(cx, "score_at_least") {
                return Some(When::ScoreAtLeast(t));
            }
            return f.get::<f64>(cx, "score_below").map(When::ScoreBelow);
        }
        let text = node.scalar_text(cx.source);
        let when = match text.as_deref() {
            Some("always") => When::Always,
            Some("succeeded") => When::Succeeded,
            Some("failed") => When::Failed,
            Some("timed_out") => When::TimedOut,
            Some("approved") => When::Approved,
            Some("rejected") => When::Rejected,
            _ => {
                cx.expected(node, path, &format!("a condition: {CONDITIONS}"));
                return None;
            }
        };
        Some(when)
    }
}
