//! Gemini CLI: `gemini --output-format stream-json`, the prompt on standard input, pointed at
//! the gateway's Gemini endpoint.
//!
//! Gemini CLI 0.61 runs headless when its standard input is not a terminal, and takes that
//! input as the prompt. It reaches the Gemini API at `GOOGLE_GEMINI_BASE_URL` with the key of
//! `GEMINI_API_KEY` (the engine sets both to the gateway and the execution's token), once its
//! settings select the API-key method: every execution's HOME gets a `.gemini/settings.json`
//! that does, with usage statistics, telemetry, update checks and folder trust off and the
//! CLI's own retries off (the gateway already waits out rate limits; ten retries with backoff
//! would hide a refusal from the stall timeout). The host's system settings
//! (`/etc/gemini-cli/settings.json`) are replaced by an empty file of the execution's, and the
//! host's whole `/etc/gemini-cli` is hidden in the sandbox: Gemini CLI reads admin policies
//! from `/etc/gemini-cli/policies` (no variable moves that directory), which would override
//! every other setting, and the sandbox shows the host's `/etc` otherwise.
//!
//! The stream is one JSON object per line: `init` (the session id, which `--resume` takes),
//! `message` (the user's prompt, then the assistant's text in `delta` pieces), `tool_use`
//! (`tool_name`, `tool_id`, `parameters`), `tool_result` (`tool_id`, `status` `success` or
//! `error`, `output`, `error.message`), `error` (`severity` `warning` or `error`) and, last,
//! `result` (`status`, `error`, `stats` with the run's token counts). The stats count the run
//! alone: a resumed session does not report its earlier runs again.

use std::collections::HashMap;
use std::path::Path;

use domain::{AgentEvent, Timestamp};
use serde_json::Value;

use super::{Adapter, Invocation, Parser};

/// Where Gemini CLI 0.61 reads system settings and admin policies on Linux
/// (`Storage.getSystemConfigDir`).
const SYSTEM_CONFIG_DIR: &str = "/etc/gemini-cli";

/// The Gemini CLI adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

impl Adapter for Gemini {
    fn program(&self) -> &'static str {
        "gemini"
    }

    fn package(&self) -> &'static str {
        "@google/gemini-cli"
    }

    fn args(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let mut args: Vec<String> = [
            "--output-format",
            "stream-json",
            // agentgrid's sandbox is the confinement; Gemini CLI's approvals would wait for a
            // person who is not there.
            "--approval-mode",
            "yolo",
        ]
        .map(String::from)
        .to_vec();
        if let Some(model) = invocation.model {
            // Without it Gemini CLI asks for its own default model, which no alias names.
            args.extend(["--model".into(), model.into()]);
        }
        if let Some(session) = invocation.resume {
            args.extend(["--resume".into(), session.into()]);
        }
        args
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            // It would start itself again as a child node with a larger heap: one process is
            // enough, and its signals reach it directly.
            ("GEMINI_CLI_NO_RELAUNCH", "true"),
            // Its own container sandbox: agentgrid's is the one.
            ("GEMINI_SANDBOX", "false"),
            ("GEMINI_TELEMETRY_ENABLED", "false"),
            ("NO_COLOR", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    fn prompt_on_stdin(&self) -> bool {
        true
    }

    fn parser(&self) -> Box<dyn Parser> {
        Box::new(StreamJson::default())
    }

    fn prepare_home(
        &self,
        home: &Path,
        _env: &[(String, String)],
        _invocation: &Invocation<'_>,
    ) -> std::io::Result<Vec<(String, String)>> {
        super::write_home_file(home, ".gemini/settings.json", SETTINGS.as_bytes())?;
        let system = super::write_home_file(home, ".gemini/system-settings.json", b"{}\n")?;
        Ok(vec![
            // Where it keeps `.gemini` (settings, sessions, history): the execution's HOME,
            // whatever the engine's environment said.
            ("GEMINI_CLI_HOME".into(), home.display().to_string()),
            (
                "GEMINI_CLI_SYSTEM_SETTINGS_PATH".into(),
                system.display().to_string(),
            ),
            (
                "GEMINI_CLI_SYSTEM_DEFAULTS_PATH".into(),
                system.display().to_string(),
            ),
        ])
    }

    fn hidden_with(&self) -> Vec<std::path::PathBuf> {
        vec![std::path::PathBuf::from(SYSTEM_CONFIG_DIR)]
    }

    fn exit_meaning(&self, code: i32) -> Option<&'static str> {
        match code {
            41 => Some("Gemini CLI: authentication failed"),
            42 => Some("Gemini CLI: no prompt or a bad argument"),
            44 => Some("Gemini CLI: its sandbox failed"),
            52 => Some("Gemini CLI: its configuration is invalid"),
            53 => Some("Gemini CLI: the session's turn limit was reached"),
            54 => Some("Gemini CLI: a tool failed fatally"),
            55 => Some("Gemini CLI: the workspace is not trusted"),
            130 => Some("Gemini CLI: cancelled"),
            _ => None,
        }
    }
}

/// The user settings of one execution. No secret: the key is the execution's token, read
/// from `GEMINI_API_KEY`.
const SETTINGS: &str = r#"{
  "security": {
    "auth": {"selectedType": "gemini-api-key"},
    "folderTrust": {"enabled": false}
  },
  "general": {
    "enableAutoUpdate": false,
    "enableAutoUpdateNotification": false,
    "maxAttempts": 1
  },
  "privacy": {"usageStatisticsEnabled": false},
  "telemetry": {"enabled": false, "logPrompts": false}
}
"#;

/// Reads Gemini CLI's `stream-json`.
#[derive(Debug, Default)]
struct StreamJson {
    /// Tool calls waiting for their result: id → (name, arguments, when the call was read).
    pending: HashMap<String, (String, String, Timestamp)>,
    /// The assistant's text so far, sent in pieces; said as one message at the next event.
    text: String,
    /// The last assistant message, which is the run's final word when it ends.
    last_message: Option<String>,
}

/// A bound on tool calls waiting for a result.
const MAX_PENDING: usize = 256;

/// A bound on the assistant's text gathered before it is said (the event is cut further).
const MAX_TEXT: usize = 1 << 20;

impl StreamJson {
    /// The assistant's text gathered so far, as one message.
    fn said(&mut self, events: &mut Vec<AgentEvent>) {
        if self.text.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.text);
        self.last_message = Some(text.clone());
        events.push(AgentEvent::Message { text });
    }
}

impl Parser for StreamJson {
    fn line(&mut self, line: &str, at: Timestamp) -> Vec<AgentEvent> {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line.trim()) else {
            return Vec::new();
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let kind = event.get("type").and_then(Value::as_str);
        let mut events = Vec::new();
        if kind == Some("message") && event.get("role").and_then(Value::as_str) == Some("assistant")
        {
            let piece = text(event.get("content"));
            let delta = event.get("delta").and_then(Value::as_bool) == Some(true);
            if !delta {
                self.said(&mut events);
            }
            if self.text.len() < MAX_TEXT {
                self.text.push_str(&piece);
            }
            if !delta {
                self.said(&mut events);
            }
            return events;
        }
        self.said(&mut events);
        match kind {
            Some("init") => {
                let id = text(event.get("session_id"));
                if !id.is_empty() {
                    events.push(AgentEvent::Session { id });
                }
            }
            Some("tool_use") if self.pending.len() < MAX_PENDING => {
                let id = text(event.get("tool_id"));
                let name = text(event.get("tool_name"));
                let arguments = event
                    .get("parameters")
                    .map(Value::to_string)
                    .unwrap_or_default();
                self.pending.insert(id, (name, arguments, at));
            }
            Some("tool_result") => {
                let id = text(event.get("tool_id"));
                let (name, arguments, started) = self
                    .pending
                    .remove(&id)
                    .unwrap_or_else(|| ("unknown".into(), String::new(), at));
                let failed = event.get("status").and_then(Value::as_str) != Some("success");
                let error = text(event.get("error").and_then(|e| e.get("message")));
                let result = if failed && !error.is_empty() {
                    error
                } else {
                    text(event.get("output"))
                };
                events.push(AgentEvent::ToolCall {
                    name,
                    arguments,
                    result,
                    failed,
                    duration_ms: u64::try_from(at.0 - started.0).ok(),
                });
            }
            Some("error") => {
                let mut message = text(event.get("message"));
                if event.get("severity").and_then(Value::as_str) == Some("warning") {
                    events.push(AgentEvent::Warning { message });
                } else {
                    if message.is_empty() {
                        message = "Gemini CLI reported an error".into();
                    }
                    events.push(AgentEvent::Error { message });
                }
            }
            Some("result") => {
                if let Some(stats) = event.get("stats") {
                    let count = |name: &str| stats.get(name).and_then(Value::as_u64).unwrap_or(0);
                    // `input_tokens` counts every input token, `cached` the part of it read
                    // from the cache: agentgrid's own convention.
                    events.push(AgentEvent::Usage {
                        input_tokens: count("input_tokens"),
                        output_tokens: count("output_tokens"),
                        cached_tokens: count("cached"),
                    });
                }
                // Fail closed: only a result that says plainly it succeeded is a success.
                let is_error = event.get("status").and_then(Value::as_str) != Some("success");
                let said = if is_error {
                    let mut why = text(event.get("error").and_then(|e| e.get("message")));
                    if why.is_empty() {
                        why = "Gemini CLI ended with an error".into();
                    }
                    why
                } else {
                    self.last_message.take().unwrap_or_default()
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Vec<AgentEvent> {
        let mut parser = Gemini.parser();
        lines
            .iter()
            .enumerate()
            .flat_map(|(i, l)| parser.line(l, Timestamp(1_000 + 10 * i as i64)))
            .collect()
    }

    // Lines as Gemini CLI 0.61.0 printed them against the scripted model server.
    const INIT: &str = r#"{"type":"init","timestamp":"2026-12-03T06:21:41.728Z","session_id":"c0579bea-a1d6-494e-b533-c5a5cabafe6b","model":"fx-gem"}"#;
    const PROMPT: &str = r#"{"type":"message","timestamp":"2026-12-03T06:21:41.737Z","role":"user","content":"Write hello.txt\n"}"#;
    const SAYS_1: &str = r#"{"type":"message","timestamp":"2026-12-03T06:21:41.827Z","role":"assistant","content":"I will ","delta":true}"#;
    const SAYS_2: &str = r#"{"type":"message","timestamp":"2026-12-03T06:21:41.834Z","role":"assistant","content":"write the file.","delta":true}"#;
    const CALLS: &str = r#"{"type":"tool_use","timestamp":"2026-12-03T06:21:41.931Z","tool_name":"write_file","tool_id":"write_file__write_file_1796278901834_0","parameters":{"content":"hello from gemini\n","file_path":"hello.txt"}}"#;
    const CALLED: &str = r#"{"type":"tool_result","timestamp":"2026-12-03T06:21:42.175Z","tool_id":"write_file__write_file_1796278901834_0","status":"success"}"#;
    const DONE_1: &str = r#"{"type":"message","timestamp":"2026-12-03T06:21:42.211Z","role":"assistant","content":"Done: ","delta":true}"#;
    const DONE_2: &str = r#"{"type":"message","timestamp":"2026-12-03T06:21:42.213Z","role":"assistant","content":"wrote hello.txt.","delta":true}"#;
    const RESULT: &str = r#"{"type":"result","timestamp":"2026-12-03T06:21:42.246Z","status":"success","stats":{"total_tokens":310,"input_tokens":280,"output_tokens":30,"cached":0,"input":280,"duration_ms":518,"tool_calls":1,"models":{"fx-gem":{"total_tokens":310,"input_tokens":280,"output_tokens":30,"cached":0,"input":280}}}}"#;
    const API_ERROR: &str = r#"{"type":"result","timestamp":"2026-12-03T06:22:06.519Z","status":"error","error":{"type":"unknown","message":"[API Error: {\"error\":{\"code\":401,\"message\":\"scripted invalid key\",\"status\":\"UNAUTHENTICATED\"}}]"},"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,"duration_ms":0,"tool_calls":0,"models":{}}}"#;

    #[test]
    fn a_run_becomes_session_messages_tool_call_usage_and_result() {
        let events = read(&[
            INIT, PROMPT, SAYS_1, SAYS_2, CALLS, CALLED, DONE_1, DONE_2, RESULT,
        ]);
        assert_eq!(
            events,
            vec![
                AgentEvent::Session {
                    id: "c0579bea-a1d6-494e-b533-c5a5cabafe6b".into()
                },
                AgentEvent::Message {
                    text: "I will write the file.".into()
                },
                AgentEvent::ToolCall {
                    name: "write_file".into(),
                    arguments: r#"{"content":"hello from gemini\n","file_path":"hello.txt"}"#
                        .into(),
                    result: String::new(),
                    failed: false,
                    duration_ms: Some(10),
                },
                AgentEvent::Message {
                    text: "Done: wrote hello.txt.".into()
                },
                AgentEvent::Usage {
                    input_tokens: 280,
                    output_tokens: 30,
                    cached_tokens: 0
                },
                AgentEvent::Result {
                    text: "Done: wrote hello.txt.".into(),
                    is_error: false
                },
            ]
        );
        assert!(events.iter().all(|e| e.failure().is_none()));
    }

    #[test]
    fn an_api_error_is_a_failed_result_with_the_reason() {
        let events = read(&[INIT, PROMPT, API_ERROR]);
        assert!(matches!(
            events.last(),
            Some(AgentEvent::Result { is_error: true, text }) if text.contains("scripted invalid key")
        ));
        assert!(
            events
                .iter()
                .any(|e| e.failure().is_some_and(|m| m.contains("401")))
        );
    }

    #[test]
    fn warnings_errors_and_failed_tools_are_told_apart() {
        let events = read(&[
            r#"{"type":"tool_use","tool_name":"run_shell_command","tool_id":"t1","parameters":{"command":"false"}}"#,
            r#"{"type":"tool_result","tool_id":"t1","status":"error","output":"","error":{"type":"shell","message":"exit 1"}}"#,
            r#"{"type":"error","severity":"warning","message":"Loop detected, stopping"}"#,
            r#"{"type":"error","severity":"error","message":"quota exhausted"}"#,
        ]);
        assert_eq!(
            events,
            vec![
                AgentEvent::ToolCall {
                    name: "run_shell_command".into(),
                    arguments: r#"{"command":"false"}"#.into(),
                    result: "exit 1".into(),
                    failed: true,
                    duration_ms: Some(10),
                },
                AgentEvent::Warning {
                    message: "Loop detected, stopping".into()
                },
                AgentEvent::Error {
                    message: "quota exhausted".into()
                },
            ]
        );
    }

    #[test]
    fn anything_else_is_ignored_and_a_result_not_plainly_a_success_fails() {
        let events = read(&[
            "not json",
            "[1]",
            r#"{"type":"init","session_id":""}"#,
            r#"{"type":"message","role":"user","content":"x"}"#,
            r#"{"type":"tool_result","tool_id":"never-called","status":"success","output":"?"}"#,
            r#"{"type":"result","stats":{"input_tokens":-1,"output_tokens":"x"}}"#,
        ]);
        assert_eq!(
            events,
            vec![
                AgentEvent::ToolCall {
                    name: "unknown".into(),
                    arguments: String::new(),
                    result: "?".into(),
                    failed: false,
                    duration_ms: Some(0),
                },
                AgentEvent::Usage {
                    input_tokens: 0,
                    output_tokens: 0,
                    cached_tokens: 0
                },
                AgentEvent::Result {
                    text: "Gemini CLI ended with an error".into(),
                    is_error: true
                },
            ]
        );
    }

    #[test]
    fn the_arguments_ask_for_the_model_resume_the_session_and_approve_by_themselves() {
        let fresh = Gemini.args(&Invocation {
            model: Some("fast"),
            resume: None,
            home: None,
            prompt_file: None,
        });
        assert_eq!(
            fresh.join(" "),
            "--output-format stream-json --approval-mode yolo --model fast"
        );
        let resumed = Gemini.args(&Invocation {
            model: Some("fast"),
            resume: Some("s-1"),
            home: None,
            prompt_file: None,
        });
        assert!(resumed.join(" ").ends_with("--model fast --resume s-1"));
        assert!(Gemini.prompt_on_stdin());
        // The host's system settings and admin policies are hidden, whatever they hold.
        assert_eq!(
            Gemini.hidden_with(),
            vec![std::path::PathBuf::from("/etc/gemini-cli")]
        );
        assert!(!Gemini.usage_is_running_total());
        assert_eq!(
            Gemini.exit_meaning(41),
            Some("Gemini CLI: authentication failed")
        );
        assert_eq!(Gemini.exit_meaning(1), None);
    }

    #[test]
    fn the_home_gets_settings_for_the_api_key_and_no_secret() {
        let home = tempfile::tempdir().unwrap();
        let env = vec![(
            "GEMINI_API_KEY".to_string(),
            "execution-token-1".to_string(),
        )];
        let extra = Gemini
            .prepare_home(home.path(), &env, &Invocation::default())
            .unwrap();
        let dir = home.path().join(".gemini");
        assert!(extra.contains(&("GEMINI_CLI_HOME".into(), home.path().display().to_string())));
        assert!(extra.contains(&(
            "GEMINI_CLI_SYSTEM_SETTINGS_PATH".into(),
            dir.join("system-settings.json").display().to_string()
        )));
        let settings: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap())
                .unwrap();
        assert_eq!(
            settings["security"]["auth"]["selectedType"],
            "gemini-api-key"
        );
        assert_eq!(settings["privacy"]["usageStatisticsEnabled"], false);
        assert_eq!(settings["telemetry"]["enabled"], false);
        assert_eq!(settings["general"]["enableAutoUpdate"], false);
        assert_eq!(settings["general"]["maxAttempts"], 1);
        assert!(!settings.to_string().contains("execution-token-1"));
    }
}
