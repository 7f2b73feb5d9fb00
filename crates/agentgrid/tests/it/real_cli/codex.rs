//! Codex (`@openai/codex`, found through its npm wrapper and run as its native binary) end to end: its `exec_command` tool makes the
//! file, its JSON lines become events, its failures fail the execution and a feedback
//! iteration resumes its thread.

use modelfixture::{Script, Step};

use super::*;

/// Codex as npm installs it: `.bin/codex` is the package's node wrapper, and agentgrid runs
/// the native binary of its platform package instead (the sandbox needs no node for it).
fn codex() -> Option<PathBuf> {
    installed("codex", "codex")
}

fn write_with(text: &str) -> serde_json::Value {
    serde_json::json!({"cmd": format!("printf '{text}\\n' > hello.txt")})
}

/// The model requests the fixture received, as JSON.
fn bodies(fixture: &modelfixture::Fixture) -> Vec<serde_json::Value> {
    fixture
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/responses"))
        .filter_map(|r| r.json())
        .collect()
}

#[test]
fn codex_writes_a_file_with_its_own_tool_through_the_gateway() {
    let Some(codex) = codex() else {
        return;
    };
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "exec_command",
            write_with("hello from codex"),
            120,
            20,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("codex", &codex, script);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));

    // The file was made by Codex's own tool and committed on the task's branch.
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "hello from codex\n"
    );

    let events = agent_events(&repo);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["session", "message", "tool_call", "usage", "result"] {
        assert!(kinds.contains(&kind), "no {kind} among {events:?}");
    }
    let call = events.iter().find(|e| e["kind"] == "tool_call").unwrap();
    assert_eq!(call["name"], "command", "{call}");
    assert!(
        call["arguments"].as_str().unwrap().contains("hello.txt"),
        "{call}"
    );
    assert_eq!(call["failed"], false, "{call}");
    let result = events.iter().find(|e| e["kind"] == "result").unwrap();
    assert_eq!(result["is_error"], false);
    assert_eq!(result["text"], "Done: wrote hello.txt.");

    // The requests went through the gateway and were metered; what Codex reported agrees.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 280, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    assert!(usage["cost_micros"].as_u64().unwrap() > 0, "{usage}");
    let reported = events.iter().find(|e| e["kind"] == "usage").unwrap();
    assert_eq!(reported["input_tokens"], 280, "{reported}");
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "warning"
                && e["message"].as_str().unwrap_or("").contains("metered")),
        "{events:?}"
    );
    // Codex asked for the agent's alias, which the gateway mapped to the upstream model, and
    // sent the tool's output back in the second request.
    let requests = bodies(&fixture);
    assert!(
        requests.iter().all(|b| b["model"] == "fx-gpt"),
        "{requests:?}"
    );
    assert!(
        requests[1]["input"]
            .to_string()
            .contains("function_call_output"),
        "{}",
        requests[1]["input"]
    );

    let show = repo.ok(&["task", "show", "1"]);
    assert!(show.contains("tool calls: 1"), "{show}");
    assert!(
        show.contains("(2 request(s); tokens: 280 in, 0 of them cached, 30 out)"),
        "{show}"
    );
    let logs = repo.ok(&["logs", "1"]);
    assert!(logs.contains("tool command("), "{logs}");
    assert!(
        repo.ok(&["logs", "1", "--raw"])
            .contains("\"type\":\"turn.completed\"")
    );

    assert_no_key_anywhere(&repo);
}

#[test]
fn codex_reporting_an_api_error_fails_the_execution_with_the_reason() {
    let Some(codex) = codex() else {
        return;
    };
    an_api_error_fails_the_execution("codex", &codex, true, true);
}

#[test]
fn codex_resumes_its_thread_when_validation_sends_it_round_again() {
    let Some(codex) = codex() else {
        return;
    };
    let script = Script::new(vec![
        Step::call("Writing.", "exec_command", write_with("first"), 100, 10),
        Step::reply("Wrote the first draft.", 120, 10, 0),
        Step::call("Fixing.", "exec_command", write_with("second"), 140, 10),
        Step::reply("Wrote the second draft.", 160, 10, 0),
    ]);
    let validator = "  validation:\n    validators:\n      - {name: second, run: \"grep -q second hello.txt\"}\n";
    let (_rt, fixture, repo) = project_with("codex", &codex, script, validator);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "second\n"
    );
    // The second iteration's first request carries the first iteration's conversation.
    let requests = bodies(&fixture);
    let history = requests.get(2).expect("a third model request")["input"].to_string();
    assert!(history.contains("Wrote the first draft."), "{history}");
    assert!(history.contains("Feedback on the work so far"), "{history}");
    let events = agent_events(&repo);
    let sessions: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "session")
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0], sessions[1], "the same thread, resumed");
    // Codex reports its thread's running total; recorded as increments they add up to what
    // the gateway metered over both iterations.
    let reported: u64 = events
        .iter()
        .filter(|e| e["kind"] == "usage")
        .map(|e| e["input_tokens"].as_u64().unwrap())
        .sum();
    let metered = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(metered["input_tokens"], 520, "{metered}");
    assert_eq!(reported, 520, "{events:?}");
}
