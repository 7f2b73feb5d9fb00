//! What the scheduler's decision makes the engine do, in one place for [`crate::Core`] and the
//! engine's runner: each `scheduler::Action` with the writes held back turned into an [`Act`]
//! (a claim in one transaction with what was held, a stop with its reason, a task's state
//! written after what was held). The caller only performs them, in order.

use domain::{Duration, ExecutionId, Lease, TaskId, TaskState, Timestamp};
use scheduler::{Action, Decision, KillReason, Snapshot};
use tracker::Change;

use crate::claims::Claim;
use crate::effect::StopReason;
use crate::held::{Held, Taken};

/// How long a dispatch counts among the recent ones the scheduler's rate limit looks at.
pub const RECENT_DISPATCHES: Duration = Duration::from_secs(60);

/// One thing a decision asks for, to be performed in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Write the claim's batch ([`Claim::batch`]); when it is refused, see [`Claim::refused`].
    /// Once written, the execution it made ([`Claim::claimed`]) starts.
    Claim(Claim),
    /// Ask a running execution to stop (the scheduler's kill: it is not killed again, and its
    /// timeout and stall limits no longer count). An execution no longer running is left be.
    Stop {
        execution: ExecutionId,
        reason: StopReason,
    },
    /// Write what was held (piecewise if it must be, as held writes are: the decision was made
    /// on those ends, so they come first in the log), then `changes` whole. With `ended`, the
    /// task has ended once they are written: its workspace work follows
    /// ([`crate::finalize::Finalizer::task_ended`]).
    Write {
        held: Taken,
        changes: Vec<Change>,
        ended: Option<TaskId>,
    },
}

/// A decision as acts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acts {
    pub acts: Vec<Act>,
    /// Something besides claims was done (a stop, a task failed or closed, a dispatch left
    /// out), which can make other tasks ready: the scheduler looks again. A claim that comes to
    /// nothing makes it look again too; that is the performer's to say.
    pub again: bool,
    /// The scheduler's wake-up.
    pub next_wakeup: Option<Timestamp>,
}

/// What the runner knows that the acts depend on.
pub struct Context<'a> {
    /// Whether an agent can run here (a dispatch to one that cannot is left out).
    pub can_run: &'a dyn Fn(&str) -> bool,
    /// The first lease of a new claim, when the claimer holds leases.
    pub lease: &'a dyn Fn() -> Option<Lease>,
    /// The project's approval policy, on a closed task's labels.
    pub approvals: &'a dyn Fn(&[String]) -> bool,
}

/// Before deciding: dispatches older than [`RECENT_DISPATCHES`] no longer count.
pub fn forget_old_dispatches(snapshot: &mut Snapshot, now: Timestamp) {
    snapshot
        .recent_dispatches
        .retain(|t| now.since(*t) < RECENT_DISPATCHES);
}

/// Turns `decision`'s actions into acts; what is held is taken into the first claim or state
/// change that follows it.
pub fn acts(decision: Decision, snapshot: &Snapshot, held: &mut Held, cx: &Context) -> Acts {
    let mut out = Acts {
        next_wakeup: decision.next_wakeup,
        ..Acts::default()
    };
    for action in decision.actions {
        match action {
            Action::Dispatch {
                task,
                agent,
                kind,
                attempt,
                reason,
            } => {
                if !(cx.can_run)(&agent) {
                    out.again = true;
                    continue;
                }
                let changes =
                    crate::claims::claim(task, &agent, kind, attempt, reason, (cx.lease)());
                out.acts.push(Act::Claim(Claim {
                    task,
                    agent,
                    kind,
                    attempt,
                    held: held.take_apart(),
                    changes,
                }));
            }
            Action::Kill { execution, reason } => {
                out.again = true;
                let reason = match reason {
                    KillReason::TimedOut => StopReason::TimedOut,
                    KillReason::Stalled => StopReason::Stalled,
                };
                out.acts.push(Act::Stop { execution, reason });
            }
            Action::FailTask { task, reason } => {
                out.again = true;
                out.acts.push(Act::Write {
                    held: held.take_apart(),
                    changes: vec![Change::SetTaskState {
                        id: task,
                        to: TaskState::Failed,
                        reason: Some(reason),
                    }],
                    ended: None,
                });
            }
            Action::CloseParent { task, to, reason } => {
                out.again = true;
                let mut changes = vec![Change::SetTaskState {
                    id: task,
                    to,
                    reason: Some(reason),
                }];
                crate::ending::ask_approvals(snapshot, cx.approvals, &mut changes);
                out.acts.push(Act::Write {
                    held: held.take_apart(),
                    changes,
                    ended: Some(task),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use domain::{ExecutionKind, ExecutionState};
    use scheduler::Action;

    use super::*;
    use crate::claims::Refused;

    fn dispatch(task: i64, agent: &str) -> Action {
        Action::Dispatch {
            task: TaskId(task),
            agent: agent.into(),
            kind: ExecutionKind::Work,
            attempt: 1,
            reason: None,
        }
    }

    fn progress(n: i64) -> Change {
        Change::SetExecutionState {
            id: ExecutionId(n),
            to: ExecutionState::Running,
            reason: None,
        }
    }

    #[test]
    fn what_is_held_goes_with_the_first_claim_and_a_refusal_writes_it_apart() {
        let mut held = Held::default();
        held.progress(progress(1), Timestamp(0));
        held.end(vec![progress(2)], Timestamp(0));
        let decision = Decision {
            actions: vec![
                dispatch(5, "gone"),
                dispatch(6, "coder"),
                dispatch(7, "coder"),
            ],
            next_wakeup: Some(Timestamp(9)),
        };
        let cx = Context {
            can_run: &|agent| agent == "coder",
            lease: &|| None,
            approvals: &|_| false,
        };
        let acts = acts(decision, &Snapshot::default(), &mut held, &cx);
        assert!(held.is_empty());
        assert!(
            acts.again,
            "a dispatch left out makes the scheduler look again"
        );
        assert_eq!(acts.next_wakeup, Some(Timestamp(9)));
        let [Act::Claim(first), Act::Claim(second)] = &acts.acts[..] else {
            panic!("two claims: {:?}", acts.acts);
        };
        assert_eq!(first.task, TaskId(6));
        assert_eq!(&first.batch()[..2], &[progress(1), progress(2)]);
        assert!(matches!(first.batch()[2], Change::CreateExecution { .. }));
        assert!(second.held.is_empty());
        let Refused::Apart { held, claim } = first.clone().refused() else {
            panic!("held changes are written apart first");
        };
        assert_eq!(held.joined(), vec![progress(1), progress(2)]);
        assert_eq!(claim.refused(), Refused::Reload(TaskId(6)));
    }

    #[test]
    fn kills_stop_and_closes_write_after_what_was_held() {
        let mut held = Held::default();
        held.end(vec![progress(2)], Timestamp(0));
        let decision = Decision {
            actions: vec![
                Action::Kill {
                    execution: ExecutionId(3),
                    reason: KillReason::Stalled,
                },
                Action::CloseParent {
                    task: TaskId(4),
                    to: TaskState::Done,
                    reason: "all done".into(),
                },
                Action::FailTask {
                    task: TaskId(5),
                    reason: "too deep".into(),
                },
            ],
            next_wakeup: None,
        };
        let cx = Context {
            can_run: &|_| true,
            lease: &|| None,
            approvals: &|_| false,
        };
        let acts = acts(decision, &Snapshot::default(), &mut held, &cx);
        assert!(acts.again);
        assert_eq!(
            acts.acts[0],
            Act::Stop {
                execution: ExecutionId(3),
                reason: StopReason::Stalled
            }
        );
        let Act::Write { held, ended, .. } = &acts.acts[1] else {
            panic!("a close: {:?}", acts.acts[1]);
        };
        assert_eq!(
            (held.joined(), *ended),
            (vec![progress(2)], Some(TaskId(4)))
        );
        let Act::Write { held, ended, .. } = &acts.acts[2] else {
            panic!("a failure: {:?}", acts.acts[2]);
        };
        assert!(
            held.is_empty() && ended.is_none(),
            "a failed task has no work to follow"
        );
    }
}
