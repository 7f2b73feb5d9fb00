//! Gemini CLI (`@google/gemini-cli`, a node script with its bundle beside it) end to end
//! against the scripted model server speaking the Gemini API (`streamGenerateContent` with
//! SSE) behind the gateway: its own tools make the file and run a command, its stream-json
//! becomes events, its usage is metered, a budget stops it, its failures fail the execution,
//! a feedback iteration resumes its session, and it never sees the real key.

use modelfixture::{Script, Step};

use super::*;

fn gemini() -> Option<PathBuf> {
    installed("gemini", "gemini")
}

/// The generate requests the fixture received, as JSON, with the model their path names.
fn generated(fixture: &modelfixture::Fixture) -> Vec<(String, serde_json::Value)> {
    fixture
        .requests()
        .iter()
        .filter(|r| {
            r.path.contains(":streamGenerateContent") || r.path.contains(":generateContent")
        })
        .filter_map(|r| Some((r.path.clone(), r.json()?)))
        .collect()
}

fn write_file(text: &str) -> serde_json::Value {
    serde_json::json!({"file_path": "hello.txt", "content": format!("{text}\n")})
}

#[test]
fn gemini_writes_a_file_and_runs_a_command_with_its_own_tools_through_the_gateway() {
    let Some(gemini) = gemini() else {
        return;
    };
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "write_file",
            write_file("hello from gemini"),
            120,
            20,
        ),
        // What the CLI's shell sees: its environment and its settings, kept on the branch.
        Step::call(
            "Now a look around.",
            "run_shell_command",
            serde_json::json!({
                "command": "env > seen-env.txt; cat \"$HOME/.gemini/settings.json\" > seen-settings.txt",
                "description": "record the environment",
            }),
            140,
            10,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("gemini", &gemini, script);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        repo.task_state(1),
        "done",
        "{}\n{}",
        stdout(&out),
        repo.ok(&["logs", "1", "--raw"])
    );

    // The file was made by the CLI's own tool and committed on the task's branch.
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "hello from gemini\n"
    );

    let events = agent_events(&repo);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["session", "message", "tool_call", "usage", "result"] {
        assert!(kinds.contains(&kind), "no {kind} among {events:?}");
    }
    let calls: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["kind"] == "tool_call").collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["name"], "write_file", "{}", calls[0]);
    assert!(
        calls[0]["arguments"]
            .as_str()
            .unwrap()
            .contains("hello.txt"),
        "{}",
        calls[0]
    );
    assert_eq!(calls[0]["failed"], false, "{}", calls[0]);
    assert_eq!(calls[1]["name"], "run_shell_command", "{}", calls[1]);
    assert_eq!(calls[1]["failed"], false, "{}", calls[1]);
    let result = events.iter().find(|e| e["kind"] == "result").unwrap();
    assert_eq!(result["is_error"], false);
    assert_eq!(result["text"], "Done: wrote hello.txt.");

    // The requests went through the gateway and were metered; what the CLI reported agrees.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 3, "{usage}");
    assert_eq!(usage["input_tokens"], 420, "{usage}");
    assert_eq!(usage["output_tokens"], 40, "{usage}");
    assert!(usage["cost_micros"].as_u64().unwrap() > 0, "{usage}");
    let reported = events.iter().find(|e| e["kind"] == "usage").unwrap();
    assert_eq!(reported["input_tokens"], 420, "{reported}");
    assert_eq!(reported["output_tokens"], 40, "{reported}");
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "warning"
                && e["message"].as_str().unwrap_or("").contains("metered")),
        "{events:?}"
    );
    // The CLI asked for the agent's alias, which the gateway mapped to the upstream model,
    // and sent the tool's result back.
    let requests = generated(&fixture);
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|(path, _)| path.contains("/models/fx-gem:")),
        "{requests:?}"
    );
    assert!(
        requests[1].1["contents"]
            .to_string()
            .contains("functionResponse"),
        "{}",
        requests[1].1
    );

    // What the CLI saw: the gateway's address and an execution token, never the real key;
    // settings that select the key method and turn telemetry off, holding no secret.
    let env = repo.git(&["show", "agentgrid/task-1:seen-env.txt"]);
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {env}"))
            .to_string()
    };
    assert!(
        var("GOOGLE_GEMINI_BASE_URL").starts_with("http://127.0.0.1:"),
        "{env}"
    );
    let token = var("GEMINI_API_KEY");
    assert!(!token.is_empty() && token != REAL_KEY, "{env}");
    assert_eq!(var("GEMINI_CLI_HOME"), var("HOME"), "{env}");
    assert!(!env.contains(REAL_KEY), "{env}");
    let settings = repo.git(&["show", "agentgrid/task-1:seen-settings.txt"]);
    assert!(settings.contains("\"gemini-api-key\""), "{settings}");
    assert!(
        settings.contains("\"usageStatisticsEnabled\": false"),
        "{settings}"
    );
    assert!(!settings.contains(&token), "{settings}");

    let show = repo.ok(&["task", "show", "1"]);
    assert!(show.contains("tool calls: 2"), "{show}");
    assert!(
        show.contains("(3 request(s); tokens: 420 in, 0 of them cached, 40 out)"),
        "{show}"
    );
    let logs = repo.ok(&["logs", "1"]);
    assert!(logs.contains("tool write_file("), "{logs}");
    assert!(!logs.contains("\"type\":\"tool_use\""), "{logs}");
    assert!(
        repo.ok(&["logs", "1", "--raw"])
            .contains("\"type\":\"result\"")
    );

    assert_no_key_anywhere(&repo);
}

#[test]
fn gemini_reaches_an_anthropic_provider_through_chat_completions() {
    let Some(gemini) = gemini() else {
        return;
    };
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "write_file",
            write_file("hello via anthropic"),
            120,
            20,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("gemini", &gemini, script);
    // The only provider speaks Anthropic Messages: the Gemini API goes there in two hops.
    let origin = fixture.base_url().trim_end_matches("/v1").to_owned();
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        config_for("anthropic", &origin, "fast", "fx-claude"),
    )
    .unwrap();
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        repo.task_state(1),
        "done",
        "{}\n{}",
        stdout(&out),
        repo.ok(&["logs", "1", "--raw"])
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "hello via anthropic\n"
    );
    let requests: Vec<serde_json::Value> = fixture
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/messages")
        .filter_map(|r| r.json())
        .collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests.iter().all(|b| b["model"] == "fx-claude"),
        "{requests:?}"
    );
    let blocks: Vec<&serde_json::Value> = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .collect();
    let call = blocks
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("the call");
    let result = blocks
        .iter()
        .find(|b| b["type"] == "tool_result")
        .expect("its result");
    assert_eq!(call["name"], "write_file");
    assert_eq!(result["tool_use_id"], call["id"], "{blocks:?}");
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 280, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(
        show.contains("(2 request(s); tokens: 280 in, 0 of them cached, 30 out)"),
        "{show}"
    );
    assert_no_key_anywhere(&repo);
}

#[test]
fn gemini_reporting_an_api_error_fails_the_execution_with_the_reason() {
    let Some(gemini) = gemini() else {
        return;
    };
    an_api_error_fails_the_execution("gemini", &gemini, true, true);
}

#[test]
fn gemini_over_its_execution_budget_is_stopped() {
    let Some(gemini) = gemini() else {
        return;
    };
    // Gemini CLI's requests are large (its system prompt and tool declarations come to some
    // 17k tokens by the gateway's estimate), so the budget lets the first one through; its
    // answer spends nearly all of it, and the CLI's next request (with the tool's result) is
    // refused before it reaches the provider.
    let script = Script::new(vec![
        Step::call(
            "Writing.",
            "write_file",
            write_file("over budget"),
            19_000,
            30,
        ),
        Step::reply("Never said.", 100, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("gemini", &gemini, script);
    let config = repo.path().join(".agentgrid/config.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("  budgets:\n    per_execution: {tokens: 20000}\n");
    std::fs::write(&config, text).unwrap();
    let out = run(&repo);
    let show = repo.json(&["task", "show", "1", "--json"]);
    let execution = &show["executions"][0];
    assert_eq!(
        execution["state"],
        "budget_exceeded",
        "{execution}\n{}",
        stdout(&out)
    );
    let summary = execution["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("execution budget of 20000 tokens") && summary.contains("19030 used"),
        "{execution}"
    );
    assert_eq!(generated(&fixture).len(), 1, "{:?}", generated(&fixture));
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 1, "{usage}");
    assert_eq!(usage["input_tokens"], 19_000, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    // The file the first answer asked for was written before the stop, and kept.
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "over budget\n"
    );
    assert_no_key_anywhere(&repo);
}

#[test]
fn gemini_resumes_its_session_when_validation_sends_it_round_again() {
    let Some(gemini) = gemini() else {
        return;
    };
    let script = Script::new(vec![
        Step::call("Writing.", "write_file", write_file("first"), 100, 10),
        Step::reply("Wrote the first draft.", 120, 10, 0),
        Step::call("Fixing.", "write_file", write_file("second"), 140, 10),
        Step::reply("Wrote the second draft.", 160, 10, 0),
    ]);
    let validator = "  validation:\n    validators:\n      - {name: second, run: \"grep -q second hello.txt\"}\n";
    let (_rt, fixture, repo) = project_with("gemini", &gemini, script, validator);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "second\n"
    );
    // The second iteration's first request carries the first iteration's conversation.
    let requests = generated(&fixture);
    let history = requests.get(2).expect("a third model request").1["contents"].to_string();
    assert!(history.contains("Wrote the first draft."), "{history}");
    assert!(history.contains("Feedback on the work so far"), "{history}");
    let events = agent_events(&repo);
    let sessions: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "session")
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0], sessions[1], "the same session, resumed");
    // Each run reports its own usage; together they add up to what the gateway metered.
    let reported: u64 = events
        .iter()
        .filter(|e| e["kind"] == "usage")
        .map(|e| e["input_tokens"].as_u64().unwrap())
        .sum();
    let metered = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(metered["input_tokens"], 520, "{metered}");
    assert_eq!(reported, 520, "{events:?}");
}
