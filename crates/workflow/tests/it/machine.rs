//! The steps of a run, input by input.

use std::collections::BTreeMap;

use workflow::{Command, Input, Instance, Outcome, Status, Target, Value, step};

use crate::fixtures::{every_kind, review_loop};

fn scored(visit: u32, state: &str, score: f64) -> Input {
    Input::Ended {
        visit,
        state: state.into(),
        outcome: Outcome::Succeeded,
        score: Some(score),
        values: BTreeMap::new(),
    }
}

fn decided(visit: u32, approved: bool) -> Input {
    Input::Decided {
        visit,
        approved,
        feedback: None,
    }
}

/// Feeds the inputs in order and returns the instance and the commands of the last step.
fn run(inputs: Vec<Input>) -> (Instance, Vec<Command>) {
    let def = review_loop();
    let mut instance = Instance::default();
    let mut last = Vec::new();
    for input in inputs {
        (instance, last) = step(&def, &instance, input);
    }
    (instance, last)
}

#[test]
fn the_start_runs_the_first_agent_on_the_task() {
    let (instance, commands) = run(vec![Input::Start]);
    assert_eq!(instance.status, Status::Running);
    assert_eq!(instance.position.as_deref(), Some("code"));
    assert_eq!(
        commands,
        vec![Command::RunAgent {
            visit: 1,
            state: "code".into(),
            agent: "coder".into(),
            target: Target::Task,
        }]
    );
}

#[test]
fn the_happy_path_ends_succeeded_after_approval_and_land() {
    let (instance, commands) = run(vec![
        Input::Start,
        Input::ended(1, "code", Outcome::Succeeded),
        scored(2, "qa", 0.9),
        decided(3, true),
        Input::ended(4, "land", Outcome::Succeeded),
    ]);
    assert_eq!(instance.outcome(), Some(Outcome::Succeeded));
    assert_eq!(instance.position.as_deref(), Some("done"));
    assert_eq!(
        commands,
        vec![Command::Finish {
            outcome: Outcome::Succeeded
        }]
    );
}

#[test]
fn a_low_score_goes_back_to_code_until_the_budget_is_spent() {
    let mut inputs = vec![Input::Start];
    let mut visit = 1;
    // Two trips back are allowed; the third low score finds the budget spent and falls
    // through to the catch-all transition.
    for _ in 0..3 {
        inputs.push(Input::ended(visit, "code", Outcome::Succeeded));
        inputs.push(scored(visit + 1, "qa", 0.2));
        visit += 2;
    }
    let (instance, _) = run(inputs);
    assert_eq!(instance.outcome(), Some(Outcome::Failed));
    assert_eq!(instance.taken.get("qa#1"), Some(&2));
    let codes = instance
        .history
        .iter()
        .filter(|e| e.state == "code" && e.note == "entered")
        .count();
    assert_eq!(codes, 3);
}

#[test]
fn a_rejection_sends_the_work_back_once() {
    let (instance, commands) = run(vec![
        Input::Start,
        Input::ended(1, "code", Outcome::Succeeded),
        scored(2, "qa", 1.0),
        Input::Decided {
            visit: 3,
            approved: false,
            feedback: Some("name the flag --dry-run".into()),
        },
    ]);
    assert_eq!(instance.position.as_deref(), Some("code"));
    assert!(matches!(commands[0], Command::RunAgent { visit: 4, .. }));
    assert!(
        instance
            .history
            .iter()
            .any(|e| e.note.contains("rejected: name the flag --dry-run"))
    );
}

#[test]
fn an_input_for_a_visit_that_is_over_changes_nothing() {
    let (before, _) = run(vec![
        Input::Start,
        Input::ended(1, "code", Outcome::Succeeded),
    ]);
    let def = review_loop();
    for stale in [
        Input::ended(1, "code", Outcome::Failed),
        Input::ended(2, "code", Outcome::Failed),
        decided(2, true),
        Input::TimedOut { visit: 2 },
        Input::Start,
    ] {
        let (after, commands) = step(&def, &before, stale.clone());
        assert_eq!(after, before, "{stale:?}");
        assert!(commands.is_empty(), "{stale:?}");
    }
}

#[test]
fn a_finished_run_takes_no_more_inputs() {
    let (done, _) = run(vec![Input::Start, Input::ended(1, "code", Outcome::Failed)]);
    assert_eq!(done.outcome(), Some(Outcome::Failed));
    let (after, commands) = step(&review_loop(), &done, Input::Start);
    assert_eq!(after, done);
    assert!(commands.is_empty());
}

#[test]
fn values_of_the_declared_type_reach_the_blackboard_and_others_are_refused() {
    let def = review_loop();
    let (started, _) = step(&def, &Instance::default(), Input::Start);
    let values: BTreeMap<String, Value> = [
        ("bugs".to_string(), Value::Int(3)),
        ("colour".to_string(), Value::String("red".into())),
    ]
    .into();
    let (next, _) = step(
        &def,
        &started,
        Input::Ended {
            visit: 1,
            state: "code".into(),
            outcome: Outcome::Succeeded,
            score: None,
            values,
        },
    );
    assert_eq!(next.blackboard.get("bugs"), Some(&Value::Int(3)));
    assert!(!next.blackboard.contains_key("colour"));
    assert!(
        next.history
            .iter()
            .any(|e| e.note.contains("refused colour"))
    );

    let wrong: BTreeMap<String, Value> = [("bugs".to_string(), Value::Bool(true))].into();
    let (qa, _) = step(
        &def,
        &next,
        Input::Ended {
            visit: 2,
            state: "qa".into(),
            outcome: Outcome::Succeeded,
            score: Some(0.1),
            values: wrong,
        },
    );
    assert_eq!(qa.blackboard.get("bugs"), Some(&Value::Int(3)));
    assert!(qa.history.iter().any(|e| e.note.contains("is of type int")));
}

#[test]
fn a_parallel_state_joins_when_every_branch_ended() {
    let def = every_kind();
    let (fan, commands) = step(&def, &Instance::default(), Input::Start);
    assert_eq!(commands.len(), 2);
    assert!(
        matches!(&commands[0], Command::RunAgent { state, target: Target::Subtask { .. }, .. } if state == "write")
    );
    assert!(matches!(&commands[1], Command::RunCommand { state, .. } if state == "lint"));

    let (half, commands) = step(&def, &fan, Input::ended(1, "lint", Outcome::Succeeded));
    assert!(commands.is_empty());
    assert_eq!(half.position.as_deref(), Some("fan"));
    // The same branch twice is taken once.
    let (again, _) = step(&def, &half, Input::ended(1, "lint", Outcome::Failed));
    assert_eq!(again, half);

    let (sub, commands) = step(&def, &half, Input::ended(1, "write", Outcome::Succeeded));
    assert_eq!(sub.position.as_deref(), Some("sub"));
    assert_eq!(
        commands,
        vec![Command::StartWorkflow {
            visit: 2,
            state: "sub".into(),
            workflow: "review".into()
        }]
    );
}

#[test]
fn a_failed_branch_fails_the_join() {
    let def = every_kind();
    let (fan, _) = step(&def, &Instance::default(), Input::Start);
    let (half, _) = step(&def, &fan, Input::ended(1, "lint", Outcome::Failed));
    let (end, commands) = step(&def, &half, Input::ended(1, "write", Outcome::Succeeded));
    assert_eq!(end.outcome(), Some(Outcome::Failed));
    assert_eq!(
        commands,
        vec![Command::Finish {
            outcome: Outcome::Failed
        }]
    );
}

#[test]
fn a_timeout_cancels_the_state_and_takes_the_failure_transition() {
    let def = every_kind();
    let mut instance = Instance::default();
    for input in [
        Input::Start,
        Input::ended(1, "lint", Outcome::Succeeded),
        Input::ended(1, "write", Outcome::Succeeded),
    ] {
        instance = step(&def, &instance, input).0;
    }
    let (gate, commands) = step(&def, &instance, Input::ended(2, "sub", Outcome::Succeeded));
    assert_eq!(
        commands,
        vec![
            Command::RequestApproval {
                visit: 3,
                state: "gate".into(),
                summary: "ship it?".into()
            },
            Command::ArmTimer {
                visit: 3,
                state: "gate".into(),
                secs: 3600
            },
        ]
    );
    let (end, commands) = step(&def, &gate, Input::TimedOut { visit: 3 });
    assert_eq!(end.outcome(), Some(Outcome::Failed));
    assert_eq!(
        commands,
        vec![
            Command::Cancel {
                visit: 3,
                state: "gate".into()
            },
            Command::Finish {
                outcome: Outcome::Failed
            }
        ]
    );
}

#[test]
fn a_state_without_a_timeout_ignores_a_timer() {
    let (instance, _) = run(vec![Input::Start]);
    let (after, commands) = step(&review_loop(), &instance, Input::TimedOut { visit: 1 });
    assert_eq!(after, instance);
    assert!(commands.is_empty());
}

#[test]
fn awaiting_names_what_the_current_visit_waits_for() {
    let def = every_kind();
    let (fan, started) = step(&def, &Instance::default(), Input::Start);
    assert_eq!(fan.awaiting(&def), started);
    let (half, _) = step(&def, &fan, Input::ended(1, "write", Outcome::Succeeded));
    assert_eq!(half.awaiting(&def), vec![started[1].clone()]);
    assert!(Instance::default().awaiting(&def).is_empty());
}

#[test]
fn an_approval_lands_the_work() {
    let (instance, commands) = run(vec![
        Input::Start,
        Input::ended(1, "code", Outcome::Succeeded),
        scored(2, "qa", 0.9),
        decided(3, true),
    ]);
    assert_eq!(instance.position.as_deref(), Some("land"));
    assert_eq!(
        commands,
        vec![Command::Land {
            visit: 4,
            state: "land".into()
        }]
    );
}

fn set(visit: u32, state: &str, key: &str, value: Value) -> Input {
    Input::Set {
        visit,
        state: state.into(),
        key: key.into(),
        value,
    }
}

#[test]
fn the_running_agent_state_writes_the_blackboard_and_the_run_stays_where_it_is() {
    let (qa, _) = run(vec![
        Input::Start,
        Input::ended(1, "code", Outcome::Succeeded),
    ]);
    assert_eq!(qa.position.as_deref(), Some("qa"));
    let def = review_loop();
    let (next, commands) = step(&def, &qa, set(2, "qa", "bugs", Value::Int(1)));
    assert_eq!(commands, vec![]);
    assert_eq!(next.position.as_deref(), Some("qa"));
    assert_eq!(next.visit, 2);
    assert_eq!(next.blackboard.get("bugs"), Some(&Value::Int(1)));
    assert_eq!(next.history.last().unwrap().note, "set bugs = 1");

    // A visit that is over, another state, an undeclared key and a wrong type change nothing.
    for input in [
        set(1, "code", "bugs", Value::Int(2)),
        set(2, "code", "bugs", Value::Int(2)),
        set(2, "qa", "colour", Value::String("red".into())),
        set(2, "qa", "bugs", Value::Bool(true)),
    ] {
        assert_eq!(step(&def, &next, input.clone()).0, next, "{input:?}");
    }
}

#[test]
fn only_declared_keys_of_their_type_and_size_pass_the_check() {
    let def = review_loop();
    assert_eq!(workflow::check_value(&def, "bugs", &Value::Int(0)), Ok(()));
    assert_eq!(
        workflow::check_value(&def, "bugs", &Value::String("1".into())),
        Err("the blackboard's `bugs` is of type int, not string".to_string())
    );
    assert_eq!(
        workflow::check_value(&def, "colour", &Value::Int(1)),
        Err("the workflow `review` has no blackboard key `colour` (keys: bugs)".to_string())
    );
    let mut def = def;
    def.blackboard
        .insert("notes".into(), workflow::ValueType::String);
    let long = "x".repeat(workflow::MAX_STRING_CHARS + 1);
    assert_eq!(
        workflow::check_value(&def, "notes", &Value::String(long)),
        Err(format!(
            "the value of `notes` is {} characters long; at most {} are kept",
            workflow::MAX_STRING_CHARS + 1,
            workflow::MAX_STRING_CHARS
        ))
    );
    assert_eq!(
        Value::parse(workflow::ValueType::Int, "12"),
        Ok(Value::Int(12))
    );
    assert_eq!(
        Value::parse(workflow::ValueType::Int, "many"),
        Err("`many` is not an int".to_string())
    );
    assert_eq!(
        Value::parse(workflow::ValueType::Bool, "yes"),
        Err("`yes` is not a bool: say true or false".to_string())
    );
}
