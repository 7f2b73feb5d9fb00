//! The Gemini API through the gateway: `generateContent`, `streamGenerateContent?alt=sse` and
//! `countTokens`, with the execution token in `x-goog-api-key` or `key=`, in front of a
//! `gemini` provider; model names that match no alias; and 404s for unknown paths in the
//! caller's own format.

use gateway::{ApiKey, Budgets, Limit, ModelRoute, Notice, Options, Provider, ProviderKind};
use modelfixture::Step;
use serde_json::{Value, json};

use crate::{PRICES, REAL_KEY, Setup, TOKEN, json_of, usage_of};

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

async fn gemini_setup(steps: Vec<Step>, budgets: Budgets) -> Setup {
    Setup::with_options(steps, budgets, with_gemini).await
}

fn contents(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

impl Setup {
    /// A Gemini call `/v1beta/models/{target}` (`gem:generateContent` …) with the token in
    /// `x-goog-api-key`, as Gemini CLI sends it.
    fn gemini(&self, target: &str, body: &Value) -> reqwest::RequestBuilder {
        let origin = self.server.origin().unwrap();
        self.client
            .post(format!("{origin}/v1beta/models/{target}"))
            .header("content-type", "application/json")
            .header("x-goog-api-key", TOKEN)
            .body(body.to_string())
    }

    /// Asserts that the fixture got only the real key, as `x-goog-api-key`, and never the
    /// token.
    fn assert_google_key(&self) {
        let requests = self.fixture.requests();
        assert!(!requests.is_empty());
        for r in requests {
            assert!(!r.contains(TOKEN), "the token reached the provider: {r:?}");
            assert_eq!(
                r.header("x-goog-api-key"),
                Some(REAL_KEY),
                "{:?}",
                r.headers
            );
            assert_eq!(r.header("authorization"), None);
        }
    }
}

/// The text of a Gemini response or stream chunk.
fn text_of(response: &Value) -> String {
    response["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect()
}

/// The `data:` payloads of a server-sent event stream.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

#[tokio::test]
async fn generate_content_reaches_a_gemini_provider_with_the_real_key_and_is_metered() {
    let mut s = gemini_setup(
        vec![Step::reply("hello from gemini", 30, 4, 10)],
        Budgets::default(),
    )
    .await;
    let response = s
        .gemini("gem:generateContent", &contents("Say hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let shown = format!("{:?}", response.headers());
    let body = json_of(response).await;
    assert_eq!(text_of(&body), "hello from gemini");
    assert_eq!(body["candidates"][0]["finishReason"], "STOP");
    assert!(!body.to_string().contains(REAL_KEY) && !shown.contains(REAL_KEY));
    let usage = usage_of(s.notice().await);
    assert_eq!(
        (usage.tokens.input, usage.tokens.output, usage.tokens.cached),
        (30, 4, 10)
    );
    assert!(usage.complete);
    assert_eq!(usage.model, "gem");
    let requests = s.fixture.requests();
    assert_eq!(
        requests[0].path,
        "/v1beta/models/gemini-upstream-1:generateContent"
    );
    // The body goes on as it came: the model is in the URL.
    assert_eq!(requests[0].json().unwrap(), contents("Say hello"));
    s.assert_google_key();
}

#[tokio::test]
async fn a_stream_with_the_key_in_the_query_passes_event_by_event_and_settles_on_the_final_chunk() {
    let mut s = gemini_setup(
        vec![Step::reply("one two three", 12, 3, 0)],
        Budgets::default(),
    )
    .await;
    let origin = s.server.origin().unwrap();
    let response = s
        .client
        .post(format!(
            "{origin}/v1beta/models/gem:streamGenerateContent?alt=sse&key={TOKEN}"
        ))
        .header("content-type", "application/json")
        .body(contents("Count").to_string())
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
    let body = response.text().await.unwrap();
    let chunks = events(&body);
    assert_eq!(chunks.len(), 4, "{body}");
    let text: String = chunks.iter().map(text_of).collect();
    assert_eq!(text, "one two three");
    assert_eq!(chunks[3]["candidates"][0]["finishReason"], "STOP");
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (12, 3));
    assert!(usage.complete, "settled on the provider's final figure");
    let request = &s.fixture.requests()[0];
    assert_eq!(
        request.path,
        "/v1beta/models/gemini-upstream-1:streamGenerateContent"
    );
    s.assert_google_key();
}

#[tokio::test]
async fn a_function_call_turn_goes_both_ways() {
    let mut s = gemini_setup(
        vec![
            Step::call(
                "",
                "write_file",
                json!({"path": "a.txt", "content": "hi"}),
                20,
                6,
            ),
            Step::reply("done", 40, 1, 0),
        ],
        Budgets::default(),
    )
    .await;
    let tools = json!([{"functionDeclarations": [{
        "name": "write_file",
        "description": "Writes a file",
        "parameters": {"type": "OBJECT", "properties": {"path": {"type": "STRING"}}}
    }]}]);
    let mut first = contents("Write a.txt");
    first["tools"] = tools.clone();
    let response = s
        .gemini("gem:streamGenerateContent?alt=sse", &first)
        .send()
        .await
        .unwrap();
    let chunks = events(&response.text().await.unwrap());
    let call = &chunks.last().unwrap()["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "write_file");
    assert_eq!(call["args"]["path"], "a.txt");
    usage_of(s.notice().await);

    let second = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "Write a.txt"}]},
            {"role": "model", "parts": [{"functionCall": call.clone()}]},
            {"role": "user", "parts": [{"functionResponse": {
                "name": "write_file", "response": {"output": "written"}
            }}]}
        ],
        "tools": tools,
    });
    let response = s
        .gemini("gem:generateContent", &second)
        .send()
        .await
        .unwrap();
    assert_eq!(text_of(&json_of(response).await), "done");
    assert_eq!(s.fixture.requests()[1].json().unwrap(), second);
    usage_of(s.notice().await);
}

#[tokio::test]
async fn count_tokens_is_free_and_unmetered() {
    let mut s = gemini_setup(vec![], Budgets::default()).await;
    let response = s
        .gemini("gem:countTokens", &contents("How many?"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert!(body["totalTokens"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(
        s.fixture.requests()[0].path,
        "/v1beta/models/gemini-upstream-1:countTokens"
    );
    s.no_notice();
    s.assert_google_key();
}

#[tokio::test]
async fn over_budget_a_gemini_caller_is_refused_in_geminis_error_shape_and_the_cap_is_set() {
    let budgets = Budgets {
        execution: Limit {
            max_tokens: Some(100),
            max_cost_micros: None,
        },
        ..Budgets::default()
    };
    let mut s = gemini_setup(
        vec![
            Step::reply("spent", 90, 20, 0),
            Step::reply("never", 1, 1, 0),
        ],
        budgets,
    )
    .await;
    let mut body = contents("Spend");
    body["generationConfig"] = json!({"temperature": 0.5});
    let first = s.gemini("gem:generateContent", &body).send().await.unwrap();
    assert_eq!(first.status(), 200);
    // The output cap is written into Gemini's own nested field, the rest kept.
    let sent = s.fixture.requests()[0].json().unwrap();
    let cap = sent["generationConfig"]["maxOutputTokens"]
        .as_u64()
        .unwrap();
    assert!(cap > 0 && cap < 100, "{sent}");
    assert_eq!(sent["generationConfig"]["temperature"], 0.5);
    usage_of(s.notice().await);

    let refused = s
        .gemini("gem:streamGenerateContent?alt=sse", &contents("More"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let error = json_of(refused).await;
    assert_eq!(error["error"]["code"], 429, "{error}");
    assert_eq!(error["error"]["status"], "RESOURCE_EXHAUSTED", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the execution budget of 100 tokens is used up"),
        "{error}"
    );
    assert!(matches!(s.notice().await, Notice::BudgetExceeded(_)));
    assert_eq!(
        s.fixture.requests().len(),
        1,
        "the refusal never went upstream"
    );
}

#[tokio::test]
async fn a_token_that_is_not_an_executions_is_refused_and_the_real_key_is_never_shown() {
    let s = gemini_setup(vec![Step::reply("x", 1, 1, 0)], Budgets::default()).await;
    let origin = s.server.origin().unwrap();
    let response = s
        .client
        .post(format!("{origin}/v1beta/models/gem:generateContent"))
        .header("x-goog-api-key", "not-a-token")
        .body(contents("hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let error = json_of(response).await;
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED", "{error}");
    assert!(s.fixture.requests().is_empty());

    // A provider that refuses the node's key gets no word of it to the agent.
    let s = Setup::with_options(vec![], Budgets::default(), |o| {
        with_gemini(o);
        o.providers[2].api_key = Some(ApiKey::new("sk-wrong-node-key-1234"));
    })
    .await;
    let response = s
        .gemini("gem:generateContent", &contents("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(!text.contains("sk-wrong-node-key-1234") && !text.contains(REAL_KEY));
    assert!(text.contains("UNAVAILABLE"), "{text}");
}

#[tokio::test]
async fn a_model_name_that_matches_no_alias_goes_to_the_executions_alias_and_is_recorded() {
    let mut s = gemini_setup(vec![Step::reply("mapped", 5, 1, 0)], Budgets::default()).await;
    let mut own = crate::identity(2, 2, "gemini-agent", Budgets::default());
    own.models = Some(vec!["gem".into()]);
    s.gateway.registry().register("agx-mapped-token-9", own);
    let origin = s.server.origin().unwrap();
    let response = s
        .client
        .post(format!(
            "{origin}/v1beta/models/gemini-2.5-pro:generateContent"
        ))
        .header("x-goog-api-key", "agx-mapped-token-9")
        .body(contents("hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(text_of(&json_of(response).await), "mapped");
    match s.notice().await {
        Notice::Fallback(f) => {
            assert_eq!(f.model, "gemini-2.5-pro");
            assert_eq!(f.fallback, "gem");
            assert!(f.reason.contains("matches no alias"), "{}", f.reason);
        }
        other => panic!("expected the mapping to be recorded, got {other:?}"),
    }
    assert_eq!(usage_of(s.notice().await).model, "gem");
    assert_eq!(
        s.fixture.requests()[0].path,
        "/v1beta/models/gemini-upstream-1:generateContent"
    );

    // Without an alias of its own and with several aliases and none named `default`, an
    // unknown model is still refused, naming the models there are.
    let refused = s
        .gemini("gemini-2.5-pro:generateContent", &contents("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let error = json_of(refused).await;
    assert_eq!(error["error"]["status"], "NOT_FOUND");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gem, gpt, sonnet"),
        "{error}"
    );
}

#[tokio::test]
async fn a_node_alias_named_default_takes_unknown_model_names() {
    let mut s = Setup::with_options(vec![Step::reply("hi", 5, 1, 0)], Budgets::default(), |o| {
        with_gemini(o);
        o.models[2].alias = "default".into();
    })
    .await;
    let response = s
        .post(
            "/chat/completions",
            Some(TOKEN),
            &crate::chat_body("gpt-4o", false),
        )
        .send()
        .await
        .unwrap();
    // `default` is served by the Gemini provider, reached from Chat Completions by
    // translation: the mapping is recorded, and the answer comes from there.
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    assert_eq!(answer["choices"][0]["message"]["content"], "hi", "{answer}");
    assert!(matches!(s.notice().await, Notice::Fallback(f) if f.fallback == "default"));
    assert_eq!(usage_of(s.notice().await).model, "default");
    assert_eq!(
        s.fixture.requests()[0].path,
        "/v1beta/models/gemini-upstream-1:generateContent"
    );
}

#[tokio::test]
async fn an_unknown_path_is_a_404_in_the_callers_format_naming_the_endpoints() {
    let s = gemini_setup(vec![], Budgets::default()).await;
    let origin = s.server.origin().unwrap();
    let check_message = |error: &Value, path: &str, message: &str| {
        assert!(message.contains(path), "{error}");
        assert!(message.contains("/v1/chat/completions"), "{error}");
        assert!(message.contains("streamGenerateContent"), "{error}");
    };

    let openai = s
        .client
        .post(format!("{origin}/v1/embeddings"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(openai.status(), 404);
    let error = json_of(openai).await;
    assert_eq!(error["error"]["code"], "unknown_url", "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    check_message(
        &error,
        "/v1/embeddings",
        error["error"]["message"].as_str().unwrap(),
    );

    let anthropic = s
        .client
        .post(format!("{origin}/v1/complete"))
        .header("x-api-key", TOKEN)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 404);
    let error = json_of(anthropic).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "not_found_error", "{error}");
    check_message(
        &error,
        "/v1/complete",
        error["error"]["message"].as_str().unwrap(),
    );

    for path in ["/v1beta/models/gem:embedContent", "/v1beta/cachedContents"] {
        let gemini = s
            .client
            .post(format!("{origin}{path}"))
            .header("x-goog-api-key", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(gemini.status(), 404);
        let error = json_of(gemini).await;
        assert_eq!(error["error"]["code"], 404, "{error}");
        assert_eq!(error["error"]["status"], "NOT_FOUND", "{error}");
        check_message(&error, path, error["error"]["message"].as_str().unwrap());
    }
    assert!(s.fixture.requests().is_empty());
}

#[tokio::test]
async fn a_gemini_caller_is_answered_by_an_openai_provider_through_translation() {
    let mut s = gemini_setup(
        vec![
            Step::reply("plain answer", 11, 2, 0),
            Step::reply("streamed answer here", 13, 3, 4),
            Step::call("", "write_file", json!({"path": "b.txt"}), 17, 5),
        ],
        Budgets::default(),
    )
    .await;
    let mut body = contents("Say hello");
    body["systemInstruction"] = json!({"parts": [{"text": "Be brief."}]});
    let response = s.gemini("gpt:generateContent", &body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    assert_eq!(text_of(&answer), "plain answer");
    assert_eq!(answer["usageMetadata"]["promptTokenCount"], 11);
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (11, 2));
    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    let sent = sent.json().unwrap();
    assert_eq!(sent["model"], "gpt-upstream-1");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "user", "content": "Say hello"})
    );

    let response = s
        .gemini("gpt:streamGenerateContent?alt=sse", &contents("Stream"))
        .send()
        .await
        .unwrap();
    let chunks = events(&response.text().await.unwrap());
    let text: String = chunks.iter().map(text_of).collect();
    assert_eq!(text, "streamed answer here");
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["cachedContentTokenCount"], 4);
    let usage = usage_of(s.notice().await);
    assert_eq!(
        (usage.tokens.input, usage.tokens.output, usage.tokens.cached),
        (13, 3, 4)
    );
    assert!(usage.complete);
    assert_eq!(s.fixture.requests()[1].json().unwrap()["stream"], true);

    let mut first = contents("Write b.txt");
    first["tools"] = json!([{"functionDeclarations": [{
        "name": "write_file",
        "parametersJsonSchema": {"type": "object", "properties": {"path": {"type": "string"}}}
    }]}]);
    let response = s
        .gemini("gpt:streamGenerateContent?alt=sse", &first)
        .send()
        .await
        .unwrap();
    let chunks = events(&response.text().await.unwrap());
    let call = &chunks.last().unwrap()["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(
        *call,
        json!({"name": "write_file", "args": {"path": "b.txt"}})
    );
    let sent = s.fixture.requests()[2].json().unwrap();
    assert_eq!(sent["tools"][0]["function"]["name"], "write_file");
    usage_of(s.notice().await);

    // countTokens has no OpenAI counterpart: the gateway's estimate answers, nothing upstream.
    let counted = s
        .gemini("gpt:countTokens", &contents("count"))
        .send()
        .await
        .unwrap();
    assert!(json_of(counted).await["totalTokens"].as_u64().unwrap() > 0);
    assert_eq!(s.fixture.requests().len(), 3);
    s.assert_key_handling();
}
