//! Merges of sub-tasks into their parents as recorded steps, through the real binary: a
//! sub-task done while its parent runs is merged when the parent is idle, a merge cut short by
//! a crash is undone and made again, and a merge that fails keeps the parent from being done.

use std::process::Stdio;
use std::time::Duration;

use crate::idempotent::{LEAF, events, on_branch, project};
use crate::support::*;

const WAITING_PLANNER: &str =
    "agentgrid ctl subtask create 'a part' -l leaf >/dev/null && sh scripts/wait-for-children.sh";

#[test]
fn a_sub_task_done_while_its_parent_runs_is_merged_into_the_parent() {
    let repo = project(WAITING_PLANNER, "", LEAF);
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    let out = repo.ok(&["run"]);
    assert_eq!(repo.task_state(2), "done", "{out}");
    assert_eq!(repo.task_state(1), "done", "{out}");
    assert_eq!(
        on_branch(repo.path(), "agentgrid/task-1", "part-2.txt").as_deref(),
        Some("2\n"),
        "the part's work is on the parent's branch: {out}"
    );
    let merged: Vec<serde_json::Value> = events(&repo)
        .into_iter()
        .filter(|e| e["entity_id"] == 1 && e["type"].as_str().unwrap().starts_with("task_merge"))
        .collect();
    let kinds: Vec<&str> = merged.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["task_merge_pending", "task_merged"], "{merged:?}");
}

#[test]
fn a_merge_cut_short_by_a_crash_is_undone_and_made_again() {
    // The part is done while the planner still runs, so its merge is recorded as due and
    // waits. The engine is killed, and the test leaves the parent's worktree as a merge killed
    // half-way would: mid-merge, with conflict markers and MERGE_HEAD.
    let planner = "agentgrid ctl subtask create 'a part' -l leaf >/dev/null && sh scripts/wait-for-children.sh || exit 1; \
        if [ ! -e first-run ]; then touch first-run; while true; do sleep 0.05; done; fi";
    let repo = project(planner, "", LEAF);
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    let mut engine = repo.cmd(&["run"]).stdout(Stdio::null()).spawn().unwrap();
    let ws = repo.path().join(".agentgrid/workspaces/task-1");
    wait_for(Duration::from_secs(60), "the part to be done", || {
        ws.join("first-run").exists() && repo.task_state(2) == "done"
    });
    engine.kill().unwrap();
    engine.wait().unwrap();
    let pending = events(&repo)
        .iter()
        .any(|e| e["entity_id"] == 1 && e["type"] == "task_merge_pending");
    assert!(pending, "the merge is recorded as due before it is made");

    // A conflicting merge, stopped where git stops on a conflict.
    let side = repo.path().join("side");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "side",
        side.to_str().unwrap(),
        "agentgrid/task-1",
    ]);
    std::fs::write(side.join("README.md"), "from the side\n").unwrap();
    git_in(&side, &["commit", "-q", "-am", "side edit"]);
    repo.git(&["worktree", "remove", side.to_str().unwrap()]);
    std::fs::write(ws.join("README.md"), "from the parent\n").unwrap();
    git_in(&ws, &["commit", "-q", "-m", "parent edit", "README.md"]);
    let merge = git_cmd(&ws, &["merge", "side"]).output().unwrap();
    assert!(!merge.status.success(), "the merge conflicts");
    let merge_head = repo.path().join(".git/worktrees/task-1/MERGE_HEAD");
    assert!(merge_head.exists());

    let out = repo.ok(&["run"]);
    assert!(out.contains("recovered after a crash"), "{out}");
    assert!(!merge_head.exists(), "the half-done merge is gone");
    assert_eq!(repo.task_state(1), "done", "{out}");
    assert_eq!(
        on_branch(repo.path(), "agentgrid/task-1", "README.md").as_deref(),
        Some("from the parent\n"),
        "no conflict markers were committed: {out}"
    );
    assert_eq!(
        on_branch(repo.path(), "agentgrid/task-1", "part-2.txt").as_deref(),
        Some("2\n"),
        "the part's work is merged: {out}"
    );
    let side_merged = git_cmd(
        repo.path(),
        &["merge-base", "--is-ancestor", "side", "agentgrid/task-1"],
    )
    .status()
    .unwrap();
    assert!(
        !side_merged.success(),
        "the interrupted merge was not completed as it stood"
    );
    let all = events(&repo);
    assert!(
        all.iter().any(|e| e["entity_id"] == 1
            && e["type"] == "task_commented"
            && e["text"].as_str().unwrap().contains("interrupted")),
        "the parent says its merge was undone"
    );
    assert!(
        all.iter()
            .any(|e| e["entity_id"] == 1 && e["type"] == "task_merged" && e["child"] == 2)
    );
}

#[test]
fn a_failed_merge_keeps_the_parent_from_being_done_until_a_person_merges() {
    // Parent and part write the same file differently: the part's branch cannot be merged.
    let planner = "echo 'from the parent' > shared.txt && agentgrid ctl subtask create 'a part' -l leaf >/dev/null && sh scripts/wait-for-children.sh";
    let repo = project(planner, "", "echo 'from the part' > shared.txt");
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    let out = repo.ok(&["run"]);
    assert_eq!(repo.task_state(2), "done", "{out}");
    assert_eq!(
        repo.task_state(1),
        "blocked",
        "not done without the part's work: {out}"
    );
    let show = repo.ok(&["task", "show", "1"]);
    assert!(
        show.contains("merge failed:") && show.contains("shared.txt"),
        "{show}"
    );
    let status = repo.ok(&["status"]);
    assert!(status.contains("merge failed"), "{status}");
    assert!(
        events(&repo)
            .iter()
            .any(|e| e["type"] == "task_merge_failed" && e["child"] == 2)
    );

    // A person merges by hand, keeping the parent's version, and reopens the parent.
    let ws = repo.path().join(".agentgrid/workspaces/task-1");
    git_in(
        &ws,
        &[
            "merge",
            "-q",
            "-s",
            "ours",
            "-m",
            "take the parent's",
            "agentgrid/task-2",
        ],
    );
    repo.ok(&["task", "reopen", "1"]);
    let out = repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done", "{out}");
    let task = repo.json(&["task", "show", "1", "--json"]);
    assert!(task["task"].get("merge_failed").is_none(), "{task}");
    assert_eq!(
        on_branch(repo.path(), "agentgrid/task-1", "shared.txt").as_deref(),
        Some("from the parent\n")
    );
}

fn git_cmd(dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut cmd = command("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t.invalid");
    cmd
}

fn git_in(dir: &std::path::Path, args: &[&str]) {
    let out = git_cmd(dir, args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
