//! The engine stops reading what it knows the store does not hold (an open message, a running
//! workflow run), and learns otherwise from the log, whoever wrote it. Each test lets the
//! engine look and find nothing while a first task runs, writes through a second process (the
//! CLI) while the engine runs, and checks that the engine acts on it: the next prompt holds
//! the message or the comment; the workflow started meanwhile is carried out to its end. What
//! was said before the engine started is read at its start, and reaches the first prompt.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

/// An agent that keeps each prompt as `dir/prompt-EXECUTION` and, on task 1, waits (at most
/// 30 s) for the file `dir/go`, so that the test can write while it runs.
fn waiting_agent(name: &str, dir: &Path, routing: &str) -> String {
    let script = "cp \"$AGENTGRID_PROMPT_FILE\" \"$DIR/prompt-$AGENTGRID_EXECUTION_ID\"; \
                  if [ \"$AGENTGRID_TASK_ID\" = 1 ]; then i=0; while [ ! -f \"$DIR/go\" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; fi; true";
    agent(
        name,
        script,
        &format!(
            "  prompt: \"Task {{{{ task.id }}}}\\n{{% if inbox %}}{{{{ inbox }}}}{{% endif %}}\\n{{% if comments %}}{{{{ comments }}}}{{% endif %}}\\n\"\n  sandbox: {{filesystem: none, network: host}}\n{routing}"
        ),
    )
    .replace("  prompt: \"Task {{ task.id }}: {{ task.title }}\"\n", "")
    .replace(
        "    command:",
        &format!("    env: {{DIR: \"{}\"}}\n    command:", dir.display()),
    )
}

fn one_at_a_time(repo: &Repo) {
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  concurrency: {global: 1}\n",
    )
    .unwrap();
}

/// Starts `agentgrid run`, waits until execution 1 kept its prompt in `dir` (the engine has
/// looked at the store for it), runs `meanwhile`, lets task 1 finish and waits for the run to
/// end, successfully.
fn run_writing_meanwhile(repo: &Repo, dir: &Path, meanwhile: impl FnOnce()) {
    let run = repo
        .cmd(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentgrid run starts");
    wait_for(Duration::from_secs(30), "execution 1 to start", || {
        dir.join("prompt-1").exists()
    });
    meanwhile();
    std::fs::write(dir.join("go"), "").unwrap();
    let out = run.wait_with_output().expect("agentgrid run ends");
    assert!(out.status.success(), "run failed: {}", stderr(&out));
}

/// A project whose one agent, `worker`, keeps its prompts in the returned directory, running
/// one execution at a time, with `tasks` tasks each blocked by the one before.
fn one_worker_and_tasks_in_a_row(tasks: u64) -> (tempfile::TempDir, Repo) {
    let scratch = tempfile::tempdir().unwrap();
    let worker = waiting_agent("worker", scratch.path(), "  routing: {default: true}\n");
    let repo = Repo::with_agents(&[("worker", &worker)]);
    one_at_a_time(&repo);
    repo.ok(&["task", "add", "Task 1"]);
    for n in 2..=tasks {
        let before = (n - 1).to_string();
        repo.ok(&["task", "add", &format!("Task {n}"), "--blocked-by", &before]);
    }
    (scratch, repo)
}

fn prompt(dir: &Path, execution: u64) -> String {
    std::fs::read_to_string(dir.join(format!("prompt-{execution}")))
        .unwrap_or_else(|e| panic!("no prompt of execution {execution}: {e}"))
}

#[test]
fn a_message_another_process_sends_while_the_engine_runs_reaches_the_next_prompt() {
    let (scratch, repo) = one_worker_and_tasks_in_a_row(2);
    let dir = scratch.path();
    run_writing_meanwhile(&repo, dir, || {
        repo.ok(&[
            "msg",
            "send",
            "--to",
            "agent:worker",
            "--type",
            "STATUS",
            "--payload",
            r#"{"text": "sent from outside"}"#,
        ]);
    });
    assert!(
        !prompt(dir, 1).contains("sent from outside"),
        "the message came after the first prompt"
    );
    assert!(
        prompt(dir, 2).contains("sent from outside"),
        "the second prompt lacks the message:\n{}",
        prompt(dir, 2)
    );
    assert_eq!(repo.task_state(2), "done");
}

const WORKFLOW: &str = "apiVersion: agentgrid.dev/v1
kind: Workflow
metadata: {name: check}
spec:
  start: test
  states:
    test:
      agent: tester
      on: [{when: succeeded, to: done}, {to: failed}]
    done: {end: succeeded}
    failed: {end: failed}
";

#[test]
fn a_workflow_another_process_starts_while_the_engine_runs_is_carried_out() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let worker = waiting_agent("worker", dir, "  routing: {default: true}\n");
    let tester = waiting_agent("tester", dir, "  routing: {labels: [qa]}\n");
    let repo = Repo::with_agents(&[("worker", &worker), ("tester", &tester)]);
    one_at_a_time(&repo);
    let workflows = repo.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::write(workflows.join("check.yaml"), WORKFLOW).unwrap();
    repo.ok(&["validate"]);
    repo.ok(&["task", "add", "First"]);
    repo.ok(&["task", "add", "Checked", "--label", "qa"]);
    run_writing_meanwhile(&repo, dir, || {
        repo.ok(&["workflow", "start", "2", "check"]);
    });
    let run = repo.json(&["workflow", "show", "W1", "--json"]);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["task"], 2, "{run}");
    // The run's one visit ran the task's one execution: nothing ran it as a plain task first.
    let task = repo.json(&["task", "show", "2", "--json"]);
    assert_eq!(task["task"]["executions"], 1, "{task}");
}

#[test]
fn comments_made_before_the_start_and_while_the_engine_runs_reach_the_prompts() {
    let (scratch, repo) = one_worker_and_tasks_in_a_row(3);
    let dir = scratch.path();
    repo.ok(&["task", "comment", "1", "said before the start"]);
    run_writing_meanwhile(&repo, dir, || {
        repo.ok(&["task", "comment", "2", "said while it ran"]);
    });
    assert!(
        prompt(dir, 1).contains("said before the start"),
        "the first prompt lacks the comment:\n{}",
        prompt(dir, 1)
    );
    assert!(
        prompt(dir, 2).contains("said while it ran"),
        "the second prompt lacks the comment:\n{}",
        prompt(dir, 2)
    );
    assert!(!prompt(dir, 3).contains("said"), "{}", prompt(dir, 3));
}
