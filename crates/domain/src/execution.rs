//! Executions: one short-lived run of an agent on a task, and its state machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ExecutionId, Fence, Lease, TaskId, Timestamp, TransitionError};

/// Whether trying a failed execution again could go differently.
///
/// Most failures are worth another attempt after a backoff: the agent crashed, its validators
/// failed, a provider was down. A failure of the project's configuration is not: a command
/// that does not exist, an interpreter the sandbox hides, a repository without commits or a
/// base branch that is not there fail the same way on every attempt, so the task waits for a
/// person who changes the configuration instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum FailureClass {
    /// Another attempt, after the backoff, may succeed.
    #[default]
    Transient,
    /// Only a change to the configuration (a manifest, the repository, the environment) helps.
    Configuration,
}

/// Why an execution was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionKind {
    /// Do the task, or split it into sub-tasks.
    Work,
    /// Look at a waiting task's sub-tasks and decide what comes next.
    Resume,
}

impl ExecutionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionKind::Work => "work",
            ExecutionKind::Resume => "resume",
        }
    }
}

impl fmt::Display for ExecutionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutionKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "work" => Ok(ExecutionKind::Work),
            "resume" => Ok(ExecutionKind::Resume),
            _ => Err(format!(
                "`{s}` is not an execution kind: expected work or resume"
            )),
        }
    }
}

/// The lifecycle of an execution.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Claimed by the engine; nothing started yet.
    Queued,
    /// Making the workspace and running its hooks.
    Preparing,
    /// The agent process runs.
    Running,
    /// The validators run on what the agent left.
    Validating,
    Succeeded,
    Failed,
    TimedOut,
    Stalled,
    Cancelled,
    BudgetExceeded,
    /// Stopped early because the evidence says it is stuck: two iterations in a row failed
    /// validation the same way, or an iteration after a failed validation changed nothing.
    NoProgress,
    /// The engine that ran it died; found on restart and wound down.
    Lost,
}

/// Every allowed execution transition. Anything not listed is forbidden.
pub const TRANSITIONS: &[(ExecutionState, ExecutionState)] = {
    use ExecutionState::*;
    &[
        (Queued, Preparing),
        (Queued, Cancelled),
        (Queued, Lost),
        (Preparing, Running),
        (Preparing, Failed),
        (Preparing, TimedOut),
        (Preparing, Cancelled),
        (Preparing, Lost),
        (Running, Validating),
        (Running, Succeeded),
        (Running, Failed),
        (Running, TimedOut),
        (Running, Stalled),
        (Running, Cancelled),
        (Running, BudgetExceeded),
        // An iteration after a failed validation left the tree as it was: it is not judged again.
        (Running, NoProgress),
        (Running, Lost),
        // A failed validation with iterations left runs the agent again with feedback.
        (Validating, Running),
        (Validating, Succeeded),
        (Validating, Failed),
        (Validating, TimedOut),
        (Validating, Cancelled),
        (Validating, BudgetExceeded),
        (Validating, NoProgress),
        (Validating, Lost),
    ]
};

impl ExecutionState {
    pub const ALL: [ExecutionState; 12] = [
        ExecutionState::Queued,
        ExecutionState::Preparing,
        ExecutionState::Running,
        ExecutionState::Validating,
        ExecutionState::Succeeded,
        ExecutionState::Failed,
        ExecutionState::TimedOut,
        ExecutionState::Stalled,
        ExecutionState::Cancelled,
        ExecutionState::BudgetExceeded,
        ExecutionState::NoProgress,
        ExecutionState::Lost,
    ];

    /// The states in which an execution holds its task's claim. The store allows at most one
    /// execution per task in these states.
    pub const ACTIVE: [ExecutionState; 4] = [
        ExecutionState::Queued,
        ExecutionState::Preparing,
        ExecutionState::Running,
        ExecutionState::Validating,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Queued => "queued",
            ExecutionState::Preparing => "preparing",
            ExecutionState::Running => "running",
            ExecutionState::Validating => "validating",
            ExecutionState::Succeeded => "succeeded",
            ExecutionState::Failed => "failed",
            ExecutionState::TimedOut => "timed_out",
            ExecutionState::Stalled => "stalled",
            ExecutionState::Cancelled => "cancelled",
            ExecutionState::BudgetExceeded => "budget_exceeded",
            ExecutionState::NoProgress => "no_progress",
            ExecutionState::Lost => "lost",
        }
    }

    pub fn is_active(self) -> bool {
        ExecutionState::ACTIVE.contains(&self)
    }

    pub fn is_terminal(self) -> bool {
        !self.is_active()
    }

    pub fn can_transition_to(self, to: ExecutionState) -> bool {
        TRANSITIONS.iter().any(|(f, t)| *f == self && *t == to)
    }

    pub fn check_transition(self, to: ExecutionState) -> Result<(), TransitionError> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(TransitionError {
                entity: "execution",
                from: self.as_str(),
                to: to.as_str(),
            })
        }
    }
}

impl fmt::Display for ExecutionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExecutionState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not an execution state: expected one of {}",
                    ExecutionState::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

/// Why the engine stops an execution, and so how the execution ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    TimedOut,
    Stalled,
    /// Its task was cancelled (from the CLI or by another process): this execution is over.
    Cancelled,
    /// The engine is stopping: the execution ends as cancelled and its task runs again later.
    Shutdown,
    /// A request was refused over budget and the agent did not end by itself within the grace
    /// the core gives it (or the engine is stopping meanwhile).
    BudgetExceeded,
}

impl StopReason {
    /// The state an execution stopped for this reason ends in.
    pub fn state(self) -> ExecutionState {
        match self {
            StopReason::TimedOut => ExecutionState::TimedOut,
            StopReason::Stalled => ExecutionState::Stalled,
            StopReason::Cancelled | StopReason::Shutdown => ExecutionState::Cancelled,
            StopReason::BudgetExceeded => ExecutionState::BudgetExceeded,
        }
    }
}

/// Resources an execution used.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Usage {
    pub wall_ms: u64,
    /// User plus system CPU time of the agent's processes.
    pub cpu_ms: u64,
}

/// An execution as the store projects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Execution {
    pub id: ExecutionId,
    pub task_id: TaskId,
    pub kind: ExecutionKind,
    pub agent: String,
    /// 1 for the first try; grows with each retry after a failure.
    pub attempt: u32,
    /// Which pass of the generate → validate loop runs now (1-based).
    pub iteration: u32,
    pub state: ExecutionState,
    pub queued_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// The process (and process group) of the agent while it runs.
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    /// The weighted validation score of the last iteration, 0..1.
    pub score: Option<f64>,
    pub usage: Usage,
    /// What happened, in one line: the agent's summary, a failure reason, a validator verdict.
    pub summary: Option<String>,
    pub log_path: Option<String>,
    /// The engine that claimed it and until when the claim holds; `None` for an execution
    /// claimed without one (by a store older than leases), which only a restart recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Its fencing token: see [`crate::lease`]. 0 for an execution claimed before tokens.
    #[serde(default)]
    pub fence: Fence,
}

impl Execution {
    pub fn queued(
        id: ExecutionId,
        task_id: TaskId,
        kind: ExecutionKind,
        agent: String,
        attempt: u32,
        now: Timestamp,
    ) -> Execution {
        Execution {
            id,
            task_id,
            kind,
            agent,
            attempt,
            iteration: 0,
            state: ExecutionState::Queued,
            queued_at: now,
            started_at: None,
            ended_at: None,
            pid: None,
            exit_code: None,
            score: None,
            usage: Usage::default(),
            summary: None,
            log_path: None,
            lease: None,
            fence: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionState::*;

    #[test]
    fn every_allowed_and_forbidden_transition() {
        let allowed = [
            (Queued, Preparing),
            (Queued, Cancelled),
            (Queued, Lost),
            (Preparing, Running),
            (Preparing, Failed),
            (Preparing, TimedOut),
            (Preparing, Cancelled),
            (Preparing, Lost),
            (Running, Validating),
            (Running, Succeeded),
            (Running, Failed),
            (Running, TimedOut),
            (Running, Stalled),
            (Running, Cancelled),
            (Running, BudgetExceeded),
            (Running, NoProgress),
            (Running, Lost),
            (Validating, Running),
            (Validating, Succeeded),
            (Validating, Failed),
            (Validating, TimedOut),
            (Validating, Cancelled),
            (Validating, BudgetExceeded),
            (Validating, NoProgress),
            (Validating, Lost),
        ];
        for from in ExecutionState::ALL {
            for to in ExecutionState::ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
                assert_eq!(
                    from.check_transition(to).is_ok(),
                    expected,
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in ExecutionState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ExecutionState::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn no_progress_ends_only_an_execution_that_ran_and_is_final() {
        let into: Vec<ExecutionState> = ExecutionState::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(NoProgress))
            .collect();
        assert_eq!(into, vec![Running, Validating]);
        assert!(NoProgress.is_terminal());
        assert!(!ExecutionState::ACTIVE.contains(&NoProgress));
        assert_eq!(NoProgress.as_str(), "no_progress");
        assert_eq!("no_progress".parse::<ExecutionState>(), Ok(NoProgress));
        let err = Queued.check_transition(NoProgress).unwrap_err();
        assert_eq!((err.from, err.to), ("queued", "no_progress"));
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in ExecutionState::ALL {
            assert_eq!(s.as_str().parse::<ExecutionState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
