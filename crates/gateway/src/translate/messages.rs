//! Anthropic Messages requests answered by a provider reached through Chat Completions: the
//! request is rewritten as a Chat Completions request, and the answer (a JSON body, or a
//! stream translated chunk by chunk) back into a Messages answer with its exact event
//! sequence (`message_start`, `content_block_start`, `content_block_delta`,
//! `content_block_stop`, `message_delta`, `message_stop`), since Claude Code reads nothing
//! else. `tool_use` blocks become `tool_calls` with the same ids and `tool_result` blocks
//! `tool` messages, so a call and its result stay paired both ways.

use serde_json::{Map, Value, json};

/// The Chat Completions body for a Messages request. `cap` is the output cap to set (the
/// request's own `max_tokens`, lowered to the budget's room), `openai` picks OpenAI's cap
/// field over the older one compatible servers read.
pub(crate) fn chat_request(
    body: &[u8],
    upstream_model: &str,
    stream: bool,
    cap: Option<u64>,
    openai: bool,
) -> Result<Vec<u8>, String> {
    let request: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the request body is not a JSON object: {e}"))?;
    let mut messages = Vec::new();
    match request.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => {
            let text = block_texts(system);
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text}));
            }
        }
    }
    let empty = Vec::new();
    let turns = match request.get("messages") {
        Some(Value::Array(turns)) => turns,
        None => &empty,
        Some(_) => return Err("the request's `messages` must be a list".into()),
    };
    for turn in turns {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = turn.get("content").unwrap_or(&Value::Null);
        if role == "assistant" {
            messages.push(assistant_message(content));
        } else {
            user_messages(content, &mut messages);
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
        // Anthropic's server tools (web search and the like) have a `type` and no schema:
        // a Chat Completions provider cannot run them.
        .filter(|t| t.get("input_schema").is_some())
        .map(|t| {
            json!({"type": "function", "function": {
                "name": t.get("name").cloned().unwrap_or(Value::Null),
                "description": t.get("description").cloned().unwrap_or(json!("")),
                "parameters": t["input_schema"].clone()
            }})
        })
        .collect();
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = request.get("tool_choice").filter(|_| has_tools) {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("any") => Some(json!("required")),
            Some("none") => Some(json!("none")),
            Some("tool") => Some(json!({"type": "function", "function": {
                "name": choice.get("name").cloned().unwrap_or(Value::Null)
            }})),
            Some("auto") => Some(json!("auto")),
            _ => None,
        };
        if let Some(mapped) = mapped {
            out.insert("tool_choice".into(), mapped);
        }
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ] {
        if let Some(value) = request.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), value.clone());
        }
    }
    let cap = cap.or_else(|| request.get("max_tokens").and_then(Value::as_u64));
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

/// The text of a `system` prompt or a `tool_result`'s content: a string, or text blocks.
fn block_texts(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// An image block as a Chat Completions `image_url` part.
fn image_part(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let url = match source.get("type").and_then(Value::as_str)? {
        "base64" => format!(
            "data:{};base64,{}",
            source.get("media_type").and_then(Value::as_str)?,
            source.get("data").and_then(Value::as_str)?
        ),
        "url" => source.get("url").and_then(Value::as_str)?.to_owned(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A user turn: its `tool_result` blocks become `tool` messages, which Chat Completions
/// wants right after the assistant's calls, then the rest becomes one user message.
fn user_messages(content: &Value, messages: &mut Vec<Value>) {
    let blocks = match content {
        Value::String(text) => {
            messages.push(json!({"role": "user", "content": text}));
            return;
        }
        Value::Array(blocks) => blocks,
        _ => return,
    };
    let mut parts = Vec::new();
    let mut images = false;
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("tool_result") => {
                let mut text = block_texts(block.get("content").unwrap_or(&Value::Null));
                if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text = format!("Error: {text}");
                }
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id").cloned().unwrap_or(Value::Null),
                    "content": text
                }));
            }
            Some("text") => {
                let text = block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                parts.push(json!({"type": "text", "text": text}));
            }
            Some("image") => {
                if let Some(part) = image_part(block) {
                    images = true;
                    parts.push(part);
                }
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return;
    }
    // Plain text as a string: compatible servers that know no content parts still read it.
    let content = if images {
        Value::Array(parts)
    } else {
        json!(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    messages.push(json!({"role": "user", "content": content}));
}

/// An assistant turn: its text and its `tool_use` blocks as `tool_calls`; thinking is the
/// provider's own and is not sent to another.
fn assistant_message(content: &Value) -> Value {
    let blocks = match content {
        Value::String(text) => return json!({"role": "assistant", "content": text}),
        Value::Array(blocks) => blocks.as_slice(),
        _ => &[],
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": block.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": input.to_string()
                    }
                }));
            }
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        _ => "end_turn",
    }
}

/// Chat Completions usage in Anthropic's convention: `input_tokens` excludes cache reads.
fn usage(chat: Option<&Value>) -> Value {
    let get = |name: &str| {
        chat.and_then(|u| u.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cached = chat
        .and_then(|u| u.pointer("/prompt_tokens_details/cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "input_tokens": get("prompt_tokens").saturating_sub(cached),
        "output_tokens": get("completion_tokens"),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0
    })
}

/// An OpenAI-shaped error body (or anything else) as Anthropic's error, for `status`.
pub(crate) fn error_body(status: u16, body: &[u8]) -> Value {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = value["error"]["message"]
        .as_str()
        .or_else(|| value["message"].as_str())
        .unwrap_or("the provider refused the request");
    let kind = match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// A whole Chat Completions answer as a Messages answer; an error body as Anthropic's error.
pub(crate) fn messages_body(status: u16, body: &[u8], model: &str) -> Vec<u8> {
    if !(200..300).contains(&status) {
        return error_body(status, body).to_string().into_bytes();
    }
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let choice = &value["choices"][0];
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": tool_input(arguments)
        }));
    }
    json!({
        "id": message_id(value["id"].as_str()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": usage(value.get("usage").filter(|u| !u.is_null()))
    })
    .to_string()
    .into_bytes()
}

/// A call's arguments as the `input` object a `tool_use` block needs; arguments that are no
/// JSON object (a model's slip) are kept as text rather than lost.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ if arguments.trim().is_empty() => json!({}),
        _ => json!({"arguments": arguments}),
    }
}

fn message_id(chat: Option<&str>) -> String {
    format!("msg_{}", chat.unwrap_or("gateway"))
}

/// The content block a stream is writing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Text(u64),
    /// A tool call's block.
    Tool(u64),
}

/// Turns a Chat Completions event stream into a Messages event stream, chunk by chunk: text
/// and call arguments go on as they come, each in its own content block; the stop reason and
/// the usage go in `message_delta` when the provider's usage (or the stream's end) arrives.
#[derive(Default)]
pub(crate) struct ChatToMessages {
    model: String,
    lines: super::plan::Lines,
    started: bool,
    open: Option<Block>,
    blocks: u64,
    /// Block index per Chat call index, for argument pieces of a call already closed.
    calls: Vec<(u64, u64)>,
    finish: Option<String>,
    ended: bool,
}

impl ChatToMessages {
    pub(crate) fn new(model: &str) -> ChatToMessages {
        ChatToMessages {
            model: model.to_owned(),
            ..ChatToMessages::default()
        }
    }

    /// The Messages events for the next piece of the upstream stream.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in self.lines.feed(chunk) {
            self.line_event(&line, &mut out);
        }
        out
    }

    /// What is still owed when the upstream stream ends: the closing events, if a finish
    /// reason came but neither usage nor `[DONE]` did.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.lines = super::plan::Lines::default();
        if !self.ended && self.finish.is_some() {
            self.end(None, &mut out);
        }
        out
    }

    fn emit(out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        out.extend_from_slice(format!("event: {kind}\ndata: {data}\n\n").as_bytes());
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        Self::emit(
            out,
            "message_start",
            json!({"message": {
                "id": message_id(id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage(None)
            }}),
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.open.take() {
            let index = match block {
                Block::Text(i) | Block::Tool(i) => i,
            };
            Self::emit(out, "content_block_stop", json!({"index": index}));
        }
    }

    fn end(&mut self, chat_usage: Option<&Value>, out: &mut Vec<u8>) {
        self.ended = true;
        self.start(None, out);
        self.close(out);
        Self::emit(
            out,
            "message_delta",
            json!({
                "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
                "usage": usage(chat_usage)
            }),
        );
        Self::emit(out, "message_stop", json!({}));
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Some(Block::Text(index)) => index,
            _ => {
                self.close(out);
                let index = self.blocks;
                self.blocks += 1;
                self.open = Some(Block::Text(index));
                Self::emit(
                    out,
                    "content_block_start",
                    json!({"index": index, "content_block": {"type": "text", "text": ""}}),
                );
                index
            }
        };
        Self::emit(
            out,
            "content_block_delta",
            json!({"index": index, "delta": {"type": "text_delta", "text": text}}),
        );
    }

    fn call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let call_index = call["index"].as_u64().unwrap_or(0);
        let known = self
            .calls
            .iter()
            .find(|(c, _)| *c == call_index)
            .map(|(_, b)| *b);
        let index = match known {
            Some(index) => index,
            None => {
                self.close(out);
                let index = self.blocks;
                self.blocks += 1;
                self.calls.push((call_index, index));
                self.open = Some(Block::Tool(index));
                let id = call["id"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("toolu_gateway_{index}"));
                Self::emit(
                    out,
                    "content_block_start",
                    json!({"index": index, "content_block": {
                        "type": "tool_use", "id": id,
                        "name": call["function"]["name"].as_str().unwrap_or_default(),
                        "input": {}
                    }}),
                );
                index
            }
        };
        if let Some(arguments) = call["function"]["arguments"]
            .as_str()
            .filter(|a| !a.is_empty())
        {
            Self::emit(
                out,
                "content_block_delta",
                json!({"index": index, "delta": {"type": "input_json_delta", "partial_json": arguments}}),
            );
        }
    }

    fn line_event(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let Some(data) = super::plan::data_of(line) else {
            return;
        };
        if data == b"[DONE]" {
            self.end(None, out);
            return;
        }
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if event.get("error").is_some() {
            let status = event["error"]["code"].as_u64().unwrap_or(500);
            let status = u16::try_from(status).unwrap_or(500);
            Self::emit(out, "error", error_body(status, data));
            self.ended = true;
            return;
        }
        self.start(event["id"].as_str(), out);
        let choices = event["choices"].as_array();
        for choice in choices.into_iter().flatten() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                self.text(text, out);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                self.call(call, out);
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish = Some(reason.to_owned());
            }
        }
        let usage = event.get("usage").filter(|u| !u.is_null());
        if let Some(usage) = usage
            && choices.is_none_or(|c| c.is_empty())
        {
            self.end(Some(usage), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_with_a_tool_turn_becomes_chat_messages_with_the_ids_paired() {
        let body = json!({
            "model": "claude-x", "max_tokens": 900, "stream": true,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Write a.txt"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "On it."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"p": "a"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "ok"}]},
                    {"type": "text", "text": "Now stop."}
                ]}
            ],
            "tools": [
                {"name": "Write", "description": "w", "input_schema": {"type": "object"}},
                {"type": "web_search_20250305", "name": "web_search"}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        });
        let out: Value = serde_json::from_slice(
            &chat_request(body.to_string().as_bytes(), "gpt-5", true, Some(50), true).unwrap(),
        )
        .unwrap();
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(m[1], json!({"role": "user", "content": "Write a.txt"}));
        assert_eq!(m[2]["content"], "On it.");
        assert_eq!(m[2]["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"p":"a"}"#
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "ok"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "Now stop."}));
        assert_eq!(out["tools"].as_array().unwrap().len(), 1);
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(out["max_completion_tokens"], 50);
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[test]
    fn a_call_whose_arguments_are_no_json_object_keeps_them_as_text() {
        let chat = json!({"id": "c", "choices": [{"finish_reason": "tool_calls", "message": {
            "content": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "w", "arguments": "not json {"}}]
        }}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}});
        let out: Value =
            serde_json::from_slice(&messages_body(200, chat.to_string().as_bytes(), "m")).unwrap();
        assert_eq!(out["stop_reason"], "tool_use");
        assert_eq!(out["content"][0]["id"], "call_1");
        assert_eq!(
            out["content"][0]["input"],
            json!({"arguments": "not json {"})
        );
        assert_eq!(out["usage"]["input_tokens"], 3);
    }

    fn events(text: &str) -> Vec<(String, Value)> {
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (kind, data) = e.split_once('\n').unwrap();
                let kind = kind.strip_prefix("event: ").unwrap().to_owned();
                let data = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                (kind, data)
            })
            .collect()
    }

    #[test]
    fn a_chat_stream_with_text_and_a_call_becomes_the_messages_event_sequence() {
        let mut t = ChatToMessages::new("sonnet");
        let mut out = Vec::new();
        for piece in [
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi \"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"function\":{\"name\":\"w\",\"arguments\":\"\"}}]}}]}\n",
            "\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\ndata: [DONE]\n\n",
        ] {
            out.extend(t.push(piece.as_bytes()));
        }
        out.extend(t.finish());
        let events = events(&String::from_utf8(out).unwrap());
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[1].1["content_block"]["type"], "text");
        assert_eq!(events[2].1["delta"]["text"], "hi ");
        assert_eq!(events[4].1["index"], 1);
        assert_eq!(events[4].1["content_block"]["id"], "call_9");
        assert_eq!(events[5].1["delta"]["partial_json"], r#"{"a":1}"#);
        assert_eq!(events[7].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[7].1["usage"]["input_tokens"], 5);
        assert_eq!(events[7].1["usage"]["cache_read_input_tokens"], 2);
        assert_eq!(events[7].1["usage"]["output_tokens"], 3);
    }

    #[test]
    fn a_stream_that_ends_without_usage_still_closes_the_message() {
        let mut t = ChatToMessages::new("m");
        let mut out =
            t.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"length\"}]}\n\n");
        out.extend(t.finish());
        let events = events(&String::from_utf8(out).unwrap());
        assert_eq!(events.last().unwrap().0, "message_stop");
        assert_eq!(
            events[events.len() - 2].1["delta"]["stop_reason"],
            "max_tokens"
        );
    }
}
