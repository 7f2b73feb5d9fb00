//! Budgets that hold while requests are under way: reservations at admission, output caps set
//! to fit, a bound on requests at once per execution, conservative charges for answers whose
//! usage never comes, and idle timeouts.

use domain::{Duration, ExecutionId};
use gateway::{BudgetScope, Budgets, Limit, Notice};
use modelfixture::Step;
use serde_json::{Value, json};

use crate::{Setup, TOKEN, identity, json_of, messages_body, usage_of};

fn tokens(max: u64) -> Budgets {
    Budgets {
        execution: Limit {
            max_tokens: Some(max),
            max_cost_micros: None,
        },
        ..Budgets::default()
    }
}

/// The gateway's estimate of a request's input: a token per three bytes of body.
fn estimate(body: &Value) -> u64 {
    (body.to_string().len() as u64).div_ceil(3)
}

fn chat_stream(max_tokens: u64) -> Value {
    json!({
        "model": "gpt",
        "stream": true,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Write a long answer"}]
    })
}

/// Usage notices until the channel has been quiet, with budget notices counted apart.
async fn drain_notices(s: &mut Setup) -> (Vec<gateway::UsageRecord>, usize) {
    let mut usage = Vec::new();
    let mut refusals = 0;
    while let Ok(Some(notice)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), s.notices.recv()).await
    {
        match notice {
            Notice::Usage(record) => usage.push(record),
            Notice::BudgetExceeded(_) => refusals += 1,
            other => panic!("unexpected notice {other:?}"),
        }
    }
    (usage, refusals)
}

#[tokio::test]
async fn twenty_parallel_streams_never_spend_more_than_the_budget() {
    const BUDGET: u64 = 2_000;
    let step = Step {
        pause_ms: 20,
        ..Step::reply("a long answer indeed", 20, 500, 0)
    };
    let mut s = Setup::new(vec![step; 20], tokens(BUDGET)).await;
    let body = chat_stream(200);
    let calls = (0..20).map(|_| {
        let request = s.post("/chat/completions", Some(TOKEN), &body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, text)
        }
    });
    let answers = futures::future::join_all(calls).await;
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|(status, _)| *status == 429)
        .map(|(_, text)| text)
        .collect();
    assert_eq!(ok + refused.len(), 20, "{answers:?}");
    assert!(!refused.is_empty(), "the budget ran out: {answers:?}");
    assert!(
        refused.iter().all(|t| t.contains("insufficient_quota")),
        "{refused:?}"
    );
    let spent = s.gateway.registry().execution_totals(ExecutionId(1));
    assert!(
        spent.tokens.total() <= BUDGET,
        "{} tokens spent of {BUDGET}",
        spent.tokens.total()
    );
    assert_eq!(spent.requests, ok as u64);
    assert_eq!(s.fixture.requests().len(), ok, "refused requests stay here");
    assert!(
        s.fixture.most_under_way() <= 4,
        "{} requests at once",
        s.fixture.most_under_way()
    );
    let (usage, refusals) = drain_notices(&mut s).await;
    assert_eq!(refusals, 1, "the engine hears of the budget once");
    assert_eq!(
        usage
            .iter()
            .map(|u| u.tokens.input + u.tokens.output)
            .sum::<u64>(),
        spent.tokens.total()
    );
    assert!(usage.iter().all(|u| u.complete));
}

#[tokio::test]
async fn a_request_gets_an_output_cap_that_fits_in_each_wire_format() {
    let steps = vec![Step::reply("ok", 5, 5, 0); 4];
    let s = Setup::new(steps, tokens(1_000)).await;
    let registry = s.gateway.registry().clone();
    registry.register("agx-2", identity(2, 2, "claude", tokens(1_000)));
    registry.register("agx-3", identity(3, 3, "claude", tokens(1_000)));
    registry.register("agx-free", identity(4, 4, "claude", Budgets::default()));

    let chat = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
    let responses = json!({"model": "gpt", "input": "hi"});
    let messages = json!({
        "model": "sonnet", "max_tokens": 5_000,
        "messages": [{"role": "user", "content": "hi"}]
    });
    for (path, token, body) in [
        ("/chat/completions", TOKEN, &chat),
        ("/responses", "agx-2", &responses),
        ("/messages", "agx-3", &messages),
        ("/chat/completions", "agx-free", &chat),
    ] {
        let response = s.post(path, Some(token), body).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", json_of(response).await);
    }
    let sent: Vec<Value> = s
        .fixture
        .requests()
        .iter()
        .map(|r| r.json().unwrap())
        .collect();
    // OpenAI's own chat API takes `max_completion_tokens`; a missing cap is added.
    assert_eq!(sent[0]["max_completion_tokens"], 1_000 - estimate(&chat));
    assert!(sent[0].get("max_tokens").is_none(), "{}", sent[0]);
    assert_eq!(sent[1]["max_output_tokens"], 1_000 - estimate(&responses));
    // A cap larger than the room left is lowered.
    assert_eq!(sent[2]["max_tokens"], 1_000 - estimate(&messages));
    // Without a budget nothing is added.
    assert!(
        sent[3].get("max_completion_tokens").is_none(),
        "{}",
        sent[3]
    );
}

#[tokio::test]
async fn a_cap_named_twice_is_rewritten_wherever_it_appears() {
    let s = Setup::new(vec![Step::reply("ok", 5, 5, 0)], tokens(1_000)).await;
    // A JSON parser upstream takes the last of two equal keys; the gateway must not reserve
    // for the first.
    let body = r#"{"model":"sonnet","max_tokens":20,"max_tokens":900000,"messages":[{"role":"user","content":"hi"}]}"#;
    let response = s
        .client
        .post(s.url("/messages"))
        .header("x-api-key", TOKEN)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = String::from_utf8(s.fixture.requests()[0].body.to_vec()).unwrap();
    assert!(!sent.contains("900000"), "{sent}");
    assert_eq!(sent.matches(r#""max_tokens":20"#).count(), 2, "{sent}");
}

#[tokio::test]
async fn a_request_waits_for_room_held_by_one_under_way_then_gets_what_is_left() {
    let gated = Step {
        gate: true,
        ..Step::reply("first answer", 20, 200, 0)
    };
    let s = Setup::new(vec![gated, Step::reply("second", 20, 500, 0)], tokens(300)).await;
    let body = chat_stream(200);
    let mut first = s
        .post("/chat/completions", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    // The first holds est + 200 of 300: the second does not fit yet, but may once the first
    // settles, so it waits rather than being refused.
    let second = tokio::spawn(s.post("/chat/completions", Some(TOKEN), &body).send());
    while s.gateway.registry().requests_under_way() < 1 {
        tokio::task::yield_now().await;
    }
    first.chunk().await.unwrap();
    s.fixture.open_gate();
    while first.chunk().await.unwrap().is_some() {}
    let second = second.await.unwrap().unwrap();
    assert_eq!(second.status(), 200);
    second.text().await.unwrap();
    let sent = s.fixture.requests()[1].json().unwrap();
    assert_eq!(sent["max_tokens"], 300 - 220 - estimate(&body), "{sent}");
    let spent = s.gateway.registry().execution_totals(ExecutionId(1));
    assert!(spent.tokens.total() <= 300, "{spent:?}");
}

#[tokio::test]
async fn an_execution_has_at_most_the_configured_requests_under_way() {
    let step = Step {
        pause_ms: 30,
        ..Step::reply("slow", 5, 5, 0)
    };
    let s = Setup::with_options(vec![step; 6], Budgets::default(), |o| {
        o.limits.concurrent_requests = 2;
    })
    .await;
    let body = chat_stream(50);
    let calls = (0..6).map(|_| {
        let request = s.post("/chat/completions", Some(TOKEN), &body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    let answers = futures::future::join_all(calls).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert_eq!(s.fixture.requests().len(), 6);
    assert_eq!(s.fixture.most_under_way(), 2, "the rest waited");
}

#[tokio::test]
async fn a_stalled_stream_is_cut_by_the_idle_timeout_and_charged_as_reserved() {
    let stalled = Step {
        gate: true,
        ..Step::reply("this never ends", 30, 9, 0)
    };
    let mut s = Setup::with_options(vec![stalled], tokens(10_000), |o| {
        o.limits.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let body = messages_body("sonnet", true);
    let response = s
        .post("/messages", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("idle timeout"), "{text}");
    let usage = usage_of(s.notice().await);
    assert!(!usage.complete);
    // The input came with `message_start`; the output is charged at the request's cap.
    assert_eq!(
        (usage.tokens.input, usage.tokens.output),
        (30.max(estimate(&body)), 100)
    );
    s.fixture.open_gate();
}

#[tokio::test]
async fn an_abandoned_stream_that_never_ends_is_charged_its_reservation() {
    let stalled = Step {
        gate: true,
        ..Step::reply("Hello there, agent", 10, 7, 0)
    };
    let mut s = Setup::with_options(vec![stalled], Budgets::default(), |o| {
        o.limits.drain_timeout = Duration::from_millis(200);
        o.limits.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let body = messages_body("sonnet", true);
    let mut response = s
        .post("/messages", Some(TOKEN), &body)
        .send()
        .await
        .unwrap();
    response.chunk().await.unwrap();
    drop(response);
    let usage = usage_of(s.notice().await);
    assert!(!usage.complete);
    assert_eq!(
        (usage.tokens.input, usage.tokens.output),
        (estimate(&body), 100)
    );
    assert_eq!(s.gateway.registry().requests_under_way(), 0);
    s.fixture.open_gate();
}

#[tokio::test]
async fn a_budget_too_small_for_the_request_is_refused_and_named() {
    let mut s = Setup::new(vec![], tokens(40)).await;
    let response = s
        .post("/messages", Some(TOKEN), &messages_body("sonnet", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 402);
    let error = json_of(response).await;
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the execution budget of 40 tokens is nearly used up (0 used)"),
        "{message}"
    );
    match s.notice().await {
        Notice::BudgetExceeded(over) => assert_eq!(over.scope, BudgetScope::Execution),
        other => panic!("{other:?}"),
    }
    assert!(s.fixture.requests().is_empty());
}
