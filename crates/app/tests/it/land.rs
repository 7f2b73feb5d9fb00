//! The land's rules and record against a real store, with a scripted lander standing in for
//! git: an interrupted land is finished when the base holds its commit and forgotten when it
//! does not, a failed publish records the abandonment, and nothing lands twice.

use std::sync::{Arc, Mutex};

use app::{AddTask, Land, LandRequest, Landed, Lander, Prepared, Ready};
use domain::{EntityKind, EventKind, LandStrategy, TaskId, TaskState};
use store::{Change, Store};

use crate::{T0, ada, fixture};

/// A lander whose answers the test sets, and which records what it was asked to publish.
#[derive(Default)]
struct Scripted {
    holds: bool,
    fail_publish: bool,
    published: Mutex<Vec<Ready>>,
    /// The main checkout's catch-ups asked for: base, old, new.
    caught_up: Mutex<Vec<(String, String, String)>>,
}

#[async_trait::async_trait]
impl Lander for Scripted {
    fn default_strategy(&self) -> LandStrategy {
        LandStrategy::Squash
    }

    async fn prepare(&self, _request: &LandRequest) -> Result<Prepared, String> {
        Ok(Prepared::Ready(Ready {
            base: "refs/heads/main".into(),
            old: "1".repeat(40),
            new: "2".repeat(40),
        }))
    }

    async fn publish(&self, ready: &Ready) -> Result<(), String> {
        if self.fail_publish {
            return Err("the base moved meanwhile".into());
        }
        self.published.lock().unwrap().push(ready.clone());
        Ok(())
    }

    async fn holds(&self, _base: &str, _commit: &str) -> Result<bool, String> {
        Ok(self.holds)
    }

    async fn catch_up(&self, base: &str, old: &str, new: &str) -> Result<(), String> {
        let asked = (base.to_string(), old.to_string(), new.to_string());
        self.caught_up.lock().unwrap().push(asked);
        Ok(())
    }
}

async fn done_task(f: &crate::Fixture) -> TaskId {
    let task = f
        .app
        .execute(&ada(), AddTask::titled("Ship it"))
        .await
        .unwrap();
    for to in [TaskState::Running, TaskState::Done] {
        let change = Change::SetTaskState {
            id: task.id,
            to,
            reason: None,
        };
        f.store.apply("cli", T0, vec![change]).await.unwrap();
    }
    task.id
}

/// The intent a land cut short by a crash leaves: started, never finished.
async fn interrupted(f: &crate::Fixture, id: TaskId, new: &str) {
    let start = Change::StartLand {
        id,
        strategy: LandStrategy::Merge,
        base: "refs/heads/main".into(),
        old: "0".repeat(40),
        new: new.into(),
    };
    f.store.apply("cli", T0, vec![start]).await.unwrap();
}

fn land(id: TaskId, lander: &Arc<Scripted>) -> Land {
    Land {
        task: id,
        strategy: None,
        dry_run: false,
        lander: lander.clone(),
    }
}

async fn land_kinds(f: &crate::Fixture, id: TaskId) -> Vec<&'static str> {
    f.store
        .entity_events(EntityKind::Task, id.0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.name())
        .filter(|n| n.starts_with("task_land"))
        .collect()
}

#[tokio::test]
async fn a_land_cut_short_after_the_ref_moved_is_finished_and_not_made_again() {
    let f = fixture();
    let id = done_task(&f).await;
    interrupted(&f, id, &"9".repeat(40)).await;
    let lander = Arc::new(Scripted {
        holds: true,
        ..Scripted::default()
    });
    let err = f.app.execute(&ada(), land(id, &lander)).await.unwrap_err();
    assert!(
        err.to_string().contains("already landed at 9999999"),
        "{err}"
    );
    assert!(
        lander.published.lock().unwrap().is_empty(),
        "nothing moves twice"
    );
    // The crash may have come before the main checkout followed the base: it is brought
    // along from the recorded old commit to the new one.
    assert_eq!(
        *lander.caught_up.lock().unwrap(),
        [(
            "refs/heads/main".to_string(),
            "0".repeat(40),
            "9".repeat(40)
        )]
    );
    assert_eq!(
        land_kinds(&f, id).await,
        ["task_land_started", "task_landed"]
    );
    assert!(f.store.land(id).await.unwrap().unwrap().landed);
}

#[tokio::test]
async fn a_land_cut_short_before_the_ref_moved_is_forgotten_and_made_anew() {
    let f = fixture();
    let id = done_task(&f).await;
    interrupted(&f, id, &"9".repeat(40)).await;
    let lander = Arc::new(Scripted::default());
    let landed = f.app.execute(&ada(), land(id, &lander)).await.unwrap();
    let Landed::Moved { strategy, new, .. } = landed else {
        panic!("landed: {landed:?}");
    };
    assert_eq!(strategy, LandStrategy::Squash, "the lander's default");
    assert_eq!(new, "2".repeat(40));
    assert_eq!(lander.published.lock().unwrap().len(), 1);
    assert!(
        lander.caught_up.lock().unwrap().is_empty(),
        "a base that never moved has no checkout to bring along"
    );
    assert_eq!(
        land_kinds(&f, id).await,
        [
            "task_land_started",
            "task_land_abandoned",
            "task_land_started",
            "task_landed"
        ]
    );
    let events = f.store.entity_events(EntityKind::Task, id.0).await.unwrap();
    let landed = events.last().unwrap();
    assert_eq!(landed.actor, "ada");
    assert!(matches!(
        &landed.kind,
        EventKind::TaskLanded { strategy: LandStrategy::Squash, old, .. } if *old == "1".repeat(40)
    ));
}

#[tokio::test]
async fn a_publish_that_fails_is_recorded_as_abandoned_and_may_be_tried_again() {
    let f = fixture();
    let id = done_task(&f).await;
    let failing = Arc::new(Scripted {
        fail_publish: true,
        ..Scripted::default()
    });
    let err = f.app.execute(&ada(), land(id, &failing)).await.unwrap_err();
    assert!(
        err.to_string().contains("the base moved meanwhile"),
        "{err}"
    );
    assert_eq!(f.store.land(id).await.unwrap(), None);
    let working = Arc::new(Scripted::default());
    f.app.execute(&ada(), land(id, &working)).await.unwrap();
    assert!(f.store.land(id).await.unwrap().unwrap().landed);
}

#[tokio::test]
async fn the_store_refuses_a_second_start_and_a_land_of_an_open_task() {
    let f = fixture();
    let open = f
        .app
        .execute(&ada(), AddTask::titled("Not yet"))
        .await
        .unwrap()
        .id;
    let start = |id| Change::StartLand {
        id,
        strategy: LandStrategy::Merge,
        base: "refs/heads/main".into(),
        old: "0".repeat(40),
        new: "1".repeat(40),
    };
    let err = f
        .store
        .apply("cli", T0, vec![start(open)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not done"), "{err}");
    let id = done_task(&f).await;
    f.store.apply("cli", T0, vec![start(id)]).await.unwrap();
    let err = f.store.apply("cli", T0, vec![start(id)]).await.unwrap_err();
    assert!(err.to_string().contains("already under way"), "{err}");
}
