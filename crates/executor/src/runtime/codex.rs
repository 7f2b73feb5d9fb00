//! Codex: `codex exec --json`, with a provider in its own `config.toml` that points at the
//! gateway.
//!
//! Codex reaches models only through a configured provider, so every execution's HOME gets a
//! `.codex/config.toml` naming the gateway's Responses endpoint (Codex speaks no other wire
//! format) with the execution token read from `OPENAI_API_KEY`: the file holds no secret.
//! Codex's own retries are off, because the gateway already waits out rate limits and an
//! endless retry loop would hide a refusal from the stall timeout.
//!
//! The stream is one JSON object per line: `thread.started` (the thread id, which `codex exec
//! resume` takes), `turn.started`, `item.started` / `item.updated` / `item.completed` (an item
//! is an `agent_message`, a `command_execution` with its output and exit code, a `file_change`,
//! an `mcp_tool_call`, a `web_search`, or an `error` that Codex itself treats as a warning),
//! then `turn.completed` with the usage or `turn.failed` with the error; a top-level `error`
//! is a failure too. The usage of `turn.completed` is the thread's running total (Codex 0.169
//! counts the turns of a resumed thread again), so the sink turns it into increments.

use std::collections::HashMap;
use std::path::Path;

use domain::{AgentEvent, Timestamp};
use serde_json::Value;

use super::{Adapter, Invocation, Parser};

/// The Codex adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Codex;

/// The provider name agentgrid's `config.toml` defines.
const PROVIDER: &str = "agentgrid";

impl Adapter for Codex {
    fn program(&self) -> &'static str {
        "codex"
    }

    fn package(&self) -> &'static str {
        "@openai/codex"
    }

    fn args(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let mut args: Vec<String> = [
            "exec",
            "--json",
            // agentgrid's sandbox is the confinement; Codex's own would need namespaces the
            // sandbox does not grant, and its approvals would wait for a person who is not there.
            "--dangerously-bypass-approvals-and-sandbox",
            // The worktree is a git repository, but a `command` checkout may not be.
            "--skip-git-repo-check",
            "--color",
            "never",
        ]
        .map(String::from)
        .to_vec();
        if let Some(model) = invocation.model {
            args.extend(["--model".into(), model.into()]);
        }
        if let Some(session) = invocation.resume {
            args.extend(["resume".into(), session.into()]);
        }
        // `-` reads the prompt from standard input.
        args.push("-".into());
        args
    }

    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn prompt_on_stdin(&self) -> bool {
        true
    }

    /// Codex's system `config.toml`, `managed_config.toml` and `requirements.toml` would override
    /// the provider and sandbox settings agentgrid gives it, and may name credentials of this host.
    fn hidden_with(&self) -> Vec<std::path::PathBuf> {
        vec![std::path::PathBuf::from("/etc/codex")]
    }

    fn parser(&self) -> Box<dyn Parser> {
        Box::new(ExecJson::default())
    }

    fn usage_is_running_total(&self) -> bool {
        true
    }

    /// `@openai/codex` installs a node script that execs the binary of its platform package;
    /// the sandbox runs that binary directly.
    fn native_program(&self, program: &Path) -> Result<Option<std::path::PathBuf>, String> {
        super::npm::codex_native(program)
    }

    fn prepare_home(
        &self,
        home: &Path,
        env: &[(String, String)],
        _invocation: &Invocation<'_>,
    ) -> std::io::Result<Vec<(String, String)>> {
        let codex_home = home.join(".codex");
        let base_url = env
            .iter()
            .rev()
            .find(|(k, _)| k == "OPENAI_BASE_URL")
            .map(|(_, v)| v.as_str());
        super::write_home_file(home, ".codex/config.toml", config_toml(base_url).as_bytes())?;
        Ok(vec![(
            "CODEX_HOME".to_string(),
            codex_home.display().to_string(),
        )])
    }
}

/// The `config.toml` of one execution: the gateway as the only provider, no telemetry, no
/// update checks, no retries of Codex's own. Without a gateway (no `models:`) the provider
/// has no address and Codex says so.
fn config_toml(base_url: Option<&str>) -> String {
    let base_url = base_url.unwrap_or("");
    // A TOML basic string: the URL is agentgrid's, but quoting it properly costs nothing.
    let quoted = serde_json::Value::String(base_url.to_string()).to_string();
    format!(
        "# Written by agentgrid for one execution; removed with it.\n\
         model_provider = \"{PROVIDER}\"\n\
         check_for_update_on_startup = false\n\
         \n\
         [analytics]\n\
         enabled = false\n\
         \n\
         [feedback]\n\
         enabled = false\n\
         \n\
         [otel]\n\
         exporter = \"none\"\n\
         log_user_prompt = false\n\
         \n\
         [model_providers.{PROVIDER}]\n\
         name = \"agentgrid gateway\"\n\
         base_url = {quoted}\n\
         env_key = \"OPENAI_API_KEY\"\n\
         wire_api = \"responses\"\n\
         request_max_retries = 0\n\
         stream_max_retries = 0\n"
    )
}

/// Reads `codex exec --json`.
#[derive(Debug, Default)]
struct ExecJson {
    /// Items started and not yet completed: id → when the start was read.
    started: HashMap<String, Timestamp>,
    /// The last agent message, which is the turn's final word when it completes.
    last_message: Option<String>,
}

/// A bound on items waiting for their completion.
const MAX_STARTED: usize = 256;

impl Parser for ExecJson {
    fn line(&mut self, line: &str, at: Timestamp) -> Vec<AgentEvent> {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line.trim()) else {
            return Vec::new();
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let mut events = Vec::new();
        match event.get("type").and_then(Value::as_str) {
            Some("thread.started") => {
                let id = text(event.get("thread_id"));
                if !id.is_empty() {
                    events.push(AgentEvent::Session { id });
                }
            }
            Some("item.started") => {
                if let Some(id) = event
                    .get("item")
                    .and_then(|i| i.get("id"))
                    .and_then(Value::as_str)
                    && self.started.len() < MAX_STARTED
                {
                    self.started.insert(id.to_string(), at);
                }
            }
            Some("item.completed") => {
                if let Some(item) = event.get("item") {
                    events.extend(self.completed(item, at));
                }
            }
            Some("turn.completed") => {
                if let Some(usage) = event.get("usage") {
                    let count = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
                    events.push(AgentEvent::Usage {
                        input_tokens: count("input_tokens"),
                        output_tokens: count("output_tokens"),
                        cached_tokens: count("cached_input_tokens"),
                    });
                }
                events.push(AgentEvent::Result {
                    text: self.last_message.take().unwrap_or_default(),
                    is_error: false,
                });
            }
            Some("turn.failed") => {
                let mut message = text(event.get("error").and_then(|e| e.get("message")));
                if message.is_empty() {
                    message = "the turn failed".into();
                }
                events.push(AgentEvent::Result {
                    text: message,
                    is_error: true,
                });
            }
            Some("error") => {
                let mut message = text(event.get("message"));
                if message.is_empty() {
                    message = "Codex reported an error".into();
                }
                events.push(AgentEvent::Error { message });
            }
            _ => {}
        }
        events
    }
}

impl ExecJson {
    fn completed(&mut self, item: &Value, at: Timestamp) -> Option<AgentEvent> {
        let text = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let status = text("status");
        let started = item
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| self.started.remove(id));
        let duration_ms = started.and_then(|s| u64::try_from(at.0 - s.0).ok());
        let call = |name: String, arguments: String, result: String, failed: bool| {
            Some(AgentEvent::ToolCall {
                name,
                arguments,
                result,
                failed,
                duration_ms,
            })
        };
        match item.get("type").and_then(Value::as_str)? {
            "agent_message" => {
                let said = text("text");
                self.last_message = Some(said.clone());
                Some(AgentEvent::Message { text: said })
            }
            "command_execution" => {
                let exit = item.get("exit_code").and_then(Value::as_i64);
                call(
                    "command".into(),
                    text("command"),
                    text("aggregated_output"),
                    status != "completed" || exit != Some(0),
                )
            }
            "file_change" => {
                let changes: Vec<String> = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|c| {
                        let kind = c.get("kind").and_then(Value::as_str).unwrap_or("change");
                        let path = c.get("path").and_then(Value::as_str).unwrap_or("?");
                        format!("{kind} {path}")
                    })
                    .collect();
                call(
                    "file_change".into(),
                    changes.join(", "),
                    status.clone(),
                    status != "completed",
                )
            }
            "mcp_tool_call" => {
                let name = format!("{}/{}", text("server"), text("tool"));
                let arguments = item
                    .get("arguments")
                    .map(Value::to_string)
                    .unwrap_or_default();
                let error = item
                    .get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str);
                let result = match error {
                    Some(e) => e.to_string(),
                    None => item.get("result").map(Value::to_string).unwrap_or_default(),
                };
                call(
                    name,
                    arguments,
                    result,
                    status != "completed" || error.is_some(),
                )
            }
            "web_search" => call("web_search".into(), text("query"), String::new(), false),
            // Codex reports what it can carry on from (a model it has no metadata for, a
            // retry) as an error item; the failures come as `error` and `turn.failed` lines.
            "error" => Some(AgentEvent::Warning {
                message: text("message"),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Vec<AgentEvent> {
        let mut parser = Codex.parser();
        lines
            .iter()
            .enumerate()
            .flat_map(|(i, l)| parser.line(l, Timestamp(1_000 + 10 * i as i64)))
            .collect()
    }

    // Lines as Codex 0.169.0 printed them against a scripted Responses server.
    const STARTED: &str =
        r#"{"type":"thread.started","thread_id":"01a2383f-dbf0-79f3-ad3f-9c658003a3cf"}"#;
    const NO_METADATA: &str = r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `fast` not found. Defaulting to fallback metadata; this can degrade performance and cause issues."}}"#;
    const TURN: &str = r#"{"type":"turn.started"}"#;
    const RUNS: &str = r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc \"printf hi > hello.txt\"","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#;
    const RAN: &str = r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc \"printf hi > hello.txt\"","aggregated_output":"","exit_code":0,"status":"completed"}}"#;
    const SAYS: &str = r#"{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"Done: wrote hello.txt."}}"#;
    const DONE: &str = r#"{"type":"turn.completed","usage":{"input_tokens":200,"cached_input_tokens":50,"cache_write_input_tokens":0,"output_tokens":20,"reasoning_output_tokens":0}}"#;
    const API_ERROR: &str = r#"{"type":"error","message":"unexpected status 401 Unauthorized: scripted invalid key, url: http://127.0.0.1:4100/v1/responses"}"#;
    const FAILED: &str = r#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: scripted invalid key, url: http://127.0.0.1:4100/v1/responses"}}"#;

    #[test]
    fn a_run_becomes_session_warning_tool_call_message_usage_and_result() {
        let events = read(&[STARTED, NO_METADATA, TURN, RUNS, RAN, SAYS, DONE]);
        assert_eq!(
            events,
            vec![
                AgentEvent::Session {
                    id: "01a2383f-dbf0-79f3-ad3f-9c658003a3cf".into()
                },
                AgentEvent::Warning {
                    message: "Model metadata for `fast` not found. Defaulting to fallback \
                              metadata; this can degrade performance and cause issues."
                        .into()
                },
                AgentEvent::ToolCall {
                    name: "command".into(),
                    arguments: r#"/bin/bash -lc "printf hi > hello.txt""#.into(),
                    result: String::new(),
                    failed: false,
                    duration_ms: Some(10),
                },
                AgentEvent::Message {
                    text: "Done: wrote hello.txt.".into()
                },
                AgentEvent::Usage {
                    input_tokens: 200,
                    output_tokens: 20,
                    cached_tokens: 50
                },
                AgentEvent::Result {
                    text: "Done: wrote hello.txt.".into(),
                    is_error: false
                },
            ]
        );
        // A warning is not a failure: the run above did its work.
        assert!(events.iter().all(|e| e.failure().is_none()));
    }

    #[test]
    fn an_api_error_and_a_failed_turn_are_failures_with_the_reason() {
        let events = read(&[STARTED, TURN, API_ERROR, FAILED]);
        assert!(matches!(&events[1], AgentEvent::Error { message } if message.contains("401")));
        assert!(matches!(
            events.last(),
            Some(AgentEvent::Result { is_error: true, text }) if text.contains("scripted invalid key")
        ));
    }

    #[test]
    fn failed_commands_file_changes_and_mcp_calls_are_tool_calls() {
        let events = read(&[
            r#"{"type":"item.completed","item":{"id":"a","type":"command_execution","command":"false","aggregated_output":"no","exit_code":1,"status":"failed"}}"#,
            r#"{"type":"item.completed","item":{"id":"b","type":"file_change","changes":[{"path":"/w/a.txt","kind":"add"},{"path":"/w/b.txt","kind":"update"}],"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"c","type":"mcp_tool_call","server":"agentgrid","tool":"complete","arguments":{"summary":"x"},"result":null,"error":{"message":"refused"},"status":"failed"}}"#,
        ]);
        let calls: Vec<(String, String, bool)> = events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::ToolCall {
                    name,
                    arguments,
                    failed,
                    ..
                } => Some((name.clone(), arguments.clone(), *failed)),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            vec![
                ("command".into(), "false".into(), true),
                (
                    "file_change".into(),
                    "add /w/a.txt, update /w/b.txt".into(),
                    false
                ),
                (
                    "agentgrid/complete".into(),
                    r#"{"summary":"x"}"#.into(),
                    true
                ),
            ]
        );
    }

    #[test]
    fn anything_else_is_ignored() {
        let events = read(&[
            "not json",
            "[1]",
            r#"{"type":"item.completed"}"#,
            r#"{"type":"item.completed","item":{"type":"reasoning","text":"hmm"}}"#,
            r#"{"type":"item.started","item":{"id":7}}"#,
            r#"{"type":"thread.started","thread_id":""}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":-1,"output_tokens":"x"}}"#,
        ]);
        assert_eq!(
            events,
            vec![
                AgentEvent::Usage {
                    input_tokens: 0,
                    output_tokens: 0,
                    cached_tokens: 0
                },
                AgentEvent::Result {
                    text: String::new(),
                    is_error: false
                }
            ]
        );
    }

    #[test]
    fn the_arguments_ask_for_the_model_resume_the_thread_and_read_stdin() {
        let fresh = Codex.args(&Invocation {
            model: Some("fast"),
            resume: None,
            home: None,
            prompt_file: None,
        });
        let joined = fresh.join(" ");
        assert!(joined.starts_with("exec --json"), "{joined}");
        assert!(joined.contains("--dangerously-bypass-approvals-and-sandbox"));
        assert!(!joined.contains("--full-auto"));
        assert!(joined.contains("--model fast"), "{joined}");
        assert!(joined.ends_with(" -"), "{joined}");
        let resumed = Codex.args(&Invocation {
            model: Some("fast"),
            resume: Some("t-1"),
            home: None,
            prompt_file: None,
        });
        assert!(resumed.join(" ").ends_with("--model fast resume t-1 -"));
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
        let extra = Codex
            .prepare_home(home.path(), &env, &Invocation::default())
            .unwrap();
        let codex_home = home.path().join(".codex");
        assert_eq!(
            extra,
            vec![("CODEX_HOME".into(), codex_home.display().to_string())]
        );
        let config = std::fs::read_to_string(codex_home.join("config.toml")).unwrap();
        assert!(
            config.contains("model_provider = \"agentgrid\""),
            "{config}"
        );
        assert!(
            config.contains("base_url = \"http://127.0.0.1:4100/v1\""),
            "{config}"
        );
        assert!(config.contains("wire_api = \"responses\""), "{config}");
        assert!(config.contains("env_key = \"OPENAI_API_KEY\""), "{config}");
        assert!(config.contains("[analytics]\nenabled = false"), "{config}");
        assert!(config.contains("check_for_update_on_startup = false"));
        assert!(!config.contains("execution-token-1"), "{config}");
    }
}
