//! Workflow runs carried out by the engine, through the real binary: agents, commands, gates
//! decided on the command line, parallel branches, sub-workflows, lands and ends; the failed,
//! rejected, timed-out and over-budget ways out; and kill -9 at random moments, after which
//! the run finishes as its history says with no command carried out twice for one visit.

use std::time::Duration;

use crate::support::*;

/// A project with the agents `coder` (writes `work.txt` and completes) and `writer` (writes
/// `docs.md`), the given workflows, and task #1.
fn project(workflows: &[(&str, &str)]) -> Repo {
    let coder = agent(
        "coder",
        "echo work >> work.txt; agentgrid ctl complete --summary 'wrote the work'",
        "",
    );
    let writer = agent(
        "writer",
        "echo docs > docs.md; agentgrid ctl complete --summary 'wrote the docs'",
        "",
    );
    let repo = Repo::with_agents(&[("coder", &coder), ("writer", &writer)]);
    let dir = repo.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, spec) in workflows {
        let text = format!(
            "apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n{spec}"
        );
        std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
    }
    repo.ok(&["validate"]);
    repo.ok(&["task", "add", "Add the feature"]);
    repo
}

fn run_of(repo: &Repo, id: u32) -> serde_json::Value {
    repo.json(&["workflow", "show", &format!("W{id}"), "--json"])
}

/// The lines the commands appended to `side.log` in task #1's worktree.
fn side_effects(repo: &Repo) -> Vec<String> {
    let file = repo.path().join(".agentgrid/workspaces/task-1/side.log");
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

const EVERY: &str = "  start: build
  states:
    build:
      run: [sh, -c, 'echo build >> side.log']
      on: [{when: succeeded, to: checks}, {to: failed}]
    checks:
      parallel: [lint, docs]
      on: [{when: succeeded, to: code}, {to: failed}]
    code:
      agent: coder
      on: [{when: succeeded, to: inner}, {to: failed}]
    lint:
      run: [sh, -c, 'echo lint >> side.log']
    docs:
      agent: writer
      subtask: Write the docs
    inner:
      workflow: smoke
      on: [{when: succeeded, to: approve}, {to: failed}]
    approve:
      approval: Ship it?
      on: [{when: approved, to: land}, {to: failed}]
    land:
      land: true
      on: [{when: succeeded, to: done}, {to: failed}]
    done: {end: succeeded}
    failed: {end: failed}
";

const SMOKE: &str = "  start: smoke
  states:
    smoke:
      run: [sh, -c, 'echo smoke >> side.log']
      on: [{when: succeeded, to: ok}, {to: bad}]
    ok: {end: succeeded}
    bad: {end: failed}
";

#[test]
fn a_run_through_every_kind_of_state_succeeds_and_lands() {
    let repo = project(&[("every", EVERY), ("smoke", SMOKE)]);
    repo.ok(&["workflow", "start", "1", "every"]);
    repo.ok(&["run"]);

    // The run waits at its gate, costing nothing; `status` shows it with its age.
    let run = run_of(&repo, 1);
    assert_eq!(run["position"], "approve", "{:#?}", history(&run));
    let status = repo.ok(&["status"]);
    assert!(
        status.contains("W1 of `every` on #1 waits at `approve` (approval #1)"),
        "{status}"
    );
    let queue = repo.json(&["approvals", "list", "--json"]);
    assert_eq!(queue[0]["approval"]["source"], "workflow", "{queue}");
    let child = run_of(&repo, 2);
    assert_eq!(child["status"], "succeeded", "{child}");
    // Each command's line was committed as it succeeded (the worktree itself may be gone: the
    // task was done after `code`, and nothing was left uncommitted to keep it).
    let side = repo.git(&["show", "agentgrid/task-1:side.log"]);
    assert_eq!(side.lines().collect::<Vec<_>>(), ["build", "lint", "smoke"]);

    // With no engine running, approving carries the land state out at once.
    let approved = repo.ok(&["approvals", "approve", "1"]);
    assert!(approved.contains("#1 landed on main (merge)"), "{approved}");
    assert_eq!(run_of(&repo, 1)["position"], "done");
    repo.ok(&["run"]);
    let run = run_of(&repo, 1);
    let lines = history(&run);
    assert_eq!(run["status"], "succeeded", "{lines:#?}");
    for state in [
        "build", "code", "checks", "lint", "docs", "inner", "approve", "land", "done",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{state}: "))),
            "`{state}` is in the history: {lines:#?}"
        );
    }
    assert!(
        lines.iter().any(|l| l == "approve: approved → land"),
        "{lines:#?}"
    );
    // The land brought the agents' work to main.
    let files = repo.git(&["ls-tree", "--name-only", "main"]);
    assert!(
        files.contains("work.txt") && files.contains("docs.md"),
        "{files}"
    );
    // What the commands changed was committed as each ended, in their order, so the land
    // brought it too; each commit says which state and command made it.
    let side = repo.git(&["show", "main:side.log"]);
    assert_eq!(
        side.lines().collect::<Vec<_>>(),
        ["build", "lint", "smoke"],
        "{side}"
    );
    let subjects = repo.git(&["log", "--format=%s", "main"]);
    for state in ["build", "lint", "smoke"] {
        let subject = format!("{state}: sh -c 'echo {state} >> side.log'");
        assert!(
            subjects.lines().any(|l| l == subject),
            "`{subject}` is on main: {subjects}"
        );
    }
    // The approval was taken once, and the gate's visit ran nothing again.
    let events = repo.ok(&["events", "--task", "1"]);
    assert_eq!(
        events.matches("began land for `land`").count(),
        1,
        "{events}"
    );
    assert_eq!(events.matches("began run_command").count(), 3, "{events}");
}

#[test]
fn a_failing_command_takes_the_failed_transition() {
    let spec = "  start: test
  states:
    test:
      run: [sh, -c, 'echo test >> side.log; echo broken >&2; exit 3']
      on: [{when: succeeded, to: done}, {when: failed, to: repair}]
    repair:
      run: [sh, -c, 'echo repair >> side.log']
      on: [{when: succeeded, to: done}]
    done: {end: succeeded}
";
    let repo = project(&[("check", spec)]);
    repo.ok(&["workflow", "start", "1", "check"]);
    repo.ok(&["run"]);
    let run = run_of(&repo, 1);
    let lines = history(&run);
    assert_eq!(run["status"], "succeeded", "{lines:#?}");
    assert!(
        lines.iter().any(|l| l == "test: failed → repair"),
        "{lines:#?}"
    );
    assert_eq!(side_effects(&repo), ["test", "repair"]);
    // The failed command's change stayed in the worktree, uncommitted, and the next command's
    // commit took it along with its own.
    let side = repo.git(&["show", "agentgrid/task-1:side.log"]);
    assert_eq!(side.lines().collect::<Vec<_>>(), ["test", "repair"]);
    let subjects = repo.git(&["log", "--format=%s", "main..agentgrid/task-1"]);
    assert_eq!(
        subjects.lines().collect::<Vec<_>>(),
        ["repair: sh -c 'echo repair >> side.log'"]
    );
    // Why it failed is on the task, with the command's last words.
    let show = repo.ok(&["task", "show", "1"]);
    assert!(
        show.contains("exited with 3") && show.contains("broken"),
        "{show}"
    );
}

#[test]
fn a_rejected_approval_takes_its_transition() {
    let spec = "  start: gate
  states:
    gate:
      approval: Go?
      on: [{when: approved, to: done}, {when: rejected, to: rework}]
    rework:
      run: [sh, -c, 'echo rework >> side.log']
      on: [{to: stopped}]
    done: {end: succeeded}
    stopped: {end: failed}
";
    let repo = project(&[("gate", spec)]);
    repo.ok(&["workflow", "start", "1", "gate"]);
    repo.ok(&["run"]);
    assert_eq!(run_of(&repo, 1)["position"], "gate");
    repo.ok(&["approvals", "reject", "1", "--feedback", "not like this"]);
    repo.ok(&["run"]);
    let run = run_of(&repo, 1);
    let lines = history(&run);
    assert_eq!(run["status"], "failed", "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "gate: rejected: not like this → rework"),
        "{lines:#?}"
    );
    assert_eq!(side_effects(&repo), ["rework"]);
    // A decision is made once.
    let out = repo.run(&["approvals", "approve", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
}

#[test]
fn a_loop_ends_when_its_budget_is_spent() {
    let spec = "  start: again
  states:
    again:
      run: [sh, -c, 'echo again >> side.log; exit 1']
      on: [{when: succeeded, to: done}, {when: failed, to: again, max: 2}]
    done: {end: succeeded}
";
    let repo = project(&[("loop", spec)]);
    repo.ok(&["workflow", "start", "1", "loop"]);
    repo.ok(&["run"]);
    let run = run_of(&repo, 1);
    let lines = history(&run);
    assert_eq!(run["status"], "failed", "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("the budget of every transition that applies is spent")),
        "{lines:#?}"
    );
    assert_eq!(side_effects(&repo), ["again", "again", "again"]);
    // No command succeeded, so nothing was committed.
    let ahead = repo.git(&["rev-list", "--count", "main..agentgrid/task-1"]);
    assert_eq!(ahead.trim(), "0");
}

#[test]
fn a_timeout_fires_after_a_restart() {
    let spec = "  start: gate
  states:
    gate:
      approval: Anyone?
      timeout: 1s
      on: [{when: approved, to: done}, {when: timed_out, to: late}]
    done: {end: succeeded}
    late: {end: failed}
";
    let repo = project(&[("wait", spec)]);
    repo.ok(&["workflow", "start", "1", "wait"]);
    // The first engine arms the timer and stops: the gate waits with no process.
    repo.ok(&["run"]);
    let run = run_of(&repo, 1);
    assert_eq!(run["position"], "gate");
    assert_eq!(run["status"], "running");
    let status = repo.ok(&["status"]);
    assert!(status.contains("waits at `gate`"), "{status}");
    // A later engine finds the deadline recorded and fires it once it is due.
    wait_for(Duration::from_secs(20), "the timer to fire", || {
        repo.ok(&["run"]);
        run_of(&repo, 1)["status"] != "running"
    });
    let run = run_of(&repo, 1);
    let lines = history(&run);
    assert!(
        lines.iter().any(|l| l == "gate: timed out → late"),
        "{lines:#?}"
    );
    assert_eq!(run["status"], "failed");
    // Its approval left the queue with it, and a person's late decision is refused.
    assert_eq!(
        repo.json(&["approvals", "list", "--json"]),
        serde_json::json!([])
    );
    let late = repo.run(&["approvals", "approve", "1"]);
    assert_eq!(late.status.code(), Some(2), "{}", stdout(&late));
}

const TORTURE: &str = "  start: s1
  states:
    s1:
      run: [sh, -c, 'echo s1 >> side.log; sleep 0.1']
      on: [{when: succeeded, to: s2}, {to: s1, max: 30}]
    s2:
      run: [sh, -c, 'echo s2 >> side.log; sleep 0.1']
      on: [{when: succeeded, to: s3}, {to: s2, max: 30}]
    s3:
      run: [sh, -c, 'echo s3 >> side.log; sleep 0.1']
      on: [{when: succeeded, to: back}, {to: s3, max: 30}]
    back:
      run: [sh, -c, 'echo back >> side.log']
      on: [{when: succeeded, to: s1, max: 2}, {when: succeeded, to: done}, {to: back, max: 30}]
    done: {end: succeeded}
";

#[test]
fn kill_9_at_random_moments_finishes_the_run_with_no_command_twice_for_a_visit() {
    let repo = project(&[("torture", TORTURE)]);
    repo.ok(&["workflow", "start", "1", "torture"]);
    // A small deterministic generator: the kills land at different moments on every round.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    for _ in 0..40 {
        if run_of(&repo, 1)["status"] != "running" {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = Duration::from_millis(100 + seed % 700);
        let mut engine = repo
            .cmd(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        if engine.try_wait().unwrap().is_none() {
            engine.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        engine.wait().unwrap();
    }
    // A last engine, left alone, finishes what is left.
    repo.ok(&["run"]);
    let run = run_of(&repo, 1);
    let lines = history(&run);
    assert_eq!(run["status"], "succeeded", "{lines:#?}");
    assert!(kills > 0, "the engine was killed at least once");
    let events = repo.ok(&["events", "--task", "1"]);
    eprintln!(
        "{kills} kills; {} visits cut short by them",
        events
            .matches("was cut short when the engine stopped")
            .count()
    );

    // Every command ran at most once per visit of its state (a visit cut short by a kill
    // ended as failed rather than running twice), and at least once per visit that succeeded.
    let effects = side_effects(&repo);
    for state in ["s1", "s2", "s3", "back"] {
        let entered = lines
            .iter()
            .filter(|l| **l == format!("{state}: entered"))
            .count();
        let succeeded = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{state}: succeeded")))
            .count();
        let ran = effects.iter().filter(|l| *l == state).count();
        assert!(
            succeeded <= ran && ran <= entered,
            "`{state}`: entered {entered} times, succeeded {succeeded}, ran {ran}: \
             {lines:#?}\n{effects:?}"
        );
    }
    // The loop went round three times, as `max: 2` on the way back allows.
    let backs = lines
        .iter()
        .filter(|l| l.starts_with("back: succeeded"))
        .count();
    assert_eq!(backs, 3, "{lines:#?}");
}

#[test]
fn an_agent_starts_a_workflow_on_its_own_task_and_an_unknown_one_is_refused() {
    let starter = agent(
        "starter",
        "agentgrid ctl workflow start smok 2> refused.txt; \
         agentgrid ctl workflow start smoke > started.json; \
         agentgrid ctl complete --summary 'started the smoke test'",
        "  routing: {default: true}\n",
    );
    let repo = Repo::with_agents(&[("starter", &starter)]);
    let dir = repo.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("smoke.yaml"),
        format!("apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {{name: smoke}}\nspec:\n{SMOKE}"),
    )
    .unwrap();
    repo.ok(&["task", "add", "Check it"]);
    repo.ok(&["run"]);

    let runs = repo.json(&["workflow", "list", "--all", "--json"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["task"], 1);
    assert_eq!(runs[0]["status"], "succeeded", "{runs:?}");
    let refused = repo.git(&["show", "agentgrid/task-1:refused.txt"]);
    assert!(
        refused.contains("no workflow is called `smok` (workflows: smoke)"),
        "{refused}"
    );
    let started = repo.git(&["show", "agentgrid/task-1:started.json"]);
    assert!(started.contains("\"run\": 1"), "{started}");
    let events = repo.ok(&["events", "--task", "1"]);
    assert!(
        events.contains("agent:starter#1") && events.contains("workflow run W1 of `smoke` started"),
        "{events}"
    );
}

#[test]
fn a_command_of_a_workflow_an_agent_starts_on_its_own_task_commits_after_the_agent() {
    // The agent goes on writing after it started the workflow: a command that ran or committed
    // before its execution ended would take its files half written, or come before its lines.
    let starter = agent(
        "starter",
        "echo agent >> side.log; \
         agentgrid ctl workflow start smoke > started.json; \
         i=0; while [ $i -lt 300 ]; do echo $i >> late.txt; i=$((i+1)); done; \
         echo after >> side.log; \
         agentgrid ctl complete --summary 'started the smoke test'",
        "  routing: {default: true}\n",
    );
    let repo = Repo::with_agents(&[("starter", &starter)]);
    let dir = repo.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("smoke.yaml"),
        format!("apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {{name: smoke}}\nspec:\n{SMOKE}"),
    )
    .unwrap();
    // Five tasks at once, so that a race between the agents' ends and the commands shows.
    const TASKS: u64 = 5;
    for n in 1..=TASKS {
        repo.ok(&["task", "add", &format!("Check it {n}")]);
    }
    repo.ok(&["run"]);

    let runs = repo.json(&["workflow", "list", "--all", "--json"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), TASKS as usize, "{runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:#?}");
    for n in 1..=TASKS {
        let branch = format!("agentgrid/task-{n}");
        assert_eq!(repo.task_state(n), "done");
        // The agent's commit, then the command's, and nothing else.
        let log = repo.git(&[
            "log",
            "--reverse",
            "--format=%(trailers:key=Agentgrid-Execution,valueonly,separator=)|%(trailers:key=Agentgrid-Workflow-State,valueonly,separator=)",
            &format!("main..{branch}"),
        ]);
        let log: Vec<&str> = log.lines().collect();
        assert_eq!(log.len(), 2, "task #{n}: {log:?}");
        assert!(
            log[0].ends_with('|') && log[0].len() > 1,
            "task #{n}: the agent's execution commits first: {log:?}"
        );
        assert_eq!(log[1], "|smoke", "task #{n}: the command commits last");
        // The command ran on the agent's finished files, and its commit holds only its line.
        let side = repo.git(&["show", &format!("{branch}:side.log")]);
        assert_eq!(
            side.lines().collect::<Vec<_>>(),
            ["agent", "after", "smoke"],
            "task #{n}"
        );
        let late = repo.git(&["show", &format!("{branch}~1:late.txt")]);
        assert_eq!(
            late.lines().count(),
            300,
            "task #{n}: the agent's commit is whole"
        );
        let changed = repo.git(&["diff", "--name-only", &format!("{branch}~1"), &branch]);
        assert_eq!(changed.trim(), "side.log", "task #{n}");
    }
}

#[test]
fn an_approval_while_an_engine_runs_leaves_the_land_to_the_engine() {
    let spec = "  start: code
  states:
    code:
      agent: coder
      on: [{when: succeeded, to: approve}, {to: failed}]
    approve:
      approval: Ship it?
      on: [{when: approved, to: land}, {to: failed}]
    land:
      land: true
      on: [{when: succeeded, to: done}, {to: failed}]
    done: {end: succeeded}
    failed: {end: failed}
";
    let repo = project(&[("ship", spec)]);
    repo.ok(&["workflow", "start", "1", "ship"]);
    repo.ok(&["run"]);
    assert_eq!(run_of(&repo, 1)["position"], "approve");
    let mut engine = repo
        .cmd(&["run", "--forever"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(20),
        "the engine to hold its lock",
        || repo.ok(&["status"]).contains("engine: running"),
    );
    let approved = repo.ok(&["approvals", "approve", "1"]);
    assert!(
        approved.contains("approved #1 (task #1)") && !approved.contains("landed"),
        "the queue leaves the land to the engine: {approved}"
    );
    wait_for(Duration::from_secs(30), "the engine to land", || {
        run_of(&repo, 1)["status"] == "succeeded"
    });
    engine.kill().unwrap();
    engine.wait().unwrap();
    let events = repo.ok(&["events", "--task", "1"]);
    assert_eq!(
        events.matches("began land for `land`").count(),
        1,
        "{events}"
    );
    let files = repo.git(&["ls-tree", "--name-only", "main"]);
    assert!(files.contains("work.txt"), "{files}");
}
