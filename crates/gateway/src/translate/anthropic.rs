//! Chat Completions requests answered by an Anthropic provider: the request is rewritten as a
//! Messages request, and the answer (a JSON body, or a stream of events translated as they
//! pass) back into a Chat Completions answer.
//!
//! Tool calls keep their ids both ways: a `tool_calls[].id` becomes the `tool_use.id` and a
//! `tool` message's `tool_call_id` the `tool_result.tool_use_id`, so the provider pairs them
//! exactly as the caller did. Anthropic wants `max_tokens` on every request, so it is always
//! set: the budget's cap, else the caller's own, else the gateway's default.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::plan::{Lines, chat_error, emit_chat};

/// The Messages body for a Chat Completions request. `cap` is the budget's output cap, if
/// one is set; `default_cap` is used when neither it nor the caller names one.
pub(crate) fn messages_request(
    chat: &[u8],
    upstream_model: &str,
    stream: bool,
    cap: Option<u64>,
    default_cap: u64,
) -> Result<Vec<u8>, String> {
    let request: Value = serde_json::from_slice(chat)
        .map_err(|e| format!("the request body is not a JSON object: {e}"))?;
    let Some(list) = request.get("messages").and_then(Value::as_array) else {
        return Err("the request's `messages` must be a list".into());
    };
    let mut system = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in list {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_blocks(message.get("content")));
                continue;
            }
            "assistant" => {
                let mut blocks = text_blocks(message.get("content"));
                for call in message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let arguments = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    // Anthropic wants the input as an object; arguments that are not one
                    // (a model may write broken JSON) go on as an empty object.
                    let input = serde_json::from_str::<Value>(arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.get("id").and_then(Value::as_str).unwrap_or("call"),
                        "name": call.pointer("/function/name").and_then(Value::as_str)
                            .unwrap_or_default(),
                        "input": input
                    }));
                }
                ("assistant", blocks)
            }
            "tool" | "function" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let text: String = text_blocks(message.get("content"))
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect();
                (
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": text})],
                )
            }
            _ => ("user", content_blocks(message.get("content"))),
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic wants the roles to alternate: the results of parallel calls, and a user
        // text after them, go into one user message.
        match messages.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert(
        "messages".into(),
        Value::Array(
            messages
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    let own_cap = ["max_completion_tokens", "max_tokens"]
        .iter()
        .filter_map(|name| request.get(*name).and_then(Value::as_u64))
        .min();
    out.insert(
        "max_tokens".into(),
        json!(cap.or(own_cap).unwrap_or(default_cap).max(1)),
    );
    let tools: Vec<Value> = request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("function"))
        .map(|f| {
            let mut tool = json!({
                "name": f.get("name").cloned().unwrap_or(Value::Null),
                "input_schema": f.get("parameters").cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}))
            });
            if let Some(description) = f.get("description").filter(|d| d.is_string()) {
                tool["description"] = description.clone();
            }
            tool
        })
        .collect();
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
    }
    let parallel = request.get("parallel_tool_calls").and_then(Value::as_bool);
    let choice = match request.get("tool_choice") {
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            _ => Some(json!({"type": "auto"})),
        },
        Some(Value::Object(named)) => named
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|name| json!({"type": "tool", "name": name})),
        _ => None,
    };
    if has_tools
        && let Some(mut choice) =
            choice.or_else(|| (parallel == Some(false)).then(|| json!({"type": "auto"})))
    {
        if parallel == Some(false) && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        out.insert("tool_choice".into(), choice);
    }
    // Anthropic's temperature runs from 0 to 1, OpenAI's to 2.
    if let Some(t) = request.get("temperature").and_then(Value::as_f64) {
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = request.get("top_p").filter(|p| p.is_number()) {
        out.insert("top_p".into(), p.clone());
    }
    match request.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if stream {
        out.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(out).to_string().into_bytes())
}

/// The text of a Chat message's `content` (a string, or a list of parts) as Anthropic text
/// blocks; empty texts are left out, since Anthropic refuses them.
fn text_blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) if !text.is_empty() => {
            vec![json!({"type": "text", "text": text})]
        }
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .filter(|t| !t.is_empty())
            .map(|text| json!({"type": "text", "text": text}))
            .collect(),
        _ => Vec::new(),
    }
}

/// A user message's content as Anthropic blocks: text, and images given as a data URL or a
/// web address.
fn content_blocks(content: Option<&Value>) -> Vec<Value> {
    let Some(Value::Array(parts)) = content else {
        return text_blocks(content);
    };
    let mut blocks = Vec::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("image_url") => {
                let url = part
                    .pointer("/image_url/url")
                    .or_else(|| part.get("image_url"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let source = match super::plan::data_url(url) {
                    Some((media_type, data)) => {
                        json!({"type": "base64", "media_type": media_type, "data": data})
                    }
                    None => json!({"type": "url", "url": url}),
                };
                blocks.push(json!({"type": "image", "source": source}));
            }
            _ => blocks.extend(text_blocks(Some(&Value::Array(vec![part.clone()])))),
        }
    }
    blocks
}

fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Anthropic's usage in Chat Completions terms: `prompt_tokens` counts every input token,
/// cache reads and writes included.
fn chat_usage(input: u64, cache_read: u64, cache_write: u64, output: u64) -> Value {
    let prompt = input + cache_read + cache_write;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": cache_read}
    })
}

fn usage_of(usage: &Value) -> Value {
    let get = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    chat_usage(
        get("input_tokens"),
        get("cache_read_input_tokens"),
        get("cache_creation_input_tokens"),
        get("output_tokens"),
    )
}

/// An Anthropic error body in OpenAI's shape, with OpenAI's nearest type names.
fn openai_error(value: &Value) -> Value {
    let message = value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("the provider refused the request");
    let (kind, code) = match value.pointer("/error/type").and_then(Value::as_str) {
        Some("authentication_error") => ("invalid_request_error", json!("invalid_api_key")),
        Some("rate_limit_error") => ("rate_limit_error", json!("rate_limit_exceeded")),
        Some("billing_error") => ("insufficient_quota", json!("insufficient_quota")),
        Some("not_found_error") => ("invalid_request_error", json!("model_not_found")),
        Some("overloaded_error" | "api_error") => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    chat_error(message, kind, code)
}

/// A whole Messages answer as a Chat Completions answer; an error body as OpenAI's error.
pub(crate) fn chat_body(status: u16, body: &[u8], model: &str) -> Vec<u8> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        return openai_error(&value).to_string().into_bytes();
    }
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in value["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()}
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
        if text.is_empty() {
            message["content"] = Value::Null;
        }
    }
    json!({
        "id": format!("chatcmpl-{}", value["id"].as_str().unwrap_or("gateway")),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(value["stop_reason"].as_str())
        }],
        "usage": usage_of(&value["usage"])
    })
    .to_string()
    .into_bytes()
}

/// Turns a Messages event stream into Chat Completions chunks, event by event: text deltas
/// and tool-call argument deltas go on at once, the finish reason with `message_delta`, and
/// the usage in a last chunk without choices before `[DONE]`.
#[derive(Default)]
pub(crate) struct MessagesToChat {
    model: String,
    id: String,
    lines: Lines,
    /// Content block index → index among the answer's tool calls.
    calls: HashMap<u64, u64>,
    /// The usage so far: input, cache reads, cache writes, output.
    usage: [u64; 4],
    finish: Option<&'static str>,
    ended: bool,
}

impl MessagesToChat {
    pub(crate) fn new(model: &str) -> MessagesToChat {
        MessagesToChat {
            model: model.to_owned(),
            id: "chatcmpl-gateway".into(),
            ..MessagesToChat::default()
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in self.lines.feed(chunk) {
            self.line_event(&line, &mut out);
        }
        out
    }

    /// What is still owed when the upstream stream ends: the usage and `[DONE]`, when the
    /// answer got as far as its stop reason but not its `message_stop`.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.ended && self.finish.is_some() {
            self.end(&mut out);
        }
        out
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.ended = true;
        let [input, read, write, output] = self.usage;
        let last = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
            "choices": [], "usage": chat_usage(input, read, write, output)
        });
        emit_chat(out, &last);
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn take_usage(&mut self, usage: &Value) {
        let names = [
            "input_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "output_tokens",
        ];
        for (slot, name) in names.iter().enumerate() {
            if let Some(n) = usage.get(*name).and_then(Value::as_u64) {
                self.usage[slot] = n;
            }
        }
    }

    fn line_event(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let Some(data) = super::plan::data_of(line) else {
            return;
        };
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if self.ended {
            return;
        }
        match event["type"].as_str() {
            Some("message_start") => {
                if let Some(id) = event.pointer("/message/id").and_then(Value::as_str) {
                    self.id = format!("chatcmpl-{id}");
                }
                self.take_usage(&event["message"]["usage"]);
                let first = self.chunk(json!({"role": "assistant", "content": ""}), None);
                emit_chat(out, &first);
            }
            Some("content_block_start") => {
                let block = &event["content_block"];
                match block["type"].as_str() {
                    Some("tool_use") => {
                        let index = self.calls.len() as u64;
                        self.calls
                            .insert(event["index"].as_u64().unwrap_or(0), index);
                        let delta = json!({"tool_calls": [{
                            "index": index, "id": block["id"], "type": "function",
                            "function": {"name": block["name"], "arguments": ""}
                        }]});
                        emit_chat(out, &self.chunk(delta, None));
                    }
                    Some("text") => {
                        if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            emit_chat(out, &self.chunk(json!({"content": text}), None));
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let delta = &event["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(text) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                            emit_chat(out, &self.chunk(json!({"content": text}), None));
                        }
                    }
                    Some("input_json_delta") => {
                        let block = event["index"].as_u64().unwrap_or(0);
                        let partial = delta["partial_json"].as_str().unwrap_or_default();
                        if let Some(index) = self.calls.get(&block).filter(|_| !partial.is_empty())
                        {
                            let delta = json!({"tool_calls": [{
                                "index": index, "function": {"arguments": partial}
                            }]});
                            emit_chat(out, &self.chunk(delta, None));
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                self.take_usage(&event["usage"]);
                let finish =
                    finish_reason(event.pointer("/delta/stop_reason").and_then(Value::as_str));
                self.finish = Some(finish);
                emit_chat(out, &self.chunk(json!({}), Some(finish)));
            }
            Some("message_stop") => self.end(out),
            Some("error") => {
                self.ended = true;
                emit_chat(out, &openai_error(&event));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Value {
        let out =
            messages_request(body.to_string().as_bytes(), "claude-x", true, None, 4096).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_chat_conversation_with_tool_calls_becomes_a_messages_request_with_ids_kept() {
        let out = request(json!({
            "model": "alias",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Write a and b"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "write", "arguments": "{\"p\":\"a\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "write", "arguments": "not json"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "ok a"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "ok b"}]},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "write", "description": "Writes",
                "parameters": {"type": "object", "properties": {"p": {"type": "string"}}}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "temperature": 1.5,
            "stop": "END",
            "max_tokens": 300
        }));
        assert_eq!(out["model"], "claude-x");
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "Be brief."}])
        );
        assert_eq!(out["max_tokens"], 300);
        assert_eq!(out["temperature"], 1.0);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["stream"], true);
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            out["tools"][0]["input_schema"]["properties"]["p"]["type"],
            "string"
        );
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "{out}");
        assert_eq!(
            messages[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        let calls = &messages[1]["content"];
        assert_eq!(calls[0]["id"], "call_1");
        assert_eq!(calls[0]["input"], json!({"p": "a"}));
        assert_eq!(calls[1]["input"], json!({}));
        // Both results and the user's text after them share one user message.
        let results = messages[2]["content"].as_array().unwrap();
        assert_eq!(messages[2]["role"], "user");
        assert_eq!(results[0]["tool_use_id"], "call_1");
        assert_eq!(
            results[1],
            json!({"type": "tool_result", "tool_use_id": "call_2", "content": "ok b"})
        );
        assert_eq!(results[2]["text"], "Thanks");
    }

    #[test]
    fn max_tokens_is_always_set_and_the_budgets_cap_wins() {
        let body = json!({"model": "a", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(request(body.clone())["max_tokens"], 4096);
        let capped: Value = serde_json::from_slice(
            &messages_request(body.to_string().as_bytes(), "m", false, Some(77), 4096).unwrap(),
        )
        .unwrap();
        assert_eq!(capped["max_tokens"], 77);
        assert!(capped.get("stream").is_none());
        assert!(messages_request(b"[]", "m", false, None, 1).is_err());
    }

    #[test]
    fn a_messages_stream_becomes_chat_chunks_with_tool_call_deltas_and_usage_last() {
        let mut t = MessagesToChat::new("alias");
        let mut out = Vec::new();
        for piece in [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n",
            "\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"w\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ] {
            out.extend(t.push(piece.as_bytes()));
        }
        out.extend(t.finish());
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let chunks: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks.len(), 6, "{text}");
        assert_eq!(chunks[0]["id"], "chatcmpl-msg_1");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "hi");
        let call = &chunks[2]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            (call["index"].as_u64(), call["id"].as_str()),
            (Some(0), Some("toolu_1"))
        );
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[5]["usage"]["prompt_tokens"], 8);
        assert_eq!(chunks[5]["usage"]["completion_tokens"], 9);
        assert_eq!(
            chunks[5]["usage"]["prompt_tokens_details"]["cached_tokens"],
            3
        );
    }

    #[test]
    fn a_whole_answer_and_an_error_take_chats_shape() {
        let body = json!({"id": "msg_2", "content": [{"type": "text", "text": "x"},
            {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {"b": 2}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 4, "output_tokens": 2}});
        let out: Value =
            serde_json::from_slice(&chat_body(200, body.to_string().as_bytes(), "alias")).unwrap();
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "x");
        assert_eq!(choice["message"]["tool_calls"][0]["id"], "toolu_2");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"b\":2}"
        );
        assert_eq!(out["usage"]["total_tokens"], 6);
        let error =
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}});
        let out: Value =
            serde_json::from_slice(&chat_body(429, error.to_string().as_bytes(), "a")).unwrap();
        assert_eq!(out["error"]["message"], "slow down");
        assert_eq!(out["error"]["code"], "rate_limit_exceeded");
    }
}
