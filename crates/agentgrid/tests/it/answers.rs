//! Answers reach agents: a person's answer to a `ctl block` question, their comments and their
//! feedback are in the next execution's prompt and in `ctl status`, through the real binary.
//!
//! The agents keep a copy of every prompt they get (and of `ctl status`) in their worktree, so
//! the test reads what they were told from the task's branch.

use crate::support::*;

const FAST_CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// A project whose one agent runs `script` with the default prompt (no `prompt:` of its own).
fn project(script: &str, extra_spec: &str) -> Repo {
    let manifest = agent(
        "asker",
        &format!(
            "mkdir -p seen; n=$(ls seen | wc -l); cp \"$AGENTGRID_PROMPT_FILE\" seen/prompt-$n.txt; agentgrid ctl status > seen/status-$n.json; {script}"
        ),
        &format!("  routing: {{default: true}}\n{extra_spec}"),
    )
    .replace("  prompt: \"Task {{ task.id }}: {{ task.title }}\"\n", "");
    let repo = Repo::with_agents(&[("asker", &manifest)]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), FAST_CONFIG).unwrap();
    repo
}

/// The prompts the agent of task 1 saw, in order.
fn seen(repo: &Repo, what: &str) -> Vec<String> {
    let files = repo.git(&["ls-tree", "--name-only", "agentgrid/task-1", "seen/"]);
    let mut names: Vec<&str> = files.lines().filter(|f| f.contains(what)).collect();
    names.sort_by_key(|n| {
        n.trim_start_matches("seen/")
            .trim_start_matches(what)
            .split('.')
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    });
    names
        .iter()
        .map(|n| repo.git(&["show", &format!("agentgrid/task-1:{n}")]))
        .collect()
}

#[test]
fn an_answer_to_a_blocked_question_reaches_the_next_execution_which_does_not_ask_again() {
    let repo = project(
        "if grep -q sqlite \"$AGENTGRID_PROMPT_FILE\"; then echo db=sqlite > db.txt; else agentgrid ctl block --reason 'which DB?'; fi",
        "",
    );
    repo.ok(&["task", "add", "Set up the database"]);
    repo.run(&["run"]);
    assert_eq!(repo.task_state(1), "blocked");

    // An answer to a task that asked nothing is refused and changes nothing.
    repo.ok(&["task", "add", "Unrelated"]);
    let out = repo.run(&["task", "answer", "2", "sqlite"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not blocked"), "{}", stderr(&out));
    assert_eq!(repo.task_state(2), "open");
    repo.ok(&["task", "cancel", "2"]);

    repo.ok(&["task", "comment", "1", "turn on WAL mode"]);
    let out = repo.ok(&["task", "answer", "1", "sqlite"]);
    assert!(out.contains("answered task #1"), "{out}");
    assert_eq!(repo.task_state(1), "open");
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");

    let prompts = seen(&repo, "prompt-");
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(!prompts[0].contains("sqlite"), "{}", prompts[0]);
    assert!(
        prompts[1].contains("their answer:\nsqlite"),
        "the default prompt carries the answer: {}",
        prompts[1]
    );
    assert!(
        prompts[1].contains("cli at ") && prompts[1].contains(": turn on WAL mode"),
        "and the comment with its author and time: {}",
        prompts[1]
    );
    assert!(
        !prompts[1].contains("blocked: which DB?"),
        "the agent's own question is not a comment to it: {}",
        prompts[1]
    );
    let status: serde_json::Value = serde_json::from_str(&seen(&repo, "status-")[1]).unwrap();
    assert_eq!(status["question"], "which DB?", "{status}");
    assert_eq!(status["answer"]["text"], "sqlite", "{status}");
    assert_eq!(status["answer"]["author"], "cli", "{status}");
    assert_eq!(
        status["comments"][0]["text"], "turn on WAL mode",
        "{status}"
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:db.txt"]).trim(),
        "db=sqlite"
    );

    // Asked once: two executions, one question, and the answer is an event with its actor.
    let events: Vec<serde_json::Value> = repo
        .ok(&["events", "--task", "1", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let questions = events
        .iter()
        .filter(|e| e["type"] == "task_commented" && e["text"] == "blocked: which DB?")
        .count();
    assert_eq!(questions, 1, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "task_answered" && e["actor"] == "cli" && e["text"] == "sqlite"),
        "{events:?}"
    );
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["executions"].as_array().unwrap().len(), 2, "{show}");
}

#[test]
fn a_reopen_with_feedback_reaches_the_next_execution_beside_the_validators_word() {
    let repo = project(
        "grep -q 'try harder' \"$AGENTGRID_PROMPT_FILE\" || exit 3; if grep -q 'NOT FIXED' \"$AGENTGRID_PROMPT_FILE\"; then touch fixed; fi",
        "  limits: {max_iterations: 2, max_attempts: 1}\n  validation:\n    validators:\n      - {name: fixed, run: \"test -f fixed || { echo NOT FIXED; exit 1; }\"}\n",
    );
    repo.ok(&["task", "add", "Fix it"]);
    let out = repo.run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(repo.task_state(1), "failed");
    let out = repo.ok(&["task", "reopen", "1", "--feedback", "try harder"]);
    assert!(out.contains("feedback"), "{out}");
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");

    let prompts = seen(&repo, "prompt-");
    assert_eq!(prompts.len(), 3, "{prompts:?}");
    assert!(
        prompts[1].contains("Feedback from cli at ") && prompts[1].contains("try harder"),
        "the person's feedback is labelled as theirs: {}",
        prompts[1]
    );
    let last = &prompts[2];
    assert!(
        last.contains("try harder")
            && last.contains("The validators on iteration 1:")
            && last.contains("NOT FIXED"),
        "both the person's and the validators' word on the next iteration: {last}"
    );
    let events = repo.ok(&["events", "--task", "1"]);
    assert!(events.contains("cli gave feedback: try harder"), "{events}");
}

#[test]
fn a_rejected_approvals_feedback_reaches_the_next_execution() {
    let repo = project(
        "echo work > work.txt; agentgrid ctl complete --summary 'did it'",
        "",
    );
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!("{FAST_CONFIG}  approvals: {{require_labels: [review]}}\n"),
    )
    .unwrap();
    repo.ok(&["task", "add", "Write the work", "--label", "review"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    repo.ok(&[
        "approvals",
        "reject",
        "1",
        "--feedback",
        "name the file results.txt",
    ]);
    assert_eq!(repo.task_state(1), "open");
    repo.ok(&["run"]);

    let prompts = seen(&repo, "prompt-");
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(!prompts[0].contains("results.txt"), "{}", prompts[0]);
    assert!(
        prompts[1].contains("name the file results.txt") && prompts[1].contains("cli"),
        "the rejection's feedback, with who gave it, is in the next prompt: {}",
        prompts[1]
    );
}
