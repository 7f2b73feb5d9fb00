//! Validators: commands that judge an iteration, each giving a verdict and a score in 0..1.
//!
//! The verdict is honest: a validator fails when it exits non-zero, is killed or times out,
//! when its rule finds no summary to read, and when that summary reports failures or errors or
//! no tests at all — unless its manifest marks it `score_only`, in which case only its score
//! counts. An iteration passes only when every other validator passed and the weighted score
//! meets the threshold. Every run is kept as evidence: the command, its exit, duration, counts,
//! score, the reason it failed and the tail of its output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domain::event::{TestCounts, ValidatorResult};
use regex::Regex;

use crate::Error;
use crate::guard::{self, Guard};
use crate::parsers::{Runner, junit};

/// How a validator's output becomes a score.
#[derive(Debug, Clone)]
pub enum ScoreRule {
    /// 1 when the command exits 0, else 0.
    Exit,
    /// The last line holding `N passed` / `M failed`: N / (N + M + errors).
    PassedFailed,
    /// The last match's `score` group: a fraction (0.8) or a percentage (80 or 80%).
    Regex(Regex),
    /// A test runner's final summary, read by [`Runner::read`].
    Runner(Runner),
    /// A JUnit XML report the command writes, at this path relative to the workspace.
    Junit(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Validator {
    pub name: String,
    pub argv: Vec<String>,
    pub timeout: Duration,
    pub weight: f64,
    pub rule: ScoreRule,
    /// Only the score counts: a failure of this validator does not fail the iteration by itself.
    pub score_only: bool,
}

/// One validator's run on one iteration.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub result: ValidatorResult,
    /// "exited with 1", "timed out and was killed" (as the process ended, without the limit).
    pub status: String,
}

/// The verdicts of all validators, their weighted score and the iteration's outcome.
#[derive(Debug, Clone)]
pub struct Validation {
    pub score: f64,
    pub passed: bool,
    pub verdicts: Vec<Verdict>,
    /// Why the iteration failed: the first required validator that failed, or the score.
    pub reason: Option<String>,
}

/// How much of a validator's output the evidence and the feedback keep.
pub const OUTPUT_TAIL_BYTES: usize = 4096;
const FEEDBACK_BYTES: usize = 4000;
/// The largest JUnit report read; a bigger one is a failure, not a reason to fill the memory.
const REPORT_LIMIT: u64 = 8 * 1024 * 1024;

impl Validation {
    /// What the next iteration is told: each failing validator, why, and the tail of its output.
    pub fn feedback(&self) -> String {
        let mut text = String::new();
        for v in self.verdicts.iter().filter(|v| !v.result.passed) {
            text.push_str(&format!(
                "### {} ({}, score {:.2})\n",
                v.result.name, v.status, v.result.score
            ));
            if let Some(reason) = &v.result.reason {
                text.push_str(&format!("failed: {reason}\n"));
            }
            text.push_str(&v.result.output_tail);
            text.push('\n');
        }
        if text.len() > FEEDBACK_BYTES {
            text = format!("…{}", tail_bytes(&text, FEEDBACK_BYTES));
        }
        text
    }
}

impl Validation {
    /// What identifies how this validation failed: each failing validator's name, reason,
    /// counts and output with its digits left out (durations, addresses and process ids change
    /// from run to run; the failing tests and their messages do not).
    pub fn failure_signature(&self) -> String {
        let mut signature = String::new();
        for r in self
            .verdicts
            .iter()
            .map(|v| &v.result)
            .filter(|r| !r.passed)
        {
            let tail: String = r
                .output_tail
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .collect();
            signature.push_str(&format!(
                "{}\0{:?}\0{:?}\0{tail}\0",
                r.name, r.reason, r.counts
            ));
        }
        signature
    }
}

/// What a validator's process did, as the rules see it.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// The time the run was allowed, named when it ran out.
    pub timeout: Option<Duration>,
    /// The JUnit report's text, or why it could not be read; only for [`ScoreRule::Junit`].
    pub report: Option<Result<String, String>>,
}

impl RunFacts {
    /// Why the process itself failed: a non-zero exit, a signal, a timeout.
    fn exit_problem(&self) -> Option<String> {
        if self.timed_out {
            return Some(match self.timeout {
                Some(limit) => format!(
                    "timed out after {} and was killed",
                    domain::Duration::from_millis(limit.as_millis() as u64)
                ),
                None => "timed out and was killed".into(),
            });
        }
        match (self.exit_code, self.signal) {
            (Some(0), _) => None,
            (Some(127), _) => Some("exited with 127 (command not found)".into()),
            (Some(c), _) => Some(format!("exited with {c}")),
            (None, Some(s)) => Some(format!("killed by signal {s}")),
            (None, None) => Some("ended without an exit status".into()),
        }
    }
}

/// A rule's judgement of one run. Pure, so every rule is tested on text alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub score: f64,
    pub counts: Option<TestCounts>,
    /// Why the validator failed; `None` when it passed.
    pub failure: Option<String>,
}

/// Judges one run by `rule`: the exit status always counts, and the rule's own reading of the
/// output adds its score, counts and any reason to fail.
pub fn judge(rule: &ScoreRule, facts: &RunFacts) -> Judgement {
    let exit_problem = facts.exit_problem();
    let from_counts = |read: Result<crate::parsers::Summary, String>| match read {
        Ok(s) => (s.counts.ratio().unwrap_or(0.0), Some(s.counts), s.problem),
        Err(why) => (0.0, None, Some(why)),
    };
    let (score, counts, problem) = match rule {
        ScoreRule::Exit => (if exit_problem.is_none() { 1.0 } else { 0.0 }, None, None),
        ScoreRule::PassedFailed => from_counts(passed_failed(&facts.stdout, &facts.stderr)),
        ScoreRule::Regex(re) => {
            let found = last_score(re, &facts.stdout).or_else(|| last_score(re, &facts.stderr));
            match found {
                Some(score) => (score, None, None),
                // A validator that printed no score proved nothing.
                None => (
                    0.0,
                    None,
                    Some(format!("no match for `{}` in the output", re.as_str())),
                ),
            }
        }
        ScoreRule::Runner(runner) => from_counts(runner.read(&facts.stdout, &facts.stderr)),
        ScoreRule::Junit(_) => match &facts.report {
            Some(Ok(xml)) => from_counts(junit(xml)),
            Some(Err(why)) => (0.0, None, Some(why.clone())),
            None => (0.0, None, Some("no JUnit report was read".into())),
        },
    };
    // A run that was cut short judged nothing, whatever it printed before.
    let score = if facts.timed_out || facts.exit_code.is_none() {
        0.0
    } else {
        score
    };
    let failure = match (exit_problem, problem) {
        // What a run that was cut short printed is no finding; joined to the timeout it would
        // read like a test failure.
        (Some(a), Some(_)) if facts.timed_out => Some(a),
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    Judgement {
        score,
        counts,
        failure,
    }
}

/// Runs every validator in `cwd` with exactly `env` and weighs their verdicts.
pub async fn run_validators(
    validators: &[Validator],
    threshold: f64,
    cwd: &Path,
    env: &[(String, String)],
    sandbox: Option<&launch::sandbox::SandboxSpec>,
) -> Result<Validation, Error> {
    run_guarded(validators, threshold, cwd, env, sandbox, None).await
}

/// [`run_validators`] with agentgrid's guard in every Python interpreter they start (`env`
/// and `sandbox` already name it): its reports of each run are part of that run's verdict.
pub(crate) async fn run_guarded(
    validators: &[Validator],
    threshold: f64,
    cwd: &Path,
    env: &[(String, String)],
    sandbox: Option<&launch::sandbox::SandboxSpec>,
    guard: Option<&Guard>,
) -> Result<Validation, Error> {
    let mut verdicts = Vec::with_capacity(validators.len());
    for v in validators {
        verdicts.push(run_one(v, cwd, env, sandbox, guard).await?);
    }
    Ok(weigh(verdicts, threshold))
}

/// The iteration's outcome from its verdicts.
pub fn weigh(verdicts: Vec<Verdict>, threshold: f64) -> Validation {
    let total_weight: f64 = verdicts.iter().map(|v| v.result.weight).sum();
    let score = if total_weight > 0.0 {
        verdicts
            .iter()
            .map(|v| v.result.score * v.result.weight)
            .sum::<f64>()
            / total_weight
    } else {
        1.0
    };
    let failed_required = verdicts
        .iter()
        .find(|v| !v.result.passed && !v.result.score_only);
    // A tiny tolerance so 0.1 + 0.2-style sums still meet a threshold they reach exactly.
    let score_met = score + 1e-9 >= threshold;
    let reason = match failed_required {
        // A validator that ran out of time did not find the work wrong: it says so.
        Some(v) => Some(match v.result.reason.as_deref() {
            Some(r) if r.starts_with("timed out") => {
                format!("validator `{}` {r}", v.result.name)
            }
            r => format!(
                "validator `{}` failed: {}",
                v.result.name,
                r.unwrap_or("no reason given")
            ),
        }),
        None if !score_met => Some(format!(
            "score {} is below the threshold {threshold:.2}",
            domain::text::score(score)
        )),
        None => None,
    };
    Validation {
        score,
        passed: reason.is_none(),
        verdicts,
        reason,
    }
}

async fn run_one(
    v: &Validator,
    cwd: &Path,
    env: &[(String, String)],
    sandbox: Option<&launch::sandbox::SandboxSpec>,
    guard: Option<&Guard>,
) -> Result<Verdict, Error> {
    let Some((program, args)) = v.argv.split_first() else {
        return Err(Error::Config(format!(
            "validator `{}` has an empty command",
            v.name
        )));
    };
    // A report left from before this run (planted, or from an earlier iteration) is no evidence
    // of this one: it is set aside while the command runs and put back afterwards.
    let stashed = match &v.rule {
        ScoreRule::Junit(report) => Some(Stash::take(cwd, report)),
        _ => None,
    };
    let mut spec = launch::LaunchSpec::new(program.clone(), cwd)
        .args(args.iter().cloned())
        .with_env_exactly(env.to_vec());
    if let Some(sandbox) = sandbox {
        spec = spec.with_sandbox(sandbox.clone());
    }
    if let Some(guard) = guard {
        guard.clear();
    }
    let started = Instant::now();
    let (mut facts, status, duration_ms) = match launch::run(spec, v.timeout, 256 * 1024).await {
        Ok(out) => {
            let status = out.describe();
            let facts = RunFacts {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: out.code,
                signal: out.signal,
                timed_out: out.timed_out,
                timeout: Some(v.timeout),
                report: None,
            };
            (facts, status, out.wall_ms)
        }
        // A stop is no verdict on the work: the validation ends without one.
        Err(launch::Error::Cancelled { .. }) => {
            if let Some(stash) = stashed {
                stash.restore(cwd);
            }
            return Err(Error::Cancelled {
                name: v.name.clone(),
            });
        }
        // A validator that cannot even start (its program is missing) is a failed check,
        // recorded like any other, not a broken execution.
        Err(e) => {
            let facts = RunFacts {
                stderr: format!("could not start: {e}"),
                exit_code: Some(127),
                ..Default::default()
            };
            let elapsed = started.elapsed().as_millis() as u64;
            (facts, format!("could not start: {e}"), elapsed)
        }
    };
    if let ScoreRule::Junit(report) = &v.rule {
        facts.report = Some(read_report(cwd, report));
    }
    if let Some(stash) = stashed {
        stash.restore(cwd);
    }
    let mut judgement = judge(&v.rule, &facts);
    if let Some(guard) = guard {
        // A run that already failed keeps its own reason; one that passed must also satisfy
        // the guard, since its exit status and summary come from the code under test's process.
        // Only a command that starts Python itself must leave a report: a runner started by
        // another tool (tox, nox) may get an environment without the guard.
        let required = crate::protect::runs_python(&v.argv);
        if judgement.failure.is_none()
            && let Some(why) = guard::problem(&guard.reports(), required, judgement.counts.as_ref())
        {
            judgement.score = 0.0;
            judgement.failure = Some(why);
        }
        guard.clear();
    }
    Ok(Verdict {
        result: ValidatorResult {
            name: v.name.clone(),
            score: judgement.score,
            passed: judgement.failure.is_none(),
            weight: v.weight,
            command: shell_words(&v.argv),
            exit_code: facts.exit_code,
            signal: facts.signal,
            timed_out: facts.timed_out,
            duration_ms,
            counts: judgement.counts,
            reason: judgement.failure,
            score_only: v.score_only,
            output_tail: output_tail(&facts.stdout, &facts.stderr, OUTPUT_TAIL_BYTES),
        },
        status,
    })
}

/// A file set aside for the length of one validator run.
struct Stash {
    path: PathBuf,
    content: Option<Vec<u8>>,
}

impl Stash {
    fn take(cwd: &Path, report: &Path) -> Stash {
        let path = cwd.join(report);
        // A directory on the way may be the agent's link out of the workspace: then nothing is
        // touched here (and the report is refused when it is read).
        if !parent_inside(cwd, &path) {
            return Stash {
                path,
                content: None,
            };
        }
        let content = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() <= REPORT_LIMIT => std::fs::read(&path).ok(),
            _ => None,
        };
        // Whatever it was, it must not be read as this run's report.
        if path.symlink_metadata().is_ok() && std::fs::remove_file(&path).is_err() {
            let _ = std::fs::remove_dir_all(&path);
        }
        Stash { path, content }
    }

    fn restore(self, cwd: &Path) {
        if let Some(content) = self.content
            && parent_inside(cwd, &self.path)
        {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::write(&self.path, content);
        }
    }
}

/// Whether the directory holding `path` resolves inside `root`.
fn parent_inside(root: &Path, path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return false;
    };
    match (parent.canonicalize(), root.canonicalize()) {
        (Ok(p), Ok(root)) => p.starts_with(root),
        // A directory that does not exist yet holds nothing to set aside.
        _ => false,
    }
}

/// Reads the report the validator wrote: a regular file inside the workspace, not a link, at
/// most [`REPORT_LIMIT`] bytes.
fn read_report(cwd: &Path, report: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = report.display();
    let path = cwd.join(report);
    let meta = std::fs::symlink_metadata(&path)
        .map_err(|_| format!("the JUnit report {shown} was not written"))?;
    if !meta.is_file() {
        return Err(format!("the JUnit report {shown} is not a regular file"));
    }
    // The directories on the way are the agent's too: the report must resolve inside the
    // workspace, so that a link never makes the engine read a file of the host.
    let inside = match (path.canonicalize(), cwd.canonicalize()) {
        (Ok(p), Ok(root)) => p.starts_with(&root),
        _ => false,
    };
    if !inside {
        return Err(format!(
            "the JUnit report {shown} lies outside the workspace"
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| format!("the JUnit report {shown} cannot be read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(REPORT_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("the JUnit report {shown} cannot be read: {e}"))?;
    if bytes.len() as u64 > REPORT_LIMIT {
        return Err(format!(
            "the JUnit report {shown} is larger than {} MiB",
            REPORT_LIMIT / (1024 * 1024)
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("the JUnit report {shown} is not UTF-8"))
}

/// The `passed-failed` rule: the last line of stdout (else stderr) that counts `N passed` or
/// `M failed`, with every count taken from that one line.
fn passed_failed(stdout: &str, stderr: &str) -> Result<crate::parsers::Summary, String> {
    let count = Regex::new(r"(\d+)\s+(passed|failed|errors?)\b").expect("a valid pattern");
    let read = |text: &str| {
        let line = text.lines().rev().find(|l| {
            count
                .captures_iter(l)
                .any(|c| &c[2] != "error" && &c[2] != "errors")
        })?;
        let mut counts = TestCounts::default();
        for c in count.captures_iter(line) {
            let n: u64 = c[1].parse().unwrap_or(0);
            match &c[2] {
                "passed" => counts.passed += n,
                "failed" => counts.failed += n,
                _ => counts.errors += n,
            }
        }
        Some(counts)
    };
    let counts = read(stdout)
        .or_else(|| read(stderr))
        .ok_or_else(|| "no `N passed` / `M failed` summary found in the output".to_string())?;
    let problem = if counts.failed + counts.errors > 0 {
        Some(format!("the summary says {counts}"))
    } else if counts.passed == 0 {
        Some("the summary says no test passed".to_string())
    } else {
        None
    };
    Ok(crate::parsers::Summary { counts, problem })
}

fn last_score(re: &Regex, text: &str) -> Option<f64> {
    re.captures_iter(text)
        .last()
        .and_then(|c| c.name("score").map(|m| m.as_str().to_string()))
        .and_then(|v| parse_score(&v))
}

fn parse_score(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    let (number, percent) = match trimmed.strip_suffix('%') {
        Some(n) => (n, true),
        None => (trimmed, false),
    };
    let value: f64 = number.trim().parse().ok()?;
    let fraction = if percent || value > 1.0 {
        value / 100.0
    } else {
        value
    };
    Some(fraction.clamp(0.0, 1.0))
}

/// The last `limit` bytes of the output: stdout, then stderr under a marker line, each
/// shortened from the front so that the ends (where summaries and errors are) survive.
pub fn output_tail(stdout: &str, stderr: &str, limit: usize) -> String {
    let (out, err) = (stdout.trim_end(), stderr.trim_end());
    match (out.is_empty(), err.is_empty()) {
        (true, true) => String::new(),
        (false, true) => tail_bytes(out, limit).to_string(),
        (true, false) => tail_bytes(err, limit).to_string(),
        (false, false) => {
            let marker = "\n[stderr]\n";
            let err = tail_bytes(err, (limit / 2).max(limit.saturating_sub(out.len())));
            let out = tail_bytes(out, limit.saturating_sub(err.len() + marker.len()));
            format!("{out}{marker}{err}")
        }
    }
}

fn tail_bytes(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The command as one line a person can read and paste: words with spaces or quotes quoted.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(stdout: &str, code: i32) -> RunFacts {
        RunFacts {
            stdout: stdout.into(),
            exit_code: Some(code),
            ..Default::default()
        }
    }

    #[test]
    fn exit_rule_follows_the_exit_code() {
        let ok = judge(&ScoreRule::Exit, &ran("whatever", 0));
        assert_eq!((ok.score, ok.failure), (1.0, None));
        let bad = judge(&ScoreRule::Exit, &ran("whatever", 2));
        assert_eq!(
            (bad.score, bad.failure.as_deref()),
            (0.0, Some("exited with 2"))
        );
        let slow = judge(
            &ScoreRule::Exit,
            &RunFacts {
                timed_out: true,
                signal: Some(9),
                ..Default::default()
            },
        );
        assert_eq!(slow.failure.as_deref(), Some("timed out and was killed"));
    }

    #[test]
    fn a_timeout_names_its_limit_and_nothing_the_run_printed_before() {
        let facts = RunFacts {
            stdout: "Ran 3 tests\n\nFAILED (failures=1)\n".into(),
            timed_out: true,
            timeout: Some(Duration::from_secs(30)),
            signal: Some(9),
            ..Default::default()
        };
        for rule in [
            ScoreRule::Exit,
            ScoreRule::PassedFailed,
            ScoreRule::Runner(Runner::Unittest),
        ] {
            let j = judge(&rule, &facts);
            assert_eq!(
                (j.score, j.failure.as_deref()),
                (0.0, Some("timed out after 30s and was killed")),
                "{rule:?}"
            );
        }
        // A run that was not cut short keeps both reasons.
        let j = judge(&ScoreRule::PassedFailed, &ran("1 passed, 1 failed", 1));
        assert_eq!(
            j.failure.as_deref(),
            Some("exited with 1; the summary says 1 passed, 1 failed")
        );
    }

    #[test]
    fn passed_failed_reads_one_line_and_the_exit_status_counts() {
        let rule = ScoreRule::PassedFailed;
        let j = judge(
            &rule,
            &ran("1 passed, 1 failed\n...\n3 passed, 1 failed", 1),
        );
        assert_eq!(j.score, 0.75);
        assert_eq!(
            j.failure.as_deref(),
            Some("exited with 1; the summary says 3 passed, 1 failed")
        );
        let j = judge(&rule, &ran("=== 5 passed in 0.1s ===", 0));
        assert_eq!((j.score, j.failure), (1.0, None));
        // A summary that says all passed does not outweigh a failing exit.
        let j = judge(&rule, &ran("5 passed", 1));
        assert_eq!(j.score, 1.0);
        assert_eq!(j.failure.as_deref(), Some("exited with 1"));
        // Errors are failures too, and counts from another line do not mix in.
        let j = judge(&rule, &ran("9 failed\n280 passed, 39 skipped, 1 error", 0));
        assert!(j.score < 1.0, "{j:?}");
        assert!(j.failure.unwrap().contains("1 errors"));
        let j = judge(&rule, &ran("no summary at all", 0));
        assert_eq!(j.score, 0.0);
        assert_eq!(
            j.failure.as_deref(),
            Some("no `N passed` / `M failed` summary found in the output")
        );
    }

    #[test]
    fn regex_reads_fractions_and_percentages_and_fails_on_a_bad_exit() {
        let rule = ScoreRule::Regex(Regex::new(r"coverage: (?P<score>[0-9.]+%?)").unwrap());
        assert_eq!(judge(&rule, &ran("coverage: 0.5", 0)).score, 0.5);
        assert_eq!(judge(&rule, &ran("coverage: 80%", 0)).score, 0.8);
        assert_eq!(judge(&rule, &ran("coverage: 90", 0)).score, 0.9);
        assert_eq!(judge(&rule, &ran("coverage: 90", 0)).failure, None);
        let none = judge(&rule, &ran("nothing", 0));
        assert_eq!(none.score, 0.0, "no match scores zero");
        assert!(none.failure.unwrap().starts_with("no match for"));
        let bad = judge(&rule, &ran("coverage: 100%", 1));
        assert_eq!(bad.failure.as_deref(), Some("exited with 1"));
    }

    #[test]
    fn runner_rules_fail_on_errors_and_on_a_missing_summary() {
        let rule = ScoreRule::Runner(Runner::Pytest);
        let j = judge(
            &rule,
            &ran("== 280 passed, 39 skipped, 1 error in 3.2s ==", 1),
        );
        assert!(j.score < 1.0, "{j:?}");
        assert_eq!(
            j.failure.as_deref(),
            Some("exited with 1; pytest reported 1 error")
        );
        let j = judge(
            &rule,
            &RunFacts {
                stderr: "sh: 1: pytest: not found".into(),
                exit_code: Some(127),
                ..Default::default()
            },
        );
        assert_eq!(
            j.failure.as_deref(),
            Some("exited with 127 (command not found); no pytest summary found in the output")
        );
    }

    fn verdict(name: &str, score: f64, passed: bool, score_only: bool) -> Verdict {
        Verdict {
            result: ValidatorResult {
                name: name.into(),
                score,
                passed,
                weight: 1.0,
                score_only,
                reason: (!passed).then(|| "exited with 1".to_string()),
                output_tail: format!("{name} output"),
                ..Default::default()
            },
            status: "exited with 1".into(),
        }
    }

    #[test]
    fn an_iteration_needs_every_required_validator_and_the_threshold() {
        let v = weigh(
            vec![
                verdict("lint", 1.0, true, false),
                verdict("tests", 1.0, false, false),
            ],
            0.5,
        );
        assert!(!v.passed);
        assert_eq!(
            v.reason.as_deref(),
            Some("validator `tests` failed: exited with 1")
        );
        let v = weigh(
            vec![
                verdict("lint", 1.0, true, false),
                verdict("cov", 0.6, false, true),
            ],
            0.8,
        );
        assert!(
            v.passed,
            "a score-only failure weighs only its score: {v:?}"
        );
        let v = weigh(
            vec![
                verdict("lint", 1.0, true, false),
                verdict("cov", 0.2, false, true),
            ],
            0.8,
        );
        assert_eq!(
            v.reason.as_deref(),
            Some("score 0.60 is below the threshold 0.80")
        );
    }

    #[test]
    fn feedback_names_failing_validators_with_their_reason_and_output_tail() {
        let v = weigh(
            vec![
                verdict("lint", 1.0, true, false),
                verdict("tests", 0.0, false, false),
            ],
            1.0,
        );
        let feedback = v.feedback();
        assert!(
            feedback.contains(
                "### tests (exited with 1, score 0.00)\nfailed: exited with 1\ntests output"
            ),
            "{feedback}"
        );
        assert!(!feedback.contains("lint"));
    }

    #[test]
    fn the_same_failure_has_the_same_signature_whatever_the_timings() {
        let failing = |tail: &str| {
            let mut v = verdict("tests", 0.0, false, false);
            v.result.output_tail = tail.into();
            weigh(vec![v], 1.0)
        };
        assert_eq!(
            failing("FAIL test_a in 0.13s pid 4121").failure_signature(),
            failing("FAIL test_a in 0.27s pid 977").failure_signature()
        );
        assert_ne!(
            failing("FAIL test_a").failure_signature(),
            failing("FAIL test_b").failure_signature()
        );
    }

    #[test]
    fn output_tails_keep_the_ends_of_both_streams() {
        assert_eq!(output_tail("out\n", "", 100), "out");
        assert_eq!(output_tail("", "err", 100), "err");
        assert_eq!(output_tail("out", "err", 100), "out\n[stderr]\nerr");
        let long = "x".repeat(10_000) + "END";
        let tail = output_tail(&long, "boom", 4096);
        assert!(tail.len() <= 4096, "{}", tail.len());
        assert!(tail.ends_with("\n[stderr]\nboom"));
        assert!(tail.contains("END"));
        assert_eq!(tail_bytes("ééé", 3), "é");
    }

    #[test]
    fn commands_read_as_shell_lines() {
        let argv = ["sh", "-c", "pytest -q 'a b'"].map(String::from);
        assert_eq!(shell_words(&argv), r"sh -c 'pytest -q '\''a b'\'''");
        assert_eq!(shell_words(&["cargo".into(), "test".into()]), "cargo test");
    }
}
