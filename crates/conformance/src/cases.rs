//! The cases of the suite. Each takes a fresh store and panics, naming what broke, when the
//! store does not behave as every backend must.

use std::collections::HashMap;
use std::sync::Arc;

use domain::{
    EntityKind, Event, ExecutionId, ExecutionKind, ExecutionState, NewTask, TaskId, TaskState,
    Timestamp, Usage,
};
use store::{Applied, Change, Error, ExecutionFilter, MergeResult, Store, TaskFilter, UsageScope};

use crate::Fresh;

mod leases;
mod messages;
pub use leases::{
    a_claim_carries_its_node_lease_and_fencing_token, a_lease_is_renewed_only_by_its_live_holder,
    a_renewal_and_an_expiry_race_to_one_outcome, a_stale_token_writes_nothing,
    nodes_recover_only_each_others_expired_executions,
};
pub use messages::{
    a_flooding_sender_is_bounded_across_batches, a_message_persists_and_is_acknowledged_once,
    an_announcement_is_acknowledged_once_per_reader, any_open_message_follows_the_messages_states,
    identical_alerts_open_once, inboxes_and_sweeps_follow_receivers_and_time,
    racing_acknowledgements_take_one, remarked_tasks_are_those_with_something_said,
};

const T0: Timestamp = Timestamp(1_700_000_000_000);

async fn apply(store: &dyn Store, changes: Vec<Change>) -> Applied {
    let names: Vec<&str> = changes.iter().map(Change::name).collect();
    match store.apply("conformance", T0, changes).await {
        Ok(applied) => applied,
        Err(e) => panic!("the batch {names:?} was refused: {e}"),
    }
}

async fn create(store: &dyn Store, new: NewTask) -> TaskId {
    apply(store, vec![Change::CreateTask(new)]).await.tasks[0].id
}

fn sub_task(title: &str, parent: TaskId) -> NewTask {
    NewTask {
        parent: Some(parent),
        ..NewTask::titled(title)
    }
}

fn claim(task_id: TaskId) -> Change {
    Change::CreateExecution {
        task_id,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: None,
    }
}

async fn start(store: &dyn Store, task: TaskId) -> ExecutionId {
    apply(store, vec![claim(task)]).await.executions[0].id
}

/// The changes that take an execution from queued to a clean end.
fn run_to_end(id: ExecutionId) -> Vec<Change> {
    vec![
        Change::SetExecutionState {
            id,
            to: ExecutionState::Preparing,
            reason: None,
        },
        Change::SetExecutionState {
            id,
            to: ExecutionState::Running,
            reason: None,
        },
        Change::ProcessStarted {
            id,
            pid: 4242,
            iteration: 1,
            log_path: Some("/logs/1.log".into()),
        },
        Change::ProcessExited {
            id,
            iteration: 1,
            exit_code: Some(0),
            signal: None,
        },
        Change::FinishExecution {
            id,
            state: ExecutionState::Succeeded,
            exit_code: None,
            usage: Usage {
                wall_ms: 1500,
                cpu_ms: 700,
            },
            summary: Some("done".into()),
        },
    ]
}

async fn all_events(store: &dyn Store) -> Vec<Event> {
    store
        .events_after(0, u32::MAX)
        .await
        .expect("the log reads")
}

/// A created task comes back with its id, as stored, with its event; reads agree.
pub async fn a_batch_returns_what_it_wrote(fresh: Fresh) {
    let store = &*fresh.store;
    let applied = apply(
        store,
        vec![
            Change::CreateTask(NewTask::titled("a")),
            Change::CreateTask(NewTask::titled("b")),
        ],
    )
    .await;
    assert_eq!(applied.tasks.len(), 2, "both created tasks are returned");
    let (a, b) = (&applied.tasks[0], &applied.tasks[1]);
    assert!(a.id < b.id, "ids grow in the order of creation");
    assert_eq!((a.root, a.state), (a.id, TaskState::Open));
    assert_eq!(store.task(a.id).await.unwrap().as_ref(), Some(a));
    assert_eq!(applied.events.len(), 2);
    assert_eq!(store.last_seq().await.unwrap(), applied.events[1].seq);
    let child = create(store, sub_task("child", a.id)).await;
    let children = store.children(a.id).await.unwrap();
    assert_eq!(children.iter().map(|t| t.id).collect::<Vec<_>>(), [child]);
    assert_eq!((children[0].root, children[0].depth), (a.id, 1));
    let top = store
        .tasks(&TaskFilter {
            parent: Some(None),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(store.task(TaskId(999_999)).await.unwrap(), None);
}

/// Any refused change leaves nothing of its batch: no rows, no events, no used ids.
pub async fn a_refused_change_rolls_back_its_whole_batch(fresh: Fresh) {
    let store = &*fresh.store;
    let a = create(store, NewTask::titled("a")).await;
    let before = store.last_seq().await.unwrap();
    let err = store
        .apply(
            "conformance",
            T0,
            vec![
                Change::CreateTask(NewTask::titled("b")),
                Change::Comment {
                    id: a,
                    text: "note".into(),
                },
                Change::SetTaskState {
                    id: a,
                    to: TaskState::Done,
                    reason: None,
                },
            ],
        )
        .await
        .expect_err("open → done is refused");
    assert!(
        matches!(
            &err,
            Error::Refused {
                index: 2,
                change: "set_task_state",
                ..
            }
        ),
        "the error names the change: {err}"
    );
    assert_eq!(
        err.to_string(),
        "change 2 (set_task_state) was refused: task #1 cannot go from open to done; from open \
         it can go to running, failed, cancelled"
    );
    assert_eq!(store.last_seq().await.unwrap(), before, "no event was kept");
    assert_eq!(store.tasks(&TaskFilter::default()).await.unwrap().len(), 1);
    let b = create(store, NewTask::titled("b")).await;
    assert!(b > a);
}

/// A second claim on a task is refused while the first is active, in another batch or in
/// the same one, and allowed once it ended and the task is open again.
pub async fn a_task_has_at_most_one_active_execution(fresh: Fresh) {
    let store = &*fresh.store;
    let task = create(store, NewTask::titled("a")).await;
    let first = start(store, task).await;
    let err = store
        .apply("conformance", T0, vec![claim(task)])
        .await
        .expect_err("a second claim is refused");
    assert!(
        matches!(err, Error::AlreadyActive { index: 0, task: t, execution } if t == task && execution == first),
        "{err}"
    );
    let other = create(store, NewTask::titled("b")).await;
    let err = store
        .apply("conformance", T0, vec![claim(other), claim(other)])
        .await
        .expect_err("two claims in one batch");
    assert_eq!(err.change_index(), Some(1), "{err}");
    let mut end = run_to_end(first);
    end.push(Change::SettleTask {
        id: task,
        to: TaskState::Open,
        reason: None,
    });
    end.push(claim(task));
    let applied = apply(store, end).await;
    let active = store
        .executions(&ExecutionFilter {
            task: Some(task),
            active_only: true,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    assert_ne!(active[0].id, first);
    assert_eq!(applied.tasks[0].executions, 2);
}

/// Claims racing from many callers at once make exactly one execution.
pub async fn racing_claims_make_one_execution(fresh: Fresh) {
    let store = Arc::clone(&fresh.store);
    let task = create(&*store, NewTask::titled("contended")).await;
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.apply("conformance", T0, vec![claim(task)]).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.expect("the racer ran") {
            Ok(_) => won += 1,
            Err(Error::AlreadyActive { .. } | Error::Refused { .. }) => {}
            Err(e) => panic!("a losing claim failed for another reason: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one claim wins");
    let executions = store
        .executions(&ExecutionFilter {
            task: Some(task),
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(executions.len(), 1);
}

/// An outcome is recorded once: a second finish is refused as such.
pub async fn an_execution_finishes_once(fresh: Fresh) {
    let store = &*fresh.store;
    let task = create(store, NewTask::titled("a")).await;
    let e = start(store, task).await;
    let applied = apply(store, run_to_end(e)).await;
    let ended = &applied.executions[0];
    assert_eq!(ended.state, ExecutionState::Succeeded);
    assert_eq!(ended.exit_code, Some(0), "the process's exit code stands");
    assert_eq!(ended.log_path.as_deref(), Some("/logs/1.log"));
    assert_eq!((ended.pid, ended.ended_at), (None, Some(T0)));
    let err = store
        .apply(
            "conformance",
            T0,
            vec![Change::FinishExecution {
                id: e,
                state: ExecutionState::Failed,
                exit_code: Some(1),
                usage: Usage::default(),
                summary: None,
            }],
        )
        .await
        .expect_err("a second finish is refused");
    assert!(
        matches!(err, Error::AlreadyFinished { execution, state: ExecutionState::Succeeded, .. } if execution == e),
        "{err}"
    );
    assert_eq!(store.execution(e).await.unwrap().as_ref(), Some(ended));
}

/// Reading the log in pages from any position gives every event once, in order of a `seq`
/// that only grows. (Gaps are allowed: a backend whose sequences skip the numbers of rolled
/// back transactions conforms; SQLite's own tests hold it to a gapless log.)
pub async fn events_after_resumes_from_any_position(fresh: Fresh) {
    let store = &*fresh.store;
    let a = create(store, NewTask::titled("a")).await;
    let e = start(store, a).await;
    apply(store, run_to_end(e)).await;
    for i in 0..5 {
        apply(
            store,
            vec![Change::Comment {
                id: a,
                text: format!("note {i}"),
            }],
        )
        .await;
    }
    let all = all_events(store).await;
    assert!(all.len() > 10);
    assert!(all[0].seq >= 1);
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq grows from event to event"
    );
    assert_eq!(store.last_seq().await.unwrap(), all[all.len() - 1].seq);
    for page in [1, 2, 3, 7] {
        let mut read = Vec::new();
        let mut after = 0;
        loop {
            let events = store.events_after(after, page).await.unwrap();
            assert!(events.len() <= page as usize);
            let Some(last) = events.last() else { break };
            after = last.seq;
            read.extend(events);
        }
        assert_eq!(read, all, "pages of {page} give the whole log");
    }
    let middle = all[all.len() / 2].seq;
    let tail = store.events_after(middle, u32::MAX).await.unwrap();
    assert_eq!(tail.as_slice(), &all[all.len() / 2 + 1..]);
}

/// Each entity's events are numbered 1, 2, 3 … in its own order, and `entity_events` gives
/// exactly the events of the log that belong to it.
pub async fn every_entity_counts_its_versions_from_one(fresh: Fresh) {
    let store = &*fresh.store;
    let parent = create(store, NewTask::titled("parent")).await;
    let child = create(store, sub_task("child", parent)).await;
    let e = start(store, child).await;
    let mut end = run_to_end(e);
    end.push(Change::SettleTask {
        id: child,
        to: TaskState::Done,
        reason: None,
    });
    apply(store, end).await;
    let all = all_events(store).await;
    let mut by_entity: HashMap<(EntityKind, i64), Vec<Event>> = HashMap::new();
    for event in &all {
        by_entity
            .entry((event.entity, event.entity_id))
            .or_default()
            .push(event.clone());
    }
    assert_eq!(by_entity.len(), 3, "two tasks and one execution");
    for ((entity, id), events) in by_entity {
        let versions: Vec<u64> = events.iter().map(|e| e.entity_seq).collect();
        let expected: Vec<u64> = (1..=events.len() as u64).collect();
        assert_eq!(versions, expected, "the versions of {entity:?} #{id}");
        assert_eq!(store.entity_events(entity, id).await.unwrap(), events);
    }
}

/// A keyed call is made once per key and task; the key remembers what it made.
pub async fn an_idempotency_key_is_used_once(fresh: Fresh) {
    let store = &*fresh.store;
    let parent = create(store, NewTask::titled("parent")).await;
    let keyed = Change::CreateKeyedTask {
        new: sub_task("child", parent),
        key: "plan:1".into(),
    };
    assert_eq!(
        store
            .call_key(parent, "subtask_create", "plan:1")
            .await
            .unwrap(),
        None
    );
    let child = apply(store, vec![keyed.clone()]).await.tasks[0].id;
    let made = store
        .call_key(parent, "subtask_create", "plan:1")
        .await
        .unwrap();
    assert_eq!(made.map(|k| k.result), Some(Some(child)));
    let before = store.last_seq().await.unwrap();
    let err = store
        .apply("conformance", T0, vec![keyed])
        .await
        .expect_err("the key is used");
    assert_eq!(err.change_index(), Some(0));
    assert_eq!(store.last_seq().await.unwrap(), before);
    assert_eq!(store.children(parent).await.unwrap().len(), 1);
    // A key belongs to its task and op: the same key elsewhere is free.
    let comment = |id| Change::KeyedComment {
        id,
        text: "hello".into(),
        key: "plan:1".into(),
    };
    apply(store, vec![comment(parent)]).await;
    apply(store, vec![comment(child)]).await;
    assert!(
        store
            .apply("conformance", T0, vec![comment(child)])
            .await
            .is_err()
    );
    // A refused batch leaves no key behind.
    let rolled_back = store
        .apply(
            "conformance",
            T0,
            vec![
                Change::CreateKeyedTask {
                    new: sub_task("other", parent),
                    key: "plan:2".into(),
                },
                Change::Nudge {
                    id: TaskId(999_999),
                },
            ],
        )
        .await;
    assert!(rolled_back.is_err());
    assert_eq!(
        store
            .call_key(parent, "subtask_create", "plan:2")
            .await
            .unwrap(),
        None
    );
}

/// A done sub-task's merge is due until it succeeds; a failure shows on the parent.
pub async fn a_done_sub_task_is_merged_once(fresh: Fresh) {
    let store = &*fresh.store;
    let parent = create(store, NewTask::titled("parent")).await;
    let child = create(store, sub_task("child", parent)).await;
    assert!(store.unfinished_merges(None).await.unwrap().is_empty());
    let e = start(store, child).await;
    let mut end = run_to_end(e);
    end.push(Change::SettleTask {
        id: child,
        to: TaskState::Done,
        reason: None,
    });
    apply(store, end).await;
    let due = store.unfinished_merges(Some(parent)).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].child, due[0].parent, due[0].failed.as_deref()),
        (child, parent, None)
    );
    let failed = apply(
        store,
        vec![Change::FinishMerge {
            child,
            outcome: MergeResult::Failed {
                reason: "conflict in a.rs".into(),
            },
        }],
    )
    .await;
    assert_eq!(
        failed.tasks[0].merge_failed.as_deref(),
        Some(format!("sub-task #{child}: conflict in a.rs").as_str())
    );
    let due = store.unfinished_merges(None).await.unwrap();
    assert_eq!(due[0].failed.as_deref(), Some("conflict in a.rs"));
    apply(
        store,
        vec![Change::FinishMerge {
            child,
            outcome: MergeResult::Merged {
                commit: Some("abc".into()),
            },
        }],
    )
    .await;
    assert!(store.unfinished_merges(None).await.unwrap().is_empty());
    assert_eq!(
        store.task(parent).await.unwrap().unwrap().merge_failed,
        None
    );
    let again = store
        .apply(
            "conformance",
            T0,
            vec![Change::FinishMerge {
                child,
                outcome: MergeResult::Merged { commit: None },
            }],
        )
        .await;
    assert!(again.is_err(), "a merged child is not due again");
}

/// Usage sums per execution, per tree and per model add up the recorded requests, on a
/// finished execution too.
pub async fn model_usage_adds_up_per_execution_tree_and_model(fresh: Fresh) {
    let store = &*fresh.store;
    let root = create(store, NewTask::titled("root")).await;
    let child = create(store, sub_task("child", root)).await;
    let a = start(store, root).await;
    let b = start(store, child).await;
    let usage = |id, model: &str, input| Change::RecordModelUsage {
        id,
        model: model.into(),
        tokens: domain::Tokens {
            input,
            output: 10,
            cached: 1,
        },
        cost_micros: 100,
    };
    apply(store, vec![usage(a, "fast", 5), usage(a, "smart", 7)]).await;
    apply(store, run_to_end(b)).await;
    apply(store, vec![usage(b, "fast", 11)]).await;
    let of_a = store.model_usage(&UsageScope::Execution(a)).await.unwrap();
    assert_eq!(
        (of_a.requests, of_a.tokens.input, of_a.cost_micros),
        (2, 12, 200)
    );
    let tree = store.model_usage(&UsageScope::Tree(root)).await.unwrap();
    assert_eq!(
        (tree.requests, tree.tokens.input, tree.tokens.output),
        (3, 23, 30)
    );
    let by_model = store
        .model_usage_by_model(&UsageScope::Tree(root))
        .await
        .unwrap();
    let models: Vec<(&str, u64)> = by_model
        .iter()
        .map(|(m, u)| (m.as_str(), u.tokens.input))
        .collect();
    assert_eq!(models, [("fast", 16), ("smart", 7)]);
    let day = store
        .model_usage(&UsageScope::Agent {
            agent: "coder".into(),
            from: T0,
            until: Timestamp(T0.0 + 1),
        })
        .await
        .unwrap();
    assert_eq!(day.requests, 3);
    let bad = store
        .apply(
            "conformance",
            T0,
            vec![usage(ExecutionId(999_999), "fast", 1)],
        )
        .await;
    assert!(bad.is_err(), "usage needs an execution");
    assert_eq!(
        store.model_usage(&UsageScope::Tree(root)).await.unwrap(),
        tree
    );
}

/// Pauses, throttles and resumptions of providers are events and a standing.
pub async fn provider_standings_follow_their_events(fresh: Fresh) {
    let store = &*fresh.store;
    let task = create(store, NewTask::titled("a")).await;
    let e = start(store, task).await;
    assert!(store.providers().await.unwrap().is_empty());
    let until = Timestamp(T0.0 + 60_000);
    apply(
        store,
        vec![
            Change::PauseProvider {
                id: e,
                provider: "openai".into(),
                until,
                reason: "quota".into(),
            },
            Change::ThrottleProvider {
                id: e,
                provider: "anthropic".into(),
                limit: Some(2),
            },
        ],
    )
    .await;
    let standings = store.providers().await.unwrap();
    let names: Vec<&str> = standings.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["anthropic", "openai"]);
    assert_eq!(standings[0].concurrency, Some(2));
    assert_eq!(standings[1].paused_until, Some(until));
    assert_eq!(standings[1].paused_by, Some(e));
    assert_eq!(standings[1].pause_reason.as_deref(), Some("quota"));
    apply(
        store,
        vec![Change::ResumeProvider {
            id: e,
            provider: "openai".into(),
        }],
    )
    .await;
    let openai = store.providers().await.unwrap().remove(1);
    assert_eq!((openai.paused_until, openai.paused_by), (None, None));
    let kinds: Vec<&str> = store
        .entity_events(EntityKind::Execution, e.0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(
        kinds,
        [
            "execution_created",
            "provider_paused",
            "provider_throttled",
            "provider_resumed"
        ]
    );
}

/// The tasks and executions a store projects are exactly what folding its whole log with the
/// tracker's `evolve` gives.
pub async fn the_projection_is_the_fold_of_the_log(fresh: Fresh) {
    let store = &*fresh.store;
    let a = create(store, NewTask::titled("a")).await;
    let b = create(
        store,
        NewTask {
            blocked_by: vec![a],
            labels: vec!["ui".into()],
            ..NewTask::titled("b")
        },
    )
    .await;
    let child = create(store, sub_task("child", a)).await;
    apply(
        store,
        vec![
            Change::Nudge { id: b },
            Change::RemoveDependency {
                id: b,
                blocked_by: a,
            },
            Change::AddDependency {
                id: a,
                blocked_by: b,
            },
            Change::SetBranch {
                id: a,
                branch: "agentgrid/a".into(),
            },
            Change::ScheduleTask {
                id: b,
                not_before: Some(Timestamp(T0.0 + 5)),
                attempts: 2,
                continuations: 1,
                reason: Some("backoff".into()),
            },
        ],
    )
    .await;
    let e = start(store, child).await;
    let mut end = run_to_end(e);
    end.push(Change::SettleTask {
        id: child,
        to: TaskState::Done,
        reason: Some("validated".into()),
    });
    end.push(Change::FinishMerge {
        child,
        outcome: MergeResult::Failed {
            reason: "conflict".into(),
        },
    });
    apply(store, end).await;
    let e2 = start(store, b).await;
    apply(
        store,
        vec![
            Change::FinishExecution {
                id: e2,
                state: ExecutionState::Cancelled,
                exit_code: None,
                usage: Usage::default(),
                summary: Some("stopped".into()),
            },
            Change::SetTaskState {
                id: b,
                to: TaskState::Cancelled,
                reason: Some("not needed".into()),
            },
            Change::SetTaskState {
                id: b,
                to: TaskState::Open,
                reason: None,
            },
        ],
    )
    .await;

    let mut folded = tracker::State::complete();
    for event in all_events(store).await {
        tracker::evolve(&mut folded, &tracker::Event::Logged((&event).into()));
    }
    let tasks = store.tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.len(), 3);
    for task in &tasks {
        assert_eq!(
            folded.task(task.id),
            Some(task),
            "task #{} and its fold",
            task.id
        );
    }
    let executions = store.executions(&ExecutionFilter::default()).await.unwrap();
    assert_eq!(executions.len(), 2);
    for e in &executions {
        assert_eq!(
            folded.execution(e.id),
            Some(e),
            "execution #{} and its fold",
            e.id
        );
    }
    assert_eq!(folded.tasks().count(), tasks.len());
}
