//! Validators as judges through the real binary: an agent facing the owner's failing suite
//! cannot make it pass by planting files that run inside the runner or the interpreter, by
//! changing the tests, the runner or its configuration, or by leaving an untracked fake tool
//! where the validator looks for it; an agent that adds a test and fixes the code is done; and
//! nothing the validators write reaches the task's branch.

use std::path::Path;

use crate::support::*;

const FAST_CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// The owner's code, with a bug its own suite finds.
const CALC: &str = "def add(a, b):\n    return a - b\n";

/// The owner's suite: one test that passes and one that fails on the bug.
const TEST_CALC: &str = "import unittest

from calc import add


class CalcTest(unittest.TestCase):
    def test_zero(self):
        self.assertEqual(add(0, 0), 0)

    def test_add(self):
        self.assertEqual(add(2, 2), 4)
";

/// The owner's runner, named by a validator.
const RUN_TESTS: &str = "import sys
import unittest

suite = unittest.defaultTestLoader.discover('tests', top_level_dir='.')
result = unittest.TextTestRunner(verbosity=2).run(suite)
sys.exit(0 if result.wasSuccessful() else 1)
";

/// A project holding the owner's calc module, failing suite and runner, whose one agent runs
/// `script` and is judged by `validators` (YAML list items), with `validation` more keys of
/// the validation block and `spec` more of the agent's spec.
pub(crate) fn project(script: &str, validators: &str, validation: &str, spec: &str) -> Repo {
    project_limited(script, validators, validation, spec, 1)
}

/// [`project`] with an agent given `iterations` iterations.
pub(crate) fn project_limited(
    script: &str,
    validators: &str,
    validation: &str,
    spec: &str,
    iterations: u32,
) -> Repo {
    let agent_spec = format!(
        "  routing: {{default: true}}\n  limits: {{max_iterations: {iterations}, max_attempts: 1}}\n{spec}  validation:\n    validators:\n{validators}{validation}"
    );
    let repo = Repo::with_agents(&[("coder", &agent("coder", script, &agent_spec))]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), FAST_CONFIG).unwrap();
    std::fs::create_dir_all(repo.path().join("tests")).unwrap();
    for (path, text) in [
        ("calc.py", CALC),
        ("tests/__init__.py", ""),
        ("tests/test_calc.py", TEST_CALC),
        ("run_tests.py", RUN_TESTS),
        (".gitignore", "__pycache__/\nnode_modules/\n"),
    ] {
        std::fs::write(repo.path().join(path), text).unwrap();
        repo.git(&["add", path]);
    }
    repo.git(&["commit", "-q", "-m", "the owner's code and failing suite"]);
    repo
}

/// Adds a task and runs the engine until every task has ended.
pub(crate) fn run_task(repo: &Repo, title: &str) -> String {
    repo.ok(&["task", "add", title]);
    let out = repo.run(&["run"]);
    stdout(&out) + &stderr(&out)
}

/// One shell line that writes `path` with `content`, each line a single-quoted word.
pub(crate) fn write(path: &str, content: &str) -> String {
    let words: Vec<String> = content
        .lines()
        .map(|l| format!("'{}'", l.replace('\'', r"'\''")))
        .collect();
    format!(
        "mkdir -p $(dirname {path}); printf '%s\\n' {} > {path}; ",
        words.join(" ")
    )
}

/// Whether pytest is installed for a python3 outside the home directories (which the sandbox
/// hides).
pub(crate) fn pytest_installed() -> bool {
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
            "skipped: pytest is not installed; install it with `apt-get install -y python3-pytest`"
        );
    }
    probe.status.success()
}

/// Runs the attack and checks that the task failed with `reason` in `task show`, and that no
/// validator ran (`refused`) or that they ran and failed.
pub(crate) fn assert_refused(repo: &Repo, output: &str, reason: &str) {
    assert_eq!(repo.task_state(1), "failed", "{output}");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(show.contains(reason), "task show lacks `{reason}`:\n{show}");
    assert!(show.contains("judged files failed"), "{show}");
}

/// Checks that the task failed because agentgrid's guard in the validator's interpreter found
/// `reason`: the validators ran (no file was refused) and the guard's finding is the reason.
pub(crate) fn assert_guarded(repo: &Repo, output: &str, reason: &str) {
    assert_eq!(repo.task_state(1), "failed", "{output}");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(show.contains(reason), "task show lacks `{reason}`:\n{show}");
    assert!(!show.contains("judged files failed"), "{show}");
}

#[test]
fn a_planted_unittest_module_is_refused() {
    // Without the check, `-m unittest` would import this from the top of the tree and report
    // success on stderr, where the rule reads unittest's summary.
    let fake = "import sys\nsys.stderr.write('Ran 2 tests in 0.001s\\n\\nOK\\n')\nsys.exit(0)\n";
    let script = write("unittest.py", fake);
    let repo = project(
        &script,
        "      - name: tests\n        run: \"python3 -m unittest -v\"\n        score: unittest\n",
        "",
        "",
    );
    let output = run_task(&repo, "Fix add");
    assert_refused(
        &repo,
        &output,
        "unittest.py may not be added (unittest.py shadows the standard library's `unittest`",
    );
}

#[test]
fn a_new_conftest_that_forces_passes_is_refused() {
    if !pytest_installed() {
        return;
    }
    let conftest = "import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    outcome.get_result().outcome = 'passed'
";
    let script = write("tests/conftest.py", conftest);
    let repo = project(
        &script,
        "      - name: pytest\n        run: \"python3 -m pytest -q tests\"\n        score: pytest\n",
        "",
        "",
    );
    let output = run_task(&repo, "Fix add");
    assert_refused(
        &repo,
        &output,
        "tests/conftest.py may not be added (a new conftest.py runs inside pytest",
    );
}

#[test]
fn a_sitecustomize_is_refused() {
    let script = write("sitecustomize.py", "import os\nos._exit(0)\n");
    let repo = project(
        &script,
        "      - name: tests\n        run: \"PYTHONPATH=. python3 -m unittest -v\"\n",
        "",
        "",
    );
    let output = run_task(&repo, "Fix add");
    assert_refused(
        &repo,
        &output,
        "sitecustomize.py may not be added (sitecustomize.py runs at every Python start-up)",
    );
}

#[test]
fn a_rewritten_runner_is_refused() {
    let script = write("run_tests.py", "print('all tests passed')\n");
    let repo = project(
        &script,
        "      - name: tests\n        run: \"python3 run_tests.py 2>&1\"\n",
        "",
        "",
    );
    let output = run_task(&repo, "Fix add");
    assert_refused(
        &repo,
        &output,
        "run_tests.py is protected (a validator runs it) and was changed: restore it; the validators judge with the base commit's version",
    );
}

#[test]
fn a_pytest_ini_that_deselects_the_failing_test_is_refused() {
    if !pytest_installed() {
        return;
    }
    let script = write(
        "pytest.ini",
        "[pytest]\naddopts = --deselect tests/test_calc.py::CalcTest::test_add\n",
    );
    let repo = project(
        &script,
        "      - name: pytest\n        run: \"python3 -m pytest -q tests\"\n        score: pytest\n",
        "",
        "",
    );
    let output = run_task(&repo, "Fix add");
    assert_refused(
        &repo,
        &output,
        "pytest.ini may not be added (new test-runner configuration can change what the tests run)",
    );
}

#[test]
fn an_edited_existing_test_is_refused_and_the_agent_is_told() {
    let edited = TEST_CALC.replace("add(2, 2), 4", "add(2, 2), 0");
    let script = write("tests/test_calc.py", &edited);
    let repo = project(
        &script,
        "      - name: tests\n        run: \"python3 -m unittest -v\"\n        score: unittest\n",
        "",
        "",
    );
    let output = run_task(&repo, "Fix add");
    assert_refused(
        &repo,
        &output,
        "tests/test_calc.py is protected (existing tests) and was changed: restore it",
    );
    let status = repo.ok(&["status"]);
    assert!(
        status.contains("tests/test_calc.py is protected"),
        "{status}"
    );
}

/// The owner's "jest": runs the owner's suite. Installed, untracked, in the main checkout.
const OWNER_JEST: &str = "#!/bin/sh\nexec python3 -m unittest -v\n";

fn install_owner_jest(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let bin = root.join("node_modules/.bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("jest"), OWNER_JEST).unwrap();
    std::fs::set_permissions(bin.join("jest"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_untracked_fake_jest_is_never_run_and_the_owners_shared_one_is() {
    // Task 1 plants its own jest, ignored by git, where the validator looks; task 2 fixes the
    // code. The validator runs the owner's jest, shared from the main checkout, for both.
    let script = format!(
        "case \"$AGENTGRID_TASK_ID\" in 1) {}chmod +x node_modules/.bin/jest;; *) {};; esac",
        write(
            "node_modules/.bin/jest",
            "#!/bin/sh\necho 'Tests: 2 passed, 2 total'\nexit 0\n"
        ),
        write("calc.py", "def add(a, b):\n    return a + b\n"),
    );
    let repo = project(
        &script,
        "      - name: jest\n        run: \"node_modules/.bin/jest\"\n",
        "    share: [node_modules]\n",
        "",
    );
    install_owner_jest(repo.path());
    repo.ok(&["task", "add", "Fix add (task 1)"]);
    let output = run_task(&repo, "Fix add (task 2)");
    assert_eq!(repo.task_state(1), "failed", "{output}");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(
        show.contains("jest failed") && show.contains("FAILED (failures=1)"),
        "the owner's jest ran the owner's suite:\n{show}"
    );
    assert_eq!(repo.task_state(2), "done", "{output}");
}

#[test]
fn a_fix_with_a_new_test_is_done_and_what_validators_write_never_reaches_the_branch() {
    // The validator passes, then writes a byproduct and rewrites a tracked file in the tree it
    // judged; with the sandbox and without it.
    for sandbox in ["", "  sandbox: {enabled: false}\n"] {
        let new_test = "import unittest

from calc import add


class MoreTest(unittest.TestCase):
    def test_negative(self):
        self.assertEqual(add(-1, -2), -3)
";
        let script = write("calc.py", "def add(a, b):\n    return a + b\n")
            + &write("tests/test_more.py", new_test);
        let repo = project(
            &script,
            "      - name: tests\n        run: \"python3 run_tests.py && echo junk > byproduct.txt && echo 'def add(a, b): return 0' > calc.py && mkdir -p .cache && touch .cache/x\"\n",
            "",
            sandbox,
        );
        let output = run_task(&repo, "Fix add and test it");
        assert_eq!(repo.task_state(1), "done", "sandbox [{sandbox}]: {output}");
        let files = repo.git(&["ls-tree", "-r", "--name-only", "agentgrid/task-1"]);
        assert!(files.contains("tests/test_more.py"), "{files}");
        assert!(
            !files.contains("byproduct.txt") && !files.contains(".cache"),
            "{files}"
        );
        let calc = repo.git(&["show", "agentgrid/task-1:calc.py"]);
        assert_eq!(calc, "def add(a, b):\n    return a + b\n");
        let log = repo.git(&["log", "--format=%s", "main..agentgrid/task-1"]);
        assert_eq!(log.lines().count(), 1, "only the agent's commit: {log}");
        let status = repo.git(&["status", "--porcelain", "--untracked-files=all"]);
        assert!(
            !status.contains("judges"),
            "the judge trees stay out of the owner's checkout: {status}"
        );
        assert!(
            !repo.path().join(".agentgrid/judges/task-1").exists(),
            "the judge tree goes with the done task's worktree"
        );
    }
}

#[test]
fn a_committed_link_cannot_lead_a_share_out_of_the_judge_tree() {
    // The agent commits `deps` as a link to a directory elsewhere; sharing `deps/venv` must
    // neither remove nor replace what lies there.
    let victim = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(victim.path().join("venv")).unwrap();
    std::fs::write(victim.path().join("venv/keep.txt"), "keep").unwrap();
    let script = format!(
        "ln -s {} deps; {}",
        victim.path().display(),
        write("calc.py", "def add(a, b):\n    return a + b\n")
    );
    let repo = project(
        &script,
        "      - name: deps\n        run: \"test -f deps/venv/owner.txt && python3 run_tests.py\"\n",
        "    share: [deps/venv]\n",
        "",
    );
    std::fs::write(repo.path().join(".gitignore"), "__pycache__/\ndeps/\n").unwrap();
    repo.git(&["commit", "-q", "-am", "ignore the installed dependencies"]);
    std::fs::create_dir_all(repo.path().join("deps/venv")).unwrap();
    std::fs::write(repo.path().join("deps/venv/owner.txt"), "owner").unwrap();
    let output = run_task(&repo, "Fix add");
    assert_eq!(repo.task_state(1), "done", "{output}");
    assert!(
        victim.path().join("venv/keep.txt").is_file()
            && std::fs::symlink_metadata(victim.path().join("venv"))
                .unwrap()
                .is_dir(),
        "the linked directory is untouched"
    );
}

#[test]
fn an_engine_killed_while_validators_run_commits_nothing_of_theirs() {
    // The first execution's validator writes a byproduct and then waits to be killed with the
    // engine; the recovered task runs again and passes.
    let script = write("calc.py", "def add(a, b):\n    return a + b\n");
    let repo = project(
        &script,
        "      - name: tests\n        run: \"echo junk > byproduct.txt; if [ $AGENTGRID_EXECUTION_ID = 1 ]; then sleep 60; fi; python3 run_tests.py\"\n",
        "",
        "",
    );
    repo.ok(&["task", "add", "Fix add"]);
    let mut engine = repo
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let byproduct = repo
        .path()
        .join(".agentgrid/judges/task-1/tree/byproduct.txt");
    wait_for(
        std::time::Duration::from_secs(60),
        "the validator to write its byproduct",
        || byproduct.exists(),
    );
    engine.kill().unwrap();
    engine.wait().unwrap();

    let out = repo.ok(&["run"]);
    assert!(out.contains("recovered after a crash"), "{out}");
    assert_eq!(repo.task_state(1), "done", "{out}");
    let files = repo.git(&["ls-tree", "-r", "--name-only", "agentgrid/task-1"]);
    assert!(!files.contains("byproduct.txt"), "{files}");
    let log = repo.git(&["log", "--format=%s", "main..agentgrid/task-1"]);
    assert_eq!(log.lines().count(), 1, "only the agent's commit: {log}");
}
