//! The usage a CLI reports is checked against the gateway's metering of its execution. The
//! "CLI" is a script printing Claude Code's stream-json, so this runs everywhere.

use modelfixture::Script;

use super::*;

#[test]
fn a_cli_reporting_usage_the_gateway_never_metered_gets_a_warning_and_budgets_keep_the_metering() {
    // It claims thousands of tokens and makes no model request at all.
    let script = "#!/bin/sh\ncat >/dev/null\necho '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s-1\"}'\necho '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"done\",\"usage\":{\"input_tokens\":5000,\"output_tokens\":40}}'\n";
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("claude");
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (_rt, _fixture, repo) = project("claude", &program, Script::new(vec![]));
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    // A warning, not a failure: the work stands or falls on its own evidence.
    assert_eq!(repo.task_state(1), "done");
    let events = agent_events(&repo);
    let reported = events.iter().find(|e| e["kind"] == "usage").unwrap();
    assert_eq!(reported["input_tokens"], 5000, "{reported}");
    let warning = events
        .iter()
        .find(|e| e["kind"] == "warning")
        .unwrap_or_else(|| panic!("no warning among {events:?}"));
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains("reported 5000 input and 40 output tokens")
            && message.contains("metered 0 input and 0 output tokens in 0 requests"),
        "{message}"
    );
    // The metering is what counts.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["input_tokens"], 0, "{usage}");
    assert!(
        repo.ok(&["task", "show", "1"])
            .contains("warning: the CLI reported 5000")
    );
    assert!(
        repo.ok(&["logs", "1"])
            .contains("warning: the CLI reported 5000")
    );
}
