//! A stop reaches every phase: SIGTERM to `run` (with `shutdown_grace: 2s`) while a validator, a
//! hook or a commit is under way ends that step's processes at once, starts no further
//! iteration, leaves the task to run again, and `run` exits within the grace period and a small
//! margin. A second `run` then finishes the work.
//!
//! Each phase is held by a `sleep` with a duration of its own, which marks its processes on
//! the machine (sandboxed ones included: their command lines show in the host's /proc).

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Grace 2 s; the longest any phase may take to end after SIGTERM is [`STOP_BOUND`].
const CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  shutdown_grace: 2s\n  retry: {base_delay: 100ms, max_delay: 200ms}\n";
/// The grace period plus a small margin.
const STOP_BOUND: Duration = Duration::from_secs(4);
/// How long a held phase would run if nothing stopped it.
const HELD: &str = "25";

/// The agent: records each iteration in the worktree (committed) and beside it a marker that
/// only that iteration's run leaves.
const AGENT: &str = "echo $AGENTGRID_ITERATION >> work.txt; touch ran-$AGENTGRID_ITERATION";

/// Two iterations, so that a second one could follow a failed validation; one attempt.
const LIMITS: &str = "  limits: {max_iterations: 2, max_attempts: 1}\n";

/// A `sleep` that marks the processes of one phase of one test.
fn held_sleep(phase: u32) -> String {
    format!("sleep {HELD}.{}{phase:02}", std::process::id() % 1000)
}

/// The config with `workspace` (a YAML line under `spec`) added.
fn config(workspace: &str) -> String {
    format!("{CONFIG}{workspace}")
}

/// A project with the one agent `coder` (its manifest's `extra` spec) and `config`, one task.
fn project(extra: &str, config: &str) -> Repo {
    let spec = format!("  routing: {{default: true}}\n{LIMITS}{extra}");
    let repo = Repo::with_agents(&[("coder", &agent("coder", AGENT, &spec))]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), config).unwrap();
    repo.ok(&["task", "add", "Do the work"]);
    repo
}

/// Processes anywhere on the machine whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read(p.join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

/// An engine process, killed if the test ends before it stops.
struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start(repo: &Repo, home: Option<&Path>) -> Engine {
    let mut cmd = repo.cmd(&["run"]);
    if let Some(home) = home {
        cmd.env("HOME", home)
            .env("GIT_CONFIG_SYSTEM", "/dev/null")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("GIT_CONFIG_GLOBAL");
    }
    Engine(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Waits for the phase marked `marker` to run, sends SIGTERM, and checks that `run` ends in
/// time and that nothing of the phase outlives it. Returns the exit status and what `run`
/// wrote on stderr.
fn stop_during(engine: Engine, marker: &str) -> (ExitStatus, String) {
    let mut engine = engine;
    wait_for(
        Duration::from_secs(60),
        &format!("`{marker}` to run"),
        || {
            if let Some(status) = engine.0.try_wait().unwrap() {
                panic!("run ended before the phase was reached: {status}");
            }
            !processes_with(marker).is_empty()
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let asked = Instant::now();
    let deadline = asked + STOP_BOUND + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = engine.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "run never ended after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = asked.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut engine.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        took < STOP_BOUND,
        "run took {took:?} to end after SIGTERM (grace 2s): {stderr}"
    );
    let left = processes_with(marker);
    assert!(left.is_empty(), "processes of the phase survived: {left:?}");
    assert!(
        status.code().is_some(),
        "run ended by a signal: {status}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (status, stderr)
}

/// The events `agentgrid events --json` prints, of type `kind`.
fn events(repo: &Repo, kind: &str) -> Vec<serde_json::Value> {
    repo.ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == kind)
        .collect()
}

fn executions(repo: &Repo) -> Vec<serde_json::Value> {
    repo.json(&["task", "show", "1", "--json"])["executions"]
        .as_array()
        .unwrap()
        .clone()
}

fn worktree(repo: &Repo) -> PathBuf {
    repo.path().join(".agentgrid/workspaces/task-1")
}

/// After the stop: the one execution ended cancelled, the task runs again (open), and no
/// agent process beyond `agents` was started.
fn left_to_run_again(repo: &Repo, agents: usize) {
    assert_eq!(repo.task_state(1), "open", "{:?}", executions(repo));
    let runs = executions(repo);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["state"], "cancelled", "{runs:?}");
    let started = events(repo, "execution_process_started");
    assert_eq!(
        started.len(),
        agents,
        "agents started before and after the stop: {started:?}"
    );
}

/// A second `run` (with `config`) finishes the task.
fn second_run_finishes(repo: &Repo, config: &str) {
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), config).unwrap();
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done", "{:?}", executions(repo));
    let work = repo.git(&["show", "agentgrid/task-1:work.txt"]);
    assert!(
        work.contains('1'),
        "the work is on the task's branch: {work}"
    );
    assert!(!worktree(repo).exists(), "the worktree was removed");
}

#[test]
fn sigterm_during_a_validator_ends_it_and_starts_no_next_iteration() {
    let marker = held_sleep(1);
    let validators = |run: &str| {
        format!(
            "  validation:\n    validators:\n      - name: slow\n        run: \"{run}\"\n        score: exit\n"
        )
    };
    let repo = project(&validators(&marker), CONFIG);
    let (_, stderr) = stop_during(start(&repo, None), &marker);
    assert!(stderr.contains("stopping"), "{stderr}");
    left_to_run_again(&repo, 1);
    assert!(
        !worktree(&repo).join("ran-2").exists(),
        "a second iteration's agent ran after the stop"
    );
    let validated = events(&repo, "execution_validated");
    assert!(
        validated.is_empty(),
        "a cancelled validator gave a verdict: {validated:?}"
    );
    let runs = executions(&repo);
    let summary = runs[0]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("stopped"), "{runs:?}");

    let agent_yaml = repo.path().join(".agentgrid/agents/coder.yaml");
    let text = std::fs::read_to_string(&agent_yaml).unwrap();
    std::fs::write(&agent_yaml, text.replace(&marker, "true")).unwrap();
    second_run_finishes(&repo, CONFIG);
}

/// A hook held by `marker` in `hook`; the second run has no hooks.
fn hook_phase(hook: &str, phase: u32, agents_before_stop: usize) -> Repo {
    let marker = held_sleep(phase);
    let hooks = format!("  workspace: {{hooks: {{{hook}: \"{marker}\"}}}}\n");
    let repo = project("", &config(&hooks));
    stop_during(start(&repo, None), &marker);
    left_to_run_again(&repo, agents_before_stop);
    repo
}

#[test]
fn sigterm_during_after_create_ends_the_hook_and_undoes_the_checkout() {
    let repo = hook_phase("after_create", 2, 0);
    assert!(
        !worktree(&repo).exists(),
        "a checkout whose after_create never finished was left for the next run"
    );
    second_run_finishes(&repo, CONFIG);
}

#[test]
fn sigterm_during_before_run_ends_the_hook_before_any_agent_starts() {
    let repo = hook_phase("before_run", 3, 0);
    assert!(!worktree(&repo).join("ran-1").exists());
    second_run_finishes(&repo, CONFIG);
}

#[test]
fn sigterm_during_after_run_ends_the_hook_and_the_judged_outcome_stands() {
    let marker = held_sleep(4);
    let hooks = format!("  workspace: {{hooks: {{after_run: \"{marker}\"}}}}\n");
    let repo = project("", &config(&hooks));
    stop_during(start(&repo, None), &marker);
    // The work was committed and, with no validators, the clean exit is its evidence: the
    // best-effort hook cut short changes nothing of that.
    assert_eq!(repo.task_state(1), "done", "{:?}", executions(&repo));
    assert_eq!(events(&repo, "execution_process_started").len(), 1);
    second_run_finishes(&repo, CONFIG);
}

#[test]
fn sigterm_during_before_remove_ends_the_hook_and_the_next_run_removes_the_worktree() {
    let marker = held_sleep(5);
    let hooks = format!("  workspace: {{hooks: {{before_remove: \"{marker}\"}}}}\n");
    let repo = project("", &config(&hooks));
    stop_during(start(&repo, None), &marker);
    assert_eq!(repo.task_state(1), "done", "{:?}", executions(&repo));
    assert!(worktree(&repo).exists(), "the removal was cut short");
    second_run_finishes(&repo, CONFIG);
}

/// The commit is held by a clean filter (a trusted driver defined in the engine's home) on the
/// file the agent writes: `git add` runs it, so git itself is what is under way when SIGTERM
/// comes. The filter holds only the first time it runs, marking that it did.
#[test]
fn sigterm_during_a_commit_ends_git_and_the_next_run_commits_the_work() {
    let marker = held_sleep(6);
    let (home, held_once) = slow_filter_home("clean", &marker);
    let agent_script = format!("{AGENT}; echo data > data.slow");
    let spec = format!("  routing: {{default: true}}\n{LIMITS}");
    let repo = Repo::with_agents(&[("coder", &agent("coder", &agent_script, &spec))]);
    std::fs::write(repo.path().join(".gitattributes"), "*.slow filter=slow\n").unwrap();
    repo.git(&["add", ".gitattributes"]);
    repo.git(&["commit", "-q", "-m", "slow files"]);
    let config = config("  workspace: {git: {drivers: [slow]}}\n");
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), &config).unwrap();
    repo.ok(&["task", "add", "Do the work"]);

    stop_during(start(&repo, Some(home.path())), &marker);
    assert!(held_once.exists(), "the commit's filter ran");
    left_to_run_again(&repo, 1);
    assert!(
        repo.git(&["log", "--format=%s", "agentgrid/task-1"])
            .lines()
            .all(|subject| !subject.contains("execution")),
        "nothing was committed by the cut-short commit"
    );

    let mut engine = start(&repo, Some(home.path()));
    let status = engine.0.wait().unwrap();
    assert!(status.success(), "the second run: {status}");
    assert_eq!(repo.task_state(1), "done", "{:?}", executions(&repo));
    let data = repo.git(&["show", "agentgrid/task-1:data.slow"]);
    assert_eq!(data, "data\n");
    assert!(!worktree(&repo).exists(), "the worktree was removed");
}

/// A home whose git configuration defines the trusted driver `slow`: its `kind` filter (`clean`
/// or `smudge`) runs `marker` the first time it runs, then passes the content through.
fn slow_filter_home(kind: &str, marker: &str) -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let held_once = home.path().join("held");
    // In a script of its own: every host git command carries the filter's definition on its
    // command line, which must not hold the marker.
    let filter = home.path().join("slow-filter.sh");
    std::fs::write(
        &filter,
        format!(
            "if [ ! -e {0} ]; then touch {0}; sh -c '{marker}'; fi\ncat\n",
            held_once.display()
        ),
    )
    .unwrap();
    std::fs::write(
        home.path().join(".gitconfig"),
        format!("[filter \"slow\"]\n\t{kind} = sh {}\n", filter.display()),
    )
    .unwrap();
    (home, held_once)
}

/// Workspace preparation is held by a smudge filter on a file the main branch holds: `git
/// worktree add` runs it while it checks the task's branch out.
#[test]
fn sigterm_during_workspace_preparation_ends_the_checkout_and_the_next_run_makes_it() {
    let marker = held_sleep(7);
    let (home, held_once) = slow_filter_home("smudge", &marker);
    let spec = format!("  routing: {{default: true}}\n{LIMITS}");
    let repo = Repo::with_agents(&[("coder", &agent("coder", AGENT, &spec))]);
    std::fs::write(repo.path().join(".gitattributes"), "*.slow filter=slow\n").unwrap();
    std::fs::write(repo.path().join("seed.slow"), "seed\n").unwrap();
    repo.git(&["add", ".gitattributes", "seed.slow"]);
    repo.git(&["commit", "-q", "-m", "slow files"]);
    let config = config("  workspace: {git: {drivers: [slow]}}\n");
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), &config).unwrap();
    repo.ok(&["task", "add", "Do the work"]);

    stop_during(start(&repo, Some(home.path())), &marker);
    assert!(held_once.exists(), "the checkout's filter ran");
    left_to_run_again(&repo, 0);

    let mut engine = start(&repo, Some(home.path()));
    let status = engine.0.wait().unwrap();
    assert!(status.success(), "the second run: {status}");
    assert_eq!(repo.task_state(1), "done", "{:?}", executions(&repo));
    let seed = repo.git(&["show", "agentgrid/task-1:seed.slow"]);
    assert_eq!(seed, "seed\n", "the checkout was complete");
    let work = repo.git(&["show", "agentgrid/task-1:work.txt"]);
    assert_eq!(work, "1\n");
}
