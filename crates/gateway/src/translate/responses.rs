//! OpenAI Responses requests answered by a provider reached through Chat Completions (an
//! OpenAI-compatible server that serves no Responses API, or a provider of another kind):
//! the request is rewritten as a Chat Completions request, and the answer (a JSON body, or a
//! stream translated chunk by chunk) back into a Response with the event sequence Codex reads:
//! `response.created`, `response.output_item.added`, `response.output_text.delta`,
//! `response.function_call_arguments.delta`, `response.output_item.done` for each message and
//! call, and `response.completed` with the usage, which is what ends a turn. A
//! `function_call` item's `call_id` is the Chat call's id and a `function_call_output` goes
//! back as the `tool` message of that id, so calls and outputs stay paired.

use serde_json::{Map, Value, json};

/// The Chat Completions body for a Responses request. `cap` is the output cap to set (the
/// request's own `max_output_tokens`, lowered to the budget's room), `openai` picks OpenAI's
/// cap field over the older one compatible servers read.
pub(crate) fn chat_request(
    body: &[u8],
    upstream_model: &str,
    stream: bool,
    cap: Option<u64>,
    openai: bool,
) -> Result<Vec<u8>, String> {
    let request: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the request body is not a JSON object: {e}"))?;
    let mut messages: Vec<Value> = Vec::new();
    if let Some(text) = request.get("instructions").and_then(Value::as_str)
        && !text.is_empty()
    {
        messages.push(json!({"role": "system", "content": text}));
    }
    match request.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for item in items {
                input_item(item, &mut messages);
            }
        }
        Some(_) => return Err("the request's `input` must be a string or a list".into()),
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(messages));
    let empty = Vec::new();
    let tools: Vec<Value> = request
        .get("tools")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
        .iter()
        // Built-in tools (web search, local shell …) only OpenAI's Responses API runs.
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        .map(|t| {
            let mut function = json!({
                "name": t.get("name").cloned().unwrap_or(Value::Null),
                "description": t.get("description").cloned().unwrap_or(json!("")),
                "parameters": t.get("parameters").cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}))
            });
            if let Some(strict) = t.get("strict").filter(|s| s.is_boolean()) {
                function["strict"] = strict.clone();
            }
            json!({"type": "function", "function": function})
        })
        .collect();
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = request.get("tool_choice") {
            let mapped = match choice {
                Value::String(_) => Some(choice.clone()),
                Value::Object(c) if c.get("type").and_then(Value::as_str) == Some("function") => {
                    Some(json!({"type": "function", "function": {
                        "name": c.get("name").cloned().unwrap_or(Value::Null)
                    }}))
                }
                _ => None,
            };
            if let Some(mapped) = mapped {
                out.insert("tool_choice".into(), mapped);
            }
        }
        if let Some(parallel) = request
            .get("parallel_tool_calls")
            .filter(|p| p.is_boolean())
        {
            out.insert("parallel_tool_calls".into(), parallel.clone());
        }
    }
    for name in ["temperature", "top_p", "user"] {
        if let Some(value) = request.get(name).filter(|v| !v.is_null()) {
            out.insert(name.into(), value.clone());
        }
    }
    if let Some(format) = request.get("text").and_then(|t| t.get("format"))
        && format.get("type").and_then(Value::as_str) == Some("json_schema")
    {
        let mut schema = format.clone();
        if let Some(map) = schema.as_object_mut() {
            map.remove("type");
        }
        out.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": schema}),
        );
    }
    let cap = cap.or_else(|| request.get("max_output_tokens").and_then(Value::as_u64));
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

/// The text of a message item's content: a string, or input/output text parts.
fn content_parts(content: &Value) -> (String, Vec<Value>) {
    let mut text = Vec::new();
    let mut images = Vec::new();
    match content {
        Value::String(t) => text.push(t.clone()),
        Value::Array(parts) => {
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => {
                        text.push(part["text"].as_str().unwrap_or_default().to_owned());
                    }
                    Some("input_image") => {
                        let url = part
                            .get("image_url")
                            .and_then(Value::as_str)
                            .or_else(|| part.pointer("/image_url/url").and_then(Value::as_str));
                        if let Some(url) = url {
                            images.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    (text.join("\n"), images)
}

/// The assistant message that function calls join: the last message when it is the
/// assistant's own (a text answer or earlier calls of the same turn), else a new one.
fn assistant_for_calls(messages: &mut Vec<Value>) -> &mut Value {
    let joins = messages.last().is_some_and(|m| m["role"] == "assistant");
    if !joins {
        messages.push(json!({"role": "assistant", "content": null}));
    }
    let last = messages.last_mut().expect("just pushed");
    if last.get("tool_calls").is_none() {
        last["tool_calls"] = json!([]);
    }
    last
}

fn input_item(item: &Value, messages: &mut Vec<Value>) {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some("assistant") => "assistant",
                // Compatible servers know no `developer` role.
                Some("system" | "developer") => "system",
                _ => "user",
            };
            let (text, images) = content_parts(item.get("content").unwrap_or(&Value::Null));
            let content = if images.is_empty() || role != "user" {
                json!(text)
            } else {
                let mut parts = vec![json!({"type": "text", "text": text})];
                parts.extend(images);
                Value::Array(parts)
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": item.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}")
                }
            });
            let message = assistant_for_calls(messages);
            if let Some(calls) = message["tool_calls"].as_array_mut() {
                calls.push(call);
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(other @ Value::Array(_)) => content_parts(other).0,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            messages.push(json!({
                "role": "tool",
                "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "content": output
            }));
        }
        // Reasoning items are the provider's own and mean nothing to another.
        _ => {}
    }
}

/// Chat Completions usage as the Responses API reports it.
fn usage(chat: &Value) -> Value {
    let get = |name: &str| chat.get(name).and_then(Value::as_u64).unwrap_or(0);
    let cached = chat
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let reasoning = chat
        .pointer("/completion_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "input_tokens": get("prompt_tokens"),
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": get("completion_tokens"),
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": get("prompt_tokens") + get("completion_tokens")
    })
}

/// An error body from the provider as the Responses API's (OpenAI's) error: a Chat
/// Completions provider's errors are in that shape already; anything else is wrapped.
pub(crate) fn error_body(status: u16, body: &[u8]) -> Vec<u8> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if value["error"]["message"].is_string() {
        return value.to_string().into_bytes();
    }
    let message = value["message"]
        .as_str()
        .unwrap_or("the provider refused the request");
    let (kind, code) = match status {
        429 => ("rate_limit_error", json!("rate_limit_exceeded")),
        500.. => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        .to_string()
        .into_bytes()
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "completed" {
        json!([{"type": "output_text", "text": text, "annotations": []}])
    } else {
        json!([])
    };
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn call_item(call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id,
        "name": name, "arguments": arguments, "status": status
    })
}

fn response_object(id: &str, model: &str, status: &str, output: Vec<Value>) -> Value {
    json!({
        "id": id, "object": "response", "created_at": 0, "status": status, "error": null,
        "incomplete_details": null, "model": model, "output": output,
        "parallel_tool_calls": true, "usage": null
    })
}

/// `completed`, or `incomplete` when the answer stopped at its output cap.
fn finished(response: &mut Value, finish: Option<&str>) {
    if finish == Some("length") {
        response["status"] = json!("incomplete");
        response["incomplete_details"] = json!({"reason": "max_output_tokens"});
    } else {
        response["status"] = json!("completed");
    }
}

/// A whole Chat Completions answer as a Response; an error body as OpenAI's error.
pub(crate) fn responses_body(status: u16, body: &[u8], model: &str) -> Vec<u8> {
    if !(200..300).contains(&status) {
        return error_body(status, body);
    }
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let chat_id = value["id"].as_str().unwrap_or("gateway");
    let choice = &value["choices"][0];
    let message = &choice["message"];
    let mut output = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        output.push(message_item(&format!("msg_{chat_id}"), text, "completed"));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        output.push(call_item(
            call["id"].as_str().unwrap_or_default(),
            call["function"]["name"].as_str().unwrap_or_default(),
            call["function"]["arguments"].as_str().unwrap_or("{}"),
            "completed",
        ));
    }
    let mut response = response_object(&format!("resp_{chat_id}"), model, "completed", output);
    finished(&mut response, choice["finish_reason"].as_str());
    if let Some(u) = value.get("usage").filter(|u| !u.is_null()) {
        response["usage"] = usage(u);
    }
    response.to_string().into_bytes()
}

/// An output item a stream is writing.
enum Open {
    Message { id: String, text: String },
    Call { index: u64 },
}

/// A function call of the stream, gathered as its pieces pass.
struct Call {
    index: u64,
    call_id: String,
    name: String,
    arguments: String,
    output_index: usize,
}

/// Turns a Chat Completions event stream into a Responses event stream, chunk by chunk: text
/// and argument deltas go on as they come; each item is closed with its `output_item.done`
/// when the next begins; `response.completed` (or `response.incomplete`) with the usage ends
/// it when the provider's usage (or the stream's end) arrives.
#[derive(Default)]
pub(crate) struct ChatToResponses {
    model: String,
    lines: super::plan::Lines,
    id: String,
    started: bool,
    sequence: u64,
    open: Option<Open>,
    calls: Vec<Call>,
    /// The items closed so far, for the final response.
    output: Vec<Value>,
    finish: Option<String>,
    ended: bool,
}

impl ChatToResponses {
    pub(crate) fn new(model: &str) -> ChatToResponses {
        ChatToResponses {
            model: model.to_owned(),
            ..ChatToResponses::default()
        }
    }

    /// The Responses events for the next piece of the upstream stream.
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

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(format!("event: {kind}\ndata: {data}\n\n").as_bytes());
    }

    fn start(&mut self, chat_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = format!("resp_{}", chat_id.unwrap_or("gateway"));
        let response = response_object(&self.id, &self.model, "in_progress", Vec::new());
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let output_index = self.output.len();
        match self.open.take() {
            None => {}
            Some(Open::Message { id, text }) => {
                let at = json!({"item_id": id, "output_index": output_index, "content_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                self.emit(out, "response.output_text.done", done);
                let mut part = at;
                part["part"] = json!({"type": "output_text", "text": text, "annotations": []});
                self.emit(out, "response.content_part.done", part);
                let item = message_item(&id, &text, "completed");
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": output_index, "item": item}),
                );
                self.output.push(item);
            }
            Some(Open::Call { index }) => {
                let Some(call) = self.calls.iter().find(|c| c.index == index) else {
                    return;
                };
                let item = call_item(&call.call_id, &call.name, &call.arguments, "completed");
                let done = json!({
                    "item_id": item["id"], "output_index": call.output_index,
                    "arguments": call.arguments
                });
                let output_index = call.output_index;
                self.emit(out, "response.function_call_arguments.done", done);
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": output_index, "item": item}),
                );
                self.output.push(item);
            }
        }
    }

    fn end(&mut self, chat_usage: Option<&Value>, out: &mut Vec<u8>) {
        self.ended = true;
        self.start(None, out);
        self.close(out);
        let mut response = response_object(
            &self.id,
            &self.model,
            "completed",
            std::mem::take(&mut self.output),
        );
        finished(&mut response, self.finish.as_deref());
        if let Some(u) = chat_usage {
            response["usage"] = usage(u);
        }
        let kind = if response["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, kind, json!({"response": response}));
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close(out);
            let id = format!("msg_{}_{}", self.id, self.output.len());
            let output_index = self.output.len();
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": output_index, "item": message_item(&id, "", "in_progress")}),
            );
            self.emit(
                out,
                "response.content_part.added",
                json!({
                    "item_id": id, "output_index": output_index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}
                }),
            );
            self.open = Some(Open::Message {
                id,
                text: String::new(),
            });
        }
        let output_index = self.output.len();
        let Some(Open::Message { id, text: all }) = self.open.as_mut() else {
            return;
        };
        all.push_str(text);
        let data = json!({
            "item_id": id, "output_index": output_index, "content_index": 0,
            "delta": text, "logprobs": []
        });
        self.emit(out, "response.output_text.delta", data);
    }

    fn call(&mut self, piece: &Value, out: &mut Vec<u8>) {
        let index = piece["index"].as_u64().unwrap_or(0);
        if !self.calls.iter().any(|c| c.index == index) {
            self.close(out);
            let call_id = piece["id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("call_{}_{index}", self.id));
            let name = piece["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let output_index = self.output.len();
            let item = call_item(&call_id, &name, "", "in_progress");
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": output_index, "item": item}),
            );
            self.calls.push(Call {
                index,
                call_id,
                name,
                arguments: String::new(),
                output_index,
            });
            self.open = Some(Open::Call { index });
        }
        let Some(arguments) = piece["function"]["arguments"]
            .as_str()
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let Some(call) = self.calls.iter_mut().find(|c| c.index == index) else {
            return;
        };
        call.arguments.push_str(arguments);
        let data = json!({
            "item_id": format!("fc_{}", call.call_id), "output_index": call.output_index,
            "delta": arguments
        });
        self.emit(out, "response.function_call_arguments.delta", data);
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
        if let Some(error) = event.get("error") {
            // Codex reads a failed response's `error.code` to tell a used-up quota or a
            // rate limit from a fatal error.
            self.start(None, out);
            self.ended = true;
            let mut response = response_object(&self.id, &self.model, "failed", Vec::new());
            response["error"] = json!({
                "code": error.get("code").filter(|c| c.is_string()).or_else(|| error.get("type")),
                "message": error.get("message").and_then(Value::as_str)
                    .unwrap_or("the provider's answer failed")
            });
            self.emit(out, "response.failed", json!({"response": response}));
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
    fn a_responses_conversation_with_a_call_and_its_output_becomes_chat_messages() {
        let body = json!({
            "model": "codex-x", "stream": true, "instructions": "You are Codex.",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox: none"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Write a.txt"}]},
                {"type": "reasoning", "summary": []},
                {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}
            ],
            "tools": [
                {"type": "function", "name": "shell", "description": "run", "parameters": {"type": "object"}, "strict": false},
                {"type": "web_search"}
            ],
            "tool_choice": "auto", "parallel_tool_calls": false, "store": false
        });
        let out: Value = serde_json::from_slice(
            &chat_request(body.to_string().as_bytes(), "qwen", true, Some(70), false).unwrap(),
        )
        .unwrap();
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "You are Codex."}));
        assert_eq!(m[1], json!({"role": "system", "content": "Sandbox: none"}));
        assert_eq!(m[2], json!({"role": "user", "content": "Write a.txt"}));
        assert_eq!(m[3]["role"], "assistant");
        assert_eq!(m[3]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            m[4],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "a.txt"})
        );
        assert_eq!(out["tools"].as_array().unwrap().len(), 1);
        assert_eq!(out["tools"][0]["function"]["name"], "shell");
        assert_eq!(out["tool_choice"], "auto");
        assert_eq!(out["max_tokens"], 70);
        assert!(out.get("store").is_none());
    }

    #[test]
    fn an_answer_cut_at_its_cap_is_an_incomplete_response() {
        let chat = json!({"id": "c", "choices": [{"finish_reason": "length",
            "message": {"content": "half an ans"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9}});
        let out: Value =
            serde_json::from_slice(&responses_body(200, chat.to_string().as_bytes(), "m")).unwrap();
        assert_eq!(out["status"], "incomplete");
        assert_eq!(out["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(out["output"][0]["content"][0]["text"], "half an ans");
        assert_eq!(out["usage"]["total_tokens"], 12);
    }

    fn events(text: &str) -> Vec<(String, Value)> {
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (kind, data) = e.split_once('\n').unwrap();
                let kind = kind.strip_prefix("event: ").unwrap().to_owned();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], kind.as_str());
                (kind, data)
            })
            .collect()
    }

    #[test]
    fn a_chat_stream_with_text_and_a_call_becomes_the_responses_event_sequence() {
        let mut t = ChatToResponses::new("local");
        let mut out = Vec::new();
        for piece in [
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi \"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"there\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"function\":{\"name\":\"w\",\"arguments\":\"\"}}]}}]}\n",
            "\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n",
        ] {
            out.extend(t.push(piece.as_bytes()));
        }
        out.extend(t.finish());
        let events = events(&String::from_utf8(out).unwrap());
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let sequence: Vec<u64> = events
            .iter()
            .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(sequence, (0..14).collect::<Vec<u64>>());
        assert_eq!(events[8].1["item"]["content"][0]["text"], "hi there");
        let call = &events[12].1["item"];
        assert_eq!(call["call_id"], "call_9");
        assert_eq!(call["arguments"], r#"{"a":1}"#);
        assert_eq!(events[12].1["output_index"], 1);
        let done = &events[13].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"].as_array().unwrap().len(), 2);
        assert_eq!(done["usage"]["input_tokens"], 7);
        assert_eq!(done["usage"]["total_tokens"], 10);
    }

    #[test]
    fn an_error_chunk_fails_the_response_with_its_code() {
        let mut t = ChatToResponses::new("m");
        let out = t.push(
            b"data: {\"error\":{\"message\":\"slow down\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n",
        );
        let events = events(&String::from_utf8(out).unwrap());
        let (kind, failed) = events.last().unwrap();
        assert_eq!(kind, "response.failed");
        assert_eq!(failed["response"]["error"]["code"], "rate_limit_exceeded");
        assert!(t.finish().is_empty());
    }
}
