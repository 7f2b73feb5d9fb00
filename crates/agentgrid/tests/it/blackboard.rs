//! `agentgrid ctl blackboard get|set|list` through the real binary: the agent of a workflow's
//! current visit writes typed values that the next state's agent reads (in its prompt and with
//! `get`); a value of another type, one too long or a key the workflow does not declare is
//! refused and changes nothing; an execution that no visit runs writes nothing; each write is
//! an event of the run's task, by the execution that made it.

use crate::support::*;

const WORKFLOW: &str = "apiVersion: agentgrid.dev/v1
kind: Workflow
metadata: {name: check}
spec:
  start: qa
  blackboard: {bugs: int, notes: string}
  states:
    qa:
      agent: tester
      on: [{when: succeeded, to: code}, {to: failed}]
    code:
      agent: coder
      on: [{when: succeeded, to: done}, {to: failed}]
    done: {end: succeeded}
    failed: {end: failed}
";

/// QA writes, reads back and tries what it may not.
const TESTER: &str = "agentgrid ctl blackboard set bugs 2 >/dev/null && echo 'set: ok'
echo \"get: $(agentgrid ctl blackboard get bugs)\"
echo \"unset: [$(agentgrid ctl blackboard get notes)]\"
agentgrid ctl blackboard set bugs many 2>&1 >/dev/null | sed 's/^/mismatch: /'
agentgrid ctl blackboard set notes $(printf '%05000d' 0) 2>&1 >/dev/null | sed 's/^/oversize: /'
agentgrid ctl blackboard set colour red 2>&1 >/dev/null | sed 's/^/unknown: /'
echo \"list: $(agentgrid ctl blackboard list | tr -d '\\n ')\"
agentgrid ctl complete --summary qa";

/// The next state's agent reads what QA wrote, then writes its own.
const CODER: &str = "grep -c '^bugs = 2$' \"$AGENTGRID_PROMPT_FILE\" | sed 's/^/prompt: /'
echo \"coder get: $(agentgrid ctl blackboard get bugs)\"
agentgrid ctl blackboard set bugs 0 >/dev/null && echo 'coder set: ok'
agentgrid ctl complete --summary code";

/// An agent on a task no workflow runs.
const LONER: &str = "agentgrid ctl blackboard set bugs 1 2>&1 >/dev/null | sed 's/^/lone set: /'
agentgrid ctl blackboard list 2>&1 >/dev/null | sed 's/^/lone list: /'
true";

/// The script as one line: the manifest's YAML string folds line breaks into spaces.
fn one_line(script: &str) -> String {
    script.lines().collect::<Vec<_>>().join("; ")
}

fn project() -> Repo {
    let tester = agent("tester", &one_line(TESTER), "  routing: {labels: [qa]}\n");
    let coder = agent("coder", &one_line(CODER), "  routing: {labels: [code]}\n").replace(
        "prompt: \"Task {{ task.id }}: {{ task.title }}\"",
        "prompt: \"{% if workflow and workflow.blackboard %}{{ workflow.blackboard }}{% endif %}\"",
    );
    let loner = agent("loner", &one_line(LONER), "  routing: {labels: [lone]}\n");
    let repo = Repo::with_agents(&[("tester", &tester), ("coder", &coder), ("loner", &loner)]);
    let dir = repo.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("check.yaml"), WORKFLOW).unwrap();
    repo.ok(&["validate"]);
    repo.ok(&["task", "add", "Count words"]);
    repo.ok(&["task", "add", "Alone", "--label", "lone"]);
    repo.ok(&["workflow", "start", "1", "check"]);
    repo
}

/// Every execution's log, in the order of their ids.
fn logs(repo: &Repo) -> String {
    let mut files: Vec<_> = std::fs::read_dir(repo.path().join(".agentgrid/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_agent_of_a_visit_writes_the_blackboard_and_the_next_state_reads_it() {
    let repo = project();
    repo.ok(&["run"]);
    let run = repo.json(&["workflow", "show", "W1", "--json"]);
    assert_eq!(run["status"], "succeeded", "{run}");
    let text = logs(&repo);
    for line in [
        "set: ok\n",
        "get: 2\n",
        "unset: []\n",
        "list: {\"position\":\"qa\",\"run\":1,",
        "prompt: 1\n",
        "coder get: 2\n",
        "coder set: ok\n",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.contains("\"types\":{\"bugs\":\"int\",\"notes\":\"string\"},\"values\":{\"bugs\":2}"),
        "{text}"
    );
    // The last value stands; the refused writes left nothing behind.
    assert_eq!(run["blackboard"], serde_json::json!({"bugs": 0}), "{run}");
    let sets: Vec<String> = run["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["note"].as_str().unwrap().starts_with("set "))
        .map(|e| {
            format!(
                "{}: {}",
                e["state"].as_str().unwrap(),
                e["note"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(sets, ["qa: set bugs = 2", "code: set bugs = 0"]);
    // Each write is an event of the task, by the execution that made it.
    let events = repo.ok(&["events", "--task", "1"]);
    let writes: Vec<&str> = events
        .lines()
        .filter(|l| l.contains(": set bugs = "))
        .collect();
    assert_eq!(writes.len(), 2, "{events}");
    assert!(writes[0].contains("agent:tester#") && writes[0].contains("qa: set bugs = 2"));
    assert!(writes[1].contains("agent:coder#") && writes[1].contains("code: set bugs = 0"));
}

#[test]
fn wrong_values_and_executions_no_visit_runs_are_refused_with_why() {
    let repo = project();
    repo.ok(&["run"]);
    let text = logs(&repo);
    for line in [
        "mismatch: error: `agentgrid ctl blackboard set` was refused: `many` is not an int, and \
         the blackboard's `bugs` is of type int; the blackboard is as it was",
        "oversize: error: `agentgrid ctl blackboard set` was refused: the value of `notes` is \
         5000 characters long; at most 4096 are kept",
        "unknown: error: `agentgrid ctl blackboard set` was refused: the workflow `check` has no \
         blackboard key `colour` (keys: bugs, notes)",
        "lone set: error: `agentgrid ctl blackboard set` was refused: task #2 runs no workflow, \
         so execution #",
        "lone list: error: `agentgrid ctl blackboard list` was refused: task #2 runs no \
         workflow, so it has no blackboard to read",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert_eq!(repo.task_state(2), "done");
    let events = repo.ok(&["events", "--task", "2"]);
    assert!(!events.contains("workflow"), "{events}");
}
