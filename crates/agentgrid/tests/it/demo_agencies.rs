//! `agentgrid demo --agencies` through the real binary: the Code and QA agencies take their
//! issues by label, hand the word count back and forth, the developer's escalation goes up
//! through its coordinator to the demo's scripted person who answers it, the fixed work passes
//! its validators, the person's approval lands it on main, and the metrics are printed — each
//! step checked from the project's store (events, messages, tasks), not only from the output.

use serde_json::Value;

use crate::support::*;

fn events_of(repo: &Repo, task: u64) -> Vec<Value> {
    repo.ok(&["events", "--task", &task.to_string(), "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[test]
fn the_agencies_demo_routes_hands_off_both_ways_escalates_approves_lands_and_prints_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(bin())
        .args(["demo", "--agencies", "--dir", dir.path().to_str().unwrap()])
        .env_remove("AGENTGRID_PROJECT")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("agencies demo finished in ",)
            && text.contains(
                "routed, handed off both ways, escalated and answered, approved and landed"
            ),
        "{text}"
    );
    let repo = Repo { dir };

    // Routing by label: the word count to Code's developer, the slug tests to QA's tester.
    let task1 = repo.json(&["task", "show", "1", "--json"]);
    let agents: Vec<&str> = task1["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["agent"].as_str().unwrap())
        .collect();
    assert_eq!(
        agents,
        ["developer", "tester", "developer", "developer"],
        "{task1}"
    );
    let task2 = repo.json(&["task", "show", "2", "--json"]);
    assert_eq!(task2["executions"][0]["agent"], "tester", "{task2}");
    let routed = |task: u64| -> Vec<String> {
        of_type(&events_of(&repo, task), "task_commented")
            .iter()
            .filter_map(|e| e["text"].as_str())
            .filter(|t| t.contains("routed to agency"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        routed(2),
        ["routed to agency `qa`: its tester `tester` (load 0)"]
    );
    assert_eq!(
        routed(1)[0],
        "routed to agency `code`: its developer `developer` (load 0)"
    );

    // The handoffs, both ways, as events on the task.
    let events = events_of(&repo, 1);
    let handoffs = of_type(&events, "task_handed_off");
    assert_eq!(handoffs.len(), 2, "{handoffs:?}");
    assert_eq!(
        (
            &handoffs[0]["from_agency"],
            &handoffs[0]["to_agency"],
            &handoffs[0]["to_role"]
        ),
        (&"code".into(), &"qa".into(), &"tester".into())
    );
    assert_eq!(
        (&handoffs[1]["from_agency"], &handoffs[1]["to_agency"]),
        (&"qa".into(), &"code".into())
    );
    assert_eq!(handoffs[1]["artifacts"], serde_json::json!(["BUGS.md"]));

    // The escalation: developer → its coordinator → people, answered by the person, and the
    // answer reached the developer's task.
    let messages = repo.json(&["msg", "list", "--limit", "100", "--json"]);
    // Oldest first, whatever order the listing uses.
    let mut messages = messages.as_array().unwrap().clone();
    messages.sort_by_key(|m| m["id"].as_i64());
    let escalations: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "ESCALATION")
        .collect();
    assert_eq!(escalations.len(), 2, "{messages:?}");
    assert_eq!(escalations[0]["receiver"], "role:code/coordinator");
    assert_eq!(escalations[1]["receiver"], "people");
    assert!(
        escalations.iter().all(|m| m["state"] == "acked"),
        "{escalations:?}"
    );
    let up = escalations[1]["id"].as_i64().unwrap();
    let answer = messages
        .iter()
        .find(|m| m["type"] == "ANSWER")
        .expect("an answer");
    assert_eq!(answer["receiver"], "task:1");
    assert_eq!(answer["correlation"], format!("M{up}"));
    let status = repo.json(&["status", "--json"]);
    assert_eq!(status["escalations"], serde_json::json!([]), "{status}");

    // The approval, approved, and the land on main with the fixed code and QA's tests.
    let asked = of_type(&events, "task_approval_requested");
    assert_eq!(asked.len(), 1, "{events:?}");
    let decided = of_type(&events, "task_approval_decided");
    assert_eq!(decided.len(), 1, "{events:?}");
    assert_eq!(decided[0]["decision"], "approve");
    let landed = of_type(&events, "task_landed");
    assert_eq!(landed.len(), 1, "{events:?}");
    assert_eq!(landed[0]["base"], "refs/heads/main");
    assert_eq!(
        repo.git(&["rev-parse", "main"]).trim(),
        landed[0]["new"].as_str().unwrap()
    );
    let code = repo.git(&["show", "main:textkit/wordcount.py"]);
    assert!(code.contains("return len(text.split())"), "{code}");
    repo.git(&["show", "main:tests/test_wordcount_qa.py"]);
    let files = repo.git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(!files.contains("BUGS.md"), "{files}");
    for id in 1..=3 {
        assert_eq!(repo.task_state(id), "done");
    }

    // The metrics table, as `agentgrid metrics` prints it, ends the output.
    assert!(
        text.contains("AGENCY/AGENT") && text.contains("agency code") && text.contains("agency qa"),
        "{text}"
    );
    let metrics = repo.json(&["metrics", "--json"]);
    let code = metrics["agencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "code")
        .unwrap();
    assert_eq!(code["approvals_decided"], 1, "{metrics}");
    assert_eq!(code["approvals_first_pass"], 1, "{metrics}");
}

#[test]
fn the_agencies_demo_refuses_a_directory_that_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let out = command(bin())
        .args(["demo", "--agencies", "--dir", dir.path().to_str().unwrap()])
        .env_remove("AGENTGRID_PROJECT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}
