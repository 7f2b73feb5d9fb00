//! The demo ends with an approval in the queue, and deciding it in the interactive queue does
//! what a person expects: an approval lands the work on the demo's main branch with a message
//! made from the task, a rejection sends the worker round again with the feedback in its
//! prompt.

use crate::support::*;

/// The scripted demo, run in a directory of its own that the test then works in.
fn demo() -> Repo {
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
    Repo { dir }
}

#[test]
fn approving_the_demos_approval_in_the_queue_lands_the_work_on_main() {
    let repo = demo();
    let before = repo.git(&["rev-parse", "main"]);
    let mut tui = repo.pty(&["approvals"]);
    let screen = tui.wait_for("Add word count");
    assert!(screen.contains("worker"), "{screen}");
    tui.send("a");
    tui.wait_for("#1 landed on main (merge)");
    tui.send("q");
    assert_eq!(tui.wait(), Some(0));

    assert_ne!(repo.git(&["rev-parse", "main"]), before);
    let message = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with("Add word count\n\ntextkit.wordcount.word_count(text) with tests\n"),
        "the title and body: {message}"
    );
    for trailer in [
        "Agentgrid-Task: 1\n",
        "Agentgrid-Land: merge\n",
        "Co-authored-by: worker <agent-worker@agentgrid.invalid>",
    ] {
        assert!(message.contains(trailer), "no {trailer:?} in {message}");
    }
    // The work itself is on main, and the main checkout shows it.
    let file = repo.git(&["show", "main:textkit/wordcount.py"]);
    assert!(file.contains("def word_count"), "{file}");
    assert!(repo.path().join("tests/test_wordcount.py").exists());
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
}

#[test]
fn rejecting_the_demos_approval_sends_the_worker_round_again_with_the_feedback() {
    let repo = demo();
    let mut tui = repo.pty(&["approvals"]);
    tui.wait_for("Add word count");
    tui.send("r");
    tui.wait_for("feedback for the next execution");
    tui.send("tabs separate words too");
    tui.send("\r");
    tui.wait_for("rejected #1");
    tui.send("q");
    assert_eq!(tui.wait(), Some(0));
    assert_eq!(repo.task_state(1), "open");

    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    // The worker read the person's words in its prompt and answered them.
    let logs = std::fs::read_dir(repo.path().join(".agentgrid/logs")).unwrap();
    let said: Vec<String> = logs
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .filter(|log| log.contains("worker: a person sent the work back"))
        .collect();
    assert_eq!(said.len(), 1, "one execution was sent back");
    assert!(said[0].contains("tabs separate words too"), "{}", said[0]);
    let branch = repo.git(&["log", "--format=%s", "agentgrid/task-1"]);
    let test = repo.git(&["show", "agentgrid/task-1:tests/test_wordcount_spacing.py"]);
    assert!(test.contains("tabs_and_newlines"), "{branch}\n{test}");
    // And the work is back in the queue for the next decision.
    let list = repo.json(&["approvals", "list", "--json"]);
    assert_eq!(list[0]["approval"]["id"], 2, "{list}");
    assert_eq!(list[0]["approval"]["task_id"], 1, "{list}");
}
