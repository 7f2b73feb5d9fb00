//! Claude Code: `claude -p` with `--output-format stream-json --verbose`.
//!
//! The stream is one JSON object per line: `system` (`init` carries the session id), `assistant`
//! (a message whose content blocks are `text` and `tool_use`; an API failure comes as an
//! assistant message marked `is_api_error_message` with an `error` code), `user` (the
//! `tool_result` blocks answering the tool calls) and, last, `result` (`is_error`, `result`,
//! `usage`, `session_id`).

use std::collections::HashMap;

use domain::{AgentEvent, Timestamp};
use serde_json::Value;

use super::{Adapter, Invocation, Parser};

/// The Claude Code adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claude;

impl Adapter for Claude {
    fn program(&self) -> &'static str {
        "claude"
    }

    fn package(&self) -> &'static str {
        "@anthropic-ai/claude-code"
    }

    fn args(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let mut args: Vec<String> = [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            // agentgrid's sandbox is the confinement; Claude Code's prompts would wait forever
            // for a person who is not there.
            "--permission-mode",
            "bypassPermissions",
        ]
        .map(String::from)
        .to_vec();
        if let Some(model) = invocation.model {
            // Without it Claude Code asks for its own default model, which no alias names.
            args.extend(["--model".into(), model.into()]);
        }
        if let Some(session) = invocation.resume {
            args.extend(["--resume".into(), session.into()]);
        }
        args
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            // Bypassing permissions is refused as root unless the CLI is told it is sandboxed,
            // which it is (agentgrid's sandbox, or the owner's explicit choice to run without).
            ("IS_SANDBOX", "1"),
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            // The gateway already waits out rate limits and overloads; Claude Code's own ten
            // retries with backoff would hide a refusal (a bad key, a budget) for minutes.
            ("CLAUDE_CODE_MAX_RETRIES", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    fn prompt_on_stdin(&self) -> bool {
        true
    }

    /// Claude Code's managed settings (`managed-settings.json`, `managed-mcp.json`) can set environment
    /// variables, an API key helper and MCP servers for interactive use on this host: none of it
    /// may reach an agent, which runs on the settings agentgrid writes.
    fn hidden_with(&self) -> Vec<std::path::PathBuf> {
        vec![std::path::PathBuf::from("/etc/claude-code")]
    }

    fn parser(&self) -> Box<dyn Parser> {
        Box::new(StreamJson::default())
    }
}

/// Reads Claude Code's `stream-json`.
#[derive(Debug, Default)]
struct StreamJson {
    /// Tool calls waiting for their result: id → (name, arguments, when the call was read).
    pending: HashMap<String, (String, String, Timestamp)>,
}

/// A bound on tool calls waiting for a result, so a stream of calls that never get one
/// cannot grow the map without end.
const MAX_PENDING: usize = 256;

impl Parser for StreamJson {
    fn line(&mut self, line: &str, at: Timestamp) -> Vec<AgentEvent> {
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(line.trim()) else {
            return Vec::new();
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let mut events = Vec::new();
        match message.get("type").and_then(Value::as_str) {
            Some("system") => {
                if message.get("subtype").and_then(Value::as_str) == Some("init")
                    && let Some(id) = message.get("session_id").and_then(Value::as_str)
                {
                    events.push(AgentEvent::Session { id: id.into() });
                }
            }
            Some("assistant") => {
                let api_error = message.get("is_api_error_message").and_then(Value::as_bool)
                    == Some(true)
                    || message.get("error").is_some_and(|e| !e.is_null());
                for block in content(&message) {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") if api_error => events.push(AgentEvent::Error {
                            message: text(block.get("text")),
                        }),
                        Some("text") => events.push(AgentEvent::Message {
                            text: text(block.get("text")),
                        }),
                        Some("tool_use") if self.pending.len() < MAX_PENDING => {
                            let id = text(block.get("id"));
                            let name = text(block.get("name"));
                            let arguments =
                                block.get("input").map(Value::to_string).unwrap_or_default();
                            self.pending.insert(id, (name, arguments, at));
                        }
                        _ => {}
                    }
                }
            }
            Some("user") => {
                for block in content(&message) {
                    if block.get("type").and_then(Value::as_str) != Some("tool_result") {
                        continue;
                    }
                    let id = text(block.get("tool_use_id"));
                    let (name, arguments, started) = self
                        .pending
                        .remove(&id)
                        .unwrap_or_else(|| ("unknown".into(), String::new(), at));
                    events.push(AgentEvent::ToolCall {
                        name,
                        arguments,
                        result: result_text(block.get("content")),
                        failed: block.get("is_error").and_then(Value::as_bool) == Some(true),
                        duration_ms: u64::try_from(at.0 - started.0).ok(),
                    });
                }
            }
            Some("result") => {
                if let Some(usage) = message.get("usage") {
                    let count = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
                    let cached = count("cache_read_input_tokens");
                    // Anthropic counts cache reads and writes apart from `input_tokens`;
                    // agentgrid's input counts every input token.
                    events.push(AgentEvent::Usage {
                        input_tokens: count("input_tokens")
                            .saturating_add(cached)
                            .saturating_add(count("cache_creation_input_tokens")),
                        output_tokens: count("output_tokens"),
                        cached_tokens: cached,
                    });
                }
                let subtype = text(message.get("subtype"));
                // Fail closed: only a result that says plainly it succeeded is a success.
                let is_error = message.get("is_error").and_then(Value::as_bool) != Some(false)
                    || subtype != "success";
                let mut said = text(message.get("result"));
                if said.is_empty() {
                    said = subtype;
                }
                events.push(AgentEvent::Result {
                    text: said,
                    is_error,
                });
            }
            _ => {}
        }
        events
    }
}

/// The content blocks of a message line: `message.content` when it is a list.
fn content(line: &serde_json::Map<String, Value>) -> &[Value] {
    line.get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A tool result's content: a string, or a list of blocks whose texts are joined.
fn result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Vec<AgentEvent> {
        let mut parser = Claude.parser();
        lines
            .iter()
            .enumerate()
            .flat_map(|(i, l)| parser.line(l, Timestamp(1_000 + 10 * i as i64)))
            .collect()
    }

    // Lines as Claude Code 2.1.328 printed them against the scripted model server, cut to the
    // fields the parser reads.
    const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"43f0b3f7","tools":["Bash","Write"],"model":"claude","permissionMode":"bypassPermissions"}"#;
    const SAYS: &str = r#"{"type":"assistant","message":{"content":[{"text":"I will write the file.","type":"text"}],"id":"msg_1","role":"assistant"},"session_id":"43f0b3f7"}"#;
    const CALLS: &str = r#"{"type":"assistant","message":{"content":[{"id":"toolu_1","input":{"file_path":"/w/hello.txt","content":"hello\n"},"name":"Write","type":"tool_use"}]},"session_id":"43f0b3f7"}"#;
    const RESULT_OF_CALL: &str = r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":"File created successfully at: /w/hello.txt"}]},"session_id":"43f0b3f7"}"#;
    const DONE: &str = r#"{"session_id":"43f0b3f7","total_cost_usd":0.0016,"usage":{"input_tokens":250,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":30},"is_error":false,"num_turns":2,"subtype":"success","result":"Done: wrote hello.txt.","type":"result"}"#;
    const API_ERROR: &str = r#"{"type":"assistant","message":{"model":"<synthetic>","role":"assistant","content":[{"type":"text","text":"Failed to authenticate. API Error: 401 scripted invalid key"}]},"session_id":"e3b0","error":"authentication_failed","is_api_error_message":true,"api_error_status":401}"#;
    const FAILED: &str = r#"{"session_id":"e3b0","usage":{"input_tokens":0,"output_tokens":0},"is_error":true,"num_turns":1,"subtype":"success","api_error_status":401,"result":"Failed to authenticate. API Error: 401 scripted invalid key","type":"result"}"#;

    #[test]
    fn a_run_becomes_session_message_tool_call_usage_and_result() {
        let events = read(&[INIT, SAYS, CALLS, RESULT_OF_CALL, DONE]);
        assert_eq!(
            events,
            vec![
                AgentEvent::Session {
                    id: "43f0b3f7".into()
                },
                AgentEvent::Message {
                    text: "I will write the file.".into()
                },
                AgentEvent::ToolCall {
                    name: "Write".into(),
                    arguments: r#"{"content":"hello\n","file_path":"/w/hello.txt"}"#.into(),
                    result: "File created successfully at: /w/hello.txt".into(),
                    failed: false,
                    duration_ms: Some(10),
                },
                AgentEvent::Usage {
                    input_tokens: 250,
                    output_tokens: 30,
                    cached_tokens: 0
                },
                AgentEvent::Result {
                    text: "Done: wrote hello.txt.".into(),
                    is_error: false
                },
            ]
        );
    }

    #[test]
    fn an_api_error_is_an_error_and_the_result_says_it_failed() {
        let events = read(&[API_ERROR, FAILED]);
        assert!(matches!(&events[0], AgentEvent::Error { message } if message.contains("401")));
        assert!(
            events
                .iter()
                .any(|e| e.failure().is_some_and(|m| m.contains("401")))
        );
        assert!(matches!(
            events.last(),
            Some(AgentEvent::Result { is_error: true, .. })
        ));
    }

    #[test]
    fn a_result_of_another_subtype_is_a_failure_even_without_is_error() {
        let events = read(&[r#"{"type":"result","subtype":"error_max_turns"}"#]);
        assert_eq!(
            events,
            vec![AgentEvent::Result {
                text: "error_max_turns".into(),
                is_error: true
            }]
        );
    }

    #[test]
    fn anything_else_is_ignored() {
        let lines = [
            "not json",
            "[1,2]",
            r#"{"type":"assistant","message":{"content":"a string"}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result"}]}}"#,
            r#"{"type":"result","usage":{"input_tokens":-5,"output_tokens":"many"},"is_error":"yes"}"#,
        ];
        let events = read(&lines);
        // A result for an unknown call, a result with unreadable counts: read as far as they
        // make sense, and a result that does not say plainly it succeeded is a failure.
        assert!(
            matches!(
                events.last(),
                Some(AgentEvent::Result { is_error: true, .. })
            ),
            "{events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, AgentEvent::Message { .. }))
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, AgentEvent::ToolCall { name, .. } if name == "unknown"))
        );
    }

    #[test]
    fn the_arguments_ask_for_the_model_and_resume_the_session() {
        let args = Claude.args(&Invocation {
            model: Some("fast"),
            resume: Some("s-1"),
            home: None,
            prompt_file: None,
        });
        let joined = args.join(" ");
        assert!(
            joined.starts_with("-p --output-format stream-json --verbose"),
            "{joined}"
        );
        assert!(joined.contains("--permission-mode bypassPermissions"));
        assert!(joined.contains("--model fast"));
        assert!(joined.ends_with("--resume s-1"));
    }
}
