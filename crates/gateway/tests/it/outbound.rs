//! Outbound translation: Chat Completions callers answered by an `anthropic` and a `gemini`
//! provider, and Gemini callers by an `anthropic` provider (two hops, through Chat), whole
//! and streamed, with tool calls and their results paired by id, usage metered on the
//! provider's own figures, the budget's cap in the provider's own field, upstream errors in
//! the caller's shape, and the real key only in the provider's own header.

use gateway::{ApiKey, Budgets, Limit, ModelRoute, Notice, Options, Provider, ProviderKind};
use modelfixture::Step;
use serde_json::{Value, json};

use crate::{PRICES, REAL_KEY, Setup, TOKEN, chat_body, json_of, usage_of};

/// Adds the provider `google` (kind `gemini`, at the fixture's `/v1beta`) and its alias `gem`.
fn with_gemini(options: &mut Options) {
    let fixture_v1 = options.providers[0].base_url.clone();
    let base = format!("{}/v1beta", fixture_v1.trim_end_matches("/v1"));
    options.providers.push(Provider {
        name: "google".into(),
        kind: ProviderKind::Gemini,
        base_url: base,
        api_key: Some(ApiKey::new(REAL_KEY)),
        quota_pause: gateway::DEFAULT_QUOTA_PAUSE,
        responses: false,
    });
    options.models.push(ModelRoute {
        alias: "gem".into(),
        provider: "google".into(),
        upstream_model: "gemini-upstream-1".into(),
        prices: PRICES,
        fallback: None,
    });
}

async fn setup(steps: Vec<Step>) -> Setup {
    Setup::with_options(steps, Budgets::default(), with_gemini).await
}

/// The JSON `data:` payloads of an event stream, `[DONE]` left out.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| d.trim() != "[DONE]")
        .map(|d| serde_json::from_str(d.trim()).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

/// The text of a Chat Completions stream.
fn chat_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// A Chat stream's tool calls, their pieces joined: (id, name, arguments) per index.
fn chat_calls(chunks: &[Value]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for chunk in chunks {
        for call in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            if calls.len() <= index {
                calls.resize(index + 1, Default::default());
            }
            let entry = &mut calls[index];
            if let Some(id) = call["id"].as_str() {
                entry.0 = id.to_owned();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                entry.1.push_str(name);
            }
            if let Some(arguments) = call["function"]["arguments"].as_str() {
                entry.2.push_str(arguments);
            }
        }
    }
    calls
}

/// The finish reason of a Chat stream.
fn chat_finish(chunks: &[Value]) -> Option<&str> {
    chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
}

impl Setup {
    /// A Gemini call `/v1beta/models/{target}` with the token in `x-goog-api-key`.
    fn gemini_call(&self, target: &str, body: &Value) -> reqwest::RequestBuilder {
        let origin = self.server.origin().unwrap();
        self.client
            .post(format!("{origin}/v1beta/models/{target}"))
            .header("content-type", "application/json")
            .header("x-goog-api-key", TOKEN)
            .body(body.to_string())
    }

    /// Every request the fixture got carried the real key in the header of the provider it
    /// was for, and nothing of the execution's token.
    fn assert_provider_headers(&self) {
        let requests = self.fixture.requests();
        assert!(!requests.is_empty());
        for r in requests {
            assert!(!r.contains(TOKEN), "the token reached the provider: {r:?}");
            assert_eq!(r.header("authorization"), None, "{:?}", r.headers);
            if r.path.starts_with("/v1beta/") {
                assert_eq!(
                    r.header("x-goog-api-key"),
                    Some(REAL_KEY),
                    "{:?}",
                    r.headers
                );
            } else {
                assert_eq!(r.header("x-api-key"), Some(REAL_KEY), "{:?}", r.headers);
                assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
            }
        }
    }
}

fn write_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "write_file",
        "description": "Writes a file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}
    }}])
}

#[tokio::test]
async fn a_chat_caller_is_answered_by_an_anthropic_provider_whole_and_streamed() {
    let mut s = setup(vec![
        Step::reply("plain answer", 30, 4, 10),
        Step::reply("streamed answer here", 20, 3, 5),
    ])
    .await;
    let mut body = chat_body("sonnet", false);
    body["messages"] = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"}
    ]);
    body["max_tokens"] = json!(200);
    let response = s
        .post("/chat/completions", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let shown = format!("{:?}", response.headers());
    let answer = json_of(response).await;
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "sonnet");
    let choice = &answer["choices"][0];
    assert_eq!(choice["message"]["content"], "plain answer", "{answer}");
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(answer["usage"]["prompt_tokens"], 30);
    assert_eq!(answer["usage"]["completion_tokens"], 4);
    assert_eq!(
        answer["usage"]["prompt_tokens_details"]["cached_tokens"],
        10
    );
    assert!(!answer.to_string().contains(REAL_KEY) && !shown.contains(REAL_KEY));
    let usage = usage_of(s.notice().await);
    assert_eq!(
        (usage.tokens.input, usage.tokens.output, usage.tokens.cached),
        (30, 4, 10)
    );
    assert!(usage.complete);
    assert_eq!(usage.model, "sonnet");
    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    let sent = sent.json().unwrap();
    assert_eq!(sent["model"], "claude-upstream-1");
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "Be brief."}])
    );
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}])
    );
    assert_eq!(sent["max_tokens"], 200);

    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("sonnet", true))
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
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let chunks = events(&text);
    assert_eq!(chat_text(&chunks), "streamed answer here");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chat_finish(&chunks), Some("stop"));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]), "the usage comes last: {text}");
    assert_eq!(last["usage"]["prompt_tokens"], 20);
    assert_eq!(last["usage"]["completion_tokens"], 3);
    let usage = usage_of(s.notice().await);
    assert_eq!(
        (usage.tokens.input, usage.tokens.output, usage.tokens.cached),
        (20, 3, 5)
    );
    assert!(usage.complete, "settled on the provider's own final figure");
    let sent = s.fixture.requests()[1].json().unwrap();
    assert_eq!(sent["stream"], true);
    // Anthropic needs `max_tokens`: the gateway's default when the caller names none.
    assert_eq!(sent["max_tokens"], 16_384);
    s.assert_provider_headers();
}

#[tokio::test]
async fn tool_calls_and_their_results_keep_their_ids_through_an_anthropic_provider() {
    let mut s = setup(vec![
        Step::call(
            "I will write.",
            "write_file",
            json!({"path": "a.txt"}),
            20,
            6,
        ),
        Step::reply("done", 40, 1, 0),
    ])
    .await;
    let mut first = chat_body("sonnet", true);
    first["tools"] = write_tool();
    let response = s
        .post("/chat/completions", Some(TOKEN), &first)
        .send()
        .await
        .unwrap();
    let chunks = events(&response.text().await.unwrap());
    assert_eq!(chat_text(&chunks), "I will write.");
    assert_eq!(chat_finish(&chunks), Some("tool_calls"));
    let calls = chat_calls(&chunks);
    assert_eq!(calls.len(), 1, "{chunks:?}");
    let (id, name, arguments) = calls[0].clone();
    assert!(id.starts_with("toolu_"), "the provider's own id: {id}");
    assert_eq!(name, "write_file");
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"path": "a.txt"})
    );
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (20, 6));
    let sent = s.fixture.requests()[0].json().unwrap();
    assert_eq!(sent["tools"][0]["name"], "write_file");
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["path"]["type"],
        "string"
    );

    let second = json!({
        "model": "sonnet",
        "messages": [
            {"role": "user", "content": "Write a.txt"},
            {"role": "assistant", "content": "I will write.", "tool_calls": [
                {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ]},
            {"role": "tool", "tool_call_id": id, "content": "written"}
        ],
        "tools": write_tool()
    });
    let response = s
        .post("/chat/completions", Some(TOKEN), &second)
        .send()
        .await
        .unwrap();
    let answer = json_of(response).await;
    assert_eq!(
        answer["choices"][0]["message"]["content"], "done",
        "{answer}"
    );
    let sent = s.fixture.requests()[1].json().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages[1]["content"],
        json!([
            {"type": "text", "text": "I will write."},
            {"type": "tool_use", "id": id, "name": "write_file", "input": {"path": "a.txt"}}
        ])
    );
    assert_eq!(
        messages[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "written"}
        ]})
    );
    usage_of(s.notice().await);

    // A whole answer carries the call too.
    let mut s = setup(vec![Step::call(
        "",
        "write_file",
        json!({"path": "b"}),
        5,
        2,
    )])
    .await;
    let mut body = chat_body("sonnet", false);
    body["tools"] = write_tool();
    let answer = json_of(
        s.post("/chat/completions", Some(TOKEN), &body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert!(
        call["id"].as_str().unwrap().starts_with("toolu_"),
        "{answer}"
    );
    assert_eq!(call["function"]["arguments"], r#"{"path":"b"}"#);
    usage_of(s.notice().await);
    s.assert_provider_headers();
}

#[tokio::test]
async fn a_chat_caller_is_answered_by_a_gemini_provider_with_a_tool_call_turn() {
    let mut s = setup(vec![
        Step::reply("plain gemini", 11, 2, 3),
        Step::call("Writing.", "write_file", json!({"path": "b.txt"}), 17, 5),
        Step::reply("done", 30, 1, 0),
    ])
    .await;
    let mut body = chat_body("gem", false);
    body["messages"] = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"}
    ]);
    let response = s
        .post("/chat/completions", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    assert_eq!(
        answer["choices"][0]["message"]["content"], "plain gemini",
        "{answer}"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["model"], "gem");
    let usage = usage_of(s.notice().await);
    assert_eq!(
        (usage.tokens.input, usage.tokens.output, usage.tokens.cached),
        (11, 2, 3)
    );
    assert!(usage.complete);
    let sent = &s.fixture.requests()[0];
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-upstream-1:generateContent"
    );
    assert_eq!(
        sent.json().unwrap(),
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]
        })
    );

    let mut first = chat_body("gem", true);
    first["tools"] = write_tool();
    let response = s
        .post("/chat/completions", Some(TOKEN), &first)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let chunks = events(&text);
    assert_eq!(chat_text(&chunks), "Writing.");
    assert_eq!(chat_finish(&chunks), Some("tool_calls"));
    let calls = chat_calls(&chunks);
    assert_eq!(calls.len(), 1, "{text}");
    let (id, name, arguments) = calls[0].clone();
    assert_eq!(name, "write_file");
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"path": "b.txt"})
    );
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 17);
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (17, 5));
    assert!(usage.complete);
    let sent = &s.fixture.requests()[1];
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-upstream-1:streamGenerateContent"
    );
    let declaration = &sent.json().unwrap()["tools"][0]["functionDeclarations"][0];
    assert_eq!(declaration["name"], "write_file");

    let second = json!({
        "model": "gem",
        "messages": [
            {"role": "user", "content": "Write b.txt"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ]},
            {"role": "tool", "tool_call_id": id, "content": "written"}
        ],
        "tools": write_tool()
    });
    let answer = json_of(
        s.post("/chat/completions", Some(TOKEN), &second)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer["choices"][0]["message"]["content"], "done");
    let sent = s.fixture.requests()[2].json().unwrap();
    assert_eq!(
        sent["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "write_file", "args": {"path": "b.txt"}}}]})
    );
    // Gemini pairs a result with its call by name: the name of the call the id named.
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "write_file", "response": {"output": "written"}}}]})
    );
    usage_of(s.notice().await);
    s.assert_provider_headers();
}

#[tokio::test]
async fn a_gemini_caller_is_answered_by_an_anthropic_provider_in_two_hops() {
    let mut s = setup(vec![
        Step::call("", "write_file", json!({"path": "c.txt"}), 25, 7),
        Step::reply("all done", 40, 2, 0),
    ])
    .await;
    let tools = json!([{"functionDeclarations": [{
        "name": "write_file",
        "parameters": {"type": "OBJECT", "properties": {"path": {"type": "STRING"}}}
    }]}]);
    let first = json!({
        "contents": [{"role": "user", "parts": [{"text": "Write c.txt"}]}],
        "tools": tools,
    });
    let response = s
        .gemini_call("sonnet:streamGenerateContent?alt=sse", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let chunks = events(&response.text().await.unwrap());
    let last = chunks.last().unwrap();
    let call = &last["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(
        *call,
        json!({"name": "write_file", "args": {"path": "c.txt"}})
    );
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 25);
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 7);
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (25, 7));
    assert!(usage.complete, "metered on Anthropic's own stream");
    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    let sent = sent.json().unwrap();
    assert_eq!(sent["model"], "claude-upstream-1");
    assert_eq!(sent["stream"], true);
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["path"]["type"],
        "string"
    );

    let second = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "Write c.txt"}]},
            {"role": "model", "parts": [{"functionCall": call.clone()}]},
            {"role": "user", "parts": [{"functionResponse": {
                "name": "write_file", "response": {"output": "written"}
            }}]}
        ],
        "tools": tools,
    });
    let response = s
        .gemini_call("sonnet:generateContent", &second)
        .send()
        .await
        .unwrap();
    let answer = json_of(response).await;
    assert_eq!(
        answer["candidates"][0]["content"]["parts"][0]["text"], "all done",
        "{answer}"
    );
    assert_eq!(answer["usageMetadata"]["promptTokenCount"], 40);
    let sent = s.fixture.requests()[1].json().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{sent}");
    let use_id = messages[1]["content"][0]["id"].as_str().unwrap();
    assert_eq!(messages[1]["content"][0]["input"], json!({"path": "c.txt"}));
    assert_eq!(messages[2]["content"][0]["tool_use_id"], use_id);
    assert_eq!(
        messages[2]["content"][0]["content"],
        r#"{"output":"written"}"#
    );
    usage_of(s.notice().await);

    // countTokens has no Anthropic counterpart on this way: the gateway's estimate answers.
    let counted = s
        .gemini_call("sonnet:countTokens", &first)
        .send()
        .await
        .unwrap();
    assert!(json_of(counted).await["totalTokens"].as_u64().unwrap() > 0);
    assert_eq!(s.fixture.requests().len(), 2);
    s.no_notice();
    s.assert_provider_headers();
}

#[tokio::test]
async fn upstream_errors_come_back_in_the_callers_shape_with_the_status_kept() {
    let refused = |message: &str| Step {
        status: Some(400),
        error_message: Some(message.into()),
        ..Step::default()
    };
    let mut s = setup(vec![
        // A provider that echoes the key in its error gets it scrubbed before translation.
        refused(&format!("bad request, key {REAL_KEY}")),
        refused("bad for gemini callers"),
        Step {
            status: Some(404),
            error_message: Some("no such gemini model".into()),
            ..Step::default()
        },
        Step {
            retry_after_ms: Some(5),
            ..Step::status(429)
        },
        Step::reply("after the wait", 5, 1, 0),
    ])
    .await;
    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("sonnet", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error = json_of(response).await;
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("bad request, key "), "{error}");
    assert!(!message.contains(REAL_KEY), "{error}");

    let response = s
        .gemini_call(
            "sonnet:generateContent",
            &json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error = json_of(response).await;
    assert_eq!(
        error,
        json!({"error": {"code": 400, "message": "bad for gemini callers", "status": "INVALID_ARGUMENT"}})
    );

    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gem", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let error = json_of(response).await;
    assert_eq!(error["error"]["message"], "no such gemini model", "{error}");
    assert_eq!(error["error"]["code"], "model_not_found", "{error}");
    // Refused requests are not billed.
    s.no_notice();

    // A busy provider is waited for and tried again, as on the pass-through path.
    let response = s
        .post(
            "/chat/completions",
            Some(TOKEN),
            &chat_body("sonnet", false),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(matches!(s.notice().await, Notice::Waiting(w) if w.status == 429));
    assert_eq!(usage_of(s.notice().await).tokens.output, 1);
    s.assert_provider_headers();
}

#[tokio::test]
async fn the_budgets_cap_goes_into_the_providers_own_field_whatever_the_caller_asks() {
    let budgets = Budgets {
        execution: Limit {
            max_tokens: Some(1_000),
            max_cost_micros: None,
        },
        ..Budgets::default()
    };
    let mut s = Setup::with_options(
        vec![Step::reply("a", 10, 1, 0), Step::reply("b", 10, 1, 0)],
        budgets,
        with_gemini,
    )
    .await;
    // A hostile agent asks for far more than its budget leaves room for, in both fields.
    let mut body = chat_body("sonnet", false);
    body["max_tokens"] = json!(999_999);
    body["max_completion_tokens"] = json!(888_888);
    let response = s
        .post("/chat/completions", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = s.fixture.requests()[0].json().unwrap();
    let cap = sent["max_tokens"].as_u64().unwrap();
    assert!(cap > 0 && cap < 1_000, "{sent}");
    assert!(sent.get("max_completion_tokens").is_none(), "{sent}");
    usage_of(s.notice().await);

    let mut body = chat_body("gem", false);
    body["max_completion_tokens"] = json!(999_999);
    let response = s
        .post("/chat/completions", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = s.fixture.requests()[1].json().unwrap();
    let cap = sent["generationConfig"]["maxOutputTokens"]
        .as_u64()
        .unwrap();
    assert!(cap > 0 && cap < 1_000, "{sent}");
    usage_of(s.notice().await);
}

#[tokio::test]
async fn a_request_that_cannot_be_translated_is_refused_before_the_provider_and_not_held() {
    let budgets = Budgets {
        execution: Limit {
            max_tokens: Some(2_000),
            max_cost_micros: None,
        },
        ..Budgets::default()
    };
    let mut s = Setup::with_options(vec![Step::reply("fine", 5, 1, 0)], budgets, |o| {
        with_gemini(o);
        // A reservation that was never given back would make the next request wait this
        // long and then be refused as busy.
        o.limits.total_timeout = domain::Duration::from_secs(2);
    })
    .await;
    for bad in [
        json!({"model": "sonnet", "messages": "not a list", "max_tokens": 1_500}),
        json!({"model": "gem", "messages": {"role": "user"}, "max_tokens": 1_500}),
    ] {
        let response = s
            .post("/chat/completions", Some(TOKEN), &bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let error = json_of(response).await;
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`messages` must be a list"),
            "{error}"
        );
    }
    assert!(s.fixture.requests().is_empty());
    s.no_notice();
    let mut body = chat_body("sonnet", false);
    body["max_tokens"] = json!(1_500);
    let response = s
        .post("/chat/completions", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the refused requests hold no budget"
    );
    usage_of(s.notice().await);
}

#[tokio::test]
async fn a_responses_caller_reaches_an_anthropic_provider_in_two_hops() {
    // Codex with only an Anthropic key: Responses into Chat, Chat into Messages, and the
    // answer back the same way.
    let mut s = setup(vec![Step::reply("two hops away", 12, 3, 0)]).await;
    let response = s
        .post(
            "/responses",
            Some(TOKEN),
            &json!({"model": "sonnet", "input": "hi", "max_output_tokens": 100}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    assert_eq!(answer["status"], "completed", "{answer}");
    let text = answer["output"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|part| part["text"].as_str().map(str::to_owned))
        .collect::<String>();
    assert_eq!(text, "two hops away", "{answer}");
    assert!(!answer.to_string().contains(REAL_KEY));
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (12, 3));
    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.json().unwrap()["model"], "claude-upstream-1");
}

#[tokio::test]
async fn a_translated_request_carries_none_of_the_callers_api_headers() {
    let mut s = setup(vec![Step::reply("fine", 5, 1, 0)]).await;
    // A hostile caller picks an Anthropic version and beta for a request it sends as Chat,
    // and a key of its own beside its token.
    let response = s
        .post(
            "/chat/completions",
            Some(TOKEN),
            &chat_body("sonnet", false),
        )
        .header("anthropic-version", "1999-01-01")
        .header("anthropic-beta", "some-beta-2099")
        .header("x-api-key", "agent-chosen-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("anthropic-beta"), None);
    assert_eq!(sent.header("x-api-key"), Some(REAL_KEY));
    assert!(!sent.contains("agent-chosen-key"));
    usage_of(s.notice().await);
}
