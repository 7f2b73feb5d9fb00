//! Agencies through the real binary: seeded by `init --agencies` and `agency add`, listed and
//! shown; tasks routed by label to the right agency's agents, with the routing in the task's
//! history, `task show` and `status`; a contract-net agency's award recorded with its reasons;
//! a task no agency accepts waits and says why.

use crate::support::*;

/// An agent that writes its name and its prompt into the worktree and completes.
fn member(name: &str, agency: &str, role: &str) -> String {
    format!(
        r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata: {{name: {name}}}
spec:
  agency: {agency}
  role: {role}
  runtime:
    command: ["sh", "-c", "cp \"$AGENTGRID_PROMPT_FILE\" prompt-$AGENTGRID_TASK_ID.txt && echo \"$AGENTGRID_AGENT\" > by-$AGENTGRID_TASK_ID.txt && agentgrid ctl complete --summary \"done by $AGENTGRID_AGENT\""]
  prompt: |
    Task {{{{ task.id }}}}: {{{{ task.title }}}}
    {{% if agency %}}You are the {{{{ agency.role }}}} of {{{{ agency.name }}}}.
    {{{{ agency.context }}}}{{% endif %}}
"#
    )
}

fn agency(name: &str, labels: &str, lead: &str, specialists: &str, extra: &str) -> String {
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agency\nmetadata: {{name: {name}}}\nspec:\n  coordinator: {lead}\n  specialists: {specialists}\n  labels: [{labels}]\n{extra}"
    )
}

/// Code (`code-lead`, `coder`, `fixer`) and QA (`qa-lead`, `tester`), with a standards file.
fn two_agencies(code_extra: &str) -> Repo {
    let repo = Repo::with_agents(&[
        ("code-lead", &member("code-lead", "code", "coordinator")),
        ("coder", &member("coder", "code", "developer")),
        ("fixer", &member("fixer", "code", "bugfixer")),
        ("qa-lead", &member("qa-lead", "qa", "coordinator")),
        ("tester", &member("tester", "qa", "tester")),
    ]);
    let dir = repo.path().join(".agentgrid/agencies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("code.yaml"),
        agency(
            "code",
            "code",
            "code-lead",
            "[{agent: coder, role: developer}, {agent: fixer, role: bugfixer, cost: 5}]",
            &format!("  context: [STANDARDS.md]\n{code_extra}"),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("qa.yaml"),
        agency("qa", "qa", "qa-lead", "[{agent: tester, role: tester}]", ""),
    )
    .unwrap();
    std::fs::write(
        repo.path().join("STANDARDS.md"),
        "Every change has a test.\n",
    )
    .unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "agencies"]);
    repo
}

fn executions_of(repo: &Repo, task: u64) -> Vec<String> {
    let show = repo.json(&["task", "show", &task.to_string(), "--json"]);
    show["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["agent"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tasks_by_label_end_on_their_agencys_agents() {
    let repo = two_agencies("");
    repo.ok(&["validate"]);
    repo.ok(&["task", "add", "Add CSV export", "--label", "code"]);
    repo.ok(&["task", "add", "Test the export", "--label", "qa"]);
    repo.ok(&[
        "task",
        "add",
        "Fix the crash",
        "--label",
        "code",
        "--label",
        "role:bugfixer",
    ]);
    repo.ok(&["task", "add", "Write the docs", "--label", "docs"]);

    // Before the run, `task show` says where each would go, and why the docs task waits.
    let text = repo.ok(&["task", "show", "1"]);
    assert!(
        text.contains("routing:   agency code, agent coder"),
        "{text}"
    );
    let waits = repo.json(&["task", "show", "4", "--json"]);
    let why = waits["routing"]["waits"].as_str().unwrap();
    assert!(why.contains("no agency accepts it"), "{why}");
    assert!(why.contains("code (labels [code]"), "{why}");

    let out = repo.run(&["run"]);
    let summary = stdout(&out);
    assert!(
        summary.contains("#4"),
        "the stuck task is reported: {summary}"
    );

    assert_eq!(executions_of(&repo, 1), ["coder"]);
    assert_eq!(executions_of(&repo, 2), ["tester"]);
    assert_eq!(executions_of(&repo, 3), ["fixer"]);
    assert!(executions_of(&repo, 4).is_empty());
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(repo.task_state(4), "open");

    // The routing is in the task's history.
    let text = repo.ok(&["task", "show", "1"]);
    assert!(
        text.contains("routed to agency `code`: its developer `coder`"),
        "{text}"
    );
    let text = repo.ok(&["task", "show", "4"]);
    assert!(
        text.contains("waits:     no agent runs work executions for labels [docs]"),
        "{text}"
    );

    // The agent's prompt had its agency, its role and the agency's standards.
    let prompt = repo.git(&["show", "agentgrid/task-1:prompt-1.txt"]);
    assert!(
        prompt.contains("You are the developer of code."),
        "{prompt}"
    );
    assert!(
        prompt.contains("## STANDARDS.md\nEvery change has a test."),
        "{prompt}"
    );
    let prompt = repo.git(&["show", "agentgrid/task-2:prompt-2.txt"]);
    assert!(prompt.contains("You are the tester of qa."), "{prompt}");

    let status = repo.ok(&["status"]);
    assert!(status.contains("agency code: 0 running"), "{status}");
    assert!(status.contains("agency qa: 0 running"), "{status}");
}

#[test]
fn a_contract_net_agency_records_its_award_and_falls_back_to_its_coordinator() {
    let repo = two_agencies("  routing: contract-net\n  capabilities: [python]\n");
    repo.ok(&["task", "add", "Add CSV export", "--label", "code"]);
    repo.ok(&["task", "add", "Port the script", "--label", "needs:python"]);
    repo.ok(&["run"]);
    // Both developers bid with the same confidence; `fixer` costs more.
    assert_eq!(executions_of(&repo, 1), ["coder"]);
    let events = repo.ok(&["events", "--task", "1"]);
    assert!(
        events.contains("contract net in agency `code`: awarded to `coder`, the best of 2 bid(s): coder (confidence 1.00, cost 1.00), fixer (confidence 1.00, cost 5.00)"),
        "{events}"
    );
    // Nobody has python: both decline and the coordinator takes the task.
    assert_eq!(executions_of(&repo, 2), ["code-lead"]);
    let events = repo.ok(&["events", "--task", "2"]);
    assert!(
        events.contains(
            "all 2 invited agent(s) declined; its coordinator `code-lead` takes the task"
        ),
        "{events}"
    );
}

#[test]
fn an_agency_cap_holds_while_the_engine_runs() {
    // Code may run one execution at a time; three code tasks and a wide global cap.
    let repo = two_agencies("  limits: {concurrency: 1}\n");
    for i in 1..=3 {
        repo.ok(&["task", "add", &format!("Change {i}"), "--label", "code"]);
    }
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  concurrency: {global: 4}\n",
    )
    .unwrap();
    repo.ok(&["run"]);
    // The executions of the agency never overlapped: each started after the one before ended.
    let mut spans = Vec::new();
    for i in 1..=3u64 {
        let show = repo.json(&["task", "show", &i.to_string(), "--json"]);
        let e = &show["executions"][0];
        spans.push((
            e["queued_at"].as_i64().unwrap(),
            e["ended_at"].as_i64().unwrap(),
        ));
        assert_eq!(repo.task_state(i), "done");
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two executions of the agency overlapped: {spans:?}"
        );
    }
}

#[test]
fn seeded_agencies_are_written_validated_listed_and_shown() {
    let repo = Repo::new();
    // With a model key, `init` writes a `models:` section, which the built-in agent needs.
    let out = repo
        .cmd(&["init", "--agencies", "code,qa", "--runtime", "builtin"])
        .env("ANTHROPIC_API_KEY", "sk-test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stdout(&out);
    assert!(
        out.contains("created .agentgrid/agencies/code.yaml"),
        "{out}"
    );
    assert!(
        out.contains("created .agentgrid/agents/qa-tester.yaml"),
        "{out}"
    );
    assert!(
        validate(&repo).status.success(),
        "{}",
        stderr(&validate(&repo))
    );
    let out = repo.ok(&["agency", "add", "docs", "--runtime", "builtin"]);
    assert!(
        out.contains("created .agentgrid/agents/docs-writer.yaml"),
        "{out}"
    );
    assert!(
        validate(&repo).status.success(),
        "{}",
        stderr(&validate(&repo))
    );
    // Added again: every file is kept.
    let out = repo.ok(&["agency", "add", "docs", "--runtime", "builtin"]);
    assert!(
        out.contains("kept    .agentgrid/agencies/docs.yaml"),
        "{out}"
    );
    assert!(!out.contains("created"), "{out}");

    let list = repo.json(&["agency", "list", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["code", "docs", "qa"]);
    let text = repo.ok(&["agency", "list"]);
    assert!(text.contains("code-lead"), "{text}");
    let code = repo.json(&["agency", "show", "code", "--json"]);
    assert_eq!(code["specialists"][0]["role"], "developer", "{code}");
    assert_eq!(
        code["handoffs"][0]["to"],
        serde_json::json!(["qa"]),
        "{code}"
    );
    let text = repo.ok(&["agency", "show", "qa"]);
    assert!(text.contains("specialist:   qa-tester (tester)"), "{text}");

    // Mistakes are refused and write nothing.
    let out = repo.run(&["agency", "add", "ops", "--template", "kitchen"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("there is no agency template `kitchen`; the templates are code, qa, devops, security, docs"), "{}", stderr(&out));
    assert!(!repo.path().join(".agentgrid/agencies/ops.yaml").exists());
    let out = repo.run(&["agency", "show", "ops"]);
    assert!(
        stderr(&out).contains("no agency `ops` (agencies: code, docs, qa)"),
        "{}",
        stderr(&out)
    );

    // A broken reference is reported at its place by `validate`.
    let path = repo.path().join(".agentgrid/agents/qa-tester.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("role: tester", "role: boss");
    std::fs::write(&path, text).unwrap();
    let out = validate(&repo);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("qa-tester.yaml:8:9: spec.role: `boss` is not a role of the agency `qa` (roles: coordinator, tester)"),
        "{}",
        stderr(&out)
    );
}

/// `validate` with the model key the built-in agents' provider names.
fn validate(repo: &Repo) -> std::process::Output {
    repo.cmd(&["validate"])
        .env("ANTHROPIC_API_KEY", "sk-test")
        .output()
        .unwrap()
}
