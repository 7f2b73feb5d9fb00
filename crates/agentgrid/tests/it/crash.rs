//! Crash safety: SIGKILL the engine mid-run, restart it, and check nothing was lost or doubled.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::*;

const TASKS: u64 = 30;

#[test]
fn a_killed_engine_loses_nothing_and_runs_nothing_twice() {
    let repo = Repo::with_agents(&[(
        "w",
        &agent(
            "w",
            "sleep 0.2; echo $AGENTGRID_TASK_ID > done.txt",
            "  routing: {default: true}\n",
        ),
    )]);
    for i in 1..=TASKS {
        repo.ok(&["task", "add", &format!("task {i}")]);
    }
    let mut engine = repo
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(60),
        "a third of the tasks to finish",
        || repo.tasks().iter().filter(|t| t["state"] == "done").count() as u64 >= TASKS / 3,
    );
    engine.kill().unwrap(); // SIGKILL: no cleanup of any kind.
    engine.wait().unwrap();
    let running = repo.json(&["status", "--json"])["active_executions"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        running > 0,
        "the kill left executions marked active, as a crash would"
    );

    let out = repo.ok(&["run"]);
    assert!(out.contains("recovered after a crash"), "{out}");

    let tasks = repo.tasks();
    assert_eq!(tasks.len() as u64, TASKS, "no task lost");
    assert!(tasks.iter().all(|t| t["state"] == "done"), "{tasks:?}");

    let events: Vec<serde_json::Value> = repo
        .ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut finished: HashMap<i64, u32> = HashMap::new();
    let mut done: HashMap<i64, u32> = HashMap::new();
    for e in &events {
        let id = e["entity_id"].as_i64().unwrap();
        if e["type"] == "execution_finished" {
            *finished.entry(id).or_default() += 1;
        }
        if e["type"] == "task_state_changed" && e["to"] == "done" {
            *done.entry(id).or_default() += 1;
        }
    }
    assert!(
        finished.values().all(|n| *n == 1),
        "an execution finished twice: {finished:?}"
    );
    assert_eq!(done.len() as u64, TASKS);
    assert!(
        done.values().all(|n| *n == 1),
        "a task was completed twice: {done:?}"
    );
    let lost = events
        .iter()
        .filter(|e| e["type"] == "execution_finished" && e["state"] == "lost")
        .count();
    assert!(lost > 0, "the interrupted executions were recorded as lost");

    let worktrees = repo.git(&["worktree", "list"]);
    assert_eq!(
        worktrees.lines().count(),
        1,
        "no workspace left dangling: {worktrees}"
    );
    let leftover: Vec<_> = std::fs::read_dir(repo.path().join(".agentgrid/workspaces"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftover.is_empty(), "{leftover:?}");
    for i in 1..=TASKS {
        let content = repo.git(&["show", &format!("agentgrid/task-{i}:done.txt")]);
        assert_eq!(
            content.trim(),
            i.to_string(),
            "task {i}'s work is on its branch"
        );
    }
}
