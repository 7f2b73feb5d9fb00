//! The checks of a definition: one test per kind of problem, and none for the shipped shapes.

use workflow::{Definition, Known, Problem, State, StateKind, Transition, When, Where, check};

use crate::fixtures::{agent, end, every_kind, review_loop};

fn known() -> Known {
    Known {
        agents: Some(["coder".to_string(), "tester".to_string()].into()),
        workflows: Some(["review".to_string(), "every".to_string()].into()),
    }
}

/// The problems of `def`, as (place, message) pairs.
fn problems(def: &Definition) -> Vec<(Where, String)> {
    check(def, &known())
        .into_iter()
        .map(|Problem { at, message }| (at, message))
        .collect()
}

/// Checks that `def` has exactly one problem, at `at`, whose message contains `needle`.
fn expect_one(def: Definition, at: Where, needle: &str) {
    let found = problems(&def);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, at);
    assert!(found[0].1.contains(needle), "{}", found[0].1);
}

fn small(states: Vec<State>) -> Definition {
    Definition {
        name: "small".into(),
        start: "a".into(),
        blackboard: Default::default(),
        states,
    }
}

#[test]
fn the_shipped_shapes_have_no_problems() {
    assert_eq!(problems(&review_loop()), vec![]);
    assert_eq!(problems(&every_kind()), vec![]);
}

#[test]
fn an_unknown_start_is_reported() {
    let mut def = review_loop();
    def.start = "kode".into();
    let found = problems(&def);
    assert_eq!(found[0].0, Where::Start);
    assert!(
        found[0].1.contains("`kode` is not a state"),
        "{}",
        found[0].1
    );
}

#[test]
fn a_transition_to_an_unknown_state_is_reported() {
    let def = small(vec![
        State::new("a", agent("coder")).on(Transition::to("b")),
        end("c", workflow::Outcome::Succeeded),
    ]);
    let found = problems(&def);
    assert!(found.contains(&(
        Where::Transition("a".into(), 0),
        "`b` is not a state of this workflow (states: a, c)".into()
    )));
}

#[test]
fn an_unreachable_state_is_reported() {
    expect_one(
        small(vec![
            State::new("a", agent("coder")).on(Transition::to("done")),
            State::new("island", agent("coder")).on(Transition::to("done")),
            end("done", workflow::Outcome::Succeeded),
        ]),
        Where::State("island".into()),
        "no run can reach the state `island`",
    );
}

#[test]
fn a_loop_without_a_budget_is_reported_at_its_closing_transition() {
    expect_one(
        small(vec![
            State::new("a", agent("coder")).on(Transition::to("b")),
            State::new("b", agent("tester"))
                .on(Transition::to("a").when(When::Failed))
                .on(Transition::to("done")),
            end("done", workflow::Outcome::Succeeded),
        ]),
        Where::Transition("b".into(), 0),
        "the loop a → b → a can run forever",
    );
}

#[test]
fn a_self_loop_without_a_budget_is_reported() {
    expect_one(
        small(vec![
            State::new("a", agent("coder"))
                .on(Transition::to("a").when(When::Failed))
                .on(Transition::to("done")),
            end("done", workflow::Outcome::Succeeded),
        ]),
        Where::Transition("a".into(), 0),
        "the loop a → a",
    );
}

#[test]
fn an_unknown_agent_is_reported() {
    expect_one(
        small(vec![
            State::new("a", agent("reviewer")).on(Transition::to("done")),
            end("done", workflow::Outcome::Succeeded),
        ]),
        Where::Names("a".into()),
        "no agent is called `reviewer` (agents: coder, tester)",
    );
}

#[test]
fn an_unknown_or_recursive_sub_workflow_is_reported() {
    for (name, needle) in [
        ("nope", "no workflow is called `nope`"),
        ("small", "would start itself"),
    ] {
        expect_one(
            small(vec![
                State::new(
                    "a",
                    StateKind::Workflow {
                        workflow: name.into(),
                    },
                )
                .on(Transition::to("done")),
                end("done", workflow::Outcome::Succeeded),
            ]),
            Where::Names("a".into()),
            needle,
        );
    }
}

#[test]
fn a_decision_on_a_state_that_is_no_approval_is_reported() {
    expect_one(
        small(vec![
            State::new("a", agent("coder")).on(Transition::to("done").when(When::Approved)),
            end("done", workflow::Outcome::Succeeded),
        ]),
        Where::Transition("a".into(), 0),
        "is not an approval state",
    );
}

#[test]
fn a_timeout_transition_without_a_timeout_is_reported() {
    expect_one(
        small(vec![
            State::new("a", agent("coder")).on(Transition::to("done").when(When::TimedOut)),
            end("done", workflow::Outcome::Succeeded),
        ]),
        Where::Transition("a".into(), 0),
        "has no timeout",
    );
}

#[test]
fn a_dead_end_and_an_end_with_transitions_are_reported() {
    let found = problems(&small(vec![
        State::new("a", agent("coder")),
        end("done", workflow::Outcome::Succeeded).on(Transition::to("a")),
    ]));
    assert!(
        found
            .iter()
            .any(|(at, m)| *at == Where::State("a".into()) && m.contains("has no transitions")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|(at, m)| *at == Where::Transition("done".into(), 0)
                && m.contains("an end state has no transitions")),
        "{found:#?}"
    );
}

#[test]
fn a_branch_must_be_an_agent_or_command_state() {
    let found = problems(&small(vec![
        State::new(
            "a",
            StateKind::Parallel {
                branches: vec!["done".into(), "ghost".into()],
            },
        )
        .on(Transition::to("done")),
        end("done", workflow::Outcome::Succeeded),
    ]));
    assert!(found.contains(&(
        Where::Branch("a".into(), 0),
        "the branch `done` must be an agent or command state".into()
    )));
    assert!(
        found
            .iter()
            .any(|(at, m)| *at == Where::Branch("a".into(), 1) && m.contains("`ghost`"))
    );
}

#[test]
fn a_duplicate_state_is_reported() {
    let found = problems(&small(vec![
        State::new("a", agent("coder")).on(Transition::to("done")),
        end("done", workflow::Outcome::Succeeded),
        end("done", workflow::Outcome::Failed),
    ]));
    assert!(
        found
            .iter()
            .any(|(at, m)| *at == Where::State("done".into()) && m.contains("defined twice"))
    );
}
