//! One test per scheduling rule.

use domain::{
    Duration, ExecutionId, ExecutionKind, ExecutionState, FailureClass, TaskId, TaskState,
    Timestamp,
};
use scheduler::{
    Action, AgentPolicy, Completion, Config, ExecutionEnd, Guards, KillReason, after_execution,
    decide,
};

use crate::world::*;

fn dispatched(s: &scheduler::Snapshot, c: &Config, now: Timestamp) -> Vec<i64> {
    decide(s, c, now)
        .dispatches()
        .map(|(t, _, _)| t.0)
        .collect()
}

#[test]
fn an_open_task_runs_once_its_dependencies_are_done() {
    let mut blocked = task(2);
    blocked.blocked_by = vec![TaskId(1)];
    let c = config(vec![worker()]);
    let s = world(vec![task(1), blocked.clone()]);
    assert_eq!(dispatched(&s, &c, T0), vec![1]);
    let s = world(vec![in_state(task(1), TaskState::Failed), blocked.clone()]);
    assert_eq!(
        dispatched(&s, &c, T0),
        Vec::<i64>::new(),
        "a failed blocker keeps it waiting"
    );
    let s = world(vec![in_state(task(1), TaskState::Done), blocked]);
    assert_eq!(dispatched(&s, &c, T0), vec![2]);
}

#[test]
fn backoff_delays_a_task_and_sets_the_wakeup_and_a_nudge_skips_it() {
    let mut t = task(1);
    t.not_before = Some(T0.plus(Duration::from_secs(30)));
    let c = config(vec![worker()]);
    let s = world(vec![t.clone()]);
    let d = decide(&s, &c, T0);
    assert!(d.actions.is_empty());
    assert_eq!(d.next_wakeup, t.not_before);
    assert_eq!(
        dispatched(&s, &c, T0.plus(Duration::from_secs(30))),
        vec![1]
    );
    t.nudged_at = Some(T0);
    assert_eq!(dispatched(&world(vec![t]), &c, T0), vec![1]);
}

#[test]
fn order_is_priority_then_nudged_then_age() {
    let mut urgent = task(5);
    urgent.priority = 0;
    let mut nudged = task(4);
    nudged.nudged_at = Some(T0);
    let c = Config {
        global_concurrency: 10,
        ..config(vec![worker()])
    };
    let s = world(vec![task(1), task(2), task(3), nudged, urgent]);
    assert_eq!(dispatched(&s, &c, T0), vec![5, 4, 1, 2, 3]);
}

#[test]
fn the_global_cap_counts_running_executions() {
    let c = Config {
        global_concurrency: 2,
        ..config(vec![worker()])
    };
    let mut s = world((1..=5).map(task).collect());
    assert_eq!(dispatched(&s, &c, T0), vec![1, 2]);
    run(&mut s, 1, 1, "worker", T0);
    assert_eq!(dispatched(&s, &c, T0), vec![2]);
    run(&mut s, 2, 2, "worker", T0);
    assert!(dispatched(&s, &c, T0).is_empty());
}

#[test]
fn an_agent_cap_holds_its_tasks_back_but_not_others() {
    let mut slow = AgentPolicy::new("slow");
    slow.labels = vec!["db".into()];
    slow.concurrency = Some(1);
    let c = Config {
        global_concurrency: 10,
        ..config(vec![slow, worker()])
    };
    let s = world(vec![
        labelled(task(1), &["db"]),
        labelled(task(2), &["db"]),
        task(3),
    ]);
    assert_eq!(dispatched(&s, &c, T0), vec![1, 3]);
}

#[test]
fn a_label_cap_limits_tasks_carrying_the_label() {
    let mut c = Config {
        global_concurrency: 10,
        ..config(vec![worker()])
    };
    c.per_label.insert("migration".into(), 1);
    let mut s = world(vec![
        labelled(task(1), &["migration"]),
        labelled(task(2), &["migration", "x"]),
        task(3),
    ]);
    assert_eq!(dispatched(&s, &c, T0), vec![1, 3]);
    run(&mut s, 9, 1, "worker", T0);
    assert_eq!(dispatched(&s, &c, T0), vec![3]);
}

#[test]
fn a_task_with_an_active_execution_is_never_dispatched_again() {
    let c = config(vec![worker()]);
    let mut s = world(vec![task(1)]);
    run(&mut s, 1, 1, "worker", T0);
    // Even if its state were stale, the active execution holds the claim.
    assert!(s.update(TaskId(1), |t| t.state = TaskState::Open));
    assert!(dispatched(&s, &c, T0).is_empty());
}

#[test]
fn a_task_a_workflow_run_holds_is_neither_dispatched_resumed_nor_closed() {
    // Open and ready, or waiting with its sub-task done: the run decides when an agent runs
    // on it, so the scheduler leaves it alone; the same tasks unheld run.
    let parent = in_state(task(1), TaskState::Waiting);
    let kid = in_state(child(2, &parent), TaskState::Done);
    let c = config(vec![worker()]);
    let mut only_work = worker();
    only_work.kinds = vec![ExecutionKind::Work];
    let closing = config(vec![only_work]);
    let mut s = world(vec![parent, kid, task(3)]);
    s.workflow_held.extend([TaskId(1), TaskId(3)]);
    let d = decide(&s, &c, T0);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(decide(&s, &closing, T0).actions.is_empty());
    s.workflow_held.clear();
    assert_eq!(dispatched(&s, &c, T0), vec![1, 3]);
    assert_eq!(decide(&s, &closing, T0).actions.len(), 2);
}

#[test]
fn a_task_whose_worktree_is_being_worked_on_waits_for_that_work() {
    // A merge into the parent is under way: its resume waits for it, and so does closing it.
    let parent = in_state(task(1), TaskState::Waiting);
    let kid = in_state(child(2, &parent), TaskState::Done);
    let c = config(vec![worker()]);
    let mut s = world(vec![parent.clone(), kid.clone()]);
    s.busy_workspaces.insert(TaskId(1));
    let d = decide(&s, &c, T0);
    assert!(d.actions.is_empty(), "{d:?}");
    assert_eq!(d.next_wakeup, None, "the work's report wakes the engine");
    let mut only_work = worker();
    only_work.kinds = vec![ExecutionKind::Work];
    let closing = config(vec![only_work]);
    assert!(decide(&s, &closing, T0).actions.is_empty());
    s.busy_workspaces.clear();
    assert_eq!(dispatched(&s, &c, T0), vec![1]);
    assert_eq!(decide(&s, &closing, T0).actions.len(), 1);

    // A sub-task starts from its parent's branch: it waits while a sibling's work is merged
    // into it (a sub-task blocked by that sibling must find its work there).
    let mut s = world(vec![
        parent.clone(),
        kid,
        in_state(child(3, &parent), TaskState::Open),
    ]);
    s.busy_workspaces.insert(TaskId(1));
    assert!(dispatched(&s, &c, T0).is_empty());
    s.busy_workspaces.clear();
    assert_eq!(dispatched(&s, &c, T0), vec![3], "the parent waits for it");

    // A reopened task whose old worktree is being removed does not start in it yet; the
    // others still run, and the one held back takes no room from them.
    let mut s = world(vec![task(3), task(4)]);
    s.busy_workspaces.insert(TaskId(3));
    let one = Config {
        global_concurrency: 1,
        ..config(vec![worker()])
    };
    assert_eq!(dispatched(&s, &one, T0), vec![4]);
    s.busy_workspaces.clear();
    assert_eq!(dispatched(&s, &one, T0), vec![3]);
}

#[test]
fn an_unroutable_task_waits() {
    let mut picky = AgentPolicy::new("picky");
    picky.labels = vec!["frontend".into()];
    let s = world(vec![labelled(task(1), &["backend"])]);
    assert!(decide(&s, &config(vec![picky]), T0).actions.is_empty());
}

#[test]
fn timeouts_and_stalls_are_killed_once_and_otherwise_woken_for() {
    let mut agent = worker();
    agent.timeout = Duration::from_secs(100);
    agent.stall_timeout = Duration::from_secs(10);
    let c = config(vec![agent]);
    let mut s = world(vec![task(1)]);
    run(&mut s, 7, 1, "worker", T0);
    let d = decide(&s, &c, T0.plus(Duration::from_secs(5)));
    assert!(d.actions.is_empty());
    assert_eq!(d.next_wakeup, Some(T0.plus(Duration::from_secs(10))));

    let d = decide(&s, &c, T0.plus(Duration::from_secs(10)));
    assert_eq!(
        d.actions,
        vec![Action::Kill {
            execution: ExecutionId(7),
            reason: KillReason::Stalled
        }]
    );

    s.active[0].last_activity_at = T0.plus(Duration::from_secs(95));
    let d = decide(&s, &c, T0.plus(Duration::from_secs(100)));
    assert_eq!(
        d.actions,
        vec![Action::Kill {
            execution: ExecutionId(7),
            reason: KillReason::TimedOut
        }]
    );

    s.active[0].kill_requested = true;
    assert!(
        decide(&s, &c, T0.plus(Duration::from_secs(200)))
            .actions
            .is_empty()
    );
}

#[test]
fn a_waiting_parent_is_resumed_when_its_children_end() {
    let parent = in_state(task(1), TaskState::Waiting);
    let kid_a = in_state(child(2, &parent), TaskState::Done);
    let kid_b = in_state(child(3, &parent), TaskState::Running);
    let c = config(vec![worker()]);
    let s = world(vec![parent.clone(), kid_a.clone(), kid_b.clone()]);
    assert!(dispatched(&s, &c, T0).is_empty(), "a child still runs");
    let s = world(vec![
        parent.clone(),
        kid_a,
        in_state(kid_b, TaskState::Done),
    ]);
    let d = decide(&s, &c, T0);
    assert_eq!(
        d.dispatches().collect::<Vec<_>>(),
        vec![(TaskId(1), "worker", ExecutionKind::Resume)]
    );
}

#[test]
fn a_waiting_parent_is_also_resumed_on_its_timer() {
    let mut parent = in_state(task(1), TaskState::Waiting);
    parent.not_before = Some(T0.plus(Duration::from_mins(10)));
    let kid = in_state(child(2, &parent), TaskState::Running);
    let c = config(vec![worker()]);
    let s = world(vec![parent.clone(), kid]);
    let d = decide(&s, &c, T0);
    assert!(d.actions.is_empty());
    assert_eq!(d.next_wakeup, parent.not_before);
    assert_eq!(
        dispatched(&s, &c, T0.plus(Duration::from_mins(10))),
        vec![1]
    );
}

#[test]
fn without_a_resume_agent_the_children_close_the_parent() {
    let mut only_work = worker();
    only_work.kinds = vec![ExecutionKind::Work];
    let c = config(vec![only_work]);
    let parent = in_state(task(1), TaskState::Waiting);
    let done = in_state(child(2, &parent), TaskState::Done);
    let failed = in_state(child(3, &parent), TaskState::Failed);
    let d = decide(&world(vec![parent.clone(), done.clone()]), &c, T0);
    assert!(matches!(
        &d.actions[..],
        [Action::CloseParent {
            to: TaskState::Done,
            ..
        }]
    ));
    let d = decide(&world(vec![parent, done, failed]), &c, T0);
    match &d.actions[..] {
        [
            Action::CloseParent {
                to: TaskState::Failed,
                reason,
                ..
            },
        ] => assert!(reason.contains("#3 failed")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn guards_fail_tasks_that_ran_too_often_or_sit_too_deep() {
    let guards = Guards {
        max_depth: 1,
        max_executions_per_task: 3,
        max_executions_per_tree: 5,
        ..Guards::default()
    };
    let c = Config {
        guards,
        global_concurrency: 10,
        ..config(vec![worker()])
    };
    let mut tired = task(1);
    tired.executions = 3;
    let root = in_state(task(2), TaskState::Waiting);
    let deep_parent = child(3, &root);
    let too_deep = child(4, &deep_parent);
    let d = decide(&world(vec![tired, too_deep]), &c, T0);
    let failed: Vec<(i64, String)> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::FailTask { task, reason } => Some((task.0, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[0].1.contains("max_executions_per_task"));
    assert!(failed[1].1.contains("max_depth"));

    let mut busy_root = in_state(task(10), TaskState::Waiting);
    busy_root.executions = 4;
    let mut sibling = child(11, &busy_root);
    sibling.executions = 1;
    let fresh = child(12, &busy_root);
    let d = decide(&world(vec![busy_root, sibling, fresh]), &c, T0);
    assert!(d.actions.iter().any(
        |a| matches!(a, Action::FailTask { task, reason } if task.0 == 12 && reason.contains("max_executions_per_tree"))
    ));
}

#[test]
fn the_rate_guard_holds_new_executions_and_wakes_when_the_window_moves() {
    let guards = Guards {
        max_new_executions_per_minute: 3,
        ..Guards::default()
    };
    let c = Config {
        guards,
        global_concurrency: 10,
        ..config(vec![worker()])
    };
    let mut s = world((1..=5).map(task).collect());
    s.recent_dispatches = vec![T0, T0.plus(Duration::from_secs(10))];
    let d = decide(&s, &c, T0.plus(Duration::from_secs(20)));
    assert_eq!(d.dispatches().count(), 1);
    assert_eq!(d.next_wakeup, Some(T0.plus(Duration::from_secs(60))));
    // A minute after the first dispatch it has dropped out of the window.
    assert_eq!(
        decide(&s, &c, T0.plus(Duration::from_secs(61)))
            .dispatches()
            .count(),
        2
    );
}

fn end(kind: ExecutionKind, state: ExecutionState) -> ExecutionEnd {
    ExecutionEnd {
        kind,
        agent: "worker".into(),
        state,
        validated: false,
        claimed_complete: None,
        blocked: None,
        handed_off: None,
        failure: None,
        provider_paused: None,
        class: FailureClass::Transient,
    }
}

/// An agent with validators, so that only their passing finishes its tasks.
fn judged(name: &str) -> AgentPolicy {
    let mut agent = AgentPolicy::new(name);
    agent.validators = true;
    agent
}

fn validated(kind: ExecutionKind, agent: &str) -> ExecutionEnd {
    ExecutionEnd {
        agent: agent.into(),
        validated: true,
        ..end(kind, ExecutionState::Succeeded)
    }
}

#[test]
fn a_clean_validated_exit_finishes_the_task() {
    let c = config(vec![worker()]);
    let plan = after_execution(
        &task(1),
        &[],
        &end(ExecutionKind::Work, ExecutionState::Succeeded),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Done);
}

#[test]
fn failures_back_off_exponentially_then_fail_the_task() {
    let mut agent = worker();
    agent.max_attempts = 3;
    let c = Config {
        retry: scheduler::RetryPolicy {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_mins(5),
        },
        ..config(vec![agent])
    };
    let mut t = task(1);
    let e = end(ExecutionKind::Work, ExecutionState::Failed);
    let first = after_execution(&t, &[], &e, &c, T0);
    assert_eq!((first.to, first.attempts), (TaskState::Open, 1));
    assert_eq!(first.not_before, Some(T0.plus(Duration::from_secs(10))));
    t.attempts = 1;
    let second = after_execution(&t, &[], &e, &c, T0);
    assert_eq!(second.not_before, Some(T0.plus(Duration::from_secs(20))));
    t.attempts = 2;
    let last = after_execution(
        &t,
        &[],
        &end(ExecutionKind::Work, ExecutionState::TimedOut),
        &c,
        T0,
    );
    assert_eq!((last.to, last.attempts), (TaskState::Failed, 3));
    assert!(
        last.reason.contains("timed_out (attempt 3 of 3)"),
        "{}",
        last.reason
    );
}

#[test]
fn a_configuration_failure_fails_the_task_at_once_without_backoff() {
    let mut agent = worker();
    agent.max_attempts = 5;
    let c = config(vec![agent]);
    let e = ExecutionEnd {
        failure: Some(
            "starting the agent: cannot start `claud`: no executable of that name".into(),
        ),
        class: FailureClass::Configuration,
        ..end(ExecutionKind::Work, ExecutionState::Failed)
    };
    let plan = after_execution(&task(1), &[], &e, &c, T0);
    assert_eq!(
        (plan.to, plan.attempts, plan.not_before),
        (TaskState::Failed, 1, None),
        "four attempts are left, but none could go differently"
    );
    assert!(
        plan.reason.starts_with("starting the agent: cannot start `claud`")
            && plan.reason.contains("not retried, as only a change to the configuration helps: reopen #1 once it is fixed"),
        "the reason says what failed and what a person does: {}",
        plan.reason
    );
    // The same failure for a resume fails it too, rather than waiting to be woken again.
    let resume = ExecutionEnd {
        kind: ExecutionKind::Resume,
        ..e.clone()
    };
    let plan = after_execution(&in_state(task(1), TaskState::Running), &[], &resume, &c, T0);
    assert_eq!(plan.to, TaskState::Failed);
    // A transient failure of the same agent is still retried after the backoff.
    let transient = ExecutionEnd {
        class: FailureClass::Transient,
        ..e
    };
    let plan = after_execution(&task(1), &[], &transient, &c, T0);
    assert_eq!(plan.to, TaskState::Open);
    assert!(plan.not_before.is_some());
}

#[test]
fn a_configuration_failure_is_not_what_a_cancel_or_a_lost_execution_means() {
    let c = config(vec![worker()]);
    for state in [ExecutionState::Cancelled, ExecutionState::Lost] {
        let e = ExecutionEnd {
            class: FailureClass::Configuration,
            ..end(ExecutionKind::Work, state)
        };
        let plan = after_execution(&task(1), &[], &e, &c, T0);
        assert_eq!((plan.to, plan.attempts), (TaskState::Open, 0), "{state}");
    }
}

#[test]
fn no_progress_is_a_failed_attempt_retried_with_backoff() {
    let mut agent = worker();
    agent.max_attempts = 2;
    let c = Config {
        retry: scheduler::RetryPolicy {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_mins(5),
        },
        ..config(vec![agent])
    };
    let mut t = task(1);
    let e = ExecutionEnd {
        failure: Some("no progress: iterations 1 and 2 failed validation the same way".into()),
        ..end(ExecutionKind::Work, ExecutionState::NoProgress)
    };
    let first = after_execution(&t, &[], &e, &c, T0);
    assert_eq!(
        (first.to, first.attempts, first.not_before),
        (TaskState::Open, 1, Some(T0.plus(Duration::from_secs(10))))
    );
    assert!(
        first.reason.starts_with("no progress: iterations 1 and 2")
            && first.reason.contains("retry 2 of 2"),
        "{}",
        first.reason
    );
    t.attempts = 1;
    let last = after_execution(&t, &[], &e, &c, T0);
    assert_eq!((last.to, last.attempts), (TaskState::Failed, 2));
    assert!(last.reason.contains("(attempt 2 of 2)"), "{}", last.reason);
    // Without a recorded reason the state itself names the outcome.
    t.attempts = 0;
    let bare = end(ExecutionKind::Work, ExecutionState::NoProgress);
    let plan = after_execution(&t, &[], &bare, &c, T0);
    assert!(
        plan.reason.starts_with("no_progress; retry"),
        "{}",
        plan.reason
    );
}

#[test]
fn interruptions_run_again_at_once_without_costing_an_attempt() {
    let c = config(vec![worker()]);
    let mut t = task(1);
    t.attempts = 1;
    for state in [ExecutionState::Lost, ExecutionState::Cancelled] {
        let plan = after_execution(&t, &[], &end(ExecutionKind::Work, state), &c, T0);
        assert_eq!(
            (plan.to, plan.attempts, plan.not_before),
            (TaskState::Open, 1, None)
        );
    }
}

#[test]
fn blocking_and_budget_need_a_person() {
    let c = config(vec![worker()]);
    let mut e = end(ExecutionKind::Work, ExecutionState::Failed);
    e.blocked = Some("which database?".into());
    let plan = after_execution(&task(1), &[], &e, &c, T0);
    assert_eq!(plan.to, TaskState::Blocked);
    assert!(plan.reason.contains("which database?"));
    let plan = after_execution(
        &task(1),
        &[],
        &end(ExecutionKind::Work, ExecutionState::BudgetExceeded),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Blocked);
}

#[test]
fn a_split_task_waits_with_its_resume_timer() {
    let c = Config {
        resume_interval: Duration::from_mins(10),
        ..config(vec![worker()])
    };
    let parent = in_state(task(1), TaskState::Running);
    let kids = [child(2, &parent), child(3, &parent)];
    let refs: Vec<_> = kids.iter().collect();
    let plan = after_execution(
        &parent,
        &refs,
        &end(ExecutionKind::Work, ExecutionState::Succeeded),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Waiting);
    assert_eq!(plan.not_before, Some(T0.plus(Duration::from_mins(10))));
    assert!(plan.reason.contains("split into 2"));
}

#[test]
fn a_resume_closes_the_parent_from_its_children() {
    let c = config(vec![worker()]);
    let parent = in_state(task(1), TaskState::Running);
    let done = in_state(child(2, &parent), TaskState::Done);
    let failed = in_state(child(3, &parent), TaskState::Failed);
    let ok = after_execution(
        &parent,
        &[&done],
        &end(ExecutionKind::Resume, ExecutionState::Succeeded),
        &c,
        T0,
    );
    assert_eq!(ok.to, TaskState::Done);
    let mut claim = end(ExecutionKind::Resume, ExecutionState::Succeeded);
    claim.claimed_complete = Some("looks fine".into());
    let bad = after_execution(&parent, &[&done, &failed], &claim, &c, T0);
    assert_eq!(
        bad.to,
        TaskState::Failed,
        "a claim does not outweigh a failed sub-task"
    );
    let retry = after_execution(
        &parent,
        &[&done],
        &end(ExecutionKind::Resume, ExecutionState::Failed),
        &c,
        T0,
    );
    assert_eq!((retry.to, retry.attempts), (TaskState::Waiting, 1));
}

#[test]
fn claim_mode_continues_after_clean_exits_then_counts_a_failure() {
    let mut agent = worker();
    agent.completion = Completion::Claim;
    let c = Config {
        max_continuations: 2,
        continuation_delay: Duration::from_secs(1),
        ..config(vec![agent])
    };
    let mut t = task(1);
    let e = end(ExecutionKind::Work, ExecutionState::Succeeded);
    let plan = after_execution(&t, &[], &e, &c, T0);
    assert_eq!((plan.to, plan.continuations), (TaskState::Open, 1));
    assert_eq!(plan.not_before, Some(T0.plus(Duration::from_secs(1))));
    t.continuations = 2;
    let plan = after_execution(&t, &[], &e, &c, T0);
    assert_eq!(
        (plan.to, plan.attempts, plan.continuations),
        (TaskState::Open, 1, 0)
    );
    assert!(plan.reason.contains("without claiming completion"));
    let mut claimed = e.clone();
    claimed.claimed_complete = Some("done".into());
    assert_eq!(
        after_execution(&task(1), &[], &claimed, &c, T0).to,
        TaskState::Done
    );
}

#[test]
fn sub_tasks_that_ended_before_the_exit_are_not_a_split() {
    let c = config(vec![judged("worker")]);
    let parent = in_state(task(1), TaskState::Running);
    let failed = in_state(child(2, &parent), TaskState::Failed);
    let done = in_state(child(3, &parent), TaskState::Done);
    // The agent waited for its sub-task to fail, and its own validators passed: still not done.
    let plan = after_execution(
        &parent,
        &[&failed],
        &validated(ExecutionKind::Work, "worker"),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Failed);
    assert!(
        plan.reason.contains("sub-task #2 failed"),
        "{}",
        plan.reason
    );
    // Its sub-task is done and merged only after the exit: the merged tree is judged next, at
    // once, not at the resume timer.
    let plan = after_execution(
        &parent,
        &[&done],
        &end(ExecutionKind::Work, ExecutionState::Succeeded)
            .clone_with(|e| e.agent = "worker".into()),
        &c,
        T0,
    );
    assert_eq!((plan.to, plan.not_before), (TaskState::Waiting, None));
    assert!(plan.reason.contains("merged tree"), "{}", plan.reason);
    let plan = after_execution(
        &parent,
        &[&done],
        &validated(ExecutionKind::Work, "worker"),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Done);
}

trait CloneWith: Clone {
    fn clone_with(&self, f: impl FnOnce(&mut Self)) -> Self {
        let mut copy = self.clone();
        f(&mut copy);
        copy
    }
}

impl CloneWith for ExecutionEnd {}

#[test]
fn an_execution_that_was_not_validated_never_finishes_a_task_with_validators() {
    let c = config(vec![judged("judged"), worker()]);
    let unproven = end(ExecutionKind::Work, ExecutionState::Succeeded)
        .clone_with(|e| e.agent = "judged".into());
    let plan = after_execution(&task(1), &[], &unproven, &c, T0);
    assert_ne!(plan.to, TaskState::Done);
    assert!(
        plan.reason.contains("validators did not pass"),
        "{}",
        plan.reason
    );
    let plan = after_execution(
        &task(1),
        &[],
        &validated(ExecutionKind::Work, "judged"),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Done);
    // Without validators a clean exit is the evidence.
    let plan = after_execution(
        &task(1),
        &[],
        &end(ExecutionKind::Work, ExecutionState::Succeeded),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Done);
    // An agent the configuration does not know is held to the stricter rule.
    let stranger = unproven.clone_with(|e| e.agent = "gone".into());
    assert_ne!(
        after_execution(&task(1), &[], &stranger, &c, T0).to,
        TaskState::Done
    );
}

#[test]
fn a_failed_sub_task_wakes_the_resume_at_once_and_says_why() {
    let c = config(vec![worker()]);
    let mut parent = in_state(task(1), TaskState::Waiting);
    parent.not_before = Some(T0.plus(Duration::from_mins(10)));
    let mut failed = in_state(child(2, &parent), TaskState::Failed);
    failed.summary = Some("agent exited with status 3".into());
    let mut blocked = child(3, &parent);
    blocked.blocked_by = vec![TaskId(2)];
    let d = decide(
        &world(vec![parent.clone(), failed.clone(), blocked.clone()]),
        &c,
        T0,
    );
    match &d.actions[..] {
        [
            Action::Dispatch {
                task,
                kind: ExecutionKind::Resume,
                reason: Some(reason),
                ..
            },
        ] => {
            assert_eq!(*task, TaskId(1));
            assert!(
                reason.starts_with(
                    "resumed at once: sub-task #2 failed (agent exited with status 3)"
                ),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let cancelled = in_state(child(2, &parent), TaskState::Cancelled);
    let d = decide(
        &world(vec![parent.clone(), cancelled, blocked.clone()]),
        &c,
        T0,
    );
    assert_eq!(
        d.dispatches().count(),
        1,
        "a cancelled sub-task wakes it too"
    );
    // A resume that failed waits out its backoff, failed sub-task or not.
    parent.attempts = 1;
    parent.not_before = Some(T0.plus(Duration::from_secs(10)));
    let d = decide(&world(vec![parent.clone(), failed, blocked]), &c, T0);
    assert!(d.actions.is_empty());
    assert_eq!(d.next_wakeup, parent.not_before);
}

#[test]
fn a_resume_that_leaves_a_failed_sub_task_standing_fails_the_parent() {
    let c = config(vec![worker()]);
    let parent = in_state(task(1), TaskState::Running);
    let failed = in_state(child(2, &parent), TaskState::Failed);
    let open = child(3, &parent);
    let plan = after_execution(
        &parent,
        &[&failed, &open],
        &end(ExecutionKind::Resume, ExecutionState::Succeeded),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Failed, "not waiting to be woken again");
    assert!(
        plan.reason.contains("sub-task #2 failed"),
        "{}",
        plan.reason
    );
    assert!(plan.reason.contains("#3 is left open"), "{}", plan.reason);
    // A resume that fails itself decided nothing, and trying again cannot help.
    let mut crashed = end(ExecutionKind::Resume, ExecutionState::Failed);
    crashed.failure = Some("agent exited with status 1".into());
    let plan = after_execution(&parent, &[&failed, &open], &crashed, &c, T0);
    assert_eq!(plan.to, TaskState::Failed);
    assert!(
        plan.reason
            .ends_with("its resume agent exited with status 1"),
        "{}",
        plan.reason
    );
    // A block asks a person instead.
    let mut block = end(ExecutionKind::Resume, ExecutionState::Succeeded);
    block.blocked = Some("reopen #2 or cancel me".into());
    let plan = after_execution(&parent, &[&failed, &open], &block, &c, T0);
    assert_eq!(plan.to, TaskState::Blocked);
    // A work execution that split with one part already failed waits: its resume decides.
    let plan = after_execution(
        &parent,
        &[&failed, &open],
        &end(ExecutionKind::Work, ExecutionState::Succeeded),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Waiting);
}

#[test]
fn without_a_resume_a_failed_sub_task_fails_the_parent_at_once() {
    let mut only_work = worker();
    only_work.kinds = vec![ExecutionKind::Work];
    let c = config(vec![only_work]);
    let mut parent = in_state(task(1), TaskState::Waiting);
    parent.not_before = Some(T0.plus(Duration::from_mins(10)));
    let failed = in_state(child(2, &parent), TaskState::Failed);
    let mut open = child(3, &parent);
    open.blocked_by = vec![TaskId(2)];
    let running = in_state(child(4, &parent), TaskState::Running);
    let d = decide(&world(vec![parent, failed, open, running]), &c, T0);
    match &d.actions[..] {
        [
            Action::CloseParent {
                task,
                to: TaskState::Failed,
                reason,
            },
        ] => {
            assert_eq!(*task, TaskId(1));
            assert!(reason.starts_with("sub-task #2 failed"), "{reason}");
            assert!(reason.ends_with("#3, #4 are left open"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_parent_whose_agent_has_validators_is_judged_on_the_merged_tree_before_it_is_done() {
    let mut only_work = judged("worker");
    only_work.kinds = vec![ExecutionKind::Work];
    let c = config(vec![only_work]);
    let parent = in_state(task(1), TaskState::Waiting);
    let done = in_state(child(2, &parent), TaskState::Done);
    let d = decide(&world(vec![parent.clone(), done.clone()]), &c, T0);
    match &d.actions[..] {
        [
            Action::Dispatch {
                task,
                agent,
                kind: ExecutionKind::Resume,
                reason: Some(reason),
                ..
            },
        ] => {
            assert_eq!((*task, agent.as_str()), (TaskId(1), "worker"));
            assert!(
                reason.contains("validators judge the merged tree"),
                "{reason}"
            );
        }
        other => panic!("instead of closing from the evidence alone: {other:?}"),
    }
    let running = in_state(parent, TaskState::Running);
    let plan = after_execution(
        &running,
        &[&done],
        &validated(ExecutionKind::Resume, "worker"),
        &c,
        T0,
    );
    assert_eq!(plan.to, TaskState::Done);
    assert!(
        plan.reason.contains("merged tree is validated"),
        "{}",
        plan.reason
    );
    let plan = after_execution(
        &running,
        &[&done],
        &end(ExecutionKind::Resume, ExecutionState::Failed)
            .clone_with(|e| e.agent = "worker".into()),
        &c,
        T0,
    );
    assert_eq!(
        (plan.to, plan.attempts),
        (TaskState::Waiting, 1),
        "its failure is retried"
    );
}

#[test]
fn a_failed_merge_keeps_a_task_from_being_done() {
    let c = config(vec![worker()]);
    let mut parent = in_state(task(1), TaskState::Running);
    parent.branch = Some("agentgrid/task-1".into());
    parent.merge_failed = Some("sub-task #2: merging agentgrid/task-2 conflicts in a.txt".into());
    let done = in_state(child(2, &parent), TaskState::Done);
    let clean = end(ExecutionKind::Work, ExecutionState::Succeeded);
    let plan = after_execution(&parent, &[&done], &clean, &c, T0);
    assert_eq!(plan.to, TaskState::Blocked, "{plan:?}");
    assert!(
        plan.reason.contains("a.txt") && plan.reason.contains("agentgrid/task-1"),
        "the reason says what to merge by hand: {}",
        plan.reason
    );
    // Whatever else the end means is left as it is: a split still waits.
    let open = child(3, &parent);
    let plan = after_execution(&parent, &[&done, &open], &clean, &c, T0);
    assert_eq!(plan.to, TaskState::Waiting);
    // Once merged, the same end makes it done.
    parent.merge_failed = None;
    let plan = after_execution(&parent, &[&done], &clean, &c, T0);
    assert_eq!(plan.to, TaskState::Done);
}

#[test]
fn a_waiting_parent_with_a_failed_merge_is_not_closed_as_done() {
    let mut only_work = worker();
    only_work.kinds = vec![ExecutionKind::Work];
    let c = config(vec![only_work]);
    let mut parent = in_state(task(1), TaskState::Waiting);
    parent.merge_failed = Some("sub-task #2: conflicts".into());
    let done = in_state(child(2, &parent), TaskState::Done);
    let d = decide(&world(vec![parent, done]), &c, T0);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
}

#[test]
fn an_agent_whose_providers_are_all_paused_gets_no_task_until_one_is_back() {
    let mut modelled = AgentPolicy::new("modelled");
    modelled.providers = vec!["openai".into(), "anthropic".into()];
    let c = config(vec![modelled]);
    let mut s = world(vec![task(1)]);
    let back = T0.plus(Duration::from_secs(60));
    s.paused_providers.insert("openai".into(), back);
    assert_eq!(dispatched(&s, &c, T0), vec![1], "one provider is left");
    s.paused_providers
        .insert("anthropic".into(), T0.plus(Duration::from_secs(90)));
    let d = decide(&s, &c, T0);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.next_wakeup, Some(back), "woken when the first is back");
    assert_eq!(
        dispatched(&s, &c, back),
        vec![1],
        "a pause that ended holds nothing"
    );
    // An agent without models is never held.
    let c = config(vec![worker()]);
    assert_eq!(dispatched(&s, &c, T0), vec![1]);
}

#[test]
fn a_failure_under_a_provider_pause_costs_no_attempt_and_runs_after_it() {
    let c = config(vec![worker()]);
    let mut t = task(1);
    t.state = TaskState::Running;
    t.attempts = 2;
    let until = T0.plus(Duration::from_secs(30));
    let end = ExecutionEnd {
        failure: Some("provider openai paused until then (quota: insufficient_quota)".into()),
        provider_paused: Some(until),
        ..end(ExecutionKind::Work, ExecutionState::Failed)
    };
    let plan = after_execution(&t, &[], &end, &c, T0);
    assert_eq!(plan.to, TaskState::Open);
    assert_eq!(plan.attempts, 2, "not counted");
    assert_eq!(plan.not_before, Some(until));
    assert!(
        plan.reason.contains("provider openai paused"),
        "{}",
        plan.reason
    );
    // Without the pause the same failure counts.
    let plain = ExecutionEnd {
        provider_paused: None,
        ..end
    };
    assert_eq!(after_execution(&t, &[], &plain, &c, T0).attempts, 3);
}

#[test]
fn a_clean_exit_after_a_handoff_opens_the_receivers_part_and_is_never_done() {
    let mut t = in_state(task(1), TaskState::Running);
    t.attempts = 2;
    let c = config(vec![worker()]);
    let handed = scheduler::HandedOff {
        to: domain::HandoffTarget {
            agency: "qa".into(),
            role: Some("tester".into()),
        },
        restore: None,
    };
    // Even validated and claimed complete, a handoff is not completion.
    let e = ExecutionEnd {
        handed_off: Some(handed.clone()),
        claimed_complete: Some("done".into()),
        ..validated(ExecutionKind::Work, "worker")
    };
    let plan = after_execution(&t, &[], &e, &c, T0);
    assert_eq!(plan.to, TaskState::Open);
    assert_eq!((plan.attempts, plan.continuations), (0, 0));
    assert_eq!(plan.reason, "handed off to qa/tester; its part opens");
    // A failed exit is a failure like any other: the handoff does not take effect.
    let failed = ExecutionEnd {
        handed_off: Some(handed),
        ..end(ExecutionKind::Work, ExecutionState::Failed)
    };
    let plan = after_execution(&t, &[], &failed, &c, T0);
    assert_ne!(plan.reason, "handed off to qa/tester; its part opens");
    assert_eq!(plan.attempts, 3);
}
