//! The one wire format the loop speaks: Anthropic Messages with tool use, sent to the gateway.
//!
//! The answer is the model's, so it is read as hostile input: the body is read up to a bound,
//! every block is checked for the shape the loop relies on, and anything else is an error that
//! names what was wrong instead of a panic or a silent skip.

use domain::Tokens;
use serde_json::{Value, json};

use crate::Error;

/// The API version header the gateway and Anthropic expect.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The most of one answer that is read; a longer one is an error.
const MAX_ANSWER_BYTES: usize = 8 << 20;
/// The most of an error body quoted in the error.
const MAX_ERROR_CHARS: usize = 2000;

/// Where the model is and how to call it.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// The gateway's origin, as `ANTHROPIC_BASE_URL` gives it (`http://127.0.0.1:PORT`).
    pub base_url: String,
    /// The execution token, sent as `x-api-key`.
    pub api_key: String,
    /// The model alias asked for.
    pub model: String,
    /// The output cap of one answer (the gateway lowers it to the budget's room).
    pub max_tokens: u64,
}

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: String,
    pub name: String,
    pub input: Value,
}

/// One answer, checked.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The content blocks as they came, to send back as the assistant's turn.
    pub content: Vec<Value>,
    pub text: String,
    pub calls: Vec<Call>,
    pub stop_reason: String,
    /// The tokens the answer used, as the provider reported them.
    pub usage: Tokens,
}

pub struct Model {
    client: reqwest::Client,
    url: String,
    options: ModelOptions,
}

impl Model {
    pub fn new(options: ModelOptions) -> Result<Model, Error> {
        // reqwest is built without a default TLS provider; the gateway is plain HTTP on
        // loopback, but the client still wants one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::Setup(format!("cannot build the HTTP client: {e}")))?;
        let url = format!("{}/v1/messages", options.base_url.trim_end_matches('/'));
        Ok(Model {
            client,
            url,
            options,
        })
    }

    pub fn model(&self) -> &str {
        &self.options.model
    }

    /// Sends the conversation so far and returns the checked answer.
    pub async fn send(
        &self,
        system: &str,
        messages: &[Value],
        tools: &Value,
    ) -> Result<Reply, Error> {
        let body = json!({
            "model": self.options.model,
            "max_tokens": self.options.max_tokens,
            "system": system,
            "messages": messages,
            "tools": tools,
        });
        let body = serde_json::to_vec(&body).map_err(|e| Error::Setup(e.to_string()))?;
        let mut response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-api-key", &self.options.api_key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Transport(format!("{}: {e}", self.url)))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::Transport(format!("reading the answer: {e}")))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Error::BadAnswer(format!(
                    "the answer is longer than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            return Err(Error::Api {
                status,
                message: error_message(&bytes),
            });
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::BadAnswer(format!("the answer is not JSON: {e}")))?;
        parse_reply(&value)
    }
}

/// The error's own message when the body has Anthropic's (or OpenAI's) error shape, else the
/// start of the body.
fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            let error = &v["error"];
            let message = error["message"].as_str()?.to_string();
            Some(match error["type"].as_str() {
                Some(kind) => format!("{kind}: {message}"),
                None => message,
            })
        })
        .unwrap_or_else(|| text.into_owned());
    crate::tools::cut_chars(&message, MAX_ERROR_CHARS)
}

/// Checks an answer's shape: content blocks of text and tool use, a stop reason, usage.
pub fn parse_reply(value: &Value) -> Result<Reply, Error> {
    let bad = |what: &str| Error::BadAnswer(what.to_string());
    let content = value["content"]
        .as_array()
        .ok_or_else(|| bad("the answer has no `content` list"))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for (index, block) in content.iter().enumerate() {
        match block["type"].as_str() {
            Some("text") => {
                let piece = block["text"].as_str().ok_or_else(|| {
                    bad(&format!("content block {index} is text without a string"))
                })?;
                text.push_str(piece);
            }
            Some("tool_use") => {
                let id = block["id"]
                    .as_str()
                    .filter(|id| !id.is_empty() && id.len() <= 256);
                let name = block["name"].as_str().filter(|n| n.len() <= 256);
                let (Some(id), Some(name)) = (id, name) else {
                    return Err(bad(&format!(
                        "content block {index} is a tool call without a usable id and name"
                    )));
                };
                calls.push(Call {
                    id: id.to_string(),
                    name: name.to_string(),
                    input: block.get("input").cloned().unwrap_or(Value::Null),
                });
            }
            // Thinking and other blocks are sent back as they came and otherwise ignored.
            _ => {}
        }
    }
    // Anthropic counts the input read from its cache and the input written to it apart from
    // the rest; agentgrid's convention counts every input token and the cached part besides.
    // Saturating, since the numbers are the answer's and a huge one must not wrap or panic.
    let count = |field: &str| value["usage"][field].as_u64().unwrap_or(0);
    let cached = count("cache_read_input_tokens");
    let usage = Tokens {
        input: count("input_tokens")
            .saturating_add(cached)
            .saturating_add(count("cache_creation_input_tokens")),
        output: count("output_tokens"),
        cached,
    };
    Ok(Reply {
        content: content.clone(),
        text,
        calls,
        stop_reason: value["stop_reason"].as_str().unwrap_or("").to_string(),
        usage,
    })
}
