//! Definitions shared by the tests.

use workflow::{Definition, Outcome, State, StateKind, Target, Transition, ValueType, When};

/// Code → QA → back to code with bugs (at most twice) → a person's approval → land; a
/// rejection sends the work back once.
pub fn review_loop() -> Definition {
    Definition {
        name: "review".into(),
        start: "code".into(),
        blackboard: [("bugs".to_string(), ValueType::Int)].into(),
        states: vec![
            State::new("code", agent("coder"))
                .on(Transition::to("qa").when(When::Succeeded))
                .on(Transition::to("failed").when(When::Failed)),
            State::new("qa", agent("tester"))
                .on(Transition::to("approve").when(When::ScoreAtLeast(0.8)))
                .on(Transition::to("code").when(When::ScoreBelow(0.8)).max(2))
                .on(Transition::to("failed")),
            State::new(
                "approve",
                StateKind::Approval {
                    summary: "ready to land".into(),
                },
            )
            .on(Transition::to("land").when(When::Approved))
            .on(Transition::to("code").when(When::Rejected).max(1))
            .on(Transition::to("failed")),
            State::new("land", StateKind::Land)
                .on(Transition::to("done").when(When::Succeeded))
                .on(Transition::to("failed")),
            end("done", Outcome::Succeeded),
            end("failed", Outcome::Failed),
        ],
    }
}

/// One state of every kind: a parallel fan-out of an agent and a command, a sub-workflow, an
/// approval with a timeout.
pub fn every_kind() -> Definition {
    Definition {
        name: "every".into(),
        start: "fan".into(),
        blackboard: [("note".to_string(), ValueType::String)].into(),
        states: vec![
            State::new(
                "fan",
                StateKind::Parallel {
                    branches: vec!["write".into(), "lint".into()],
                },
            )
            .on(Transition::to("sub").when(When::Succeeded))
            .on(Transition::to("failed")),
            State::new(
                "write",
                StateKind::Agent {
                    agent: "coder".into(),
                    target: Target::Subtask {
                        title: "write".into(),
                    },
                },
            ),
            State::new(
                "lint",
                StateKind::Command {
                    run: vec!["lint".into()],
                },
            ),
            State::new(
                "sub",
                StateKind::Workflow {
                    workflow: "review".into(),
                },
            )
            .on(Transition::to("gate").when(When::Succeeded))
            .on(Transition::to("failed")),
            State::new(
                "gate",
                StateKind::Approval {
                    summary: "ship it?".into(),
                },
            )
            .timeout(3600)
            .on(Transition::to("done").when(When::Approved))
            .on(Transition::to("failed")),
            end("done", Outcome::Succeeded),
            end("failed", Outcome::Failed),
        ],
    }
}

pub fn agent(name: &str) -> StateKind {
    StateKind::Agent {
        agent: name.into(),
        target: Target::Task,
    }
}

pub fn end(name: &str, outcome: Outcome) -> State {
    State::new(name, StateKind::End { outcome })
}
