//! Readers of test runners' final summaries and of JUnit XML reports.
//!
//! Each reader finds the summary the runner itself prints last, on the stream it prints it to,
//! and takes the counts from that summary alone. A count printed anywhere else (a test's own
//! output, an `atexit` hook, a line shaped almost like a summary) is not evidence. What "final
//! summary" means differs per runner:
//!
//! | runner | stream | the summary |
//! | --- | --- | --- |
//! | pytest | stdout | the last line `[=…] N passed, M failed, K errors, … in 1.23s [=…]` (or `no tests ran in …`) |
//! | unittest | stderr | the last `Ran N tests in 0.1s`, with the `OK …` / `FAILED (…)` / `NO TESTS RAN` line after it |
//! | cargo test | stdout | every `test result: …` line, one per test binary, summed |
//! | nextest | stderr | the last `Summary [ … ] N tests run: …` line |
//! | go test | stdout | every package line (`ok`, `FAIL`, `?`), and with `-v` every top-level `--- PASS/FAIL/SKIP` |
//! | jest | stderr | the last `Test Suites:` line and the `Tests:` line after it |
//! | vitest | stdout | the last `Test Files` line, the `Tests` line after it, and any `Errors` line |
//! | mocha | stdout | the last `N passing (…)` line and the `pending` / `failing` lines after it |
//!
//! When a runner's own stream holds no summary the other stream is read (a `2>&1` in the
//! command, or a runner told to print elsewhere). No summary at all is a failure whose reason
//! says so, never zero counts that look like a result. A run that ran no tests fails too.

use domain::event::TestCounts;
use regex::Regex;

/// What a summary says: the counts, and why the run failed even where no test did (nothing
/// ran, a test file could not be loaded).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub counts: TestCounts,
    pub problem: Option<String>,
}

impl Summary {
    fn from_counts(runner: &str, counts: TestCounts) -> Summary {
        let problem = if counts.failed + counts.errors > 0 {
            let mut parts = Vec::new();
            if counts.failed > 0 {
                parts.push(plural(counts.failed, "failure", "failures"));
            }
            if counts.errors > 0 {
                parts.push(plural(counts.errors, "error", "errors"));
            }
            Some(format!("{runner} reported {}", parts.join(" and ")))
        } else if counts.passed == 0 {
            Some(format!("{runner} ran no tests"))
        } else {
            None
        };
        Summary { counts, problem }
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The runners whose summaries are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    Pytest,
    Unittest,
    CargoTest,
    Nextest,
    GoTest,
    Jest,
    Vitest,
    Mocha,
}

impl Runner {
    pub fn name(self) -> &'static str {
        match self {
            Runner::Pytest => "pytest",
            Runner::Unittest => "unittest",
            Runner::CargoTest => "cargo test",
            Runner::Nextest => "nextest",
            Runner::GoTest => "go test",
            Runner::Jest => "jest",
            Runner::Vitest => "vitest",
            Runner::Mocha => "mocha",
        }
    }

    /// Whether the runner prints its summary on standard error rather than standard output.
    fn on_stderr(self) -> bool {
        matches!(self, Runner::Unittest | Runner::Nextest | Runner::Jest)
    }

    /// Reads the runner's final summary; `Err` says why none was found.
    pub fn read(self, stdout: &str, stderr: &str) -> Result<Summary, String> {
        let (first, second) = if self.on_stderr() {
            (stderr, stdout)
        } else {
            (stdout, stderr)
        };
        let parse = |text: &str| {
            let clean = strip_ansi(text);
            match self {
                Runner::Pytest => pytest(&clean),
                Runner::Unittest => unittest(&clean),
                Runner::CargoTest => cargo_test(&clean),
                Runner::Nextest => nextest(&clean),
                Runner::GoTest => go_test(&clean),
                Runner::Jest => jest(&clean),
                Runner::Vitest => vitest(&clean),
                Runner::Mocha => mocha(&clean),
            }
        };
        parse(first)
            .or_else(|| parse(second))
            .ok_or_else(|| format!("no {} summary found in the output", self.name()))
    }
}

/// Terminal colour and cursor sequences, which some runners print even into pipes.
fn strip_ansi(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_string();
    }
    let re = Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").expect("a valid pattern");
    re.replace_all(text, "").into_owned()
}

/// `N word` pairs in a piece of a summary line, such as `3 passed, 1 error`.
fn pairs(text: &str) -> Vec<(u64, String)> {
    let re = Regex::new(r"(\d+) ([a-z][a-z ]*?)(?:[,;|()]|$)").expect("a valid pattern");
    re.captures_iter(text)
        .filter_map(|c| Some((c[1].parse().ok()?, c[2].trim().to_string())))
        .collect()
}

fn pytest(text: &str) -> Option<Summary> {
    // The closing line of a session, decorated with `=` in the default mode and bare with `-q`;
    // it always ends with the session's duration, which a stray `1 passed` print does not.
    let re = Regex::new(
        r"^=*\s*((?:\d+ [a-z]+(?:, )?)+|no tests ran) in \d+(?:\.\d+)?s(?: \([0-9:]+\))?\s*=*\s*$",
    )
    .expect("a valid pattern");
    let line = text.lines().rev().find_map(|l| re.captures(l.trim()))?;
    let body = &line[1];
    let mut counts = TestCounts::default();
    if body == "no tests ran" {
        return Some(Summary::from_counts("pytest", counts));
    }
    for (n, word) in pairs(body) {
        match word.as_str() {
            "passed" | "xpassed" => counts.passed += n,
            // A strict xpass is counted among the failures by pytest itself.
            "failed" => counts.failed += n,
            "error" | "errors" => counts.errors += n,
            "skipped" | "xfailed" | "deselected" => counts.skipped += n,
            _ => {}
        }
    }
    Some(Summary::from_counts("pytest", counts))
}

fn unittest(text: &str) -> Option<Summary> {
    let ran = Regex::new(r"^Ran (\d+) tests? in \d+(?:\.\d+)?s$").expect("a valid pattern");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let (at, total) = lines
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, l)| Some((i, ran.captures(l)?[1].parse::<u64>().ok()?)))?;
    // The verdict line follows after one blank line.
    let verdict = lines[at + 1..].iter().find(|l| !l.is_empty())?;
    let mut counts = TestCounts::default();
    let mut not_passed = 0;
    let details = if let Some(rest) = verdict.strip_prefix("FAILED") {
        rest
    } else if let Some(rest) = verdict.strip_prefix("OK") {
        rest
    } else if verdict.starts_with("NO TESTS RAN") {
        return Some(Summary::from_counts("unittest", counts));
    } else {
        return None;
    };
    let re = Regex::new(r"([a-z ]+)=(\d+)").expect("a valid pattern");
    for c in re.captures_iter(details) {
        let n: u64 = c[2].parse().unwrap_or(0);
        match c[1].trim() {
            "failures" => counts.failed += n,
            "errors" => counts.errors += n,
            // An unexpected success fails the run, as unittest's own exit status says.
            "unexpected successes" => counts.failed += n,
            "skipped" | "expected failures" => counts.skipped += n,
            _ => {}
        }
        not_passed += n;
    }
    counts.passed = total.saturating_sub(not_passed);
    Some(Summary::from_counts("unittest", counts))
}

fn cargo_test(text: &str) -> Option<Summary> {
    let re = Regex::new(r"^test result: (ok|FAILED)\. (.*)$").expect("a valid pattern");
    let mut counts = TestCounts::default();
    let mut found = false;
    let mut failed_binary = false;
    for c in text.lines().filter_map(|l| re.captures(l.trim_end())) {
        found = true;
        failed_binary |= &c[1] == "FAILED";
        for (n, word) in pairs(&c[2]) {
            match word.as_str() {
                "passed" => counts.passed += n,
                "failed" => counts.failed += n,
                "ignored" => counts.skipped += n,
                _ => {}
            }
        }
    }
    if !found {
        return None;
    }
    let mut summary = Summary::from_counts("cargo test", counts);
    if failed_binary && summary.problem.is_none() {
        summary.problem = Some("cargo test reported a failed test binary".into());
    }
    Some(summary)
}

fn nextest(text: &str) -> Option<Summary> {
    let re = Regex::new(r"^Summary \[[^\]]*\] +(\d+) tests? run: (.*)$").expect("a valid pattern");
    let c = text.lines().rev().find_map(|l| re.captures(l.trim()))?;
    // Notes in parentheses (`5 passed (1 slow)`) qualify a count; they are not counts.
    let detail = Regex::new(r"\([^)]*\)")
        .expect("a valid pattern")
        .replace_all(&c[2], "");
    let mut counts = TestCounts::default();
    for (n, word) in pairs(&detail) {
        match word.as_str() {
            "passed" => counts.passed += n,
            "skipped" => counts.skipped += n,
            "failed" => counts.failed += n,
            // Timed out, exec failed, leaky with an error: anything else that is counted broke.
            _ => counts.errors += n,
        }
    }
    Some(Summary::from_counts("nextest", counts))
}

fn go_test(text: &str) -> Option<Summary> {
    // Go separates the fields of a package line with tabs, which a test's own print rarely does.
    let package = Regex::new(r"^(ok|FAIL|\?) *\t\S+").expect("a valid pattern");
    let verbose = Regex::new(r"^--- (PASS|FAIL|SKIP): ").expect("a valid pattern");
    let mut packages = TestCounts::default();
    let mut tests = TestCounts::default();
    let mut found = false;
    for line in text.lines() {
        if let Some(c) = verbose.captures(line) {
            match &c[1] {
                "PASS" => tests.passed += 1,
                "FAIL" => tests.failed += 1,
                _ => tests.skipped += 1,
            }
        } else if let Some(c) = package.captures(line) {
            found = true;
            match &c[1] {
                "ok" if line.contains("[no tests to run]") => packages.skipped += 1,
                "ok" => packages.passed += 1,
                "FAIL" => packages.failed += 1,
                _ => packages.skipped += 1,
            }
        }
    }
    if !found {
        return None;
    }
    // With `-v` the counts are tests; without it they are packages, the finest unit go prints.
    let mut counts = if tests.passed + tests.failed > 0 {
        tests
    } else {
        packages
    };
    // A package that failed to build or panicked has no `--- FAIL` line of its own.
    if packages.failed > 0 && counts.failed == 0 {
        counts.errors += packages.failed;
    }
    Some(Summary::from_counts("go test", counts))
}

fn jest(text: &str) -> Option<Summary> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let at = lines.iter().rposition(|l| l.starts_with("Test Suites:"))?;
    let suites = pairs(&lines[at]["Test Suites:".len()..]);
    let mut counts = TestCounts::default();
    if let Some(tests) = lines[at + 1..]
        .iter()
        .take(3)
        .find_map(|l| l.strip_prefix("Tests:"))
    {
        for (n, word) in pairs(tests) {
            match word.as_str() {
                "passed" => counts.passed += n,
                "failed" => counts.failed += n,
                "skipped" | "todo" => counts.skipped += n,
                _ => {}
            }
        }
    }
    // A suite that could not even load runs no test, so only the suite count shows it.
    let failed_suites: u64 = suites
        .iter()
        .filter(|(_, w)| w == "failed")
        .map(|(n, _)| n)
        .sum();
    if failed_suites > 0 && counts.failed == 0 {
        counts.errors += failed_suites;
    }
    Some(Summary::from_counts("jest", counts))
}

fn vitest(text: &str) -> Option<Summary> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let at = lines.iter().rposition(|l| l.starts_with("Test Files "))?;
    let files = pairs(&lines[at]["Test Files ".len()..]);
    let mut counts = TestCounts::default();
    for line in lines[at + 1..].iter().take(6) {
        if let Some(tests) = line.strip_prefix("Tests ") {
            for (n, word) in pairs(tests) {
                match word.as_str() {
                    "passed" => counts.passed += n,
                    "failed" => counts.failed += n,
                    "skipped" | "todo" => counts.skipped += n,
                    _ => {}
                }
            }
        } else if let Some(errors) = line.strip_prefix("Errors ") {
            // Unhandled errors fail a vitest run even when every test passed.
            counts.errors += pairs(errors)
                .iter()
                .filter(|(_, w)| w.starts_with("error"))
                .map(|(n, _)| n)
                .sum::<u64>();
        }
    }
    let failed_files: u64 = files
        .iter()
        .filter(|(_, w)| w == "failed")
        .map(|(n, _)| n)
        .sum();
    if failed_files > 0 && counts.failed == 0 {
        counts.errors += failed_files;
    }
    Some(Summary::from_counts("vitest", counts))
}

fn mocha(text: &str) -> Option<Summary> {
    let passing = Regex::new(r"^(\d+) passing(?: \([^)]*\))?$").expect("a valid pattern");
    let more = Regex::new(r"^(\d+) (pending|failing)$").expect("a valid pattern");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let (at, passed) = lines
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, l)| Some((i, passing.captures(l)?[1].parse::<u64>().ok()?)))?;
    let mut counts = TestCounts {
        passed,
        ..Default::default()
    };
    for line in lines[at + 1..].iter().take(2) {
        let Some(c) = more.captures(line) else {
            break;
        };
        let n: u64 = c[1].parse().unwrap_or(0);
        if &c[2] == "failing" {
            counts.failed += n;
        } else {
            counts.skipped += n;
        }
    }
    Some(Summary::from_counts("mocha", counts))
}

/// Reads a JUnit XML report: every `<testcase>`, failed when it holds a `<failure>`, an error
/// when it holds an `<error>`, skipped when it holds a `<skipped>`, passed otherwise. The
/// cases themselves are counted, not the totals a `<testsuite>` claims about them.
pub fn junit(xml: &str) -> Result<Summary, String> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| format!("the JUnit report is not valid XML: {e}"))?;
    let root = doc.root_element().tag_name().name();
    if root != "testsuites" && root != "testsuite" {
        return Err(format!(
            "the JUnit report's root element is <{root}>, not <testsuites> or <testsuite>"
        ));
    }
    let mut counts = TestCounts::default();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let has = |tag: &str| case.children().any(|c| c.has_tag_name(tag));
        if has("error") {
            counts.errors += 1;
        } else if has("failure") {
            counts.failed += 1;
        } else if has("skipped") {
            counts.skipped += 1;
        } else {
            counts.passed += 1;
        }
    }
    Ok(Summary::from_counts("the JUnit report", counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(passed: u64, failed: u64, errors: u64, skipped: u64) -> TestCounts {
        TestCounts {
            passed,
            failed,
            errors,
            skipped,
        }
    }

    /// Reads `stdout` (and `stderr`) with `runner` and checks the counts and the problem.
    fn check(runner: Runner, stdout: &str, stderr: &str, want: TestCounts, problem: Option<&str>) {
        let got = runner
            .read(stdout, stderr)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.counts, want, "{stdout}{stderr}");
        assert_eq!(got.problem.as_deref(), problem, "{stdout}{stderr}");
    }

    fn missing(runner: Runner, stdout: &str, stderr: &str) {
        let err = runner.read(stdout, stderr).unwrap_err();
        assert!(
            err.starts_with(&format!("no {} summary found", runner.name())),
            "{err}"
        );
    }

    #[test]
    fn pytest_counts_errors_and_reads_only_the_closing_line() {
        let p = Runner::Pytest;
        check(
            p,
            "....\n===== 280 passed, 39 skipped, 1 error in 12.31s =====\n",
            "",
            counts(280, 0, 1, 39),
            Some("pytest reported 1 error"),
        );
        check(
            p,
            "3 passed, 2 errors in 0.10s\n",
            "",
            counts(3, 0, 2, 0),
            Some("pytest reported 2 errors"),
        );
        check(
            p,
            "== 1 failed, 3 passed, 1 xfailed, 2 warnings in 0.5s (0:00:00) ==",
            "",
            counts(3, 1, 0, 1),
            Some("pytest reported 1 failure"),
        );
        check(
            p,
            "============ 5 passed in 0.02s ============",
            "",
            counts(5, 0, 0, 0),
            None,
        );
        check(
            p,
            "== no tests ran in 0.01s ==",
            "",
            counts(0, 0, 0, 0),
            Some("pytest ran no tests"),
        );
        check(
            p,
            "== 4 deselected in 0.01s ==",
            "",
            counts(0, 0, 0, 4),
            Some("pytest ran no tests"),
        );
        // An atexit hook (or a test) printing a summary after pytest's own is not the summary.
        check(
            p,
            "== 1 failed, 3 passed in 0.2s ==\n1 passed, 0 failed\n5 passed\n",
            "",
            counts(3, 1, 0, 0),
            Some("pytest reported 1 failure"),
        );
        missing(
            p,
            "5 passed, 0 failed\n",
            "ModuleNotFoundError: No module named pytest",
        );
        missing(p, "", "sh: 1: pytest: not found");
    }

    #[test]
    fn unittest_reads_the_ran_line_and_the_verdict_after_it() {
        let u = Runner::Unittest;
        let stderr = "..F.E\n======\nFAIL: test_x\n------\nRan 5 tests in 0.003s\n\nFAILED (failures=1, errors=1)\n";
        check(
            u,
            "",
            stderr,
            counts(3, 1, 1, 0),
            Some("unittest reported 1 failure and 1 error"),
        );
        check(
            u,
            "",
            "Ran 4 tests in 0.001s\n\nOK (skipped=1, expected failures=1)\n",
            counts(2, 0, 0, 2),
            None,
        );
        check(
            u,
            "",
            "Ran 0 tests in 0.000s\n\nOK\n",
            counts(0, 0, 0, 0),
            Some("unittest ran no tests"),
        );
        check(
            u,
            "",
            "Ran 0 tests in 0.000s\n\nNO TESTS RAN\n",
            counts(0, 0, 0, 0),
            Some("unittest ran no tests"),
        );
        check(
            u,
            "",
            "Ran 2 tests in 0.1s\n\nFAILED (unexpected successes=1)\n",
            counts(1, 1, 0, 0),
            Some("unittest reported 1 failure"),
        );
        // A runner pointed at stdout (or `2>&1`) is read there.
        check(
            u,
            "Ran 1 test in 0.0s\n\nOK\n",
            "",
            counts(1, 0, 0, 0),
            None,
        );
        // A forged `OK` on stdout does not outweigh the real verdict on stderr.
        check(
            u,
            "Ran 9 tests in 0.0s\n\nOK\n",
            "Ran 1 test in 0.0s\n\nFAILED (errors=1)\n",
            counts(0, 0, 1, 0),
            Some("unittest reported 1 error"),
        );
        missing(u, "", "Ran 3 tests in 0.1s\n");
        missing(u, "3 passed", "");
    }

    #[test]
    fn cargo_test_sums_every_test_binary() {
        let out = "running 3 tests\ntest a ... ok\n\ntest result: ok. 3 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n\
                   running 2 tests\ntest result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n";
        check(
            Runner::CargoTest,
            out,
            "",
            counts(4, 1, 0, 2),
            Some("cargo test reported 1 failure"),
        );
        check(
            Runner::CargoTest,
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "",
            counts(0, 0, 0, 0),
            Some("cargo test ran no tests"),
        );
        missing(Runner::CargoTest, "", "error[E0425]: cannot find value `x`");
    }

    #[test]
    fn nextest_reads_the_summary_line() {
        check(
            Runner::Nextest,
            "",
            "    Starting 6 tests\n     Summary [   0.012s] 6 tests run: 5 passed (1 slow), 1 failed, 2 skipped\n",
            counts(5, 1, 0, 2),
            Some("nextest reported 1 failure"),
        );
        check(
            Runner::Nextest,
            "",
            "Summary [   1.000s] 3 tests run: 2 passed, 1 timed out, 0 skipped",
            counts(2, 0, 1, 0),
            Some("nextest reported 1 error"),
        );
        check(
            Runner::Nextest,
            "",
            "Summary [   0.100s] 1 test run: 1 passed, 0 skipped",
            counts(1, 0, 0, 0),
            None,
        );
    }

    #[test]
    fn go_test_reads_package_and_verbose_lines() {
        check(
            Runner::GoTest,
            "ok  \texample.com/a\t0.01s\n?   \texample.com/b\t[no test files]\n",
            "",
            counts(1, 0, 0, 1),
            None,
        );
        check(
            Runner::GoTest,
            "=== RUN   TestA\n--- PASS: TestA (0.00s)\n--- FAIL: TestB (0.00s)\n    --- PASS: TestB/sub (0.00s)\nFAIL\nFAIL\texample.com/a\t0.01s\nFAIL\n",
            "",
            counts(1, 1, 0, 0),
            Some("go test reported 1 failure"),
        );
        check(
            Runner::GoTest,
            "FAIL\texample.com/a [build failed]\nok then\n",
            "",
            counts(0, 1, 0, 0),
            Some("go test reported 1 failure"),
        );
        // With -v, a package that failed to build has no test of its own to count.
        check(
            Runner::GoTest,
            "--- PASS: TestA (0.00s)\nok  \texample.com/a\t0.01s\nFAIL\texample.com/b [build failed]\n",
            "",
            counts(1, 0, 1, 0),
            Some("go test reported 1 error"),
        );
        check(
            Runner::GoTest,
            "?   \texample.com/b\t[no test files]\n",
            "",
            counts(0, 0, 0, 1),
            Some("go test ran no tests"),
        );
    }

    #[test]
    fn jest_and_vitest_read_their_summary_blocks() {
        check(
            Runner::Jest,
            "",
            "PASS src/a.test.js\nTest Suites: 1 failed, 2 passed, 3 total\nTests:       1 failed, 1 skipped, 10 passed, 12 total\nSnapshots:   0 total\nTime:        1.2 s\n",
            counts(10, 1, 0, 1),
            Some("jest reported 1 failure"),
        );
        check(
            Runner::Jest,
            "",
            "Test Suites: 1 failed, 1 total\nTests:       0 total\n",
            counts(0, 0, 1, 0),
            Some("jest reported 1 error"),
        );
        check(
            Runner::Vitest,
            " Test Files  2 passed (2)\n      Tests  10 passed | 1 skipped (11)\n   Start at  12:00:00\n   Duration  1.23s\n",
            "",
            counts(10, 0, 0, 1),
            None,
        );
        check(
            Runner::Vitest,
            "\u{1b}[2m Test Files \u{1b}[22m 1 failed | 1 passed (2)\n      Tests  1 failed | 3 passed (4)\n     Errors  1 error\n",
            "",
            counts(3, 1, 1, 0),
            Some("vitest reported 1 failure and 1 error"),
        );
    }

    #[test]
    fn mocha_reads_passing_pending_and_failing() {
        check(
            Runner::Mocha,
            "  a\n    ✓ works\n\n  5 passing (12ms)\n  1 pending\n  2 failing\n\n  1) a fails:\n",
            "",
            counts(5, 2, 0, 1),
            Some("mocha reported 2 failures"),
        );
        check(
            Runner::Mocha,
            "  0 passing (1ms)\n",
            "",
            counts(0, 0, 0, 0),
            Some("mocha ran no tests"),
        );
    }

    #[test]
    fn junit_counts_the_cases_not_the_claimed_totals() {
        let xml = r#"<?xml version="1.0"?>
<testsuites>
  <testsuite name="s" tests="99" failures="0" errors="0">
    <testcase name="a"/>
    <testcase name="b"><failure message="boom"/></testcase>
    <testcase name="c"><error message="broke"/></testcase>
    <testcase name="d"><skipped/></testcase>
    <testcase name="e"><system-out>ok</system-out></testcase>
  </testsuite>
</testsuites>"#;
        let s = junit(xml).unwrap();
        assert_eq!(s.counts, counts(2, 1, 1, 1));
        assert_eq!(
            s.problem.as_deref(),
            Some("the JUnit report reported 1 failure and 1 error")
        );
        assert!(
            junit("<testsuite/>")
                .unwrap()
                .problem
                .unwrap()
                .contains("ran no tests")
        );
        assert!(junit("not xml").unwrap_err().contains("not valid XML"));
        assert!(junit("<html/>").unwrap_err().contains("<html>"));
    }
}
