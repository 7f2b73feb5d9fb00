//! Messages that tell the truth: each line a person reads after a run says what happened, in
//! their words, without rounding a failure into a pass or hiding the part that matters.

use crate::support::*;

const FAST_CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// A project whose one agent `coder` runs `script`, with more of its spec in `extra_spec`.
fn project(script: &str, extra_spec: &str) -> Repo {
    let spec = format!("  routing: {{default: true}}\n{extra_spec}");
    let repo = Repo::with_agents(&[("coder", &agent("coder", script, &spec))]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), FAST_CONFIG).unwrap();
    repo
}

/// Stdout and stderr of `agentgrid ARGS`, with its exit code.
fn all(repo: &Repo, args: &[&str]) -> (Option<i32>, String) {
    let out = repo.run(args);
    (out.status.code(), stdout(&out) + &stderr(&out))
}

#[test]
fn a_score_just_below_the_threshold_is_not_rounded_up_and_the_last_iteration_feeds_nothing_back() {
    // 999 of 1000 weight passes: the score is 0.999, short of the threshold 1.0.
    let repo = project(
        "date +%s%N > work.txt",
        "  limits: {max_iterations: 2, max_attempts: 1}\n  validation:\n    validators:\n      - {name: most, run: \"true\", weight: 999}\n      - {name: nit, run: \"false\", weight: 1, score_only: true}\n",
    );
    repo.ok(&["task", "add", "Nearly there"]);
    let (code, out) = all(&repo, &["run"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("iteration 1: validation failed, feeding back (score 0.999 < threshold 1.00)"),
        "{out}"
    );
    assert!(
        out.contains(
            "iteration 2: validation failed on the last iteration (score 0.999 < threshold 1.00)"
        ),
        "{out}"
    );
    assert!(!out.contains("score 1.00"), "{out}");
    let show = repo.json(&["task", "show", "1", "--json"]);
    let summary = show["task"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("score 0.999 < threshold 1.00"),
        "{summary}"
    );
}

#[test]
fn a_task_done_without_validators_says_the_exit_status_decided() {
    let repo = project("echo hi > out.txt", "");
    repo.ok(&["task", "add", "No judges"]);
    let out = repo.ok(&["run"]);
    assert!(
        out.contains("✓ #1 done: no validators (the agent's exit status decided)"),
        "{out}"
    );
    assert!(!out.contains("done: validated"), "{out}");
}

#[test]
fn a_validator_that_runs_out_of_time_is_said_to_have_timed_out() {
    let repo = project(
        "date +%s%N > work.txt",
        "  limits: {max_iterations: 1, max_attempts: 1}\n  validation:\n    validators:\n      - {name: slow, run: \"sleep 30\", timeout: 1s}\n",
    );
    repo.ok(&["task", "add", "Judged slowly"]);
    let (code, out) = all(&repo, &["run"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("validator slow timed out after 1s"), "{out}");
    let show = repo.json(&["task", "show", "1", "--json"]);
    let summary = show["task"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("validator `slow` timed out after 1s")
            && !summary.contains("failed: timed out"),
        "{summary}"
    );
}

#[test]
fn an_agent_that_fails_silently_is_said_to_have_printed_nothing() {
    let repo = project("exit 3", "  limits: {max_attempts: 1}\n");
    repo.ok(&["task", "add", "Quiet failure"]);
    let (code, out) = all(&repo, &["run"]);
    assert_eq!(code, Some(1), "{out}");
    let show = repo.json(&["task", "show", "1", "--json"]);
    let summary = show["task"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("agent exited with 3 and printed nothing"),
        "{summary}"
    );
    assert!(!summary.contains("last output"), "{summary}");
}

#[test]
fn a_refused_change_is_named_in_the_users_words() {
    let repo = project("true", "");
    repo.ok(&["task", "add", "Parent"]);
    repo.ok(&["task", "cancel", "1"]);
    let (code, out) = all(&repo, &["task", "add", "Child", "--parent", "1"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("creating the task was refused: "), "{out}");
    assert!(
        !out.contains("change 0") && !out.contains("create_task"),
        "{out}"
    );
    assert_eq!(repo.tasks().len(), 1, "nothing was created");
}

#[test]
fn an_empty_filtered_list_says_what_matched_nothing_and_suggests_a_task_only_when_there_is_none() {
    let repo = project("true", "");
    let empty = repo.ok(&["task", "list", "--state", "failed"]);
    assert!(empty.contains("agentgrid task add"), "{empty}");
    repo.ok(&["task", "add", "One"]);
    let out = repo.ok(&["task", "list", "--state", "failed"]);
    assert_eq!(out.trim(), "no failed tasks", "{out}");
    let out = repo.ok(&[
        "task", "list", "--state", "failed", "--state", "blocked", "--label", "ui",
    ]);
    assert_eq!(
        out.trim(),
        "no failed or blocked tasks labelled ui",
        "{out}"
    );
}

#[test]
fn events_of_an_unknown_task_are_an_error_and_a_tasks_events_include_its_executions() {
    let repo = project("echo hi", "");
    let (code, out) = all(&repo, &["events", "--task", "999"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no task 999"), "{out}");
    repo.ok(&["task", "add", "Watched"]);
    repo.ok(&["task", "add", "Other"]);
    repo.ok(&["run"]);
    let lines: Vec<serde_json::Value> = repo
        .ok(&["events", "--task", "1", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let executions: Vec<i64> = lines
        .iter()
        .filter(|e| e["entity"] == "execution")
        .map(|e| e["entity_id"].as_i64().unwrap())
        .collect();
    assert!(
        lines.iter().any(|e| e["type"] == "execution_finished"),
        "the execution's events are in the task's history: {lines:?}"
    );
    let own = repo.json(&["task", "show", "1", "--json"])["executions"][0]["id"]
        .as_i64()
        .unwrap();
    assert!(
        executions.iter().all(|&e| e == own),
        "only this task's executions: {executions:?}"
    );
    assert!(
        lines
            .iter()
            .all(|e| e["entity"] != "task" || e["entity_id"] == 1),
        "{lines:?}"
    );
    let seqs: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in log order: {seqs:?}"
    );
}

#[test]
fn a_run_reports_and_exits_for_its_own_work_only() {
    // Task 1 fails in the first run; the second run does task 2 only.
    let repo = project(
        "if [ \"$AGENTGRID_TASK_ID\" = 1 ]; then echo broken; exit 3; fi; echo ok > out.txt",
        "  limits: {max_attempts: 1}\n",
    );
    repo.ok(&["task", "add", "Fails first"]);
    let (code, out) = all(&repo, &["run"]);
    assert_eq!(code, Some(1), "{out}");
    repo.ok(&["task", "add", "Works later"]);
    let (code, out) = all(&repo, &["run"]);
    assert_eq!(
        code,
        Some(0),
        "an earlier run's failure is not this run's: {out}"
    );
    assert!(out.contains("#2"), "{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("#1 ")),
        "the earlier task is not listed: {out}"
    );
    assert!(
        out.contains("1 other task(s) in the project were not touched by this run"),
        "{out}"
    );
}

#[test]
fn the_why_column_keeps_the_end_of_a_long_reason() {
    // The agent's last line is kept up to 200 bytes: this one fills them, so the reason with
    // the attempt after it runs past what a one-line cell would show.
    let long: String = (0..24).map(|i| format!("word{i:03} ")).collect();
    assert_eq!(long.len() + "THE-END".len(), 199);
    let repo = project(
        &format!("echo '{long}THE-END'; exit 3"),
        "  limits: {max_attempts: 1}\n",
    );
    repo.ok(&["task", "add", "Long reason"]);
    all(&repo, &["run"]);
    let status = repo.ok(&["status"]);
    assert!(status.contains("THE-END"), "{status}");
    assert!(status.contains("(attempt 1 of 1)"), "{status}");
    assert!(
        status.lines().all(|l| l.chars().count() <= 140),
        "the column wraps rather than running on: {status}"
    );
}

#[test]
fn every_ctl_flag_has_help() {
    let repo = Repo::new();
    for (args, flags) in [
        (
            &["ctl", "subtask", "create", "--help"][..],
            &[
                "<TITLE>",
                "--body",
                "--label",
                "--blocked-by",
                "--priority",
                "--key",
            ][..],
        ),
        (&["ctl", "complete", "--help"][..], &["--summary"][..]),
        (&["ctl", "block", "--help"][..], &["--reason"][..]),
        (&["ctl", "comment", "--help"][..], &["<TEXT>", "--key"][..]),
        (&["ctl", "nudge", "--help"][..], &["<TASK>"][..]),
    ] {
        let help = repo.ok(args);
        for flag in flags {
            let line = help
                .lines()
                .find(|l| {
                    let l = l.trim_start();
                    l.starts_with(flag) || (l.starts_with('-') && l.contains(&format!(" {flag} ")))
                })
                .unwrap_or_else(|| panic!("{args:?} lists {flag}: {help}"));
            let after = line.split_once(flag).unwrap().1;
            let words = after
                .split_whitespace()
                .filter(|w| !w.starts_with('<'))
                .count();
            assert!(
                words >= 3,
                "{args:?}: {flag} has help text: {line:?}\n{help}"
            );
        }
    }
}
