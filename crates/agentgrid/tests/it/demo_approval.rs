//! The demo runs its word count through the review workflow (code → QA → back to code with the
//! bugs QA wrote on the blackboard → QA → the suite → a person's approval) and ends with that
//! approval in the queue; deciding it in the interactive queue does what a person expects: an
//! approval lands the work on the demo's main branch with a message made from the task, a
//! rejection sends the coder round again with the feedback in its prompt.

use crate::support::*;

/// The scripted demo, run in a directory of its own that the test then works in, and what it
/// printed.
fn demo() -> (Repo, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = command(bin())
        .args(["demo", "--dir", dir.path().to_str().unwrap()])
        .env_remove("AGENTGRID_PROJECT")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("every issue is done"), "{text}");
    assert!(
        text.contains(&format!(
            "an approval waits for you; approving lands the work on main, rejecting sends it \
             back with your feedback:\n  cd {} && agentgrid approvals",
            dir.path().display()
        )),
        "the demo names the next command: {text}"
    );
    (Repo { dir }, text)
}

/// The states the run entered, in order, from `workflow show --json`.
fn path(repo: &Repo) -> Vec<String> {
    let run = repo.json(&["workflow", "show", "W1", "--json"]);
    run["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["note"] == "entered")
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect()
}

/// The logs of the worker's executions that say `marker`.
fn worker_logs_saying(repo: &Repo, marker: &str) -> Vec<String> {
    std::fs::read_dir(repo.path().join(".agentgrid/logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .filter(|log| log.contains(marker))
        .collect()
}

#[test]
fn the_demos_word_count_goes_round_code_and_qa_until_qa_finds_no_bugs_then_waits_at_the_gate() {
    let (repo, text) = demo();
    assert_eq!(
        path(&repo),
        ["code", "qa", "code", "qa", "tests", "approve"],
        "{text}"
    );
    assert!(
        text.contains(
            "workflow run W1 of `review` on #1: code → qa → code → qa → tests → approve \
             (running)\n  qa (visit 2) wrote bugs = 2\n"
        ),
        "the demo shows the loop and what QA wrote: {text}"
    );
    assert!(text.contains("  qa (visit 4) wrote bugs = 0\n"), "{text}");

    // QA's findings went into the coder's next prompt, which fixed the bug they name.
    let fixed = worker_logs_saying(&repo, "worker: QA sent the work back");
    assert_eq!(fixed.len(), 1, "one code visit fixed QA's bugs");
    assert!(
        fixed[0].contains("worker:   bugs = 2")
            && fixed[0].contains("gave 4, expected 3")
            && fixed[0].contains("split on runs of whitespace"),
        "{}",
        fixed[0]
    );
    // Each blackboard write is an event of the task, by the QA agent's execution.
    let events = repo.ok(&["events", "--task", "1"]);
    let writes: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("qa: set bugs = "))
        .collect();
    assert_eq!(writes.len(), 2, "{events}");
    assert!(
        writes.iter().all(|l| l.contains("agent:tester#")),
        "{writes:?}"
    );

    // The gate waits for a person with the approval in the queue; nothing is on main yet.
    let queue = repo.json(&["approvals", "list", "--json"]);
    assert_eq!(queue[0]["approval"]["source"], "workflow", "{queue}");
    assert_eq!(queue[0]["approval"]["task_id"], 1, "{queue}");
    assert!(
        repo.git(&["ls-tree", "--name-only", "-r", "main"])
            .lines()
            .all(|f| f != "textkit/wordcount.py")
    );
}

#[test]
fn approving_the_demos_approval_in_the_queue_lands_the_work_on_main() {
    let (repo, _) = demo();
    let before = repo.git(&["rev-parse", "main"]);
    let mut tui = repo.pty(&["approvals"]);
    let screen = tui.wait_for("Add word count");
    assert!(screen.contains("pending"), "{screen}");
    tui.send("a");
    tui.wait_for("#1 landed on main (merge)");
    tui.send("q");
    assert_eq!(tui.wait(), Some(0));

    // The approval moved the run to its land state, and the land brought it to its end.
    let run = repo.json(&["workflow", "show", "W1", "--json"]);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        path(&repo),
        [
            "code", "qa", "code", "qa", "tests", "approve", "land", "done"
        ]
    );
    assert_ne!(repo.git(&["rev-parse", "main"]), before);
    let message = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with(
            "Add word count\n\ntextkit.wordcount.word_count(text) with tests\n\nSummary: QA \
             found no bugs: 5 passed, 0 failed\n"
        ),
        "the title, body and summary: {message}"
    );
    for trailer in [
        "Agentgrid-Task: 1\n",
        "Agentgrid-Land: merge\n",
        "Co-authored-by: worker <agent-worker@agentgrid.invalid>",
        "Co-authored-by: tester <agent-tester@agentgrid.invalid>",
    ] {
        assert!(message.contains(trailer), "no {trailer:?} in {message}");
    }
    // The fixed code and QA's test are on main, and the main checkout shows them.
    let file = repo.git(&["show", "main:textkit/wordcount.py"]);
    assert!(file.contains("return len(text.split())"), "{file}");
    assert!(repo.path().join("tests/test_wordcount_qa.py").exists());
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
}

#[test]
fn rejecting_the_demos_approval_sends_the_coder_round_again_with_the_feedback() {
    let (repo, _) = demo();
    let mut tui = repo.pty(&["approvals"]);
    tui.wait_for("Add word count");
    tui.send("r");
    tui.wait_for("feedback for the next execution");
    tui.send("tabs separate words too");
    tui.send("\r");
    tui.wait_for("rejected #1");
    tui.send("q");
    assert_eq!(tui.wait(), Some(0));
    let run = repo.json(&["workflow", "show", "W1", "--json"]);
    assert_eq!(
        run["position"], "code",
        "the rejection goes back to code: {run}"
    );

    repo.ok(&["run"]);
    // The worker read the person's words in its prompt and answered them.
    let said = worker_logs_saying(&repo, "worker: a person sent the work back");
    assert_eq!(said.len(), 1, "one execution was sent back");
    assert!(said[0].contains("tabs separate words too"), "{}", said[0]);
    let test = repo.git(&["show", "agentgrid/task-1:tests/test_wordcount_spacing.py"]);
    assert!(test.contains("tabs_and_newlines"), "{test}");
    // QA and the suite ran again, and the work is back in the queue for the next decision.
    assert_eq!(
        path(&repo)[6..],
        ["code", "qa", "tests", "approve"],
        "after the first gate"
    );
    let list = repo.json(&["approvals", "list", "--json"]);
    assert_eq!(list[0]["approval"]["id"], 2, "{list}");
    assert_eq!(list[0]["approval"]["task_id"], 1, "{list}");
}
