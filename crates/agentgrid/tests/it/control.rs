//! The control channel from inside real executions.
//!
//! Agents here that share a file with the test through /tmp or .agentgrid opt out of the
//! sandbox explicitly (`filesystem: none`); the sandbox itself is tested by `escape.rs`.

use crate::support::*;

/// An agent routed by `routing` whose script reports to the file `$OUT`, shared with the test,
/// so it opts out of the sandbox's filesystem explicitly.
fn reporting_agent(name: &str, script: &str, routing: &str, out: &std::path::Path) -> String {
    agent(
        name,
        script,
        &format!("  routing: {routing}\n  sandbox: {{filesystem: none, network: host}}\n"),
    )
    .replace(
        "    command:",
        &format!("    env: {{OUT: \"{}\"}}\n    command:", out.display()),
    )
}

#[test]
fn an_agent_splits_its_task_and_a_resume_closes_it() {
    let planner = "if [ $AGENTGRID_EXECUTION_KIND = work ]; then a=$(agentgrid ctl subtask create 'part one' -l part); agentgrid ctl subtask create 'part two' -l part --blocked-by $a; else agentgrid ctl complete --summary 'parts done'; fi";
    let repo = Repo::with_agents(&[
        (
            "planner",
            &agent("planner", planner, "  routing: {labels: [big]}\n"),
        ),
        (
            "worker",
            &agent(
                "worker",
                "echo $AGENTGRID_TASK_ID > part.txt",
                "  routing: {labels: [part]}\n",
            ),
        ),
    ]);
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    repo.ok(&["run"]);
    let tasks = repo.tasks();
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|t| t["state"] == "done"), "{tasks:?}");
    assert_eq!(tasks[2]["blocked_by"], serde_json::json!([2]));
    let show = repo.json(&["task", "show", "1", "--json"]);
    let kinds: Vec<&str> = show["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["work", "resume"]);
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:part.txt"]).trim(),
        "3",
        "sub-task work merged into the parent branch"
    );
}

#[test]
fn invalid_calls_are_refused_with_a_reason_and_change_nothing() {
    // Every call below is wrong; the agent records each refusal and its exit code.
    let script = "for args in 'subtask create x --blocked-by 999' 'nudge 999' 'subtask create \"\"' 'complete --summary \"\"'; do eval agentgrid ctl $args >> \"$OUT\" 2>&1; echo \"exit=$?\" >> \"$OUT\"; done";
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let manifest = reporting_agent("picky", script, "{default: true}", out_file.path());
    let repo = Repo::with_agents(&[("picky", &manifest)]);
    repo.ok(&["task", "add", "Make mistakes"]);
    let before: Vec<_> = repo.tasks();
    repo.ok(&["run"]);
    let log = std::fs::read_to_string(out_file.path()).unwrap();
    assert_eq!(log.matches("exit=2").count(), 4, "{log}");
    assert!(log.contains("#999"), "{log}");
    assert!(log.contains("needs a title"), "{log}");
    assert!(log.contains("must not be empty"), "{log}");
    assert_eq!(repo.tasks().len(), before.len(), "no task was created");
}

#[test]
fn guards_refuse_sub_tasks_past_the_limits() {
    let script = "for i in 1 2 3; do agentgrid ctl subtask create \"child $i\" -l leaf || echo refused; done";
    let repo = Repo::with_agents(&[
        (
            "splitter",
            &agent("splitter", script, "  routing: {labels: [root]}\n"),
        ),
        (
            "leaf",
            &agent("leaf", "true", "  routing: {labels: [leaf]}\n"),
        ),
    ]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  guards: {max_children: 2}\n",
    )
    .unwrap();
    repo.ok(&["task", "add", "Split me", "--label", "root"]);
    repo.ok(&["run"]);
    assert_eq!(repo.tasks().len(), 3, "two children, the third refused");
    let log = repo.ok(&["logs", "1"]);
    assert!(log.contains("guards.max_children"), "{log}");
}

#[test]
fn a_token_is_useless_once_its_execution_has_ended() {
    let saved = tempfile::NamedTempFile::new().unwrap();
    let script = "echo \"$AGENTGRID_CONTROL_SOCKET $AGENTGRID_TOKEN\" > \"$SAVE\"; agentgrid ctl comment 'still here'";
    let manifest = agent(
        "leaky",
        script,
        "  routing: {default: true}\n  sandbox: {filesystem: none, network: host}\n",
    )
    .replace(
        "    command:",
        &format!(
            "    env: {{SAVE: \"{}\"}}\n    command:",
            saved.path().display()
        ),
    );
    let repo = Repo::with_agents(&[("leaky", &manifest)]);
    repo.ok(&["task", "add", "Leak the token"]);
    repo.ok(&["run"]);
    let text = std::fs::read_to_string(saved.path()).unwrap();
    let (socket, token) = text.trim().split_once(' ').unwrap();
    let out = repo
        .cmd(&["ctl", "comment", "from beyond"])
        .env("AGENTGRID_CONTROL_SOCKET", socket)
        .env("AGENTGRID_TOKEN", token)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("works only inside a running execution"),
        "{}",
        stderr(&out)
    );
    let show = repo.json(&["task", "show", "1", "--json"]);
    let comments: Vec<_> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "task_commented")
        .collect();
    assert_eq!(
        comments.len(),
        1,
        "only the comment made during the execution"
    );
    let outside = repo.run(&["ctl", "status"]);
    assert_eq!(outside.status.code(), Some(2));
    assert!(stderr(&outside).contains("works only inside an execution"));
}

#[test]
fn a_blocked_task_waits_for_a_person() {
    let repo = Repo::with_agents(&[(
        "asker",
        &agent(
            "asker",
            "agentgrid ctl block --reason 'which database should I use?'",
            "  routing: {default: true}\n",
        ),
    )]);
    repo.ok(&["task", "add", "Pick storage"]);
    let out = repo.ok(&["run"]);
    assert!(
        out.contains("#1 cannot run: blocked: which database should I use?"),
        "{out}"
    );
    assert_eq!(repo.task_state(1), "blocked");
    let status = repo.ok(&["status"]);
    assert!(status.contains("needs a person"), "{status}");
}

#[test]
fn refusals_name_the_call_why_and_what_to_do_in_the_agents_terms() {
    // Each call is wrong in its own way; the agent's output log keeps what it was told.
    let script = "for args in 'subtask create Part --blocked-by 999' 'nudge 999' 'subtask create \"\"' 'complete --summary \" \"' 'approval request --summary \"\"' 'block --reason \"\"'; do eval agentgrid ctl $args; echo \"exit=$?\"; done";
    let repo = Repo::with_agents(&[(
        "picky",
        &agent(
            "picky",
            script,
            "  routing: {default: true}\n  limits: {max_attempts: 1}\n",
        ),
    )]);
    repo.ok(&["task", "add", "Make mistakes"]);
    repo.ok(&["run"]);
    let log = repo.ok(&["logs", "1", "--raw"]);
    assert_eq!(log.matches("exit=2").count(), 6, "{log}");
    let said: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(said.len(), 6, "{log}");
    for line in &said {
        assert!(
            line.starts_with("error: `agentgrid ctl "),
            "the call is named: {line}"
        );
        assert!(line.contains("` was refused: "), "{line}");
        for internal in ["change 0", "create_keyed_task", "(nudge)", "create_task"] {
            assert!(
                !line.contains(internal),
                "no internal name `{internal}`: {line}"
            );
        }
    }
    let expect = [
        "`agentgrid ctl subtask create` was refused: task #999, named in blocked_by, does not exist; no sub-task was created; `agentgrid ctl status` shows your task",
        "`agentgrid ctl nudge` was refused: task #999 does not exist; nothing was nudged; `agentgrid ctl status` shows",
        "`agentgrid ctl subtask create` was refused: ",
        "`agentgrid ctl complete` was refused: say what was done: --summary must not be empty; no completion was claimed",
        "`agentgrid ctl approval request` was refused: say what a person is to approve: --summary must not be empty; no approval was requested",
        "`agentgrid ctl block` was refused: say what a person must decide: --reason must not be empty; the task is not blocked",
    ];
    for (line, expected) in said.iter().zip(expect) {
        assert!(line.contains(expected), "expected {expected:?} in {line:?}");
    }
    assert!(
        said[2].contains("title"),
        "why an empty title is refused: {}",
        said[2]
    );
    assert_eq!(repo.tasks().len(), 1, "no sub-task was created");
}

#[test]
fn an_agents_call_and_a_persons_command_meet_the_same_rules_and_record_their_actor() {
    // The agent nudges a task that does not exist, then comments and nudges its sibling.
    let script = "agentgrid ctl nudge 99 2>> \"$OUT\"; echo \"exit=$?\" >> \"$OUT\"; \
                  agentgrid ctl comment 'halfway there' && agentgrid ctl nudge 2";
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let manifest = reporting_agent("caller", script, "{labels: [calls]}", out_file.path());
    let repo = Repo::with_agents(&[
        ("caller", &manifest),
        (
            "worker",
            &agent("worker", "true", "  routing: {default: true}\n"),
        ),
    ]);
    repo.ok(&["task", "add", "Make calls", "--label", "calls"]);
    // The sibling waits for the caller, so that it is still open when the caller nudges it
    // (a done task has nothing to nudge, and a no-op agent is done in no time).
    repo.ok(&["task", "add", "Sibling", "--blocked-by", "1"]);
    repo.ok(&["run"]);

    let by_agent = std::fs::read_to_string(out_file.path()).unwrap();
    assert!(by_agent.contains("exit=2"), "{by_agent}");
    let by_person = repo.run(&["task", "nudge", "99"]);
    assert_eq!(by_person.status.code(), Some(2));
    // The rules' reason is the application layer's, word for word, whoever asks; each face
    // words the rest for its reader.
    let said = stderr(&by_person);
    let reason = said
        .trim()
        .split_once("was refused: ")
        .map(|(_, why)| why.to_string())
        .unwrap_or_else(|| panic!("a person is told why: {said}"));
    assert!(reason.contains("#99"), "{reason}");
    assert!(
        by_agent.contains(&reason),
        "the agent heard {by_agent:?}, a person {reason:?}"
    );

    let events = |task: &str| -> Vec<serde_json::Value> {
        repo.ok(&["events", "--task", task, "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let agent_actor = "agent:caller#1";
    assert!(
        events("1").iter().any(|e| e["type"] == "task_commented"
            && e["text"] == "halfway there"
            && e["actor"] == agent_actor),
        "{:?}",
        events("1")
    );
    assert!(
        events("2")
            .iter()
            .any(|e| e["type"] == "task_nudged" && e["actor"] == agent_actor),
        "{:?}",
        events("2")
    );
}
