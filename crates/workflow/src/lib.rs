//! Durable workflow machines: a workflow's definition, the recorded state of one running
//! instance, and the pure step that turns an input into the next state and the commands to carry
//! out.
//!
//! A workflow (`kind: Workflow`) is a graph of named states. A state runs an agent on the task
//! (or on a sub-task), runs a command, waits for a person's approval, fans out into branches that
//! run at once and joins them, starts a sub-workflow, or ends the instance. Transitions leave a
//! state on its outcome (succeeded, failed, timed out), on a score threshold or on the approval
//! decision; each may carry a budget (`max`), the number of times it may be taken, so that every
//! loop is bounded. A blackboard of typed values is shared by the states: an agent state's
//! agent writes it while its visit runs ([`Input::Set`], checked by [`check_value`]), and the
//! states after it read it.
//!
//! The principal types:
//! - [`Definition`]: the graph, as the manifest decoded it; [`check`] lists its problems.
//! - [`Instance`]: where one run is, its blackboard, the budgets it used and its history.
//! - [`Input`] and [`Command`]: what happened, and what the runner must do next.
//!
//! The key decision: [`step`] is a pure function of the definition, the instance and one input.
//! The runner records each input before it acts on the commands, so the instance is always the
//! fold of its recorded inputs ([`replay`]) and a runner killed at any point resumes by reading
//! the instance back and re-issuing what it waits for ([`Instance::awaiting`]). Every command
//! carries the *visit* (the number of the state entry it belongs to), and an input naming a visit
//! that is over changes nothing, so an answer that arrives twice is taken once.
//!
//! ```
//! use workflow::{Definition, Input, Instance, Outcome, State, StateKind, Transition, When};
//! let def = Definition {
//!     name: "build".into(),
//!     start: "test".into(),
//!     blackboard: Default::default(),
//!     states: vec![
//!         State::new("test", StateKind::Command { run: vec!["make".into(), "test".into()] })
//!             .on(Transition::to("done").when(When::Succeeded)),
//!         State::new("done", StateKind::End { outcome: Outcome::Succeeded }),
//!     ],
//! };
//! let (started, commands) = workflow::step(&def, &Instance::default(), Input::Start);
//! assert_eq!(commands.len(), 1);
//! let (ended, commands) = workflow::step(&def, &started, Input::ended(1, "test", Outcome::Succeeded));
//! assert_eq!(ended.outcome(), Some(Outcome::Succeeded));
//! assert_eq!(commands, vec![workflow::Command::Finish { outcome: Outcome::Succeeded }]);
//! ```

mod check;
mod definition;
mod instance;
mod machine;

pub use check::{Known, Problem, Where, check};
pub use definition::{Definition, Outcome, State, StateKind, Target, Transition, ValueType, When};
pub use instance::{Entry, Instance, Status, Value};
pub use machine::{Command, Input, MAX_KEY_CHARS, MAX_STRING_CHARS, check_value, replay, step};
