//! The script a fixture answers from: one step per model request, in order.

use serde::Deserialize;

use crate::Error;

/// The answers a fixture gives, one [`Step`] per model request in the order requests arrive.
///
/// `count_tokens` and model-list requests do not consume steps. When the steps run out the
/// fixture answers 500 with a message saying so, unless `repeat` is set, in which case it starts
/// over from the first step (what a benchmark wants).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub steps: Vec<Step>,
    #[serde(default)]
    pub repeat: bool,
}

/// One scripted answer.
///
/// Without `status` (or with a status below 400) the step is a reply: `reply` is the text, sent
/// word by word when the request streams, and the token counts go into the usage of whatever
/// wire format was asked for. With a `status` of 400 or more the step is an error in the
/// route's own error shape, with `retry-after` headers when asked for.
///
/// Token counts follow one convention whatever the format: `input_tokens` counts every input
/// token and `cached_tokens` is the part of it read from the cache. The fixture converts that
/// into each provider's own fields (Anthropic, for one, reports cached tokens apart from
/// `input_tokens`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub reply: String,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cached_tokens: u64,
    /// An HTTP error status to answer with instead of a reply (429, 503, 529 …).
    #[serde(default)]
    pub status: Option<u16>,
    /// With an error status: send `retry-after-ms` with this value, and `retry-after` with it
    /// rounded up to whole seconds.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// With an error status: send only `retry-after`, in whole seconds.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// With an error status: the provider's own error code, such as `insufficient_quota`
    /// (OpenAI's `type` and `code`) or `billing_error` (Anthropic's `type`), instead of the one
    /// the status usually carries.
    #[serde(default)]
    pub error_code: Option<String>,
    /// With an error status: the error's message instead of `scripted error <status>`, such as
    /// Anthropic's "Your credit balance is too low …".
    #[serde(default)]
    pub error_message: Option<String>,
    /// With an error status: more response headers, such as `x-ratelimit-reset-requests` or
    /// `anthropic-ratelimit-tokens-reset`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Wait this long before answering at all.
    #[serde(default)]
    pub delay_ms: u64,
    /// In a stream, wait this long after the first text delta before sending the rest.
    #[serde(default)]
    pub pause_ms: u64,
    /// In a stream, stop after the first text delta until the test calls
    /// [`Fixture::open_gate`](crate::Fixture::open_gate). This shows that a client got the first
    /// delta before the fixture sent the last, without relying on timing.
    #[serde(default)]
    pub gate: bool,
    /// A function call the model makes after its text, for agents' tool-call turns. Sent in
    /// the Gemini (`functionCall` part, `finishReason: STOP`), Chat Completions (`tool_calls`,
    /// `finish_reason: tool_calls`), Anthropic Messages (`tool_use` block, `stop_reason:
    /// tool_use`) and OpenAI Responses (a `function_call` output item after the message, what
    /// Codex runs its `exec_command` tool on) formats.
    #[serde(default)]
    pub tool_call: Option<ToolCall>,
}

/// One function call in a scripted reply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub name: String,
    /// The call's arguments, a JSON object.
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl Step {
    /// A reply with this text and these token counts.
    pub fn reply(text: &str, input_tokens: u64, output_tokens: u64, cached_tokens: u64) -> Step {
        Step {
            reply: text.to_owned(),
            input_tokens,
            output_tokens,
            cached_tokens,
            ..Step::default()
        }
    }

    /// A reply that calls the function `name` with `arguments` after `text`.
    pub fn call(
        text: &str,
        name: &str,
        arguments: serde_json::Value,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Step {
        Step {
            tool_call: Some(ToolCall {
                name: name.to_owned(),
                arguments,
            }),
            ..Step::reply(text, input_tokens, output_tokens, 0)
        }
    }

    /// An error answer with this HTTP status.
    pub fn status(status: u16) -> Step {
        Step {
            status: Some(status),
            ..Step::default()
        }
    }

    /// Whether this step answers with an error.
    pub fn is_error(&self) -> bool {
        self.status.is_some_and(|s| s >= 400)
    }
}

impl Script {
    /// A script that answers with these steps once each.
    pub fn new(steps: Vec<Step>) -> Script {
        Script {
            steps,
            repeat: false,
        }
    }

    /// Reads a script from JSON: either `{"steps": [...], "repeat": false}` or the bare list of
    /// steps. `origin` names the source in errors, usually the file path.
    pub fn from_json(text: &str, origin: &str) -> Result<Script, Error> {
        let invalid = |e: serde_json::Error| Error::Script {
            origin: origin.to_owned(),
            detail: e.to_string(),
        };
        // The first character decides the form, so a mistake is reported against the form the
        // author meant rather than as "matched neither".
        let script = if text.trim_start().starts_with('[') {
            Script::new(serde_json::from_str::<Vec<Step>>(text).map_err(invalid)?)
        } else {
            serde_json::from_str::<Script>(text).map_err(invalid)?
        };
        for (index, step) in script.steps.iter().enumerate() {
            for (name, value) in &step.headers {
                if axum::http::HeaderName::try_from(name.as_str()).is_err()
                    || axum::http::HeaderValue::try_from(value.as_str()).is_err()
                {
                    return Err(Error::Script {
                        origin: origin.to_owned(),
                        detail: format!(
                            "step {index} has the header `{name}: {value}`, which is not a valid \
                             HTTP header; use a lower-case name of letters, digits and `-`"
                        ),
                    });
                }
            }
            if step.cached_tokens > step.input_tokens {
                return Err(Error::Script {
                    origin: origin.to_owned(),
                    detail: format!(
                        "step {index} has {} cached tokens but only {} input tokens; cached \
                         tokens are a part of the input tokens",
                        step.cached_tokens, step.input_tokens
                    ),
                });
            }
        }
        Ok(script)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_reads_from_a_list_or_an_object() {
        let list = Script::from_json(
            r#"[{"reply": "hi", "input_tokens": 3, "output_tokens": 1}, {"status": 429, "retry_after_ms": 5}]"#,
            "list.json",
        )
        .unwrap();
        assert_eq!(list.steps.len(), 2);
        assert!(!list.repeat);
        assert_eq!(list.steps[0], Step::reply("hi", 3, 1, 0));
        assert!(list.steps[1].is_error());
        let object =
            Script::from_json(r#"{"steps": [{"delay_ms": 2}], "repeat": true}"#, "o").unwrap();
        assert!(object.repeat);
        assert_eq!(object.steps[0].delay_ms, 2);
    }

    #[test]
    fn a_bad_script_names_its_origin_and_the_problem() {
        let err = Script::from_json(r#"[{"replay": "typo"}]"#, "steps.json").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("steps.json"), "{text}");
        assert!(text.contains("replay"), "{text}");
        let err = Script::from_json(r#"{"steps": [], "repat": true}"#, "s.json").unwrap_err();
        assert!(err.to_string().contains("repat"), "{err}");
        let err =
            Script::from_json(r#"[{"input_tokens": 1, "cached_tokens": 2}]"#, "c").unwrap_err();
        assert!(
            err.to_string().contains("step 0 has 2 cached tokens"),
            "{err}"
        );
    }
}
