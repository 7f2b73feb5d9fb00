//! The node's model settings: providers with their keys, model aliases with prices, the
//! gateway's retry policy, and budgets.

use std::collections::BTreeMap;

use domain::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{at_least_one, positive_duration};
use crate::decode::{Cx, Decode};
use crate::yaml::{Node, Value};

/// Which wire format a provider speaks: the gateway's type too.
pub use domain::ProviderKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub kind: ProviderKind,
    /// Where the provider's API lives, e.g. https://api.anthropic.com.
    pub base_url: String,
    /// The name of the engine's environment variable holding the key. The key itself never
    /// appears in a manifest, and never reaches an agent.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// How long the provider gets no requests after it says the account's quota or credit is
    /// used up, when it gives no reset time of its own.
    #[serde(default = "default_quota_pause")]
    pub quota_pause: Duration,
    /// For an `openai-compatible` provider: whether the server serves the OpenAI Responses API
    /// too (vLLM does; Ollama and llama.cpp serve only Chat Completions). Without it, Codex's
    /// Responses requests reach the provider translated into Chat Completions.
    #[serde(default)]
    pub responses: bool,
}

fn default_quota_pause() -> Duration {
    Duration::from_secs(3600)
}

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
}

/// A name agents use for a model, mapped to a provider's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelAlias {
    pub provider: String,
    /// The provider's own name for the model.
    pub model: String,
    #[serde(default)]
    pub prices: Prices,
    /// Another alias that takes this alias's requests, at once, when its provider's quota is
    /// used up (its own prices and budgets apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// How the gateway rides out upstream rate limits and overload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModelRetry {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for ModelRetry {
    fn default() -> Self {
        ModelRetry {
            max_attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// How much one execution may have under way at the gateway, and how long an answer may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModelLimits {
    /// Model requests of one execution under way at once; more wait for a free place.
    pub concurrent_requests: u32,
    /// The longest silence in an answer before the gateway cuts it.
    pub idle_timeout: Duration,
    /// The longest one request may take, from admission to the end of its answer.
    pub total_timeout: Duration,
    /// How long the gateway reads on after an agent hangs up, to learn what the answer cost.
    pub drain_timeout: Duration,
    /// The output cap set on a request that names none while a budget applies.
    pub max_output_tokens: u64,
}

impl Default for ModelLimits {
    fn default() -> Self {
        ModelLimits {
            concurrent_requests: 4,
            idle_timeout: Duration::from_secs(300),
            total_timeout: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(60),
            max_output_tokens: 16_384,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Models {
    pub providers: BTreeMap<String, Provider>,
    pub aliases: BTreeMap<String, ModelAlias>,
    pub retry: ModelRetry,
    pub limits: ModelLimits,
}

/// A limit on model use; an absent field is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Input plus output tokens.
    pub tokens: Option<u64>,
    /// US dollars.
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Budgets {
    pub per_execution: Budget,
    /// A top-level task and everything below it.
    pub per_tree: Budget,
    /// One agent, per UTC day.
    pub per_agent_per_day: Budget,
}

pub(crate) const MODELS_FIELDS: &[&str] = &["providers", "aliases", "retry", "limits"];
pub(crate) const MODEL_LIMITS_FIELDS: &[&str] = &[
    "concurrent_requests",
    "idle_timeout",
    "total_timeout",
    "drain_timeout",
    "max_output_tokens",
];
pub(crate) const PROVIDER_FIELDS: &[&str] = &[
    "kind",
    "base_url",
    "api_key_env",
    "quota_pause",
    "responses",
];
pub(crate) const ALIAS_FIELDS: &[&str] = &["provider", "model", "prices", "fallback"];
pub(crate) const PRICES_FIELDS: &[&str] = &["input", "output", "cached_input"];
pub(crate) const MODEL_RETRY_FIELDS: &[&str] = &["max_attempts", "base_delay", "max_delay"];
pub(crate) const BUDGETS_FIELDS: &[&str] = &["per_execution", "per_tree", "per_agent_per_day"];
pub(crate) const BUDGET_FIELDS: &[&str] = &["tokens", "cost"];

impl Decode for u64 {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        match node.value {
            Value::Int(n) if (0..=i128::from(u64::MAX)).contains(&n) => Some(n as u64),
            _ => {
                cx.expected(node, path, "a whole number, 0 or more");
                None
            }
        }
    }
}

fn non_negative(cx: &mut Cx, f: &crate::decode::Fields, name: &str) -> Option<f64> {
    let value: f64 = f.get(cx, name)?;
    if value < 0.0 {
        if let Some(n) = f.value(name) {
            cx.error(n, &f.path(name), "must be 0 or more");
        }
        return None;
    }
    Some(value)
}

pub(crate) fn decode_models(cx: &mut Cx, node: &Node, path: &str) -> Option<Models> {
    let f = cx.fields(node, path, MODELS_FIELDS)?;
    let mut models = Models::default();
    // Names declared even if their settings are broken, so an alias naming one is not reported
    // a second time.
    let mut declared = Vec::new();
    if let Some(n) = f.value("providers")
        && let Value::Map(entries) = &n.value
    {
        for (key, value) in entries {
            let Some(name) = key.scalar_text(cx.source) else {
                continue;
            };
            declared.push(name.clone());
            let p = format!("{}.{name}", f.path("providers"));
            let Some(pf) = cx.fields(value, &p, PROVIDER_FIELDS) else {
                continue;
            };
            let kind = match pf.value("kind") {
                Some(k) => match String::decode(cx, k, &pf.path("kind")).as_deref() {
                    Some(name) => {
                        let kind = ProviderKind::ALL
                            .into_iter()
                            .find(|kind| kind.manifest_name() == name);
                        if kind.is_none() {
                            let known: Vec<String> = ProviderKind::ALL
                                .iter()
                                .map(|kind| format!("`{}`", kind.manifest_name()))
                                .collect();
                            cx.error(
                                k,
                                &pf.path("kind"),
                                format!("expected one of {}, found `{name}`", known.join(", ")),
                            );
                        }
                        kind
                    }
                    None => None,
                },
                None => {
                    pf.missing(cx, "kind", "kind: anthropic");
                    None
                }
            };
            let base_url: Option<String> =
                pf.required(cx, "base_url", "base_url: https://api.anthropic.com");
            if let (Some(url), Some(n)) = (&base_url, pf.value("base_url"))
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                cx.error(
                    n,
                    &pf.path("base_url"),
                    format!("`{url}` is not an http(s) URL"),
                );
            }
            let api_key_env: Option<String> = pf.get(cx, "api_key_env");
            if let (Some(var), Some(n)) = (&api_key_env, pf.value("api_key_env"))
                && (var.is_empty()
                    || !var
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            {
                // The value is not echoed: someone may have pasted the key itself here.
                cx.error(n, &pf.path("api_key_env"), "is not an environment variable name: give the name of the variable that holds the key (A-Z, 0-9 and _, such as ANTHROPIC_API_KEY), never the key itself");
            }
            let quota_pause = positive_duration(cx, &pf, "quota_pause", default_quota_pause());
            let responses = pf.or(cx, "responses", false);
            if let (true, Some(kind), Some(n)) = (responses, kind, pf.value("responses"))
                && kind != ProviderKind::OpenAiCompatible
            {
                // OpenAI serves both APIs; Anthropic and Gemini serve neither.
                cx.error(
                    n,
                    &pf.path("responses"),
                    format!(
                        "only `openai-compatible` providers take `responses`; this one is `{}`",
                        kind.manifest_name()
                    ),
                );
            }
            if let (Some(kind), Some(base_url)) = (kind, base_url) {
                models.providers.insert(
                    name,
                    Provider {
                        kind,
                        base_url,
                        api_key_env,
                        quota_pause,
                        responses,
                    },
                );
            }
        }
    } else if let Some(n) = f.value("providers") {
        cx.expected(
            n,
            &f.path("providers"),
            "a mapping of provider names to settings",
        );
    }
    // Each alias's `fallback` node, checked once every alias is known.
    let mut fallbacks: Vec<(String, &Node, String)> = Vec::new();
    let mut alias_names = Vec::new();
    if let Some(n) = f.value("aliases")
        && let Value::Map(entries) = &n.value
    {
        for (key, value) in entries {
            let Some(name) = key.scalar_text(cx.source) else {
                continue;
            };
            let p = format!("{}.{name}", f.path("aliases"));
            let Some(af) = cx.fields(value, &p, ALIAS_FIELDS) else {
                continue;
            };
            let provider: Option<String> = af.required(cx, "provider", "provider: anthropic");
            if let (Some(prov), Some(n)) = (&provider, af.value("provider"))
                && !declared.contains(prov)
            {
                let known: Vec<&str> = declared.iter().map(String::as_str).collect();
                cx.error(
                    n,
                    &af.path("provider"),
                    format!(
                        "no provider `{prov}` under spec.models.providers (known: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            alias_names.push(name.clone());
            let model: Option<String> = af.required(cx, "model", "model: claude-sonnet-4-5");
            let fallback: Option<String> = af.get(cx, "fallback");
            if let (Some(target), Some(n)) = (&fallback, af.value("fallback")) {
                fallbacks.push((name.clone(), n, target.clone()));
            }
            let mut prices = Prices::default();
            if let Some(pn) = af.value("prices")
                && let Some(pf) = cx.fields(pn, &af.path("prices"), PRICES_FIELDS)
            {
                prices.input = non_negative(cx, &pf, "input").unwrap_or(0.0);
                prices.output = non_negative(cx, &pf, "output").unwrap_or(0.0);
                prices.cached_input = non_negative(cx, &pf, "cached_input").unwrap_or(0.0);
            }
            if let (Some(provider), Some(model)) = (provider, model) {
                models.aliases.insert(
                    name,
                    ModelAlias {
                        provider,
                        model,
                        prices,
                        fallback,
                    },
                );
            }
        }
    } else if let Some(n) = f.value("aliases") {
        cx.expected(
            n,
            &f.path("aliases"),
            "a mapping of alias names to {provider, model, prices}",
        );
    }
    check_fallbacks(cx, &f.path("aliases"), &alias_names, &fallbacks, &models);
    if let Some(n) = f.value("retry")
        && let Some(rf) = cx.fields(n, &f.path("retry"), MODEL_RETRY_FIELDS)
    {
        let d = ModelRetry::default();
        models.retry = ModelRetry {
            max_attempts: at_least_one(cx, &rf, "max_attempts", "a request needs one try")
                .unwrap_or(d.max_attempts),
            base_delay: positive_duration(cx, &rf, "base_delay", d.base_delay),
            max_delay: positive_duration(cx, &rf, "max_delay", d.max_delay),
        };
    }
    if let Some(n) = f.value("limits")
        && let Some(lf) = cx.fields(n, &f.path("limits"), MODEL_LIMITS_FIELDS)
    {
        let d = ModelLimits::default();
        let max_output_tokens = match lf.get::<u64>(cx, "max_output_tokens") {
            Some(0) => {
                if let Some(n) = lf.value("max_output_tokens") {
                    cx.error(n, &lf.path("max_output_tokens"), "must be 1 or more");
                }
                d.max_output_tokens
            }
            Some(n) => n,
            None => d.max_output_tokens,
        };
        models.limits = ModelLimits {
            concurrent_requests: at_least_one(
                cx,
                &lf,
                "concurrent_requests",
                "an execution needs room for one request",
            )
            .unwrap_or(d.concurrent_requests),
            idle_timeout: positive_duration(cx, &lf, "idle_timeout", d.idle_timeout),
            total_timeout: positive_duration(cx, &lf, "total_timeout", d.total_timeout),
            drain_timeout: positive_duration(cx, &lf, "drain_timeout", d.drain_timeout),
            max_output_tokens,
        };
    }
    Some(models)
}

/// Every `fallback` names another declared alias, and following them never comes back.
fn check_fallbacks(
    cx: &mut Cx,
    aliases_path: &str,
    names: &[String],
    fallbacks: &[(String, &Node, String)],
    models: &Models,
) {
    for (alias, node, target) in fallbacks {
        let path = format!("{aliases_path}.{alias}.fallback");
        if target == alias {
            cx.error(node, &path, "an alias cannot fall back to itself");
            continue;
        }
        if !names.contains(target) {
            cx.error(
                node,
                &path,
                format!(
                    "no alias `{target}` under {aliases_path} (known: {})",
                    names.join(", ")
                ),
            );
            continue;
        }
        let mut seen = vec![alias.as_str()];
        let mut next = Some(target.as_str());
        while let Some(current) = next {
            if seen.contains(&current) {
                seen.push(current);
                cx.error(
                    node,
                    &path,
                    format!(
                        "the fallbacks go round in a circle ({}); end the chain at an alias \
                         without `fallback`",
                        seen.join(" → ")
                    ),
                );
                break;
            }
            seen.push(current);
            next = models
                .aliases
                .get(current)
                .and_then(|a| a.fallback.as_deref());
        }
    }
}

pub(crate) fn decode_budget(cx: &mut Cx, node: &Node, path: &str) -> Budget {
    let Some(f) = cx.fields(node, path, BUDGET_FIELDS) else {
        return Budget::default();
    };
    Budget {
        tokens: f.get(cx, "tokens"),
        cost: non_negative(cx, &f, "cost"),
    }
}

pub(crate) fn decode_budgets(cx: &mut Cx, node: &Node, path: &str) -> Option<Budgets> {
    let f = cx.fields(node, path, BUDGETS_FIELDS)?;
    let mut budgets = Budgets::default();
    for name in BUDGETS_FIELDS {
        if let Some(n) = f.value(name) {
            let b = decode_budget(cx, n, &f.path(name));
            match *name {
                "per_execution" => budgets.per_execution = b,
                "per_tree" => budgets.per_tree = b,
                _ => budgets.per_agent_per_day = b,
            }
        }
    }
    Some(budgets)
}
