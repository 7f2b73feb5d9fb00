//! OpenCode (`opencode-ai`, a native binary) end to end against the scripted model server
//! speaking Chat Completions behind the gateway: its bash tool makes the file, its JSON events
//! become events, its usage is metered, its failures fail the execution, a feedback iteration
//! resumes its session, and it never sees the real key.

use modelfixture::{Script, Step};

use super::*;

fn opencode() -> Option<PathBuf> {
    installed("opencode", "opencode")
}

fn bash(command: &str) -> serde_json::Value {
    serde_json::json!({"command": command, "description": "run a command"})
}

/// The chat requests the fixture received, as JSON.
fn chats(fixture: &modelfixture::Fixture) -> Vec<serde_json::Value> {
    fixture
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .filter_map(|r| r.json())
        .collect()
}

#[test]
fn opencode_writes_a_file_with_its_own_tool_through_the_gateway() {
    let Some(opencode) = opencode() else {
        return;
    };
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "bash",
            bash("printf 'hello from opencode\\n' > hello.txt; env > seen-env.txt"),
            120,
            20,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("opencode", &opencode, script);
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
        "hello from opencode\n"
    );

    let events = agent_events(&repo);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["session", "message", "tool_call", "usage", "result"] {
        assert!(kinds.contains(&kind), "no {kind} among {events:?}");
    }
    let call = events.iter().find(|e| e["kind"] == "tool_call").unwrap();
    assert_eq!(call["name"], "bash", "{call}");
    assert!(
        call["arguments"].as_str().unwrap().contains("hello.txt"),
        "{call}"
    );
    assert_eq!(call["failed"], false, "{call}");
    let result = events.iter().find(|e| e["kind"] == "result").unwrap();
    assert_eq!(result["is_error"], false);
    assert_eq!(result["text"], "Done: wrote hello.txt.");

    // The requests went through the gateway and were metered; what OpenCode reported agrees.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 280, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    let reported: u64 = events
        .iter()
        .filter(|e| e["kind"] == "usage")
        .map(|e| e["input_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(reported, 280, "{events:?}");
    let requests = chats(&fixture);
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests.iter().all(|b| b["model"] == "fx-gpt"),
        "{requests:?}"
    );

    // What it saw: the gateway and an execution token, never the real key.
    let env = repo.git(&["show", "agentgrid/task-1:seen-env.txt"]);
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("OPENAI_API_KEY="))
        .unwrap_or_else(|| panic!("no OPENAI_API_KEY in {env}"));
    assert!(!token.is_empty() && token != REAL_KEY, "{env}");
    assert!(!env.contains(REAL_KEY), "{env}");

    let show = repo.ok(&["task", "show", "1"]);
    assert!(show.contains("tool calls: 1"), "{show}");
    assert!(repo.ok(&["logs", "1"]).contains("tool bash("));
    assert_no_key_anywhere(&repo);
}

#[test]
fn opencode_reaches_an_anthropic_provider_through_the_gateways_translation() {
    let Some(opencode) = opencode() else {
        return;
    };
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "bash",
            bash("printf 'hello via anthropic\\n' > hello.txt"),
            120,
            20,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("opencode", &opencode, script);
    // The only provider speaks Anthropic Messages; OpenCode speaks Chat Completions.
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

    // Both requests reached the provider as Messages, the tool's result paired with the
    // provider's own call id.
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
    assert!(requests.iter().all(|b| b["max_tokens"].as_u64().is_some()));
    let messages = requests[1]["messages"].as_array().unwrap();
    let call = messages
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .find(|b| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use in {messages:?}"));
    let result = messages
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .find(|b| b["type"] == "tool_result")
        .unwrap_or_else(|| panic!("no tool_result in {messages:?}"));
    assert_eq!(call["name"], "bash");
    assert_eq!(result["tool_use_id"], call["id"], "{messages:?}");
    assert!(
        fixture
            .requests()
            .iter()
            .all(|r| r.header("x-api-key") == Some(REAL_KEY)),
        "the real key went as Anthropic's header"
    );

    // Metered on Anthropic's own figures, and shown by `task show`.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 280, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(
        show.contains("(2 request(s); tokens: 280 in, 0 of them cached, 30 out)"),
        "{show}"
    );
    assert!(show.contains("tool calls: 1"), "{show}");
    assert_no_key_anywhere(&repo);
}

#[test]
fn opencode_reaches_a_gemini_provider_through_the_gateways_translation() {
    let Some(opencode) = opencode() else {
        return;
    };
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "bash",
            bash("printf 'hello via gemini\\n' > hello.txt"),
            120,
            20,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("opencode", &opencode, script);
    // The only provider speaks the Gemini API; OpenCode speaks Chat Completions.
    let origin = fixture.base_url().trim_end_matches("/v1").to_owned();
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        config_for("gemini", &origin, "fast", "fx-gem"),
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
        "hello via gemini\n"
    );
    let requests = fixture.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.path == "/v1beta/models/fx-gem:streamGenerateContent"
                && r.header("x-goog-api-key") == Some(REAL_KEY)),
        "{requests:?}"
    );
    // The tool's result went back as a functionResponse named after the call.
    let second = requests[1].json().unwrap();
    let response = second["contents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["parts"].as_array().into_iter().flatten())
        .find_map(|p| p.get("functionResponse"))
        .unwrap_or_else(|| panic!("no functionResponse in {second}"));
    assert_eq!(response["name"], "bash", "{second}");
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 280, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    assert_no_key_anywhere(&repo);
}

#[test]
fn opencode_reporting_an_api_error_fails_the_execution_with_the_reason() {
    let Some(opencode) = opencode() else {
        return;
    };
    an_api_error_fails_the_execution("opencode", &opencode, false, false);
}

#[test]
fn opencode_resumes_its_session_when_validation_sends_it_round_again() {
    let Some(opencode) = opencode() else {
        return;
    };
    let script = Script::new(vec![
        Step::call("Writing.", "bash", bash("echo first > hello.txt"), 100, 10),
        Step::reply("Wrote the first draft.", 120, 10, 0),
        Step::call("Fixing.", "bash", bash("echo second > hello.txt"), 140, 10),
        Step::reply("Wrote the second draft.", 160, 10, 0),
    ]);
    let validator = "  validation:\n    validators:\n      - {name: second, run: \"grep -q second hello.txt\"}\n";
    let (_rt, fixture, repo) = project_with("opencode", &opencode, script, validator);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "second\n"
    );
    let requests = chats(&fixture);
    let history = requests.get(2).expect("a third model request")["messages"].to_string();
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
    let reported: u64 = events
        .iter()
        .filter(|e| e["kind"] == "usage")
        .map(|e| e["input_tokens"].as_u64().unwrap())
        .sum();
    let metered = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(metered["input_tokens"], 520, "{metered}");
    assert_eq!(reported, 520, "{events:?}");
}

#[test]
fn opencode_over_its_task_budget_is_stopped_during_the_run() {
    let Some(opencode) = opencode() else {
        return;
    };
    // The first answer spends nearly all of the task tree's budget; OpenCode's next request
    // (with the tool's result) cannot be reserved and is refused before it reaches the
    // provider, so the run stops there with the budget's reason.
    let script = Script::new(vec![
        Step::call(
            "Writing.",
            "bash",
            bash("echo over budget > hello.txt"),
            59_000,
            30,
        ),
        Step::reply("Never said.", 100, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("opencode", &opencode, script);
    let config = repo.path().join(".agentgrid/config.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("  budgets:\n    per_tree: {tokens: 60000}\n");
    std::fs::write(&config, text).unwrap();
    let out = run(&repo);
    let show = repo.json(&["task", "show", "1", "--json"]);
    let execution = &show["executions"][0];
    assert_eq!(
        execution["state"],
        "budget_exceeded",
        "{execution}\n{}\n{}",
        stdout(&out),
        repo.ok(&["logs", "1", "--raw"])
    );
    let summary = execution["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("task tree budget of 60000 tokens") && summary.contains("59030 used"),
        "{execution}"
    );
    // One request reached the provider; the second was refused at the gateway.
    assert_eq!(chats(&fixture).len(), 1, "{:?}", chats(&fixture));
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 1, "{usage}");
    assert_eq!(usage["input_tokens"], 59_000, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    let spent = usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap();
    assert!(
        spent <= 60_000,
        "the spend stays within the budget: {usage}"
    );
    // The command the first answer asked for ran before the stop, and its file is kept.
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "over budget\n"
    );
    assert_no_key_anywhere(&repo);
}
