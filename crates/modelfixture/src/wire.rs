//! The wire formats the fixture speaks: bodies, stream events and error shapes, built the way
//! OpenAI, Anthropic and Google's Gemini API send them.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::Step;

/// Which API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    Chat,
    /// OpenAI Responses, `POST /v1/responses`.
    Responses,
    /// Anthropic Messages, `POST /v1/messages`.
    Messages,
    /// Gemini, `POST /v1beta/models/{model}:generateContent`.
    Generate,
    /// Gemini, `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`.
    StreamGenerate,
}

/// A fixed creation time, so answers are reproducible.
const CREATED: u64 = 1_700_000_000;

/// The parts of a reply every format needs.
pub struct Reply<'a> {
    pub id: u64,
    pub model: &'a str,
    pub step: &'a Step,
}

impl Reply<'_> {
    fn uncached(&self) -> u64 {
        self.step.input_tokens - self.step.cached_tokens
    }

    fn chat_usage(&self) -> Value {
        let s = self.step;
        json!({
            "prompt_tokens": s.input_tokens,
            "completion_tokens": s.output_tokens,
            "total_tokens": s.input_tokens + s.output_tokens,
            "prompt_tokens_details": {"cached_tokens": s.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        })
    }

    fn responses_usage(&self) -> Value {
        let s = self.step;
        json!({
            "input_tokens": s.input_tokens,
            "input_tokens_details": {"cached_tokens": s.cached_tokens},
            "output_tokens": s.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": s.input_tokens + s.output_tokens
        })
    }

    /// Anthropic counts cache reads apart from `input_tokens`.
    fn anthropic_usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.uncached(),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.step.cached_tokens,
            "output_tokens": output_tokens
        })
    }

    fn call_arguments(&self) -> Option<(&str, String)> {
        self.step
            .tool_call
            .as_ref()
            .map(|c| (c.name.as_str(), c.arguments.to_string()))
    }

    fn chat_tool_calls(&self) -> Value {
        match self.call_arguments() {
            Some((name, arguments)) => json!([{
                "id": format!("call_fixture_{}", self.id),
                "type": "function",
                "function": {"name": name, "arguments": arguments}
            }]),
            None => Value::Null,
        }
    }

    fn gemini_usage(&self, final_counts: bool) -> Value {
        let s = self.step;
        let output = if final_counts { s.output_tokens } else { 0 };
        json!({
            "promptTokenCount": s.input_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": s.input_tokens + output,
            "cachedContentTokenCount": s.cached_tokens
        })
    }

    fn gemini_chunk(&self, parts: Value, finish: bool) -> Value {
        let mut candidate = json!({
            "content": {"role": "model", "parts": parts},
            "index": 0
        });
        if finish {
            candidate["finishReason"] = json!("STOP");
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": self.gemini_usage(finish),
            "modelVersion": self.model,
            "responseId": format!("fixture-{}", self.id)
        })
    }

    fn gemini_call_part(&self) -> Option<Value> {
        self.step
            .tool_call
            .as_ref()
            .map(|c| json!({"functionCall": {"name": c.name, "args": c.arguments}}))
    }

    /// The whole answer of a request that did not ask to stream.
    pub fn body(&self, api: Api) -> Value {
        let text = &self.step.reply;
        match api {
            Api::Generate | Api::StreamGenerate => {
                let mut parts = Vec::new();
                if !text.is_empty() {
                    parts.push(json!({"text": text}));
                }
                parts.extend(self.gemini_call_part());
                self.gemini_chunk(Value::Array(parts), true)
            }
            Api::Chat if self.step.tool_call.is_some() => json!({
                "id": format!("chatcmpl-fixture-{}", self.id),
                "object": "chat.completion",
                "created": CREATED,
                "model": self.model,
                "choices": [{
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": if text.is_empty() { Value::Null } else { json!(text) },
                        "tool_calls": self.chat_tool_calls(),
                        "refusal": null
                    },
                    "logprobs": null,
                    "finish_reason": "tool_calls"
                }],
                "usage": self.chat_usage(),
                "system_fingerprint": null
            }),
            Api::Chat => json!({
                "id": format!("chatcmpl-fixture-{}", self.id),
                "object": "chat.completion",
                "created": CREATED,
                "model": self.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop"
                }],
                "usage": self.chat_usage(),
                "system_fingerprint": null
            }),
            Api::Responses => self.response_object("completed", Some(text)),
            Api::Messages => json!({
                "id": format!("msg_fixture_{}", self.id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": self.messages_content(),
                "stop_reason": if self.step.tool_call.is_some() { "tool_use" } else { "end_turn" },
                "stop_sequence": null,
                "usage": self.anthropic_usage(self.step.output_tokens)
            }),
        }
    }

    fn messages_content(&self) -> Value {
        let mut content = vec![json!({"type": "text", "text": self.step.reply})];
        if let Some(call) = &self.step.tool_call {
            content.push(json!({
                "type": "tool_use",
                "id": format!("toolu_fixture_{}", self.id),
                "name": call.name,
                "input": call.arguments
            }));
        }
        Value::Array(content)
    }

    fn response_object(&self, status: &str, text: Option<&str>) -> Value {
        let output = match text {
            Some(text) => {
                let mut items = vec![self.response_message(text, "completed")];
                items.extend(self.response_call("completed"));
                Value::Array(items)
            }
            None => json!([]),
        };
        let usage = if status == "completed" {
            self.responses_usage()
        } else {
            Value::Null
        };
        json!({
            "id": format!("resp_fixture_{}", self.id),
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "usage": usage
        })
    }

    /// The scripted call as a Responses `function_call` output item, which Codex answers by
    /// running its tool and sending the `function_call_output` in the next request.
    fn response_call(&self, status: &str) -> Option<Value> {
        let (name, arguments) = self.call_arguments()?;
        Some(json!({
            "type": "function_call",
            "id": format!("fc_fixture_{}", self.id),
            "call_id": format!("call_fixture_{}", self.id),
            "name": name,
            "arguments": if status == "completed" { arguments } else { String::new() },
            "status": status
        }))
    }

    fn response_message(&self, text: &str, status: &str) -> Value {
        let content = if status == "completed" {
            json!([{"type": "output_text", "text": text, "annotations": []}])
        } else {
            json!([])
        };
        json!({
            "type": "message",
            "id": format!("msg_fixture_{}", self.id),
            "status": status,
            "role": "assistant",
            "content": content
        })
    }

    /// The stream of a request that asked to stream, as server-sent events, split into three
    /// parts: what comes before the first text delta, the deltas, and what follows them. The
    /// server sends each element as its own chunk.
    pub fn stream(&self, api: Api, include_usage: bool) -> Stream {
        let pieces = split_words(&self.step.reply);
        match api {
            Api::Chat => self.chat_stream(&pieces, include_usage),
            Api::Responses => self.responses_stream(&pieces),
            Api::Messages => self.messages_stream(&pieces),
            Api::Generate | Api::StreamGenerate => self.gemini_stream(&pieces),
        }
    }

    /// Gemini streams whole `GenerateContentResponse`s, each with the running usage; the last
    /// has the finish reason, the final usage and any function call.
    fn gemini_stream(&self, pieces: &[&str]) -> Stream {
        let event = |value: Value| Bytes::from(format!("data: {value}\r\n\r\n"));
        let deltas = pieces
            .iter()
            .map(|p| event(self.gemini_chunk(json!([{"text": p}]), false)))
            .collect();
        let last = match self.gemini_call_part() {
            Some(call) => json!([call]),
            None => json!([{"text": ""}]),
        };
        Stream {
            head: Vec::new(),
            deltas,
            tail: vec![event(self.gemini_chunk(last, true))],
        }
    }

    fn chat_chunk(&self, choices: Value, include_usage: bool, usage: Option<Value>) -> Bytes {
        let mut chunk = json!({
            "id": format!("chatcmpl-fixture-{}", self.id),
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices
        });
        // With `include_usage`, every chunk carries `usage`: null, except the last one.
        if include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        data_only(&chunk)
    }

    fn chat_stream(&self, pieces: &[&str], include_usage: bool) -> Stream {
        let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        let head = vec![self.chat_chunk(
            choice(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ),
            include_usage,
            None,
        )];
        let deltas = pieces
            .iter()
            .map(|p| {
                self.chat_chunk(
                    choice(json!({"content": p}), Value::Null),
                    include_usage,
                    None,
                )
            })
            .collect();
        let mut tail = Vec::new();
        let mut finish = "stop";
        if let Some((name, arguments)) = self.call_arguments() {
            finish = "tool_calls";
            let id = format!("call_fixture_{}", self.id);
            tail.push(self.chat_chunk(
                choice(
                    json!({"tool_calls": [{"index": 0, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ),
                include_usage,
                None,
            ));
            tail.push(self.chat_chunk(
                choice(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
                    Value::Null,
                ),
                include_usage,
                None,
            ));
        }
        tail.push(self.chat_chunk(choice(json!({}), json!(finish)), include_usage, None));
        if include_usage {
            tail.push(self.chat_chunk(json!([]), true, Some(self.chat_usage())));
        }
        tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Stream { head, deltas, tail }
    }

    fn responses_stream(&self, pieces: &[&str]) -> Stream {
        let mut seq = 0u64;
        let mut event = |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(seq);
            seq += 1;
            named(kind, &data)
        };
        let item_id = format!("msg_fixture_{}", self.id);
        let text = self.step.reply.as_str();
        let head = vec![
            event(
                "response.created",
                json!({"response": self.response_object("in_progress", None)}),
            ),
            event(
                "response.in_progress",
                json!({"response": self.response_object("in_progress", None)}),
            ),
            event(
                "response.output_item.added",
                json!({"output_index": 0, "item": self.response_message("", "in_progress")}),
            ),
            event(
                "response.content_part.added",
                json!({
                    "item_id": item_id, "output_index": 0, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}
                }),
            ),
        ];
        let deltas = pieces
            .iter()
            .map(|p| {
                event(
                    "response.output_text.delta",
                    json!({
                        "item_id": item_id, "output_index": 0, "content_index": 0,
                        "delta": p, "logprobs": []
                    }),
                )
            })
            .collect();
        let mut tail = vec![
            event(
                "response.output_text.done",
                json!({
                    "item_id": item_id, "output_index": 0, "content_index": 0,
                    "text": text, "logprobs": []
                }),
            ),
            event(
                "response.content_part.done",
                json!({
                    "item_id": item_id, "output_index": 0, "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": []}
                }),
            ),
            event(
                "response.output_item.done",
                json!({"output_index": 0, "item": self.response_message(text, "completed")}),
            ),
        ];
        if let (Some(started), Some(done)) = (
            self.response_call("in_progress"),
            self.response_call("completed"),
        ) {
            let call_id = done["id"].clone();
            let arguments = done["arguments"].clone();
            tail.push(event(
                "response.output_item.added",
                json!({"output_index": 1, "item": started}),
            ));
            tail.push(event(
                "response.function_call_arguments.delta",
                json!({"item_id": call_id, "output_index": 1, "delta": arguments}),
            ));
            tail.push(event(
                "response.function_call_arguments.done",
                json!({"item_id": call_id, "output_index": 1, "arguments": arguments}),
            ));
            tail.push(event(
                "response.output_item.done",
                json!({"output_index": 1, "item": done}),
            ));
        }
        tail.extend([event(
            "response.completed",
            json!({"response": self.response_object("completed", Some(text))}),
        )]);
        Stream { head, deltas, tail }
    }

    fn messages_stream(&self, pieces: &[&str]) -> Stream {
        let event = |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            named(kind, &data)
        };
        // Anthropic reports a first output count in `message_start` and the final, cumulative
        // one in `message_delta`.
        let first_output = self.step.output_tokens.min(1);
        let head = vec![
            event(
                "message_start",
                json!({"message": {
                    "id": format!("msg_fixture_{}", self.id),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": self.anthropic_usage(first_output)
                }}),
            ),
            event(
                "content_block_start",
                json!({"index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", json!({})),
        ];
        let deltas = pieces
            .iter()
            .map(|p| {
                event(
                    "content_block_delta",
                    json!({"index": 0, "delta": {"type": "text_delta", "text": p}}),
                )
            })
            .collect();
        let mut tail = vec![event("content_block_stop", json!({"index": 0}))];
        let mut stop = "end_turn";
        if let Some(call) = &self.step.tool_call {
            stop = "tool_use";
            tail.push(event(
                "content_block_start",
                json!({"index": 1, "content_block": {"type": "tool_use",
                    "id": format!("toolu_fixture_{}", self.id), "name": call.name, "input": {}}}),
            ));
            tail.push(event(
                "content_block_delta",
                json!({"index": 1, "delta": {"type": "input_json_delta",
                    "partial_json": call.arguments.to_string()}}),
            ));
            tail.push(event("content_block_stop", json!({"index": 1})));
        }
        tail.extend([
            event(
                "message_delta",
                json!({
                    "delta": {"stop_reason": stop, "stop_sequence": null},
                    "usage": {"output_tokens": self.step.output_tokens}
                }),
            ),
            event("message_stop", json!({})),
        ]);
        Stream { head, deltas, tail }
    }
}

/// A reply stream in three parts, so the server can pause after the first delta.
pub struct Stream {
    pub head: Vec<Bytes>,
    pub deltas: Vec<Bytes>,
    pub tail: Vec<Bytes>,
}

/// Words with their trailing space, so the pieces join back into the exact text.
fn split_words(text: &str) -> Vec<&str> {
    text.split_inclusive(' ').collect()
}

fn data_only(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn named(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// An error body in the shape of the route's provider, with the provider's type names.
pub fn error_body(api: Api, status: u16, message: &str) -> Value {
    error_body_with(api, status, message, None)
}

/// [`error_body`] with the provider's own error code in place of the status's usual one.
pub fn error_body_with(api: Api, status: u16, message: &str, code: Option<&str>) -> Value {
    let mut body = plain_error_body(api, status, message);
    if let Some(code) = code {
        match api {
            Api::Chat | Api::Responses => {
                body["error"]["type"] = json!(code);
                body["error"]["code"] = json!(code);
            }
            Api::Messages => body["error"]["type"] = json!(code),
            Api::Generate | Api::StreamGenerate => body["error"]["status"] = json!(code),
        }
    }
    body
}

fn plain_error_body(api: Api, status: u16, message: &str) -> Value {
    match api {
        Api::Chat | Api::Responses => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                404 => ("invalid_request_error", json!("model_not_found")),
                429 => ("requests", json!("rate_limit_exceeded")),
                500..=599 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Api::Messages => {
            let kind = match status {
                401 => "authentication_error",
                402 => "billing_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                500..=599 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Api::Generate | Api::StreamGenerate => {
            let status_name = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                504 => "DEADLINE_EXCEEDED",
                _ => "INTERNAL",
            };
            json!({"error": {"code": status, "message": message, "status": status_name}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(stream: &Stream) -> String {
        stream
            .head
            .iter()
            .chain(&stream.deltas)
            .chain(&stream.tail)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn responses_carry_the_call_as_a_function_call_item_after_the_message() {
        let step = Step::call(
            "Writing.",
            "exec_command",
            json!({"cmd": "printf hi > hello.txt"}),
            100,
            10,
        );
        let reply = Reply {
            id: 3,
            model: "m",
            step: &step,
        };
        let output = &reply.body(Api::Responses)["output"];
        assert_eq!(output[0]["type"], "message");
        assert_eq!(output[1]["type"], "function_call");
        assert_eq!(output[1]["name"], "exec_command");
        assert_eq!(output[1]["call_id"], "call_fixture_3");
        assert_eq!(output[1]["arguments"], r#"{"cmd":"printf hi > hello.txt"}"#);
        let stream = text_of(&reply.stream(Api::Responses, false));
        let events: Vec<Value> = stream
            .split("\n\n")
            .filter_map(|e| e.split_once("data: "))
            .map(|(_, data)| serde_json::from_str(data).unwrap())
            .collect();
        let done: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "response.output_item.done")
            .collect();
        assert_eq!(done.len(), 2, "{stream}");
        assert_eq!(done[1]["item"]["type"], "function_call");
        assert_eq!(done[1]["output_index"], 1);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.completed");
        assert_eq!(last["response"]["output"][1]["call_id"], "call_fixture_3");
        // The numbering stays in order with the call's events in it.
        let numbers: Vec<u64> = events
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn words_split_and_join_back_exactly() {
        assert_eq!(split_words("a bc  d"), vec!["a ", "bc ", " ", "d"]);
        assert_eq!(split_words("a bc  d").concat(), "a bc  d");
        assert!(split_words("").is_empty());
    }

    #[test]
    fn anthropic_counts_cache_reads_apart_from_input() {
        let step = Step::reply("hi there", 100, 7, 60);
        let reply = Reply {
            id: 1,
            model: "m",
            step: &step,
        };
        let body = reply.body(Api::Messages);
        assert_eq!(body["usage"]["input_tokens"], 40);
        assert_eq!(body["usage"]["cache_read_input_tokens"], 60);
        let stream = text_of(&reply.stream(Api::Messages, false));
        assert!(
            stream.starts_with("event: message_start\ndata: {"),
            "{stream}"
        );
        assert!(stream.contains("\"output_tokens\":7"), "{stream}");
        assert!(stream.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    }

    #[test]
    fn chat_streams_send_usage_only_when_asked_and_end_with_done() {
        let step = Step::reply("one two", 10, 2, 0);
        let reply = Reply {
            id: 1,
            model: "m",
            step: &step,
        };
        let without = reply.stream(Api::Chat, false);
        assert_eq!(without.deltas.len(), 2);
        assert!(!text_of(&without).contains("usage"));
        let with = text_of(&reply.stream(Api::Chat, true));
        assert!(with.contains("\"choices\":[],"), "{with}");
        assert!(with.contains("\"prompt_tokens\":10"), "{with}");
        assert!(with.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn responses_events_number_themselves_in_order() {
        let step = Step::reply("a b c", 5, 3, 1);
        let reply = Reply {
            id: 1,
            model: "m",
            step: &step,
        };
        let text = text_of(&reply.stream(Api::Responses, false));
        let numbers: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| {
                serde_json::from_str::<Value>(d).unwrap()["sequence_number"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
        assert!(text.contains("event: response.completed\n"));
        assert!(text.contains("\"cached_tokens\":1"));
    }

    #[test]
    fn gemini_streams_whole_responses_and_ends_with_the_call_and_final_usage() {
        let step = Step::call("let me", "write_file", json!({"path": "a"}), 9, 4);
        let reply = Reply {
            id: 3,
            model: "gem",
            step: &step,
        };
        let stream = reply.stream(Api::StreamGenerate, false);
        assert!(stream.head.is_empty());
        assert_eq!(stream.deltas.len(), 2);
        let text = text_of(&stream);
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        let last: Value =
            serde_json::from_str(text.trim_end().rsplit("data: ").next().unwrap()).unwrap();
        let candidate = &last["candidates"][0];
        assert_eq!(candidate["finishReason"], "STOP");
        assert_eq!(
            candidate["content"]["parts"][0]["functionCall"]["name"],
            "write_file"
        );
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 4);
        assert_eq!(last["usageMetadata"]["promptTokenCount"], 9);
        let chat = reply.body(Api::Chat);
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"path":"a"}"#
        );
        let messages = reply.body(Api::Messages);
        assert_eq!(messages["stop_reason"], "tool_use");
        assert_eq!(messages["content"][1]["input"]["path"], "a");
        let error = error_body_with(Api::Generate, 429, "slow down", None);
        assert_eq!(error["error"]["status"], "RESOURCE_EXHAUSTED");
    }
}
