//! End-to-end tests of the model gateway: real HTTP over loopback and Unix sockets, in front of
//! the scripted model server.

mod apis;
mod auth;
mod budgets;
mod gemini;
mod inbound;
mod outbound;
mod quota;
mod reservations;
mod retries;
mod routing;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use domain::{Duration, ExecutionId, ManualClock, TaskId, Timestamp};
use gateway::{
    ApiKey, Baseline, Budgets, Gateway, Identity, Listen, ModelRoute, Notice, Options, Prices,
    Provider, ProviderKind, Registry, RetryPolicy, Server,
};
use modelfixture::{Fixture, FixtureOptions, Script, Step};
use serde_json::Value;
use tokio::sync::mpsc;

/// The provider key the node holds: it must reach the fixture and nothing else.
pub const REAL_KEY: &str = "sk-real-provider-key-7f3a9c";
/// The token an execution's agent is given instead.
pub const TOKEN: &str = "agx-execution-token-41d2e8";

pub const T0: Timestamp = Timestamp(1_700_000_000_000);

/// $3 / $15 / $0.30 per million input / output / cached tokens.
pub const PRICES: Prices = Prices {
    input: 3_000_000,
    output: 15_000_000,
    cached: 300_000,
};

/// A fixture, a gateway in front of it on loopback TCP, and everything to talk to both.
pub struct Setup {
    pub fixture: Fixture,
    pub gateway: Gateway,
    pub server: Server,
    pub notices: mpsc::UnboundedReceiver<Notice>,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
}

pub fn identity(execution: i64, root: i64, agent: &str, budgets: Budgets) -> Identity {
    Identity {
        execution: ExecutionId(execution),
        task: TaskId(root + 100),
        root: TaskId(root),
        agent: agent.into(),
        budgets,
        models: None,
        baseline: Baseline::default(),
        agency: None,
    }
}

pub fn options(fixture_url: &str, key: &str) -> Options {
    let provider = |name: &str, kind| Provider {
        name: name.into(),
        kind,
        base_url: fixture_url.to_owned(),
        api_key: Some(ApiKey::new(key)),
        quota_pause: gateway::DEFAULT_QUOTA_PAUSE,
        responses: false,
    };
    let route = |alias: &str, provider: &str, upstream: &str| ModelRoute {
        alias: alias.into(),
        provider: provider.into(),
        upstream_model: upstream.into(),
        prices: PRICES,
        fallback: None,
    };
    let mut options = Options::new(
        vec![
            provider("openai", ProviderKind::OpenAi),
            provider("anthropic", ProviderKind::Anthropic),
        ],
        vec![
            route("gpt", "openai", "gpt-upstream-1"),
            route("sonnet", "anthropic", "claude-upstream-1"),
        ],
    );
    options.retry = RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(200),
    };
    options
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

impl Setup {
    /// The fixture answers `steps`; [`TOKEN`] is registered for execution 1 of tree 1 by agent
    /// `claude` with `budgets`.
    pub async fn new(steps: Vec<Step>, budgets: Budgets) -> Setup {
        Setup::with_key(steps, budgets, REAL_KEY).await
    }

    /// Like [`Setup::new`], with the gateway holding `key` (the fixture always wants
    /// [`REAL_KEY`]).
    pub async fn with_key(steps: Vec<Step>, budgets: Budgets, key: &str) -> Setup {
        Setup::build(steps, budgets, key, |_| {}).await
    }

    /// Like [`Setup::new`], with the gateway's options changed by `change` first.
    pub async fn with_options(
        steps: Vec<Step>,
        budgets: Budgets,
        change: impl FnOnce(&mut Options),
    ) -> Setup {
        Setup::build(steps, budgets, REAL_KEY, change).await
    }

    async fn build(
        steps: Vec<Step>,
        budgets: Budgets,
        key: &str,
        change: impl FnOnce(&mut Options),
    ) -> Setup {
        let fixture = modelfixture::spawn_with(
            Script::new(steps),
            FixtureOptions {
                api_key: Some(REAL_KEY.into()),
                port: 0,
            },
        )
        .await
        .unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let registry = Registry::new(clock.clone());
        registry.register(TOKEN, identity(1, 1, "claude", budgets));
        let (tx, notices) = mpsc::unbounded_channel();
        let mut options = options(&fixture.base_url(), key);
        change(&mut options);
        let gateway = Gateway::new(options, registry, tx).unwrap();
        let server = gateway
            .serve(Listen::Tcp("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        Setup {
            fixture,
            gateway,
            server,
            notices,
            clock,
            client: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url().unwrap())
    }

    /// A POST of `body` to the gateway's `path` with `token` the way the API's clients send
    /// it: `x-api-key` for /v1/messages, `Authorization: Bearer` otherwise.
    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = if path.starts_with("/messages") {
                request
                    .header("x-api-key", token)
                    .header("anthropic-version", "2023-06-01")
            } else {
                request.bearer_auth(token)
            };
        }
        request
    }

    /// The next notice, failing the test when none comes within a few seconds.
    pub async fn notice(&mut self) -> Notice {
        tokio::time::timeout(StdDuration::from_secs(5), self.notices.recv())
            .await
            .expect("a notice arrives in time")
            .expect("the notice channel is open")
    }

    /// Fails when a notice is already waiting.
    pub fn no_notice(&mut self) {
        if let Ok(notice) = self.notices.try_recv() {
            panic!("unexpected notice {notice:?}");
        }
    }

    /// Asserts that every request the fixture got carried the real key and never the token.
    pub fn assert_key_handling(&self) {
        let requests = self.fixture.requests();
        assert!(!requests.is_empty(), "the fixture got requests");
        for r in requests {
            assert!(
                !r.contains(TOKEN),
                "the execution token reached the provider: {r:?}"
            );
            let bearer = r
                .header("authorization")
                .map(|v| v == format!("Bearer {REAL_KEY}"));
            let x_api_key = r.header("x-api-key").map(|v| v == REAL_KEY);
            assert!(
                bearer == Some(true) || x_api_key == Some(true),
                "the real key reached the provider: {:?}",
                r.headers
            );
        }
    }
}

/// The OpenAI-shape request bodies used throughout.
pub fn chat_body(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}]
    })
}

pub fn responses_body(model: &str, stream: bool) -> Value {
    serde_json::json!({"model": model, "stream": stream, "input": "Say hello"})
}

pub fn messages_body(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Say hello"}]
    })
}

/// The usage record in a notice, failing on any other notice.
pub fn usage_of(notice: Notice) -> gateway::UsageRecord {
    match notice {
        Notice::Usage(record) => record,
        other => panic!("expected usage, got {other:?}"),
    }
}

/// Reads a JSON answer body, showing the body when it is not JSON.
pub async fn json_of(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}
