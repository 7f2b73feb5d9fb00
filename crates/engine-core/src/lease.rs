//! The leases of this node's live executions: when they are renewed, when other nodes'
//! executions are looked at for leases that ran out, and the fencing of what executions write.
//!
//! A claim takes its first lease in the claim itself, so a short execution costs no write for
//! its lease. Every third of the lease's length, all live executions' leases are renewed in one
//! batch (one store call, however many run). As often, the active executions of other nodes are
//! read and the ones whose lease ran out are recorded lost, which puts their tasks back through
//! the normal rules; the rules refuse that while a lease holds, so a slow read here can never
//! take a live execution from its node.
//!
//! Fencing: every change an execution's worker or agent causes is sent as
//! [`Change::Fenced`] under the execution's token ([`fence`]), so that once another engine
//! recorded the execution lost, nothing this engine still says about it is written.
//!
//! Pure, on the injected clock: the engine's runner holds one and performs what it says (the
//! renewal batches, the read of other nodes' executions, the writes under their tokens).
//!
//! Decision: a round of renewals is written in batches of at most [`RENEWAL_BATCH`] leases.
//! A batch costs about 50 µs a lease, and the store serves one call at a time, so one batch of
//! 500 leases would make every other caller of the store (the loop's claims and ends, agents'
//! calls) wait 25-40 ms behind it; in batches of 64 each waits for one batch at most.

use std::collections::BTreeMap;

use domain::{Duration, Execution, ExecutionId, Fence, Lease, NodeId, TaskId, Timestamp};
use tracker::Change;

/// The most leases renewed in one store batch: see the module's decision.
pub const RENEWAL_BATCH: usize = 64;

/// The leases this engine holds and the timer that renews them.
#[derive(Debug, Clone)]
pub struct Leases {
    node: NodeId,
    length: Duration,
    /// The token of each execution whose changes are fenced, by execution and by task. An
    /// execution stays here until its end is written.
    fences: BTreeMap<ExecutionId, (TaskId, Fence)>,
    by_task: BTreeMap<TaskId, ExecutionId>,
    /// When the next renewal and look at other nodes' leases are due, by the injected clock.
    due: Timestamp,
}

impl Leases {
    pub fn new(node: NodeId, length: Duration, now: Timestamp) -> Leases {
        let mut leases = Leases {
            node,
            length,
            fences: BTreeMap::new(),
            by_task: BTreeMap::new(),
            due: now,
        };
        leases.due = now.plus(leases.interval());
        leases
    }

    /// How often leases are renewed: a third of their length, so that two renewals in a row
    /// can be late (a busy store, a stalled disk) before a lease runs out.
    pub fn interval(&self) -> Duration {
        Duration(self.length.0 / 3)
    }

    /// The lease a claim made at `now` takes.
    pub fn first(&self, now: Timestamp) -> Lease {
        Lease::starting(self.node.clone(), now, self.length)
    }

    /// When the loop must wake for [`Leases::take_due`] at the latest.
    pub fn due(&self) -> Timestamp {
        self.due
    }

    /// Whether renewing (and looking at other nodes' leases) is due at `now`; if so, the next
    /// time is set an interval on.
    pub fn take_due(&mut self, now: Timestamp) -> bool {
        if now < self.due {
            return false;
        }
        self.due = now.plus(self.interval());
        true
    }

    /// The renewals of the leases of every execution this node claimed whose end is not
    /// written yet (running, or ended and waiting to be recorded), as one batch.
    pub fn renewals(&self, now: Timestamp) -> Vec<Change> {
        let mut ids: Vec<(&ExecutionId, &(TaskId, Fence))> = self.fences.iter().collect();
        ids.sort();
        ids.into_iter()
            .map(|(id, (_, fence))| Change::RenewLease {
                id: *id,
                fence: *fence,
                until: now.plus(self.length),
            })
            .collect()
    }

    /// [`Leases::renewals`] in batches of at most [`RENEWAL_BATCH`], each to be written on
    /// its own. Every renewal stands alone (it names its execution and token), so splitting
    /// the round changes nothing of what is written.
    pub fn renewal_batches(&self, now: Timestamp) -> Vec<Vec<Change>> {
        self.renewals(now)
            .chunks(RENEWAL_BATCH)
            .map(<[Change]>::to_vec)
            .collect()
    }

    /// Whether any execution's claim is held here: only then is a round worth waking for.
    pub fn holds_any(&self) -> bool {
        !self.fences.is_empty()
    }

    /// Whether this node still holds `execution`'s claim: claimed here and its end not yet
    /// written. A renewal refused for an execution it no longer holds was overtaken by its end.
    pub fn holds(&self, execution: ExecutionId) -> bool {
        self.fences.contains_key(&execution)
    }

    /// Other nodes' executions among `active` whose lease ran out at `now`. An execution
    /// without a lease, or one of this node, is never among them: this node's own are found by
    /// the scan at start.
    pub fn expired_elsewhere<'e>(
        &self,
        active: impl Iterator<Item = &'e Execution>,
        now: Timestamp,
    ) -> Vec<&'e Execution> {
        active
            .filter(|e| {
                e.lease
                    .as_ref()
                    .is_some_and(|l| l.node != self.node && l.expired(now))
            })
            .collect()
    }

    /// Whether `execution` is this node's to recover at start by itself: claimed here, or
    /// claimed without a lease (by an engine older than leases, which only a restart recovers).
    pub fn is_own(&self, execution: &Execution) -> bool {
        execution.lease.as_ref().is_none_or(|l| l.node == self.node)
    }

    /// From now on, the changes of `execution` are fenced under its token.
    pub fn claimed(&mut self, execution: &Execution) {
        self.fences
            .insert(execution.id, (execution.task_id, execution.fence));
        self.by_task.insert(execution.task_id, execution.id);
    }

    /// The end of `execution` is written: nothing more of it will be.
    pub fn ended(&mut self, execution: ExecutionId) {
        if let Some((task, _)) = self.fences.remove(&execution)
            && self.by_task.get(&task) == Some(&execution)
        {
            self.by_task.remove(&task);
        }
    }

    /// `changes` with each one an execution makes wrapped in its fencing token: see [`fence`].
    pub fn fence(&self, actor: &str, changes: Vec<Change>) -> Vec<Change> {
        fence(
            changes,
            agent_execution(actor),
            |id| self.fences.get(&id).copied(),
            |task| {
                self.by_task
                    .get(&task)
                    .and_then(|id| self.fences.get(id).map(|(_, f)| (*id, *f)))
            },
        )
    }
}

/// The execution an actor named `agent:<name>#<id>` (an agent's control call) speaks for.
pub(crate) fn agent_execution(actor: &str) -> Option<ExecutionId> {
    let rest = actor.strip_prefix("agent:")?;
    let (_, id) = rest.rsplit_once('#')?;
    id.parse().ok().map(ExecutionId)
}

/// Wraps each change an execution makes in [`Change::Fenced`] with its token:
/// - every change of an agent's call (`caller`), whatever it names;
/// - a change that names an execution with a token (`fence_of`): its progress and its end;
/// - a change of a task that settles or schedules it, or sets its branch, while one of its
///   executions has a token (`fence_of_task`): what an execution's end makes of its task.
///
/// Anything else (a person's change, the scheduler's own bookkeeping on tasks nothing runs
/// on, a claim) goes as it is.
fn fence(
    changes: Vec<Change>,
    caller: Option<ExecutionId>,
    fence_of: impl Fn(ExecutionId) -> Option<(TaskId, Fence)>,
    fence_of_task: impl Fn(TaskId) -> Option<(ExecutionId, Fence)>,
) -> Vec<Change> {
    changes
        .into_iter()
        .map(|change| {
            let holder = match (&change, caller) {
                (Change::Fenced { .. }, _) => None,
                (_, Some(id)) => fence_of(id).map(|(_, f)| (id, f)),
                (
                    Change::SetExecutionState { id, .. }
                    | Change::ProcessStarted { id, .. }
                    | Change::ProcessExited { id, .. }
                    | Change::Validated { id, .. }
                    | Change::Committed { id, .. }
                    | Change::RecordAgentEvent { id, .. }
                    | Change::FinishExecution { id, .. },
                    None,
                ) => fence_of(*id).map(|(_, f)| (*id, f)),
                (
                    Change::SettleTask { id, .. }
                    | Change::ScheduleTask { id, .. }
                    | Change::SetBranch { id, .. },
                    None,
                ) => fence_of_task(*id),
                _ => None,
            };
            match holder {
                Some((execution, fence)) => Change::Fenced {
                    execution,
                    fence,
                    change: Box::new(change),
                },
                None => change,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{ExecutionKind, ExecutionState, TaskState};

    fn leases() -> (Leases, Timestamp) {
        let now = Timestamp(1_000_000);
        let node: NodeId = "here".parse().unwrap();
        (Leases::new(node, Duration::from_secs(30), now), now)
    }

    fn execution(id: i64, task: i64, node: Option<&str>, until: i64) -> Execution {
        let mut e = Execution::queued(
            ExecutionId(id),
            TaskId(task),
            ExecutionKind::Work,
            "coder".into(),
            1,
            Timestamp(0),
        );
        e.fence = 3;
        e.lease = node.map(|n| Lease {
            node: n.parse().unwrap(),
            until: Timestamp(until),
        });
        e
    }

    #[test]
    fn renewals_come_every_third_of_the_lease_for_executions_not_yet_recorded_ended() {
        let (mut leases, start) = leases();
        assert_eq!(leases.interval(), Duration::from_secs(10));
        assert!(!leases.take_due(start));
        assert!(leases.take_due(start.plus(Duration::from_secs(10))));
        assert_eq!(leases.due(), start.plus(Duration::from_secs(20)));
        leases.claimed(&execution(1, 1, Some("here"), 5_000));
        leases.claimed(&execution(2, 2, Some("here"), 5_000));
        leases.ended(ExecutionId(2));
        let renewals = leases.renewals(Timestamp(1_000));
        assert_eq!(
            renewals,
            vec![Change::RenewLease {
                id: ExecutionId(1),
                fence: 3,
                until: Timestamp(31_000)
            }]
        );
    }

    #[test]
    fn a_round_of_renewals_is_split_into_batches_of_at_most_renewal_batch() {
        let (mut leases, now) = leases();
        for i in 1..=(2 * RENEWAL_BATCH as i64 + 1) {
            leases.claimed(&execution(i, i, Some("here"), 5_000));
        }
        let batches = leases.renewal_batches(now);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![RENEWAL_BATCH, RENEWAL_BATCH, 1]);
        // The same renewals as one round, in the same order.
        assert_eq!(batches.concat(), leases.renewals(now));
        assert!(leases.holds(ExecutionId(1)));
        leases.ended(ExecutionId(1));
        assert!(!leases.holds(ExecutionId(1)));
        assert_eq!(
            leases.renewal_batches(now).concat().len(),
            2 * RENEWAL_BATCH
        );
    }

    #[test]
    fn only_other_nodes_expired_leases_are_taken() {
        let (leases, _) = leases();
        let active = [
            execution(1, 1, Some("here"), 1_000),
            execution(2, 2, Some("there"), 1_000),
            execution(3, 3, Some("there"), 9_000),
            execution(4, 4, None, 0),
        ];
        let expired: Vec<ExecutionId> = leases
            .expired_elsewhere(active.iter(), Timestamp(1_000))
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(expired, vec![ExecutionId(2)]);
        let own: Vec<bool> = active.iter().map(|e| leases.is_own(e)).collect();
        assert_eq!(own, vec![true, false, false, true]);
    }

    #[test]
    fn an_executions_changes_go_under_its_token_and_others_do_not() {
        let (mut leases, _) = leases();
        leases.claimed(&execution(7, 2, Some("here"), 1));
        let end = vec![
            Change::FinishExecution {
                id: ExecutionId(7),
                state: ExecutionState::Succeeded,
                exit_code: Some(0),
                usage: domain::Usage::default(),
                summary: None,
            },
            Change::SettleTask {
                id: TaskId(2),
                to: TaskState::Done,
                reason: None,
            },
            Change::SettleTask {
                id: TaskId(5),
                to: TaskState::Done,
                reason: None,
            },
            Change::Nudge { id: TaskId(2) },
        ];
        let fenced = leases.fence("engine", end);
        let tokens: Vec<Option<(ExecutionId, Fence)>> = fenced
            .iter()
            .map(|c| match c {
                Change::Fenced {
                    execution, fence, ..
                } => Some((*execution, *fence)),
                _ => None,
            })
            .collect();
        assert_eq!(
            tokens,
            vec![
                Some((ExecutionId(7), 3)),
                Some((ExecutionId(7), 3)),
                None,
                None
            ]
        );
        // An agent's call is fenced whatever it names; an unknown caller's is not.
        let call = vec![Change::Nudge { id: TaskId(9) }];
        assert!(matches!(
            leases.fence("agent:coder#7", call.clone())[0],
            Change::Fenced {
                execution: ExecutionId(7),
                fence: 3,
                ..
            }
        ));
        assert_eq!(leases.fence("agent:coder#8", call.clone()), call);
        leases.ended(ExecutionId(7));
        let settle = vec![Change::SettleTask {
            id: TaskId(2),
            to: TaskState::Open,
            reason: None,
        }];
        assert_eq!(leases.fence("engine", settle.clone()), settle);
    }

    #[test]
    fn an_agent_actor_names_its_execution() {
        assert_eq!(agent_execution("agent:coder#12"), Some(ExecutionId(12)));
        assert_eq!(agent_execution("agent:a#b#3"), Some(ExecutionId(3)));
        assert_eq!(agent_execution("engine"), None);
        assert_eq!(agent_execution("agent:coder"), None);
        assert_eq!(agent_execution("cli#4"), None);
    }
}
