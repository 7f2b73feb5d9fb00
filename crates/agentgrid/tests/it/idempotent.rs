//! Idempotent agent calls through the real binary: a planner whose step runs again (after the
//! engine was killed under it, or as a retry) finds the sub-tasks and comments it made before
//! instead of making them twice.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

/// Fast retries; the resume timer keeps its ten-minute default, so nothing here waits for it.
const CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  concurrency: {global: 3}\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// Waits, inside an agent, until every sub-task of its task has ended.
const WAIT_FOR_CHILDREN: &str = r#"#!/bin/sh
i=0
until agentgrid ctl status | python3 -c 'import json, sys; k = json.load(sys.stdin)["children"]; sys.exit(0 if k and all(c["state"] in ("done", "failed", "cancelled") for c in k) else 1)'; do
  i=$((i+1))
  if [ "$i" -gt 600 ]; then echo "the sub-task never ended" >&2; exit 2; fi
  sleep 0.05
done
"#;

/// A project whose leaf agent (label `leaf`) writes `part-<id>.txt` and is done, with `planner`
/// taking tasks labelled `big`, and the agents' helper script committed under `scripts/`.
pub(crate) fn project(planner: &str, planner_spec: &str, leaf: &str) -> Repo {
    let repo = Repo::with_agents(&[
        (
            "planner",
            &agent(
                "planner",
                planner,
                &format!("  routing: {{labels: [big]}}\n{planner_spec}"),
            ),
        ),
        (
            "leaf",
            &agent("leaf", leaf, "  routing: {labels: [leaf]}\n"),
        ),
    ]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), CONFIG).unwrap();
    let dir = repo.path().join("scripts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("wait-for-children.sh"), WAIT_FOR_CHILDREN).unwrap();
    repo.git(&["add", "scripts"]);
    repo.git(&["commit", "-q", "-m", "agent scripts"]);
    repo
}

pub(crate) const LEAF: &str = "echo $AGENTGRID_TASK_ID > part-$AGENTGRID_TASK_ID.txt";

pub(crate) fn events(repo: &Repo) -> Vec<serde_json::Value> {
    repo.ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) fn on_branch(repo: &Path, branch: &str, file: &str) -> Option<String> {
    let out = command("git")
        .args(["show", &format!("{branch}:{file}")])
        .current_dir(repo)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn children_of(repo: &Repo, parent: u64) -> Vec<serde_json::Value> {
    repo.tasks()
        .into_iter()
        .filter(|t| t["parent"] == parent)
        .collect()
}

#[test]
fn a_planner_killed_half_way_finds_its_sub_tasks_after_the_restart() {
    // The planner makes three sub-tasks. Its first run is stopped after the second (the engine
    // is killed with SIGKILL under it); the run after the restart (a resume, since sub-tasks
    // are open) makes all three calls again.
    let planner = "agentgrid ctl subtask create 'part one' -l leaf >/dev/null && \
        agentgrid ctl subtask create 'part two' -l leaf >/dev/null || exit 1; \
        if [ ! -e first-run ]; then touch first-run; while true; do sleep 0.05; done; fi; \
        agentgrid ctl subtask create 'part three' -l leaf >/dev/null && sh scripts/wait-for-children.sh";
    let repo = project(planner, "", LEAF);
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    let mut engine = repo.cmd(&["run"]).stdout(Stdio::null()).spawn().unwrap();
    wait_for(
        Duration::from_secs(60),
        "the planner's first two sub-tasks",
        || children_of(&repo, 1).len() >= 2,
    );
    wait_for(Duration::from_secs(30), "the planner to hang", || {
        repo.path()
            .join(".agentgrid/workspaces/task-1/first-run")
            .exists()
    });
    engine.kill().unwrap(); // SIGKILL: the planner is cut off half-way through its split.
    engine.wait().unwrap();
    assert_eq!(children_of(&repo, 1).len(), 2);

    let out = repo.ok(&["run"]);
    assert!(out.contains("recovered after a crash"), "{out}");
    let children = children_of(&repo, 1);
    let titles: Vec<&str> = children
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["part one", "part two", "part three"],
        "three sub-tasks in all, none made twice: {out}"
    );
    let created = events(&repo)
        .iter()
        .filter(|e| e["type"] == "task_created" && e["task"]["parent"] == 1)
        .count();
    assert_eq!(created, 3);
    assert_eq!(repo.task_state(1), "done", "{out}");
    // Every part's work reached the parent's branch, those done before the kill included.
    for child in &children {
        let id = child["id"].as_u64().unwrap();
        assert!(
            on_branch(repo.path(), "agentgrid/task-1", &format!("part-{id}.txt")).is_some(),
            "part #{id} is merged into the parent: {out}"
        );
    }
}

#[test]
fn a_work_step_run_again_creates_no_sub_task_or_keyed_comment_twice() {
    // The planner makes its sub-tasks (two alike, told apart by their keys), waits for them,
    // comments under a key and fails the first time; its retry makes the same calls again.
    let planner = "agentgrid ctl subtask create 'a part' --key first -l leaf >/dev/null && \
        agentgrid ctl subtask create 'a part' --key second -l leaf >/dev/null && \
        agentgrid ctl subtask create 'another part' -l leaf >/dev/null && \
        sh scripts/wait-for-children.sh && \
        agentgrid ctl comment --key planned 'the parts are made' >/dev/null || exit 1; \
        if [ ! -e tried ]; then touch tried; echo 'failing once' >&2; exit 1; fi";
    let repo = project(planner, "  limits: {max_attempts: 3}\n", LEAF);
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    let out = repo.ok(&["run"]);
    let show = repo.json(&["task", "show", "1", "--json"]);
    let runs = show["executions"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "the work step ran twice: {out}");
    assert_eq!(runs[0]["state"], "failed", "{runs:?}");
    assert_eq!(repo.task_state(1), "done", "{out}");
    let titles: Vec<String> = children_of(&repo, 1)
        .iter()
        .map(|c| c["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        titles,
        ["a part", "a part", "another part"],
        "distinct keys made two alike sub-tasks, and the retry made none: {out}"
    );
    let comments = events(&repo)
        .iter()
        .filter(|e| e["type"] == "task_commented" && e["text"] == "the parts are made")
        .count();
    assert_eq!(comments, 1, "the keyed comment is recorded once");
    // The second run heard that its sub-tasks existed.
    let log =
        std::fs::read_to_string(repo.path().join(runs[1]["log_path"].as_str().unwrap())).unwrap();
    assert!(log.contains("existed already"), "{log}");
}
