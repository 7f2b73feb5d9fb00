//! Agency metrics through the real binary, counted exactly on a scripted run: one task sent
//! back by a person and approved the second time, one done without help.

use crate::support::*;

#[test]
fn metrics_count_a_scripted_run_exactly() {
    let writer = agent(
        "writer",
        "printf 'x\\n' > out-$AGENTGRID_TASK_ID.txt",
        "  routing: {default: true}\n",
    );
    let repo = Repo::with_agents(&[("writer", &writer)]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  approvals: {require_labels: [needs-review]}\n",
    )
    .unwrap();
    repo.ok(&["task", "add", "Reviewed", "--label", "needs-review"]);
    repo.ok(&["task", "add", "Plain"]);
    repo.ok(&["run"]);
    // The reviewed task is sent back once, done again, then approved: helped, not first pass.
    repo.ok(&["approvals", "reject", "1", "--feedback", "smaller"]);
    repo.ok(&["run"]);
    repo.ok(&["approvals", "approve", "2"]);

    let report = repo.json(&["metrics", "--json"]);
    let row = &report["agents"][0];
    assert_eq!(report["agents"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(row["name"], "writer");
    assert_eq!(row["tasks"], 2);
    assert_eq!(row["done"], 2);
    assert_eq!(row["done_unaided"], 1);
    assert_eq!(row["unaided_rate"], 0.5);
    assert_eq!(row["approvals_decided"], 1);
    assert_eq!(row["approvals_first_pass"], 0);
    assert_eq!(row["first_pass_rate"], 0.0);
    assert_eq!(row["handoffs"], 0);
    assert_eq!(row["mean_handoff_ms"], serde_json::Value::Null);
    assert_eq!(row["cost_per_done"], "$0.0000");
    assert_eq!(row["executions"], 3);
    assert_eq!(row["executions_per_task"], 1.5);
    assert_eq!(report["total"]["done"], 2);
    assert_eq!(report["agencies"], serde_json::json!([]));
    let future = repo.json(&["metrics", "--since", "2999-01-01", "--json"]);
    assert_eq!(future["agents"], serde_json::json!([]), "{future}");
    let bad = repo.run(&["metrics", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("--since: `yesterday` is neither"),
        "{}",
        stderr(&bad)
    );
    let status = repo.ok(&["status"]);
    assert!(
        status.contains("metrics: 2 done, 50% without help, first-pass approvals 0%"),
        "{status}"
    );
}
