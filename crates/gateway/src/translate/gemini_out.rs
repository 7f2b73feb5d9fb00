//! Chat Completions requests answered by a Gemini provider: the request is rewritten as a
//! `generateContent` body (the model and whether to stream go in the URL), and the answer (a
//! JSON `GenerateContentResponse`, or a stream of them) back into a Chat Completions answer.
//!
//! Gemini's function calls need carry no id, so a `tool` message's result is sent under the
//! name of the call its `tool_call_id` names, and calls coming back get ids of the gateway's
//! making (`call_1`, `call_2` … within the answer) unless Gemini gave its own. A call's
//! `thoughtSignature`, which Gemini wants back with the call on later turns, rides in the id
//! after [`SIGNED`], the one place a Chat client keeps and returns unchanged.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::plan::{Lines, chat_error, emit_chat};

/// Separates a call id from the `thoughtSignature` carried in it.
const SIGNED: &str = "~ts~";

/// The Chat id of a Gemini call: its own id, else the `n`th of the answer, with its signature.
fn call_id(call: Call, n: u64) -> (String, String, String) {
    let id = call.id.unwrap_or_else(|| format!("call_{n}"));
    let id = match call.signature {
        Some(signature) => format!("{id}{SIGNED}{signature}"),
        None => id,
    };
    (id, call.name, call.arguments)
}

/// The `generateContent` body for a Chat Completions request; `cap` is the budget's output
/// cap, if one is set.
pub(crate) fn generate_request(chat: &[u8], cap: Option<u64>) -> Result<Vec<u8>, String> {
    let request: Value = serde_json::from_slice(chat)
        .map_err(|e| format!("the request body is not a JSON object: {e}"))?;
    let Some(list) = request.get("messages").and_then(Value::as_array) else {
        return Err("the request's `messages` must be a list".into());
    };
    let mut system = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Call id → function name, to name each result the way Gemini pairs them.
    let mut names: HashMap<String, String> = HashMap::new();
    for message in list {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        let (role, parts) = match role {
            "system" | "developer" => {
                system.extend(parts_of(message.get("content")));
                continue;
            }
            "assistant" => {
                let mut parts = parts_of(message.get("content"));
                for call in message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = call
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        names.insert(id.to_owned(), name.to_owned());
                    }
                    let args = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .and_then(|a| serde_json::from_str::<Value>(a).ok())
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    let mut part = json!({"functionCall": {"name": name, "args": args}});
                    let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                    if let Some((_, signature)) = id.split_once(SIGNED) {
                        part["thoughtSignature"] = json!(signature);
                    }
                    parts.push(part);
                }
                ("model", parts)
            }
            "tool" | "function" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = names
                    .get(id)
                    .cloned()
                    .or_else(|| {
                        message
                            .get("name")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                let text: String = parts_of(message.get("content"))
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                // Gemini wants the response as an object: a result that is one goes as it
                // is, any other text under `output`.
                let response = serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({"output": text}));
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            _ => ("user", parts_of(message.get("content"))),
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => contents.push((role, parts)),
        }
    }
    let mut out = Map::new();
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    out.insert(
        "contents".into(),
        Value::Array(
            contents
                .into_iter()
                .map(|(role, parts)| json!({"role": role, "parts": parts}))
                .collect(),
        ),
    );
    let declarations: Vec<Value> = request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("function"))
        .map(|f| {
            let mut declaration = json!({"name": f.get("name").cloned().unwrap_or(Value::Null)});
            if let Some(description) = f.get("description").filter(|d| d.is_string()) {
                declaration["description"] = description.clone();
            }
            // Full JSON Schema, which `parameters` (an OpenAPI subset) would refuse in part.
            if let Some(parameters) = f.get("parameters") {
                declaration["parametersJsonSchema"] = parameters.clone();
            }
            declaration
        })
        .collect();
    if !declarations.is_empty() {
        out.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
        let mode = match request.get("tool_choice") {
            Some(Value::String(mode)) if mode == "none" => Some(json!({"mode": "NONE"})),
            Some(Value::String(mode)) if mode == "required" => Some(json!({"mode": "ANY"})),
            Some(Value::Object(named)) => named
                .get("function")
                .and_then(|f| f.get("name"))
                .map(|name| json!({"mode": "ANY", "allowedFunctionNames": [name]})),
            _ => None,
        };
        if let Some(mode) = mode {
            out.insert("toolConfig".into(), json!({"functionCallingConfig": mode}));
        }
    }
    let mut config = Map::new();
    if let Some(t) = request.get("temperature").filter(|t| t.is_number()) {
        config.insert("temperature".into(), t.clone());
    }
    if let Some(p) = request.get("top_p").filter(|p| p.is_number()) {
        config.insert("topP".into(), p.clone());
    }
    match request.get("stop") {
        Some(Value::String(stop)) => {
            config.insert("stopSequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            config.insert("stopSequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    let own_cap = ["max_completion_tokens", "max_tokens"]
        .iter()
        .filter_map(|name| request.get(*name).and_then(Value::as_u64))
        .min();
    if let Some(cap) = cap.or(own_cap) {
        config.insert("maxOutputTokens".into(), json!(cap));
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out).to_string().into_bytes())
}

/// A Chat message's content (a string, or a list of parts) as Gemini parts: text, and images
/// given as data URLs.
fn parts_of(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) if !text.is_empty() => vec![json!({"text": text})],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| {
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    return (!text.is_empty()).then(|| json!({"text": text}));
                }
                let url = part
                    .pointer("/image_url/url")
                    .or_else(|| part.get("image_url"))
                    .and_then(Value::as_str)?;
                Some(match super::plan::data_url(url) {
                    Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
                    // Gemini reads only files it holds; a web address goes on as text.
                    None => json!({"text": format!("[image: {url}]")}),
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn finish_reason(gemini: &str, called: bool) -> &'static str {
    match gemini {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// Gemini's `usageMetadata` in Chat Completions terms: thinking is billed as output.
fn chat_usage(usage: &Value) -> Value {
    let get = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    let prompt = get("promptTokenCount") + get("toolUsePromptTokenCount");
    let completion = get("candidatesTokenCount") + get("thoughtsTokenCount");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": get("cachedContentTokenCount")}
    })
}

/// A Gemini error body in OpenAI's shape.
fn openai_error(value: &Value) -> Value {
    let message = value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("the provider refused the request");
    let (kind, code) = match value.pointer("/error/status").and_then(Value::as_str) {
        Some("UNAUTHENTICATED") => ("invalid_request_error", json!("invalid_api_key")),
        Some("RESOURCE_EXHAUSTED") => ("rate_limit_error", json!("rate_limit_exceeded")),
        Some("NOT_FOUND") => ("invalid_request_error", json!("model_not_found")),
        Some("UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED") => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    chat_error(message, kind, code)
}

/// One function call of a Gemini answer.
struct Call {
    id: Option<String>,
    name: String,
    arguments: String,
    signature: Option<String>,
}

/// The text and function calls of a response's first candidate; thoughts are left out.
fn candidate_parts(response: &Value) -> (String, Vec<Call>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    let parts = response.pointer("/candidates/0/content/parts");
    for part in parts.and_then(Value::as_array).into_iter().flatten() {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(call) = part.get("functionCall") {
            calls.push(Call {
                id: call.get("id").and_then(Value::as_str).map(str::to_owned),
                name: call
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                arguments: call
                    .get("args")
                    .cloned()
                    .unwrap_or_else(|| json!({}))
                    .to_string(),
                signature: part
                    .get("thoughtSignature")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
    }
    (text, calls)
}

/// A whole Gemini answer as a Chat Completions answer; an error body as OpenAI's error.
pub(crate) fn chat_body(status: u16, body: &[u8], model: &str) -> Vec<u8> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        return openai_error(&value).to_string().into_bytes();
    }
    let (text, calls) = candidate_parts(&value);
    let calls: Vec<Value> = calls
        .into_iter()
        .enumerate()
        .map(|(n, call)| {
            let (id, name, arguments) = call_id(call, n as u64 + 1);
            json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": arguments}
            })
        })
        .collect();
    let gemini_finish = value
        .pointer("/candidates/0/finishReason")
        .and_then(Value::as_str)
        // A prompt refused outright comes back with no candidate at all.
        .or_else(|| {
            value
                .pointer("/promptFeedback/blockReason")
                .map(|_| "SAFETY")
        })
        .unwrap_or("STOP");
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = Value::Array(calls.clone());
    }
    json!({
        "id": format!("chatcmpl-{}", value["responseId"].as_str().unwrap_or("gateway")),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(gemini_finish, !calls.is_empty())
        }],
        "usage": chat_usage(&value["usageMetadata"])
    })
    .to_string()
    .into_bytes()
}

/// Turns a Gemini event stream (each event a whole `GenerateContentResponse` with the next
/// parts) into Chat Completions chunks as it passes. Gemini's stream just ends, so the usage
/// chunk and `[DONE]` are sent by [`GeminiToChat::finish`], once a finish reason was seen.
#[derive(Default)]
pub(crate) struct GeminiToChat {
    model: String,
    lines: Lines,
    started: bool,
    calls: u64,
    usage: Option<Value>,
    finish: Option<&'static str>,
    ended: bool,
}

impl GeminiToChat {
    pub(crate) fn new(model: &str) -> GeminiToChat {
        GeminiToChat {
            model: model.to_owned(),
            ..GeminiToChat::default()
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in self.lines.feed(chunk) {
            self.line_event(&line, &mut out);
        }
        out
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.ended && self.finish.is_some() {
            self.ended = true;
            let usage = self
                .usage
                .take()
                .unwrap_or_else(|| chat_usage(&Value::Null));
            let last = json!({
                "id": "chatcmpl-gateway", "object": "chat.completion.chunk", "created": 0,
                "model": self.model, "choices": [], "usage": usage
            });
            emit_chat(&mut out, &last);
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
        out
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": "chatcmpl-gateway", "object": "chat.completion.chunk", "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
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
        if event.get("error").is_some() {
            self.ended = true;
            emit_chat(out, &openai_error(&event));
            return;
        }
        if !self.started {
            self.started = true;
            emit_chat(
                out,
                &self.chunk(json!({"role": "assistant", "content": ""}), None),
            );
        }
        let (text, calls) = candidate_parts(&event);
        if !text.is_empty() {
            emit_chat(out, &self.chunk(json!({"content": text}), None));
        }
        for call in calls {
            self.calls += 1;
            let (id, name, arguments) = call_id(call, self.calls);
            let delta = json!({"tool_calls": [{
                "index": self.calls - 1,
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": arguments}
            }]});
            emit_chat(out, &self.chunk(delta, None));
        }
        if let Some(usage) = event.get("usageMetadata").filter(|u| u.is_object()) {
            self.usage = Some(chat_usage(usage));
        }
        let finish = event
            .pointer("/candidates/0/finishReason")
            .and_then(Value::as_str)
            .or_else(|| {
                event
                    .pointer("/promptFeedback/blockReason")
                    .map(|_| "SAFETY")
            });
        if let Some(finish) = finish.filter(|_| self.finish.is_none()) {
            let finish = finish_reason(finish, self.calls > 0);
            self.finish = Some(finish);
            emit_chat(out, &self.chunk(json!({}), Some(finish)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_conversation_becomes_gemini_contents_with_results_named_by_their_call() {
        let body = json!({
            "model": "alias",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Write a"},
                {"role": "assistant", "content": "Sure.", "tool_calls": [{"id": "call_9",
                    "type": "function", "function": {"name": "write", "arguments": "{\"p\":\"a\"}"}}]},
                {"role": "tool", "tool_call_id": "call_9", "content": "written"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QQ=="}}]}
            ],
            "tools": [{"type": "function", "function": {"name": "write",
                "parameters": {"type": "object", "additionalProperties": false}}}],
            "tool_choice": {"type": "function", "function": {"name": "write"}},
            "max_completion_tokens": 500,
            "stop": ["X"]
        });
        let out: Value = serde_json::from_slice(
            &generate_request(body.to_string().as_bytes(), Some(40)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            out["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        let contents = out["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3, "{out}");
        assert_eq!(contents[1]["role"], "model");
        assert_eq!(
            contents[1]["parts"][1]["functionCall"],
            json!({"name": "write", "args": {"p": "a"}})
        );
        assert_eq!(
            contents[2]["parts"][0]["functionResponse"],
            json!({"name": "write", "response": {"output": "written"}})
        );
        assert_eq!(
            contents[2]["parts"][1]["inlineData"]["mimeType"],
            "image/jpeg"
        );
        assert_eq!(
            out["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"],
            false
        );
        assert_eq!(
            out["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"],
            json!(["write"])
        );
        assert_eq!(
            out["generationConfig"],
            json!({"stopSequences": ["X"], "maxOutputTokens": 40})
        );
    }

    #[test]
    fn a_gemini_stream_becomes_chat_chunks_ending_with_usage_and_done() {
        let mut t = GeminiToChat::new("alias");
        let mut out = Vec::new();
        for piece in [
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi \"}]}}],\"usageMetadata\":{\"promptTokenCount\":4}}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"thinking\",\"thought\":true},{\"functionCall\":{\"name\":\"w\",\"args\":{\"a\":1}}}]},\"finishReason\":\"STOP\"}],",
            "\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":2,\"thoughtsTokenCount\":3,\"cachedContentTokenCount\":1}}\r\n\r\n",
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
        assert_eq!(chunks.len(), 5, "{text}");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "hi ");
        let call = &chunks[2]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["id"], "call_1");
        assert_eq!(call["function"]["arguments"], "{\"a\":1}");
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[4]["usage"]["completion_tokens"], 5);
        assert_eq!(
            chunks[4]["usage"]["prompt_tokens_details"]["cached_tokens"],
            1
        );
    }

    #[test]
    fn a_calls_thought_signature_goes_out_in_its_id_and_back_on_the_call() {
        let answer = json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "w", "args": {}}, "thoughtSignature": "c2ln+/="}
        ]}, "finishReason": "STOP"}]});
        let out: Value =
            serde_json::from_slice(&chat_body(200, answer.to_string().as_bytes(), "a")).unwrap();
        let call = &out["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "call_1~ts~c2ln+/=");
        let next = json!({"model": "a", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "{\"ok\":true}"}
        ]});
        let sent: Value =
            serde_json::from_slice(&generate_request(next.to_string().as_bytes(), None).unwrap())
                .unwrap();
        assert_eq!(
            sent["contents"][1]["parts"][0],
            json!({"functionCall": {"name": "w", "args": {}}, "thoughtSignature": "c2ln+/="})
        );
        assert_eq!(
            sent["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "w", "response": {"ok": true}})
        );
    }

    #[test]
    fn a_whole_answer_and_an_error_take_chats_shape() {
        let body = json!({"candidates": [{"content": {"parts": [{"text": "done"}]},
            "finishReason": "MAX_TOKENS"}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1}});
        let out: Value =
            serde_json::from_slice(&chat_body(200, body.to_string().as_bytes(), "alias")).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "done");
        assert_eq!(out["choices"][0]["finish_reason"], "length");
        assert_eq!(out["usage"]["total_tokens"], 4);
        let error =
            json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}});
        let out: Value =
            serde_json::from_slice(&chat_body(429, error.to_string().as_bytes(), "a")).unwrap();
        assert_eq!(out["error"]["message"], "quota");
        assert_eq!(out["error"]["type"], "rate_limit_error");
    }
}
