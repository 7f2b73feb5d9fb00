//! Authentication: the execution's token gets in, nothing else does, and the provider only
//! ever sees the node's key.

use gateway::{Budgets, Listen};
use modelfixture::Step;
use serde_json::Value;

use crate::{
    REAL_KEY, Setup, TOKEN, chat_body, client, json_of, messages_body, responses_body, usage_of,
};

/// Expects a 401 in the provider's own shape for `path`.
async fn assert_refused(s: &Setup, path: &str, token: Option<&str>, body: &Value) {
    let response = s.post(path, token, body).send().await.unwrap();
    assert_eq!(response.status(), 401, "{path} with {token:?}");
    let error = json_of(response).await;
    if path.starts_with("/messages") {
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"]["type"], "authentication_error", "{error}");
    } else {
        assert_eq!(error["error"]["code"], "invalid_api_key", "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    }
    let message = error.to_string();
    assert!(!message.contains(REAL_KEY));
}

#[tokio::test]
async fn missing_wrong_and_revoked_tokens_are_refused_in_each_providers_shape() {
    let s = Setup::new(vec![Step::reply("ok", 1, 1, 0)], Budgets::default()).await;
    let cases = [
        ("/chat/completions", chat_body("gpt", false)),
        ("/responses", responses_body("gpt", true)),
        ("/messages", messages_body("sonnet", true)),
    ];
    for (path, body) in &cases {
        assert_refused(&s, path, None, body).await;
        assert_refused(&s, path, Some("agx-someone-else"), body).await;
        // The real key is not a way in either.
        assert_refused(&s, path, Some(REAL_KEY), body).await;
    }
    assert!(
        s.fixture.requests().is_empty(),
        "refused requests never reach the provider"
    );

    // The same token works until it is revoked.
    let ok = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let revoked = s.gateway.registry().revoke(TOKEN).unwrap();
    assert_eq!(revoked.execution.0, 1);
    for (path, body) in &cases {
        assert_refused(&s, path, Some(TOKEN), body).await;
    }
    assert_eq!(s.fixture.requests().len(), 1);
    s.assert_key_handling();
}

#[tokio::test]
async fn a_token_in_either_header_is_accepted_on_any_route() {
    let mut s = Setup::new(
        vec![Step::reply("one", 1, 1, 0), Step::reply("two", 1, 1, 0)],
        Budgets::default(),
    )
    .await;
    // Anthropic clients may also send `Authorization: Bearer` (ANTHROPIC_AUTH_TOKEN).
    let bearer = s
        .client
        .post(s.url("/messages"))
        .bearer_auth(TOKEN)
        .body(messages_body("sonnet", false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let x_api_key = s
        .client
        .post(s.url("/chat/completions"))
        .header("x-api-key", TOKEN)
        .body(chat_body("gpt", false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(x_api_key.status(), 200);
    usage_of(s.notice().await);
    usage_of(s.notice().await);
    s.assert_key_handling();
}

#[tokio::test]
async fn a_provider_refusing_the_node_key_is_reported_without_the_key() {
    let wrong_key = "sk-wrong-node-key-0000";
    let s = Setup::with_key(
        vec![Step::reply("never", 1, 1, 0)],
        Budgets::default(),
        wrong_key,
    )
    .await;
    let response = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let error = json_of(response).await;
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("refused the node's API key"), "{message}");
    assert!(!error.to_string().contains(wrong_key), "{error}");
    // The fixture saw the wrong key, and still never the token.
    let seen = &s.fixture.requests()[0];
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {wrong_key}").as_str())
    );
    assert!(!seen.contains(TOKEN));
}

#[tokio::test]
async fn the_gateway_serves_on_a_unix_socket_and_never_on_other_hosts() {
    let mut s = Setup::new(
        vec![Step::reply("over a socket", 3, 2, 0)],
        Budgets::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gateway.sock");
    // A stale socket from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let server = s.gateway.serve(Listen::Unix(socket.clone())).await.unwrap();
    assert_eq!(server.base_url(), None);
    let _ = client();
    let over_socket = reqwest::Client::builder()
        .unix_socket(socket.clone())
        .build()
        .unwrap();
    let response = over_socket
        .post("http://gateway/v1/chat/completions")
        .bearer_auth(TOKEN)
        .body(chat_body("gpt", false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["choices"][0]["message"]["content"], "over a socket");
    assert_eq!(usage_of(s.notice().await).tokens.input, 3);
    server.shutdown().await;
    assert!(!socket.exists(), "the socket file is removed on shutdown");

    let err = s
        .gateway
        .serve(Listen::Tcp("0.0.0.0:0".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only loopback"), "{err}");
    let not_a_socket = dir.path().join("notes.txt");
    std::fs::write(&not_a_socket, "keep me").unwrap();
    let err = s
        .gateway
        .serve(Listen::Unix(not_a_socket.clone()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&not_a_socket).unwrap(), "keep me");
}
