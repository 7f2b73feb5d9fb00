//! The vocabulary of model traffic shared by the manifest, the gateway, the store and the views:
//! which wire format a provider speaks, and the sums of model requests.

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

/// Sums over a set of model requests: what the gateway counts against budgets, what the store
/// adds up and what the views print. Token counts follow the gateway's convention:
/// `input_tokens` counts every input token and `cached_tokens` is the part of them read from the
/// provider's cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsage {
    /// How many requests were recorded.
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// Millionths of a dollar.
    pub cost_micros: u64,
}

impl ModelUsage {
    /// Input and output tokens together: what a token budget counts.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Adds `other` field by field, saturating.
    pub fn add(&mut self, other: &ModelUsage) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
    }

    /// Each field the larger of the two: for two lower bounds of what was really used.
    pub fn raise_to(&mut self, other: &ModelUsage) {
        self.requests = self.requests.max(other.requests);
        self.input_tokens = self.input_tokens.max(other.input_tokens);
        self.output_tokens = self.output_tokens.max(other.output_tokens);
        self.cached_tokens = self.cached_tokens.max(other.cached_tokens);
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
    fn usage_adds_saturating_and_raises_field_by_field() {
        let mut a = ModelUsage {
            requests: 1,
            input_tokens: u64::MAX,
            output_tokens: 5,
            cached_tokens: 0,
            cost_micros: 7,
        };
        a.add(&ModelUsage {
            requests: 1,
            input_tokens: 1,
            output_tokens: 5,
            cached_tokens: 2,
            cost_micros: 3,
        });
        assert_eq!(
            a,
            ModelUsage {
                requests: 2,
                input_tokens: u64::MAX,
                output_tokens: 10,
                cached_tokens: 2,
                cost_micros: 10,
            }
        );
        assert_eq!(a.tokens(), u64::MAX);
        let mut b = ModelUsage {
            requests: 3,
            ..ModelUsage::default()
        };
        b.raise_to(&a);
        assert_eq!(b.requests, 3);
        assert_eq!(b.output_tokens, 10);
    }
}
