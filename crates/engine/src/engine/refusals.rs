//! Why the store refused an agent's control call, in the agent's terms.
//!
//! The store's wording names internal changes by their position in a batch (`change 0
//! (create_keyed_task) was refused`), which means nothing to an agent: the reason is taken from
//! the rules' refusal, and the control server names the call as the agent typed it
//! (`control::refusal`).

use crate::Error;

/// Why the store refused a change, without the store's name and position of the change.
pub(super) fn reason(error: impl Into<Error>) -> String {
    match error.into() {
        Error::Store(store::Error::Refused { reason, .. }) => reason,
        Error::Store(store::Error::AlreadyActive {
            task, execution, ..
        }) => {
            format!("task #{task} already has an execution under way (#{execution})")
        }
        Error::Store(store::Error::AlreadyFinished {
            execution, state, ..
        }) => format!("execution #{execution} has already finished as {state}"),
        Error::Store(e) if e.is_busy() => {
            format!("the project's database is busy ({e}); make the same call again in a moment")
        }
        other => other.to_string(),
    }
}

/// Why the application layer refused an agent's call: its own words, or the store's reason
/// without the store's names.
pub(super) fn of_command(error: app::Error) -> String {
    match error {
        app::Error::Store(e) => reason(e),
        app::Error::Refused { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_refusal_keeps_the_reason_without_internal_names() {
        let refused = store::Error::Refused {
            index: 0,
            change: "create_keyed_task",
            reason: "task #999, named in blocked_by, does not exist".into(),
        };
        assert_eq!(
            reason(refused),
            "task #999, named in blocked_by, does not exist"
        );
    }
}
