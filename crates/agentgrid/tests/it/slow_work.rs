//! Slow workspace work off the engine's loop, through the real binary: a `before_remove` hook
//! that sleeps, or a merge into a parent that has to check its worktree out again behind a slow
//! `after_create` hook, delays no other agent's control calls, and the run still waits for that
//! work before it ends.

use std::time::{Duration, Instant};

use crate::idempotent::on_branch;
use crate::support::*;

/// How long the slow hooks sleep: far longer than the callers' timeout.
const HOOK_SLEEP_S: u64 = 8;

/// The timeout each control call of the caller runs under, in seconds.
const CALL_TIMEOUT_S: u64 = 2;

/// An agent that makes 50 `ctl comment` calls over about eight seconds, each under
/// [`CALL_TIMEOUT_S`], fails on the first one that times out, and writes the slowest answer's
/// time in milliseconds to `latency-ms.txt`.
fn caller_script() -> String {
    format!(
        "max=0; i=0; \
         while [ $i -lt 50 ]; do \
           s=$(date +%s%N); \
           timeout {CALL_TIMEOUT_S} agentgrid ctl comment \"ping $i\" >/dev/null || {{ echo \"call $i was not answered in time\" >&2; exit 3; }}; \
           e=$(date +%s%N); d=$(( (e - s) / 1000000 )); \
           if [ $d -gt $max ]; then max=$d; fi; \
           i=$((i+1)); sleep 0.15; \
         done; \
         echo $max > latency-ms.txt"
    )
}

fn config(hooks: &str) -> String {
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  concurrency: {{global: 4}}\n  \
         workspace: {{hooks: {{{hooks}}}}}\n"
    )
}

/// The caller's slowest answer, from its branch, after checking that it succeeded.
fn slowest_answer(repo: &Repo, caller: u64, out: &str) -> u64 {
    assert_eq!(
        repo.task_state(caller),
        "done",
        "the caller's calls were all answered in time: {out}"
    );
    let branch = format!("agentgrid/task-{caller}");
    let latency = on_branch(repo.path(), &branch, "latency-ms.txt").expect("the caller wrote it");
    latency.trim().parse().unwrap()
}

#[test]
fn a_sleeping_before_remove_hook_delays_no_other_agents_calls() {
    // The quick agent marks its worktree, so that only its removal sleeps.
    let repo = Repo::with_agents(&[
        (
            "quick",
            &agent("quick", "touch slow-hook", "  routing: {labels: [quick]}\n"),
        ),
        (
            "caller",
            &agent(
                "caller",
                &caller_script(),
                "  routing: {labels: [caller]}\n  limits: {max_attempts: 1}\n",
            ),
        ),
    ]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        config(&format!(
            "before_remove: \"if [ -e slow-hook ]; then sleep {HOOK_SLEEP_S}; fi\""
        )),
    )
    .unwrap();
    repo.ok(&["task", "add", "Quick one", "--label", "quick"]);
    repo.ok(&["task", "add", "Keep calling", "--label", "caller"]);
    let started = Instant::now();
    let out = repo.ok(&["run"]);
    let took = started.elapsed();
    assert_eq!(repo.task_state(1), "done", "{out}");
    let slowest = slowest_answer(&repo, 2, &out);
    assert!(
        slowest < 1500,
        "every call is answered at once, not after the hook: the slowest took {slowest} ms"
    );
    // The run ended only once the hook had run to its end and the worktree was gone.
    assert!(
        took >= Duration::from_secs(HOOK_SLEEP_S),
        "the run waited for the hook ({took:?})"
    );
    assert!(!repo.path().join(".agentgrid/workspaces/task-1").exists());
}

#[test]
fn a_slow_merge_into_a_parent_delays_no_other_agents_calls() {
    // The planner marks its branch and splits the task in two; with no agent to resume it,
    // the failed part fails it at once and its worktree goes. When the other part is done, its
    // merge into the failed parent checks the parent's worktree out again, and `after_create`
    // finds the mark and sleeps, all while the caller keeps calling.
    let planner = "touch slow-create && \
                   agentgrid ctl subtask create 'breaks' -l breaks >/dev/null && \
                   agentgrid ctl subtask create 'works' -l works >/dev/null";
    let repo = Repo::with_agents(&[
        (
            "planner",
            &agent(
                "planner",
                planner,
                "  routing: {labels: [big], kinds: [work]}\n",
            ),
        ),
        (
            "breaks",
            &agent(
                "breaks",
                "exit 1",
                "  routing: {labels: [breaks]}\n  limits: {max_attempts: 1}\n",
            ),
        ),
        (
            "works",
            &agent(
                "works",
                "sleep 1.5 && echo part > part.txt",
                "  routing: {labels: [works]}\n",
            ),
        ),
        (
            "caller",
            &agent(
                "caller",
                &caller_script(),
                "  routing: {labels: [caller]}\n  limits: {max_attempts: 1}\n",
            ),
        ),
    ]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        config(&format!(
            "after_create: \"if [ -e slow-create ]; then sleep {HOOK_SLEEP_S}; fi\""
        )),
    )
    .unwrap();
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    repo.ok(&["task", "add", "Keep calling", "--label", "caller"]);
    // A failed task makes the run's exit status 1.
    let out = stdout(&repo.run(&["run"]));
    assert_eq!(repo.task_state(1), "failed", "{out}");
    assert_eq!(repo.task_state(4), "done", "{out}");
    let slowest = slowest_answer(&repo, 2, &out);
    assert!(
        slowest < 1500,
        "every call is answered at once, not after the merge: the slowest took {slowest} ms"
    );
    // The merge was made, behind the slow hook, and the parent keeps no worktree.
    assert_eq!(
        on_branch(repo.path(), "agentgrid/task-1", "part.txt").as_deref(),
        Some("part\n"),
        "the part's work is on the failed parent's branch: {out}"
    );
    assert!(!repo.path().join(".agentgrid/workspaces/task-1").exists());
}
