//! A task a workflow run drives is the run's: the scheduler never starts an ordinary execution
//! on it outside a visit of an agent state, while the run is running or after it ended, even
//! when the task looks ready (open, or waiting with its sub-tasks over).

use crate::support::*;

fn workflow(repo: &Repo, name: &str, spec: &str) {
    let dir = repo.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    );
    std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
}

/// The executions of `task`, as `kind state` (`work succeeded`).
fn executions(repo: &Repo, task: u64) -> Vec<String> {
    let show = repo.json(&["task", "show", &task.to_string(), "--json"]);
    show["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap(),
                e["state"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn an_open_task_of_a_run_is_not_dispatched_while_it_runs_nor_after_it_failed() {
    let eager = agent(
        "eager",
        "echo eager > eager.txt; agentgrid ctl complete --summary 'took it'",
        "  routing: {default: true}\n",
    );
    let repo = Repo::with_agents(&[("eager", &eager)]);
    workflow(
        &repo,
        "checks",
        "  start: build
  states:
    build:
      run: [sh, -c, 'sleep 0.3; exit 1']
      on: [{when: succeeded, to: done}, {to: failed}]
    done: {end: succeeded}
    failed: {end: failed}
",
    );
    repo.ok(&["task", "add", "Driven by the run"]);
    repo.ok(&["task", "add", "An ordinary task"]);
    repo.ok(&["workflow", "start", "1", "checks"]);
    repo.ok(&["run"]);
    let run = repo.json(&["workflow", "show", "W1", "--json"]);
    assert_eq!(run["status"], "failed", "{run}");
    // The agent takes any open task: it took the ordinary one, never the run's.
    assert_eq!(executions(&repo, 2), ["work succeeded"]);
    assert_eq!(executions(&repo, 1), Vec::<String>::new());
    assert_eq!(repo.task_state(1), "open");
    // A later engine, which learns of the run from the store alone, leaves it too.
    repo.ok(&["run"]);
    assert_eq!(executions(&repo, 1), Vec::<String>::new());
    assert_eq!(repo.task_state(1), "open");
}

#[test]
fn a_split_task_whose_visit_timed_out_is_not_resumed_when_its_sub_tasks_end() {
    // The agent state splits its task; the state times out while the sub-task still runs, and
    // the run ends there. When the sub-task ends its parent looks due for a resume, but the run
    // is over: nothing of the run's may start outside a visit.
    let splitter = agent(
        "splitter",
        "if [ \"$AGENTGRID_EXECUTION_KIND\" = work ]; then \
         agentgrid ctl subtask create 'the part' -l part >/dev/null; \
         else agentgrid ctl comment 'resumed outside a visit'; fi",
        "",
    );
    let part = agent(
        "part",
        "sleep 3; echo ok > part.txt",
        "  routing: {labels: [part]}\n",
    );
    let repo = Repo::with_agents(&[("splitter", &splitter), ("part", &part)]);
    workflow(
        &repo,
        "plan",
        "  start: plan
  states:
    plan:
      agent: splitter
      timeout: 1s
      on: [{when: succeeded, to: done}, {to: stopped}]
    done: {end: succeeded}
    stopped: {end: failed}
",
    );
    repo.ok(&["task", "add", "Big job"]);
    repo.ok(&["workflow", "start", "1", "plan"]);
    repo.ok(&["run"]);
    let run = repo.json(&["workflow", "show", "W1", "--json"]);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["note"] == "timed out → stopped"),
        "{run}"
    );
    assert_eq!(repo.task_state(2), "done");
    assert_eq!(executions(&repo, 1), ["work succeeded"]);
    let show = repo.ok(&["task", "show", "1"]);
    assert!(!show.contains("resumed outside a visit"), "{show}");
}
