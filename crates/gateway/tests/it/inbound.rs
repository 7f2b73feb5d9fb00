//! Anthropic Messages and OpenAI Responses callers answered by providers reached through Chat
//! Completions: a Messages caller (Claude Code) in front of an `openai` provider, a Responses
//! caller (Codex) in front of an `openai-compatible` server that serves no Responses API;
//! tool calls and their results paired across the translation, usage metered from the
//! provider's own answer, errors in the caller's shape, and the real key nowhere in an answer.

use gateway::{ApiKey, Budgets, Limit, ModelRoute, Options, Provider, ProviderKind};
use modelfixture::Step;
use serde_json::{Value, json};

use crate::{PRICES, REAL_KEY, Setup, TOKEN, json_of, usage_of};

/// Adds the `openai-compatible` providers `local` (Chat Completions only) and `vllm` (which
/// serves the Responses API too), with the aliases of the same names.
fn with_compatible(options: &mut Options) {
    let base = options.providers[0].base_url.clone();
    for (name, responses) in [("local", false), ("vllm", true)] {
        options.providers.push(Provider {
            name: name.into(),
            kind: ProviderKind::OpenAiCompatible,
            base_url: base.clone(),
            api_key: Some(ApiKey::new(REAL_KEY)),
            quota_pause: gateway::DEFAULT_QUOTA_PAUSE,
            responses,
        });
        options.models.push(ModelRoute {
            alias: name.into(),
            provider: name.into(),
            upstream_model: format!("{name}-upstream-1"),
            prices: PRICES,
            fallback: None,
        });
    }
}

async fn setup(steps: Vec<Step>, budgets: Budgets) -> Setup {
    Setup::with_options(steps, budgets, with_compatible).await
}

/// The named events of a server-sent event stream: (event, data).
fn named_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut kind = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = k.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d)
                        .unwrap_or_else(|err| panic!("not JSON ({err}): {d}"));
                }
            }
            assert_eq!(data["type"], kind.as_str(), "{e}");
            (kind, data)
        })
        .collect()
}

fn kinds(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(k, _)| k.as_str()).collect()
}

fn write_tool_messages() -> Value {
    json!([{
        "name": "write_file",
        "description": "Writes a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}
    }])
}

fn no_key_in(text: &str) {
    assert!(
        !text.contains(REAL_KEY),
        "the real key is in an answer: {text}"
    );
}

#[tokio::test]
async fn a_messages_caller_reaches_an_openai_provider_with_a_tool_call_turn_and_its_result() {
    let mut s = setup(
        vec![
            Step::call("Writing it.", "write_file", json!({"path": "a.txt"}), 40, 6),
            Step::reply("Done.", 55, 2, 0),
        ],
        Budgets::default(),
    )
    .await;
    let first = json!({
        "model": "gpt",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user", "content": "Write a.txt"}],
        "tools": write_tool_messages()
    });
    let response = s
        .post("/messages", Some(TOKEN), &first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    no_key_in(&format!("{:?}", response.headers()));
    let answer = json_of(response).await;
    no_key_in(&answer.to_string());
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["model"], "gpt");
    assert_eq!(answer["stop_reason"], "tool_use");
    assert_eq!(
        answer["content"][0],
        json!({"type": "text", "text": "Writing it."})
    );
    let call = &answer["content"][1];
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["name"], "write_file");
    assert_eq!(call["input"], json!({"path": "a.txt"}));
    let call_id = call["id"].as_str().unwrap().to_owned();
    assert_eq!(answer["usage"]["input_tokens"], 40);
    assert_eq!(answer["usage"]["output_tokens"], 6);
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (40, 6));
    assert!(usage.complete);

    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    let sent = sent.json().unwrap();
    assert_eq!(sent["model"], "gpt-upstream-1");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "You are terse."})
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "write_file");
    assert_eq!(sent["max_completion_tokens"], 300);

    // The tool result turn: the call goes back as `tool_calls`, its result as the `tool`
    // message of the same id.
    let second = json!({
        "model": "gpt",
        "max_tokens": 300,
        "messages": [
            {"role": "user", "content": "Write a.txt"},
            {"role": "assistant", "content": answer["content"]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call_id, "content": "wrote 1 file"}
            ]}
        ],
        "tools": write_tool_messages()
    });
    let response = s
        .post("/messages", Some(TOKEN), &second)
        .send()
        .await
        .unwrap();
    let answer = json_of(response).await;
    assert_eq!(answer["content"][0]["text"], "Done.");
    assert_eq!(answer["stop_reason"], "end_turn");
    let sent = s.fixture.requests()[1].json().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[1]["tool_calls"][0]["id"], call_id.as_str());
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["arguments"],
        r#"{"path":"a.txt"}"#
    );
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": call_id, "content": "wrote 1 file"})
    );
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (55, 2));
    let totals = s.gateway.registry().execution_totals(usage.execution);
    assert_eq!((totals.requests, totals.tokens.total()), (2, 103));
    s.assert_key_handling();
}

#[tokio::test]
async fn a_messages_stream_from_an_openai_provider_is_the_exact_messages_event_sequence() {
    let budgets = Budgets {
        execution: Limit {
            max_tokens: Some(100_000),
            max_cost_micros: None,
        },
        ..Budgets::default()
    };
    let mut s = setup(
        vec![Step::call(
            "I will write it.",
            "write_file",
            json!({"path": "b.txt"}),
            70,
            9,
        )],
        budgets,
    )
    .await;
    let body = json!({
        "model": "gpt",
        "max_tokens": 500,
        "stream": true,
        "messages": [{"role": "user", "content": "Write b.txt"}],
        "tools": write_tool_messages()
    });
    let response = s
        .post("/messages", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.unwrap();
    no_key_in(&text);
    let events = named_events(&text);
    assert_eq!(
        kinds(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{text}"
    );
    let streamed: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed, "I will write it.");
    let tool = &events[7].1["content_block"];
    assert_eq!(tool["type"], "tool_use");
    assert_eq!(tool["name"], "write_file");
    assert!(tool["id"].as_str().is_some_and(|id| !id.is_empty()));
    let arguments = events[8].1["delta"]["partial_json"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        json!({"path": "b.txt"})
    );
    let delta = &events[10].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 9);
    assert_eq!(delta["usage"]["input_tokens"], 70);

    // Metered from the provider's own Chat Completions stream, and settled.
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (70, 9));
    assert!(usage.complete);
    assert_eq!(s.gateway.registry().requests_under_way(), 0);
    let totals = s.gateway.registry().execution_totals(usage.execution);
    assert_eq!(totals.tokens.total(), 79);
    let sent = s.fixture.requests()[0].json().unwrap();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    s.assert_key_handling();
}

#[tokio::test]
async fn a_responses_caller_reaches_a_chat_only_compatible_server_with_a_call_and_its_output() {
    let mut s = setup(
        vec![
            Step::call("", "shell", json!({"command": ["ls"]}), 33, 4),
            Step::reply("All listed.", 48, 3, 8),
        ],
        Budgets::default(),
    )
    .await;
    let tools = json!([{
        "type": "function", "name": "shell", "description": "Runs a command",
        "parameters": {"type": "object", "properties": {"command": {"type": "array"}}},
        "strict": false
    }]);
    let first = json!({
        "model": "local",
        "instructions": "You are a coding agent.",
        "input": [{"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "List the files"}]}],
        "tools": tools,
        "max_output_tokens": 200
    });
    let response = s
        .post("/responses", Some(TOKEN), &first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    no_key_in(&answer.to_string());
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["status"], "completed");
    let call = &answer["output"][0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "shell");
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"command": ["ls"]})
    );
    assert_eq!(answer["usage"]["input_tokens"], 33);
    assert_eq!(answer["usage"]["total_tokens"], 37);
    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    let sent = sent.json().unwrap();
    assert_eq!(sent["model"], "local-upstream-1");
    // A compatible server reads the older cap field.
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(usage_of(s.notice().await).tokens.input, 33);

    // The call's output, streamed this time.
    let second = json!({
        "model": "local",
        "stream": true,
        "input": [
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "List the files"}]},
            call,
            {"type": "function_call_output", "call_id": call_id, "output": "a.txt\nb.txt"}
        ],
        "tools": tools
    });
    let response = s
        .post("/responses", Some(TOKEN), &second)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    no_key_in(&text);
    let events = named_events(&text);
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ],
        "{text}"
    );
    let item = &events[8].1["item"];
    assert_eq!(item["type"], "message");
    assert_eq!(item["content"][0]["text"], "All listed.");
    let completed = &events[9].1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["usage"]["input_tokens"], 48);
    assert_eq!(completed["usage"]["output_tokens"], 3);
    assert_eq!(
        completed["usage"]["input_tokens_details"]["cached_tokens"],
        8
    );
    let sent = s.fixture.requests()[1].json().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[1]["tool_calls"][0]["id"], call_id.as_str());
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": call_id, "content": "a.txt\nb.txt"})
    );
    let usage = usage_of(s.notice().await);
    assert_eq!(
        (usage.tokens.input, usage.tokens.output, usage.tokens.cached),
        (48, 3, 8)
    );
    assert!(usage.complete);
    s.assert_key_handling();
}

#[tokio::test]
async fn a_responses_stream_with_a_function_call_ends_with_the_call_item_and_completed() {
    let mut s = setup(
        vec![Step::call(
            "Let me look.",
            "shell",
            json!({"command": ["cat", "a.txt"]}),
            21,
            5,
        )],
        Budgets::default(),
    )
    .await;
    let body = json!({"model": "local", "stream": true, "input": "Show a.txt"});
    let response = s
        .post("/responses", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    let events = named_events(&response.text().await.unwrap());
    let done: Vec<&Value> = events
        .iter()
        .filter(|(k, _)| k == "response.output_item.done")
        .map(|(_, d)| &d["item"])
        .collect();
    assert_eq!(done.len(), 2);
    assert_eq!(done[0]["type"], "message");
    assert_eq!(done[1]["type"], "function_call");
    assert_eq!(done[1]["name"], "shell");
    assert_eq!(
        serde_json::from_str::<Value>(done[1]["arguments"].as_str().unwrap()).unwrap(),
        json!({"command": ["cat", "a.txt"]})
    );
    let (last, completed) = events.last().unwrap();
    assert_eq!(last, "response.completed");
    assert_eq!(
        completed["response"]["output"][1]["call_id"],
        done[1]["call_id"]
    );
    assert_eq!(completed["response"]["usage"]["output_tokens"], 5);
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (21, 5));
}

#[tokio::test]
async fn a_compatible_server_that_serves_responses_gets_them_untranslated() {
    let mut s = setup(vec![Step::reply("direct", 9, 1, 0)], Budgets::default()).await;
    let body = json!({"model": "vllm", "input": "Say hello"});
    let response = s
        .post("/responses", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    let answer = json_of(response).await;
    assert_eq!(answer["output"][0]["content"][0]["text"], "direct");
    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(
        sent.json().unwrap(),
        json!({"model": "vllm-upstream-1", "input": "Say hello"})
    );
    usage_of(s.notice().await);
}

#[tokio::test]
async fn upstream_errors_reach_each_caller_in_its_own_shape_with_the_status_kept() {
    let busy = Step {
        retry_after_ms: Some(1),
        ..Step::status(429)
    };
    let mut steps = vec![Step::status(400), Step::status(400)];
    // The gateway waits out 429s itself, up to its attempts: four of them reach the caller.
    steps.extend(std::iter::repeat_n(busy, 4));
    let s = setup(steps, Budgets::default()).await;
    let messages = json!({"model": "gpt", "max_tokens": 10,
                          "messages": [{"role": "user", "content": "hi"}]});
    let response = s
        .post("/messages", Some(TOKEN), &messages)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error = json_of(response).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("400"));

    let responses = json!({"model": "local", "stream": true, "input": "hi"});
    let response = s
        .post("/responses", Some(TOKEN), &responses)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error = json_of(response).await;
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");

    let mut stream = messages.clone();
    stream["stream"] = json!(true);
    let response = s
        .post("/messages", Some(TOKEN), &stream)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let text = response.text().await.unwrap();
    no_key_in(&text);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    // Refused requests are not billed, and each reservation is given back.
    assert_eq!(s.gateway.registry().requests_under_way(), 0);
    assert_eq!(
        s.gateway
            .registry()
            .execution_totals(domain::ExecutionId(1))
            .tokens
            .total(),
        0
    );
    s.assert_key_handling();
}

#[tokio::test]
async fn count_tokens_for_an_openai_provider_is_the_gateways_estimate() {
    let s = setup(vec![], Budgets::default()).await;
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "count me"}]});
    let response = s
        .post("/messages/count_tokens", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let counted = json_of(response).await;
    assert_eq!(
        counted["input_tokens"].as_u64(),
        Some((body.to_string().len() as u64).div_ceil(3))
    );
    assert!(s.fixture.requests().is_empty());
}

#[tokio::test]
async fn a_provider_echoing_the_key_in_an_error_is_scrubbed_before_translation() {
    let echo = Step {
        error_message: Some(format!("the key {REAL_KEY} is not allowed this model")),
        ..Step::status(400)
    };
    let mut s = setup(vec![echo.clone(), echo], Budgets::default()).await;
    let messages = json!({"model": "gpt", "max_tokens": 10,
                          "messages": [{"role": "user", "content": "hi"}]});
    let response = s
        .post("/messages", Some(TOKEN), &messages)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    no_key_in(&text);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("<redacted>"),
        "{error}"
    );
    let response = s
        .post(
            "/responses",
            Some(TOKEN),
            &json!({"model": "local", "input": "hi"}),
        )
        .send()
        .await
        .unwrap();
    no_key_in(&response.text().await.unwrap());
    s.no_notice();
}

#[tokio::test]
async fn a_malformed_request_is_refused_in_the_callers_shape_and_nothing_is_held() {
    let mut s = setup(vec![], Budgets::default()).await;
    let bad = json!({"model": "gpt", "max_tokens": 10, "messages": "not a list"});
    let response = s.post("/messages", Some(TOKEN), &bad).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let error = json_of(response).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`messages` must be a list"),
        "{error}"
    );
    let bad = json!({"model": "local", "input": 42});
    let response = s
        .post("/responses", Some(TOKEN), &bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error = json_of(response).await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`input` must be a string or a list"),
        "{error}"
    );
    assert!(s.fixture.requests().is_empty());
    assert_eq!(s.gateway.registry().requests_under_way(), 0);
    s.no_notice();
}

#[tokio::test]
async fn the_budgets_cap_is_written_into_the_provider_side_field() {
    let budgets = Budgets {
        execution: Limit {
            max_tokens: Some(1_000),
            max_cost_micros: None,
        },
        ..Budgets::default()
    };
    let mut s = setup(
        vec![
            Step::reply("short", 10, 2, 0),
            Step::reply("short", 10, 2, 0),
        ],
        budgets,
    )
    .await;
    // Claude Code asks for far more output than the budget leaves room for.
    let body = json!({"model": "gpt", "max_tokens": 32_000, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let response = s
        .post("/messages", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    let sent = s.fixture.requests()[0].json().unwrap();
    let cap = sent["max_completion_tokens"].as_u64().unwrap();
    assert!(cap < 1_000, "{sent}");
    assert!(sent.get("max_tokens").is_none(), "{sent}");
    usage_of(s.notice().await);

    let body = json!({"model": "local", "max_output_tokens": 32_000, "input": "hi"});
    s.post("/responses", Some(TOKEN), &body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent = s.fixture.requests()[1].json().unwrap();
    assert!(sent["max_tokens"].as_u64().unwrap() < 1_000, "{sent}");
    assert!(sent.get("max_output_tokens").is_none(), "{sent}");
    usage_of(s.notice().await);
}
