//! `agentgrid run` with command-runtime agents: work, validation, retries, limits, signals.
//!
//! Agents here that share a file with the test through /tmp or .agentgrid opt out of the
//! sandbox explicitly (`filesystem: none`); the sandbox itself is tested by `escape.rs`.

use std::time::Duration;

use crate::support::*;

const FAST_CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

fn fast(repo: &Repo) {
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), FAST_CONFIG).unwrap();
}

#[test]
fn a_task_runs_in_its_own_worktree_and_its_work_lands_on_its_branch() {
    let repo = Repo::with_agents(&[(
        "writer",
        &agent(
            "writer",
            "echo \"$AGENTGRID_TASK_ID\" > out.txt; pwd; env | grep -c AGENTGRID_ > count.txt",
            "  routing: {default: true}\n",
        ),
    )]);
    repo.ok(&["task", "add", "Write a file"]);
    let out = repo.ok(&["run"]);
    assert!(out.contains("✓ #1 done"), "{out}");
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(repo.git(&["show", "agentgrid/task-1:out.txt"]).trim(), "1");
    let count: u32 = repo
        .git(&["show", "agentgrid/task-1:count.txt"])
        .trim()
        .parse()
        .unwrap();
    assert!(count >= 8, "the agent sees the AGENTGRID_* variables");
    assert!(
        !repo.path().join("out.txt").exists(),
        "the main checkout is untouched"
    );
    let worktrees = repo.git(&["worktree", "list"]);
    assert_eq!(
        worktrees.lines().count(),
        1,
        "the worktree was removed after the task ended: {worktrees}"
    );
    let log = repo.ok(&["logs", "1"]);
    assert!(
        log.contains(".agentgrid/workspaces/task-1"),
        "the agent ran in its worktree: {log}"
    );
}

#[test]
fn a_failing_validation_feeds_back_and_the_next_iteration_fixes_it() {
    // The agent writes a broken answer first; the validator's complaint reaches the second
    // iteration's prompt, and the agent fixes it only when it sees that complaint.
    let script = "if grep -q 'WRONG ANSWER' \"$AGENTGRID_PROMPT_FILE\"; then echo 42 > answer; else echo 41 > answer; fi";
    let spec = "  prompt: \"{% if feedback %}{{ feedback }}{% endif %}\"\n  routing: {default: true}\n  limits: {max_iterations: 3}\n  validation:\n    validators:\n      - name: answer\n        run: \"test $(cat answer) = 42 || { echo WRONG ANSWER; exit 1; }\"\n";
    let manifest = agent("solver", script, spec)
        .replace("  prompt: \"Task {{ task.id }}: {{ task.title }}\"\n", "");
    let repo = Repo::with_agents(&[("solver", &manifest)]);
    repo.ok(&["task", "add", "Find the answer"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    let show = repo.json(&["task", "show", "1", "--json"]);
    let exec = &show["executions"][0];
    assert_eq!(exec["iteration"], 2, "{exec}");
    assert_eq!(exec["state"], "succeeded");
    let validated: Vec<_> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "task_state_changed")
        .collect();
    assert!(!validated.is_empty());
}

#[test]
fn the_agents_claim_is_not_enough_when_validators_fail() {
    let spec = "  routing: {default: true}\n  limits: {max_iterations: 2, max_attempts: 1}\n  validation:\n    validators:\n      - {name: never, run: \"false\"}\n";
    let repo = Repo::with_agents(&[(
        "liar",
        &agent(
            "liar",
            "agentgrid ctl complete --summary 'all done, trust me'",
            spec,
        ),
    )]);
    fast(&repo);
    repo.ok(&["task", "add", "Claim without proof"]);
    let out = repo.run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "a failed task makes run exit 1");
    assert_eq!(repo.task_state(1), "failed");
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert!(
        show["task"]["summary"]
            .as_str()
            .unwrap()
            .contains("validation failed after 2 iterations"),
        "{}",
        show["task"]
    );
}

#[test]
fn failures_are_retried_with_backoff_up_to_the_limit() {
    let spec = "  routing: {default: true}\n  limits: {max_attempts: 3}\n";
    let repo = Repo::with_agents(&[("flaky", &agent("flaky", "echo boom >&2; exit 3", spec))]);
    fast(&repo);
    repo.ok(&["task", "add", "Always fails"]);
    repo.run(&["run"]);
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["state"], "failed");
    assert_eq!(show["executions"].as_array().unwrap().len(), 3);
    assert!(
        show["task"]["summary"]
            .as_str()
            .unwrap()
            .contains("exited with 3"),
        "{}",
        show["task"]
    );
    let events: Vec<String> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert!(
        events.iter().filter(|t| *t == "task_scheduled").count() >= 2,
        "backoff recorded: {events:?}"
    );
}

#[test]
fn a_task_waits_for_its_dependencies() {
    let repo = Repo::with_agents(&[(
        "w",
        &agent(
            "w",
            "echo $AGENTGRID_TASK_ID >> \"$ORDER\"",
            "  routing: {default: true}\n  sandbox: {filesystem: none, network: host}\n",
        )
        .replace(
            "    command:",
            "    env: {ORDER: \"{{ task.body }}\"}\n    command:",
        ),
    )]);
    let order = repo.path().join(".agentgrid/order.txt");
    let order = order.to_str().unwrap();
    repo.ok(&["task", "add", "second", "--body", order]);
    repo.ok(&["task", "add", "first", "--body", order]);
    repo.ok(&["task", "dep", "add", "1", "2"]);
    repo.ok(&["run"]);
    let ran = std::fs::read_to_string(order).unwrap();
    assert_eq!(ran.split_whitespace().collect::<Vec<_>>(), vec!["2", "1"]);
}

#[test]
fn timeouts_and_stalls_kill_the_whole_process_group() {
    let pidfile = tempfile::NamedTempFile::new().unwrap();
    let pidpath = pidfile.path().to_str().unwrap().to_string();
    let sleeper = format!("sleep 300 & echo $! > {pidpath}; echo started; wait");
    let repo = Repo::with_agents(&[
        (
            "slow",
            &agent(
                "slow",
                &sleeper,
                "  routing: {labels: [slow]}\n  limits: {timeout: 1s, max_attempts: 1}\n  sandbox: {filesystem: none, network: host}\n",
            ),
        ),
        (
            "quiet",
            &agent(
                "quiet",
                "echo hello; sleep 300",
                "  routing: {labels: [quiet]}\n  limits: {stall_timeout: 1s, max_attempts: 1}\n",
            ),
        ),
    ]);
    fast(&repo);
    repo.ok(&["task", "add", "Too slow", "--label", "slow"]);
    repo.ok(&["task", "add", "Goes silent", "--label", "quiet"]);
    let start = std::time::Instant::now();
    repo.run(&["run"]);
    assert!(start.elapsed() < Duration::from_secs(60));
    let status = repo.json(&["status", "--json"]);
    let states: Vec<String> = status["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect();
    assert!(states.contains(&"timed_out".to_string()), "{states:?}");
    assert!(states.contains(&"stalled".to_string()), "{states:?}");
    let grandchild: i32 = std::fs::read_to_string(&pidpath)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(Duration::from_secs(5), "the grandchild to be gone", || {
        !std::path::Path::new(&format!("/proc/{grandchild}")).exists()
            || std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    });
}

#[test]
fn sigterm_winds_down_and_the_task_runs_again_later() {
    let (repo, mut child) = engine_running_a_long_task(
        "if [ -e \"$MARK\" ]; then exit 0; fi; touch \"$MARK\"; echo working; sleep 300",
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "a signalled run exits cleanly");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the grace period bounds shutdown"
    );
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["executions"][0]["state"], "cancelled");
    assert_eq!(
        show["task"]["state"], "open",
        "an interrupted task runs again"
    );
    assert_eq!(
        show["task"]["attempts"], 0,
        "an interruption costs no attempt"
    );
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
}

#[test]
fn run_reports_tasks_nothing_can_run() {
    let repo = Repo::with_agents(&[(
        "fe",
        &agent("fe", "true", "  routing: {labels: [frontend]}\n"),
    )]);
    repo.ok(&["task", "add", "Backend work", "--label", "backend"]);
    let out = repo.ok(&["run"]);
    assert!(
        out.contains("#1 cannot run: no agent runs work executions for labels [backend]"),
        "{out}"
    );
}

#[test]
fn claim_mode_continues_until_the_agent_claims_completion() {
    // The agent needs three turns; it claims completion only on the third.
    let script = "n=$(cat \"$COUNT\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$COUNT\"; if [ $n -ge 3 ]; then agentgrid ctl complete --summary \"finished in $n turns\"; fi";
    let count = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(count.path(), "0").unwrap();
    let manifest = agent(
        "turns",
        script,
        "  routing: {default: true}\n  completion: claim\n  sandbox: {filesystem: none, network: host}\n",
    )
    .replace(
        "    command:",
        &format!(
            "    env: {{COUNT: \"{}\"}}\n    command:",
            count.path().display()
        ),
    );
    let repo = Repo::with_agents(&[("turns", &manifest)]);
    fast(&repo);
    repo.ok(&["task", "add", "Takes three turns"]);
    repo.ok(&["run"]);
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["state"], "done");
    assert_eq!(show["task"]["summary"], "finished in 3 turns");
    assert_eq!(
        show["executions"].as_array().unwrap().len(),
        3,
        "two continuations, then the claim"
    );
    assert_eq!(
        show["task"]["attempts"], 0,
        "continuations are not failures"
    );
}

#[test]
fn cancelling_a_running_task_stops_its_agent() {
    let (repo, mut engine) = engine_running_a_long_task("echo started; touch \"$MARK\"; sleep 300");
    let follow = repo
        .cmd(&["logs", "1", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    repo.ok(&["task", "cancel", "1", "--reason", "not needed after all"]);
    wait_for(Duration::from_secs(20), "the execution to end", || {
        repo.json(&["status", "--json"])["active_executions"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(engine.wait().unwrap().success());
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["state"], "cancelled");
    assert_eq!(show["executions"][0]["state"], "cancelled");
    let follow = follow.wait_with_output().unwrap();
    assert!(
        stdout(&follow).contains("started"),
        "logs --follow printed the output and ended with the execution"
    );
}

/// A project whose one task runs `script` (which touches `$MARK` once it has started) under
/// `agentgrid run --forever`, returned once the agent has started.
fn engine_running_a_long_task(script: &str) -> (Repo, std::process::Child) {
    let repo = Repo::with_agents(&[(
        "long",
        &agent(
            "long",
            script,
            "  routing: {default: true}\n  sandbox: {filesystem: none, network: host}\n",
        )
        .replace(
            "    command:",
            "    env: {MARK: \"{{ task.body }}\"}\n    command:",
        ),
    )]);
    fast(&repo);
    let mark = repo.path().join(".agentgrid/mark");
    repo.ok(&["task", "add", "Long job", "--body", mark.to_str().unwrap()]);
    let engine = repo
        .cmd(&["run", "--forever"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "the agent to start", || {
        mark.exists()
    });
    (repo, engine)
}

#[test]
fn logs_of_a_silent_execution_say_so_and_succeed() {
    let repo = Repo::with_agents(&[(
        "quiet",
        &agent("quiet", "true", "  routing: {default: true}\n"),
    )]);
    repo.ok(&["task", "add", "Say nothing"]);
    repo.ok(&["run"]);
    let out = repo.run(&["logs", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("execution 1 printed nothing"),
        "{}",
        stderr(&out)
    );
}
