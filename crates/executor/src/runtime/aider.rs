//! Aider (the PyPI package `aider-chat`, 0.86): one `--message` run, the prompt read from the
//! execution's prompt file (`--message-file`), its plain text output read as events.
//!
//! The prompt file, not standard input: inside the sandbox, under a root engine, the agent's
//! identity may not reopen the engine's pipe through `/dev/stdin` (EACCES), and Aider then
//! falls back to reading its chat from standard input a line at a time — so only the prompt's
//! first line was the message, and a feedback iteration's feedback never reached the model.
//! Aider has no session to resume, so that file is the only way the feedback gets there.
//!
//! Aider is a Python program in a virtualenv: the sandbox shows that virtualenv (the directory
//! with `pyvenv.cfg` above the program) read-only beside it, since the view shows nothing under
//! a home directory by itself; the interpreter the virtualenv was made from must be visible on
//! its own (a system Python is; one under a hidden path is reported by `validate`).
//!
//! agentgrid commits the work itself, so Aider runs with `--no-git` (no repository of its own,
//! no commits, no repo map). Edits are applied without asking (`--yes-always`), and nothing
//! that would wait for a person or reach past the gateway is on: no update check, no analytics,
//! no release notes, no URL fetching, no suggested shell commands. The model is the agent's
//! alias as an OpenAI-compatible model (`openai/ALIAS`) at the gateway (`--openai-api-base`,
//! the key the execution's token in `OPENAI_API_KEY`). Its chat and input histories go to the
//! execution's HOME, never into the work tree.
//!
//! Aider has no machine output, and exits 0 after most failures: its text is read line by
//! line. `Applied edit to PATH` is an edit made; `Skipping edits to PATH` and `Unable to
//! create PATH, skipping edits.` are edits refused; `Tokens: N sent, M received.` is one
//! request's usage; a line naming a LiteLLM exception (`litellm.AuthenticationError: …`) is
//! the API error that ended the request; anything else is the model's answer or Aider's
//! commentary, gathered into one message per response.

use std::path::{Path, PathBuf};

use domain::{AgentEvent, Timestamp};

use super::{Adapter, Invocation, Parser};

/// The Aider adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Aider;

/// The version CI installs, for the install hint.
pub const VERSION: &str = "0.86.2";

impl Adapter for Aider {
    fn program(&self) -> &'static str {
        "aider"
    }

    fn package(&self) -> &'static str {
        "aider-chat"
    }

    fn install_hint(&self) -> String {
        format!(
            "python3 -m venv ~/.local/aider && ~/.local/aider/bin/pip install aider-chat=={VERSION}"
        )
    }

    fn args(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let message = invocation
            .prompt_file
            .map_or_else(|| "/dev/stdin".to_string(), |p| p.display().to_string());
        let mut args: Vec<String> = vec!["--message-file".to_string(), message];
        args.extend(
            [
                "--yes-always",
                "--no-git",
                "--no-auto-commits",
                "--no-dirty-commits",
                "--no-check-update",
                "--no-analytics",
                "--no-show-release-notes",
                "--no-show-model-warnings",
                "--no-pretty",
                "--no-stream",
                "--no-fancy-input",
                "--no-detect-urls",
                "--no-suggest-shell-commands",
                "--map-tokens",
                "0",
            ]
            .map(String::from),
        );
        if let Some(model) = invocation.model {
            args.extend(["--model".into(), format!("openai/{model}")]);
        }
        args
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            // LiteLLM's own price list, not one fetched at start.
            ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
            ("AIDER_ANALYTICS", "false"),
            ("AIDER_CHECK_UPDATE", "false"),
            ("PYTHONDONTWRITEBYTECODE", "1"),
            ("PYTHONUNBUFFERED", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    fn prompt_on_stdin(&self) -> bool {
        // The prompt goes in the message file (see the module's doc); standard input stays
        // empty, so nothing more is read as chat.
        false
    }

    fn parser(&self) -> Box<dyn Parser> {
        Box::new(Text::default())
    }

    fn shown_with(&self, program: &Path) -> Vec<PathBuf> {
        virtualenv_of(program).into_iter().collect()
    }

    fn prepare_home(
        &self,
        home: &Path,
        env: &[(String, String)],
        _invocation: &Invocation<'_>,
    ) -> std::io::Result<Vec<(String, String)>> {
        let base_url = env
            .iter()
            .rev()
            .find(|(k, _)| k == "OPENAI_BASE_URL")
            .map_or("", |(_, v)| v.as_str());
        let state = home.join(".aider");
        // Aider fetches LiteLLM's model list from the internet unless its cache of the list
        // holds something: one entry of no model, so it asks nobody.
        let caches = state.join("caches");
        std::fs::create_dir_all(&caches)?;
        std::fs::write(
            caches.join("model_prices_and_context_window.json"),
            "{\"agentgrid\": {}}\n",
        )?;
        let at = |name: &str| state.join(name).display().to_string();
        let mut more = vec![
            ("AIDER_CHAT_HISTORY_FILE".into(), at("chat.history.md")),
            ("AIDER_INPUT_HISTORY_FILE".into(), at("input.history")),
        ];
        if !base_url.is_empty() {
            more.push(("AIDER_OPENAI_API_BASE".into(), base_url.to_string()));
        }
        Ok(more)
    }
}

/// The virtualenv `program` (a real path) is installed in: the nearest directory above it with
/// a `pyvenv.cfg`, when the program is in its `bin`.
pub fn virtualenv_of(program: &Path) -> Option<PathBuf> {
    let bin = program.parent()?;
    let root = bin.parent()?;
    (bin.file_name().is_some_and(|n| n == "bin") && root.join("pyvenv.cfg").is_file())
        .then(|| root.to_path_buf())
}

/// Reads Aider's plain text output.
#[derive(Debug, Default)]
struct Text {
    /// The lines of the response being printed, said as one message when it ends.
    pending: Vec<String>,
    /// The last message said, the run's final word.
    last_message: Option<String>,
    /// Whether the run has reported an error.
    failed: bool,
    /// The API error last printed: Aider retries some (it then says `Retrying in …`), and
    /// only one it did not retry ended the request.
    api_error: Option<String>,
}

/// Lines Aider prints at start, about itself: no part of any response.
const BANNER: [&str; 7] = [
    "Aider v",
    "Model: ",
    "Main model: ",
    "Weak model: ",
    "Git repo: ",
    "Repo-map: ",
    "Added ",
];

impl Text {
    /// The API error printed last, which was not retried: the request failed.
    fn settle(&mut self, events: &mut Vec<AgentEvent>) {
        if let Some(message) = self.api_error.take() {
            self.failed = true;
            events.push(AgentEvent::Error { message });
        }
    }

    fn flush(&mut self, events: &mut Vec<AgentEvent>) {
        let text = self.pending.join("\n").trim().to_string();
        self.pending.clear();
        if !text.is_empty() {
            self.last_message = Some(text.clone());
            events.push(AgentEvent::Message { text });
        }
    }
}

impl Parser for Text {
    fn line(&mut self, line: &str, _at: Timestamp) -> Vec<AgentEvent> {
        let line = line.trim_end();
        let mut events = Vec::new();
        if line.starts_with("Retrying in ") {
            if let Some(message) = self.api_error.take() {
                self.flush(&mut events);
                events.push(AgentEvent::Warning {
                    message: format!("{message} ({line})"),
                });
            }
            return events;
        }
        let recognised = line.starts_with("Applied edit to ")
            || line.starts_with("Skipping edits to ")
            || line.starts_with("Tokens: ")
            || line.starts_with("Only ")
            || api_error(line).is_some();
        // Aider names the file once more before it says it applied the edit.
        if let Some(path) = line.strip_prefix("Applied edit to ")
            && self.pending.iter().map(|l| l.trim()).eq([path.trim()])
        {
            self.pending.clear();
        }
        if recognised {
            self.flush(&mut events);
            self.settle(&mut events);
        }
        if let Some(path) = line.strip_prefix("Applied edit to ") {
            events.push(edit(path, line, false));
        } else if let Some(path) = line.strip_prefix("Skipping edits to ") {
            events.push(edit(path, line, true));
        } else if let Some(path) = line
            .strip_prefix("Unable to create ")
            .and_then(|l| l.strip_suffix(", skipping edits."))
        {
            self.flush(&mut events);
            events.push(edit(path, line, true));
        } else if let Some(usage) = tokens(line) {
            events.push(usage);
        } else if let Some(error) = api_error(line) {
            self.api_error = Some(error);
        } else if line.starts_with("Only ") && line.ends_with("reflections allowed, stopping.") {
            // The model's edits kept failing to apply: nothing it meant to do was done.
            self.flush(&mut events);
            self.failed = true;
            events.push(AgentEvent::Error {
                message: format!("Aider gave up: {line}"),
            });
        } else if line.starts_with("Aider v") {
            // What came before its banner is said at start (a warning, a fetch that failed).
            self.flush(&mut events);
        } else if !self.pending.is_empty()
            || !(line.trim().is_empty() || BANNER.iter().any(|b| line.starts_with(b)))
        {
            self.pending.push(line.to_string());
        }
        events
    }

    fn finish(&mut self) -> Vec<AgentEvent> {
        let mut events = Vec::new();
        self.flush(&mut events);
        self.settle(&mut events);
        if !self.failed {
            events.push(AgentEvent::Result {
                text: self.last_message.take().unwrap_or_default(),
                is_error: false,
            });
        }
        events
    }
}

fn edit(path: &str, line: &str, failed: bool) -> AgentEvent {
    AgentEvent::ToolCall {
        name: "edit".into(),
        arguments: path.trim().to_string(),
        result: line.to_string(),
        failed,
        duration_ms: None,
    }
}

/// `Tokens: 1.2k sent, 40 cache hit, 35 received.` as usage. Aider rounds counts of a
/// thousand and more (`1.2k`, `12k`, `1.5M`): those are read as the number they round to.
fn tokens(line: &str) -> Option<AgentEvent> {
    let rest = line.strip_prefix("Tokens: ")?;
    let report = rest.split(". ").next()?.trim_end_matches('.');
    let (mut sent, mut received, mut written, mut hit) = (None, None, 0, 0);
    for part in report.split(", ") {
        let (count, what) = part.split_once(' ')?;
        let count = count_of(count)?;
        match what {
            "sent" => sent = Some(count),
            "received" => received = Some(count),
            "cache write" => written = count,
            "cache hit" => hit = count,
            _ => return None,
        }
    }
    Some(AgentEvent::Usage {
        input_tokens: sent?.saturating_add(written).saturating_add(hit),
        output_tokens: received?,
        cached_tokens: hit,
    })
}

fn count_of(text: &str) -> Option<u64> {
    let (number, scale) = match text.as_bytes().last()? {
        b'k' => (&text[..text.len() - 1], 1_000.0),
        b'M' => (&text[..text.len() - 1], 1_000_000.0),
        _ => return text.parse().ok(),
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * scale).round() as u64)
}

/// The error of a line that names a LiteLLM exception (`litellm.AuthenticationError: …`),
/// as Aider prints what ended a model request.
fn api_error(line: &str) -> Option<String> {
    let at = line.find("litellm.")?;
    let name = &line[at + "litellm.".len()..];
    let end = name.find(|c: char| !c.is_ascii_alphanumeric())?;
    (end > "Error".len() && name[..end].ends_with("Error") && name[end..].starts_with(':'))
        .then(|| line.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Vec<AgentEvent> {
        let mut parser = Aider.parser();
        let mut events: Vec<AgentEvent> = lines
            .iter()
            .flat_map(|l| parser.line(l, Timestamp(1_000)))
            .collect();
        events.extend(parser.finish());
        events
    }

    #[test]
    fn a_run_becomes_a_message_an_edit_usage_and_a_result() {
        let events = read(&[
            "HTTPSConnectionPool(host='example.invalid', port=443): Max retries exceeded",
            "Aider v0.86.2",
            "Model: openai/fast with whole edit format",
            "Git repo: none",
            "Repo-map: disabled",
            "",
            "I will write the file.",
            "",
            "hello.txt",
            "```",
            "hello from aider",
            "```",
            "Tokens: 120 sent, 20 received.",
            "",
            "hello.txt",
            "Applied edit to hello.txt",
        ]);
        assert_eq!(
            events,
            vec![
                AgentEvent::Message {
                    text: "HTTPSConnectionPool(host='example.invalid', port=443): Max retries exceeded".into()
                },
                AgentEvent::Message {
                    text: "I will write the file.\n\nhello.txt\n```\nhello from aider\n```".into()
                },
                AgentEvent::Usage {
                    input_tokens: 120,
                    output_tokens: 20,
                    cached_tokens: 0
                },
                AgentEvent::ToolCall {
                    name: "edit".into(),
                    arguments: "hello.txt".into(),
                    result: "Applied edit to hello.txt".into(),
                    failed: false,
                    duration_ms: None,
                },
                AgentEvent::Result {
                    text: "I will write the file.\n\nhello.txt\n```\nhello from aider\n```".into(),
                    is_error: false
                },
            ]
        );
    }

    #[test]
    fn an_api_error_and_giving_up_are_failures_and_no_result_follows() {
        let events = read(&[
            "litellm.AuthenticationError: AuthenticationError: OpenaiException - scripted invalid key",
            "The API provider is not able to authenticate you. Check your API key.",
            "Skipping edits to ../outside.txt",
            "Only 3 reflections allowed, stopping.",
        ]);
        assert_eq!(
            events,
            vec![
                AgentEvent::Message {
                    text: "The API provider is not able to authenticate you. Check your API key."
                        .into()
                },
                AgentEvent::Error {
                    message: "litellm.AuthenticationError: AuthenticationError: OpenaiException - scripted invalid key".into()
                },
                AgentEvent::ToolCall {
                    name: "edit".into(),
                    arguments: "../outside.txt".into(),
                    result: "Skipping edits to ../outside.txt".into(),
                    failed: true,
                    duration_ms: None,
                },
                AgentEvent::Error {
                    message: "Aider gave up: Only 3 reflections allowed, stopping.".into()
                },
            ]
        );
    }

    #[test]
    fn an_error_aider_retried_is_a_warning_and_the_last_one_unretried_a_failure() {
        let retried = "litellm.InternalServerError: InternalServerError: OpenAIException - busy";
        let events = read(&[
            retried,
            "The API provider's servers are down or overloaded.",
            "Retrying in 0.2 seconds...",
            "Tokens: 10 sent, 2 received.",
        ]);
        assert!(
            events.contains(&AgentEvent::Warning {
                message: format!("{retried} (Retrying in 0.2 seconds...)")
            }),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| e.failure().is_some()), "{events:?}");
        assert!(matches!(
            events.last(),
            Some(AgentEvent::Result {
                is_error: false,
                ..
            })
        ));
        let events = read(&[retried, "Retrying in 0.2 seconds...", retried]);
        assert_eq!(
            events.last(),
            Some(&AgentEvent::Error {
                message: retried.into()
            })
        );
    }

    #[test]
    fn rounded_and_cached_token_counts_are_read() {
        assert_eq!(
            tokens(
                "Tokens: 1.2k sent, 300 cache write, 2.5k cache hit, 35 received. Cost: $0.01 message, $0.02 session."
            ),
            Some(AgentEvent::Usage {
                input_tokens: 4_000,
                output_tokens: 35,
                cached_tokens: 2_500
            })
        );
        assert_eq!(tokens("Tokens: lots sent"), None);
        assert_eq!(tokens("Tokens: 5 sent"), None);
        assert_eq!(api_error("see litellm.org for details"), None);
        assert_eq!(api_error("litellm.Error: x"), None);
    }

    #[test]
    fn the_arguments_ask_for_the_alias_as_an_openai_model_and_keep_aider_out_of_git() {
        let args = Aider.args(&Invocation {
            model: Some("fast"),
            prompt_file: Some(Path::new("/run/agentgrid/prompt-7.md")),
            ..Invocation::default()
        });
        let line = args.join(" ");
        assert!(
            line.starts_with("--message-file /run/agentgrid/prompt-7.md --yes-always --no-git "),
            "{line}"
        );
        assert!(!Aider.prompt_on_stdin());
        assert!(line.ends_with("--model openai/fast"), "{line}");
        for flag in ["--no-auto-commits", "--no-check-update", "--no-analytics"] {
            assert!(args.iter().any(|a| a == flag), "{line}");
        }
    }

    #[test]
    fn the_home_gets_the_histories_and_the_gateway_and_no_secret() {
        let home = tempfile::tempdir().unwrap();
        let env = vec![
            (
                "OPENAI_BASE_URL".to_string(),
                "http://127.0.0.1:4100/v1".to_string(),
            ),
            ("OPENAI_API_KEY".to_string(), "token-1".to_string()),
        ];
        let more = Aider
            .prepare_home(home.path(), &env, &Invocation::default())
            .unwrap();
        assert!(more.contains(&(
            "AIDER_OPENAI_API_BASE".into(),
            "http://127.0.0.1:4100/v1".into()
        )));
        let history = home.path().join(".aider/chat.history.md");
        assert!(more.contains(&(
            "AIDER_CHAT_HISTORY_FILE".into(),
            history.display().to_string()
        )));
        assert!(!format!("{more:?}").contains("token-1"));
        let cache = home
            .path()
            .join(".aider/caches/model_prices_and_context_window.json");
        assert!(
            std::fs::read_to_string(cache)
                .unwrap()
                .contains("agentgrid")
        );
    }

    #[test]
    fn the_virtualenv_of_the_program_is_shown_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        assert_eq!(
            Aider.shown_with(&venv.join("bin/aider")),
            vec![venv.clone()]
        );
        assert!(Aider.shown_with(&dir.path().join("aider")).is_empty());
    }
}
