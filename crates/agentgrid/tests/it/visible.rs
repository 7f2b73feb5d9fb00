//! State a person can see: timers, the engine, interrupted executions, what is still relevant,
//! cost, diffs and the running status line, each through the real binary.

use std::time::Duration;

use crate::support::*;

/// A backoff long enough that only a reopen can make the task run within a test's time.
const SLOW_RETRY: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  shutdown_grace: 2s\n  retry: {base_delay: 10m, max_delay: 10m}\n";

const FAST_CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

fn project(script: &str, extra_spec: &str, config: &str) -> Repo {
    let spec = format!("  routing: {{default: true}}\n{extra_spec}");
    let repo = Repo::with_agents(&[("coder", &agent("coder", script, &spec))]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), config).unwrap();
    repo
}

fn task_json(repo: &Repo, id: u64) -> serde_json::Value {
    repo.tasks()
        .into_iter()
        .find(|t| t["id"] == id)
        .expect("task exists")
}

fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    text.len() == 24 && b[4] == b'-' && b[10] == b'T' && text.ends_with('Z')
}

#[test]
fn a_task_in_backoff_shows_its_next_try_and_a_reopen_runs_it_at_once() {
    // The first execution fails; any later one succeeds.
    let repo = project(
        "[ \"$AGENTGRID_EXECUTION_ID\" -gt 1 ] || exit 3",
        "  limits: {max_attempts: 3}\n",
        SLOW_RETRY,
    );
    repo.ok(&["task", "add", "flaky"]);
    let mut engine = repo
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "the first try to fail", || {
        task_json(&repo, 1)["timer"]["kind"] == "retry"
    });
    let timer = &task_json(&repo, 1)["timer"];
    assert!(is_rfc3339(timer["at"].as_str().unwrap()), "{timer}");

    let status = repo.ok(&["status"]);
    assert!(status.contains("next try in 10 m, at "), "{status}");
    assert!(
        status.contains(&format!("engine: running (pid {}), since ", engine.id())),
        "{status}"
    );
    let json = repo.json(&["status", "--json"]);
    assert_eq!(json["timers"][0]["task"], 1, "{json}");
    assert_eq!(json["timers"][0]["kind"], "retry", "{json}");
    assert!(
        is_rfc3339(json["timers"][0]["at"].as_str().unwrap()),
        "{json}"
    );
    assert_eq!(json["engine"]["state"], "running", "{json}");
    assert_eq!(json["engine"]["pid"], engine.id(), "{json}");
    assert!(
        is_rfc3339(json["engine"]["since"].as_str().unwrap()),
        "{json}"
    );
    let list = repo.ok(&["task", "list"]);
    assert!(
        list.contains("NEXT") && list.contains("next try in 10 m"),
        "{list}"
    );

    // Stopped and reopened, the task forgets its backoff and the running engine takes it.
    repo.ok(&["task", "cancel", "1"]);
    repo.ok(&["task", "reopen", "1"]);
    assert!(task_json(&repo, 1)["timer"].is_null());
    wait_for(
        Duration::from_secs(30),
        "the reopened task to run without waiting out its old backoff",
        || repo.task_state(1) == "done",
    );
    let status = engine.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let after = repo.ok(&["status"]);
    assert!(
        after.contains("engine: not running") && !after.contains("timers:"),
        "{after}"
    );
}

#[test]
fn after_a_kill_the_dead_engines_executions_show_as_interrupted() {
    let repo = project("sleep 30", "", FAST_CONFIG);
    repo.ok(&["task", "add", "slow"]);
    let mut engine = repo
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "the execution to run", || {
        repo.json(&["status", "--json"])["active_executions"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    let live = repo.ok(&["status"]);
    assert!(
        live.contains("running:") && !live.contains("interrupted"),
        "{live}"
    );
    engine.kill().unwrap(); // SIGKILL
    engine.wait().unwrap();

    let status = repo.ok(&["status"]);
    assert!(
        status.contains("interrupted (engine gone; the next run recovers them):"),
        "{status}"
    );
    assert!(status.contains("engine: not running"), "{status}");
    assert!(!status.contains("running:"), "{status}");
    let json = repo.json(&["status", "--json"]);
    assert_eq!(json["engine"]["state"], "stopped", "{json}");
    assert_eq!(json["active_executions"][0]["interrupted"], true, "{json}");

    // The next run recovers it; cancelled first, the task does not run again.
    repo.ok(&["task", "cancel", "1"]);
    let out = repo.ok(&["run"]);
    assert!(out.contains("recovered after a crash"), "{out}");
    let json = repo.json(&["status", "--json"]);
    assert!(json["active_executions"].as_array().unwrap().is_empty());
}

#[test]
fn status_forgets_a_failed_validator_once_the_task_is_done() {
    // Iteration 1 fails its validator, iteration 2 passes.
    let repo = project(
        "echo $AGENTGRID_ITERATION > it.txt",
        "  limits: {max_iterations: 2, max_attempts: 1}\n  validation:\n    validators:\n      - name: second\n        run: \"grep -q 2 it.txt\"\n",
        FAST_CONFIG,
    );
    repo.ok(&["task", "add", "twice"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(
        show["validations"][0]["passed"], false,
        "the first iteration failed: {show}"
    );
    let status = repo.ok(&["status"]);
    assert!(!status.contains("last failed validator"), "{status}");
}

#[test]
fn a_done_tasks_judge_base_is_pruned_at_its_end_and_at_start() {
    let repo = project(
        "echo work > work.txt",
        "  validation:\n    validators:\n      - name: present\n        run: \"test -f work.txt\"\n",
        FAST_CONFIG,
    );
    repo.ok(&["task", "add", "done soon"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    let judges = repo.path().join(".agentgrid/judges");
    assert!(judges.is_dir(), "the validators ran on a judge tree");
    assert!(
        !judges.join("task-1.base").exists(),
        "pruned when the task ended"
    );

    // Bases left by an older engine: one of a done task, one of a task never made, and one of
    // a failed task, which a person may reopen.
    let failing = agent(
        "failing",
        "exit 3",
        "  routing: {labels: [fail]}\n  limits: {max_attempts: 1}\n",
    );
    std::fs::write(repo.path().join(".agentgrid/agents/failing.yaml"), failing).unwrap();
    repo.ok(&["task", "add", "fails", "--label", "fail"]);
    let _ = repo.run(&["run"]);
    assert_eq!(repo.task_state(2), "failed");
    let base = "0123456789abcdef0123456789abcdef01234567\n";
    for id in [1, 2, 99] {
        std::fs::write(judges.join(format!("task-{id}.base")), base).unwrap();
    }
    let _ = repo.run(&["run"]);
    assert!(!judges.join("task-1.base").exists(), "a done task's base");
    assert!(
        !judges.join("task-99.base").exists(),
        "a base without a task"
    );
    assert!(
        judges.join("task-2.base").exists(),
        "a failed task's base stays for a reopen"
    );
}
