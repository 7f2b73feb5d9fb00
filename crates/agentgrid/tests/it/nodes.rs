//! Many nodes on one store: an engine notices another process's writes as they happen, records
//! its node on every claim, and leaves another node's live executions alone while taking over
//! those whose lease ran out.

use std::process::Stdio;
use std::time::{Duration, Instant};

use domain::{Clock, ExecutionKind, Lease, SystemClock, TaskId};
use store::{Change, SqliteStore, Store};

use crate::support::{Repo, agent, wait_for};

fn quick_repo() -> Repo {
    Repo::with_agents(&[(
        "quick",
        &agent("quick", "true", "  routing: {default: true}\n"),
    )])
}

fn stop(mut engine: std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(engine.wait().unwrap().success());
}

/// Tasks added one after another from the CLI are each dispatched as soon as they are written.
/// The engine reads the log by itself only every 10 s while it watches the store's files, so
/// three tasks in a row, each added once the one before is done, would take at least 20 s
/// if it waited for that; the bound leaves a slow machine plenty of room below it.
#[test]
fn another_process_s_writes_are_noticed_without_waiting_for_the_poll() {
    let repo = quick_repo();
    let engine = repo
        .cmd(&["run", "--forever"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    repo.ok(&["task", "add", "warm up"]);
    wait_for(Duration::from_secs(60), "the first task to be done", || {
        repo.task_state(1) == "done"
    });
    let start = Instant::now();
    for id in 2..=4 {
        repo.ok(&["task", "add", &format!("task {id}")]);
        wait_for(Duration::from_secs(60), "the task to be done", || {
            repo.task_state(id) == "done"
        });
    }
    let took = start.elapsed();
    stop(engine);
    assert!(
        took < Duration::from_secs(15),
        "three tasks took {took:?}: the engine waited for its poll"
    );
}

/// Two tasks another node claimed: one whose lease still holds, one whose lease ran out.
/// `run` records the second lost and runs its task again under its own node id; the first
/// stays with its node, untouched.
#[test]
fn another_node_s_live_execution_is_left_alone_and_its_expired_one_taken_over() {
    let repo = quick_repo();
    repo.ok(&["task", "add", "held elsewhere"]);
    repo.ok(&["task", "add", "abandoned elsewhere"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&repo.path().join(".agentgrid/agentgrid.db")).unwrap();
        let now = SystemClock.now();
        let claim = |task, node: &str, from, secs| Change::CreateExecution {
            task_id: TaskId(task),
            kind: ExecutionKind::Work,
            agent: "quick".into(),
            attempt: 1,
            lease: Some(Lease::starting(
                node.parse().unwrap(),
                from,
                domain::Duration::from_secs(secs),
            )),
        };
        store
            .apply("node far-away", now, vec![claim(1, "far-away", now, 3600)])
            .await
            .unwrap();
        let earlier = domain::Timestamp(now.0 - 60_000);
        store
            .apply("node gone", earlier, vec![claim(2, "gone", earlier, 30)])
            .await
            .unwrap();
    });
    repo.ok(&["run"]);
    let node = std::fs::read_to_string(repo.path().join(".agentgrid/node-id")).unwrap();
    let node = node.trim();
    assert!(!node.is_empty());

    let held = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(held["task"]["state"], "running", "{held}");
    let executions = held["executions"].as_array().unwrap();
    assert_eq!(executions.len(), 1, "{held}");
    assert_eq!(executions[0]["state"], "queued");
    assert_eq!(executions[0]["lease"]["node"], "far-away");

    let taken = repo.json(&["task", "show", "2", "--json"]);
    assert_eq!(taken["task"]["state"], "done", "{taken}");
    let executions = taken["executions"].as_array().unwrap();
    assert_eq!(executions[0]["state"], "lost", "{taken}");
    assert!(
        executions[0]["summary"]
            .as_str()
            .unwrap()
            .contains("node gone stopped renewing its lease"),
        "{taken}"
    );
    assert_eq!(executions[1]["state"], "succeeded");
    assert_eq!(executions[1]["lease"]["node"], node);
    assert_eq!(executions[1]["fence"], 2, "the second claim of the task");

    let status = repo.json(&["status", "--json"]);
    assert_eq!(status["node"], node);
    let active = status["active_executions"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{status}");
    assert_eq!(active[0]["lease"]["node"], "far-away");
    assert!(repo.ok(&["status"]).contains(&format!("node: {node}")));
}

/// With no engine running here, `status` tells an execution that another node runs (its lease
/// held, not expired) from one whose node is gone (its lease expired): only the second is
/// interrupted; the first is shown on its node with how long its lease still holds.
#[test]
fn status_shows_another_node_s_live_execution_on_that_node_and_only_an_expired_one_interrupted() {
    let repo = quick_repo();
    repo.ok(&["task", "add", "held elsewhere"]);
    repo.ok(&["task", "add", "abandoned elsewhere"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&repo.path().join(".agentgrid/agentgrid.db")).unwrap();
        let now = SystemClock.now();
        let claim = |task, node: &str, from, secs| Change::CreateExecution {
            task_id: TaskId(task),
            kind: ExecutionKind::Work,
            agent: "quick".into(),
            attempt: 1,
            lease: Some(Lease::starting(
                node.parse().unwrap(),
                from,
                domain::Duration::from_secs(secs),
            )),
        };
        store
            .apply("node far-away", now, vec![claim(1, "far-away", now, 3600)])
            .await
            .unwrap();
        let earlier = domain::Timestamp(now.0 - 60_000);
        store
            .apply("node gone", earlier, vec![claim(2, "gone", earlier, 30)])
            .await
            .unwrap();
    });

    let status = repo.json(&["status", "--json"]);
    let active = status["active_executions"].as_array().unwrap();
    assert_eq!(active.len(), 2, "{status}");
    let held = &active[0];
    assert_eq!(held["task_id"], 1, "{status}");
    assert_eq!(held["interrupted"], false, "{status}");
    assert_eq!(held["elsewhere"]["node"], "far-away", "{status}");
    let left = held["elsewhere"]["lease_left_ms"].as_i64().unwrap();
    assert!(left > 3_000_000 && left <= 3_600_000, "{status}");
    let gone = &active[1];
    assert_eq!(gone["task_id"], 2, "{status}");
    assert_eq!(gone["interrupted"], true, "{status}");
    assert!(gone["elsewhere"].is_null(), "{status}");

    let human = repo.ok(&["status"]);
    let row = |task: &str| {
        human
            .lines()
            .find(|l| l.contains(task) && l.contains("quick"))
            .unwrap_or_else(|| panic!("no row for {task}:\n{human}"))
            .to_string()
    };
    let held_row = row("#1");
    assert!(held_row.contains("on node far-away (lease"), "{human}");
    assert!(held_row.contains("s left)"), "{human}");
    assert!(!held_row.contains("interrupted"), "{human}");
    assert!(row("#2").contains("interrupted"), "{human}");
}
