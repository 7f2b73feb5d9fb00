//! The model gateway: an HTTP server owned by the engine that agents use as their model API.
//!
//! Agents get a base URL and an "API key" that is really their execution's token. The gateway
//! speaks the wire formats agent CLIs use (OpenAI Chat Completions and Responses, Anthropic
//! Messages and `count_tokens`, the Gemini API's `generateContent`, `streamGenerateContent` and
//! `countTokens`, streaming or not), checks the token, maps the requested model alias to a
//! configured provider and model (a name matching no alias goes to the execution's alias),
//! injects the real provider key, and streams the answer back as it arrives. A request whose
//! provider speaks another API is translated, in at most two hops through Chat Completions
//! (the caller's API into Chat, Chat into the provider's), and its answer back the same way,
//! chunk by chunk. Budgets hold while requests are under way: at admission each
//! request reserves its estimated input (a token per three bytes of body) plus its output cap
//! against the execution's, the tree's and the agent's daily budget at once, and the cap is set
//! or lowered to what the tightest of them has room for; the reservation is settled to the
//! provider's own usage when the answer ends, or conservatively when that never comes. An
//! execution has a bounded number of requests under way; answers have idle and total timeouts.
//! When a provider answers 429, 503 or 529 it waits (honouring `retry-after`) and tries
//! again, telling the engine about each wait; bursts of 429s lower the provider's limit on
//! requests under way instead. A used-up quota is never retried: the request goes to the
//! alias's `fallback` at once, or the provider is paused until its reset and its requests are
//! refused without an upstream call meanwhile.
//!
//! The principal types:
//! - [`Gateway`]: built from [`Options`] (providers, model routes with [`Prices`], a
//!   [`RetryPolicy`], [`Limits`]), a [`Registry`] and a notice channel; [`Gateway::serve`]
//!   listens on a loopback TCP port or a Unix socket ([`Listen`]), [`app`] gives the bare axum
//!   router.
//! - [`Registry`]: the engine registers an [`Identity`] (execution, task, tree root, agent,
//!   [`Budgets`]) under the execution's token when it starts, and revokes it when it ends.
//! - [`Notice`]: what the engine hears: a [`UsageRecord`] per request, a [`Waiting`] per
//!   rate-limit wait, a [`BudgetExceeded`] once per execution that hit a budget, a
//!   [`ProviderPaused`] when a used-up quota pauses a provider (and per refusal it causes), a
//!   [`Fallback`] per request another alias answered, a [`ProviderThrottled`] per change of a
//!   provider's limit on requests under way.
//!
//! The key design decision: the gateway never holds a whole response, and the upstream side of
//! a request runs on its own task, so an agent that hangs up does not stop the gateway reading
//! the answer to its end (within a drain timeout) to learn what it really cost. Bodies go
//! through chunk by chunk; usage is read from each complete stream line as it passes (a cheap
//! byte search skips lines without usage; a stream's reservation is settled before its final
//! usage event goes on, so an agent never holds an answer its budget does not yet count), and a
//! request body is rewritten by copying its top-level fields as raw JSON, parsing only `model`,
//! `stream`, `stream_options` and the output cap. So the added latency
//! stays well under a millisecond and does not grow with the size of a conversation.
//! Provider keys live only in [`ApiKey`], whose `Debug` is redacted, and go only into the
//! upstream request headers, marked sensitive.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use gateway::{ApiKey, Gateway, Listen, ModelRoute, Options, Prices, Provider, ProviderKind,
//!               Registry};
//!
//! let provider = Provider {
//!     name: "anthropic".into(),
//!     kind: ProviderKind::Anthropic,
//!     base_url: "https://api.anthropic.com/v1".into(),
//!     api_key: Some(ApiKey::new("sk-ant-example")),
//!     quota_pause: gateway::DEFAULT_QUOTA_PAUSE,
//!     responses: false,
//! };
//! let sonnet = ModelRoute {
//!     alias: "sonnet".into(),
//!     provider: "anthropic".into(),
//!     upstream_model: "claude-sonnet-4-5".into(),
//!     prices: Prices { input: 3_000_000, output: 15_000_000, cached: 300_000 },
//!     fallback: None,
//! };
//! let registry = Registry::new(Arc::new(domain::SystemClock));
//! let (notices, _receive) = tokio::sync::mpsc::unbounded_channel();
//! let gateway = Gateway::new(Options::new(vec![provider], vec![sonnet]), registry, notices)
//!     .unwrap();
//! let server = gateway.serve(Listen::Tcp("127.0.0.1:0".parse().unwrap())).await.unwrap();
//! assert!(server.base_url().unwrap().starts_with("http://127.0.0.1:"));
//! server.shutdown().await;
//! # });
//! ```

mod config;
mod error;
mod meter;
mod notice;
mod provider;
mod registry;
mod retry;
mod server;
mod translate;
mod wire;

pub use config::{
    ApiKey, DEFAULT_QUOTA_PAUSE, Limits, ModelRoute, Options, Prices, Provider, ProviderKind,
    RetryPolicy, Throttle,
};
pub use error::Error;
pub use notice::{
    BudgetExceeded, BudgetScope, Fallback, Notice, ProviderPaused, ProviderThrottled, UsageRecord,
    Waiting,
};
pub use registry::{
    AgencyBudget, Baseline, Budgets, Identity, Limit, MIN_OUTPUT_TOKENS, ModelUsage, Registry,
    day_bounds,
};
pub use server::{Gateway, Listen, Local, Server, app};
pub use wire::{BYTES_PER_TOKEN, estimate_input_tokens};
