//! Model aliases: which ones a caller sees, unknown ones, ones on the wrong API, and
//! configuration mistakes. These drive the router directly with `oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gateway::{Budgets, Gateway, Options, Registry};
use http_body_util::BodyExt;
use modelfixture::Step;
use serde_json::Value;
use tower::ServiceExt;

use crate::{Setup, TOKEN, chat_body, identity, messages_body, options};

async fn oneshot(
    router: axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
    let response = router.oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn the_model_list_shows_the_aliases_the_caller_may_use() {
    let s = Setup::new(vec![], Budgets::default()).await;
    let mut limited = identity(2, 2, "claude", Budgets::default());
    limited.models = Some(vec!["sonnet".into()]);
    s.gateway.registry().register("agx-limited", limited);
    let router = s.gateway.router();

    let bearer = format!("Bearer {TOKEN}");
    let (status, list) = oneshot(
        router.clone(),
        "GET",
        "/v1/models",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gpt", "sonnet"]);

    let (status, list) = oneshot(
        router.clone(),
        "GET",
        "/v1/models",
        &[
            ("x-api-key", "agx-limited"),
            ("anthropic-version", "2023-06-01"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["type"], "model");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["first_id"], "sonnet");

    // A model the execution may not use is as unknown as one that does not exist.
    let (status, error) = oneshot(
        router.clone(),
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer agx-limited")],
        Some(chat_body("gpt", false)),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error["error"]["code"], "model_not_found");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the models are: sonnet"),
        "{error}"
    );

    let (status, _) = oneshot(router, "GET", "/v1/models", &[], None).await;
    assert_eq!(status, 401);
    assert!(s.fixture.requests().is_empty());
}

#[tokio::test]
async fn unknown_models_wrong_apis_and_bad_bodies_get_clear_answers() {
    let s = Setup::new(vec![Step::reply("unused", 1, 1, 0)], Budgets::default()).await;
    let router = s.gateway.router();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];

    let (status, error) = oneshot(
        router.clone(),
        "POST",
        "/v1/messages",
        &[("x-api-key", TOKEN)],
        Some(messages_body("opus-9000", false)),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error["error"]["type"], "not_found_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`opus-9000` is not available"),
        "{error}"
    );

    let (status, error) = oneshot(
        router.clone(),
        "POST",
        "/v1/responses",
        &auth,
        Some(serde_json::json!({"input": "no model"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("names no `model`"),
        "{error}"
    );

    let (status, error) = oneshot(router, "POST", "/v1/embeddings", &auth, None).await;
    assert_eq!(status, 404);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not serve POST /v1/embeddings; it serves POST /v1/chat"),
        "{error}"
    );
    assert_eq!(error["error"]["code"], "unknown_url", "{error}");
    assert!(s.fixture.requests().is_empty());
}

#[tokio::test]
async fn configuration_mistakes_are_named() {
    let registry = Registry::new(Arc::new(domain::SystemClock));
    let try_options = |options: Options| {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        Gateway::new(options, registry.clone(), tx)
            .unwrap_err()
            .to_string()
    };
    let mut unknown_provider = options("http://127.0.0.1:9/v1", "k");
    unknown_provider.models[0].provider = "azure".into();
    let err = try_options(unknown_provider);
    assert!(
        err.contains("names the provider `azure`") && err.contains("anthropic, openai"),
        "{err}"
    );

    let mut twice = options("http://127.0.0.1:9/v1", "k");
    twice.models[1].alias = "gpt".into();
    assert!(try_options(twice).contains("`gpt` is defined twice"));

    let mut bad_url = options("http://127.0.0.1:9/v1", "k");
    bad_url.providers[0].base_url = "api.openai.com".into();
    assert!(try_options(bad_url).contains("not an http or https URL"));

    let mut keyless = options("http://127.0.0.1:9/v1", "k");
    keyless.providers[1].api_key = None;
    assert!(try_options(keyless).contains("has no API key"));

    let mut no_attempts = options("http://127.0.0.1:9/v1", "k");
    no_attempts.retry.max_attempts = 0;
    assert!(try_options(no_attempts).contains("at least 1 attempt"));
}

#[tokio::test]
async fn an_unreachable_provider_is_a_502_in_the_providers_shape() {
    let s = Setup::new(vec![], Budgets::default()).await;
    // Port 9 (discard) on loopback: nothing listens there.
    let registry = s.gateway.registry().clone();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let gateway = Gateway::new(options("http://127.0.0.1:9/v1", "k"), registry, tx).unwrap();
    let (status, error) = oneshot(
        gateway.router(),
        "POST",
        "/v1/messages",
        &[("x-api-key", TOKEN)],
        Some(messages_body("sonnet", false)),
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(error["error"]["type"], "api_error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`anthropic` could not be reached") && message.contains("127.0.0.1:9"),
        "{message}"
    );
}
