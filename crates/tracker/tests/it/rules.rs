//! One test per rule: what it allows, what it makes, and the words of its refusal.

use domain::{
    EntityKind, EventKind, ExecutionId, ExecutionKind, ExecutionState, NewTask, TaskId, TaskState,
    Timestamp, Usage,
};
use tracker::{Change, Event, Key, MergeResult, Refusal, State, TaskEdit, wants};

use crate::{T0, World};

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            Event::Logged(entry) => entry.kind.name(),
            Event::KeyUsed(_) => "key_used",
        })
        .collect()
}

fn set(id: TaskId, to: TaskState) -> Change {
    Change::SetTaskState {
        id,
        to,
        reason: None,
    }
}

fn exec_state(id: ExecutionId, to: ExecutionState) -> Change {
    Change::SetExecutionState {
        id,
        to,
        reason: None,
    }
}

fn finish(id: ExecutionId, state: ExecutionState, exit_code: Option<i32>) -> Change {
    Change::FinishExecution {
        id,
        state,
        exit_code,
        usage: Usage {
            wall_ms: 10,
            cpu_ms: 5,
        },
        summary: Some("ended".into()),
    }
}

/// A running execution of a fresh task, on iteration 1.
fn running(w: &mut World) -> (TaskId, ExecutionId) {
    let task = w.titled("work");
    let e = w.claim(task);
    w.ok(exec_state(e, ExecutionState::Preparing));
    w.ok(exec_state(e, ExecutionState::Running));
    w.ok(Change::ProcessStarted {
        id: e,
        pid: 42,
        iteration: 1,
        log_path: Some("/logs/1".into()),
    });
    (task, e)
}

#[test]
fn a_top_level_task_is_its_own_root_and_ids_count_from_one() {
    let mut w = World::new();
    let a = w.titled("a");
    let b = w.titled("b");
    assert_eq!((a, b), (TaskId(1), TaskId(2)));
    assert_eq!(w.task(b).root, b);
    assert_eq!(w.task(b).depth, 0);
    assert_eq!(w.task(b).state, TaskState::Open);
}

#[test]
fn a_sub_task_sits_under_its_parent_in_the_parents_tree() {
    let mut w = World::new();
    let root = w.titled("root");
    let child = w.sub_task("child", root);
    let grandchild = w.sub_task("grandchild", child);
    assert_eq!(w.task(grandchild).root, root);
    assert_eq!(w.task(grandchild).depth, 2);
    assert_eq!(w.task(grandchild).parent, Some(child));
}

#[test]
fn a_task_needs_a_living_parent_existing_dependencies_and_valid_fields() {
    let mut w = World::new();
    let parent = w.titled("parent");
    let sub = |p| {
        Change::CreateTask(NewTask {
            parent: Some(p),
            ..NewTask::titled("child")
        })
    };
    assert_eq!(
        w.refused(sub(TaskId(9))),
        "the parent task #9 does not exist"
    );
    w.ok(set(parent, TaskState::Cancelled));
    assert_eq!(
        w.refused(sub(parent)),
        "the parent task #1 is cancelled, so no sub-task can be added under it"
    );
    let blocked = Change::CreateTask(NewTask {
        blocked_by: vec![TaskId(7)],
        ..NewTask::titled("blocked")
    });
    assert_eq!(
        w.refused(blocked),
        "task #7, named in blocked_by, does not exist"
    );
    let unassigned = Change::CreateTask(NewTask {
        agent: Some(" ".into()),
        ..NewTask::titled("x")
    });
    assert!(
        w.refused(unassigned)
            .starts_with("an agent name cannot be empty")
    );
    let urgent = Change::CreateTask(NewTask {
        priority: 9,
        ..NewTask::titled("x")
    });
    assert!(w.refused(urgent).starts_with("priority 9 is out of range"));
}

#[test]
fn dependencies_of_a_new_task_are_sorted_and_deduplicated() {
    let mut w = World::new();
    let a = w.titled("a");
    let b = w.titled("b");
    let c = w.create(NewTask {
        blocked_by: vec![b, a, b],
        ..NewTask::titled("c")
    });
    assert_eq!(w.task(c).blocked_by, vec![a, b]);
}

#[test]
fn a_keyed_sub_task_is_made_once_per_key() {
    let mut w = World::new();
    let parent = w.titled("parent");
    let keyed = |key: &str| Change::CreateKeyedTask {
        new: NewTask {
            parent: Some(parent),
            ..NewTask::titled("child")
        },
        key: key.into(),
    };
    let events = w.ok(keyed("step-1"));
    assert_eq!(kinds(&events), ["task_created", "key_used"]);
    assert_eq!(
        w.state.call_key(parent, tracker::SUBTASK_CREATE, "step-1"),
        Some(Some(TaskId(2)))
    );
    assert_eq!(
        w.refused(keyed("step-1")),
        "task #1 already made a subtask_create call under the key \"step-1\"; a call under a \
         used key changes nothing"
    );
    assert_eq!(w.refused(keyed(" ")), "an idempotency key cannot be empty");
    let top = Change::CreateKeyedTask {
        new: NewTask::titled("top"),
        key: "k".into(),
    };
    assert_eq!(
        w.refused(top),
        "a task created under a key must be a sub-task: name its parent"
    );
}

#[test]
fn a_keyed_comment_is_made_once_per_key() {
    let mut w = World::new();
    let task = w.titled("t");
    let comment = || Change::KeyedComment {
        id: task,
        text: "hello".into(),
        key: "k".into(),
    };
    assert_eq!(kinds(&w.ok(comment())), ["task_commented", "key_used"]);
    assert!(w.refused(comment()).contains("already made a comment call"));
}

#[test]
fn an_edit_changes_the_named_fields_and_must_leave_a_valid_task() {
    let mut w = World::new();
    let task = w.titled("old");
    assert!(
        w.refused(Change::EditTask {
            id: task,
            edit: TaskEdit::default()
        })
        .starts_with("the edit changes nothing")
    );
    w.now = Timestamp(T0.0 + 5);
    w.ok(Change::EditTask {
        id: task,
        edit: TaskEdit {
            title: Some("new".into()),
            priority: Some(0),
            agent: Some(Some("coder".into())),
            ..TaskEdit::default()
        },
    });
    let t = w.task(task);
    assert_eq!((t.title.as_str(), t.priority), ("new", 0));
    assert_eq!(t.agent.as_deref(), Some("coder"));
    assert_eq!(t.updated_at, Timestamp(T0.0 + 5));
    let bad = Change::EditTask {
        id: task,
        edit: TaskEdit {
            labels: Some(vec!["has space".into()]),
            ..TaskEdit::default()
        },
    };
    assert!(
        w.refused(bad)
            .starts_with("label `has space` is not allowed")
    );
    let unassign = Change::EditTask {
        id: task,
        edit: TaskEdit {
            agent: Some(None),
            ..TaskEdit::default()
        },
    };
    w.ok(unassign);
    assert_eq!(w.task(task).agent, None);
}

#[test]
fn state_changes_follow_the_table_and_say_where_a_task_can_go() {
    let mut w = World::new();
    let task = w.titled("t");
    assert_eq!(
        w.refused(set(task, TaskState::Done)),
        "task #1 cannot go from open to done; from open it can go to running, failed, cancelled"
    );
    w.ok(Change::SetTaskState {
        id: task,
        to: TaskState::Cancelled,
        reason: Some("not needed".into()),
    });
    assert_eq!(w.task(task).summary.as_deref(), Some("not needed"));
    assert_eq!(
        w.refused(set(TaskId(5), TaskState::Open)),
        "task #5 does not exist"
    );
}

#[test]
fn reopening_a_stopped_task_resets_its_counters() {
    let mut w = World::new();
    let task = w.titled("t");
    w.ok(Change::ScheduleTask {
        id: task,
        not_before: Some(Timestamp(T0.0 + 1000)),
        attempts: 3,
        continuations: 2,
        reason: None,
    });
    assert_eq!(w.task(task).attempts, 3);
    w.ok(set(task, TaskState::Failed));
    w.ok(set(task, TaskState::Open));
    assert_eq!((w.task(task).attempts, w.task(task).continuations), (0, 0));
}

#[test]
fn reopening_a_stopped_task_clears_its_backoff() {
    for stopped in [TaskState::Failed, TaskState::Cancelled, TaskState::Blocked] {
        let mut w = World::new();
        let (task, e) = running(&mut w);
        w.ok(finish(e, ExecutionState::Failed, Some(1)));
        // A backoff an hour long, left on the task when it stopped.
        w.ok(Change::ScheduleTask {
            id: task,
            not_before: Some(Timestamp(T0.0 + 3_600_000)),
            attempts: 1,
            continuations: 0,
            reason: None,
        });
        w.ok(set(task, stopped));
        assert_eq!(w.task(task).not_before, Some(Timestamp(T0.0 + 3_600_000)));
        w.ok(set(task, TaskState::Open));
        assert_eq!(
            w.task(task).not_before,
            None,
            "a task reopened from {stopped} must not wait out its old backoff"
        );
    }
}

#[test]
fn a_retry_keeps_its_backoff() {
    let mut w = World::new();
    let (task, e) = running(&mut w);
    w.ok(finish(e, ExecutionState::Failed, Some(1)));
    w.ok(Change::ScheduleTask {
        id: task,
        not_before: Some(Timestamp(T0.0 + 60_000)),
        attempts: 1,
        continuations: 0,
        reason: None,
    });
    w.ok(set(task, TaskState::Open));
    assert_eq!(w.task(task).not_before, Some(Timestamp(T0.0 + 60_000)));
}

#[test]
fn an_end_settles_a_task_only_while_it_runs() {
    let mut w = World::new();
    let (task, _) = running(&mut w);
    w.ok(set(task, TaskState::Cancelled));
    let settle = Change::SettleTask {
        id: task,
        to: TaskState::Done,
        reason: Some("validated".into()),
    };
    assert_eq!(
        w.refused(settle),
        "task #1 is cancelled, no longer running, so the end of its execution leaves it as it is"
    );
}

#[test]
fn a_done_sub_task_makes_its_merge_due_on_the_parent() {
    let mut w = World::new();
    let parent = w.titled("parent");
    let child = w.sub_task("child", parent);
    w.claim(child);
    let parent_before = w.task(parent).clone();
    let events = w.ok(Change::SettleTask {
        id: child,
        to: TaskState::Done,
        reason: None,
    });
    assert_eq!(kinds(&events), ["task_state_changed", "task_merge_pending"]);
    let Event::Logged(pending) = &events[1] else {
        panic!("a log entry")
    };
    assert_eq!((pending.entity, pending.id), (EntityKind::Task, parent.0));
    assert!(w.state.merge(child).is_some());
    // The step is recorded beside the parent; the parent itself is as it was.
    assert_eq!(w.task(parent), &parent_before);
}

#[test]
fn a_failed_merge_stays_on_the_parent_until_a_later_merge_succeeds() {
    let mut w = World::new();
    let parent = w.titled("parent");
    let a = w.sub_task("a", parent);
    let b = w.sub_task("b", parent);
    for child in [a, b] {
        w.claim(child);
        w.ok(set(child, TaskState::Done));
    }
    let fail = |child, reason: &str| Change::FinishMerge {
        child,
        outcome: MergeResult::Failed {
            reason: reason.into(),
        },
    };
    assert_eq!(w.refused(fail(a, " ")), "a failed merge needs a reason");
    w.ok(fail(b, "conflict in b.rs"));
    w.ok(fail(a, "conflict in a.rs"));
    assert_eq!(
        w.task(parent).merge_failed.as_deref(),
        Some("sub-task #2: conflict in a.rs; sub-task #3: conflict in b.rs")
    );
    let merged = |child| Change::FinishMerge {
        child,
        outcome: MergeResult::Merged { commit: None },
    };
    w.ok(merged(a));
    assert_eq!(
        w.task(parent).merge_failed.as_deref(),
        Some("sub-task #3: conflict in b.rs")
    );
    w.ok(merged(b));
    assert_eq!(w.task(parent).merge_failed, None);
    assert_eq!(
        w.refused(merged(b)),
        "no merge of sub-task #3 is due: it is not done, or it is merged already"
    );
}

#[test]
fn dependencies_refuse_themselves_duplicates_and_cycles() {
    let mut w = World::new();
    let a = w.titled("a");
    let b = w.titled("b");
    let c = w.titled("c");
    let dep = |id, blocked_by| Change::AddDependency { id, blocked_by };
    assert_eq!(w.refused(dep(a, a)), "task #1 cannot be blocked by itself");
    w.ok(dep(a, b));
    w.ok(dep(b, c));
    assert_eq!(w.refused(dep(a, b)), "task #1 is already blocked by #2");
    assert_eq!(
        w.refused(dep(c, a)),
        "task #3 cannot be blocked by #1: that would make a dependency cycle #3 → #1 → #2 → #3 \
         (each waits for the next), and none of them could ever start"
    );
    assert_eq!(w.refused(dep(a, TaskId(9))), "task #9 does not exist");
    assert_eq!(w.task(a).blocked_by, vec![b]);
    let remove = |id, blocked_by| Change::RemoveDependency { id, blocked_by };
    assert_eq!(
        w.refused(remove(a, c)),
        "task #1 is not blocked by #3, so there is nothing to remove"
    );
    w.ok(remove(a, b));
    assert!(w.task(a).blocked_by.is_empty());
    // Without the edge, the reverse dependency is no cycle.
    w.ok(dep(b, a));
}

#[test]
fn answers_and_feedback_are_recorded_with_their_author_and_check_their_text() {
    let mut w = World::new();
    let task = w.titled("t");
    w.actor = "ada";
    let events = w.ok(Change::Answer {
        id: task,
        text: "sqlite".into(),
    });
    let Event::Logged(entry) = &events[0] else {
        panic!("a log entry")
    };
    assert_eq!(
        entry.kind,
        EventKind::TaskAnswered {
            author: "ada".into(),
            text: "sqlite".into()
        }
    );
    let events = w.ok(Change::Feedback {
        id: task,
        text: "smaller steps".into(),
    });
    let Event::Logged(entry) = &events[0] else {
        panic!("a log entry")
    };
    assert_eq!(
        entry.kind,
        EventKind::TaskFeedbackGiven {
            author: "ada".into(),
            text: "smaller steps".into()
        }
    );
    assert_eq!(
        w.refused(Change::Answer {
            id: task,
            text: " ".into()
        }),
        "an answer needs some text"
    );
    assert_eq!(
        w.refused(Change::Feedback {
            id: TaskId(9),
            text: "x".into()
        }),
        "task #9 does not exist"
    );
    let huge = "x".repeat(domain::text::MAX_COMMENT_BYTES + 1);
    assert!(
        w.refused(Change::Feedback {
            id: task,
            text: huge
        })
        .contains("feedback")
    );
}

#[test]
fn nudges_comments_and_bookkeeping_check_their_input() {
    let mut w = World::new();
    let task = w.titled("t");
    w.actor = "execution:7";
    w.now = Timestamp(T0.0 + 9);
    let events = w.ok(Change::Nudge { id: task });
    let Event::Logged(entry) = &events[0] else {
        panic!("a log entry")
    };
    assert_eq!(
        entry.kind,
        EventKind::TaskNudged {
            by: "execution:7".into()
        }
    );
    assert_eq!(w.task(task).nudged_at, Some(Timestamp(T0.0 + 9)));
    assert_eq!(
        w.refused(Change::Comment {
            id: task,
            text: "  ".into()
        }),
        "a comment needs some text"
    );
    let huge = "x".repeat(domain::text::MAX_COMMENT_BYTES + 1);
    assert!(
        w.refused(Change::Comment {
            id: task,
            text: huge
        })
        .contains("comment")
    );
    assert_eq!(
        w.refused(Change::SetBranch {
            id: task,
            branch: "".into()
        }),
        "a branch name cannot be empty"
    );
    w.ok(Change::SetBranch {
        id: task,
        branch: "agentgrid/1".into(),
    });
    assert_eq!(w.task(task).branch.as_deref(), Some("agentgrid/1"));
    assert_eq!(
        w.refused(Change::ClaimCompletion {
            id: task,
            summary: " ".into()
        }),
        "a completion claim needs a summary of what was done"
    );
    w.ok(Change::ClaimCompletion {
        id: task,
        summary: "did it".into(),
    });
    assert_eq!(w.task(task).summary.as_deref(), Some("did it"));
    w.ok(set(task, TaskState::Cancelled));
    assert_eq!(
        w.refused(Change::Nudge { id: task }),
        "task #1 is cancelled, so there is nothing to nudge"
    );
}

#[test]
fn a_claim_runs_the_task_and_clears_its_nudge_and_backoff() {
    let mut w = World::new();
    let task = w.titled("t");
    w.ok(Change::Nudge { id: task });
    w.ok(Change::ScheduleTask {
        id: task,
        not_before: Some(Timestamp(T0.0 + 1)),
        attempts: 1,
        continuations: 0,
        reason: None,
    });
    let events = w.ok(Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 2,
        lease: None,
    });
    assert_eq!(kinds(&events), ["task_state_changed", "execution_created"]);
    let t = w.task(task);
    assert_eq!(t.state, TaskState::Running);
    assert_eq!((t.executions, t.nudged_at, t.not_before), (1, None, None));
    let e = w.execution(ExecutionId(1));
    assert_eq!((e.state, e.attempt), (ExecutionState::Queued, 2));
}

#[test]
fn a_task_has_at_most_one_active_execution() {
    let mut w = World::new();
    let task = w.titled("t");
    let first = w.claim(task);
    let second = Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: None,
    };
    let refusal = w.apply(second.clone()).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::AlreadyActive {
            task,
            execution: first
        }
    );
    // Once the first has ended and the task is open again, a new claim is allowed.
    w.ok(finish(first, ExecutionState::Cancelled, None));
    w.ok(set(task, TaskState::Open));
    w.ok(second);
}

#[test]
fn a_claim_needs_an_agent_an_attempt_and_the_right_task_state() {
    let mut w = World::new();
    let task = w.titled("t");
    let claim = |kind, agent: &str, attempt| Change::CreateExecution {
        task_id: task,
        kind,
        agent: agent.into(),
        attempt,
        lease: None,
    };
    assert_eq!(
        w.refused(claim(ExecutionKind::Work, "", 1)),
        "an execution needs the name of the agent that runs it"
    );
    assert_eq!(
        w.refused(claim(ExecutionKind::Work, "coder", 0)),
        "attempts count from 1: the first try of a task is attempt 1"
    );
    assert_eq!(
        w.refused(claim(ExecutionKind::Resume, "coder", 1)),
        "a resume execution needs task #1 to be waiting, but it is open"
    );
}

#[test]
fn an_execution_ends_only_through_finish_and_only_once() {
    let mut w = World::new();
    let (_, e) = running(&mut w);
    assert_eq!(
        w.refused(exec_state(e, ExecutionState::Succeeded)),
        "execution #1 can only become succeeded through finish_execution, which also records its \
         usage and outcome"
    );
    assert!(
        w.refused(exec_state(e, ExecutionState::Queued))
            .starts_with(
                "execution #1 cannot go from running to queued; from running it can go to"
            )
    );
    assert!(
        w.refused(finish(e, ExecutionState::Running, None))
            .starts_with("execution #1 cannot finish as running: that state is not an outcome")
    );
    w.ok(Change::ProcessExited {
        id: e,
        iteration: 1,
        exit_code: Some(3),
        signal: None,
    });
    w.now = Timestamp(T0.0 + 50);
    w.ok(finish(e, ExecutionState::Failed, None));
    let ended = w.execution(e);
    // The exit code of the process stands when the finish has none.
    assert_eq!(ended.exit_code, Some(3));
    assert_eq!(
        (ended.pid, ended.ended_at),
        (None, Some(Timestamp(T0.0 + 50)))
    );
    assert_eq!(ended.usage.wall_ms, 10);
    assert_eq!(
        w.apply(finish(e, ExecutionState::Succeeded, Some(0)))
            .unwrap_err(),
        Refusal::AlreadyFinished {
            execution: e,
            state: ExecutionState::Failed
        }
    );
}

#[test]
fn progress_is_recorded_only_on_an_active_execution_at_its_iteration() {
    let mut w = World::new();
    let (_, e) = running(&mut w);
    assert_eq!(w.execution(e).pid, Some(42));
    assert_eq!(w.execution(e).log_path.as_deref(), Some("/logs/1"));
    assert!(
        w.refused(Change::ProcessStarted {
            id: e,
            pid: 1,
            iteration: 0,
            log_path: None
        })
        .contains("iterations count from 1 and never go back")
    );
    assert_eq!(
        w.refused(Change::ProcessExited {
            id: e,
            iteration: 2,
            exit_code: Some(0),
            signal: None
        }),
        "execution #1 is on iteration 1, but the exit reported is for iteration 2"
    );
    assert_eq!(
        w.refused(Change::Validated {
            id: e,
            iteration: 1,
            score: 1.5,
            passed: true,
            results: vec![]
        }),
        "the validation score 1.5 is out of range: scores go from 0 to 1"
    );
    w.ok(Change::Validated {
        id: e,
        iteration: 1,
        score: 0.5,
        passed: false,
        results: vec![],
    });
    assert_eq!(w.execution(e).score, Some(0.5));
    assert_eq!(
        w.refused(Change::Committed {
            id: e,
            branch: "b".into(),
            commit: "".into()
        }),
        "a commit needs both a branch name and a commit id"
    );
    w.ok(Change::ProcessExited {
        id: e,
        iteration: 1,
        exit_code: Some(0),
        signal: None,
    });
    assert_eq!(w.execution(e).pid, None);
    w.ok(finish(e, ExecutionState::Succeeded, Some(0)));
    assert_eq!(
        w.refused(Change::Committed {
            id: e,
            branch: "b".into(),
            commit: "c".into()
        }),
        "execution #1 already finished as succeeded, so a commit cannot be recorded on it"
    );
}

#[test]
fn model_usage_is_checked_and_accepted_after_the_end() {
    let mut w = World::new();
    let (_, e) = running(&mut w);
    let usage = |id, model: &str, input, cached| Change::RecordModelUsage {
        id,
        model: model.into(),
        tokens: domain::Tokens {
            input,
            output: 1,
            cached,
        },
        cost_micros: 3,
    };
    assert_eq!(
        w.refused(usage(e, " ", 1, 0)),
        "model usage needs the model alias the request named"
    );
    assert_eq!(
        w.refused(usage(e, "fast", 1, 2)),
        "model usage says 2 cached tokens but only 1 input tokens: cached tokens are a part of \
         the input tokens"
    );
    assert_eq!(
        w.refused(usage(ExecutionId(9), "fast", 1, 0)),
        "execution #9 does not exist"
    );
    w.ok(finish(e, ExecutionState::Succeeded, Some(0)));
    let before = w.execution(e).clone();
    w.ok(usage(e, "fast", 10, 2));
    w.ok(Change::PauseProvider {
        id: e,
        provider: "openai".into(),
        until: Timestamp(T0.0 + 60_000),
        reason: "quota".into(),
    });
    // Recorded on the execution without changing its row.
    assert_eq!(w.execution(e), &before);
}

#[test]
fn every_event_moves_its_entitys_version_by_one() {
    let mut w = World::new();
    let (task, e) = running(&mut w);
    // created, running (claim)
    assert_eq!(w.state.version(EntityKind::Task, task.0), Some(2));
    // created, preparing, running, process started
    assert_eq!(w.state.version(EntityKind::Execution, e.0), Some(4));
}

/// A partial state asks for what a change needs, step by step, as a backend would load it.
#[test]
fn a_partial_state_names_what_to_load() {
    let mut w = World::new();
    let a = w.titled("a");
    let b = w.titled("b");
    let c = w.titled("c");
    w.ok(Change::AddDependency {
        id: b,
        blocked_by: c,
    });
    let change = Change::AddDependency {
        id: c,
        blocked_by: a,
    };
    let mut partial = State::partial();
    assert_eq!(
        wants(&partial, &change),
        [Key::Task(c), Key::Task(a), Key::Task(a)]
    );
    for id in [a, c] {
        partial.load_task(id, w.state.task(id).cloned());
    }
    assert!(wants(&partial, &change).iter().all(|k| partial.knows(k)));

    // The path from `b` goes through `c`, which must be loaded before the cycle is decided.
    let change = Change::AddDependency {
        id: c,
        blocked_by: b,
    };
    let mut partial = State::partial();
    partial.load_task(c, w.state.task(c).cloned());
    partial.load_task(b, w.state.task(b).cloned());
    assert!(wants(&partial, &change).iter().all(|k| partial.knows(k)));
    partial.load_task(a, None);
    assert!(!partial.knows(&Key::ActiveOf(c)));
    assert!(partial.knows(&Key::Task(a)));
}

#[test]
fn a_handoff_is_recorded_on_a_running_task_within_its_budget_and_voided_back() {
    let mut w = World::new();
    let (task, e) = running(&mut w);
    let part = |agency: &str, role: Option<&str>| domain::HandoffTarget {
        agency: agency.into(),
        role: role.map(str::to_string),
    };
    let hand_on = |id: TaskId, budget: u32| Change::HandOff {
        id,
        execution: e,
        from: part("code", Some("developer")),
        to: part("qa", Some("tester")),
        summary: "test it".into(),
        artifacts: vec!["NOTES.md".into()],
        budget,
    };
    let hand = |budget: u32| hand_on(task, budget);
    assert_eq!(
        w.refused(hand(0)),
        "task #1 has been handed off 0 times, the most its handoff budget allows \
         (handoffs_per_task: 0 in .agentgrid/config.yaml)"
    );
    let events = w.ok(hand(2));
    assert_eq!(kinds(&events), ["task_handed_off"]);
    assert_eq!(w.task(task).handoffs, 1);
    assert_eq!(w.task(task).handoff, Some(part("qa", Some("tester"))));
    w.ok(hand(2));
    assert!(
        w.refused(hand(2))
            .starts_with("task #1 has been handed off 2 times")
    );
    // Another task's execution cannot hand this one off.
    let other = w.titled("other");
    assert_eq!(
        w.refused(hand_on(other, 9)),
        "task #2 is open, so its work cannot be handed off"
    );
    // A void puts back the part the task was in.
    w.ok(Change::VoidHandoff {
        id: task,
        execution: e,
        restore: None,
        reason: "the execution ended failed".into(),
    });
    assert_eq!(w.task(task).handoff, None);
    assert_eq!(w.task(task).handoffs, 2, "a voided handoff still counts");
    // Once the execution ended, it hands nothing off.
    w.ok(finish(e, ExecutionState::Failed, Some(1)));
    assert!(
        w.refused(hand(9))
            .contains("already finished as failed, so a handoff cannot be recorded"),
        "{}",
        w.refused(hand(9))
    );
}
