//! The providers' wire formats as far as the gateway needs them: reading `model` and `stream`
//! from a request and rewriting it for upstream, error bodies in each provider's shape, and
//! reading token usage from JSON bodies and stream events. Gemini's API names the model and
//! whether to stream in the URL (`/v1beta/models/{model}:streamGenerateContent?alt=sse`), and
//! nests its output cap in `generationConfig.maxOutputTokens`.

use std::fmt;

use domain::Tokens;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI Chat Completions.
    Chat,
    /// OpenAI Responses.
    Responses,
    /// Anthropic Messages.
    Messages,
    /// Anthropic `count_tokens`: free, so neither metered nor checked against budgets.
    CountTokens,
    /// Gemini `generateContent`: one JSON answer.
    Generate,
    /// Gemini `streamGenerateContent?alt=sse`: server-sent events, each a whole
    /// `GenerateContentResponse`.
    StreamGenerate,
    /// Gemini `countTokens`: free, like Anthropic's.
    GeminiCountTokens,
}

impl Api {
    /// The path and query under the provider's base URL, for the provider's model `model`.
    pub fn upstream_path(self, model: &str) -> String {
        match self {
            Api::Chat => "/chat/completions".into(),
            Api::Responses => "/responses".into(),
            Api::Messages => "/messages".into(),
            Api::CountTokens => "/messages/count_tokens".into(),
            Api::Generate => format!("/models/{model}:generateContent"),
            Api::StreamGenerate => format!("/models/{model}:streamGenerateContent?alt=sse"),
            Api::GeminiCountTokens => format!("/models/{model}:countTokens"),
        }
    }

    pub fn shape(self) -> Shape {
        match self {
            Api::Chat | Api::Responses => Shape::OpenAi,
            Api::Messages | Api::CountTokens => Shape::Anthropic,
            Api::Generate | Api::StreamGenerate | Api::GeminiCountTokens => Shape::Gemini,
        }
    }

    /// Free calls: neither reserved nor metered.
    pub fn is_free(self) -> bool {
        matches!(self, Api::CountTokens | Api::GeminiCountTokens)
    }

    /// The top-level request fields that cap the output tokens in this API. Gemini's cap is
    /// nested and read by [`Request::output_cap_for`].
    pub fn cap_fields(self) -> &'static [&'static str] {
        match self {
            Api::Chat => &["max_completion_tokens", "max_tokens"],
            Api::Responses => &["max_output_tokens"],
            Api::Messages => &["max_tokens"],
            Api::CountTokens | Api::Generate | Api::StreamGenerate | Api::GeminiCountTokens => &[],
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Api::Chat => "OpenAI Chat Completions API (/v1/chat/completions)",
            Api::Responses => "OpenAI Responses API (/v1/responses)",
            Api::Messages => "Anthropic Messages API (/v1/messages)",
            Api::CountTokens => "Anthropic token counting API (/v1/messages/count_tokens)",
            Api::Generate => "Gemini API (/v1beta/models/{model}:generateContent)",
            Api::StreamGenerate => "Gemini API (/v1beta/models/{model}:streamGenerateContent)",
            Api::GeminiCountTokens => {
                "Gemini token counting API (/v1beta/models/{model}:countTokens)"
            }
        }
    }

    /// The Gemini API for the method after the colon in `/v1beta/models/{model}:{method}`.
    pub fn gemini_method(method: &str) -> Option<Api> {
        match method {
            "generateContent" => Some(Api::Generate),
            "streamGenerateContent" => Some(Api::StreamGenerate),
            "countTokens" => Some(Api::GeminiCountTokens),
            _ => None,
        }
    }
}

/// Every endpoint the gateway serves, named in the 404 for any other path.
pub const ENDPOINTS: &str = "POST /v1/chat/completions, POST /v1/responses, POST /v1/messages, \
     POST /v1/messages/count_tokens, GET /v1/models, and the Gemini API's POST \
     /v1beta/models/{model}:generateContent, :streamGenerateContent?alt=sse and :countTokens";

/// Whose error shape an answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
    /// Gemini: `{"error": {"code", "message", "status"}}` with Google's canonical status names.
    Gemini,
}

/// Why the gateway itself refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one that is unknown or revoked.
    Unauthenticated,
    /// A budget is used up.
    Budget,
    /// The alias is unknown, or not allowed for this execution.
    UnknownModel,
    /// The body is not what the API expects.
    BadRequest,
    /// The body is larger than the gateway accepts.
    TooLarge,
    /// The provider could not be reached, or refused the node's own key.
    Upstream,
    /// The execution has too much under way to admit the request in time.
    Busy,
    /// The alias's provider is paused after a used-up quota, and no fallback can take it.
    Paused,
    /// The path is none the gateway serves.
    NoSuchPath,
}

impl Refusal {
    pub fn status(self, shape: Shape) -> u16 {
        match (self, shape) {
            (Refusal::Unauthenticated, _) => 401,
            // OpenAI reports an exhausted quota as 429 `insufficient_quota`; Anthropic's
            // nearest match, `billing_error`, is 402, which its clients do not retry.
            (Refusal::Budget | Refusal::Paused, Shape::OpenAi) => 429,
            (Refusal::Budget | Refusal::Paused, Shape::Anthropic) => 402,
            // Gemini reports a used-up quota as 429 `RESOURCE_EXHAUSTED`.
            (Refusal::Budget | Refusal::Paused, Shape::Gemini) => 429,
            (Refusal::UnknownModel | Refusal::NoSuchPath, _) => 404,
            (Refusal::BadRequest, _) => 400,
            (Refusal::TooLarge, _) => 413,
            (Refusal::Upstream, _) => 502,
            (Refusal::Busy, _) => 429,
        }
    }

    /// The error body, in the provider's own shape and with its own type names.
    pub fn body(self, shape: Shape, message: &str) -> Value {
        match shape {
            Shape::OpenAi => {
                let (kind, code) = match self {
                    Refusal::Unauthenticated => ("invalid_request_error", json!("invalid_api_key")),
                    Refusal::Budget | Refusal::Paused => {
                        ("insufficient_quota", json!("insufficient_quota"))
                    }
                    Refusal::UnknownModel => ("invalid_request_error", json!("model_not_found")),
                    Refusal::NoSuchPath => ("invalid_request_error", json!("unknown_url")),
                    Refusal::BadRequest | Refusal::TooLarge => {
                        ("invalid_request_error", Value::Null)
                    }
                    Refusal::Upstream => ("server_error", Value::Null),
                    Refusal::Busy => ("rate_limit_error", json!("rate_limit_exceeded")),
                };
                json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            }
            Shape::Anthropic => {
                let kind = match self {
                    Refusal::Unauthenticated => "authentication_error",
                    Refusal::Budget | Refusal::Paused => "billing_error",
                    Refusal::UnknownModel | Refusal::NoSuchPath => "not_found_error",
                    Refusal::BadRequest => "invalid_request_error",
                    Refusal::TooLarge => "request_too_large",
                    Refusal::Upstream => "api_error",
                    Refusal::Busy => "rate_limit_error",
                };
                json!({"type": "error", "error": {"type": kind, "message": message}})
            }
            Shape::Gemini => {
                let status = match self {
                    Refusal::Unauthenticated => "UNAUTHENTICATED",
                    Refusal::Budget | Refusal::Paused | Refusal::Busy => "RESOURCE_EXHAUSTED",
                    Refusal::UnknownModel | Refusal::NoSuchPath => "NOT_FOUND",
                    Refusal::BadRequest | Refusal::TooLarge => "INVALID_ARGUMENT",
                    Refusal::Upstream => "UNAVAILABLE",
                };
                gemini_error(self.status(shape), message, status)
            }
        }
    }
}

/// Gemini's error body.
pub fn gemini_error(code: u16, message: &str, status: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

/// One token per this many bytes of request body: the input estimate a reservation is made
/// with. Tokenizers average about four bytes of English or code per token and the JSON around
/// the messages adds bytes but few tokens, so the estimate is seldom below the real count; when
/// it is (dense non-Latin text), the settlement charges the real count and the difference is the
/// only slack a budget has.
pub const BYTES_PER_TOKEN: u64 = 3;

/// The estimated input tokens of a request body of `bytes` bytes.
pub fn estimate_input_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(BYTES_PER_TOKEN)
}

/// An output cap the gateway sets on a request: every cap field of the API the request has is
/// set to `tokens`, and when it has none, `add_as` is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCap {
    pub tokens: u64,
    pub fields: &'static [&'static str],
    pub add_as: &'static str,
}

/// The top-level fields of a request body, each kept as the raw JSON text it arrived as, in
/// order. Only `model`, `stream` and `stream_options` are ever parsed; the rest (the whole
/// conversation, usually) is copied through untouched, which keeps the gateway's cost per
/// request small and independent of what the fields hold.
#[derive(Debug)]
pub struct Request<'a> {
    fields: Vec<(String, &'a RawValue)>,
    pub model: String,
    pub stream: bool,
}

struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'a>, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

impl<'a> Request<'a> {
    /// Reads a Gemini body's top level: the model and whether to stream come from the path.
    pub fn parse_gemini(
        body: &'a [u8],
        model: String,
        stream: bool,
    ) -> Result<Request<'a>, String> {
        let Fields(fields) = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not a JSON object: {e}"))?;
        Ok(Request {
            fields,
            model,
            stream,
        })
    }

    /// The last value of the top-level field `name`.
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// The output cap the request names in `api`'s field for it, if any.
    pub fn output_cap_for(&self, api: Api) -> Option<u64> {
        match api.shape() {
            Shape::Gemini => self
                .raw("generationConfig")
                .and_then(|v| serde_json::from_str::<GenerationConfigCap>(v.get()).ok())
                .and_then(|c| c.max_output_tokens),
            _ => self.output_cap(api.cap_fields()),
        }
    }

    /// A Gemini body for upstream: the model is in the URL, so the body is copied as it came
    /// except for `generationConfig.maxOutputTokens`, set to `cap` when there is one.
    pub fn rewrite_gemini(&self, cap: Option<u64>) -> Vec<u8> {
        let size = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>();
        let mut out = Vec::with_capacity(size + 64);
        out.push(b'{');
        let mut saw_config = false;
        for (index, (key, value)) in self.fields.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_json_string(&mut out, key);
            out.push(b':');
            match (key.as_str(), cap) {
                ("generationConfig", Some(tokens)) => {
                    saw_config = true;
                    let mut config =
                        serde_json::from_str::<serde_json::Map<String, Value>>(value.get())
                            .unwrap_or_default();
                    config.insert("maxOutputTokens".into(), Value::from(tokens));
                    out.extend_from_slice(Value::Object(config).to_string().as_bytes());
                }
                _ => out.extend_from_slice(value.get().as_bytes()),
            }
        }
        if let Some(tokens) = cap.filter(|_| !saw_config) {
            if !self.fields.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(
                format!(r#""generationConfig":{{"maxOutputTokens":{tokens}}}"#).as_bytes(),
            );
        }
        out.push(b'}');
        out
    }

    /// Reads the body's top level. The error is a sentence for the agent.
    pub fn parse(body: &'a [u8]) -> Result<Request<'a>, String> {
        let Fields(fields) = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not a JSON object: {e}"))?;
        let raw = |name: &str| {
            fields
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| *v)
        };
        let model = match raw("model") {
            Some(v) => serde_json::from_str::<String>(v.get())
                .map_err(|_| "the request's `model` must be a string".to_owned())?,
            None => return Err("the request names no `model`".to_owned()),
        };
        let stream = match raw("stream") {
            Some(v) => serde_json::from_str::<Option<bool>>(v.get())
                .map_err(|_| "the request's `stream` must be true or false".to_owned())?
                .unwrap_or(false),
            None => false,
        };
        Ok(Request {
            fields,
            model,
            stream,
        })
    }

    /// The smallest output cap among `fields` the request names, if any. A cap that is not a
    /// whole number is left for the provider to refuse.
    pub fn output_cap(&self, fields: &[&str]) -> Option<u64> {
        self.fields
            .iter()
            .filter(|(k, _)| fields.contains(&k.as_str()))
            .filter_map(|(_, v)| serde_json::from_str::<u64>(v.get()).ok())
            .min()
    }

    /// The body to send upstream: `model` replaced by the provider's name for it; when
    /// `ask_usage` is set, `stream_options.include_usage` turned on so a Chat Completions
    /// stream ends with the usage the gateway must record; and with a `cap`, the output cap
    /// set to what the budget leaves room for.
    pub fn rewrite(
        &self,
        upstream_model: &str,
        ask_usage: bool,
        cap: Option<OutputCap>,
    ) -> Vec<u8> {
        let size = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>();
        let mut out = Vec::with_capacity(size + upstream_model.len() + 48);
        out.push(b'{');
        let mut first = true;
        let mut comma = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        let mut saw_options = false;
        let mut saw_cap = false;
        for (key, value) in &self.fields {
            comma(&mut out);
            write_json_string(&mut out, key);
            out.push(b':');
            match key.as_str() {
                "model" => write_json_string(&mut out, upstream_model),
                name if cap.is_some_and(|c| c.fields.contains(&name)) => {
                    saw_cap = true;
                    let tokens = cap.map(|c| c.tokens).unwrap_or_default();
                    out.extend_from_slice(tokens.to_string().as_bytes());
                }
                "stream_options" if ask_usage => {
                    saw_options = true;
                    let mut options =
                        serde_json::from_str::<serde_json::Map<String, Value>>(value.get())
                            .unwrap_or_default();
                    options.insert("include_usage".into(), Value::Bool(true));
                    out.extend_from_slice(Value::Object(options).to_string().as_bytes());
                }
                _ => out.extend_from_slice(value.get().as_bytes()),
            }
        }
        if ask_usage && !saw_options {
            comma(&mut out);
            out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
        }
        if let Some(cap) = cap.filter(|_| !saw_cap) {
            comma(&mut out);
            write_json_string(&mut out, cap.add_as);
            out.push(b':');
            out.extend_from_slice(cap.tokens.to_string().as_bytes());
        }
        out.push(b'}');
        out
    }
}

#[derive(Deserialize)]
struct GenerationConfigCap {
    #[serde(rename = "maxOutputTokens", default)]
    max_output_tokens: Option<u64>,
}

/// A stream event telling the agent that the gateway cut its response, in the API's own error
/// event shape, so its client reports an error instead of taking the text for complete.
pub fn stream_error(api: Api, code: &str, message: &str) -> Vec<u8> {
    let (event, data) = match api {
        Api::Chat => (
            None,
            json!({"error": {"message": message, "type": "server_error", "param": null, "code": code}}),
        ),
        Api::Responses => (
            Some("error"),
            json!({"type": "error", "code": code, "message": message, "param": null}),
        ),
        Api::Messages | Api::CountTokens => (
            Some("error"),
            json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        ),
        // Gemini's clients read an `error` object in a stream chunk as the stream's failure.
        Api::Generate | Api::StreamGenerate | Api::GeminiCountTokens => (
            None,
            json!({"error": {"code": 504, "message": message, "status": "DEADLINE_EXCEEDED", "details": [{"reason": code}]}}),
        ),
    };
    let mut out = Vec::new();
    if let Some(event) = event {
        out.extend_from_slice(format!("event: {event}\n").as_bytes());
    }
    out.extend_from_slice(format!("data: {data}\n\n").as_bytes());
    out
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<CachedDetails>,
}

#[derive(Deserialize)]
struct CachedDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatShape {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    /// In a stream, the final usage comes in a chunk without choices; some compatible servers
    /// can be asked for running usage in every chunk, which is not the final figure.
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<CachedDetails>,
}

#[derive(Deserialize)]
struct ResponseObject {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
}

#[derive(Deserialize)]
struct ResponsesEvent {
    #[serde(default)]
    response: Option<ResponseObject>,
}

#[derive(Deserialize, Default)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct AnthropicMessage {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(default)]
    message: Option<AnthropicMessage>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// Gemini's `usageMetadata`: `promptTokenCount` includes the cached part, and thinking is
/// billed as output beside `candidatesTokenCount`.
#[derive(Deserialize)]
struct GeminiUsage {
    #[serde(rename = "promptTokenCount", default)]
    prompt: u64,
    #[serde(rename = "candidatesTokenCount", default)]
    candidates: u64,
    #[serde(rename = "thoughtsTokenCount", default)]
    thoughts: u64,
    #[serde(rename = "cachedContentTokenCount", default)]
    cached: u64,
    #[serde(rename = "toolUsePromptTokenCount", default)]
    tool_use_prompt: u64,
}

#[derive(Deserialize)]
struct GeminiCandidate {
    #[serde(rename = "finishReason", default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct GeminiResponse {
    #[serde(rename = "usageMetadata", default)]
    usage: Option<GeminiUsage>,
    #[serde(default)]
    candidates: Option<Vec<GeminiCandidate>>,
}

/// Usage gathered from one response, JSON body or stream, as it passes.
#[derive(Debug, Default)]
pub struct UsageReader {
    /// Anthropic reports uncached input, cache reads and cache writes apart, and repeats
    /// cumulative counts in later events; the latest value of each wins.
    anthropic: [Option<u64>; 4],
    openai: Option<Tokens>,
    /// Whether the provider's final report (the last usage of the response) arrived.
    pub complete: bool,
}

const A_INPUT: usize = 0;
const A_OUTPUT: usize = 1;
const A_CACHE_READ: usize = 2;
const A_CACHE_WRITE: usize = 3;

impl UsageReader {
    fn anthropic_usage(&mut self, usage: AnthropicUsage) {
        let fields = [
            (A_INPUT, usage.input_tokens),
            (A_OUTPUT, usage.output_tokens),
            (A_CACHE_READ, usage.cache_read_input_tokens),
            (A_CACHE_WRITE, usage.cache_creation_input_tokens),
        ];
        for (slot, value) in fields {
            if value.is_some() {
                self.anthropic[slot] = value;
            }
        }
    }

    fn openai_usage(&mut self, usage: OpenAiUsage) {
        self.openai = Some(Tokens {
            input: usage.prompt_tokens,
            output: usage.completion_tokens,
            cached: usage
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        });
        self.complete = true;
    }

    fn responses_usage(&mut self, usage: ResponsesUsage) {
        self.openai = Some(Tokens {
            input: usage.input_tokens,
            output: usage.output_tokens,
            cached: usage
                .input_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        });
        self.complete = true;
    }

    /// A Gemini response or stream chunk: each carries the running usage, and the one whose
    /// candidate has a `finishReason` carries the final figure.
    fn gemini_response(&mut self, response: GeminiResponse) {
        if let Some(u) = response.usage {
            self.openai = Some(Tokens {
                input: u.prompt.saturating_add(u.tool_use_prompt),
                output: u.candidates.saturating_add(u.thoughts),
                cached: u.cached,
            });
            let finished = response
                .candidates
                .is_some_and(|c| c.iter().any(|c| c.finish_reason.is_some()));
            self.complete = self.complete || finished;
        }
    }

    /// Reads a complete, non-streamed response body.
    pub fn read_body(&mut self, api: Api, body: &[u8]) {
        match api {
            Api::Chat => {
                if let Ok(ChatShape { usage: Some(u), .. }) = serde_json::from_slice(body) {
                    self.openai_usage(u);
                }
            }
            Api::Responses => {
                if let Ok(ResponseObject { usage: Some(u) }) = serde_json::from_slice(body) {
                    self.responses_usage(u);
                }
            }
            Api::Messages => {
                if let Ok(AnthropicMessage { usage: Some(u) }) = serde_json::from_slice(body) {
                    self.anthropic_usage(u);
                    self.complete = true;
                }
            }
            Api::Generate | Api::StreamGenerate => {
                if let Ok(response) = serde_json::from_slice::<GeminiResponse>(body) {
                    let had_usage = response.usage.is_some();
                    self.gemini_response(response);
                    // A whole answer's usage is final even without a finish reason.
                    self.complete = self.complete || had_usage;
                }
            }
            Api::CountTokens | Api::GeminiCountTokens => {}
        }
    }

    /// Reads the `data` of one stream event. Events without usage are skipped after a cheap
    /// search for the word, so text deltas cost almost nothing.
    pub fn read_event(&mut self, api: Api, data: &[u8]) {
        if !contains(data, b"usage") {
            return;
        }
        match api {
            Api::Chat => {
                if let Ok(ChatShape {
                    usage: Some(u),
                    choices,
                }) = serde_json::from_slice(data)
                {
                    self.openai_usage(u);
                    // Running usage beside a choice is not the last word.
                    self.complete = choices.is_none_or(|c| c.is_empty());
                }
            }
            Api::Responses => {
                // `response.completed`, `response.incomplete` and `response.failed` carry the
                // final usage; earlier events carry `usage: null`.
                if let Ok(ResponsesEvent {
                    response: Some(ResponseObject { usage: Some(u) }),
                }) = serde_json::from_slice(data)
                {
                    self.responses_usage(u);
                }
            }
            Api::Messages => {
                if let Ok(event) = serde_json::from_slice::<AnthropicEvent>(data) {
                    if let Some(u) = event.message.and_then(|m| m.usage) {
                        self.anthropic_usage(u);
                    }
                    // `message_delta` carries the final, cumulative output count.
                    if let Some(u) = event.usage {
                        self.anthropic_usage(u);
                        self.complete = true;
                    }
                }
            }
            Api::Generate | Api::StreamGenerate => {
                if let Ok(response) = serde_json::from_slice::<GeminiResponse>(data) {
                    self.gemini_response(response);
                }
            }
            Api::CountTokens | Api::GeminiCountTokens => {}
        }
    }

    /// The counts seen so far, or `None` when the response reported no usage at all.
    pub fn counts(&self) -> Option<Tokens> {
        if let Some(counts) = self.openai {
            return Some(counts);
        }
        if self.anthropic.iter().all(Option::is_none) {
            return None;
        }
        let get = |slot: usize| self.anthropic[slot].unwrap_or(0);
        let cached = get(A_CACHE_READ);
        Some(Tokens {
            input: get(A_INPUT)
                .saturating_add(cached)
                .saturating_add(get(A_CACHE_WRITE)),
            output: get(A_OUTPUT),
            cached,
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_rewritten_with_the_upstream_model_and_nothing_else_changed() {
        let body = br#"{"model":"sonnet","messages":[{"role":"user","content":"hi \"there\""}],"max_tokens":5}"#;
        let request = Request::parse(body).unwrap();
        assert_eq!(request.model, "sonnet");
        assert!(!request.stream);
        let out = request.rewrite("claude-sonnet-4-5", false, None);
        let value: Value = serde_json::from_slice(&out).unwrap();
        let mut expected: Value = serde_json::from_slice(body).unwrap();
        expected["model"] = json!("claude-sonnet-4-5");
        assert_eq!(value, expected);
    }

    #[test]
    fn a_chat_stream_is_made_to_report_usage() {
        let plain = Request::parse(br#"{"model":"gpt","stream":true,"messages":[]}"#).unwrap();
        assert!(plain.stream);
        let out: Value = serde_json::from_slice(&plain.rewrite("gpt-5", true, None)).unwrap();
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        let with_options = Request::parse(
            br#"{"model":"gpt","stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
        )
        .unwrap();
        let out: Value =
            serde_json::from_slice(&with_options.rewrite("gpt-5", true, None)).unwrap();
        assert_eq!(
            out["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert!(
            Request::parse(b"[1]")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(Request::parse(b"{}").unwrap_err().contains("no `model`"));
        assert!(
            Request::parse(br#"{"model":3}"#)
                .unwrap_err()
                .contains("must be a string")
        );
        assert!(
            Request::parse(br#"{"model":"m","stream":"yes"}"#)
                .unwrap_err()
                .contains("`stream`")
        );
        assert!(
            !Request::parse(br#"{"model":"m","stream":null}"#)
                .unwrap()
                .stream
        );
    }

    #[test]
    fn anthropic_stream_usage_adds_cache_reads_to_input_and_takes_the_last_output() {
        let mut reader = UsageReader::default();
        reader.read_event(
            Api::Messages,
            br#"{"type":"message_start","message":{"usage":{"input_tokens":40,"cache_creation_input_tokens":10,"cache_read_input_tokens":60,"output_tokens":1}}}"#,
        );
        assert!(!reader.complete);
        reader.read_event(
            Api::Messages,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        );
        reader.read_event(
            Api::Messages,
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":25}}"#,
        );
        assert!(reader.complete);
        assert_eq!(
            reader.counts(),
            Some(Tokens {
                input: 110,
                output: 25,
                cached: 60
            })
        );
    }

    #[test]
    fn openai_usage_is_read_from_bodies_and_final_events() {
        let mut chat = UsageReader::default();
        chat.read_event(
            Api::Chat,
            br#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#,
        );
        assert_eq!(chat.counts(), None);
        chat.read_event(
            Api::Chat,
            br#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":3}}}"#,
        );
        assert_eq!(
            chat.counts(),
            Some(Tokens {
                input: 9,
                output: 4,
                cached: 3
            })
        );
        let mut responses = UsageReader::default();
        responses.read_event(
            Api::Responses,
            br#"{"type":"response.created","response":{"usage":null}}"#,
        );
        assert_eq!(responses.counts(), None);
        responses.read_body(
            Api::Responses,
            br#"{"object":"response","usage":{"input_tokens":7,"output_tokens":2,"input_tokens_details":{"cached_tokens":5}}}"#,
        );
        assert_eq!(
            responses.counts(),
            Some(Tokens {
                input: 7,
                output: 2,
                cached: 5
            })
        );
        assert!(responses.complete);
    }

    #[test]
    fn an_output_cap_replaces_every_cap_field_or_is_added() {
        let body = br#"{"model":"gpt","max_tokens":900,"max_completion_tokens":700,"messages":[]}"#;
        let request = Request::parse(body).unwrap();
        assert_eq!(request.output_cap(Api::Chat.cap_fields()), Some(700));
        assert_eq!(request.output_cap(Api::Responses.cap_fields()), None);
        let cap = OutputCap {
            tokens: 50,
            fields: Api::Chat.cap_fields(),
            add_as: "max_completion_tokens",
        };
        let out: Value = serde_json::from_slice(&request.rewrite("g", false, Some(cap))).unwrap();
        assert_eq!(out["max_tokens"], 50);
        assert_eq!(out["max_completion_tokens"], 50);
        let bare = Request::parse(br#"{"model":"gpt","input":"hi"}"#).unwrap();
        let cap = OutputCap {
            tokens: 64,
            fields: Api::Responses.cap_fields(),
            add_as: "max_output_tokens",
        };
        let out: Value = serde_json::from_slice(&bare.rewrite("g", false, Some(cap))).unwrap();
        assert_eq!(
            out,
            json!({"model": "g", "input": "hi", "max_output_tokens": 64})
        );
        assert_eq!(estimate_input_tokens(10), 4);
    }

    #[test]
    fn running_usage_beside_a_choice_is_not_the_final_report() {
        let mut reader = UsageReader::default();
        reader.read_event(
            Api::Chat,
            br#"{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}"#,
        );
        assert!(!reader.complete);
        assert_eq!(reader.counts().map(|c| c.output), Some(1));
        reader.read_event(
            Api::Chat,
            br#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":30}}"#,
        );
        assert!(reader.complete);
        assert_eq!(reader.counts().map(|c| c.output), Some(30));
    }

    #[test]
    fn a_cut_stream_ends_with_an_error_event_in_the_apis_shape() {
        let anthropic = String::from_utf8(stream_error(Api::Messages, "timeout", "cut")).unwrap();
        assert!(
            anthropic.starts_with("event: error\ndata: {"),
            "{anthropic}"
        );
        assert!(anthropic.ends_with("\n\n"));
        let data: Value = serde_json::from_str(
            anthropic
                .lines()
                .nth(1)
                .unwrap()
                .strip_prefix("data: ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(data["error"]["message"], "cut");
        let chat = String::from_utf8(stream_error(Api::Chat, "timeout", "cut")).unwrap();
        let data: Value =
            serde_json::from_str(chat.trim().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["error"]["code"], "timeout");
        let responses = String::from_utf8(stream_error(Api::Responses, "timeout", "cut")).unwrap();
        assert!(responses.contains(r#""type":"error""#), "{responses}");
    }

    #[test]
    fn refusals_take_each_providers_shape() {
        let openai = Refusal::Budget.body(Shape::OpenAi, "over");
        assert_eq!(openai["error"]["type"], "insufficient_quota");
        assert_eq!(openai["error"]["code"], "insufficient_quota");
        assert_eq!(Refusal::Budget.status(Shape::OpenAi), 429);
        let anthropic = Refusal::Unauthenticated.body(Shape::Anthropic, "who?");
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "authentication_error");
        assert_eq!(anthropic["error"]["message"], "who?");
    }

    #[test]
    fn gemini_usage_is_final_on_the_chunk_with_a_finish_reason_and_counts_thoughts_as_output() {
        let mut reader = UsageReader::default();
        reader.read_event(
            Api::StreamGenerate,
            br#"{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":50,"totalTokenCount":50}}"#,
        );
        assert!(!reader.complete, "running usage is not the last word");
        reader.read_event(
            Api::StreamGenerate,
            br#"{"candidates":[{"content":{"parts":[{"text":"b"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":50,"candidatesTokenCount":7,"thoughtsTokenCount":5,"cachedContentTokenCount":20}}"#,
        );
        assert!(reader.complete);
        assert_eq!(
            reader.counts(),
            Some(Tokens {
                input: 50,
                output: 12,
                cached: 20
            })
        );
        let mut whole = UsageReader::default();
        whole.read_body(
            Api::Generate,
            br#"{"candidates":[],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1}}"#,
        );
        assert!(whole.complete);
        assert_eq!(whole.counts().map(|c| c.output), Some(1));
    }

    #[test]
    fn a_gemini_body_keeps_everything_but_the_nested_cap() {
        let body = br#"{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"temperature":1,"maxOutputTokens":900}}"#;
        let request = Request::parse_gemini(body, "gem".into(), true).unwrap();
        assert_eq!(request.output_cap_for(Api::StreamGenerate), Some(900));
        let out: Value = serde_json::from_slice(&request.rewrite_gemini(Some(40))).unwrap();
        assert_eq!(
            out,
            json!({"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"temperature":1,"maxOutputTokens":40}})
        );
        assert_eq!(request.rewrite_gemini(None), body.to_vec());
        let bare = Request::parse_gemini(br#"{"contents":[]}"#, "gem".into(), false).unwrap();
        assert_eq!(bare.output_cap_for(Api::Generate), None);
        let out: Value = serde_json::from_slice(&bare.rewrite_gemini(Some(8))).unwrap();
        assert_eq!(out["generationConfig"]["maxOutputTokens"], 8);
        assert_eq!(
            Api::StreamGenerate.upstream_path("gemini-2.5-pro"),
            "/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn gemini_refusals_and_cut_streams_take_geminis_error_shape() {
        let budget = Refusal::Budget.body(Shape::Gemini, "over");
        assert_eq!(
            budget,
            json!({"error": {"code": 429, "message": "over", "status": "RESOURCE_EXHAUSTED"}})
        );
        assert_eq!(Refusal::NoSuchPath.status(Shape::Gemini), 404);
        assert_eq!(
            Refusal::NoSuchPath.body(Shape::OpenAi, "no")["error"]["code"],
            "unknown_url"
        );
        let cut = String::from_utf8(stream_error(Api::StreamGenerate, "timeout", "cut")).unwrap();
        let data: Value = serde_json::from_str(cut.trim().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["error"]["message"], "cut");
        assert_eq!(data["error"]["status"], "DEADLINE_EXCEEDED");
    }
}
