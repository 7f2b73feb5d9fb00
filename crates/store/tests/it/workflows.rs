//! Workflow runs on the real SQLite store: a start and each input are one transaction with
//! their events, the run survives a reopen of the file, and an input taken already writes
//! nothing.

use domain::{TaskId, WorkflowId};
use store::{Change, SqliteStore, Store, WorkflowFilter};
use workflow::{Definition, Input, Outcome, State, StateKind, Transition, When};

use crate::{T0, db_path, fresh};

fn definition() -> Definition {
    Definition {
        name: "gate".into(),
        start: "ask".into(),
        blackboard: Default::default(),
        states: vec![
            State::new(
                "ask",
                StateKind::Approval {
                    summary: "ship it?".into(),
                },
            )
            .on(Transition::to("done").when(When::Approved))
            .on(Transition::to("stop")),
            State::new(
                "done",
                StateKind::End {
                    outcome: Outcome::Succeeded,
                },
            ),
            State::new(
                "stop",
                StateKind::End {
                    outcome: Outcome::Failed,
                },
            ),
        ],
    }
}

fn start(task: TaskId) -> Change {
    Change::StartWorkflow {
        task,
        name: "gate".into(),
        definition: definition(),
    }
}

fn decide(approved: bool) -> Change {
    Change::StepWorkflow {
        id: WorkflowId(1),
        input: Input::Decided {
            visit: 1,
            approved,
            feedback: None,
        },
    }
}

async fn running(store: &SqliteStore) -> Vec<store::WorkflowRun> {
    let filter = WorkflowFilter {
        task: None,
        running: true,
    };
    store.workflow_runs(&filter).await.unwrap()
}

#[tokio::test]
async fn a_run_is_recorded_moves_on_once_and_survives_a_reopen() {
    let (dir, store) = fresh();
    let task = crate::create_titled(&store, "Add CSV export").await;
    let applied = store.apply("cli", T0, vec![start(task)]).await.unwrap();
    let kinds: Vec<_> = applied.events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, ["task_workflow_started", "task_workflow_stepped"]);
    let runs = running(&store).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].instance.position.as_deref(), Some("ask"));
    assert_eq!(runs[0].definition, definition());

    // A second start on the same task, and the same decision twice, are refused whole.
    let err = store.apply("cli", T0, vec![start(task)]).await.unwrap_err();
    assert!(
        err.to_string().contains("already runs the workflow `gate`"),
        "{err}"
    );
    store.apply("person", T0, vec![decide(true)]).await.unwrap();
    let before = store.events_after(0, 100).await.unwrap().len();
    let err = store
        .apply("person", T0, vec![decide(false)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already succeeded"), "{err}");
    assert_eq!(store.events_after(0, 100).await.unwrap().len(), before);
    drop(store);

    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    assert!(running(&store).await.is_empty());
    let run = store.workflow_run(WorkflowId(1)).await.unwrap().unwrap();
    assert_eq!(run.instance.outcome(), Some(Outcome::Succeeded));
    assert_eq!(run.steps, 2);
    assert_eq!(run.task_id, task);
    let all = store
        .workflow_runs(&WorkflowFilter {
            task: Some(task),
            running: false,
        })
        .await
        .unwrap();
    assert_eq!(all, vec![run]);
    assert!(store.workflow_run(WorkflowId(2)).await.unwrap().is_none());
}

#[tokio::test]
async fn the_database_holds_one_running_run_per_task() {
    let (dir, store) = fresh();
    let task = crate::create_titled(&store, "t").await;
    store.apply("cli", T0, vec![start(task)]).await.unwrap();
    // Behind the rules' back, as a second writer that raced the first would.
    let raw = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let second = raw.execute(
        "INSERT INTO workflow_runs (id, task_id, name, status, steps, definition, instance,
             started_at, updated_at)
         SELECT 2, task_id, name, status, steps, definition, instance, started_at, updated_at
         FROM workflow_runs WHERE id = 1",
        [],
    );
    assert!(second.unwrap_err().to_string().contains("UNIQUE"));
}

#[tokio::test]
async fn a_task_keeps_a_bounded_number_of_finished_runs() {
    let (_dir, store) = fresh();
    let task = crate::create_titled(&store, "looped").await;
    let bound = tracker::MAX_FINISHED_RUNS_PER_TASK;
    for n in 1..=bound {
        let decided = Change::StepWorkflow {
            id: WorkflowId(n as i64),
            input: Input::Decided {
                visit: 1,
                approved: true,
                feedback: None,
            },
        };
        store
            .apply("cli", T0, vec![start(task), decided])
            .await
            .unwrap();
    }
    // The runs are loaded from the database, not kept in memory: the bound holds there.
    let before = store.events_after(0, 10_000).await.unwrap().len();
    let err = store.apply("cli", T0, vec![start(task)]).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "task #{task} has finished {bound} workflow runs, the most one task keeps ({bound})"
        )),
        "{err}"
    );
    assert!(matches!(err, store::Error::Refused { .. }), "{err:?}");
    assert_eq!(store.events_after(0, 10_000).await.unwrap().len(), before);
    let other = crate::create_titled(&store, "fresh").await;
    store.apply("cli", T0, vec![start(other)]).await.unwrap();
}
