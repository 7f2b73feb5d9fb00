//! Used-up quotas are not rate limits: no retries, a fallback alias when there is one, and a
//! paused provider otherwise; bursts of 429s lower a provider's concurrency instead of failing.

use std::time::Duration as StdDuration;

use domain::Duration;
use gateway::{Budgets, ModelRoute, Notice, Options, Provider};
use modelfixture::Step;

use crate::{PRICES, Setup, T0, TOKEN, chat_body, json_of, usage_of};

/// The options of [`Setup`] plus a second OpenAI account, `openai-backup`, serving
/// `gpt-backup`, which `gpt` falls back to when `with_fallback`.
fn with_backup(with_fallback: bool) -> impl FnOnce(&mut Options) {
    move |options: &mut Options| {
        let first = options.providers[0].clone();
        options.providers.push(Provider {
            name: "openai-backup".into(),
            ..first
        });
        options.models.push(ModelRoute {
            alias: "gpt-backup".into(),
            provider: "openai-backup".into(),
            upstream_model: "gpt-backup-upstream".into(),
            prices: PRICES,
            fallback: None,
        });
        if with_fallback {
            options.models[0].fallback = Some("gpt-backup".into());
        }
    }
}

fn quota_step() -> Step {
    Step {
        error_code: Some("insufficient_quota".into()),
        // A passing limit would be retried after this; a quota must not be.
        retry_after_ms: Some(1),
        ..Step::status(429)
    }
}

fn models_sent(s: &Setup) -> Vec<String> {
    s.fixture
        .requests()
        .iter()
        .map(|r| r.json().unwrap()["model"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_used_up_quota_goes_to_the_fallback_at_once_and_burns_no_retry() {
    let steps = vec![
        quota_step(),
        Step::reply("from the backup", 10, 2, 0),
        Step::reply("again from the backup", 10, 2, 0),
    ];
    let mut s = Setup::with_options(steps, Budgets::default(), with_backup(true)).await;
    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    assert_eq!(
        answer["choices"][0]["message"]["content"], "from the backup",
        "{answer}"
    );
    // One request to the exhausted account, none retried, then the fallback's.
    assert_eq!(models_sent(&s), ["gpt-upstream-1", "gpt-backup-upstream"]);

    let Notice::ProviderPaused(paused) = s.notice().await else {
        panic!("a pause first")
    };
    assert_eq!(paused.provider, "openai");
    assert_eq!(paused.execution.0, 1);
    assert!(paused.reason.contains("insufficient_quota"), "{paused:?}");
    let Notice::Fallback(fallback) = s.notice().await else {
        panic!("then the fallback")
    };
    assert_eq!(
        (fallback.model.as_str(), fallback.fallback.as_str()),
        ("gpt", "gpt-backup")
    );
    assert!(
        fallback.reason.contains("provider openai paused until"),
        "{fallback:?}"
    );
    let usage = usage_of(s.notice().await);
    assert_eq!(
        usage.model, "gpt-backup",
        "charged at the fallback's prices"
    );
    assert_eq!((usage.tokens.input, usage.tokens.output), (10, 2));

    // While the account is paused its requests go straight to the fallback.
    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("backup"));
    assert_eq!(
        models_sent(&s),
        [
            "gpt-upstream-1",
            "gpt-backup-upstream",
            "gpt-backup-upstream"
        ]
    );
    assert!(matches!(s.notice().await, Notice::Fallback(_)));
    assert!(matches!(s.notice().await, Notice::Usage(_)));
    s.no_notice();
    s.assert_key_handling();
}

#[tokio::test]
async fn a_quota_without_fallback_pauses_the_provider_until_the_reset_it_gives() {
    let exhausted = Step {
        headers: [("x-ratelimit-reset-requests".to_owned(), "2m0s".to_owned())]
            .into_iter()
            .collect(),
        ..quota_step()
    };
    let steps = vec![
        exhausted,
        Step::reply("from the other account", 5, 1, 0),
        Step::reply("back again", 5, 1, 0),
    ];
    let mut s = Setup::with_options(steps, Budgets::default(), with_backup(false)).await;
    let refused = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers().get("x-should-retry").unwrap(),
        "false",
        "clients are told not to retry"
    );
    assert_eq!(
        json_of(refused).await["error"]["code"],
        "insufficient_quota"
    );
    let Notice::ProviderPaused(paused) = s.notice().await else {
        panic!("a pause")
    };
    // The reset the provider gave, not the configured hour.
    assert_eq!(paused.until, T0.plus(Duration::from_secs(120)));
    assert_eq!(paused.provider, "openai");
    assert!(matches!(s.notice().await, Notice::PausedRefusal(_)));

    // Paused: refused at once, without an upstream call, naming the pause.
    let started = std::time::Instant::now();
    let refused = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < StdDuration::from_secs(2));
    assert_eq!(refused.status(), 429);
    let error = json_of(refused).await;
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("provider openai paused until 2023-11-14T22:15:20.000Z (quota"),
        "{message}"
    );
    assert_eq!(s.fixture.requests().len(), 1, "no call while paused");
    let Notice::PausedRefusal(refusal) = s.notice().await else {
        panic!("the refusal is reported")
    };
    assert_eq!(refusal.until, paused.until);
    // Another provider is not affected.
    let other = s
        .post(
            "/chat/completions",
            Some(TOKEN),
            &chat_body("gpt-backup", false),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert!(matches!(s.notice().await, Notice::Usage(_)));

    // At the reset the provider is asked again.
    s.clock.advance(Duration::from_secs(120));
    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        json_of(response).await["choices"][0]["message"]["content"],
        "back again"
    );
    assert_eq!(
        models_sent(&s),
        ["gpt-upstream-1", "gpt-backup-upstream", "gpt-upstream-1"]
    );
    assert!(matches!(s.notice().await, Notice::Usage(_)));
    s.no_notice();
}

#[tokio::test]
async fn a_burst_of_429s_lowers_the_providers_concurrency_and_every_request_succeeds() {
    let limited = Step {
        retry_after_ms: Some(1),
        ..Step::status(429)
    };
    let slow = Step {
        delay_ms: 60,
        ..Step::reply("ok", 5, 1, 0)
    };
    let mut steps = vec![limited.clone(), limited.clone(), limited, slow.clone()];
    steps.extend(std::iter::repeat_n(slow.clone(), 4));
    steps.push(slow);
    let mut s = Setup::with_options(steps, Budgets::default(), |o| {
        o.limits.concurrent_requests = 8;
    })
    .await;
    // Three 429s in a row: the burst that lowers the limit. The request still succeeds.
    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut throttled = None;
    while let Ok(notice) = s.notices.try_recv() {
        if let Notice::ProviderThrottled(t) = notice {
            throttled = Some(t);
        }
    }
    let throttled = throttled.expect("the burst is reported");
    assert_eq!(
        (throttled.provider.as_str(), throttled.limit),
        ("openai", Some(1))
    );

    // Four requests at once now wait for the one place instead of failing.
    let requests = (0..4).map(|_| {
        s.post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
            .send()
    });
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(
        s.fixture.most_under_way(),
        1,
        "the provider never had more than its lowered limit under way"
    );
    while s.notices.try_recv().is_ok() {}

    // After a quiet period a success raises the limit again; here back to none.
    s.clock.advance(Duration::from_secs(31));
    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut lifted = false;
    while let Ok(notice) = s.notices.try_recv() {
        if let Notice::ProviderThrottled(t) = notice {
            lifted = t.limit.is_none();
        }
    }
    assert!(lifted, "the limit is lifted after the quiet period");
}

#[tokio::test]
async fn anthropics_credit_balance_message_is_a_quota_too() {
    let credit = Step {
        error_message: Some(
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & \
             Billing to upgrade or purchase credits."
                .into(),
        ),
        ..Step::status(400)
    };
    let mut s = Setup::new(vec![credit], Budgets::default()).await;
    let refused = s
        .post(
            "/messages",
            Some(TOKEN),
            &crate::messages_body("sonnet", false),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "the provider's own answer");
    assert_eq!(refused.headers().get("x-should-retry").unwrap(), "false");
    let error = json_of(refused).await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("credit balance"),
        "{error}"
    );
    let Notice::ProviderPaused(paused) = s.notice().await else {
        panic!("a pause")
    };
    assert_eq!(paused.provider, "anthropic");
    // No reset given: the configured pause.
    assert_eq!(paused.until, T0.plus(gateway::DEFAULT_QUOTA_PAUSE));
    assert!(matches!(s.notice().await, Notice::PausedRefusal(_)));
    assert_eq!(s.fixture.requests().len(), 1);
}
