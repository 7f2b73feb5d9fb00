//! Restart after a crash with many live sandboxed executions: every lost execution's processes
//! are gone, every task runs again exactly once, and no execution is recorded finished twice.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::support::*;

const TASKS: usize = 20;

/// The first execution of each task marks its worktree and then sleeps until it is killed; the
/// second, finding the mark (committed by recovery), finishes.
const SCRIPT: &str = "if [ -f first.txt ]; then echo $AGENTGRID_TASK_ID > done.txt; else \
                      echo $AGENTGRID_EXECUTION_ID > first.txt; exec sleep 300; fi";

#[test]
fn a_restart_winds_down_every_live_sandbox_and_runs_each_task_once_more() {
    let repo = Repo::with_agents(&[("w", &agent("w", SCRIPT, "  routing: {default: true}\n"))]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!(
            "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  concurrency: {{global: {TASKS}}}\n  \
             shutdown_grace: 2s\n"
        ),
    )
    .unwrap();
    for i in 1..=TASKS {
        repo.ok(&["task", "add", &format!("task {i}")]);
    }
    let mut engine = repo
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut groups = BTreeSet::new();
    wait_for(
        Duration::from_secs(120),
        "every task to have a live sandboxed execution",
        || {
            let status = repo.json(&["status", "--json"]);
            let active = status["active_executions"].as_array().unwrap().clone();
            groups = active
                .iter()
                .filter_map(|e| e["pid"].as_i64())
                .map(|p| p as i32)
                .collect();
            groups.len() == TASKS
                && (1..=TASKS).all(|i| {
                    repo.path()
                        .join(format!(".agentgrid/workspaces/task-{i}/first.txt"))
                        .exists()
                })
        },
    );
    engine.kill().unwrap(); // SIGKILL: no cleanup of any kind.
    engine.wait().unwrap();

    let out = repo.ok(&["run"]);
    assert!(out.contains("recovered after a crash"), "{out}");
    let alive: Vec<i32> = groups
        .iter()
        .copied()
        .filter(|&pgid| group_has_live_member(pgid))
        .collect();
    assert!(
        alive.is_empty(),
        "groups of lost executions still alive: {alive:?}"
    );

    let tasks = repo.tasks();
    assert_eq!(tasks.len(), TASKS, "no task lost");
    assert!(tasks.iter().all(|t| t["state"] == "done"), "{tasks:?}");
    let events: Vec<serde_json::Value> = repo
        .ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut finished: HashMap<i64, Vec<String>> = HashMap::new();
    for e in events.iter().filter(|e| e["type"] == "execution_finished") {
        finished
            .entry(e["entity_id"].as_i64().unwrap())
            .or_default()
            .push(e["state"].as_str().unwrap_or_default().to_string());
    }
    assert!(
        finished.values().all(|states| states.len() == 1),
        "an execution was recorded finished twice: {finished:?}"
    );
    let lost = finished.values().filter(|s| s[0] == "lost").count();
    let succeeded = finished.values().filter(|s| s[0] != "lost").count();
    assert_eq!(
        lost, TASKS,
        "every live execution was wound down as lost: {finished:?}"
    );
    assert_eq!(
        succeeded, TASKS,
        "every task ran exactly once more: {finished:?}"
    );
    for i in 1..=TASKS {
        let content = repo.git(&["show", &format!("agentgrid/task-{i}:done.txt")]);
        assert_eq!(
            content.trim(),
            i.to_string(),
            "task {i}'s second run did its work"
        );
    }
}

/// Whether any process of group `pgid` still runs (zombies do not count), read from /proc.
fn group_has_live_member(pgid: i32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .any(|stat| {
            let rest = &stat[stat.rfind(')').unwrap() + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields[2].parse::<i32>() == Ok(pgid) && !matches!(fields[0], "Z" | "X")
        })
}
