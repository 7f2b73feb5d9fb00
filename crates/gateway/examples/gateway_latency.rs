//! Measures the latency the model gateway adds to a request: the same requests go to the
//! scripted model server directly and through the gateway, interleaved, in one run, and the
//! p50 and p99 of both are compared. Through the gateway they go twice: as an execution with
//! budgets in every scope (so each request is reserved against all three, gets an output cap
//! set to fit, and is settled when its answer ends) and as one without any budget. A Gemini
//! `streamGenerateContent` stream to a `gemini` provider is measured the same way, with
//! budgets. The target is under 1 ms added at p99 with budgets.
//!
//! Run with `cargo run -p gateway --release --example gateway_latency -- [--requests N]`.
//! The last line of output is one JSON object for `cargo xtask bench` to read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::{
    ApiKey, Baseline, Budgets, Gateway, Identity, Limit, Listen, ModelRoute, Options, Prices,
    Provider, ProviderKind, Registry,
};
use modelfixture::{FixtureOptions, Script, Step};
use serde_json::{Value, json};

const KEY: &str = "sk-bench-provider-key";
const TOKEN: &str = "agx-bench-token";
const TOKEN_NO_BUDGET: &str = "agx-bench-token-without-budget";

/// What one kind of request measured, in microseconds.
struct Measured {
    direct: Vec<u64>,
    through: Vec<u64>,
}

impl Measured {
    fn new(capacity: usize) -> Measured {
        Measured {
            direct: Vec::with_capacity(capacity),
            through: Vec::with_capacity(capacity),
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Measured {
    fn summary(mut self) -> Value {
        self.direct.sort_unstable();
        self.through.sort_unstable();
        let (d50, d99) = (
            percentile(&self.direct, 0.5),
            percentile(&self.direct, 0.99),
        );
        let (g50, g99) = (
            percentile(&self.through, 0.5),
            percentile(&self.through, 0.99),
        );
        json!({
            "direct_p50_us": d50,
            "direct_p99_us": d99,
            "gateway_p50_us": g50,
            "gateway_p99_us": g99,
            "added_p50_us": g50.saturating_sub(d50),
            "added_p99_us": g99.saturating_sub(d99),
            "ratio_p99": (g99 as f64 / d99.max(1) as f64 * 100.0).round() / 100.0,
        })
    }
}

async fn timed(request: reqwest::RequestBuilder) -> u64 {
    let started = Instant::now();
    let response = request.send().await.expect("the request is answered");
    assert!(response.status().is_success(), "{}", response.status());
    // The whole body, streamed or not, is part of the request's time.
    let body = response.bytes().await.expect("the body arrives");
    assert!(!body.is_empty());
    started.elapsed().as_micros() as u64
}

#[tokio::main]
async fn main() {
    let requests: usize = std::env::args()
        .skip_while(|a| a != "--requests")
        .nth(1)
        .map(|n| n.parse().expect("--requests takes a number"))
        .unwrap_or(2000);
    let warmup = (requests / 10).max(50);

    let reply = Step::reply(
        "Here is a short answer from the scripted model, split into words.",
        1200,
        40,
        800,
    );
    let fixture = modelfixture::spawn_with(
        Script {
            steps: vec![reply],
            repeat: true,
        },
        FixtureOptions {
            api_key: Some(KEY.into()),
            port: 0,
        },
    )
    .await
    .expect("the fixture starts");
    let fixture_origin = format!("http://{}", fixture.addr());
    let provider = |name: &str, kind| Provider {
        name: name.into(),
        kind,
        base_url: match kind {
            ProviderKind::Gemini => format!("{fixture_origin}/v1beta"),
            _ => fixture.base_url(),
        },
        api_key: Some(ApiKey::new(KEY)),
        quota_pause: gateway::DEFAULT_QUOTA_PAUSE,
        responses: false,
    };
    let prices = Prices {
        input: 3_000_000,
        output: 15_000_000,
        cached: 300_000,
    };
    let options = Options::new(
        vec![
            provider("openai", ProviderKind::OpenAi),
            provider("anthropic", ProviderKind::Anthropic),
            provider("google", ProviderKind::Gemini),
        ],
        vec![
            ModelRoute {
                alias: "gem".into(),
                provider: "google".into(),
                upstream_model: "fixture-model".into(),
                prices,
                fallback: None,
            },
            ModelRoute {
                alias: "gpt".into(),
                provider: "openai".into(),
                upstream_model: "fixture-model".into(),
                prices,
                fallback: None,
            },
            ModelRoute {
                alias: "sonnet".into(),
                provider: "anthropic".into(),
                upstream_model: "fixture-model".into(),
                prices,
                fallback: None,
            },
        ],
    );
    let registry = Registry::new(Arc::new(domain::SystemClock));
    // Budgets in every scope, large enough never to run out, so that every request takes the
    // whole reservation path: estimate, admit against three scopes, cap, settle.
    let ample = Limit {
        max_tokens: Some(u64::MAX / 4),
        max_cost_micros: Some(u64::MAX / 4),
    };
    for (token, execution, budgets) in [
        (
            TOKEN,
            1,
            Budgets {
                execution: ample,
                tree: ample,
                agent_day: ample,
            },
        ),
        (TOKEN_NO_BUDGET, 2, Budgets::default()),
    ] {
        registry.register(
            token,
            Identity {
                execution: domain::ExecutionId(execution),
                task: domain::TaskId(execution),
                root: domain::TaskId(execution),
                agent: "bench".into(),
                budgets,
                models: None,
                baseline: Baseline::default(),
                agency: None,
            },
        );
    }
    let (notices, mut receive) = tokio::sync::mpsc::unbounded_channel();
    // The engine drains notices as they come; so does the benchmark.
    tokio::spawn(async move { while receive.recv().await.is_some() {} });
    let gateway = Gateway::new(options, registry, notices).expect("the gateway configures");
    let server = gateway
        .serve(Listen::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .expect("the gateway listens");
    let gateway_url = server.base_url().expect("a TCP listener has a URL");
    let gateway_origin = server.origin().expect("a TCP listener has an origin");

    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("a client");
    let conversation: Vec<Value> = (0..20)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" },
                        "content": format!("Message {i} of a conversation about the code base, long enough to look like one. ").repeat(8)}))
        .collect();
    let chat = json!({"model": "gpt", "messages": conversation}).to_string();
    let chat_direct = json!({"model": "fixture-model", "messages": conversation}).to_string();
    let stream =
        json!({"model": "sonnet", "max_tokens": 512, "stream": true, "messages": conversation})
            .to_string();
    let stream_direct = json!({"model": "fixture-model", "max_tokens": 512, "stream": true, "messages": conversation}).to_string();

    let gemini_contents: Vec<Value> = conversation
        .iter()
        .map(|m| {
            json!({"role": if m["role"] == "user" { "user" } else { "model" },
                   "parts": [{"text": m["content"]}]})
        })
        .collect();
    let gemini = json!({"contents": gemini_contents, "generationConfig": {"maxOutputTokens": 512}})
        .to_string();
    let direct_gemini = || {
        client
            .post(format!(
                "{fixture_origin}/v1beta/models/fixture-model:streamGenerateContent?alt=sse"
            ))
            .header("x-goog-api-key", KEY)
            .header("content-type", "application/json")
            .body(gemini.clone())
    };
    let through_gemini = |token: &str| {
        client
            .post(format!(
                "{gateway_origin}/v1beta/models/gem:streamGenerateContent?alt=sse"
            ))
            .header("x-goog-api-key", token)
            .header("content-type", "application/json")
            .body(gemini.clone())
    };
    let direct_chat = || {
        client
            .post(format!("{}/chat/completions", fixture.base_url()))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(chat_direct.clone())
    };
    let through_chat = |token: &str| {
        client
            .post(format!("{gateway_url}/chat/completions"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(chat.clone())
    };
    let direct_stream = || {
        client
            .post(format!("{}/messages", fixture.base_url()))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .body(stream_direct.clone())
    };
    let through_stream = |token: &str| {
        client
            .post(format!("{gateway_url}/messages"))
            .header("x-api-key", token)
            .header("anthropic-version", "2023-06-01")
            .body(stream.clone())
    };

    for _ in 0..warmup {
        timed(direct_chat()).await;
        timed(through_chat(TOKEN)).await;
        timed(through_chat(TOKEN_NO_BUDGET)).await;
        timed(direct_stream()).await;
        timed(through_stream(TOKEN)).await;
        timed(through_stream(TOKEN_NO_BUDGET)).await;
        timed(direct_gemini()).await;
        timed(through_gemini(TOKEN)).await;
    }
    let mut gemini_times = Measured::new(requests);
    let mut chat_times = Measured::new(requests);
    let mut stream_times = Measured::new(requests);
    let mut chat_plain = Measured::new(requests);
    let mut stream_plain = Measured::new(requests);
    // Interleaved, so that noise from other work on the machine hits every side alike. The
    // runs without budgets share the direct times of the same round.
    for _ in 0..requests {
        let direct = timed(direct_chat()).await;
        chat_times.direct.push(direct);
        chat_plain.direct.push(direct);
        chat_times.through.push(timed(through_chat(TOKEN)).await);
        chat_plain
            .through
            .push(timed(through_chat(TOKEN_NO_BUDGET)).await);
        let direct = timed(direct_stream()).await;
        stream_times.direct.push(direct);
        stream_plain.direct.push(direct);
        stream_times
            .through
            .push(timed(through_stream(TOKEN)).await);
        stream_plain
            .through
            .push(timed(through_stream(TOKEN_NO_BUDGET)).await);
        gemini_times.direct.push(timed(direct_gemini()).await);
        gemini_times
            .through
            .push(timed(through_gemini(TOKEN)).await);
    }
    let gemini = gemini_times.summary();
    let chat = chat_times.summary();
    let stream = stream_times.summary();
    let chat_plain = chat_plain.summary();
    let stream_plain = stream_plain.summary();
    for (what, m) in [
        (
            format!(
                "chat completions ({} bytes a request), with budgets",
                chat_direct.len()
            ),
            &chat,
        ),
        ("chat completions, no budget".to_owned(), &chat_plain),
        ("messages stream, with budgets".to_owned(), &stream),
        ("messages stream, no budget".to_owned(), &stream_plain),
        ("gemini stream, with budgets".to_owned(), &gemini),
    ] {
        println!(
            "{what}: direct p50 {} µs p99 {} µs; through the gateway p50 {} µs p99 {} µs; \
             added p50 {} µs p99 {} µs",
            m["direct_p50_us"],
            m["direct_p99_us"],
            m["gateway_p50_us"],
            m["gateway_p99_us"],
            m["added_p50_us"],
            m["added_p99_us"]
        );
    }
    let target_met = [&chat, &stream, &gemini]
        .iter()
        .all(|m| m["added_p99_us"].as_u64() < Some(1000));
    println!(
        "{}",
        json!({
            "bench": "gateway_latency",
            "requests": requests,
            "chat_completions": chat,
            "messages_stream": stream,
            "chat_completions_no_budget": chat_plain,
            "messages_stream_no_budget": stream_plain,
            "gemini_stream": gemini,
            "target_p99_added_us": 1000,
            "target_met": target_met,
        })
    );
    server.shutdown().await;
}
