//! Tasks: creation, edits, the state machine, dependencies and the read filters.

use domain::{
    EntityKind, EventKind, ExecutionKind, NewTask, TaskId, TaskState, Timestamp, task::TRANSITIONS,
};
use store::{Change, Error, SqliteStore, Store, TaskEdit, TaskFilter};

use crate::{T0, create, create_titled, fresh, sub_task};

#[tokio::test]
async fn a_task_round_trips_through_every_task_change() {
    let (_dir, store) = fresh();
    let blocker = create_titled(&store, "Design the format").await;
    let new = NewTask {
        body: "Users want their data out.".into(),
        labels: vec!["backend".into(), "export".into()],
        priority: 1,
        blocked_by: vec![blocker, blocker],
        agent: Some("claude".into()),
        ..NewTask::titled("Add CSV export")
    };
    let created = create(&store, new).await;
    let id = created.id;
    assert_eq!(created.state, TaskState::Open);
    assert_eq!(created.root, id);
    assert_eq!(created.depth, 0);
    assert_eq!(
        created.blocked_by,
        vec![blocker],
        "duplicate dependencies collapse to one"
    );
    assert_eq!(store.task(id).await.unwrap().as_ref(), Some(&created));

    let t1 = Timestamp(T0.0 + 1_000);
    let edit = TaskEdit {
        title: Some("Add CSV and TSV export".into()),
        labels: Some(vec!["export".into()]),
        priority: Some(0),
        agent: Some(None),
        ..TaskEdit::default()
    };
    let other = create_titled(&store, "Write docs").await;
    let applied = store
        .apply(
            "cli",
            t1,
            vec![
                Change::EditTask { id, edit },
                Change::AddDependency {
                    id,
                    blocked_by: other,
                },
                Change::RemoveDependency {
                    id,
                    blocked_by: blocker,
                },
                Change::Nudge { id },
                Change::Comment {
                    id,
                    text: "please hurry".into(),
                },
                Change::ScheduleTask {
                    id,
                    not_before: Some(Timestamp(T0.0 + 60_000)),
                    attempts: 2,
                    continuations: 1,
                    reason: Some("backoff".into()),
                },
                Change::SetBranch {
                    id,
                    branch: "agentgrid/t2".into(),
                },
                Change::ClaimCompletion {
                    id,
                    summary: "exports both formats".into(),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied.tasks.len(), 1, "one task touched, listed once");
    assert_eq!(applied.events.len(), 8);

    let task = store.task(id).await.unwrap().unwrap();
    assert_eq!(applied.tasks[0], task, "apply returns the final projection");
    assert_eq!(task.title, "Add CSV and TSV export");
    assert_eq!(task.body, "Users want their data out.");
    assert_eq!(task.labels, vec!["export".to_string()]);
    assert_eq!(task.priority, 0);
    assert_eq!(task.agent, None);
    assert_eq!(task.blocked_by, vec![other]);
    assert_eq!(task.nudged_at, Some(t1));
    assert_eq!(task.not_before, Some(Timestamp(T0.0 + 60_000)));
    assert_eq!((task.attempts, task.continuations), (2, 1));
    assert_eq!(task.branch.as_deref(), Some("agentgrid/t2"));
    assert_eq!(task.summary.as_deref(), Some("exports both formats"));
    assert_eq!(task.created_at, T0);
    assert_eq!(task.updated_at, t1);

    let names: Vec<&str> = store
        .entity_events(EntityKind::Task, id.0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(
        names,
        [
            "task_created",
            "task_edited",
            "task_dependency_added",
            "task_dependency_removed",
            "task_nudged",
            "task_commented",
            "task_scheduled",
            "task_branch_set",
            "task_completion_claimed",
        ]
    );
    let events = store.entity_events(EntityKind::Task, id.0).await.unwrap();
    assert_eq!(events[4].kind, EventKind::TaskNudged { by: "cli".into() });
    assert_eq!(
        events[5].kind,
        EventKind::TaskCommented {
            author: "cli".into(),
            text: "please hurry".into()
        }
    );
    match &events[0].kind {
        EventKind::TaskCreated { task } => assert_eq!(task, &created),
        other => panic!("expected task_created, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_task_input_is_refused_with_the_reason() {
    let (_dir, store) = fresh();
    let id = create_titled(&store, "A task").await;
    let cases: Vec<(Change, &str)> = vec![
        (Change::CreateTask(NewTask::titled("   ")), "needs a title"),
        (
            Change::CreateTask(sub_task("orphan", TaskId(99))),
            "parent task #99 does not exist",
        ),
        (
            Change::CreateTask(NewTask {
                blocked_by: vec![TaskId(42)],
                ..NewTask::titled("x")
            }),
            "task #42, named in blocked_by, does not exist",
        ),
        (
            Change::EditTask {
                id,
                edit: TaskEdit::default(),
            },
            "the edit changes nothing",
        ),
        (
            Change::EditTask {
                id,
                edit: TaskEdit {
                    priority: Some(7),
                    ..TaskEdit::default()
                },
            },
            "priority 7 is out of range",
        ),
        (
            Change::EditTask {
                id,
                edit: TaskEdit {
                    labels: Some(vec!["two words".into()]),
                    ..TaskEdit::default()
                },
            },
            "label `two words` is not allowed",
        ),
        (Change::Nudge { id: TaskId(5) }, "task #5 does not exist"),
        (
            Change::Comment {
                id,
                text: "  ".into(),
            },
            "a comment needs some text",
        ),
        (
            Change::SetBranch {
                id,
                branch: String::new(),
            },
            "a branch name cannot be empty",
        ),
    ];
    for (change, expected) in cases {
        let name = change.name();
        let err = store.apply("cli", T0, vec![change]).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Refused { index: 0, .. }), "{text}");
        assert!(text.contains(expected), "{name}: {text}");
        assert!(text.contains(&format!("change 0 ({name})")), "{text}");
    }
    assert_eq!(
        store.last_seq().await.unwrap(),
        1,
        "only the first task was ever recorded"
    );
}

#[tokio::test]
async fn a_three_level_tree_gets_roots_and_depths() {
    let (_dir, store) = fresh();
    let other = create_titled(&store, "Unrelated").await;
    let top = create_titled(&store, "Ship v1").await;
    let mid = create(&store, sub_task("Build the backend", top)).await;
    let leaf = create(&store, sub_task("Write the schema", mid.id)).await;
    assert_eq!((mid.root, mid.depth, mid.parent), (top, 1, Some(top)));
    assert_eq!((leaf.root, leaf.depth, leaf.parent), (top, 2, Some(mid.id)));
    let top_task = store.task(top).await.unwrap().unwrap();
    assert_eq!((top_task.root, top_task.depth), (top, 0));

    let ids = |tasks: Vec<domain::Task>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(store.children(top).await.unwrap()), vec![mid.id]);
    assert_eq!(
        ids(store.children(leaf.id).await.unwrap()),
        Vec::<TaskId>::new()
    );
    let tree = TaskFilter {
        root: Some(top),
        ..TaskFilter::default()
    };
    assert_eq!(
        ids(store.tasks(&tree).await.unwrap()),
        vec![top, mid.id, leaf.id]
    );
    let top_level = TaskFilter {
        parent: Some(None),
        ..TaskFilter::default()
    };
    assert_eq!(
        ids(store.tasks(&top_level).await.unwrap()),
        vec![other, top]
    );

    // A finished parent takes no more sub-tasks.
    store
        .apply(
            "cli",
            T0,
            vec![Change::SetTaskState {
                id: other,
                to: TaskState::Cancelled,
                reason: Some("not needed".into()),
            }],
        )
        .await
        .unwrap();
    let err = store
        .apply("cli", T0, vec![Change::CreateTask(sub_task("late", other))])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("parent task #1 is cancelled"),
        "{err}"
    );
}

#[tokio::test]
async fn task_filters_select_by_state_and_label() {
    let (_dir, store) = fresh();
    let a = create(
        &store,
        NewTask {
            labels: vec!["ui".into()],
            ..NewTask::titled("a")
        },
    )
    .await
    .id;
    let b = create(
        &store,
        NewTask {
            labels: vec!["db".into(), "ui".into()],
            ..NewTask::titled("b")
        },
    )
    .await
    .id;
    let c = create_titled(&store, "c").await;
    store
        .apply(
            "cli",
            T0,
            vec![Change::SetTaskState {
                id: b,
                to: TaskState::Cancelled,
                reason: None,
            }],
        )
        .await
        .unwrap();
    let ids = |tasks: Vec<domain::Task>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let all = store.tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(ids(all), vec![a, b, c]);
    let open = TaskFilter {
        states: vec![TaskState::Open],
        ..TaskFilter::default()
    };
    assert_eq!(ids(store.tasks(&open).await.unwrap()), vec![a, c]);
    let open_or_cancelled = TaskFilter {
        states: vec![TaskState::Open, TaskState::Cancelled],
        ..TaskFilter::default()
    };
    assert_eq!(
        ids(store.tasks(&open_or_cancelled).await.unwrap()),
        vec![a, b, c]
    );
    let ui = TaskFilter {
        labels: vec!["ui".into()],
        ..TaskFilter::default()
    };
    assert_eq!(ids(store.tasks(&ui).await.unwrap()), vec![a, b]);
    let open_ui = TaskFilter {
        labels: vec!["ui".into()],
        ..open
    };
    assert_eq!(ids(store.tasks(&open_ui).await.unwrap()), vec![a]);
    let none = TaskFilter {
        labels: vec!["u".into()],
        ..TaskFilter::default()
    };
    assert!(
        store.tasks(&none).await.unwrap().is_empty(),
        "labels match whole, not by prefix"
    );
    let db_and_ui = TaskFilter {
        labels: vec!["ui".into(), "db".into()],
        ..TaskFilter::default()
    };
    assert_eq!(
        ids(store.tasks(&db_and_ui).await.unwrap()),
        vec![b],
        "several labels: tasks carrying every one"
    );
}

/// Brings a new task into `state` through allowed transitions only.
async fn task_in(store: &SqliteStore, state: TaskState) -> TaskId {
    use TaskState::*;
    let id = create_titled(store, &format!("a task to end up {state}")).await;
    let path: &[TaskState] = match state {
        Open => &[],
        Running => &[Running],
        Waiting => &[Running, Waiting],
        Blocked => &[Running, Blocked],
        Done => &[Running, Done],
        Failed => &[Failed],
        Cancelled => &[Cancelled],
    };
    let changes = path
        .iter()
        .map(|&to| Change::SetTaskState {
            id,
            to,
            reason: None,
        })
        .collect::<Vec<_>>();
    if !changes.is_empty() {
        store.apply("engine", T0, changes).await.unwrap();
    }
    assert_eq!(store.task(id).await.unwrap().unwrap().state, state);
    id
}

#[tokio::test]
async fn every_task_transition_is_allowed_or_refused_as_the_table_says() {
    let (_dir, store) = fresh();
    let mut refused = 0;
    for from in TaskState::ALL {
        for to in TaskState::ALL {
            let id = task_in(&store, from).await;
            let before = store.last_seq().await.unwrap();
            let result = store
                .apply(
                    "cli",
                    T0,
                    vec![Change::SetTaskState {
                        id,
                        to,
                        reason: None,
                    }],
                )
                .await;
            // Done goes back to open only by a rejected approval (`DecideApproval`), never
            // by a plain state change.
            let by_rejection = from == TaskState::Done && to == TaskState::Open;
            let allowed =
                !by_rejection && TRANSITIONS.iter().any(|(f, t, _)| *f == from && *t == to);
            match result {
                Ok(applied) => {
                    assert!(allowed, "{from} -> {to} went through");
                    assert_eq!(applied.tasks[0].state, to);
                    assert_eq!(
                        applied.events[0].kind,
                        EventKind::TaskStateChanged {
                            from,
                            to,
                            reason: None
                        }
                    );
                }
                Err(err) => {
                    assert!(!allowed, "{from} -> {to} was refused: {err}");
                    let expected = if by_rejection {
                        format!("task #{id} is done; a done task goes back to open only when")
                    } else {
                        format!("task #{id} cannot go from {from} to {to}")
                    };
                    assert!(err.to_string().contains(&expected), "{err}");
                    assert_eq!(store.last_seq().await.unwrap(), before);
                    assert_eq!(store.task(id).await.unwrap().unwrap().state, from);
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(refused, 49 - TRANSITIONS.len() + 1);
}

#[tokio::test]
async fn reopening_resets_the_counters_and_stopping_records_the_reason() {
    let (_dir, store) = fresh();
    let id = task_in(&store, TaskState::Running).await;
    store
        .apply(
            "engine",
            T0,
            vec![
                Change::ScheduleTask {
                    id,
                    not_before: None,
                    attempts: 3,
                    continuations: 2,
                    reason: None,
                },
                Change::SetTaskState {
                    id,
                    to: TaskState::Blocked,
                    reason: Some("needs an API key".into()),
                },
            ],
        )
        .await
        .unwrap();
    let blocked = store.task(id).await.unwrap().unwrap();
    assert_eq!(blocked.summary.as_deref(), Some("needs an API key"));
    assert_eq!((blocked.attempts, blocked.continuations), (3, 2));
    store
        .apply(
            "cli",
            T0,
            vec![Change::SetTaskState {
                id,
                to: TaskState::Open,
                reason: None,
            }],
        )
        .await
        .unwrap();
    let reopened = store.task(id).await.unwrap().unwrap();
    assert_eq!((reopened.attempts, reopened.continuations), (0, 0));

    // Running -> Open is a continuation, not a reopening: the counters stay.
    let running = task_in(&store, TaskState::Running).await;
    store
        .apply(
            "engine",
            T0,
            vec![
                Change::ScheduleTask {
                    id: running,
                    not_before: None,
                    attempts: 1,
                    continuations: 1,
                    reason: None,
                },
                Change::SetTaskState {
                    id: running,
                    to: TaskState::Open,
                    reason: None,
                },
            ],
        )
        .await
        .unwrap();
    let task = store.task(running).await.unwrap().unwrap();
    assert_eq!((task.attempts, task.continuations), (1, 1));
}

#[tokio::test]
async fn dependency_cycles_are_refused_and_named() {
    let (_dir, store) = fresh();
    let a = create_titled(&store, "a").await;
    let b = create(
        &store,
        NewTask {
            blocked_by: vec![a],
            ..NewTask::titled("b")
        },
    )
    .await
    .id;
    let c = create(
        &store,
        NewTask {
            blocked_by: vec![b],
            ..NewTask::titled("c")
        },
    )
    .await
    .id;
    let before = store.last_seq().await.unwrap();

    let err = store
        .apply(
            "cli",
            T0,
            vec![Change::AddDependency {
                id: a,
                blocked_by: c,
            }],
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("change 0 (add_dependency)"), "{text}");
    assert!(
        text.contains(&format!("#{a} → #{c} → #{b} → #{a}")),
        "{text}"
    );

    let err = store
        .apply(
            "cli",
            T0,
            vec![Change::AddDependency {
                id: a,
                blocked_by: a,
            }],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot be blocked by itself"),
        "{err}"
    );
    let err = store
        .apply(
            "cli",
            T0,
            vec![Change::AddDependency {
                id: c,
                blocked_by: b,
            }],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already blocked by"), "{err}");
    let err = store
        .apply(
            "cli",
            T0,
            vec![Change::RemoveDependency {
                id: a,
                blocked_by: b,
            }],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing to remove"), "{err}");
    let err = store
        .apply(
            "cli",
            T0,
            vec![Change::AddDependency {
                id: a,
                blocked_by: TaskId(77),
            }],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("task #77 does not exist"), "{err}");
    assert_eq!(store.last_seq().await.unwrap(), before);

    // A diamond is not a cycle: c may wait for a directly as well as through b.
    store
        .apply(
            "cli",
            T0,
            vec![Change::AddDependency {
                id: c,
                blocked_by: a,
            }],
        )
        .await
        .unwrap();
    assert_eq!(store.task(c).await.unwrap().unwrap().blocked_by, vec![a, b]);

    // Removing an edge of the would-be cycle makes the same dependency legal.
    store
        .apply(
            "cli",
            T0,
            vec![
                Change::RemoveDependency {
                    id: b,
                    blocked_by: a,
                },
                Change::RemoveDependency {
                    id: c,
                    blocked_by: a,
                },
                Change::AddDependency {
                    id: a,
                    blocked_by: c,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(store.task(a).await.unwrap().unwrap().blocked_by, vec![c]);
    assert!(store.task(b).await.unwrap().unwrap().blocked_by.is_empty());
}

#[tokio::test]
async fn a_change_sees_the_effects_of_earlier_changes_in_its_batch() {
    let (_dir, store) = fresh();
    let id = create_titled(&store, "a").await;
    // The work execution needs an open task; the first change makes it so.
    store
        .apply(
            "cli",
            T0,
            vec![Change::SetTaskState {
                id,
                to: TaskState::Cancelled,
                reason: None,
            }],
        )
        .await
        .unwrap();
    let applied = store
        .apply(
            "cli",
            T0,
            vec![
                Change::SetTaskState {
                    id,
                    to: TaskState::Open,
                    reason: None,
                },
                Change::CreateExecution {
                    task_id: id,
                    kind: ExecutionKind::Work,
                    agent: "claude".into(),
                    attempt: 1,
                    lease: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied.tasks.len(), 1);
    assert_eq!(applied.tasks[0].state, TaskState::Running);
    assert_eq!(applied.executions.len(), 1);
}

#[tokio::test]
async fn a_keyed_sub_task_is_made_once_per_key_and_parent() {
    let (_dir, store) = fresh();
    let parent = create_titled(&store, "Big job").await;
    let new = NewTask {
        parent: Some(parent),
        ..NewTask::titled("A part")
    };
    let keyed = |key: &str| Change::CreateKeyedTask {
        new: new.clone(),
        key: key.into(),
    };
    let applied = store.apply("agent", T0, vec![keyed("k")]).await.unwrap();
    let made = applied
        .tasks
        .iter()
        .find(|t| t.parent == Some(parent))
        .unwrap()
        .id;
    let found = store.call_key(parent, "subtask_create", "k").await.unwrap();
    assert_eq!(found.and_then(|c| c.result), Some(made));
    assert_eq!(
        store
            .call_key(parent, "subtask_create", "other")
            .await
            .unwrap(),
        None
    );
    let err = store
        .apply("agent", T0, vec![keyed("k")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already made"), "{err}");
    assert_eq!(
        store.children(parent).await.unwrap().len(),
        1,
        "nothing was made twice"
    );
    // Another key makes another sub-task, alike or not.
    store.apply("agent", T0, vec![keyed("k2")]).await.unwrap();
    assert_eq!(store.children(parent).await.unwrap().len(), 2);
    // Keyed comments are per task and key.
    let comment = |key: &str| Change::KeyedComment {
        id: parent,
        text: "planned".into(),
        key: key.into(),
    };
    store.apply("agent", T0, vec![comment("c")]).await.unwrap();
    assert!(store.apply("agent", T0, vec![comment("c")]).await.is_err());
    let comments = store
        .entity_events(EntityKind::Task, parent.0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::TaskCommented { .. }))
        .count();
    assert_eq!(comments, 1);
}

#[tokio::test]
async fn a_done_sub_task_is_due_for_a_merge_until_one_succeeds() {
    let (_dir, store) = fresh();
    let parent = create_titled(&store, "Big job").await;
    let part = create(&store, sub_task("A part", parent)).await.id;
    for to in [TaskState::Running, TaskState::Done] {
        let change = Change::SetTaskState {
            id: part,
            to,
            reason: None,
        };
        store.apply("engine", T0, vec![change]).await.unwrap();
    }
    let due = store.unfinished_merges(Some(parent)).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].child, due[0].failed.clone()), (part, None));
    let events = store
        .entity_events(EntityKind::Task, parent.0)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::TaskMergePending { child: part }),
        "the merge is recorded as due on the parent"
    );

    let failed = Change::FinishMerge {
        child: part,
        outcome: store::MergeResult::Failed {
            reason: "conflicts in a.txt".into(),
        },
    };
    let applied = store.apply("engine", T0, vec![failed]).await.unwrap();
    let p = applied.tasks.iter().find(|t| t.id == parent).unwrap();
    assert_eq!(
        p.merge_failed.as_deref(),
        Some("sub-task #2: conflicts in a.txt")
    );
    let due = store.unfinished_merges(None).await.unwrap();
    assert_eq!(due[0].failed.as_deref(), Some("conflicts in a.txt"));

    let merged = Change::FinishMerge {
        child: part,
        outcome: store::MergeResult::Merged {
            commit: Some("abc".into()),
        },
    };
    store
        .apply("engine", T0, vec![merged.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.task(parent).await.unwrap().unwrap().merge_failed,
        None
    );
    assert!(store.unfinished_merges(None).await.unwrap().is_empty());
    // A merge is recorded as done once.
    assert!(store.apply("engine", T0, vec![merged]).await.is_err());
}
