//! Gemini requests answered by an OpenAI or OpenAI-compatible provider: the request is
//! rewritten as a Chat Completions request, and the answer (a JSON body, or a stream of chunks
//! translated as they pass) back into Gemini's `GenerateContentResponse`.
//!
//! Unlike the pass-through path, this parses the whole request once; the answer is translated
//! chunk by chunk, so streaming stays streaming. Function calls go both ways: a `functionCall`
//! part becomes a `tool_calls` entry and a `functionResponse` a `tool` message, paired by
//! name in order, since Gemini's parts need carry no call id.
//!
//! The same inbound hop for Anthropic Messages and OpenAI Responses callers lives in
//! `messages` and `responses`; [`inbound_request`], [`inbound_body`] and [`InboundStream`]
//! pick the translation for the caller's API.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{Map, Value, json};

use crate::wire::{Api, gemini_error};

mod messages;
mod responses;

mod anthropic;
mod gemini_out;
mod plan;

pub(crate) use plan::{Answer, Plan};

/// The Chat Completions body for a Gemini request. `cap` is the output cap to set (the
/// request's own, lowered to the budget's room), `openai` picks OpenAI's cap field over the
/// older one compatible servers read.
pub(crate) fn chat_request(
    body: &[u8],
    upstream_model: &str,
    stream: bool,
    cap: Option<u64>,
    openai: bool,
) -> Result<Vec<u8>, String> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the request body is not a JSON object: {e}"))?;
    let mut messages = Vec::new();
    if let Some(system) = request.get("systemInstruction") {
        let text = texts(system.get("parts"));
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    // Call ids handed out per function name, waiting for their responses.
    let mut open_calls: HashMap<String, VecDeque<String>> = HashMap::new();
    let mut next_id = 0usize;
    let empty = Vec::new();
    let contents = match request.get("contents") {
        Some(Value::Array(contents)) => contents,
        None => &empty,
        Some(_) => return Err("the request's `contents` must be a list".into()),
    };
    for content in contents {
        let parts = content
            .get("parts")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        if role == "model" {
            let mut calls = Vec::new();
            for part in parts {
                if let Some(call) = part.get("functionCall") {
                    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
                    let id = match call.get("id").and_then(Value::as_str) {
                        Some(id) => id.to_owned(),
                        None => {
                            next_id += 1;
                            format!("call_{next_id}")
                        }
                    };
                    open_calls
                        .entry(name.to_owned())
                        .or_default()
                        .push_back(id.clone());
                    let arguments = call.get("args").cloned().unwrap_or_else(|| json!({}));
                    calls.push(json!({
                        "id": id, "type": "function",
                        "function": {"name": name, "arguments": arguments.to_string()}
                    }));
                }
            }
            let text = texts(Some(&Value::Array(parts.clone())));
            let mut message = json!({"role": "assistant", "content": text});
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
                if text.is_empty() {
                    message["content"] = Value::Null;
                }
            }
            messages.push(message);
            continue;
        }
        let mut text = String::new();
        for part in parts {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                text.push_str(t);
            } else if let Some(response) = part.get("functionResponse") {
                let name = response
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let id = response
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| open_calls.get_mut(name).and_then(VecDeque::pop_front))
                    .unwrap_or_else(|| format!("call_{name}"));
                let output = response.get("response").cloned().unwrap_or(Value::Null);
                messages.push(json!({
                    "role": "tool", "tool_call_id": id, "content": output.to_string()
                }));
            }
        }
        if !text.is_empty() {
            messages.push(json!({"role": "user", "content": text}));
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(messages));
    let tools: Vec<Value> = request
        .get("tools")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
        .iter()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .map(|f| {
            let parameters = f
                .get("parametersJsonSchema")
                .or_else(|| f.get("parameters"))
                .map(lower_types)
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            json!({"type": "function", "function": {
                "name": f.get("name").cloned().unwrap_or(Value::Null),
                "description": f.get("description").cloned().unwrap_or(json!("")),
                "parameters": parameters
            }})
        })
        .collect();
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    let config = request.get("generationConfig");
    let field = |name: &str| config.and_then(|c| c.get(name)).cloned();
    if let Some(t) = field("temperature") {
        out.insert("temperature".into(), t);
    }
    if let Some(p) = field("topP") {
        out.insert("top_p".into(), p);
    }
    if let Some(stop) = field("stopSequences") {
        out.insert("stop".into(), stop);
    }
    let cap = cap.or_else(|| field("maxOutputTokens").and_then(|v| v.as_u64()));
    if let Some(cap) = cap {
        let name = if openai {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        out.insert(name.into(), json!(cap));
    }
    if stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(out).to_string().into_bytes())
}

/// The text parts of a list of parts, joined.
fn texts(parts: Option<&Value>) -> String {
    parts
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Gemini's schema types are upper case (`OBJECT`, `STRING`); JSON Schema's are lower case.
fn lower_types(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("type", Value::String(t)) => Value::String(t.to_ascii_lowercase()),
                        _ => lower_types(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(lower_types).collect()),
        other => other.clone(),
    }
}

fn finish_reason(chat: Option<&str>) -> &'static str {
    match chat {
        Some("length") => "MAX_TOKENS",
        Some("content_filter") => "SAFETY",
        _ => "STOP",
    }
}

fn usage_metadata(usage: &Value) -> Value {
    let get = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    let cached = usage
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "promptTokenCount": get("prompt_tokens"),
        "candidatesTokenCount": get("completion_tokens"),
        "totalTokenCount": get("prompt_tokens") + get("completion_tokens"),
        "cachedContentTokenCount": cached
    })
}

fn response(parts: Vec<Value>, finish: Option<&str>, usage: Option<Value>, model: &str) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(finish);
    }
    let mut out = json!({"candidates": [candidate], "modelVersion": model});
    if let Some(usage) = usage {
        out["usageMetadata"] = usage;
    }
    out
}

fn call_part(name: &str, arguments: &str) -> Value {
    let args: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
    json!({"functionCall": {"name": name, "args": args}})
}

/// A whole Chat Completions answer as a Gemini `GenerateContentResponse`; an error body as
/// Gemini's error.
pub(crate) fn gemini_body(status: u16, body: &[u8], model: &str) -> Vec<u8> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        return gemini_error_from_openai(status, &value)
            .to_string()
            .into_bytes();
    }
    let choice = &value["choices"][0];
    let message = &choice["message"];
    let mut parts = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        parts.push(json!({"text": text}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        parts.push(call_part(
            call["function"]["name"].as_str().unwrap_or_default(),
            call["function"]["arguments"].as_str().unwrap_or("{}"),
        ));
    }
    let usage = value
        .get("usage")
        .filter(|u| !u.is_null())
        .map(usage_metadata);
    response(
        parts,
        Some(finish_reason(choice["finish_reason"].as_str())),
        usage,
        model,
    )
    .to_string()
    .into_bytes()
}

fn gemini_error_from_openai(status: u16, value: &Value) -> Value {
    let message = value["error"]["message"]
        .as_str()
        .unwrap_or("the provider refused the request");
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    gemini_error(status, message, name)
}

/// Turns a Chat Completions event stream into Gemini's, chunk by chunk: text deltas go on at
/// once; function calls are gathered and sent, whole, with the finish reason and the usage
/// in the last chunk.
#[derive(Default)]
pub(crate) struct ChatToGemini {
    model: String,
    line: Vec<u8>,
    calls: BTreeMap<u64, (String, String)>,
    finish: Option<String>,
    ended: bool,
}

impl ChatToGemini {
    pub(crate) fn new(model: &str) -> ChatToGemini {
        ChatToGemini {
            model: model.to_owned(),
            ..ChatToGemini::default()
        }
    }

    /// The Gemini events for the next piece of the upstream stream.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            let line = std::mem::take(&mut self.line);
            self.line_event(&line, &mut out);
        }
        self.line.extend_from_slice(rest);
        out
    }

    /// What is still owed when the upstream stream ends: the last chunk, if it never came.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        // A last line without its newline is no complete event.
        self.line.clear();
        if !self.ended && self.finish.is_some() {
            self.end(None, &mut out);
        }
        out
    }

    fn emit(out: &mut Vec<u8>, value: &Value) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(value.to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    }

    fn end(&mut self, usage: Option<Value>, out: &mut Vec<u8>) {
        self.ended = true;
        let parts: Vec<Value> = std::mem::take(&mut self.calls)
            .into_values()
            .map(|(name, arguments)| call_part(&name, &arguments))
            .collect();
        let parts = if parts.is_empty() {
            vec![json!({"text": ""})]
        } else {
            parts
        };
        let finish = finish_reason(self.finish.as_deref());
        Self::emit(out, &response(parts, Some(finish), usage, &self.model));
    }

    fn line_event(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data == b"[DONE]" {
            if !self.ended {
                self.end(None, out);
            }
            return;
        }
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if event.get("error").is_some() {
            let status = event["error"]["code"].as_u64().unwrap_or(500);
            let status = u16::try_from(status).unwrap_or(500);
            Self::emit(out, &gemini_error_from_openai(status, &event));
            self.ended = true;
            return;
        }
        let choices = event["choices"].as_array();
        for choice in choices.into_iter().flatten() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                let chunk = response(vec![json!({"text": text})], None, None, &self.model);
                Self::emit(out, &chunk);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap_or(0);
                let entry = self.calls.entry(index).or_default();
                if let Some(name) = call["function"]["name"].as_str() {
                    entry.0.push_str(name);
                }
                if let Some(arguments) = call["function"]["arguments"].as_str() {
                    entry.1.push_str(arguments);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish = Some(reason.to_owned());
            }
        }
        let usage = event.get("usage").filter(|u| !u.is_null());
        if let Some(usage) = usage
            && choices.is_none_or(|c| c.is_empty())
            && !self.ended
        {
            self.end(Some(usage_metadata(usage)), out);
        }
    }
}

/// The answer `api`'s free token counting call gets when the provider has none: the
/// gateway's own estimate, `tokens`.
pub(crate) fn estimated_count(api: Api, tokens: u64) -> Value {
    match api {
        Api::CountTokens => json!({"input_tokens": tokens}),
        _ => json!({"totalTokens": tokens}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gemini_conversation_with_a_function_call_becomes_chat_messages() {
        let body = json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Write a.txt"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "write", "args": {"p": "a"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "write", "response": {"ok": true}}}]}
            ],
            "tools": [{"functionDeclarations": [{"name": "write", "parameters": {"type": "OBJECT", "properties": {"p": {"type": "STRING"}}}}]}],
            "generationConfig": {"temperature": 0.2, "maxOutputTokens": 99}
        });
        let out: Value = serde_json::from_slice(
            &chat_request(body.to_string().as_bytes(), "gpt-5", true, Some(50), true).unwrap(),
        )
        .unwrap();
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(messages[1]["content"], "Write a.txt");
        let id = messages[2]["tool_calls"][0]["id"].as_str().unwrap();
        assert_eq!(
            messages[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"p":"a"}"#
        );
        assert_eq!(messages[3]["role"], "tool");
        assert_eq!(messages[3]["tool_call_id"], id);
        assert_eq!(
            out["tools"][0]["function"]["parameters"]["properties"]["p"]["type"],
            "string"
        );
        assert_eq!(out["max_completion_tokens"], 50);
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["temperature"], 0.2);
    }

    #[test]
    fn a_chat_stream_becomes_gemini_chunks_with_the_call_and_usage_last() {
        let mut t = ChatToGemini::new("gem");
        let mut out = Vec::new();
        for piece in [
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"w\",\"arguments\":\"\"}}]}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}\n",
            "\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n",
        ] {
            out.extend(t.push(piece.as_bytes()));
        }
        out.extend(t.finish());
        let text = String::from_utf8(out).unwrap();
        let chunks: Vec<Value> = text
            .split("\r\n\r\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks.len(), 2, "{text}");
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
            "hi "
        );
        let last = &chunks[1];
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            last["candidates"][0]["content"]["parts"][0]["functionCall"],
            json!({"name": "w", "args": {"a": 1}})
        );
        assert_eq!(last["usageMetadata"]["promptTokenCount"], 7);
    }
}
