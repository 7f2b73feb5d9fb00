//! `docs/json.md` against what the commands print: every command's `--json` has exactly the
//! fields the document lists (optional ones may be absent), objects it names included, and
//! `--fields` selects them or refuses an unknown one before anything is done.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::*;

// The binary's own reader of the document, so that the test reads it as `--fields` does.
#[path = "../../src/fields.rs"]
#[allow(dead_code)]
mod fields;

use fields::{Doc, Field};

/// Checks that `value` (an object, or each object of an array) has the fields `rows` document,
/// and recurses into the fields that document more.
fn check(doc: &Doc, rows: &[Field], value: &Value, place: &str) {
    let objects: Vec<&serde_json::Map<String, Value>> = match value {
        Value::Object(o) => vec![o],
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        _ => return,
    };
    let top: Vec<&Field> = rows.iter().filter(|f| !f.name.contains('.')).collect();
    for object in objects {
        for key in object.keys() {
            assert!(
                top.iter().any(|f| &f.name == key),
                "{place}: `{key}` is printed but not in docs/json.md: {}",
                Value::Object(object.clone())
            );
        }
        for field in &top {
            let Some(inner) = object.get(&field.name) else {
                assert!(
                    field.optional,
                    "{place}: `{}` is documented as always present but missing: {}",
                    field.name,
                    Value::Object(object.clone())
                );
                continue;
            };
            let prefix = format!("{}.", field.name);
            let mut below: Vec<Field> = rows
                .iter()
                .filter_map(|f| {
                    let name = f.name.strip_prefix(&prefix)?;
                    Some(Field {
                        name: name.to_string(),
                        ..f.clone()
                    })
                })
                .collect();
            if let Some(object) = field.object.as_ref().and_then(|o| doc.objects.get(o)) {
                below.extend(object.iter().cloned());
            }
            if !below.is_empty() {
                check(doc, &below, inner, &format!("{place}.{}", field.name));
            }
        }
    }
}

/// A project with the approval policy of `approvals.rs`: tasks #1 and #3 are done and wait for
/// approvals #1 and #2, task #2 is done without one; everything the project holds is
/// committed, so that a land can be tried.
fn reviewed() -> Repo {
    let writer = agent(
        "writer",
        "printf 'id,name\\n1,ada\\n' > export-$AGENTGRID_TASK_ID.csv; agentgrid ctl complete --summary 'exports rows as CSV'",
        "  routing: {default: true}\n",
    );
    let repo = Repo::with_agents(&[("writer", &writer)]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n  approvals: {require_labels: [needs-review]}\n",
    )
    .unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "agentgrid init"]);
    repo.ok(&["task", "add", "Add CSV export", "--label", "needs-review"]);
    repo.ok(&["task", "add", "Fix a typo"]);
    repo.ok(&["task", "add", "Add JSON export", "--label", "needs-review"]);
    repo.ok(&["run"]);
    repo
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_command_prints_the_fields_its_json_documents() {
    let repo = reviewed();
    let doc = Doc::built_in();
    let mut checked = BTreeSet::new();
    let mut expect = |command: &str, value: Value| {
        let rows = doc
            .commands
            .get(command)
            .unwrap_or_else(|| panic!("docs/json.md has no section for `{command} --json`"));
        check(&doc, rows, &value, command);
        checked.insert(command.to_string());
    };

    expect("status", repo.json(&["status", "--json"]));
    expect("task list", repo.json(&["task", "list", "--json"]));
    expect("task show", repo.json(&["task", "show", "1", "--json"]));
    expect("task add", repo.json(&["task", "add", "Later", "--json"]));
    expect(
        "task edit",
        repo.json(&["task", "edit", "4", "--priority", "3", "--json"]),
    );
    let file = repo.path().join("tasks.jsonl");
    std::fs::write(&file, "{\"title\": \"Imported\", \"labels\": [\"x\"]}\n").unwrap();
    expect(
        "task import",
        repo.json(&["task", "import", file.to_str().unwrap(), "--json"]),
    );
    expect("task nudge", repo.json(&["task", "nudge", "4", "--json"]));
    // A cancel that cancels lists what it cancelled; one that cannot does not.
    let cancel = repo.run(&["task", "cancel", "4", "2", "--json"]);
    assert_eq!(cancel.status.code(), Some(2), "task #2 is done");
    let cancel: Value = serde_json::from_slice(&cancel.stdout).unwrap();
    assert_eq!(cancel[0]["cancelled"], serde_json::json!([4]), "{cancel}");
    assert!(cancel[1].get("cancelled").is_none(), "{cancel}");
    expect("task cancel", cancel);
    expect("task reopen", repo.json(&["task", "reopen", "4", "--json"]));

    let events = lines(&repo.ok(&["events", "--json"]));
    assert!(events.len() > 20, "{events:?}");
    expect("events", Value::Array(events));
    let logs = lines(&repo.ok(&["logs", "1", "--json"]));
    assert!(!logs.is_empty(), "execution #1 printed something");
    expect("logs", Value::Array(logs));
    expect("usage", repo.json(&["usage", "--json"]));

    expect(
        "approvals list",
        repo.json(&["approvals", "list", "--json"]),
    );
    expect(
        "approvals show",
        repo.json(&["approvals", "show", "1", "--diff", "--json"]),
    );
    expect(
        "approvals ask",
        repo.json(&["approvals", "ask", "1", "Why CSV?", "--json"]),
    );
    expect(
        "approvals approve",
        repo.json(&["approvals", "approve", "1", "--json"]),
    );
    expect(
        "approvals reject",
        repo.json(&[
            "approvals",
            "reject",
            "2",
            "--feedback",
            "JSON lines, please",
            "--json",
        ]),
    );
    expect("land", repo.json(&["land", "2", "--dry-run", "--json"]));
    expect("validate", repo.json(&["validate", "--json"]));
    // `doctor` exits 1 where the sandbox cannot run; its JSON has the same fields either way.
    let doctor = repo.run(&["doctor", "--json"]);
    expect("doctor", serde_json::from_slice(&doctor.stdout).unwrap());

    // Workflow runs, in a project of their own with the README's review workflow.
    let coder = agent("coder", "true", "  routing: {default: true}\n");
    let tester = agent("tester", "true", "");
    let flows = Repo::with_agents(&[("coder", &coder), ("tester", &tester)]);
    let dir = flows.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("review.yaml"), manifest::EXAMPLE_WORKFLOW).unwrap();
    flows.ok(&["task", "add", "Add CSV export"]);
    expect(
        "workflow start",
        flows.json(&["workflow", "start", "1", "review", "--json"]),
    );
    let runs = flows.json(&["workflow", "list", "--json"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    expect("workflow list", runs);
    expect(
        "workflow show",
        flows.json(&["workflow", "show", "W1", "--json"]),
    );
    let task = flows.json(&["task", "show", "1", "--json"]);
    assert_eq!(task["workflows"][0]["position"], "code", "{task}");
    expect("task show", task);

    // Agencies, seeded in the same project; a task no agent takes says why it waits.
    flows.ok(&["agency", "add", "qa", "--runtime", "command"]);
    expect("agency list", flows.json(&["agency", "list", "--json"]));
    let qa = flows.json(&["agency", "show", "qa", "--json"]);
    assert_eq!(qa["coordinator"], "qa-lead", "{qa}");
    expect("agency show", qa);
    flows.ok(&["task", "add", "Test the export", "--label", "qa"]);
    let task = flows.json(&["task", "show", "2", "--json"]);
    assert_eq!(task["routing"]["agency"], "qa", "{task}");
    expect("task show", task);
    // Messages, between a person and the people's mailbox.
    expect(
        "msg send",
        repo.json(&[
            "msg",
            "send",
            "--to",
            "people",
            "--type",
            "ALERT",
            "--payload",
            r#"{"text": "disk full"}"#,
            "--correlation",
            "c-1",
            "--ttl",
            "1h",
            "--task",
            "1",
            "--json",
        ]),
    );
    expect("msg list", repo.json(&["msg", "list", "--json"]));
    expect("msg show", repo.json(&["msg", "show", "M1", "--json"]));
    expect("msg ack", repo.json(&["msg", "ack", "M1", "--json"]));
    repo.ok(&[
        "msg",
        "send",
        "--to",
        "people",
        "--type",
        "ESCALATION",
        "--payload",
        r#"{"text": "Which database?", "severity": "high"}"#,
        "--task",
        "1",
    ]);
    let status = repo.json(&["status", "--json"]);
    assert_eq!(status["escalations"][0]["id"], 2, "{status}");
    expect("status", status);
    expect(
        "escalations list",
        repo.json(&["escalations", "list", "--json"]),
    );
    expect(
        "escalations answer",
        repo.json(&["escalations", "answer", "M2", "PostgreSQL", "--json"]),
    );

    // Area leases, taken by an agent that ends (so one is released) in a project of its own.
    let leaser = agent(
        "leaser",
        "agentgrid ctl lease take src docs --ttl 10m && agentgrid ctl lease release docs",
        "  routing: {default: true}\n",
    );
    let leased = Repo::with_agents(&[("leaser", &leaser)]);
    leased.ok(&["task", "add", "Lease an area"]);
    leased.ok(&["run"]);
    let all = leased.json(&["leases", "--all", "--json"]);
    assert_eq!(all["leases"].as_array().map(Vec::len), Some(2), "{all}");
    expect("leases", all);
    expect("leases", leased.json(&["leases", "--json"]));
    let events = lines(&leased.ok(&["events", "--json"]));
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "execution_area_lease_taken"),
        "{events:?}"
    );
    expect("events", Value::Array(events));
    expect("metrics", leased.json(&["metrics", "--json"]));
    expect("status", leased.json(&["status", "--json"]));

    let documented: BTreeSet<String> = doc.commands.keys().cloned().collect();
    assert_eq!(
        checked, documented,
        "every documented command is compared with what it prints"
    );
}

#[test]
fn fields_select_fields_and_paths_and_an_unknown_one_is_refused_first() {
    let repo = Repo::with_agents(&[("writer", &agent("writer", "true", ""))]);
    repo.ok(&["task", "add", "First", "--label", "a"]);
    repo.ok(&["task", "add", "Second"]);

    let list = repo.json(&["task", "list", "--json", "--fields", "id,title"]);
    assert_eq!(
        list,
        serde_json::json!([{"id": 1, "title": "First"}, {"id": 2, "title": "Second"}])
    );
    let show = repo.json(&[
        "task",
        "show",
        "1",
        "--json",
        "--fields",
        "task.labels,usage.cost,branch_distance",
    ]);
    assert_eq!(
        show,
        serde_json::json!({"task": {"labels": ["a"]}, "usage": {"cost": "$0.0000"}, "branch_distance": null})
    );
    let events = lines(&repo.ok(&["events", "--json", "--fields", "seq,type"]));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0],
        serde_json::json!({"seq": 1, "type": "task_created"})
    );

    // Wrong fields: refused before the command runs, so nothing is created.
    let out = repo.run(&["task", "add", "Third", "--json", "--fields", "id,tittle"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("no field `tittle`"), "{err}");
    assert!(
        err.contains("id, title, body") && err.contains("docs/json.md"),
        "the valid fields are listed: {err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let out = repo.run(&["task", "show", "1", "--json", "--fields", "task.nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`task.nope`"), "{}", stderr(&out));
    let out = repo.run(&["task", "list", "--fields", "id"]);
    assert_eq!(out.status.code(), Some(2), "--fields needs --json");
    assert!(stderr(&out).contains("--json"), "{}", stderr(&out));
    assert_eq!(repo.tasks().len(), 2, "nothing was created");
}

/// The keys of an object, in a set.
fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

/// The sums of model requests are one type in every crate now; the names scripts read from
/// each view stay what they were, written out here rather than read from docs/json.md, so that
/// a rename cannot pass by changing the document with the code.
#[test]
fn model_usage_prints_the_same_field_names_in_every_view() {
    let repo = reviewed();
    let names =
        |list: &[&str]| -> BTreeSet<String> { list.iter().map(|s| s.to_string()).collect() };
    let counts = [
        "requests",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_micros",
    ];
    let sums = names(&[&counts[..], &["cost"]].concat());

    let status = repo.json(&["status", "--json"]);
    assert_eq!(
        keys(&status["executions"][0]["model_usage"]),
        sums,
        "{status}"
    );
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(keys(&show["usage"]), sums, "{show}");
    let usage = repo.json(&["usage", "--json"]);
    assert_eq!(keys(&usage["total"]), sums, "{usage}");
    let approvals = repo.json(&["approvals", "list", "--json"]);
    assert_eq!(keys(&approvals[0]["usage"]), names(&counts), "{approvals}");
    let approval = repo.json(&["approvals", "show", "1", "--json"]);
    assert_eq!(keys(&approval["usage"]), names(&counts), "{approval}");
}
