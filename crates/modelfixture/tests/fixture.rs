//! The fixture over real HTTP: keys, script order and exhaustion, error steps, and the binary.

use std::time::Duration;

use modelfixture::{FixtureOptions, Script, Step};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post(url: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.unwrap()
}

async fn json(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn it_checks_the_key_answers_in_order_and_says_when_the_script_ran_out() {
    let script = Script::new(vec![
        Step::reply("first", 10, 2, 4),
        Step {
            retry_after_ms: Some(1500),
            ..Step::status(429)
        },
    ]);
    let fixture = modelfixture::spawn_with(
        script,
        FixtureOptions {
            api_key: Some("sk-fixture".into()),
            port: 0,
        },
    )
    .await
    .unwrap();
    let url = format!("{}/chat/completions", fixture.base_url());
    let body = json!({"model": "m1", "messages": []});

    let refused = post(&url, Some("sk-wrong"), &body).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(json(refused).await["error"]["code"], "invalid_api_key");
    assert_eq!(fixture.steps_used(), 0, "a refused request uses no step");

    let first = json(post(&url, Some("sk-fixture"), &body).await).await;
    assert_eq!(first["choices"][0]["message"]["content"], "first");
    assert_eq!(first["model"], "m1");
    assert_eq!(first["usage"]["prompt_tokens"], 10);
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 4);

    let limited = post(&url, Some("sk-fixture"), &body).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after-ms"], "1500");
    assert_eq!(limited.headers()["retry-after"], "2");
    assert_eq!(json(limited).await["error"]["type"], "requests");

    let exhausted = post(&url, Some("sk-fixture"), &body).await;
    assert_eq!(exhausted.status(), 500);
    let message = json(exhausted).await["error"]["message"].to_string();
    assert!(message.contains("no step left for request 4"), "{message}");

    let requests = fixture.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[0].header("X-Api-Key"), Some("sk-wrong"));
    assert_eq!(requests[1].json().unwrap()["model"], "m1");
    assert!(requests[1].contains("sk-fixture"));
    assert!(!requests[1].contains("sk-nowhere"));
}

#[tokio::test]
async fn a_repeating_script_starts_over_and_messages_errors_take_anthropics_shape() {
    let script = Script {
        steps: vec![Step::status(529), Step::reply("again", 1, 1, 0)],
        repeat: true,
    };
    let fixture = modelfixture::spawn(script).await.unwrap();
    let url = format!("{}/messages", fixture.base_url());
    let body = json!({"model": "m", "max_tokens": 5, "messages": []});
    for _ in 0..2 {
        let overloaded = post(&url, None, &body).await;
        assert_eq!(overloaded.status(), 529);
        let error = json(overloaded).await;
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "overloaded_error");
        let reply = json(post(&url, None, &body).await).await;
        assert_eq!(reply["content"][0]["text"], "again");
    }
    assert_eq!(fixture.steps_used(), 4);
}

#[tokio::test]
async fn reported_output_never_exceeds_the_requests_cap() {
    let script = Script::new(vec![
        Step::reply("long", 10, 500, 0),
        Step::reply("long", 10, 500, 0),
        Step::reply("short", 10, 3, 0),
    ]);
    let fixture = modelfixture::spawn(script).await.unwrap();
    let base = fixture.base_url();
    let capped = json(
        post(
            &format!("{base}/messages"),
            None,
            &json!({"model": "m", "max_tokens": 40, "messages": []}),
        )
        .await,
    )
    .await;
    assert_eq!(capped["usage"]["output_tokens"], 40, "{capped}");
    let capped = json(
        post(
            &format!("{base}/responses"),
            None,
            &json!({"model": "m", "max_output_tokens": 25, "input": "hi"}),
        )
        .await,
    )
    .await;
    assert_eq!(capped["usage"]["output_tokens"], 25, "{capped}");
    let under = json(
        post(
            &format!("{base}/chat/completions"),
            None,
            &json!({"model": "m", "max_completion_tokens": 25, "messages": []}),
        )
        .await,
    )
    .await;
    assert_eq!(under["usage"]["completion_tokens"], 3, "{under}");
}

#[tokio::test]
async fn the_binary_serves_a_script_file() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.json");
    std::fs::write(
        &script,
        r#"{"steps": [{"reply": "from the binary", "input_tokens": 8, "output_tokens": 3}]}"#,
    )
    .unwrap();
    let (tx, mut lines) = tokio::sync::mpsc::channel(16);
    let mut env = launch::base_env();
    launch::set_var(&mut env, "FIXTURE_KEY".into(), "sk-bin".into());
    let spec = launch::LaunchSpec::new(env!("CARGO_BIN_EXE_agentgrid-modelfixture"), dir.path())
        .args([
            "--script",
            script.to_str().unwrap(),
            "--api-key-env",
            "FIXTURE_KEY",
        ])
        .with_env_exactly(env);
    let process = launch::spawn(
        spec,
        launch::OutputSpec {
            line_tx: Some(tx),
            ..launch::OutputSpec::default()
        },
    )
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.recv())
        .await
        .expect("the fixture announces its address")
        .expect("the fixture printed a line");
    let base = first
        .text
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {:?}", first.text))
        .to_owned();
    let response = client()
        .post(format!("{base}/responses"))
        .bearer_auth("sk-bin")
        .body(json!({"model": "m", "input": "hi", "stream": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"));
    assert!(kinds.contains(&"response.output_text.delta"));
    assert!(text.contains(r#""input_tokens":8"#), "{text}");
    process.kill_group(launch::Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), process.wait())
        .await
        .expect("the fixture stops on SIGTERM")
        .unwrap();
    assert!(exit.success(), "{}", exit.describe());
}

#[test]
fn a_bad_port_is_reported() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = modelfixture::spawn_with(
            Script::default(),
            FixtureOptions {
                api_key: None,
                port,
            },
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    });
}
