//! The commands: their rules, their actor, and that a refused one changes nothing.

use app::{Actor, AddTask, Cancel, Comment, EditTask, Error, Import, Nudge, Reopen, TaskShow};
use domain::{NewTask, TaskId, TaskState};
use store::{Change, Store};

use crate::{T0, ada, fixture};

async fn add(app: &app::App, title: &str, parent: Option<TaskId>) -> TaskId {
    let new = NewTask {
        parent,
        ..NewTask::titled(title)
    };
    app.execute(&ada(), AddTask(new)).await.unwrap().id
}

async fn state(store: &store::SqliteStore, id: TaskId) -> TaskState {
    store.task(id).await.unwrap().unwrap().state
}

fn invalid(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(e @ (Error::Invalid { .. } | Error::Refused { .. })) => e.to_string(),
        other => panic!("expected a refused request, got {other:?}"),
    }
}

#[tokio::test]
async fn a_command_records_its_actor_and_a_bad_one_writes_nothing() {
    let f = fixture();
    let id = add(&f.app, "Add CSV export", None).await;
    let agent = running(&f.store, id).await;
    let seq = f.store.last_seq().await.unwrap();
    let comment = Comment::new(id, "halfway");
    f.app.execute(&agent, comment).await.unwrap();
    f.app.execute(&Actor::Engine, Nudge { id }).await.unwrap();
    let events = f.store.events_after(seq, 10).await.unwrap();
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, ["agent:coder#1", "engine"]);
    assert!(events.iter().all(|e| e.at == T0), "{events:?}");

    let seq = f.store.last_seq().await.unwrap();
    let bad = NewTask {
        priority: 9,
        ..NewTask::titled("Too urgent")
    };
    let message = invalid(f.app.execute(&ada(), AddTask(bad)).await);
    assert!(message.contains("priority 9 is out of range"), "{message}");
    let unknown = invalid(f.app.execute(&ada(), Reopen::task(TaskId(42))).await);
    assert_eq!(
        unknown,
        "task #42 does not exist: see `agentgrid task list`"
    );
    assert_eq!(f.store.last_seq().await.unwrap(), seq);
}

/// Claims `task` for an execution of `coder`, as the engine does, and names it as an actor.
async fn running(store: &store::SqliteStore, task: TaskId) -> Actor {
    let claim = Change::CreateExecution {
        task_id: task,
        kind: domain::ExecutionKind::Work,
        agent: "coder".into(),
        attempt: 1,
        lease: None,
    };
    let applied = store.apply("engine", T0, vec![claim]).await.unwrap();
    Actor::Execution {
        id: applied.executions[0].id,
        agent: "coder".into(),
    }
}

#[tokio::test]
async fn an_execution_changes_only_its_own_task_and_is_refused_as_a_person_is() {
    let f = fixture();
    let own = add(&f.app, "Its own", None).await;
    let other = add(&f.app, "Someone else's", None).await;
    let agent = running(&f.store, own).await;
    let seq = f.store.last_seq().await.unwrap();

    let refused = invalid(
        f.app
            .execute(&agent, Comment::new(other, "I was here"))
            .await,
    );
    assert_eq!(
        refused,
        format!("execution #1 works on task #{own} and may not change task #{other}")
    );
    let claim = app::ClaimCompletion {
        task: other,
        summary: "done".into(),
    };
    assert!(invalid(f.app.execute(&agent, claim).await).contains("may not change"));

    // The tracker's rules answer an agent's nudge and a person's in the same words.
    let by_agent = invalid(f.app.execute(&agent, Nudge { id: TaskId(99) }).await);
    let by_person = invalid(f.app.execute(&ada(), Nudge { id: TaskId(99) }).await);
    assert_eq!(by_agent, by_person);
    assert!(by_agent.contains("#99"), "{by_agent}");
    assert_eq!(
        f.store.last_seq().await.unwrap(),
        seq,
        "nothing was written"
    );

    // Its own task it may change, under its own name; a keyed comment is made once.
    let keyed = Comment {
        key: Some("key:progress".into()),
        ..Comment::new(own, "halfway")
    };
    assert!(f.app.execute(&agent, keyed.clone()).await.unwrap());
    assert!(!f.app.execute(&agent, keyed).await.unwrap());
    let events = f.store.events_after(seq, 10).await.unwrap();
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, ["agent:coder#1"]);
}

#[tokio::test]
async fn cancel_with_cascade_takes_the_open_tasks_below_deepest_first() {
    let f = fixture();
    let root = add(&f.app, "Big job", None).await;
    let a = add(&f.app, "Part A", Some(root)).await;
    let a1 = add(&f.app, "Part A.1", Some(a)).await;
    let b = add(&f.app, "Part B", Some(root)).await;
    for to in [TaskState::Running, TaskState::Done] {
        let change = Change::SetTaskState {
            id: b,
            to,
            reason: None,
        };
        f.store.apply("engine", T0, vec![change]).await.unwrap();
    }
    let cancel = Cancel {
        ids: vec![root],
        cascade: true,
        reason: Some("not needed".into()),
    };
    let cancelled = f.app.execute(&ada(), cancel).await.unwrap();
    assert_eq!(cancelled.tasks, [a1, a, root]);
    assert_eq!(cancelled.sub_tasks(1), 2);
    for id in [root, a, a1] {
        assert_eq!(state(&f.store, id).await, TaskState::Cancelled);
        let task = f.store.task(id).await.unwrap().unwrap();
        assert_eq!(task.summary.as_deref(), Some("not needed"));
    }
    assert_eq!(
        state(&f.store, b).await,
        TaskState::Done,
        "a done task stays done"
    );

    let again = Cancel {
        ids: vec![root],
        cascade: true,
        reason: None,
    };
    let message = invalid(f.app.execute(&ada(), again).await);
    assert_eq!(message, "task #1 is already cancelled");
}

#[tokio::test]
async fn cancel_without_cascade_leaves_the_sub_tasks_alone() {
    let f = fixture();
    let root = add(&f.app, "Big job", None).await;
    let part = add(&f.app, "A part", Some(root)).await;
    let other = add(&f.app, "Elsewhere", None).await;
    let cancel = Cancel {
        ids: vec![root, other],
        cascade: false,
        reason: None,
    };
    let cancelled = f.app.execute(&ada(), cancel).await.unwrap();
    assert_eq!(cancelled.tasks, [other, root]);
    assert_eq!(state(&f.store, part).await, TaskState::Open);
    let task = f.store.task(root).await.unwrap().unwrap();
    assert_eq!(
        task.summary.as_deref(),
        Some("cancelled from the command line")
    );
}

#[tokio::test]
async fn only_failed_cancelled_or_blocked_tasks_are_reopened() {
    let f = fixture();
    let id = add(&f.app, "Flaky", None).await;
    let message = invalid(f.app.execute(&ada(), Reopen::task(id)).await);
    assert_eq!(
        message,
        "task #1 is open; only failed, cancelled or blocked tasks can be reopened"
    );
    let fail = Change::SetTaskState {
        id,
        to: TaskState::Failed,
        reason: Some("tests failed".into()),
    };
    f.store.apply("engine", T0, vec![fail]).await.unwrap();
    f.app.execute(&ada(), Reopen::task(id)).await.unwrap();
    assert_eq!(state(&f.store, id).await, TaskState::Open);
}

#[tokio::test]
async fn an_edit_adds_and_removes_labels_and_an_empty_agent_routes_by_labels() {
    let f = fixture();
    let new = NewTask {
        labels: vec!["ui".into(), "old".into()],
        agent: Some("coder".into()),
        ..NewTask::titled("Restyle")
    };
    let id = f.app.execute(&ada(), AddTask(new)).await.unwrap().id;
    let edit = |add: &[&str], remove: &[&str], agent: Option<&str>| EditTask {
        id,
        title: None,
        body: None,
        add_labels: add.iter().map(|s| s.to_string()).collect(),
        remove_labels: remove.iter().map(|s| s.to_string()).collect(),
        priority: None,
        agent: agent.map(str::to_owned),
    };
    let task = f
        .app
        .execute(&ada(), edit(&["ui", "backend"], &["old"], Some("")))
        .await
        .unwrap();
    assert_eq!(task.labels, ["ui", "backend"]);
    assert_eq!(task.agent, None);
    let message = invalid(f.app.execute(&ada(), edit(&[], &[], None)).await);
    assert!(message.starts_with("nothing to change"), "{message}");
}

#[tokio::test]
async fn an_import_is_checked_whole_and_refusals_name_the_line() {
    let f = fixture();
    let empty = Import {
        source: "tasks.jsonl".into(),
        text: "\n  \n".into(),
        by_label: Vec::new(),
    };
    assert!(f.app.execute(&ada(), empty).await.unwrap().is_empty());
    assert_eq!(f.store.last_seq().await.unwrap(), 0);

    let bad = Import {
        source: "tasks.jsonl".into(),
        text: "{\"title\": \"ok\"}\n{\"titel\": \"typo\"}\n{\"title\": \"x\", \"agent\": \" \"}\n"
            .into(),
        by_label: Vec::new(),
    };
    let message = invalid(f.app.execute(&ada(), bad).await);
    assert!(message.contains("2 line(s) of tasks.jsonl"), "{message}");
    assert!(
        message.contains("tasks.jsonl:2: unknown field `titel`"),
        "{message}"
    );
    assert!(
        message.contains("tasks.jsonl:3: `agent` is empty"),
        "{message}"
    );

    // Every line is well formed, but the store refuses the second: a parent that is not there.
    let refused = Import {
        source: "tasks.jsonl".into(),
        text: "{\"title\": \"ok\"}\n\n{\"title\": \"orphan\", \"parent\": 99}\n".into(),
        by_label: Vec::new(),
    };
    let message = invalid(f.app.execute(&ada(), refused).await);
    assert!(message.starts_with("tasks.jsonl:3: "), "{message}");
    assert!(message.ends_with("; nothing was imported"), "{message}");
    assert_eq!(f.store.last_seq().await.unwrap(), 0, "nothing was written");

    let good = Import {
        source: "tasks.jsonl".into(),
        text: "{\"title\": \"one\"}\n{\"title\": \"two\", \"parent\": 1}\n".into(),
        by_label: Vec::new(),
    };
    let tasks = f.app.execute(&ada(), good).await.unwrap();
    let ids: Vec<i64> = tasks.iter().map(|t| t.id.0).collect();
    assert_eq!(ids, [1, 2]);
    let shown = f.app.ask(&ada(), TaskShow { id: TaskId(1) }).await.unwrap();
    assert_eq!(shown.children.len(), 1);
}
