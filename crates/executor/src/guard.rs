//! The guard in a Python validator's interpreter: a module of agentgrid's, loaded from outside
//! the judged tree, that reports what the test runner really counted and what the code under
//! test did to the runner.
//!
//! The code under test runs inside the runner's process, so neither the runner's exit status
//! nor its printed summary is evidence on its own: a module the tests import can replace
//! `unittest.TestCase.assertEqual`, name a pytest plugin that deselects the failing test, or
//! print a passing summary and leave with `os._exit(0)` before the runner reports. Per task,
//! beside the judge tree (under the state directory, which no agent sees):
//! - `guard/`: `agentgrid_guard.py` (the text of `guard/agentgrid_guard.py` in this crate), its
//!   configuration (the tree, the paths changed since the base commit, the report directory)
//!   and the two start-up hooks that load it by absolute path, a `sitecustomize.py` on
//!   `PYTHONPATH` and a `usercustomize.py` in the user site of `PYTHONUSERBASE` (so that a
//!   command that sets its own `PYTHONPATH` still loads it). Shown read-only to validators.
//! - `guard-report/`: one JSON file per interpreter, emptied before each validator runs and
//!   read after it; besides the tree (and the sandbox's private temporary directories), the
//!   only place the validators may write.
//!
//! [`problem`] turns the reports into a reason to fail: a replaced runner function, a plugin
//! from a file the agent added or changed, a test run that never reached Python's normal
//! shutdown, failures the runner counted whatever it printed, more passes in the summary than
//! the runner counted, and no report at all from a validator that runs Python.

use std::path::{Path, PathBuf};

use domain::event::TestCounts;
use serde_json::Value;

/// The guard's module name; a planted module of that name is refused (`protect.rs`).
pub const MODULE: &str = "agentgrid_guard";

const GUARD_PY: &str = include_str!("guard/agentgrid_guard.py");

/// The Python versions whose user site gets the start-up hook (`lib/pythonX.Y/site-packages`).
const PYTHON_MINORS: std::ops::RangeInclusive<u32> = 6..=16;

/// How many reports, and how large each, are read: the code under test can write there too.
const MAX_REPORTS: usize = 256;
const MAX_REPORT_BYTES: u64 = 64 * 1024;

/// One task's guard, written out and ready to be shown to its validators.
#[derive(Debug, Clone)]
pub struct Guard {
    dir: PathBuf,
    report_dir: PathBuf,
}

impl Guard {
    /// Writes the guard into `judge_dir` for validators that run in `tree`, told which paths
    /// the agent `changed` (added, modified or retyped since the base commit).
    pub fn prepare(judge_dir: &Path, tree: &Path, changed: &[String]) -> std::io::Result<Guard> {
        let dir = judge_dir.join("guard");
        let report_dir = judge_dir.join("guard-report");
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(&report_dir)?;
        let module = dir.join(format!("{MODULE}.py"));
        std::fs::write(&module, GUARD_PY)?;
        let config = serde_json::json!({
            "tree": tree.display().to_string(),
            "changed": changed,
            "report_dir": report_dir.display().to_string(),
        });
        std::fs::write(dir.join(format!("{MODULE}.json")), config.to_string())?;
        let hook = loader(&module);
        let path_dir = dir.join("path");
        std::fs::create_dir_all(&path_dir)?;
        std::fs::write(path_dir.join("sitecustomize.py"), &hook)?;
        for minor in PYTHON_MINORS {
            let site = dir.join(format!("user/lib/python3.{minor}/site-packages"));
            std::fs::create_dir_all(&site)?;
            std::fs::write(site.join("usercustomize.py"), &hook)?;
        }
        Ok(Guard { dir, report_dir })
    }

    /// What the validators' sandbox shows read-only.
    pub fn shown(&self) -> PathBuf {
        self.dir.clone()
    }

    /// What the validators' sandbox lets them write besides the tree.
    pub fn writable(&self) -> PathBuf {
        self.report_dir.clone()
    }

    /// Makes every Python interpreter the validator starts load the guard: through
    /// `PYTHONPATH` (a virtualenv has no user site) and through the user site (a command may
    /// set its own `PYTHONPATH`). The user site is the guard's, never a home directory's.
    pub fn set_env(&self, env: &mut Vec<(String, String)>) {
        env.retain(|(k, _)| k != "PYTHONNOUSERSITE");
        launch::set_var(
            env,
            "PYTHONPATH".into(),
            self.dir.join("path").display().to_string(),
        );
        launch::set_var(
            env,
            "PYTHONUSERBASE".into(),
            self.dir.join("user").display().to_string(),
        );
    }

    /// Empties the report directory, so that what is read after a run is that run's.
    pub fn clear(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.report_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if std::fs::remove_file(&path).is_err() {
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
        let _ = std::fs::create_dir_all(&self.report_dir);
    }

    /// The reports the interpreters of the last run left: regular files only, bounded.
    pub fn reports(&self) -> Vec<Value> {
        use std::io::Read;
        let Ok(entries) = std::fs::read_dir(&self.report_dir) else {
            return Vec::new();
        };
        let mut reports = Vec::new();
        for entry in entries.flatten().take(MAX_REPORTS) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let mut text = String::new();
            let read = std::fs::File::open(entry.path())
                .and_then(|f| f.take(MAX_REPORT_BYTES).read_to_string(&mut text));
            if read.is_ok()
                && let Ok(value) = serde_json::from_str::<Value>(&text)
            {
                reports.push(value);
            }
        }
        reports
    }
}

/// The start-up hook: loads the guard by its path, whatever `sys.path` holds.
fn loader(module: &Path) -> String {
    let path = serde_json::to_string(&module.display().to_string()).unwrap_or_default();
    format!(
        "\"\"\"Loads agentgrid's guard for test runners (written by the engine).\"\"\"\n\
         import sys\n\
         if \"{MODULE}\" not in sys.modules:\n    \
             import importlib.util\n    \
             _spec = importlib.util.spec_from_file_location(\"{MODULE}\", {path})\n    \
             _module = importlib.util.module_from_spec(_spec)\n    \
             sys.modules[\"{MODULE}\"] = _module\n    \
             _spec.loader.exec_module(_module)\n    \
             _module.install()\n"
    )
}

/// Why the guard's reports fail the validator, if they do. `required`: the validator's
/// command starts Python itself, so no report at all means the guard's was removed or never
/// loaded. `summary`: the counts the validator's rule read from the output.
pub fn problem(reports: &[Value], required: bool, summary: Option<&TestCounts>) -> Option<String> {
    let num = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0);
    let flag = |v: &Value, key: &str| v.get(key).and_then(Value::as_bool).unwrap_or(false);
    let command = |r: &Value| {
        let words: Vec<&str> = r
            .get("argv")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut text = words.join(" ");
        if text.len() > 120 {
            let mut end = 120;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        format!("`{text}`")
    };
    if reports.is_empty() {
        return required.then(|| {
            "agentgrid's guard saw no Python interpreter start: its report is missing (deleted, \
             or the command runs Python with -I, -S or -s, which skip the guard's start-up hook)"
                .to_string()
        });
    }
    // A foreign plugin first: what it does to the runner is its doing.
    for r in reports {
        if let Some(file) = r
            .get("plugins")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        {
            return Some(format!(
                "in {}, pytest loaded {file} as a plugin, and it was added or changed since the \
                 base commit: plugins reach the whole session, so they must be the owner's",
                command(r)
            ));
        }
    }
    for r in reports {
        if let Some(what) = r
            .get("tampered")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        {
            return Some(format!(
                "in {}, {what}: the code under test may not change the test runner",
                command(r)
            ));
        }
    }
    for r in reports {
        if flag(r, "testing") && !flag(r, "ended") {
            return Some(format!(
                "{} started its tests and then left without Python's normal shutdown (os._exit, \
                 exec or a signal) before its runner reported: its exit status and summary are \
                 no evidence",
                command(r)
            ));
        }
        if let Some(p) = r.get("pytest").filter(|p| p.is_object())
            && flag(p, "started")
            && !flag(p, "finished")
        {
            return Some(format!(
                "pytest's session in {} ended without agentgrid's guard seeing its end (the \
                 guard's plugin was removed)",
                command(r)
            ));
        }
    }
    let mut counted_passed = 0;
    let mut counted_any = false;
    for r in reports.iter().filter(|r| flag(r, "testing")) {
        let unittest = r.get("unittest").cloned().unwrap_or(Value::Null);
        let pytest = r.get("pytest").cloned().unwrap_or(Value::Null);
        let failed = num(&unittest, "failures") + num(&pytest, "failed");
        let errors = num(&unittest, "errors") + num(&pytest, "errors");
        let unexpected = num(&unittest, "unexpected");
        if failed + errors + unexpected > 0 {
            return Some(format!(
                "the runner in {} counted {failed} failed, {errors} errors and {unexpected} \
                 unexpected successes, whatever the output says",
                command(r)
            ));
        }
        let passed = num(&unittest, "passed") + num(&pytest, "passed");
        let ran =
            num(&unittest, "tests") + passed + num(&pytest, "skipped") + num(&unittest, "skipped");
        counted_any |= ran > 0;
        counted_passed = counted_passed.max(passed);
    }
    let testing: Vec<&Value> = reports.iter().filter(|r| flag(r, "testing")).collect();
    if !testing.is_empty() && !counted_any {
        return Some(format!(
            "{} started its tests, but its runner counted none",
            command(testing[0])
        ));
    }
    if let Some(summary) = summary
        && !testing.is_empty()
        && summary.passed > counted_passed
    {
        return Some(format!(
            "the summary says {} passed, but the runner counted {counted_passed}",
            summary.passed
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unittest(tests: u64, passed: u64, failures: u64) -> Value {
        json!({"argv": ["python3", "-m", "unittest"], "testing": true, "ended": true,
               "tampered": [], "plugins": [],
               "unittest": {"tests": tests, "passed": passed, "failures": failures, "errors": 0,
                            "unexpected": 0, "skipped": 0},
               "pytest": null})
    }

    fn check(reports: &[Value], required: bool, passed: Option<u64>, expect: Option<&str>) {
        let summary = passed.map(|passed| TestCounts {
            passed,
            ..Default::default()
        });
        let found = problem(reports, required, summary.as_ref());
        match (expect, found.as_deref()) {
            (None, None) => {}
            (Some(want), Some(got)) if got.contains(want) => {}
            _ => panic!("expected {expect:?}, found {found:?}"),
        }
    }

    #[test]
    fn an_honest_passing_run_has_no_problem() {
        check(&[unittest(2, 2, 0)], true, Some(2), None);
        // A Python process that ran no tests (a linter) needs nothing more than its report.
        let lint = json!({"argv": ["python3", "lint.py"], "testing": false, "ended": true});
        check(&[lint], true, None, None);
    }

    #[test]
    fn a_missing_report_fails_only_a_validator_that_runs_python() {
        check(&[], true, None, Some("report is missing"));
        check(&[], false, None, None);
    }

    #[test]
    fn what_the_runner_counted_outweighs_what_it_printed() {
        check(
            &[unittest(2, 1, 1)],
            true,
            Some(2),
            Some("counted 1 failed"),
        );
        check(&[unittest(0, 0, 0)], true, Some(2), Some("counted none"));
        check(
            &[unittest(1, 1, 0)],
            true,
            Some(2),
            Some("the summary says 2 passed, but the runner counted 1"),
        );
    }

    #[test]
    fn tampering_plugins_and_an_early_exit_fail() {
        let mut r = unittest(2, 2, 0);
        r["tampered"] =
            json!(["unittest.case.TestCase.assertEqual was replaced while the tests ran"]);
        check(
            &[r],
            true,
            Some(2),
            Some("TestCase.assertEqual was replaced"),
        );
        let mut r = unittest(2, 2, 0);
        r["plugins"] = json!(["tests/helper_plugin.py"]);
        check(
            &[r],
            true,
            Some(2),
            Some("pytest loaded tests/helper_plugin.py"),
        );
        let mut r = unittest(0, 0, 0);
        r["ended"] = json!(false);
        check(&[r], true, Some(2), Some("os._exit"));
        let r = json!({"argv": ["pytest"], "testing": true, "ended": true,
                       "pytest": {"started": true, "finished": false, "passed": 2}});
        check(&[r], true, Some(2), Some("guard's plugin was removed"));
    }
}
