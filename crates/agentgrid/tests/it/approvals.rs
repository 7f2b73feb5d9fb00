//! Approvals end to end: the policy's and the agent's requests, the queue for scripts, and the
//! interactive queue driven in a pseudo-terminal, on the real binary and a real repository.

use crate::support::*;

const POLICY: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n  approvals: {require_labels: [needs-review]}\n";

/// A project whose agent writes `export.csv` and whose policy asks a person about tasks
/// labelled `needs-review`; task #1 is labelled so and has run, task #2 is not.
fn reviewed() -> Repo {
    let writer = agent(
        "writer",
        "printf 'id,name\\n1,ada\\n' > export.csv; agentgrid ctl complete --summary 'exports rows as CSV'",
        "  routing: {default: true}\n",
    );
    let repo = Repo::with_agents(&[("writer", &writer)]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), POLICY).unwrap();
    repo.ok(&["task", "add", "Add CSV export", "--label", "needs-review"]);
    repo.ok(&["task", "add", "Fix a typo"]);
    repo.ok(&["run"]);
    repo
}

fn fails(repo: &Repo, args: &[&str]) -> String {
    let out = repo.run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
    stderr(&out)
}

#[test]
fn the_policy_queues_a_done_task_and_a_rejection_sends_the_work_back() {
    let repo = reviewed();
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(repo.task_state(2), "done");

    let list = repo.json(&["approvals", "list", "--json"]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "only the labelled task waits: {list}");
    let row = &rows[0];
    assert_eq!(row["approval"]["id"], 1);
    assert_eq!(row["approval"]["task_id"], 1);
    assert_eq!(row["approval"]["source"], "policy");
    assert_eq!(row["approval"]["summary"], "exports rows as CSV");
    assert_eq!(row["agent"], "writer");
    assert_eq!(row["diff"]["files"], 1);
    assert_eq!(row["diff"]["added"], 2);

    let text = repo.ok(&["approvals", "list"]);
    assert!(
        text.contains("Add CSV export") && text.contains("+2 -0"),
        "{text}"
    );
    let status = repo.ok(&["status"]);
    assert!(status.contains("waiting for approval"), "{status}");
    let show = repo.ok(&["approvals", "show", "1", "--diff"]);
    assert!(show.contains("export.csv"), "{show}");
    assert!(show.contains("+1,ada"), "the diff is shown: {show}");
    assert!(show.contains("agentgrid approvals show 1 --diff"), "{show}");

    let why = fails(&repo, &["approvals", "reject", "1", "--feedback", " "]);
    assert!(why.contains("needs feedback"), "{why}");
    repo.ok(&["approvals", "ask", "1", "does it quote commas?"]);
    let show = repo.json(&["approvals", "show", "1", "--json"]);
    assert_eq!(show["questions"][0]["text"], "does it quote commas?");
    assert_eq!(show["approval"]["state"], "pending");

    let out = repo.ok(&[
        "approvals",
        "reject",
        "1",
        "--feedback",
        "quote fields with commas",
    ]);
    assert!(out.contains("reopened"), "{out}");
    assert_eq!(repo.task_state(1), "open");
    let why = fails(&repo, &["approvals", "approve", "1"]);
    assert!(why.contains("already rejected by cli"), "{why}");

    // The work goes round again and comes back to the queue as a new approval.
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    let list = repo.json(&["approvals", "list", "--json"]);
    assert_eq!(list[0]["approval"]["id"], 2);
    let events = repo.ok(&["events", "--task", "1"]);
    for words in [
        "approval #1 requested by the policy",
        "cli asks: does it quote commas?",
        "approval #1 rejected by cli: quote fields with commas",
        "approval #2 requested by the policy",
    ] {
        assert!(events.contains(words), "no {words:?} in\n{events}");
    }
}

#[test]
fn an_agent_asks_for_approval_and_its_task_waits_blocked_until_approved() {
    // The first run asks and exits; after the approval the next run finds its note and ends.
    let script = "if [ -f asked ]; then agentgrid ctl complete --summary 'went on'; else touch asked; agentgrid ctl approval request --summary 'plan: rewrite the parser' && agentgrid ctl approval request --summary 'again'; fi";
    let planner = agent("planner", script, "  routing: {default: true}\n");
    let repo = Repo::with_agents(&[("planner", &planner)]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        POLICY.replace("  approvals: {require_labels: [needs-review]}\n", ""),
    )
    .unwrap();
    repo.ok(&["task", "add", "Rewrite the parser"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "blocked");
    let list = repo.json(&["approvals", "list", "--json"]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "the second request found the first: {list}");
    assert_eq!(rows[0]["approval"]["source"], "agent");
    assert_eq!(rows[0]["approval"]["summary"], "plan: rewrite the parser");
    let status = repo.ok(&["status"]);
    assert!(status.contains("waiting for approval #1"), "{status}");

    repo.ok(&["approvals", "approve", "1"]);
    assert_eq!(repo.task_state(1), "open");
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    let all = repo.json(&["approvals", "list", "--all", "--json"]);
    assert_eq!(all[0]["approval"]["state"], "approved");
    assert_eq!(all[0]["approval"]["decided_by"], "cli");
}

#[test]
fn unknown_approvals_are_refused_and_off_a_terminal_the_queue_is_a_list() {
    let repo = Repo::new();
    repo.ok(&["init"]);
    let why = fails(&repo, &["approvals", "approve", "7"]);
    assert!(why.contains("approval #7 does not exist"), "{why}");
    let why = fails(&repo, &["approvals", "show", "x"]);
    assert!(why.contains("`x` is not an approval id"), "{why}");
    let out = repo.ok(&["approvals"]);
    assert!(out.contains("no approvals are waiting"), "{out}");
    assert!(out.contains("not a terminal"), "{out}");
}

#[test]
fn the_interactive_queue_opens_the_detail_with_the_diff_and_approves() {
    let repo = reviewed();
    let mut tui = repo.pty(&["approvals"]);
    let screen = tui.wait_for("Add CSV export");
    assert!(screen.contains("+2 -0"), "the diff stats column: {screen}");
    assert!(screen.contains("writer"), "{screen}");
    tui.send("?");
    tui.wait_for("this help");
    tui.send("x");
    tui.send("\r");
    let screen = tui.wait_for("+1,ada");
    assert!(
        screen.contains("exports rows as CSV"),
        "the summary: {screen}"
    );
    assert!(screen.contains("validators"), "{screen}");
    tui.send("a");
    tui.wait_for("approved #1");
    tui.wait_for("no approvals are waiting");
    tui.send("q");
    assert_eq!(tui.wait(), Some(0));

    let all = repo.json(&["approvals", "list", "--all", "--json"]);
    assert_eq!(all[0]["approval"]["state"], "approved");
    assert_eq!(repo.task_state(1), "done");
}

#[test]
fn a_rejection_typed_in_the_interactive_queue_reopens_the_task() {
    let repo = reviewed();
    let mut tui = repo.pty(&["approvals"]);
    tui.wait_for("Add CSV export");
    tui.send("r");
    tui.wait_for("feedback for the next execution");
    tui.send("use semicolons");
    tui.wait_for("use semicolons_");
    tui.send("\r");
    tui.wait_for("rejected #1");
    tui.send("q");
    assert_eq!(tui.wait(), Some(0));
    let all = repo.json(&["approvals", "list", "--all", "--json"]);
    assert_eq!(all[0]["approval"]["feedback"], "use semicolons");
    assert_eq!(repo.task_state(1), "open");
}
