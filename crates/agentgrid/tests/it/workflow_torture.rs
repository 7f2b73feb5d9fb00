//! kill -9 torture of workflow runs with every kind of state, through the real binary: several
//! tasks each run a workflow of commands, agents (on the task and on a sub-task), a parallel
//! fan-out and join, a sub-workflow, a gate a person decides on the command line between kills,
//! and a land; the engine is killed at moments a seeded generator picks. Whatever the seed,
//! every run finishes exactly once, every approval is decided at most once, no command runs
//! twice for one visit, and each task's work lands on main once.
//!
//! The seeds run two at a time. `AGENTGRID_TORTURE_SEEDS=N` runs seeds 1 to N instead of the
//! default list; `AGENTGRID_TORTURE_SEED=S` replays seed S alone. A failure names its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;

/// The seeds run by default: enough kills to land in every kind of state, within the time a
/// test may take on a loaded machine.
const SEEDS: &[u64] = &[1, 2, 3, 4];
/// Tasks per seed, each with a run of `every` of its own, all at once.
const TASKS: u64 = 3;
/// Engines started (and killed when still running) per seed before one is left alone.
const ROUNDS: usize = 40;

const EVERY: &str = "  start: build
  states:
    build:
      run: [sh, -c, 'echo build >> side-$AGENTGRID_TASK_ID.log; sleep 0.05']
      on: [{when: succeeded, to: checks}, {to: build, max: 30}]
    checks:
      parallel: [lint, docs]
      on: [{when: succeeded, to: code}, {to: checks, max: 30}]
    lint:
      run: [sh, -c, 'echo lint >> side-$AGENTGRID_TASK_ID.log']
    docs:
      agent: writer
      subtask: Write the docs
    code:
      agent: coder
      on: [{when: succeeded, to: inner}, {to: code, max: 30}]
    inner:
      workflow: smoke
      on: [{when: succeeded, to: approve}, {to: inner, max: 30}]
    approve:
      approval: Ship it?
      on: [{when: approved, to: land}, {when: rejected, to: code, max: 1}, {to: failed}]
    land:
      land: true
      on: [{when: succeeded, to: done}, {to: land, max: 30}]
    done: {end: succeeded}
    failed: {end: failed}
";

const SMOKE: &str = "  start: smoke
  states:
    smoke:
      run: [sh, -c, 'echo smoke >> side-$AGENTGRID_TASK_ID.log']
      on: [{when: succeeded, to: ok}, {to: smoke, max: 30}]
    ok: {end: succeeded}
";

/// xorshift64: small, deterministic, and enough to scatter kill points.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Spread small seeds over the whole state; zero would stay zero.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("AGENTGRID_TORTURE_SEED") {
        return vec![seed.parse().expect("AGENTGRID_TORTURE_SEED is a number")];
    }
    match std::env::var("AGENTGRID_TORTURE_SEEDS") {
        Ok(n) => (1..=n.parse().expect("AGENTGRID_TORTURE_SEEDS is a number")).collect(),
        Err(_) => SEEDS.to_vec(),
    }
}

#[test]
fn kill_9_torture_of_every_kind_of_state_finishes_each_run_once_and_decides_nothing_twice() {
    let queue = Mutex::new(seeds());
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let Some(seed) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let started = Instant::now();
                    let outcome = std::panic::catch_unwind(|| torture(seed));
                    match outcome {
                        Ok(kills) => eprintln!(
                            "seed {seed}: {kills} kills, all invariants held ({:.1?})",
                            started.elapsed()
                        ),
                        Err(_) => failed.lock().unwrap().push(seed),
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    assert!(
        failed.is_empty(),
        "seeds {failed:?} failed (their messages are above); replay one with \
         AGENTGRID_TORTURE_SEED=N cargo test -p agentgrid --test it workflow_torture"
    );
}

/// A project with the agents `coder` (on the task: a side-effect line and the work) and
/// `writer` (on the sub-task: the docs), the workflows, and one `every` run on each of the
/// tasks. The side effects go to `side-N.log` in task N's worktree, a file of each task's own so
/// that the lands do not conflict on it; what a command that succeeded wrote there is committed
/// to the task's branch as it ends, and what a kill left is committed when the worktree is
/// removed, so the branch holds every line.
fn project() -> Repo {
    let coder = agent(
        "coder",
        "echo code >> side-$AGENTGRID_TASK_ID.log; echo \"work of $AGENTGRID_TASK_ID\" > work-$AGENTGRID_TASK_ID.txt; \
         agentgrid ctl complete --summary 'wrote the work'",
        "",
    );
    let writer = agent(
        "writer",
        "echo docs > docs-$AGENTGRID_TASK_ID.md; agentgrid ctl complete --summary 'wrote the docs'",
        "",
    );
    let repo = Repo::with_agents(&[("coder", &coder), ("writer", &writer)]);
    let dir = repo.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, spec) in [("every", EVERY), ("smoke", SMOKE)] {
        let text = format!(
            "apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n{spec}"
        );
        std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
    }
    repo.ok(&["validate"]);
    for n in 1..=TASKS {
        repo.ok(&["task", "add", &format!("Feature {n}")]);
        repo.ok(&["workflow", "start", &n.to_string(), "every"]);
    }
    repo
}

/// What the person decided, by approval.
type Decisions = BTreeMap<u64, &'static str>;

/// One seed's torture; the number of kills.
fn torture(seed: u64) -> usize {
    let repo = project();
    let mut rng = Rng::new(seed);
    let mut decided = Decisions::new();
    let mut rejected_tasks = BTreeSet::new();
    let mut kills = 0;
    for _ in 0..ROUNDS {
        decide_pending(&repo, seed, &mut rng, &mut decided, &mut rejected_tasks);
        if all_finished(&repo) {
            break;
        }
        let after = Duration::from_millis(100 + rng.below(900));
        let mut engine = repo
            .cmd(&["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        if engine.try_wait().unwrap().is_none() {
            engine.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        engine.wait().unwrap();
    }
    // Engines left alone finish what is left; the person decides what waits for them.
    for _ in 0..20 {
        decide_pending(&repo, seed, &mut rng, &mut decided, &mut rejected_tasks);
        if all_finished(&repo) {
            break;
        }
        repo.ok(&["run"]);
    }
    // A land the person's approval carried out in the queue leaves the task's worktree to the
    // next engine, which commits what a command cut short by a kill left there before removing
    // it: run one, as a person would, so that the branch holds every line.
    repo.ok(&["run"]);
    check(&repo, seed, &decided);
    kills
}

fn runs(repo: &Repo) -> Vec<serde_json::Value> {
    let list = repo.json(&["workflow", "list", "--all", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| repo.json(&["workflow", "show", &format!("W{}", r["id"]), "--json"]))
        .collect()
}

fn all_finished(repo: &Repo) -> bool {
    let list = repo.json(&["workflow", "list", "--all", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] != "running")
}

/// Decides every pending approval as a person would: a task's first gate is rejected now and
/// then (its run goes round once more), every other is approved; now and then the person
/// decides again, which must be refused.
fn decide_pending(
    repo: &Repo,
    seed: u64,
    rng: &mut Rng,
    decided: &mut Decisions,
    rejected_tasks: &mut BTreeSet<u64>,
) {
    let pending = repo.json(&["approvals", "list", "--json"]);
    for entry in pending.as_array().unwrap() {
        let approval = &entry["approval"];
        assert_eq!(approval["state"], "pending", "seed {seed}: {entry}");
        let id = approval["id"].as_u64().unwrap();
        let task = approval["task_id"].as_u64().unwrap();
        assert!(
            !decided.contains_key(&id),
            "seed {seed}: approval #{id} is pending again after it was decided: {entry}"
        );
        let text = id.to_string();
        if !rejected_tasks.contains(&task) && rng.below(2) == 0 {
            repo.ok(&[
                "approvals",
                "reject",
                &text,
                "--feedback",
                "once more, please",
            ]);
            rejected_tasks.insert(task);
            decided.insert(id, "reject");
        } else {
            repo.ok(&["approvals", "approve", &text]);
            decided.insert(id, "approve");
        }
        if rng.below(3) == 0 {
            let again = repo.run(&["approvals", "approve", &text]);
            assert_eq!(
                again.status.code(),
                Some(2),
                "seed {seed}: a second decision on approval #{id} was not refused: {}{}",
                stdout(&again),
                stderr(&again)
            );
        }
    }
}

/// How many `{state}: {prefix}…` lines the history holds.
fn count(lines: &[String], state: &str, prefix: &str) -> usize {
    let start = format!("{state}: {prefix}");
    lines.iter().filter(|l| l.starts_with(&start)).count()
}

fn check(repo: &Repo, seed: u64, decided: &Decisions) {
    let runs = runs(repo);
    let events: Vec<serde_json::Value> = repo
        .ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of_type = |name: &'static str| events.iter().filter(move |e| e["type"] == name);

    // Every run finished, exactly once: one stepped event that is not `running` per run. The
    // top-level runs succeeded (every edge back has budget to spare), and so did every child.
    let mut finishes: BTreeMap<u64, usize> = BTreeMap::new();
    for e in of_type("task_workflow_stepped").filter(|e| e["status"] != "running") {
        *finishes.entry(e["workflow"].as_u64().unwrap()).or_default() += 1;
    }
    for run in &runs {
        let id = run["id"].as_u64().unwrap();
        assert_eq!(
            finishes.get(&id),
            Some(&1),
            "seed {seed}: W{id} finished once: {:#?}",
            history(run)
        );
        if run["parent"].is_null() {
            assert_eq!(
                run["status"],
                "succeeded",
                "seed {seed}: W{id} on #{}: {:#?}\n{}",
                run["task"],
                history(run),
                repo.ok(&["task", "show", &run["task"].to_string()])
            );
        }
        // Each command was begun once per visit.
        let begun: Vec<String> = run["begun"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| format!("{} {} {}", b["visit"], b["state"], b["command"]))
            .collect();
        let unique: BTreeSet<&String> = begun.iter().collect();
        assert_eq!(unique.len(), begun.len(), "seed {seed}: W{id}: {begun:#?}");
    }
    let top: Vec<&serde_json::Value> = runs.iter().filter(|r| r["parent"].is_null()).collect();
    assert_eq!(top.len() as u64, TASKS, "seed {seed}: one run per task");

    // Every approval was decided at most once, as the person decided it, and every gate's
    // approval was decided (the runs got past them all).
    let mut decisions: BTreeMap<u64, usize> = BTreeMap::new();
    for e in of_type("task_approval_decided") {
        *decisions
            .entry(e["approval"].as_u64().unwrap())
            .or_default() += 1;
    }
    assert!(
        decisions.values().all(|n| *n == 1),
        "seed {seed}: an approval was decided twice: {decisions:?}"
    );
    let recorded: BTreeSet<u64> = decisions.keys().copied().collect();
    let ours: BTreeSet<u64> = decided.keys().copied().collect();
    assert_eq!(
        recorded, ours,
        "seed {seed}: the decisions recorded are the person's"
    );
    for (id, how) in decided {
        let shown = repo.json(&["approvals", "show", &id.to_string(), "--json"]);
        let state = if *how == "approve" {
            "approved"
        } else {
            "rejected"
        };
        assert_eq!(shown["approval"]["state"], state, "seed {seed}: {shown}");
    }

    for task in 1..=TASKS {
        let lines: Vec<String> = runs
            .iter()
            .filter(|r| r["task"] == task)
            .flat_map(history)
            .collect();
        let side = repo.git(&["show", &format!("agentgrid/task-{task}:side-{task}.log")]);
        let ran = |what: &str| side.lines().filter(|l| *l == what).count();
        // A command ran at most once per visit of its state (a visit cut short by a kill ends
        // as failed instead of running again), and at least once per visit that succeeded.
        // A parallel branch is entered with its fan-out, once per visit of `checks`.
        for (state, entered_as) in [("build", "build"), ("lint", "checks"), ("smoke", "smoke")] {
            let entered = count(&lines, entered_as, "entered");
            let succeeded =
                count(&lines, state, "succeeded") + count(&lines, state, "branch succeeded");
            let times = ran(state);
            assert!(
                succeeded <= times && times <= entered,
                "seed {seed}: `{state}` on #{task}: entered {entered} times, succeeded \
                 {succeeded}, ran {times}:\n{lines:#?}\n{side}"
            );
        }
        // An agent runs inside a recorded claim only: never more often than its task's
        // executions (a kill during one makes it lost, and the crash rule runs it again).
        let executions = of_type("execution_created")
            .filter(|e| e["execution"]["task_id"] == task)
            .count();
        let coded = ran("code");
        assert!(
            count(&lines, "code", "succeeded") <= coded && coded <= executions,
            "seed {seed}: `code` on #{task} ran {coded} times in {executions} executions:\n\
             {lines:#?}"
        );

        // The work landed on main once: one land recorded, one commit of main's own line
        // that brought it, and the file as the agent wrote it.
        let landed = of_type("task_landed")
            .filter(|e| e["entity_id"] == task)
            .count();
        assert_eq!(landed, 1, "seed {seed}: #{task} landed once:\n{lines:#?}");
        let file = format!("work-{task}.txt");
        let brought = repo.git(&["log", "--first-parent", "--format=%H", "main", "--", &file]);
        assert_eq!(
            brought.lines().count(),
            1,
            "seed {seed}: one commit on main brought {file}: {brought}"
        );
        let text = repo.git(&["show", &format!("main:{file}")]);
        assert_eq!(text, format!("work of {task}\n"), "seed {seed}");
    }
}
