//! The gateway's configuration: providers with their keys, model aliases with their prices,
//! and the retry policy.

use std::sync::Arc;

use domain::Duration;

use crate::Error;

/// Everything the gateway needs to know about the node's providers and models.
#[derive(Debug, Clone)]
pub struct Options {
    pub providers: Vec<Provider>,
    pub models: Vec<ModelRoute>,
    pub retry: RetryPolicy,
    /// Requests with a larger body are refused with 413.
    pub max_request_bytes: usize,
    /// How long to wait for a connection to a provider before answering 502.
    pub connect_timeout: Duration,
    /// Concurrency, timeouts and output caps for each request.
    pub limits: Limits,
    /// How a provider's concurrency is lowered on bursts of 429s and raised again.
    pub throttle: Throttle,
}

impl Options {
    /// Options with these providers and models and default limits.
    pub fn new(providers: Vec<Provider>, models: Vec<ModelRoute>) -> Options {
        Options {
            providers,
            models,
            retry: RetryPolicy::default(),
            max_request_bytes: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            throttle: Throttle::default(),
        }
    }
}

/// The adaptive limit on a provider's requests under way: `burst` 429s within `window` halve
/// it (down to 1; the first burst halves the number under way then), and after `quiet`
/// without a 429 each success raises it by one, once per `quiet`, until it is back where it
/// was before it was first lowered, when the limit is lifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub burst: u32,
    pub window: Duration,
    pub quiet: Duration,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle {
            burst: 3,
            window: Duration::from_secs(10),
            quiet: Duration::from_secs(30),
        }
    }
}

/// How much one execution may have under way at once, and how long a response may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Model requests of one execution under way at once; further ones wait for a free place.
    pub concurrent_requests: usize,
    /// The longest silence between two pieces of a response body (and before its headers)
    /// before the gateway cuts it, tells the agent in the provider's error shape, and charges
    /// the request conservatively.
    pub idle_timeout: Duration,
    /// The longest a whole request may take, from admission to the end of its body.
    pub total_timeout: Duration,
    /// After an agent hangs up mid-response, how long the gateway keeps reading the provider's
    /// answer to learn what it really cost.
    pub drain_timeout: Duration,
    /// The output cap set on a request that names none while a budget applies (the budget's
    /// room lowers it further).
    pub max_output_tokens: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            concurrent_requests: 4,
            idle_timeout: Duration::from_secs(300),
            total_timeout: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(60),
            max_output_tokens: 16_384,
        }
    }
}

/// Which wire format a provider speaks: the manifest's type too.
pub use domain::ProviderKind;

/// One upstream provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The name model routes refer to, such as `anthropic` or `local-ollama`.
    pub name: String,
    pub kind: ProviderKind,
    /// The URL the API paths hang off, with its version prefix: `https://api.openai.com/v1`,
    /// `https://api.anthropic.com/v1`, `http://127.0.0.1:11434/v1`,
    /// `https://generativelanguage.googleapis.com/v1beta`. The gateway appends
    /// `/chat/completions`, `/responses`, `/messages`, `/messages/count_tokens` or
    /// `/models/{model}:{method}`.
    pub base_url: String,
    /// The real key, sent only upstream. `None` for local endpoints that need none.
    pub api_key: Option<ApiKey>,
    /// Whether an `openai_compatible` provider serves the Responses API too (vLLM does;
    /// Ollama and llama.cpp serve only Chat Completions). When it does not, Responses requests
    /// reach it translated into Chat Completions. OpenAI itself always serves both; other kinds
    /// ignore it.
    pub responses: bool,
    /// How long the provider is paused after it says the account's quota is used up, when it
    /// gives no reset time of its own.
    pub quota_pause: Duration,
}

/// The pause after a used-up quota when neither the provider nor the configuration says more.
pub const DEFAULT_QUOTA_PAUSE: Duration = Duration::from_secs(3600);

/// A model alias the agents ask for, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute {
    /// The name agents put in `model`, such as `sonnet`.
    pub alias: String,
    /// The [`Provider::name`] that serves it.
    pub provider: String,
    /// The provider's own model name, such as `claude-sonnet-4-5`.
    pub upstream_model: String,
    pub prices: Prices,
    /// The alias a request goes to, at once, when this alias's provider says its quota is used
    /// up or is paused for it.
    pub fallback: Option<String>,
}

/// Prices in millionths of a dollar per million tokens: `3_000_000` means $3 per million.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prices {
    /// Input tokens not read from the cache (cache writes are charged at this price too).
    pub input: u64,
    pub output: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached: u64,
}

impl Prices {
    /// The cost in millionths of a dollar, rounded to the nearest one. `input_tokens` includes
    /// the `cached_tokens`, which are charged at the cached price instead.
    pub fn cost_micros(&self, input_tokens: u64, output_tokens: u64, cached_tokens: u64) -> u64 {
        let cached = cached_tokens.min(input_tokens);
        let uncached = input_tokens - cached;
        // u128 keeps the products exact for any realistic count and price; absurd ones
        // saturate instead of wrapping.
        let term = |tokens: u64, price: u64| u128::from(tokens) * u128::from(price);
        let per_million = term(uncached, self.input)
            .saturating_add(term(output_tokens, self.output))
            .saturating_add(term(cached, self.cached))
            .saturating_add(500_000);
        u64::try_from(per_million / 1_000_000).unwrap_or(u64::MAX)
    }
}

/// What to do when a provider answers 429, 503 or 529.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last the provider's answer goes to the
    /// agent as it is.
    pub max_attempts: u32,
    /// The wait after the first refusal when the provider gives no `retry-after`; it doubles
    /// with each further refusal.
    pub initial_delay: Duration,
    /// The longest wait, for backoff and for the provider's own `retry-after` alike.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// A provider key. It can be read only inside this crate, and its `Debug` shows no part of it,
/// so a configuration printed in a log or an error never carries the secret.
#[derive(Clone)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(Arc::from(key.into()))
    }

    /// Reads the key from the engine's environment, once, at start.
    pub fn from_env(var: &str) -> Result<ApiKey, Error> {
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Ok(ApiKey::new(value)),
            _ => Err(Error::MissingKey {
                var: var.to_owned(),
            }),
        }
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_charges_cached_input_at_the_cached_price_and_rounds() {
        let prices = Prices {
            input: 3_000_000,
            output: 15_000_000,
            cached: 300_000,
        };
        // 200 uncached × $3/M + 800 cached × $0.30/M + 100 out × $15/M
        // = 600 + 240 + 1500 millionths of a dollar.
        assert_eq!(prices.cost_micros(1000, 100, 800), 2340);
        assert_eq!(prices.cost_micros(0, 0, 0), 0);
        // A third of a millionth rounds down, two thirds round up.
        let cheap = Prices {
            input: 1,
            output: 2,
            cached: 0,
        };
        assert_eq!(cheap.cost_micros(333_333, 0, 0), 0);
        assert_eq!(cheap.cost_micros(0, 333_333, 0), 1);
        // Cached counts larger than the input are capped rather than trusted.
        assert_eq!(prices.cost_micros(10, 0, 50), 3);
        assert_eq!(
            Prices {
                input: u64::MAX,
                output: u64::MAX,
                cached: u64::MAX
            }
            .cost_micros(u64::MAX, u64::MAX, 0),
            u64::MAX
        );
    }

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let key = ApiKey::new("sk-very-secret");
        let provider = Provider {
            name: "openai".into(),
            kind: ProviderKind::OpenAi,
            base_url: "https://api.openai.com/v1".into(),
            api_key: Some(key.clone()),
            quota_pause: DEFAULT_QUOTA_PAUSE,
            responses: false,
        };
        let shown = format!("{provider:?} {key:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(key.expose(), "sk-very-secret");
    }

    #[test]
    fn a_missing_key_variable_is_named_in_the_error() {
        let err = ApiKey::from_env("AGENTGRID_TEST_SURELY_UNSET_KEY").unwrap_err();
        assert!(
            err.to_string().contains("AGENTGRID_TEST_SURELY_UNSET_KEY"),
            "{err}"
        );
    }
}
