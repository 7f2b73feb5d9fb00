//! OpenCode: `opencode run --format json`, the prompt on standard input, with a provider in
//! its own configuration that points at the gateway.
//!
//! OpenCode (the npm package `opencode-ai`, whose install step puts its native binary at
//! `bin/opencode.exe`) reaches models through configured providers, so every execution's HOME
//! gets `.config/opencode/opencode.json` defining the provider `agentgrid`: OpenAI-compatible
//! Chat Completions at the gateway (`OPENAI_BASE_URL`), the key read from `OPENAI_API_KEY` (the
//! execution's token; the file holds no secret), and the agent's alias as its one model.
//! Updates, sharing, the models.dev catalogue, external plugins (`--pure`) and the LLM call
//! that titles a session (`--title`) are off, and every tool is allowed: agentgrid's sandbox
//! is the confinement, and a permission prompt would wait for a person who is not there.
//!
//! The stream is one JSON object per line, each with the `sessionID` (which `--session`
//! takes): `step_start`, `text` (`part.text`, one whole text part), `tool_use` (`part.tool`,
//! `part.state` with `status` `completed` or `error`, `input`, `output`, `error` and `time`),
//! `step_finish` (`part.tokens` of that step, `part.reason`: `tool-calls` when another step
//! follows, `stop` when the run is done) and `error` (`error.name`, `error.data.message`).
//! Each step's tokens are its own.

use std::path::Path;

use domain::{AgentEvent, Timestamp};
use serde_json::Value;

use super::{Adapter, Invocation, Parser};

/// The OpenCode adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenCode;

/// The provider name agentgrid's configuration defines.
const PROVIDER: &str = "agentgrid";

impl Adapter for OpenCode {
    fn program(&self) -> &'static str {
        "opencode"
    }

    fn package(&self) -> &'static str {
        "opencode-ai"
    }

    fn args(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "--format",
            "json",
            // No plugins fetched from npm, no model call to title the session.
            "--pure",
            "--title",
            "agentgrid",
        ]
        .map(String::from)
        .to_vec();
        if let Some(model) = invocation.model {
            args.extend(["--model".into(), format!("{PROVIDER}/{model}")]);
        }
        if let Some(session) = invocation.resume {
            args.extend(["--session".into(), session.into()]);
        }
        args
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
            ("OPENCODE_DISABLE_SHARE", "1"),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
            ("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1"),
            // It would read Claude Code's files (CLAUDE.md, skills) as its own.
            ("OPENCODE_DISABLE_CLAUDE_CODE", "1"),
            ("OPENCODE_DISABLE_EXTERNAL_SKILLS", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    fn prompt_on_stdin(&self) -> bool {
        true
    }

    /// OpenCode's system-wide configuration would override the provider agentgrid writes for it.
    fn hidden_with(&self) -> Vec<std::path::PathBuf> {
        vec![std::path::PathBuf::from("/etc/opencode")]
    }

    fn parser(&self) -> Box<dyn Parser> {
        Box::new(RunJson::default())
    }

    fn prepare_home(
        &self,
        home: &Path,
        env: &[(String, String)],
        invocation: &Invocation<'_>,
    ) -> std::io::Result<Vec<(String, String)>> {
        let base_url = env
            .iter()
            .rev()
            .find(|(k, _)| k == "OPENAI_BASE_URL")
            .map_or("", |(_, v)| v.as_str());
        let file = super::write_home_file(
            home,
            ".config/opencode/opencode.json",
            config(base_url, invocation.model).as_bytes(),
        )?;
        Ok(vec![
            ("OPENCODE_CONFIG".into(), file.display().to_string()),
            // Its state and caches: the execution's HOME, whatever the engine's XDG dirs.
            (
                "XDG_CONFIG_HOME".into(),
                home.join(".config").display().to_string(),
            ),
            (
                "XDG_DATA_HOME".into(),
                home.join(".local/share").display().to_string(),
            ),
            (
                "XDG_CACHE_HOME".into(),
                home.join(".cache").display().to_string(),
            ),
            (
                "XDG_STATE_HOME".into(),
                home.join(".local/state").display().to_string(),
            ),
        ])
    }
}

/// The `opencode.json` of one execution: the gateway as the provider, the alias its model.
fn config(base_url: &str, model: Option<&str>) -> String {
    let mut models = serde_json::Map::new();
    if let Some(model) = model {
        models.insert(model.to_string(), serde_json::json!({"name": model}));
    }
    let mut config = serde_json::json!({
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": false,
        "share": "disabled",
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "agentgrid gateway",
                "options": {"baseURL": base_url, "apiKey": "{env:OPENAI_API_KEY}"},
                "models": models,
            }
        },
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "allow"},
    });
    if let Some(model) = model {
        config["model"] = Value::String(format!("{PROVIDER}/{model}"));
    }
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads `opencode run --format json`.
#[derive(Debug, Default)]
struct RunJson {
    /// The session last reported: said once, when it first appears or changes.
    session: Option<String>,
    /// The last text part, which is the run's final word when it stops.
    last_text: Option<String>,
}

impl Parser for RunJson {
    fn line(&mut self, line: &str, _at: Timestamp) -> Vec<AgentEvent> {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line.trim()) else {
            return Vec::new();
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let mut events = Vec::new();
        let session = text(event.get("sessionID"));
        if !session.is_empty() && self.session.as_deref() != Some(&session) {
            self.session = Some(session.clone());
            events.push(AgentEvent::Session { id: session });
        }
        let part = event.get("part");
        let field = |name: &str| part.and_then(|p| p.get(name));
        match event.get("type").and_then(Value::as_str) {
            Some("text") => {
                let said = text(field("text"));
                if !said.is_empty() {
                    self.last_text = Some(said.clone());
                    events.push(AgentEvent::Message { text: said });
                }
            }
            Some("tool_use") => {
                let state = field("state");
                let of = |name: &str| state.and_then(|s| s.get(name));
                let status = text(of("status"));
                let failed = status != "completed";
                let result = if failed {
                    let error = text(of("error"));
                    if error.is_empty() { status } else { error }
                } else {
                    text(of("output"))
                };
                let time =
                    |name: &str| of("time").and_then(|t| t.get(name)).and_then(Value::as_i64);
                let duration_ms = time("end")
                    .zip(time("start"))
                    .and_then(|(end, start)| u64::try_from(end - start).ok());
                events.push(AgentEvent::ToolCall {
                    name: text(field("tool")),
                    arguments: of("input").map(Value::to_string).unwrap_or_default(),
                    result,
                    failed,
                    duration_ms,
                });
            }
            Some("step_finish") => {
                if let Some(tokens) = field("tokens") {
                    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
                    let cache = tokens.get("cache");
                    let read = count(cache.and_then(|c| c.get("read")));
                    let written = count(cache.and_then(|c| c.get("write")));
                    // The AI SDK counts cache reads and writes apart from `input`; agentgrid's
                    // input counts every input token.
                    events.push(AgentEvent::Usage {
                        input_tokens: count(tokens.get("input"))
                            .saturating_add(read)
                            .saturating_add(written),
                        output_tokens: count(tokens.get("output"))
                            .saturating_add(count(tokens.get("reasoning"))),
                        cached_tokens: read,
                    });
                }
                // A step that ends for tool calls is followed by another; any other reason
                // ends the run. Only `stop` says plainly it succeeded.
                let reason = text(field("reason"));
                if reason != "tool-calls" {
                    let is_error = reason != "stop";
                    events.push(AgentEvent::Result {
                        text: if is_error {
                            format!("the run ended with `{reason}`")
                        } else {
                            self.last_text.take().unwrap_or_default()
                        },
                        is_error,
                    });
                }
            }
            Some("error") => {
                let error = event.get("error");
                let mut message = text(
                    error
                        .and_then(|e| e.get("data"))
                        .and_then(|d| d.get("message")),
                );
                if message.is_empty() {
                    message = text(error.and_then(|e| e.get("name")));
                }
                if message.is_empty() {
                    message = "OpenCode reported an error".into();
                }
                events.push(AgentEvent::Error { message });
            }
            _ => {}
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Vec<AgentEvent> {
        let mut parser = OpenCode.parser();
        lines
            .iter()
            .enumerate()
            .flat_map(|(i, l)| parser.line(l, Timestamp(1_000 + 10 * i as i64)))
            .collect()
    }

    // Lines as OpenCode 1.18.33 printed them against the scripted model server, cut to the
    // fields the parser reads.
    const START: &str = r#"{"type":"step_start","timestamp":1796280426300,"sessionID":"ses_dc55","part":{"id":"prt_1","messageID":"msg_1","sessionID":"ses_dc55","snapshot":"4b82","type":"step-start"}}"#;
    const SAYS: &str = r#"{"type":"text","timestamp":1796280426300,"sessionID":"ses_dc55","part":{"id":"prt_2","type":"text","text":"I will write the file.","time":{"start":1796280425989,"end":1796280426233}}}"#;
    const WROTE: &str = r#"{"type":"tool_use","timestamp":1796280426508,"sessionID":"ses_dc55","part":{"type":"tool","tool":"write","callID":"call_fixture_1","state":{"status":"completed","input":{"content":"hello from opencode\n","filePath":"/w/hello.txt"},"output":"Wrote file successfully.","title":"hello.txt","time":{"start":1796280426191,"end":1796280426440}}}}"#;
    const STEP: &str = r#"{"type":"step_finish","timestamp":1796280427176,"sessionID":"ses_dc55","part":{"reason":"tool-calls","type":"step-finish","tokens":{"total":140,"input":120,"output":20,"reasoning":0,"cache":{"write":0,"read":0}},"cost":0}}"#;
    const DONE_TEXT: &str = r#"{"type":"text","timestamp":1796280428309,"sessionID":"ses_dc55","part":{"type":"text","text":"Done: wrote hello.txt."}}"#;
    const STOP: &str = r#"{"type":"step_finish","timestamp":1796280430827,"sessionID":"ses_dc55","part":{"reason":"stop","type":"step-finish","tokens":{"total":170,"input":160,"output":10,"reasoning":0,"cache":{"write":0,"read":0}},"cost":0}}"#;

    #[test]
    fn a_run_becomes_session_messages_tool_call_usage_per_step_and_result() {
        let events = read(&[START, SAYS, WROTE, STEP, START, DONE_TEXT, STOP]);
        let usage = |input_tokens, output_tokens| AgentEvent::Usage {
            input_tokens,
            output_tokens,
            cached_tokens: 0,
        };
        assert_eq!(
            events,
            vec![
                AgentEvent::Session {
                    id: "ses_dc55".into()
                },
                AgentEvent::Message {
                    text: "I will write the file.".into()
                },
                AgentEvent::ToolCall {
                    name: "write".into(),
                    arguments: r#"{"content":"hello from opencode\n","filePath":"/w/hello.txt"}"#
                        .into(),
                    result: "Wrote file successfully.".into(),
                    failed: false,
                    duration_ms: Some(249),
                },
                usage(120, 20),
                AgentEvent::Message {
                    text: "Done: wrote hello.txt.".into()
                },
                usage(160, 10),
                AgentEvent::Result {
                    text: "Done: wrote hello.txt.".into(),
                    is_error: false
                },
            ]
        );
    }

    #[test]
    fn an_error_and_a_failed_tool_are_failures_and_a_step_that_did_not_stop_is_one_too() {
        let events = read(&[
            r#"{"type":"tool_use","sessionID":"s","part":{"tool":"bash","state":{"status":"error","input":{"command":"false"},"error":"exit 1"}}}"#,
            r#"{"type":"error","sessionID":"s","error":{"name":"APIError","data":{"message":"Unauthorized: scripted invalid key","statusCode":401}}}"#,
            r#"{"type":"step_finish","sessionID":"s","part":{"reason":"length","tokens":{"input":5,"output":1,"reasoning":2,"cache":{"read":3,"write":1}}}}"#,
        ]);
        assert_eq!(
            events,
            vec![
                AgentEvent::Session { id: "s".into() },
                AgentEvent::ToolCall {
                    name: "bash".into(),
                    arguments: r#"{"command":"false"}"#.into(),
                    result: "exit 1".into(),
                    failed: true,
                    duration_ms: None,
                },
                AgentEvent::Error {
                    message: "Unauthorized: scripted invalid key".into()
                },
                AgentEvent::Usage {
                    input_tokens: 9,
                    output_tokens: 3,
                    cached_tokens: 3
                },
                AgentEvent::Result {
                    text: "the run ended with `length`".into(),
                    is_error: true
                },
            ]
        );
    }

    #[test]
    fn anything_else_is_ignored() {
        let events = read(&[
            "not json",
            "[1]",
            r#"{"type":"text","part":{"text":""}}"#,
            r#"{"type":"reasoning","part":{"text":"hmm"}}"#,
        ]);
        assert_eq!(events, vec![]);
    }

    #[test]
    fn the_arguments_ask_for_the_alias_of_the_gateway_provider_and_resume_the_session() {
        let args = OpenCode.args(&Invocation {
            model: Some("fast"),
            resume: Some("ses_1"),
            home: None,
            prompt_file: None,
        });
        assert_eq!(
            args.join(" "),
            "run --format json --pure --title agentgrid --model agentgrid/fast --session ses_1"
        );
    }

    #[test]
    fn the_home_gets_a_provider_for_the_gateway_and_no_secret() {
        let home = tempfile::tempdir().unwrap();
        let env = vec![
            (
                "OPENAI_BASE_URL".to_string(),
                "http://127.0.0.1:4100/v1".to_string(),
            ),
            (
                "OPENAI_API_KEY".to_string(),
                "execution-token-1".to_string(),
            ),
        ];
        let invocation = Invocation {
            model: Some("fast"),
            ..Invocation::default()
        };
        let extra = OpenCode
            .prepare_home(home.path(), &env, &invocation)
            .unwrap();
        let file = home.path().join(".config/opencode/opencode.json");
        assert!(extra.contains(&("OPENCODE_CONFIG".into(), file.display().to_string())));
        let text = std::fs::read_to_string(&file).unwrap();
        let config: Value = serde_json::from_str(&text).unwrap();
        let provider = &config["provider"]["agentgrid"];
        assert_eq!(provider["npm"], "@ai-sdk/openai-compatible");
        assert_eq!(provider["options"]["baseURL"], "http://127.0.0.1:4100/v1");
        assert_eq!(provider["options"]["apiKey"], "{env:OPENAI_API_KEY}");
        assert!(provider["models"]["fast"].is_object(), "{config}");
        assert_eq!(config["model"], "agentgrid/fast");
        assert_eq!(config["autoupdate"], false);
        assert!(!text.contains("execution-token-1"), "{text}");
    }
}
