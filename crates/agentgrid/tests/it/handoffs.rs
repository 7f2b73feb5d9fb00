//! Handoffs between agencies through the real binary: scripted agents in a Code and a QA
//! agency hand one task back and forth (`ctl handoff`), the receiver's prompt carries the
//! handoff, validators alone make the task done; every handoff is a `task_handed_off` event;
//! refused handoffs (no agency, unknown or forbidden receiver, to itself, artifacts outside the
//! worktree or through a link, an oversized summary, past the budget, calls after a handoff)
//! change nothing; a handoff whose execution fails does not take effect.

use serde_json::Value;

use crate::support::*;

const FAST_CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// A member of `agency` with `role` running `script`, whose prompt shows the handoff.
fn member(name: &str, agency: &str, role: &str, script: &str, extra: &str) -> String {
    // A double-quoted YAML string: newlines would fold into spaces unless escaped.
    let script = script
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata: {{name: {name}}}\nspec:\n  agency: {agency}\n  role: {role}\n  runtime:\n    command: [\"sh\", \"-c\", \"{script}\"]\n  prompt: |\n    Task {{{{ task.id }}}}: {{{{ task.title }}}}\n    {{% if handoff %}}{{{{ handoff }}}}{{% endif %}}\n{extra}"
    )
}

fn agency(name: &str, lead: &str, specialist: &str, role: &str, handoffs: &str) -> String {
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agency\nmetadata: {{name: {name}}}\nspec:\n  coordinator: {lead}\n  specialists: [{{agent: {specialist}, role: {role}}}]\n  labels: [{name}]\n  policies:\n    handoffs: {handoffs}\n"
    )
}

/// Code (`code-lead`, `coder` the developer) and QA (`qa-lead`, `tester`), developers allowed
/// to hand to QA and testers back to Code; `ops` exists but nobody may hand to it.
fn two_agencies(coder: &str, coder_extra: &str, tester: &str, config: &str) -> Repo {
    let idle = "exit 0";
    let repo = Repo::with_agents(&[
        (
            "code-lead",
            &member("code-lead", "code", "coordinator", idle, ""),
        ),
        (
            "coder",
            &member("coder", "code", "developer", coder, coder_extra),
        ),
        ("qa-lead", &member("qa-lead", "qa", "coordinator", idle, "")),
        ("tester", &member("tester", "qa", "tester", tester, "")),
        (
            "ops-lead",
            &member("ops-lead", "ops", "coordinator", idle, ""),
        ),
    ]);
    let dir = repo.path().join(".agentgrid/agencies");
    std::fs::create_dir_all(&dir).unwrap();
    let code = agency(
        "code",
        "code-lead",
        "coder",
        "developer",
        "[{from: developer, to: [qa, code]}]",
    );
    std::fs::write(dir.join("code.yaml"), code).unwrap();
    let qa = agency(
        "qa",
        "qa-lead",
        "tester",
        "tester",
        "[{from: tester, to: [code]}]",
    );
    std::fs::write(dir.join("qa.yaml"), qa).unwrap();
    let ops = "apiVersion: agentgrid.dev/v1\nkind: Agency\nmetadata: {name: ops}\nspec:\n  coordinator: ops-lead\n  labels: [ops]\n";
    std::fs::write(dir.join("ops.yaml"), ops).unwrap();
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!("{FAST_CONFIG}{config}"),
    )
    .unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "agencies"]);
    repo.ok(&["validate"]);
    repo
}

fn agents_of(repo: &Repo, task: u64) -> Vec<String> {
    let show = repo.json(&["task", "show", &task.to_string(), "--json"]);
    show["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["agent"].as_str().unwrap().to_string())
        .collect()
}

fn events_of(repo: &Repo, task: u64) -> Vec<Value> {
    let out = repo.ok(&["events", "--task", &task.to_string(), "--json"]);
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The developer writes buggy code and hands it to QA; QA finds the bug and hands it back with
/// a bug report; the developer fixes it and completes; its validator decides.
const CODER: &str = r#"cp "$AGENTGRID_PROMPT_FILE" "prompt-coder-$AGENTGRID_EXECUTION_ID.txt"
if grep -q 'Handed off by qa/tester' "$AGENTGRID_PROMPT_FILE"; then
  grep -q 'off-by-one' BUGS.md || exit 9
  echo fixed > export.txt
  agentgrid ctl complete --summary 'fixed the off-by-one'
else
  echo buggy > export.txt
  agentgrid ctl handoff --to qa/tester --summary 'export.txt is written: test it' --artifact export.txt --artifact ./export.txt
fi"#;

const TESTER: &str = r#"cp "$AGENTGRID_PROMPT_FILE" prompt-tester.txt
if grep -q buggy export.txt; then
  echo 'export.txt: off-by-one in the last row' > BUGS.md
  agentgrid ctl handoff --to code --summary 'one bug found: see BUGS.md' --artifact BUGS.md
else
  exit 7
fi"#;

#[test]
fn code_hands_to_qa_qa_hands_back_with_bugs_and_the_validators_decide() {
    let validator = "  validation:\n    validators:\n      - {name: fixed, run: \"grep -qx fixed export.txt\"}\n";
    let repo = two_agencies(CODER, validator, TESTER, "");
    repo.ok(&["task", "add", "Add CSV export", "--label", "code"]);
    repo.ok(&["run"]);

    assert_eq!(repo.task_state(1), "done");
    assert_eq!(agents_of(&repo, 1), ["coder", "tester", "coder"]);
    let branch = "agentgrid/task-1";
    assert_eq!(
        repo.git(&["show", &format!("{branch}:export.txt")]),
        "fixed\n"
    );

    // The receiver's prompt carried the handoff: who, the summary, the artifacts.
    let prompt = repo.git(&["show", &format!("{branch}:prompt-tester.txt")]);
    assert!(
        prompt.contains(
            "Handed off by code/developer (agent coder, execution #1) to qa/tester:\nexport.txt is written: test it\nArtifacts (paths in the branch): export.txt\n"
        ),
        "{prompt}"
    );
    let prompt = repo.git(&["show", &format!("{branch}:prompt-coder-3.txt")]);
    assert!(
        prompt.contains(
            "Handed off by qa/tester (agent tester, execution #2) to code:\none bug found: see BUGS.md\nArtifacts (paths in the branch): BUGS.md\n"
        ),
        "{prompt}"
    );
    // The first part had no handoff to show.
    let prompt = repo.git(&["show", &format!("{branch}:prompt-coder-1.txt")]);
    assert!(!prompt.contains("Handed off"), "{prompt}");

    // Each handoff is one event with exactly its data, at the moment it was accepted: before
    // the receiver's process started.
    let events = events_of(&repo, 1);
    let handoffs = of_type(&events, "task_handed_off");
    assert_eq!(handoffs.len(), 2, "{events:?}");
    let data = |e: &Value| {
        let mut e = e.as_object().unwrap().clone();
        for k in [
            "seq",
            "at",
            "entity",
            "entity_id",
            "entity_seq",
            "actor",
            "type",
        ] {
            e.remove(k);
        }
        Value::Object(e)
    };
    assert_eq!(
        data(handoffs[0]),
        serde_json::json!({
            "from_agency": "code", "from_role": "developer",
            "to_agency": "qa", "to_role": "tester",
            "summary": "export.txt is written: test it",
            "artifacts": ["export.txt"], "execution": 1,
        })
    );
    assert_eq!(
        data(handoffs[1]),
        serde_json::json!({
            "from_agency": "qa", "from_role": "tester",
            "to_agency": "code", "to_role": null,
            "summary": "one bug found: see BUGS.md",
            "artifacts": ["BUGS.md"], "execution": 2,
        })
    );
    assert_eq!(handoffs[0]["actor"], "agent:coder#1");
    let all = repo.ok(&["events", "--json"]);
    let all: Vec<Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seq_of = |pred: &dyn Fn(&Value) -> bool| {
        all.iter()
            .find(|e| pred(e))
            .map(|e| e["seq"].as_u64().unwrap())
            .unwrap()
    };
    let handed = seq_of(&|e| e["type"] == "task_handed_off");
    let started = seq_of(&|e| e["type"] == "execution_process_started" && e["entity_id"] == 2);
    assert!(handed < started, "{handed} < {started}");
    // A handoff is never completion: the task was done only by the validated last part.
    assert_eq!(of_type(&events, "task_completion_claimed").len(), 1);

    // A HANDOFF message went to the task's next execution, once per handoff.
    let messages = repo.json(&["msg", "list", "--json"]);
    let mut sent: Vec<&Value> = messages
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "HANDOFF")
        .collect();
    sent.sort_by_key(|m| m["id"].as_u64());
    assert_eq!(sent.len(), 2, "{messages}");
    assert_eq!(sent[0]["receiver"], "task:1");
    assert_eq!(
        sent[0]["payload"]["artifacts"],
        serde_json::json!(["export.txt"])
    );

    // `task show` says who handed to whom, when, and why.
    let text = repo.ok(&["task", "show", "1"]);
    assert!(text.contains("handoffs:"), "{text}");
    assert!(
        text.contains("code/developer → qa/tester (execution 1): export.txt is written: test it"),
        "{text}"
    );
    assert!(
        text.contains("qa/tester → code (execution 2): one bug found: see BUGS.md"),
        "{text}"
    );
    assert!(text.contains("    artifacts: BUGS.md"), "{text}");
    let show = repo.json(&["task", "show", "1", "--json"]);
    let listed = show["handoffs"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["from_agency"], "qa");
    assert_eq!(listed[1]["voided"], Value::Null);
    assert_eq!(show["task"]["handoffs"], 2);
    assert_eq!(
        show["task"]["handoff"],
        serde_json::json!({"agency": "code"})
    );
}

/// Runs `agentgrid ctl handoff ARGS…` and keeps its refusal (or `ok`) in `r-NAME.txt`.
const TRY: &str = r#"try() { name=$1; shift; if agentgrid ctl handoff "$@" > /dev/null 2> "r-$name.txt"; then echo ok > "r-$name.txt"; fi; }
"#;

#[test]
fn refused_handoffs_say_what_to_do_and_change_nothing() {
    let coder = format!(
        r#"{TRY}ln -s /etc/passwd passwd-link
mkdir -p notes && echo 'read me' > notes/NOTES.md
try unknown --to nowhere --summary s
try forbidden --to ops --summary s
try badrole --to qa/reviewer --summary s
try self-role --to role:developer --summary s
try self-agency --to code --summary s
try escape --to qa --summary s --artifact ../../etc/passwd
try absolute --to qa --summary s --artifact /etc/passwd
try link --to qa --summary s --artifact passwd-link
try missing --to qa --summary s --artifact nope.md
try big --to qa --summary "$(printf '%0120000d' 0)"
try empty --to qa --summary ' '
try ok --to qa --summary 'over to you' --artifact notes/NOTES.md
try twice --to qa --summary again
if agentgrid ctl complete --summary done 2> r-complete.txt; then echo ok > r-complete.txt; fi
rm passwd-link"#
    );
    let repo = two_agencies(&coder, "", "exit 0", "");
    let loner = agent(
        "loner",
        "agentgrid ctl handoff --to qa --summary s 2> r-loner.txt; exit 0",
        "  routing: {labels: [misc]}\n",
    );
    std::fs::write(repo.path().join(".agentgrid/agents/loner.yaml"), loner).unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "loner"]);
    repo.ok(&["task", "add", "Add CSV export", "--label", "code"]);
    repo.ok(&["task", "add", "Tidy up", "--label", "misc"]);
    repo.ok(&["run"]);

    let said =
        |task: u64, name: &str| repo.git(&["show", &format!("agentgrid/task-{task}:r-{name}.txt")]);
    let expect = |name: &str, words: &[&str]| {
        let text = said(1, name);
        for w in words {
            assert!(text.contains(w), "{name}: expected {w:?} in {text}");
        }
    };
    expect(
        "unknown",
        &[
            "there is no agency `nowhere`",
            "the agencies are: code, ops, qa",
        ],
    );
    expect(
        "forbidden",
        &[
            "agency `code` does not let its developers hand off to agency `ops`",
            "add `{from: developer, to: [ops]}` to spec.policies.handoffs in",
            "code.yaml",
        ],
    );
    expect(
        "badrole",
        &["agency `qa` has no role `reviewer`", "coordinator, tester"],
    );
    expect(
        "self-role",
        &["is your own part (agent `coder`, code/developer)"],
    );
    expect("self-agency", &["is your own part"]);
    expect("escape", &["leads out of the worktree"]);
    expect("absolute", &["is absolute"]);
    expect("link", &["symbolic link"]);
    expect("missing", &["does not exist in the worktree"]);
    expect("big", &["the summary is 120000 bytes long; at most 8 KiB"]);
    expect("empty", &["--summary must not be empty"]);
    assert_eq!(said(1, "ok"), "ok\n");
    expect("twice", &["already handed the task off to qa"]);
    expect(
        "complete",
        &["handed the task off to qa, so it can no longer claim completion"],
    );
    let loner = said(2, "loner");
    assert!(loner.contains("agent `loner` is in no agency"), "{loner}");

    // Only the accepted handoff is recorded; no refusal wrote anything.
    let events = events_of(&repo, 1);
    let handoffs = of_type(&events, "task_handed_off");
    assert_eq!(handoffs.len(), 1, "{events:?}");
    assert_eq!(
        handoffs[0]["artifacts"],
        serde_json::json!(["notes/NOTES.md"])
    );
    assert!(of_type(&events, "task_completion_claimed").is_empty());
    assert!(of_type(&events_of(&repo, 2), "task_handed_off").is_empty());
    // The handoff was never completion: the receiver's part ran and finished the task.
    assert_eq!(agents_of(&repo, 1), ["coder", "tester"]);
    assert_eq!(repo.task_state(1), "done");
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["handoffs"], 1);
}

#[test]
fn a_handoff_loop_stops_at_the_budget_and_is_told_to_escalate() {
    let coder = "agentgrid ctl handoff --to qa --summary ping 2> refusal.txt || agentgrid ctl block --reason \"$(cat refusal.txt)\"";
    let tester = "agentgrid ctl handoff --to code --summary pong";
    let repo = two_agencies(coder, "", tester, "  handoffs_per_task: 2\n");
    repo.ok(&["task", "add", "Ping pong", "--label", "code"]);
    repo.run(&["run"]);

    assert_eq!(agents_of(&repo, 1), ["coder", "tester", "coder"]);
    assert_eq!(repo.task_state(1), "blocked");
    let refusal = repo.git(&["show", "agentgrid/task-1:refusal.txt"]);
    assert!(
        refusal.contains(
            "task #1 has been handed off 2 time(s), the most its handoff budget allows \
             (handoffs_per_task: 2 in .agentgrid/config.yaml)"
        ),
        "{refusal}"
    );
    assert!(refusal.contains("escalate instead"), "{refusal}");
    let events = events_of(&repo, 1);
    assert_eq!(of_type(&events, "task_handed_off").len(), 2);
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["handoffs"], 2);
}

#[test]
fn a_handoff_whose_execution_fails_does_not_take_effect() {
    // The first attempt hands off and then fails; the retry finds its work and completes.
    let coder = "if [ -f first.txt ]; then agentgrid ctl complete --summary done; else echo 1 > first.txt; agentgrid ctl handoff --to qa --summary 'test it'; exit 3; fi";
    let repo = two_agencies(coder, "", "exit 0", "");
    repo.ok(&["task", "add", "Add CSV export", "--label", "code"]);
    repo.ok(&["run"]);

    assert_eq!(agents_of(&repo, 1), ["coder", "coder"]);
    assert_eq!(repo.task_state(1), "done");
    let events = events_of(&repo, 1);
    assert_eq!(of_type(&events, "task_handed_off").len(), 1);
    let voided = of_type(&events, "task_handoff_voided");
    assert_eq!(voided.len(), 1, "{events:?}");
    assert_eq!(voided[0]["execution"], 1);
    assert_eq!(voided[0]["restore"], Value::Null);
    let text = repo.ok(&["task", "show", "1"]);
    assert!(
        text.contains(
            "code/developer → qa (execution 1) [did not take effect: the execution ended failed"
        ),
        "{text}"
    );
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["handoff"], Value::Null);
}

#[test]
fn status_shows_the_open_handoffs_with_their_age_and_budget() {
    // Two tasks go from Code to QA; the tester blocks each for a person, so both stay open
    // in QA's hands. A third task is done and shows no open handoff.
    let coder = r#"if [ "$AGENTGRID_TASK_ID" = 3 ]; then exit 0; fi
echo buggy > export.txt
agentgrid ctl handoff --to qa/tester --summary 'test it' --artifact export.txt"#;
    let tester = "agentgrid ctl block --reason 'which format is right?'";
    let repo = two_agencies(coder, "", tester, "  handoffs_per_task: 4\n");
    for title in ["Export CSV", "Export JSON", "Nothing to hand"] {
        repo.ok(&["task", "add", title, "--label", "code"]);
    }
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "blocked");
    assert_eq!(repo.task_state(3), "done");

    let status = repo.json(&["status", "--json"]);
    let open = status["handoffs"].as_array().unwrap();
    let tasks: Vec<u64> = open.iter().map(|h| h["task"].as_u64().unwrap()).collect();
    assert_eq!(tasks, [1, 2], "{status}");
    assert_eq!(open[0]["from"], "code/developer");
    assert_eq!(open[0]["to"], "qa/tester");
    assert_eq!(open[0]["state"], "blocked");
    assert_eq!(open[0]["handoffs"], 1);
    assert_eq!(open[0]["budget"], 4);
    assert!(
        open[0]["age"].as_str().is_some_and(|a| !a.is_empty()),
        "{open:?}"
    );
    assert_eq!(status["handoffs_more"], 0);
    let handed = of_type(&events_of(&repo, 1), "task_handed_off")[0]["at"].clone();
    assert_eq!(open[0]["at"], handed, "the age counts from the handoff");

    let human = repo.ok(&["status"]);
    assert!(
        human.contains("handed off, under way in the receiving part"),
        "{human}"
    );
    let row = human
        .lines()
        .find(|l| l.starts_with("#1 ") && l.contains("→"))
        .unwrap_or_else(|| panic!("a row for task 1 in {human}"));
    assert!(row.contains("code/developer → qa/tester"), "{row}");
    assert!(row.contains("1 of 4"), "{row}");
}
