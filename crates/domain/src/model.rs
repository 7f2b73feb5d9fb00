//! The vocabulary of model traffic shared by the manifest, the gateway, the store and the views:
//! which wire format a provider speaks, the tokens of a model answer, and the sums of model
//! requests.

use serde::{Deserialize, Serialize};

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ProviderKind {
    /// OpenAI: Chat Completions and Responses, key as `Authorization: Bearer`.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic: Messages and `count_tokens`, key as `x-api-key`.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Any server speaking OpenAI's formats (Ollama, vLLM, LiteLLM …); the key is optional.
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// Google's Gemini API (https://generativelanguage.googleapis.com): `generateContent`,
    /// `streamGenerateContent` and `countTokens`, key as `x-goog-api-key`.
    #[serde(rename = "gemini")]
    Gemini,
}

impl ProviderKind {
    /// Every kind, in the order of the manifest's documentation.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::OpenAiCompatible,
        ProviderKind::Gemini,
    ];

    /// The kind as a manifest spells it.
    pub fn manifest_name(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Gemini => "gemini",
        }
    }

    /// The kind as the gateway's messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::Gemini => "gemini",
        }
    }
}

/// The tokens of one model answer, or of several added up: what a provider reported, what an
/// agent's CLI said it used, what the built-in agent counted. The convention is the gateway's:
/// `input` counts every input token and `cached` is the part of them read from the provider's
/// cache. Spelled `input_tokens`, `output_tokens` and `cached_tokens` in JSON, as everywhere
/// else agentgrid prints tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    #[serde(rename = "input_tokens")]
    pub input: u64,
    #[serde(rename = "output_tokens")]
    pub output: u64,
    #[serde(rename = "cached_tokens")]
    pub cached: u64,
}

impl Tokens {
    /// Input and output tokens together: what a token budget counts.
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// Adds `other` field by field, saturating: the counts come from the agent or a provider,
    /// and a made-up huge number must not wrap around to a small one.
    pub fn add(&mut self, other: &Tokens) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cached = self.cached.saturating_add(other.cached);
    }

    /// What these counts add to `earlier`, field by field, never below zero: the increment of
    /// a running total that a CLI reports again and again.
    pub fn since(&self, earlier: &Tokens) -> Tokens {
        Tokens {
            input: self.input.saturating_sub(earlier.input),
            output: self.output.saturating_sub(earlier.output),
            cached: self.cached.saturating_sub(earlier.cached),
        }
    }
}

/// Sums over a set of model requests: what the gateway counts against budgets, what the store
/// adds up and what the views print. The tokens follow the gateway's convention (see
/// [`Tokens`]) and are spelled in JSON next to the other sums, as `input_tokens`,
/// `output_tokens` and `cached_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsage {
    /// How many requests were recorded.
    pub requests: u64,
    #[serde(flatten)]
    pub tokens: Tokens,
    /// Millionths of a dollar.
    pub cost_micros: u64,
}

impl ModelUsage {
    /// The sums of one request of these tokens and this cost.
    pub fn of_request(tokens: Tokens, cost_micros: u64) -> ModelUsage {
        ModelUsage {
            requests: 1,
            tokens,
            cost_micros,
        }
    }

    /// Adds `other` field by field, saturating.
    pub fn add(&mut self, other: &ModelUsage) {
        self.requests = self.requests.saturating_add(other.requests);
        self.tokens.add(&other.tokens);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
    }

    /// Each field the larger of the two: for two lower bounds of what was really used.
    pub fn raise_to(&mut self, other: &ModelUsage) {
        self.requests = self.requests.max(other.requests);
        self.tokens.input = self.tokens.input.max(other.tokens.input);
        self.tokens.output = self.tokens.output.max(other.tokens.output);
        self.tokens.cached = self.tokens.cached.max(other.tokens.cached);
        self.cost_micros = self.cost_micros.max(other.cost_micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_kinds_read_as_the_manifest_spells_them() {
        for kind in ProviderKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.manifest_name()));
            let back: ProviderKind = serde_json::from_str(&json).unwrap();
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn tokens_add_saturating_and_keep_the_json_names_of_the_sums() {
        let mut a = Tokens {
            input: u64::MAX - 1,
            output: 5,
            cached: 1,
        };
        a.add(&Tokens {
            input: 7,
            output: 6,
            cached: 2,
        });
        assert_eq!(
            a,
            Tokens {
                input: u64::MAX,
                output: 11,
                cached: 3,
            }
        );
        assert_eq!(a.total(), u64::MAX);
        let earlier = Tokens {
            input: 10,
            output: 20,
            cached: 0,
        };
        assert_eq!(
            Tokens {
                input: 15,
                output: 5,
                cached: 2,
            }
            .since(&earlier),
            Tokens {
                input: 5,
                output: 0,
                cached: 2,
            }
        );
        let json = serde_json::to_value(Tokens {
            input: 1,
            output: 2,
            cached: 3,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"input_tokens": 1, "output_tokens": 2, "cached_tokens": 3})
        );
        // The sums spell their tokens the same way, so a view may print either.
        let sums = serde_json::to_value(ModelUsage::of_request(
            Tokens {
                input: 1,
                output: 2,
                cached: 3,
            },
            9,
        ))
        .unwrap();
        assert_eq!(
            sums,
            serde_json::json!({"requests": 1, "input_tokens": 1, "output_tokens": 2,
                "cached_tokens": 3, "cost_micros": 9})
        );
        assert_eq!(ModelUsage::of_request(a, 0).tokens, a);
        let back: ModelUsage = serde_json::from_value(sums).unwrap();
        assert_eq!(back.tokens.cached, 3);
    }

    #[test]
    fn usage_adds_saturating_and_raises_field_by_field() {
        let mut a = ModelUsage {
            requests: 1,
            tokens: Tokens {
                input: u64::MAX,
                output: 5,
                cached: 0,
            },
            cost_micros: 7,
        };
        a.add(&ModelUsage {
            requests: 1,
            tokens: Tokens {
                input: 1,
                output: 5,
                cached: 2,
            },
            cost_micros: 3,
        });
        assert_eq!(
            a,
            ModelUsage {
                requests: 2,
                tokens: Tokens {
                    input: u64::MAX,
                    output: 10,
                    cached: 2,
                },
                cost_micros: 10,
            }
        );
        assert_eq!(a.tokens.total(), u64::MAX);
        let mut b = ModelUsage {
            requests: 3,
            ..ModelUsage::default()
        };
        b.raise_to(&a);
        assert_eq!(b.requests, 3);
        assert_eq!(b.tokens.output, 10);
    }
}
