//! Rate limits and overload: the gateway waits and retries, the agent's request succeeds, and
//! each wait is reported.

use domain::Duration;
use gateway::{Budgets, Notice, Waiting};
use modelfixture::Step;

use crate::{Setup, TOKEN, chat_body, json_of, messages_body, usage_of};

fn waiting_of(notice: Notice) -> Waiting {
    match notice {
        Notice::Waiting(w) => w,
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rate_limit_with_retry_after_is_waited_out_and_the_request_succeeds() {
    let rate_limited = Step {
        retry_after_ms: Some(30),
        ..Step::status(429)
    };
    let overloaded = Step::status(529);
    let unavailable = Step {
        retry_after_secs: Some(0),
        ..Step::status(503)
    };
    let mut s = Setup::new(
        vec![
            rate_limited,
            overloaded,
            unavailable,
            Step::reply("finally", 12, 3, 0),
        ],
        Budgets::default(),
    )
    .await;
    let started = std::time::Instant::now();
    let response = s
        .post("/messages", Some(TOKEN), &messages_body("sonnet", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("finally"), "{text}");
    // The provider's retry-after-ms was honoured: the gateway really waited.
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));

    let first = waiting_of(s.notice().await);
    assert_eq!(
        (first.attempt, first.status, first.delay),
        (1, 429, Duration::from_millis(30))
    );
    assert_eq!(first.model, "sonnet");
    assert_eq!(first.execution.0, 1);
    // No retry-after: the policy's backoff, doubled for the second attempt.
    let second = waiting_of(s.notice().await);
    assert_eq!(
        (second.attempt, second.status, second.delay),
        (2, 529, Duration::from_millis(10))
    );
    // `retry-after: 0` means now, and is honoured over the backoff.
    let third = waiting_of(s.notice().await);
    assert_eq!(
        (third.attempt, third.status, third.delay),
        (3, 503, Duration::ZERO)
    );
    let usage = usage_of(s.notice().await);
    assert_eq!((usage.tokens.input, usage.tokens.output), (12, 3));
    assert_eq!(s.fixture.requests().len(), 4);
    s.assert_key_handling();
}

#[tokio::test]
async fn after_the_last_attempt_the_providers_answer_goes_to_the_agent() {
    let steps = vec![Step::status(429); 4];
    // Throttling on the burst is tested on its own.
    let mut s = Setup::with_options(steps, Budgets::default(), |o| o.throttle.burst = 10).await;
    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let error = json_of(response).await;
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
    for attempt in 1..=3 {
        assert_eq!(waiting_of(s.notice().await).attempt, attempt);
    }
    s.no_notice();
    assert_eq!(s.fixture.requests().len(), 4, "max_attempts is 4 in all");
}

#[tokio::test]
async fn other_errors_pass_through_at_once() {
    let mut s = Setup::new(vec![Step::status(400)], Budgets::default()).await;
    let response = s
        .post("/messages", Some(TOKEN), &messages_body("sonnet", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error = json_of(response).await;
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    s.no_notice();
    assert_eq!(s.fixture.requests().len(), 1);
}

#[tokio::test]
async fn a_used_up_quota_is_not_retried_and_reaches_the_agent_as_it_came() {
    let quota = |code: &str, status| Step {
        error_code: Some(code.into()),
        retry_after_secs: Some(0),
        ..Step::status(status)
    };
    let mut s = Setup::new(
        vec![
            quota("insufficient_quota", 429),
            quota("billing_error", 529),
            Step::reply("never sent", 1, 1, 0),
        ],
        Budgets::default(),
    )
    .await;
    let refused = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let error = json_of(refused).await;
    assert_eq!(error["error"]["code"], "insufficient_quota", "{error}");
    let refused = s
        .post("/messages", Some(TOKEN), &messages_body("sonnet", false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 529);
    assert_eq!(json_of(refused).await["error"]["type"], "billing_error");
    assert_eq!(
        s.fixture.requests().len(),
        2,
        "one attempt each, no retries"
    );
    // Each provider is paused, and the refused execution is named; no wait was reported.
    for provider in ["openai", "anthropic"] {
        let Notice::ProviderPaused(paused) = s.notice().await else {
            panic!("a pause of {provider}")
        };
        assert_eq!(paused.provider, provider);
        assert!(matches!(s.notice().await, Notice::PausedRefusal(_)));
    }
    s.no_notice();
}
