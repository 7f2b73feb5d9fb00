//! Real CLIs in front of a provider that does not speak their API: the gateway translates
//! Claude Code's Anthropic Messages (and Codex's Responses) into Chat Completions for an
//! `openai` (or `openai-compatible`) provider, and on into Anthropic Messages for an
//! `anthropic` one, and the answers, tool calls included, back.

use modelfixture::{Script, Step};

use super::*;

/// A project like [`project`]'s, whose one provider is the fixture as `kind` at its `/v1`.
fn project_on(
    runtime_type: &str,
    program: &std::path::Path,
    script: Script,
    kind: &str,
) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    let (runtime, fixture, repo) = project(runtime_type, program, script);
    let config = config_for(kind, &fixture.base_url(), "fast", "fx-chat");
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), config).unwrap();
    (runtime, fixture, repo)
}

#[test]
fn claude_code_writes_a_file_through_an_openai_provider_speaking_chat_completions() {
    let Some(claude) = installed("claude", "claude") else {
        return;
    };
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "Bash",
            serde_json::json!({"command": "printf 'hello through chat\\n' > hello.txt", "description": "write hello.txt"}),
            120,
            20,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project_on("claude", &claude, script, "openai");
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));

    // The file was made by Claude Code's own Bash tool and committed on the task's branch.
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "hello through chat\n"
    );
    let events = agent_events(&repo);
    let call = events.iter().find(|e| e["kind"] == "tool_call").unwrap();
    assert_eq!(call["name"], "Bash", "{call}");
    assert_eq!(call["failed"], false, "{call}");
    let result = events.iter().find(|e| e["kind"] == "result").unwrap();
    assert_eq!(result["text"], "Done: wrote hello.txt.");

    // Every model request reached the provider as Chat Completions, the tool's result paired
    // with its call by id.
    let requests = fixture.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.path, "/v1/chat/completions", "{:?}", r.path);
    }
    let bodies: Vec<serde_json::Value> = requests.iter().filter_map(|r| r.json()).collect();
    assert!(bodies.iter().all(|b| b["model"] == "fx-chat"), "{bodies:?}");
    let last = bodies.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .clone();
    let asked = last
        .iter()
        .find_map(|m| m["tool_calls"][0]["id"].as_str())
        .expect("the call is in the history");
    assert!(
        last.iter()
            .any(|m| m["role"] == "tool" && m["tool_call_id"] == asked),
        "{last:?}"
    );

    // Metered from the provider's own Chat Completions answers.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 280, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(show.contains("2 request(s); tokens: 280 in"), "{show}");
    assert_no_key_anywhere(&repo);
}

#[test]
fn codex_writes_a_file_through_a_compatible_server_that_serves_only_chat_completions() {
    let Some(codex) = installed("codex", "codex") else {
        return;
    };
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "exec_command",
            serde_json::json!({"cmd": "printf 'hello from codex via chat\\n' > hello.txt"}),
            120,
            20,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project_on("codex", &codex, script, "openai-compatible");
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "hello from codex via chat\n"
    );
    let requests = fixture.requests();
    let model_requests: Vec<_> = requests.iter().filter(|r| r.path != "/v1/models").collect();
    assert!(!model_requests.is_empty());
    for r in &model_requests {
        assert_eq!(r.path, "/v1/chat/completions", "{:?}", r.path);
    }
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 280, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    assert_no_key_anywhere(&repo);
}

#[test]
fn codex_writes_a_file_through_an_anthropic_provider_in_two_hops() {
    // Codex with only an Anthropic key: its Responses go into Chat Completions and on into
    // Anthropic Messages, and the answers, the tool call included, come back the same way.
    let Some(codex) = installed("codex", "codex") else {
        return;
    };
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "exec_command",
            serde_json::json!({"cmd": "printf 'hello from codex via anthropic\\n' > hello.txt"}),
            120,
            20,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project_on("codex", &codex, script, "anthropic");
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "hello from codex via anthropic\n"
    );
    let requests = fixture.requests();
    let model_requests: Vec<_> = requests.iter().filter(|r| r.path != "/v1/models").collect();
    assert!(!model_requests.is_empty());
    for r in &model_requests {
        assert_eq!(r.path, "/v1/messages", "{:?}", r.path);
    }
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 280, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    assert_no_key_anywhere(&repo);
}
