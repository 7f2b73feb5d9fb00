//! Each API through the gateway to the fixture, streaming and not: the text arrives intact and
//! as it is produced, and usage and cost are recorded.

use std::time::Duration as StdDuration;

use gateway::Budgets;
use modelfixture::Step;
use serde_json::Value;

use crate::{PRICES, Setup, TOKEN, chat_body, json_of, messages_body, responses_body, usage_of};

/// 100 uncached × $3/M + 20 cached × $0.30/M + 7 out × $15/M = 300 + 6 + 105 millionths.
const COST: u64 = 411;

#[derive(Clone, Copy)]
enum Api {
    Chat,
    Responses,
    Messages,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Chat => "/chat/completions",
            Api::Responses => "/responses",
            Api::Messages => "/messages",
        }
    }

    fn alias(self) -> &'static str {
        match self {
            Api::Messages => "sonnet",
            _ => "gpt",
        }
    }

    fn upstream(self) -> &'static str {
        match self {
            Api::Messages => "claude-upstream-1",
            _ => "gpt-upstream-1",
        }
    }

    fn body(self, stream: bool) -> Value {
        match self {
            Api::Chat => chat_body(self.alias(), stream),
            Api::Responses => responses_body(self.alias(), stream),
            Api::Messages => messages_body(self.alias(), stream),
        }
    }

    /// The text of a complete JSON answer.
    fn text_of_body(self, body: &Value) -> String {
        let text = match self {
            Api::Chat => &body["choices"][0]["message"]["content"],
            Api::Responses => &body["output"][0]["content"][0]["text"],
            Api::Messages => &body["content"][0]["text"],
        };
        text.as_str().expect("the answer has text").to_owned()
    }

    /// The text carried by the complete events in `stream` so far.
    fn text_of_stream(self, stream: &str) -> String {
        let mut text = String::new();
        // Only whole events count; the last one may still be arriving.
        let complete = &stream[..stream.rfind("\n\n").map_or(0, |i| i + 2)];
        for data in complete.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if data == "[DONE]" {
                continue;
            }
            let event: Value = serde_json::from_str(data).expect("each event is JSON");
            let piece = match self {
                Api::Chat => &event["choices"][0]["delta"]["content"],
                Api::Responses if event["type"] == "response.output_text.delta" => &event["delta"],
                Api::Messages if event["type"] == "content_block_delta" => &event["delta"]["text"],
                _ => &Value::Null,
            };
            text.push_str(piece.as_str().unwrap_or(""));
        }
        text
    }
}

async fn answers_whole(api: Api) {
    let mut s = Setup::new(
        vec![Step::reply("Hello there, agent", 120, 7, 20)],
        Budgets::default(),
    )
    .await;
    let response = s
        .post(api.path(), Some(TOKEN), &api.body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = json_of(response).await;
    assert_eq!(api.text_of_body(&body), "Hello there, agent");

    let usage = usage_of(s.notice().await);
    assert_eq!(usage.execution.0, 1);
    assert_eq!(usage.root.0, 1);
    assert_eq!(usage.agent, "claude");
    assert_eq!(usage.model, api.alias());
    assert_eq!(
        (usage.tokens.input, usage.tokens.output, usage.tokens.cached),
        (120, 7, 20)
    );
    assert_eq!(usage.cost_micros, COST);
    assert_eq!(PRICES.cost_micros(120, 7, 20), COST);
    assert!(usage.complete);
    let totals = s.gateway.registry().execution_totals(usage.execution);
    assert_eq!(
        (totals.requests, totals.tokens.total(), totals.cost_micros),
        (1, 127, COST)
    );

    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.path, format!("/v1{}", api.path()));
    let sent_body = sent.json().unwrap();
    assert_eq!(sent_body["model"], api.upstream());
    let mut expected = api.body(false);
    expected["model"] = api.upstream().into();
    assert_eq!(sent_body, expected, "nothing but the model name changed");
    s.assert_key_handling();
}

async fn streams_as_produced(api: Api) {
    let step = Step {
        gate: true,
        ..Step::reply("Hello there, agent", 120, 7, 20)
    };
    let mut s = Setup::new(vec![step], Budgets::default()).await;
    let mut response = s
        .post(api.path(), Some(TOKEN), &api.body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );

    // The fixture sends the first word and then holds the rest until the gate opens, so the
    // first word can only arrive here if the gateway passes the stream on as it comes.
    let mut seen = String::new();
    while api.text_of_stream(&seen).is_empty() {
        let chunk = tokio::time::timeout(StdDuration::from_secs(5), response.chunk())
            .await
            .expect("the first delta arrives while the fixture still holds the rest")
            .unwrap()
            .expect("the stream is still open");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(api.text_of_stream(&seen), "Hello ");
    s.no_notice();

    s.fixture.open_gate();
    while let Some(chunk) = response.chunk().await.unwrap() {
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(api.text_of_stream(&seen), "Hello there, agent");

    let usage = usage_of(s.notice().await);
    assert_eq!(
        (usage.tokens.input, usage.tokens.output, usage.tokens.cached),
        (120, 7, 20)
    );
    assert_eq!(usage.cost_micros, COST);
    assert!(usage.complete);
    assert_eq!(usage.model, api.alias());
    s.no_notice();

    let sent = s.fixture.requests()[0].json().unwrap();
    assert_eq!(sent["model"], api.upstream());
    if let Api::Chat = api {
        assert_eq!(
            sent["stream_options"]["include_usage"], true,
            "a chat stream is asked to end with its usage"
        );
    }
    s.assert_key_handling();
}

#[tokio::test]
async fn chat_completions_answer_whole() {
    answers_whole(Api::Chat).await;
}

#[tokio::test]
async fn responses_answer_whole() {
    answers_whole(Api::Responses).await;
}

#[tokio::test]
async fn messages_answer_whole() {
    answers_whole(Api::Messages).await;
}

#[tokio::test]
async fn chat_completions_stream_as_produced() {
    streams_as_produced(Api::Chat).await;
}

#[tokio::test]
async fn responses_stream_as_produced() {
    streams_as_produced(Api::Responses).await;
}

#[tokio::test]
async fn messages_stream_as_produced() {
    streams_as_produced(Api::Messages).await;
}

#[tokio::test]
async fn a_stream_the_agent_abandons_is_still_counted() {
    let step = Step {
        gate: true,
        ..Step::reply("Hello there, agent", 120, 7, 20)
    };
    let mut s = Setup::new(vec![step], Budgets::default()).await;
    let mut response = s
        .post("/messages", Some(TOKEN), &messages_body("sonnet", true))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("content_block_delta") {
        let chunk = response.chunk().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(response);
    s.no_notice();
    // The gateway reads on after the agent left, and so records the provider's own figures.
    s.fixture.open_gate();
    let usage = usage_of(s.notice().await);
    assert!(usage.complete, "{usage:?}");
    assert_eq!(
        (usage.tokens.input, usage.tokens.output, usage.tokens.cached),
        (120, 7, 20)
    );
    assert_eq!(usage.cost_micros, PRICES.cost_micros(120, 7, 20));
}

#[tokio::test]
async fn count_tokens_is_passed_through_and_costs_nothing() {
    let mut s = Setup::new(vec![], Budgets::default()).await;
    let body = serde_json::json!({
        "model": "sonnet",
        "messages": [{"role": "user", "content": "How many tokens is this?"}]
    });
    let response = s
        .post("/messages/count_tokens", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let counted: Value = json_of(response).await;
    assert!(counted["input_tokens"].as_u64().unwrap() > 0, "{counted}");
    assert_eq!(s.fixture.steps_used(), 0);
    let sent = &s.fixture.requests()[0];
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(sent.json().unwrap()["model"], "claude-upstream-1");
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    s.assert_key_handling();
    // Nothing to record: give a late notice the chance to show up before checking.
    tokio::task::yield_now().await;
    s.no_notice();
}
