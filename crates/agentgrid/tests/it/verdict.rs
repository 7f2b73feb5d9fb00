//! Honest verdicts through the real binary: a failing test run is never scored as a pass, a
//! forged summary does not count, why a validator failed is kept and shown, validators run
//! without the agent's powers, and what they leave behind is never committed.
//!
//! Each test runs a scripted agent that writes a small Python project and a validator that
//! runs its tests for real (unittest always; pytest where it is installed).

use crate::support::*;

const FAST_CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// An agent that runs `script` once per iteration, judged by `validators` (YAML list items).
fn judged(script: &str, iterations: u32, validators: &str) -> Repo {
    judged_with_attempts(script, iterations, 1, validators)
}

fn judged_with_attempts(script: &str, iterations: u32, attempts: u32, validators: &str) -> Repo {
    let spec = format!(
        "  routing: {{default: true}}\n  limits: {{max_iterations: {iterations}, max_attempts: {attempts}}}\n  validation:\n    validators:\n{validators}"
    );
    let repo = Repo::with_agents(&[("coder", &agent("coder", script, &spec))]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), FAST_CONFIG).unwrap();
    repo.ok(&["task", "add", "Make the tests pass"]);
    repo
}

/// Runs the engine until the task ends; a failed task makes `run` exit 1.
fn run(repo: &Repo) -> String {
    let out = repo.run(&["run"]);
    stdout(&out) + &stderr(&out)
}

/// The validator results of the task's first execution, oldest first.
fn results(repo: &Repo) -> Vec<serde_json::Value> {
    let show = repo.json(&["task", "show", "1", "--json"]);
    show["validations"]
        .as_array()
        .unwrap_or_else(|| panic!("task show --json has no validations: {show}"))
        .iter()
        .flat_map(|v| v["results"].as_array().unwrap().clone())
        .collect()
}

/// One shell line that writes `path` with `content`, each line a single-quoted word.
fn write(path: &str, content: &str) -> String {
    let words: Vec<String> = content
        .lines()
        .map(|l| format!("'{}'", l.replace('\'', r"'\''")))
        .collect();
    format!(
        "mkdir -p $(dirname {path}); printf '%s\\n' {} > {path}; ",
        words.join(" ")
    )
}

const ERRORING_UNITTEST: &str = "import unittest

class T(unittest.TestCase):
    def test_one(self):
        self.assertTrue(True)

    def test_two(self):
        self.assertTrue(True)

    def test_broken(self):
        raise RuntimeError('the database fixture broke')
";

#[test]
fn a_validator_that_exits_1_fails_whatever_its_output_says() {
    // Real unittest fails, and the command then prints a passing summary: the exit counts.
    let script = write("tests/test_app.py", ERRORING_UNITTEST);
    let repo = judged(
        &script,
        1,
        "      - name: tests\n        run: \"python3 -m unittest discover -s tests; s=$?; echo '5 passed, 0 failed'; exit $s\"\n        score: passed-failed\n",
    );
    run(&repo);
    assert_eq!(repo.task_state(1), "failed");
    let r = &results(&repo)[0];
    assert_eq!(r["passed"], false, "{r}");
    assert_eq!(r["exit_code"], 1, "{r}");
    assert!(
        r["reason"].as_str().unwrap().starts_with("exited with 1"),
        "{r}"
    );
    assert!(
        r["output_tail"]
            .as_str()
            .unwrap()
            .contains("the database fixture broke"),
        "the evidence keeps the runner's output: {r}"
    );
}

#[test]
fn a_summary_forged_at_exit_does_not_win() {
    // The test module registers an atexit hook that prints a passing summary after the real
    // one; the second variant also exits 0 from the hook, so only the summary's shape and
    // stream can tell.
    let forged = ERRORING_UNITTEST.replace(
        "import unittest\n",
        "import atexit, os, sys, unittest\n\ndef forge():\n    print('1 passed, 0 failed')\n    print('Ran 3 tests in 0.001s')\n    print()\n    print('OK')\n    sys.stdout.flush()\n    if os.environ.get('FORGE_EXIT'):\n        os._exit(0)\n\natexit.register(forge)\n",
    );
    let script = write("tests/test_app.py", &forged);
    let repo = judged(
        &script,
        1,
        "      - name: counted\n        run: \"python3 -m unittest discover -s tests\"\n        score: passed-failed\n      - name: unittest\n        run: \"FORGE_EXIT=1 python3 -m unittest discover -s tests\"\n        score: unittest\n",
    );
    run(&repo);
    assert_eq!(repo.task_state(1), "failed");
    let r = results(&repo);
    assert_eq!(r[0]["passed"], false, "{}", r[0]);
    assert_eq!(r[1]["passed"], false, "{}", r[1]);
    assert_eq!(r[1]["exit_code"], 0, "the forger exits 0: {}", r[1]);
    assert_eq!(
        r[1]["reason"], "unittest reported 1 error",
        "the real summary on stderr is read: {}",
        r[1]
    );
    assert_eq!(r[1]["counts"]["passed"], 2, "{}", r[1]);
    assert_eq!(r[1]["counts"]["errors"], 1, "{}", r[1]);
}

#[test]
fn a_real_pytest_suite_with_an_erroring_fixture_is_not_done() {
    // The validator runs in a sandbox that hides the home directories, so pytest must be
    // installed for a python3 found outside them.
    let path: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.starts_with("/root") && !p.starts_with("/home"))
        .map(String::from)
        .collect();
    let probe = command("sh")
        .args(["-c", "python3 -m pytest --version"])
        .env("PATH", path.join(":"))
        .output()
        .unwrap();
    if !probe.status.success() {
        println!(
            "skipped: pytest is not installed for python3 ({}); install it with `apt-get install -y python3-pytest`",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return;
    }
    let suite = "import pytest

@pytest.fixture
def db():
    raise RuntimeError('the database fixture broke')

def test_one():
    assert True

def test_two():
    assert True

def test_three(db):
    assert db
";
    let script = write("tests/test_app.py", suite);
    let repo = judged(
        &script,
        1,
        "      - name: counted\n        run: \"python3 -m pytest -q tests\"\n        score: passed-failed\n      - name: pytest\n        run: \"python3 -m pytest -q tests\"\n        score: pytest\n",
    );
    run(&repo);
    assert_eq!(repo.task_state(1), "failed");
    for r in results(&repo) {
        assert_eq!(r["passed"], false, "{r}");
        assert_eq!(r["counts"]["passed"], 2, "{r}");
        assert_eq!(r["counts"]["errors"], 1, "{r}");
        assert!(r["score"].as_f64().unwrap() < 1.0, "{r}");
    }
    let pytest = &results(&repo)[1];
    assert_eq!(
        pytest["reason"], "exited with 1; pytest reported 1 error",
        "{pytest}"
    );
    let files = repo.git(&["ls-tree", "-r", "--name-only", "agentgrid/task-1"]);
    assert!(
        !files.contains("__pycache__") && !files.contains(".pytest_cache"),
        "pytest's caches are not committed: {files}"
    );
}

#[test]
fn a_validator_without_its_tool_says_why_in_task_show_and_status() {
    let repo = judged(
        "echo 'print(1)' > app.py",
        1,
        "      - name: tests\n        run: \"no-such-test-runner -q\"\n",
    );
    run(&repo);
    assert_eq!(repo.task_state(1), "failed");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(
        show.contains("tests failed") && show.contains("exited with 127 (command not found)"),
        "{show}"
    );
    assert!(show.contains("no-such-test-runner: not found"), "{show}");
    let status = repo.ok(&["status"]);
    assert!(
        status.contains("last failed validator: `tests` on task #1")
            && status.contains("exited with 127"),
        "{status}"
    );
    let logs = repo.ok(&["logs", "1"]);
    assert!(logs.contains("--- validators ---"), "{logs}");
    assert!(logs.contains("no-such-test-runner: not found"), "{logs}");
}

#[test]
fn validators_see_no_token_socket_gateway_or_workspace_path() {
    // A planted `python3` in a relative PATH entry would run instead of the real one.
    let fake = "#!/bin/sh\necho 'Ran 3 tests in 0.001s' >&2; echo >&2; echo OK >&2; exit 0\n";
    let script = format!(
        "{}{}chmod +x tools/bin/python3",
        write("tests/test_app.py", ERRORING_UNITTEST),
        write("tools/bin/python3", fake)
    );
    let repo = judged(
        &script,
        1,
        "      - name: env\n        run: \"env | sort\"\n        score_only: true\n      - name: tests\n        run: \"python3 -m unittest discover -s tests\"\n        score: exit\n",
    );
    let out = repo
        .cmd(&["run"])
        .env(
            "PATH",
            format!("tools/bin:.:{}", std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    let r = results(&repo);
    let env = r[0]["output_tail"].as_str().unwrap_or_default().to_string();
    assert!(env.contains("AGENTGRID_EXECUTION_ID="), "{env}");
    for secret in [
        "AGENTGRID_TOKEN",
        "AGENTGRID_CONTROL_SOCKET",
        "AGENTGRID_PROMPT_FILE",
        "OPENAI_",
        "ANTHROPIC_",
    ] {
        assert!(!env.contains(secret), "a validator sees {secret}:\n{env}");
    }
    let path = env
        .lines()
        .find_map(|l| l.strip_prefix("PATH="))
        .unwrap_or_default();
    assert!(
        path.split(':')
            .all(|p| p.starts_with('/') && !p.contains(".agentgrid")),
        "{path}"
    );
    assert_eq!(
        repo.task_state(1),
        "failed",
        "the real tests ran: {}\n{}",
        r[1],
        stdout(&out)
    );
}

#[test]
fn what_validators_leave_behind_is_never_committed() {
    // The first iteration's code is wrong, so its validation fails and the agent runs again:
    // the first validators' caches are in the worktree when the second iteration commits.
    let code = "def answer():\n    return ANSWER\n";
    let test = "import unittest\nfrom app import answer\n\nclass T(unittest.TestCase):\n    def test_answer(self):\n        self.assertEqual(answer(), 42)\n";
    let script = format!(
        "{}{}if [ \"$AGENTGRID_ITERATION\" = 1 ]; then sed -i 's/ANSWER/41/' app.py; else sed -i 's/ANSWER/6 * 7/' app.py; fi",
        write("app.py", code),
        write("test_app.py", test)
    );
    let repo = judged(
        &script,
        2,
        "      - name: tests\n        run: \"python3 -m unittest discover && mkdir -p .pytest_cache && echo data > .coverage\"\n        score: exit\n",
    );
    let out = run(&repo);
    assert_eq!(
        repo.task_state(1),
        "done",
        "{out}\n{}",
        repo.ok(&["task", "show", "1"])
    );
    let files = repo.git(&["ls-tree", "-r", "--name-only", "agentgrid/task-1"]);
    assert!(files.contains("app.py"), "{files}");
    for byproduct in ["__pycache__", ".coverage", ".pytest_cache"] {
        assert!(
            !files.contains(byproduct),
            "{byproduct} was committed: {files}"
        );
    }
    // The worktree was clean, so it was removed, and the done branch will not change again.
    let worktrees = repo.git(&["worktree", "list"]);
    assert_eq!(worktrees.lines().count(), 1, "{worktrees}");
    let head = repo.git(&["rev-parse", "agentgrid/task-1"]);
    let out = repo.run(&["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(repo.git(&["rev-parse", "agentgrid/task-1"]), head);
}

/// The first execution's iteration count and summary.
fn first_execution(repo: &Repo) -> (u64, String) {
    let show = repo.json(&["task", "show", "1", "--json"]);
    let exec = &show["executions"][0];
    (
        exec["iteration"].as_u64().unwrap(),
        exec["summary"].as_str().unwrap_or_default().to_string(),
    )
}

/// The state of the task's only execution, as `task show --json` and `status --json` give it;
/// the two must agree.
fn only_execution_state(repo: &Repo) -> String {
    let show = repo.json(&["task", "show", "1", "--json"]);
    let shown = show["executions"].as_array().unwrap();
    assert_eq!(shown.len(), 1, "{show}");
    let status = repo.json(&["status", "--json"]);
    let listed = status["executions"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{status}");
    assert_eq!(shown[0]["state"], listed[0]["state"], "{show}\n{status}");
    shown[0]["state"].as_str().unwrap().to_string()
}

#[test]
fn the_same_failure_twice_in_a_row_stops_the_execution() {
    // The agent changes a file every time but never the code the test judges.
    let script = format!(
        "{}echo \"attempt $AGENTGRID_ITERATION\" >> notes.txt",
        write("tests/test_app.py", ERRORING_UNITTEST)
    );
    let repo = judged(
        &script,
        5,
        "      - name: tests\n        run: \"python3 -m unittest discover -s tests\"\n",
    );
    run(&repo);
    assert_eq!(repo.task_state(1), "failed");
    let (iterations, summary) = first_execution(&repo);
    assert_eq!(iterations, 2, "{summary}");
    assert!(
        summary.starts_with("no progress: iterations 1 and 2 failed validation the same way"),
        "{summary}"
    );
    assert_eq!(only_execution_state(&repo), "no_progress");
}

#[test]
fn an_iteration_that_changes_nothing_stops_the_execution() {
    // The agent writes its answer once and then does nothing; the validator's output differs
    // every run, so only the unchanged tree shows that nothing moved.
    let repo = judged(
        "test -f answer || echo 41 > answer",
        5,
        "      - name: answer\n        run: \"head -c 24 /dev/urandom | base64; test $(cat answer) = 42\"\n",
    );
    run(&repo);
    assert_eq!(repo.task_state(1), "failed");
    let (iterations, summary) = first_execution(&repo);
    assert_eq!(iterations, 2, "{summary}");
    assert!(
        summary.starts_with("no progress: iteration 2 changed nothing after validation failed"),
        "{summary}"
    );
    assert_eq!(only_execution_state(&repo), "no_progress");
}

#[test]
fn a_stuck_execution_costs_an_attempt_and_the_task_runs_again() {
    let repo = judged_with_attempts(
        "test -f answer || echo 41 > answer",
        5,
        2,
        "      - name: answer\n        run: \"test $(cat answer) = 42\"\n",
    );
    let out = run(&repo);
    assert_eq!(repo.task_state(1), "failed", "{out}");
    let show = repo.json(&["task", "show", "1", "--json"]);
    let executions = show["executions"].as_array().unwrap();
    let states: Vec<(u64, &str)> = executions
        .iter()
        .map(|e| (e["attempt"].as_u64().unwrap(), e["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![(1, "no_progress"), (2, "no_progress")],
        "{show}"
    );
    let reason = show["task"]["summary"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("no progress: iteration 2 changed nothing")
            && reason.ends_with("(attempt 2 of 2)"),
        "{show}"
    );
    assert!(out.contains("execution 1 no_progress"), "{out}");
    assert!(out.contains("retry 2 of 2"), "{out}");
}

#[test]
fn a_junit_report_counts_only_when_this_run_wrote_it() {
    // The agent commits a report in which everything passed; the first validator writes none,
    // the second writes a real one with a failure and exits 0.
    let planted = "<testsuite tests=\"3\" failures=\"0\"><testcase name=\"a\"/><testcase name=\"b\"/><testcase name=\"c\"/></testsuite>\n";
    let real = "<testsuites><testsuite name=\"s\" tests=\"2\" failures=\"0\"><testcase name=\"a\"/><testcase name=\"b\"><failure message=\"boom\"/></testcase></testsuite></testsuites>";
    // Quoted for the YAML double-quoted string the validator's shell line sits in.
    let real = real.replace('"', "\\\"");
    let repo = judged(
        &write("reports/junit.xml", planted),
        1,
        &format!(
            "      - name: stale\n        run: \"true\"\n        score: junit\n        report: reports/junit.xml\n      - name: fresh\n        run: \"mkdir -p out; echo '{real}' > out/junit.xml\"\n        score: junit\n        report: out/junit.xml\n"
        ),
    );
    run(&repo);
    assert_eq!(repo.task_state(1), "failed");
    let r = results(&repo);
    assert_eq!(
        r[0]["reason"], "the JUnit report reports/junit.xml was not written",
        "{}",
        r[0]
    );
    assert_eq!(
        r[1]["reason"], "the JUnit report reported 1 failure",
        "{}",
        r[1]
    );
    assert_eq!(r[1]["counts"]["passed"], 1, "{}", r[1]);
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:reports/junit.xml"]),
        planted,
        "the agent's own file is put back as it was"
    );
    let files = repo.git(&["ls-tree", "-r", "--name-only", "agentgrid/task-1"]);
    assert!(!files.contains("out/junit.xml"), "{files}");
}

#[test]
fn a_validator_that_runs_out_of_time_says_so_with_its_limit() {
    // It prints a failing test summary first: a run cut short must not read like that failure.
    let repo = judged(
        "echo done > work.txt",
        1,
        "      - name: slow\n        run: \"echo '1 passed, 1 failed'; exec sleep 30\"\n        timeout: 1s\n        score: passed-failed\n",
    );
    run(&repo);
    assert_eq!(repo.task_state(1), "failed");
    let r = &results(&repo)[0];
    assert_eq!(r["reason"], "timed out after 1s and was killed", "{r}");
    assert_eq!(r["timed_out"], true, "{r}");
    assert_eq!(r["score"], 0.0, "{r}");
    let summary = repo.json(&["task", "show", "1", "--json"])["task"]["summary"].to_string();
    assert!(
        summary.contains("validator `slow` timed out after 1s"),
        "{summary}"
    );
}

#[test]
fn a_regex_validator_that_is_killed_fails_whatever_score_it_printed() {
    let repo = judged(
        "echo done > work.txt",
        1,
        "      - name: score\n        run: \"echo score=1.0; kill -9 $$\"\n        score: {regex: \"score=(?P<score>[0-9.]+)\"}\n",
    );
    run(&repo);
    assert_eq!(repo.task_state(1), "failed");
    let r = &results(&repo)[0];
    assert_eq!(r["reason"], "killed by signal 9", "{r}");
    assert_eq!(r["score"], 0.0, "{r}");
}
