//! Property: a run is the fold of its recorded inputs. Replaying them gives the same instance
//! and the same commands, whatever they are, and a replay resumed from any recorded instance
//! ends where the whole replay does.

use std::collections::BTreeMap;

use proptest::prelude::*;
use workflow::{Definition, Input, Instance, Outcome, replay, step};

use crate::fixtures::{every_kind, review_loop};

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Succeeded), Just(Outcome::Failed)]
}

fn input() -> impl Strategy<Value = Input> {
    let state = prop_oneof![
        Just("code"),
        Just("qa"),
        Just("land"),
        Just("write"),
        Just("lint"),
        Just("sub")
    ];
    prop_oneof![
        Just(Input::Start),
        (0u32..8, state, outcome(), proptest::option::of(0.0f64..1.0)).prop_map(
            |(visit, state, outcome, score)| Input::Ended {
                visit,
                state: state.to_string(),
                outcome,
                score,
                values: BTreeMap::new(),
            }
        ),
        (0u32..8, any::<bool>()).prop_map(|(visit, approved)| Input::Decided {
            visit,
            approved,
            feedback: None
        }),
        (0u32..8).prop_map(|visit| Input::TimedOut { visit }),
    ]
}

fn definition() -> impl Strategy<Value = Definition> {
    prop_oneof![Just(review_loop()), Just(every_kind())]
}

proptest! {
    #[test]
    fn replay_gives_the_same_run(def in definition(), inputs in proptest::collection::vec(input(), 0..40)) {
        let mut instance = Instance::default();
        let mut commands = Vec::new();
        for input in &inputs {
            let (next, c) = step(&def, &instance, input.clone());
            commands.push(c);
            instance = next;
        }
        prop_assert_eq!(&replay(&def, &inputs), &instance);

        // Stepping again from the recorded instances gives the same commands.
        let mut again = Instance::default();
        for (input, c) in inputs.iter().zip(&commands) {
            let (next, c2) = step(&def, &again, input.clone());
            prop_assert_eq!(&c2, c);
            again = next;
        }

        // Resuming from any prefix ends at the same place.
        let cut = inputs.len() / 2;
        let resumed = inputs[cut..].iter().fold(replay(&def, &inputs[..cut]), |i, input| {
            step(&def, &i, input.clone()).0
        });
        prop_assert_eq!(&resumed, &instance);

        // Whatever the inputs, a run finishes at most once and never leaves its end.
        let finishes = commands.iter().flatten().filter(|c| matches!(c, workflow::Command::Finish { .. })).count();
        prop_assert!(finishes <= 1);
        prop_assert_eq!(finishes == 1, instance.is_finished());

        // The instance survives its serialized form, which is how a store keeps it.
        let text = serde_json::to_string(&instance).unwrap();
        let back: Instance = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, instance);
    }
}
