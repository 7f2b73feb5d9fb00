//! Validators: commands that judge an iteration, each giving a score in 0..1.

use std::path::Path;
use std::time::Duration;

use domain::event::ValidatorResult;
use regex::Regex;

use crate::Error;

/// How a validator's output becomes a score.
#[derive(Debug, Clone)]
pub enum ScoreRule {
    /// 1 when the command exits 0, else 0.
    Exit,
    /// The last `N passed` and `M failed` in the output: N / (N + M).
    PassedFailed,
    /// The last match's `score` group: a fraction (0.8) or a percentage (80 or 80%).
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct Validator {
    pub name: String,
    pub argv: Vec<String>,
    pub timeout: Duration,
    pub weight: f64,
    pub rule: ScoreRule,
}

/// One validator's run on one iteration.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub result: ValidatorResult,
    /// "exited with 1", "timed out and was killed".
    pub status: String,
    /// The last lines of its output, for the next iteration's feedback.
    pub tail: String,
}

/// The scores of all validators, weighted, against the threshold.
#[derive(Debug, Clone)]
pub struct Validation {
    pub score: f64,
    pub passed: bool,
    pub verdicts: Vec<Verdict>,
}

const FEEDBACK_LINES: usize = 40;
const FEEDBACK_BYTES: usize = 4000;

impl Validation {
    /// What the next iteration is told: each failing validator and the tail of its output.
    pub fn feedback(&self) -> String {
        let mut text = String::new();
        for v in self.verdicts.iter().filter(|v| !v.result.passed) {
            text.push_str(&format!(
                "### {} ({}, score {:.2})\n{}\n",
                v.result.name, v.status, v.result.score, v.tail
            ));
        }
        if text.len() > FEEDBACK_BYTES {
            let cut = text.len() - FEEDBACK_BYTES;
            let start = (cut..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text = format!("…{}", &text[start..]);
        }
        text
    }
}

/// Runs every validator in `cwd` and weighs their scores.
pub async fn run_validators(
    validators: &[Validator],
    threshold: f64,
    cwd: &Path,
    env: &[(String, String)],
    sandbox: Option<&launch::sandbox::SandboxSpec>,
) -> Result<Validation, Error> {
    let mut verdicts = Vec::with_capacity(validators.len());
    for v in validators {
        let Some((program, args)) = v.argv.split_first() else {
            return Err(Error::Config(format!(
                "validator `{}` has an empty command",
                v.name
            )));
        };
        let mut spec = launch::LaunchSpec::new(program.clone(), cwd)
            .args(args.iter().cloned())
            .with_env_exactly(env.to_vec());
        if let Some(sandbox) = sandbox {
            spec = spec.with_sandbox(sandbox.clone());
        }
        let out = launch::run(spec, v.timeout, 256 * 1024)
            .await
            .map_err(|e| Error::Validator {
                name: v.name.clone(),
                message: e.to_string(),
            })?;
        let text = out.combined();
        let exit_ok = out.success();
        let score = if out.timed_out {
            0.0
        } else {
            score(&v.rule, &text, exit_ok)
        };
        let passed = exit_ok && score >= 1.0 - f64::EPSILON;
        verdicts.push(Verdict {
            result: ValidatorResult {
                name: v.name.clone(),
                score,
                passed,
                weight: v.weight,
            },
            status: out.describe(),
            tail: last_lines(&text, FEEDBACK_LINES),
        });
    }
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
    // A tiny tolerance so 0.1 + 0.2-style sums still meet a threshold they reach exactly.
    let passed = score + 1e-9 >= threshold;
    Ok(Validation {
        score,
        passed,
        verdicts,
    })
}

/// The score a rule gives an output. Pure, so every rule is tested on text alone.
pub fn score(rule: &ScoreRule, output: &str, exit_ok: bool) -> f64 {
    let from_exit = if exit_ok { 1.0 } else { 0.0 };
    match rule {
        ScoreRule::Exit => from_exit,
        ScoreRule::PassedFailed => {
            let passed = last_count(output, "passed");
            let failed = last_count(output, "failed").unwrap_or(0);
            match passed {
                Some(p) if p + failed > 0 => p as f64 / (p + failed) as f64,
                _ if failed > 0 => 0.0,
                _ => from_exit,
            }
        }
        ScoreRule::Regex(re) => {
            let value = re
                .captures_iter(output)
                .last()
                .and_then(|c| c.name("score").map(|m| m.as_str().to_string()));
            // No match scores zero: a validator that printed no score proved nothing.
            value.and_then(|v| parse_score(&v)).unwrap_or(0.0)
        }
    }
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

/// The number before the last occurrence of ` word` (as in `12 passed`).
fn last_count(text: &str, word: &str) -> Option<u64> {
    let re = Regex::new(&format!(r"(\d+)\s+{word}\b")).ok()?;
    re.captures_iter(text)
        .last()
        .and_then(|c| c[1].parse().ok())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_rule_follows_the_exit_code() {
        assert_eq!(score(&ScoreRule::Exit, "whatever", true), 1.0);
        assert_eq!(score(&ScoreRule::Exit, "whatever", false), 0.0);
    }

    #[test]
    fn passed_failed_reads_the_last_summary() {
        let rule = ScoreRule::PassedFailed;
        assert_eq!(
            score(&rule, "1 passed, 1 failed\n...\n3 passed, 1 failed", false),
            0.75
        );
        assert_eq!(score(&rule, "=== 5 passed in 0.1s ===", true), 1.0);
        assert_eq!(score(&rule, "2 failed", false), 0.0);
        assert_eq!(
            score(&rule, "no summary at all", true),
            1.0,
            "falls back to the exit code"
        );
        assert_eq!(score(&rule, "no summary at all", false), 0.0);
    }

    #[test]
    fn regex_reads_fractions_and_percentages() {
        let rule = ScoreRule::Regex(Regex::new(r"coverage: (?P<score>[0-9.]+%?)").unwrap());
        assert_eq!(score(&rule, "coverage: 0.5", true), 0.5);
        assert_eq!(score(&rule, "coverage: 80%", true), 0.8);
        assert_eq!(score(&rule, "coverage: 90", true), 0.9);
        assert_eq!(score(&rule, "nothing", true), 0.0, "no match scores zero");
    }

    #[test]
    fn feedback_names_failing_validators_with_their_output_tail() {
        let verdict = |name: &str, passed: bool| Verdict {
            result: ValidatorResult {
                name: name.into(),
                score: if passed { 1.0 } else { 0.0 },
                passed,
                weight: 1.0,
            },
            status: "exited with 1".into(),
            tail: format!("{name} output"),
        };
        let v = Validation {
            score: 0.5,
            passed: false,
            verdicts: vec![verdict("lint", true), verdict("tests", false)],
        };
        let feedback = v.feedback();
        assert!(
            feedback.contains("### tests (exited with 1, score 0.00)\ntests output"),
            "{feedback}"
        );
        assert!(!feedback.contains("lint"));
    }
}
