//! `kind: Workflow` manifests: the shipped example, and each problem reported at its place.

use std::fs;
use std::path::Path;

use manifest::{EXAMPLE_WORKFLOW, load_project, parse_workflows};
use workflow::{Outcome, StateKind, Target, When};

use crate::MINIMAL_AGENT;

const AGENTS: &[&str] = &["coder", "tester"];

fn errors(source: &str) -> Vec<String> {
    match parse_workflows(source, Path::new("w.yaml"), AGENTS) {
        Ok(w) => panic!("expected problems, got {w:?}"),
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

/// A workflow document with `states` (indented YAML under `states:`).
fn workflow(states: &str) -> String {
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {{name: w}}\nspec:\n  start: a\n  states:\n{states}"
    )
}

/// Checks that the only problem is `expected` (a whole `file:line:col: message` line).
fn check(states: &str, expected: &str) {
    assert_eq!(errors(&workflow(states)), [expected]);
}

#[test]
fn the_example_decodes_to_the_review_loop() {
    let w = parse_workflows(EXAMPLE_WORKFLOW, Path::new("review.yaml"), AGENTS).unwrap();
    let def = &w[0].definition;
    assert_eq!(w[0].name, "review");
    assert_eq!(w[0].labels, ["reviewed"]);
    assert_eq!(def.start, "code");
    let names: Vec<_> = def.states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["code", "qa", "tests", "approve", "land", "done", "failed"]
    );
    let qa = def.state("qa").unwrap();
    assert_eq!(
        qa.kind,
        StateKind::Agent {
            agent: "tester".into(),
            target: Target::Task
        }
    );
    assert_eq!(qa.timeout_secs, Some(1800));
    assert_eq!(qa.on[0].when, When::ScoreAtLeast(0.8));
    assert_eq!(qa.on[1].max, Some(3));
    assert_eq!(def.state("land").unwrap().kind, StateKind::Land);
    assert_eq!(
        def.state("done").unwrap().kind,
        StateKind::End {
            outcome: Outcome::Succeeded
        }
    );
}

#[test]
fn every_state_kind_decodes() {
    let source = workflow(
        "    a: {parallel: [b, c], on: [{to: d}]}\n\
         \x20   b: {agent: coder, subtask: Write the parser}\n\
         \x20   c: {run: [make, lint]}\n\
         \x20   d: {workflow: other, on: [{when: failed, to: e}, {to: e}]}\n\
         \x20   e: {end: failed}\n\
         ---\n\
         apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {name: other}\n\
         spec: {start: x, states: {x: {end: succeeded}}}\n",
    );
    let w = parse_workflows(&source, Path::new("w.yaml"), AGENTS).unwrap();
    let def = &w[0].definition;
    assert_eq!(
        def.state("b").unwrap().kind,
        StateKind::Agent {
            agent: "coder".into(),
            target: Target::Subtask {
                title: "Write the parser".into()
            }
        }
    );
    assert_eq!(
        def.state("a").unwrap().kind,
        StateKind::Parallel {
            branches: vec!["b".into(), "c".into()]
        }
    );
    assert_eq!(w[1].name, "other");
}

#[test]
fn a_transition_to_an_unknown_state_is_reported_at_the_transition() {
    check(
        "    a: {agent: coder, on: [{to: b}]}\n",
        "w.yaml:7:28: `b` is not a state of this workflow (states: a)",
    );
}

#[test]
fn an_unreachable_state_is_reported_at_its_name() {
    check(
        "    a: {agent: coder, on: [{to: z}]}\n    y: {agent: coder, on: [{to: z}]}\n    z: {end: succeeded}\n",
        "w.yaml:8:5: no run can reach the state `y` from the start `a`; remove it or add a transition to it",
    );
}

#[test]
fn an_unbounded_loop_is_reported_at_its_closing_transition() {
    check(
        "    a: {agent: coder, on: [{to: b}]}\n    b:\n      agent: tester\n      on:\n        - {when: failed, to: a}\n        - {to: z}\n    z: {end: succeeded}\n",
        "w.yaml:11:11: the loop a → b → a can run forever: give one of its transitions a budget (`max: N`)",
    );
}

#[test]
fn an_unknown_agent_is_reported_at_the_agent() {
    check(
        "    a: {agent: reviewer, on: [{to: z}]}\n    z: {end: succeeded}\n",
        "w.yaml:7:16: no agent is called `reviewer` (agents: coder, tester)",
    );
}

#[test]
fn an_unknown_start_is_reported_at_start() {
    let source = workflow("    b: {end: succeeded}\n");
    let errs = errors(&source);
    assert!(
        errs.contains(&"w.yaml:5:10: `a` is not a state of this workflow (states: b)".to_string()),
        "{errs:?}"
    );
}

#[test]
fn decoding_mistakes_are_all_reported_in_one_pass() {
    let errs = errors(&workflow(
        "    a: {agent: coder, run: [x], on: [{to: z}]}\n    b: {on: [{to: z}]}\n    c: {end: maybe}\n    d: {agent: coder, on: [{when: sometimes, to: z}]}\n    z: {end: succeeded}\n",
    ));
    let joined = errs.join("\n");
    assert!(
        joined.contains("w.yaml:7:8: spec.states.a: a state does one thing; it has agent and run"),
        "{joined}"
    );
    assert!(
        joined.contains("w.yaml:8:8: spec.states.b: a state says what it does with one of"),
        "{joined}"
    );
    assert!(
        joined.contains("w.yaml:9:14: spec.states.c.end: `maybe` is not an outcome"),
        "{joined}"
    );
    assert!(
        joined.contains("w.yaml:10:35: spec.states.d.on[0].when: expected a condition"),
        "{joined}"
    );
}

#[test]
fn sub_workflows_that_start_each_other_are_reported() {
    let source = "apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {name: one}\n\
                  spec: {start: a, states: {a: {workflow: two, on: [{to: z}]}, z: {end: failed}}}\n\
                  ---\n\
                  apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {name: two}\n\
                  spec: {start: a, states: {a: {workflow: one, on: [{to: z}]}, z: {end: failed}}}\n";
    let errs = errors(source);
    assert!(
        errs.contains(&"w.yaml:3:18: the workflows start each other without end: one → two → one; break the circle".to_string()),
        "{errs:?}"
    );
}

#[test]
fn a_project_loads_its_workflows_and_checks_them_against_its_agents() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path().join(".agentgrid");
    fs::create_dir_all(root.join("agents")).unwrap();
    fs::create_dir_all(root.join("workflows")).unwrap();
    for name in ["coder", "tester"] {
        let agent = MINIMAL_AGENT.replace("name: minimal", &format!("name: {name}"));
        fs::write(root.join(format!("agents/{name}.yaml")), agent).unwrap();
    }
    fs::write(root.join("workflows/review.yaml"), EXAMPLE_WORKFLOW).unwrap();
    let project = load_project(&root).unwrap();
    assert_eq!(project.workflow("review").unwrap().definition.start, "code");

    fs::remove_file(root.join("agents/tester.yaml")).unwrap();
    let errs = load_project(&root).unwrap_err().to_string();
    let file = root.join("workflows/review.yaml");
    assert!(
        errs.contains(&format!(
            "{}:21:14: no agent is called `tester` (agents: coder)",
            file.display()
        )),
        "{errs}"
    );
}
