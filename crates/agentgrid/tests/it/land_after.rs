//! From an approval to the base branch through the real binary: a policy that lands approved
//! work, a land that fails after the approval (shown to the approver, recorded, nothing moved),
//! the feedback of a rejection written in the person's editor, and the base a reopened task is
//! judged against.

use crate::support::*;

/// Every top-level task waits for a person, and an approval lands it.
const LAND_AFTER: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n  approvals: {before_land: true, land_after: true}\n";

/// A project whose agent writes `f-<task>.txt` and whose validator fails while `legacy.txt`
/// is in the tree, under `config`; its own files are committed, so main is clean.
fn project(config: &str) -> Repo {
    let script = "echo \"from $AGENTGRID_TASK_ID\" > f-$AGENTGRID_TASK_ID.txt; \
                  agentgrid ctl complete --summary \"wrote f-$AGENTGRID_TASK_ID.txt\" >/dev/null";
    let spec = "  routing: {default: true}\n  limits: {max_attempts: 1}\n  validation:\n    validators:\n      - name: no-legacy\n        run: \"test ! -e legacy.txt || (echo 'legacy.txt is back' && exit 1)\"\n";
    let repo = Repo::with_agents(&[("checked", &agent("checked", script, spec))]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), config).unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "agentgrid init"]);
    repo
}

fn rev(repo: &Repo, what: &str) -> String {
    repo.git(&["rev-parse", what]).trim().to_string()
}

fn approval_state(repo: &Repo, id: u64) -> serde_json::Value {
    let all = repo.json(&["approvals", "list", "--all", "--json"]);
    all.as_array()
        .unwrap()
        .iter()
        .find(|r| r["approval"]["id"] == id)
        .map(|r| r["approval"]["state"].clone())
        .unwrap_or_else(|| panic!("no approval #{id} in {all}"))
}

/// An editor for the tests: a shell script that appends `text` to the file it is given (or
/// leaves it alone when `text` is empty), as a person typing it would.
fn editor(repo: &Repo, text: &str) -> String {
    let path = repo.path().join(".git/test-editor.sh");
    let body = if text.is_empty() {
        "#!/bin/sh\nexit 0\n".to_string()
    } else {
        format!("#!/bin/sh\nprintf '%s\\n' '{text}' >> \"$1\"\n")
    };
    std::fs::write(&path, body).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[test]
fn approving_lands_the_work_on_main_with_a_message_made_from_the_task() {
    let repo = project(LAND_AFTER);
    repo.ok(&[
        "task",
        "add",
        "Write the table",
        "--body",
        "Because the table needs it.",
    ]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    let before = rev(&repo, "main");

    // The gate holds: no land while a person has yet to decide.
    let out = repo.run(&["land", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("waits for approval #1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rev(&repo, "main"), before);

    let out = repo.ok(&["approvals", "approve", "1"]);
    assert!(
        out.contains("approved #1 (task #1): #1 landed on main (merge)"),
        "{out}"
    );
    assert_ne!(rev(&repo, "main"), before);
    let message = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with("Write the table\n\nBecause the table needs it.\n"),
        "{message}"
    );
    assert!(message.contains("Summary: wrote f-1.txt"), "{message}");
    assert!(
        message.contains("Co-authored-by: checked <agent-checked@agentgrid.invalid>"),
        "{message}"
    );
    assert_eq!(repo.git(&["show", "main:f-1.txt"]), "from 1\n");
    assert_eq!(approval_state(&repo, 1), "approved");
    let events = repo.ok(&["events", "--task", "1"]);
    assert!(events.contains("approval #1 approved by cli"), "{events}");
    assert!(events.contains("landed"), "{events}");
}

#[test]
fn a_land_that_fails_after_the_approval_is_shown_recorded_and_moves_nothing() {
    let repo = project(LAND_AFTER);
    repo.ok(&["task", "add", "Do the work"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    // The base gains a file that makes the validators fail on the landed tree.
    std::fs::write(repo.path().join("legacy.txt"), "old\n").unwrap();
    repo.git(&["add", "legacy.txt"]);
    repo.git(&["commit", "-q", "-m", "bring legacy back"]);
    let before = rev(&repo, "main");

    let out = repo.run(&["approvals", "approve", "1", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["state"], "approved", "the decision stands: {json}");
    assert_eq!(json["land"]["outcome"], "failed", "{json}");
    let reason = json["land"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("the validators of `checked` failed on the landed tree")
            && reason.contains("legacy.txt is back"),
        "{reason}"
    );
    assert_eq!(rev(&repo, "main"), before, "nothing moved");
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
    let events = repo.ok(&["events", "--task", "1"]);
    assert!(
        events.contains("approval #1 was approved, but task #1 was not landed"),
        "the failure is on the task's record: {events}"
    );

    // Once the base is fixed, the approved task lands by hand.
    repo.git(&["rm", "-q", "legacy.txt"]);
    repo.git(&["commit", "-q", "-m", "legacy goes again"]);
    let out = repo.ok(&["land", "1"]);
    assert!(out.contains("#1 landed on main"), "{out}");
}

#[test]
fn approving_in_the_interactive_queue_lands_the_work() {
    let repo = project(LAND_AFTER);
    repo.ok(&["task", "add", "Write the table"]);
    repo.ok(&["run"]);
    let mut tui = repo.pty(&["approvals"]);
    tui.wait_for("Write the table");
    tui.send("a");
    tui.wait_for("#1 landed on main (merge)");
    tui.send("q");
    assert_eq!(tui.wait(), Some(0));
    assert_eq!(repo.git(&["show", "main:f-1.txt"]), "from 1\n");
}

#[test]
fn the_feedback_of_a_rejection_is_written_in_the_editor_and_empty_cancels() {
    let repo = project(LAND_AFTER);
    repo.ok(&["task", "add", "Write the table"]);
    repo.ok(&["run"]);

    // Off a terminal there is no editor to open.
    let out = repo.run(&["approvals", "reject", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("give --feedback TEXT"),
        "{}",
        stderr(&out)
    );

    // Quitting the editor without writing decides nothing.
    let quits = editor(&repo, "");
    let tui = repo.pty_with_env(&["approvals", "reject", "1"], &[("EDITOR", &quits)]);
    tui.wait_for("the feedback was empty: approval #1 stays pending");
    assert_eq!(tui.wait(), Some(0));
    assert_eq!(approval_state(&repo, 1), "pending");
    assert_eq!(repo.task_state(1), "done");

    // $VISUAL comes before $EDITOR, and the template's comment lines are not feedback.
    let writes = editor(&repo, "name the columns");
    let tui = repo.pty_with_env(
        &["approvals", "reject", "1"],
        &[("VISUAL", &writes), ("EDITOR", &quits)],
    );
    tui.wait_for("rejected #1");
    assert_eq!(tui.wait(), Some(0));
    let all = repo.json(&["approvals", "list", "--all", "--json"]);
    assert_eq!(all[0]["approval"]["feedback"], "name the columns");
    assert_eq!(repo.task_state(1), "open");
}

#[test]
fn a_rejection_in_the_interactive_queue_takes_its_feedback_from_the_editor() {
    let repo = project(LAND_AFTER);
    repo.ok(&["task", "add", "Write the table"]);
    repo.ok(&["run"]);
    let quits = editor(&repo, "");
    let mut tui = repo.pty_with_env(&["approvals"], &[("EDITOR", &quits)]);
    tui.wait_for("Write the table");
    tui.send("r");
    tui.wait_for("the feedback was empty: approval #1 stays pending");
    tui.send("q");
    assert_eq!(tui.wait(), Some(0));
    assert_eq!(approval_state(&repo, 1), "pending");

    let writes = editor(&repo, "sort the rows");
    let mut tui = repo.pty_with_env(&["approvals"], &[("EDITOR", &writes)]);
    tui.wait_for("Write the table");
    tui.send("r");
    tui.wait_for("rejected #1");
    tui.send("q");
    assert_eq!(tui.wait(), Some(0));
    let all = repo.json(&["approvals", "list", "--all", "--json"]);
    assert_eq!(all[0]["approval"]["feedback"], "sort the rows");
    assert_eq!(repo.task_state(1), "open");
}

#[test]
fn a_rejected_task_that_never_landed_is_judged_against_its_own_fork_point() {
    // Only the reviewed task waits; the other lands by hand and moves main meanwhile.
    let config = LAND_AFTER.replace("before_land: true", "require_labels: [review]");
    let repo = project(&config);
    let forked = rev(&repo, "main");
    repo.ok(&["task", "add", "Reviewed work", "--label", "review"]);
    repo.ok(&["task", "add", "Other work"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(repo.task_state(2), "done");
    repo.ok(&["land", "2"]);
    assert_ne!(rev(&repo, "main"), forked);

    repo.ok(&["approvals", "reject", "1", "--feedback", "say more"]);
    assert_eq!(repo.task_state(1), "open");
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    // While the decision is pending the recorded base stays: it is where the branch forked,
    // not a commit of main made since.
    let base_file = repo.path().join(".agentgrid/judges/task-1.base");
    let base = std::fs::read_to_string(&base_file).expect("the base of a task that waits");
    assert_eq!(base.trim(), forked);
    let list = repo.json(&["approvals", "list", "--json"]);
    assert_eq!(list[0]["approval"]["id"], 2);
    assert_eq!(
        list[0]["diff"]["files"], 1,
        "the work is still the task's own: {list}"
    );

    // Approving lands it beside the other task's work; the next engine forgets the base.
    repo.ok(&["approvals", "approve", "2"]);
    assert_eq!(repo.git(&["show", "main:f-1.txt"]), "from 1\n");
    assert_eq!(repo.git(&["show", "main:f-2.txt"]), "from 2\n");
    repo.ok(&["run"]);
    assert!(!base_file.exists(), "a landed task's base is pruned");
}
