//! Splits and parents through the real binary: a sub-task is a split only while it is open, a
//! parent is done only when every sub-task is done and its own validators pass on the merged
//! tree, and a failed sub-task wakes its parent at once.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::*;

/// Fast retries; the resume timer keeps its ten-minute default, so nothing here may wait for it.
const CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  concurrency: {global: 3}\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  resume: {interval: 10m}\n  shutdown_grace: 2s\n";

/// Waits, inside an agent, until every sub-task of its task has ended. The agent polls its own
/// control socket; the test itself never sleeps.
const WAIT_FOR_CHILDREN: &str = r#"#!/bin/sh
i=0
until agentgrid ctl status | python3 -c 'import json, sys; k = json.load(sys.stdin)["children"]; sys.exit(0 if k and all(c["state"] in ("done", "failed", "cancelled") for c in k) else 1)'; do
  i=$((i+1))
  if [ "$i" -gt 600 ]; then echo "the sub-task never ended" >&2; exit 2; fi
  sleep 0.05
done
"#;

/// A project with `agents` and the agents' helper script committed under `scripts/`, so every
/// worktree has it.
fn project(agents: &[(&str, &str)]) -> Repo {
    let repo = Repo::with_agents(agents);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), CONFIG).unwrap();
    let dir = repo.path().join("scripts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("wait-for-children.sh"), WAIT_FOR_CHILDREN).unwrap();
    repo.git(&["add", "scripts"]);
    repo.git(&["commit", "-q", "-m", "agent scripts"]);
    repo
}

/// A leaf agent taking tasks labelled `leaf`: fails at once, with no retry.
fn failing_leaf() -> (&'static str, String) {
    (
        "leaf",
        agent(
            "leaf",
            "echo 'the part cannot be built' >&2; exit 3",
            "  routing: {labels: [leaf]}\n  limits: {max_attempts: 1}\n",
        ),
    )
}

/// `agentgrid run` in the background, its output in a file; stopped when dropped.
struct Running {
    child: Child,
    out: PathBuf,
}

impl Running {
    fn start(repo: &Repo) -> Running {
        let out = repo.path().join(".agentgrid/run-output.txt");
        let file = std::fs::File::create(&out).unwrap();
        let child = repo
            .cmd(&["run"])
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Running { child, out }
    }

    /// Waits for the run to end by itself (nothing left to do), within `limit`.
    fn finish(&mut self, limit: Duration, what: &str) -> String {
        wait_for(limit, what, || self.child.try_wait().unwrap().is_some());
        std::fs::read_to_string(&self.out).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.child.wait();
        }
    }
}

fn executions(repo: &Repo, task: u64) -> Vec<serde_json::Value> {
    repo.json(&["task", "show", &task.to_string(), "--json"])["executions"]
        .as_array()
        .unwrap()
        .clone()
}

fn summary(repo: &Repo, task: u64) -> String {
    repo.json(&["task", "show", &task.to_string(), "--json"])["task"]["summary"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn has_file(repo: &Path, branch: &str, file: &str) -> bool {
    let out = command("git")
        .args(["cat-file", "-e", &format!("{branch}:{file}")])
        .current_dir(repo)
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn waiting_for_a_sub_task_to_fail_is_not_a_split_and_the_validators_still_judge() {
    // The agent creates a sub-task, waits until it has failed, and exits cleanly. Nothing is
    // open when it exits, so this is ordinary work: its validator runs, fails, and the task is
    // not done.
    let waiter = "agentgrid ctl subtask create 'a doomed part' -l leaf >/dev/null && sh scripts/wait-for-children.sh && echo 'waited for the part'";
    let (leaf, leaf_yaml) = failing_leaf();
    let repo = project(&[
        (
            "waiter",
            &agent(
                "waiter",
                waiter,
                "  routing: {labels: [root]}\n  limits: {max_iterations: 1, max_attempts: 1}\n  validation:\n    validators:\n      - {name: never, run: \"echo the work is missing; exit 1\"}\n",
            ),
        ),
        (leaf, &leaf_yaml),
    ]);
    repo.ok(&["task", "add", "Wait for a part", "--label", "root"]);
    let mut run = Running::start(&repo);
    let out = run.finish(Duration::from_secs(60), "the run to end");
    assert_eq!(repo.task_state(2), "failed", "{out}");
    assert_ne!(repo.task_state(1), "done", "{out}");
    let runs = executions(&repo, 1);
    assert_eq!(runs[0]["kind"], "work");
    assert_eq!(runs[0]["state"], "failed", "{runs:?}");
    assert!(
        runs[0]["summary"]
            .as_str()
            .unwrap()
            .contains("validation failed"),
        "the validator ran: {runs:?}"
    );
}

#[test]
fn a_failed_sub_task_wakes_the_parents_resume_at_once() {
    // The parent splits into a part that fails and a part that waits for it. The resume timer is
    // ten minutes; the resume must come within seconds of the failure.
    // The resume holds on until the test has looked at `status`, then lets go.
    let planner = "if [ \"$AGENTGRID_EXECUTION_KIND\" = work ]; then a=$(agentgrid ctl subtask create 'first part' -l leaf); agentgrid ctl subtask create 'second part' -l leaf --blocked-by $a >/dev/null; else agentgrid ctl comment 'resume saw the failure'; until [ -e release ]; do sleep 0.05; done; rm release; fi";
    let (leaf, leaf_yaml) = failing_leaf();
    let repo = project(&[
        (
            "planner",
            &agent("planner", planner, "  routing: {labels: [big]}\n"),
        ),
        (leaf, &leaf_yaml),
    ]);
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    let mut run = Running::start(&repo);
    wait_for(
        Duration::from_secs(30),
        "the parent's resume after its sub-task failed",
        || {
            executions(&repo, 1)
                .iter()
                .any(|e| e["kind"] == "resume" && e["state"] == "running")
        },
    );
    let status = repo.ok(&["status"]);
    assert!(
        status.contains("resume") && status.contains("resumed at once: sub-task #2 failed"),
        "status says why the parent runs: {status}"
    );
    std::fs::write(repo.path().join(".agentgrid/workspaces/task-1/release"), "").unwrap();
    let out = run.finish(Duration::from_secs(30), "the run to end");
    assert!(
        executions(&repo, 1)
            .iter()
            .any(|e| e["kind"] == "resume" && e["state"] == "succeeded"),
        "{out}"
    );
    assert_eq!(repo.task_state(2), "failed");
    assert!(
        out.contains("#1 resumed at once: sub-task #2 failed"),
        "run says why the parent woke: {out}"
    );
    // The resume did not replace the failed part, so the parent is not done.
    assert_eq!(repo.task_state(1), "failed", "{out}");
    assert!(
        summary(&repo, 1).contains("sub-task #2 failed"),
        "{}",
        summary(&repo, 1)
    );
    let status = repo.ok(&["status"]);
    assert!(status.contains("sub-task #2 failed"), "{status}");
    assert!(
        out.contains("#3 cannot run: blocked by #2 (failed)"),
        "the sibling left open is reported, not stranded silently: {out}"
    );
}

#[test]
fn without_a_resume_a_failed_sub_task_fails_the_parent_at_once_with_the_reason() {
    // The third part is independent of the failed one; it ends only after the parent failed.
    let splitter = "a=$(agentgrid ctl subtask create 'first part' -l leaf); agentgrid ctl subtask create 'second part' -l leaf --blocked-by $a >/dev/null; agentgrid ctl subtask create 'third part' -l late >/dev/null";
    let late = "until agentgrid ctl status | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)[\"parent\"][\"state\"] == \"failed\" else 1)'; do sleep 0.05; done; echo late > late.txt";
    let (leaf, leaf_yaml) = failing_leaf();
    let repo = project(&[
        (
            "splitter",
            &agent(
                "splitter",
                splitter,
                "  routing: {labels: [big], kinds: [work]}\n",
            ),
        ),
        (leaf, &leaf_yaml),
        (
            "late",
            &agent("late", late, "  routing: {labels: [late]}\n"),
        ),
    ]);
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    let mut run = Running::start(&repo);
    let out = run.finish(Duration::from_secs(30), "the run to end");
    assert_eq!(repo.task_state(1), "failed", "{out}");
    assert!(out.contains("✗ #1 failed: sub-task #2 failed"), "{out}");
    let status = repo.ok(&["status"]);
    assert!(status.contains("sub-task #2 failed"), "{status}");
    assert!(
        status.contains("#3, #4 are left open"),
        "the parent says what became of the open siblings: {status}"
    );
    // The sibling left open ran to its end, and its work is on the failed parent's branch for
    // whoever reopens it; no worktree is left behind.
    assert_eq!(repo.task_state(4), "done", "{out}");
    assert!(
        has_file(repo.path(), "agentgrid/task-1", "late.txt"),
        "{out}"
    );
    let worktrees = repo.git(&["worktree", "list"]);
    assert_eq!(worktrees.lines().count(), 1, "{worktrees}");
}

#[test]
fn a_parent_whose_validator_fails_on_the_merged_tree_is_not_done() {
    // The splitter takes no resume executions, so today the evidence of its sub-tasks alone
    // would close it. It has validators: they must run on the merged tree first.
    let splitter = "if [ \"$AGENTGRID_EXECUTION_KIND\" = work ]; then agentgrid ctl subtask create 'the part' -l part >/dev/null; fi";
    let part = (
        "part",
        agent(
            "part",
            "echo ok > part.txt",
            "  routing: {labels: [part]}\n",
        ),
    );
    let spec = |validator: &str| {
        format!(
            "  routing: {{labels: [big], kinds: [work]}}\n  limits: {{max_iterations: 1, max_attempts: 1}}\n  validation:\n    validators:\n      - {{name: whole, run: \"{validator}\"}}\n"
        )
    };
    // The validator passes only where the sub-task's work has been merged in, and also wants
    // a file nobody writes.
    let failing = project(&[
        (
            "splitter",
            &agent(
                "splitter",
                splitter,
                &spec("test -f part.txt && test -f whole.txt"),
            ),
        ),
        (part.0, &part.1),
    ]);
    failing.ok(&["task", "add", "Big job", "--label", "big"]);
    let mut run = Running::start(&failing);
    let out = run.finish(Duration::from_secs(60), "the run to end");
    assert_eq!(failing.task_state(2), "done", "{out}");
    assert_ne!(failing.task_state(1), "done", "{out}");
    let kinds: Vec<String> = executions(&failing, 1)
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap(),
                e["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["work succeeded", "resume failed"],
        "a validation run followed the split"
    );

    // The same validator without the missing file passes: it ran on the merged tree.
    let passing = project(&[
        (
            "splitter",
            &agent("splitter", splitter, &spec("test -f part.txt")),
        ),
        (part.0, &part.1),
    ]);
    passing.ok(&["task", "add", "Big job", "--label", "big"]);
    let mut run = Running::start(&passing);
    let out = run.finish(Duration::from_secs(60), "the run to end");
    assert_eq!(passing.task_state(1), "done", "{out}");
    assert!(has_file(passing.path(), "agentgrid/task-1", "part.txt"));
}

#[test]
fn waiting_for_sub_tasks_that_are_done_gives_a_done_parent_with_their_work_merged() {
    // The agent waits for its sub-task to be done before it exits: no split. Its validators
    // judge its own work at the exit; the sub-task's work is merged only then, so with
    // validators a resume judges the merged tree as well. Without validators the clean exit is
    // the evidence, and the merge still lands before the parent ends.
    let waiter = "if [ \"$AGENTGRID_EXECUTION_KIND\" = work ]; then echo mine > own.txt; agentgrid ctl subtask create 'the part' -l part >/dev/null && sh scripts/wait-for-children.sh; fi";
    let part = (
        "part",
        agent(
            "part",
            "echo ok > part.txt",
            "  routing: {labels: [part]}\n",
        ),
    );
    for validators in [
        "  validation:\n    validators:\n      - {name: whole, run: \"test -f own.txt\"}\n",
        "",
    ] {
        let spec = format!(
            "  routing: {{labels: [root]}}\n  limits: {{max_iterations: 1, max_attempts: 1}}\n{validators}"
        );
        let repo = project(&[
            ("waiter", &agent("waiter", waiter, &spec)),
            (part.0, &part.1),
        ]);
        repo.ok(&["task", "add", "Wait for a part", "--label", "root"]);
        let mut run = Running::start(&repo);
        let out = run.finish(Duration::from_secs(60), "the run to end");
        assert_eq!(repo.task_state(1), "done", "{out}");
        assert!(
            has_file(repo.path(), "agentgrid/task-1", "part.txt"),
            "the sub-task's work is on the parent's branch: {out}"
        );
        let kinds: Vec<String> = executions(&repo, 1)
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        let expected: &[&str] = if validators.is_empty() {
            &["work"]
        } else {
            &["work", "resume"]
        };
        assert_eq!(kinds, expected, "{out}");
    }
}

#[test]
fn a_conflicting_sub_task_is_reported_by_the_files_it_conflicts_in() {
    // The parent writes the same new file as its sub-task after the sub-task ended, so the
    // merge at the parent's end conflicts.
    let waiter = "if [ \"$AGENTGRID_EXECUTION_KIND\" = work ]; then agentgrid ctl subtask create 'the part' -l part >/dev/null && sh scripts/wait-for-children.sh && echo parent > shared.txt; fi";
    let part = agent(
        "part",
        "echo child > shared.txt",
        "  routing: {labels: [part]}\n",
    );
    let spec = "  routing: {labels: [root]}\n  limits: {max_iterations: 1, max_attempts: 1}\n";
    let repo = project(&[("waiter", &agent("waiter", waiter, spec)), ("part", &part)]);
    repo.ok(&["task", "add", "Wait for a part", "--label", "root"]);
    let mut run = Running::start(&repo);
    let out = run.finish(Duration::from_secs(60), "the run to end");
    assert!(
        out.contains("merging agentgrid/task-2 conflicts in shared.txt"),
        "{out}"
    );
}
