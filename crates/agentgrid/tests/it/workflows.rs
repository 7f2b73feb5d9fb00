//! Workflows from the command line: a run started on a task is recorded with its first step,
//! read back by `workflow list|show` and `task show`, carried by `events`, and a bad request
//! (an unknown workflow, a second run, a broken manifest) is refused and changes nothing.

use crate::support::*;

/// A project with the agents `coder` and `tester` and the README's review workflow, and one
/// task.
fn project() -> Repo {
    let coder = agent("coder", "true", "  routing: {default: true}\n");
    let tester = agent("tester", "true", "");
    let repo = Repo::with_agents(&[("coder", &coder), ("tester", &tester)]);
    let dir = repo.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("review.yaml"), manifest::EXAMPLE_WORKFLOW).unwrap();
    repo.ok(&["task", "add", "Add CSV export"]);
    repo
}

fn fails(repo: &Repo, args: &[&str], code: i32) -> String {
    let out = repo.run(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stdout(&out));
    stderr(&out)
}

#[test]
fn a_started_run_is_at_its_first_state_and_shows_everywhere() {
    let repo = project();
    let text = repo.ok(&["workflow", "start", "1", "review"]);
    assert!(
        text.contains("started workflow run W1 of `review` on task #1, at `code`"),
        "{text}"
    );

    let list = repo.json(&["workflow", "list", "--json"]);
    let runs = list.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{list}");
    assert_eq!(runs[0]["id"], 1);
    assert_eq!(runs[0]["task"], 1);
    assert_eq!(runs[0]["status"], "running");
    assert_eq!(runs[0]["position"], "code");
    assert_eq!(runs[0]["steps"], 1);

    let show = repo.json(&["workflow", "show", "W1", "--json"]);
    assert_eq!(show["history"][0]["state"], "code");
    assert_eq!(show["history"][0]["note"], "entered");

    let task = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(task["workflows"][0]["position"], "code", "{task}");
    let text = repo.ok(&["task", "show", "1"]);
    assert!(
        text.contains("workflow run W1 of `review` on task #1: running, at `code` (visit 1)"),
        "{text}"
    );

    let events = repo.ok(&["events", "--task", "1"]);
    assert!(
        events.contains("workflow run W1 of `review` started"),
        "{events}"
    );
    assert!(
        events.contains("workflow run W1 at `code` (running): code: entered"),
        "{events}"
    );
}

#[test]
fn bad_starts_are_refused_and_change_nothing() {
    let repo = project();
    let err = fails(&repo, &["workflow", "start", "1", "reveiw"], 2);
    assert!(
        err.contains("no workflow is called `reveiw` (workflows: review)"),
        "{err}"
    );
    let err = fails(&repo, &["workflow", "start", "7", "review"], 2);
    assert!(err.contains("task #7 does not exist"), "{err}");
    assert_eq!(
        repo.json(&["workflow", "list", "--all", "--json"]),
        serde_json::json!([])
    );

    repo.ok(&["workflow", "start", "1", "review"]);
    let err = fails(&repo, &["workflow", "start", "1", "review"], 2);
    assert!(
        err.contains("already runs the workflow `review` (W1)"),
        "{err}"
    );
    let all = repo.json(&["workflow", "list", "--all", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");

    let err = fails(&repo, &["workflow", "show", "W9"], 2);
    assert!(err.contains("workflow run W9 does not exist"), "{err}");
}

#[test]
fn a_broken_workflow_is_reported_at_its_line_and_nothing_starts() {
    let repo = project();
    let file = repo.path().join(".agentgrid/workflows/review.yaml");
    let broken = manifest::EXAMPLE_WORKFLOW.replace("agent: tester", "agent: reviewer");
    std::fs::write(&file, broken).unwrap();

    let out = repo.run(&["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("review.yaml:21:14: no agent is called `reviewer` (agents: coder, tester)"),
        "{err}"
    );

    let err = fails(&repo, &["workflow", "start", "1", "review"], 2);
    assert!(err.contains("review.yaml:21:14"), "{err}");
    assert_eq!(
        repo.json(&["workflow", "list", "--all", "--json"]),
        serde_json::json!([])
    );
}

#[test]
fn a_task_added_with_a_workflow_label_starts_that_workflow() {
    let repo = project();
    let text = repo.ok(&["task", "add", "Import CSV", "--label", "reviewed"]);
    assert!(
        text.contains("created task #2")
            && text.contains("started workflow run W1 of `review` by its label"),
        "{text}"
    );
    let runs = repo.json(&["workflow", "list", "--json"]);
    assert_eq!(runs[0]["task"], 2, "{runs}");
    assert_eq!(runs[0]["position"], "code");

    // Without the label, or with a label no workflow names, nothing starts.
    repo.ok(&["task", "add", "Fix a typo", "--label", "docs"]);
    let runs = repo.json(&["workflow", "list", "--all", "--json"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
}

#[test]
fn imported_tasks_with_a_workflow_label_start_it_in_the_import_batch() {
    let repo = project();
    let file = repo.path().join("tasks.jsonl");
    std::fs::write(
        &file,
        "{\"title\": \"Import CSV\", \"labels\": [\"reviewed\"]}\n{\"title\": \"Fix a typo\"}\n",
    )
    .unwrap();
    repo.ok(&["task", "import", file.to_str().unwrap()]);
    let runs = repo.json(&["workflow", "list", "--json"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["task"], 2);
    // The task's creation and its run's start are one transaction: the same batch of events.
    let events: Vec<serde_json::Value> = repo
        .ok(&["events", "--json", "--task", "2"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at: Vec<_> = events.iter().map(|e| e["at"].clone()).collect();
    assert_eq!(events[0]["type"], "task_created", "{events:?}");
    assert_eq!(events[1]["type"], "task_workflow_started", "{events:?}");
    assert_eq!(at[0], at[1], "{events:?}");
}

#[test]
fn a_labelled_workflow_that_lands_is_refused_where_the_approvals_policy_asks_too() {
    let repo = project();
    let config = repo.path().join(".agentgrid/config.yaml");
    let policy = |approvals: &str| {
        std::fs::write(
            &config,
            format!(
                "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  approvals: {approvals}\n"
            ),
        )
        .unwrap();
    };
    // A task labelled `reviewed` runs the review workflow, which lands it; the policy asks a
    // person about the same done task, which holds the workflow's land back, and would land
    // it a second time.
    policy("{require_labels: [reviewed], land_after: true}");
    let out = repo.run(&["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "review.yaml:11:11: labels: a task these labels start `review` on is landed by its \
             state `land`, but config.yaml's `approvals.require_labels` (`reviewed`) makes the \
             same task, once done, wait for a person's approval, which refuses the workflow's \
             land and fails the run, and `land_after` lands the task a second way"
        ) && err.contains("take the label out of the approvals policy"),
        "{err}"
    );
    // Without `land_after` the pending approval still refuses the workflow's land.
    policy("{require_labels: [reviewed]}");
    let err = stderr(&repo.run(&["validate"]));
    assert!(
        err.contains("review.yaml:11:11: labels:") && !err.contains("land_after"),
        "{err}"
    );

    // So is a land reached through a sub-workflow, with `before_land` asking about every
    // task; the message names the state.
    let file = repo.path().join(".agentgrid/workflows/review.yaml");
    let outer = "apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {name: outer}\nspec:\n  \
                 labels: [ship]\n  start: inner\n  states:\n    inner:\n      workflow: review\n      \
                 on: [{to: done}]\n    done: {end: succeeded}\n";
    std::fs::write(repo.path().join(".agentgrid/workflows/outer.yaml"), outer).unwrap();
    let unlabelled = manifest::EXAMPLE_WORKFLOW.replace("  labels: [reviewed]\n", "");
    std::fs::write(&file, unlabelled).unwrap();
    policy("{before_land: true, land_after: true}");
    let out = repo.run(&["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "outer.yaml:5:11: labels: a task these labels start `outer` on is landed by its \
             state `land` of the sub-workflow `review`, but config.yaml's \
             `approvals.before_land: true`"
        ),
        "{err}"
    );
    assert!(
        !err.contains("review.yaml"),
        "an unlabelled workflow is no clash: {err}"
    );

    // A policy that asks about other labels, or only lands what it asked about, loads.
    policy("{require_labels: [security], land_after: true}");
    repo.ok(&["validate"]);
    policy("{land_after: true}");
    repo.ok(&["validate"]);
}
