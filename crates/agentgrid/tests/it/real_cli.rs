//! The real agent CLIs, end to end: the real `agentgrid` binary runs each CLI sandboxed, through
//! the gateway, against the scripted model server answering with that CLI's tool-call turns.
//!
//! The CLIs are found only where `.ci/run` installs them: `AGENTGRID_TEST_CLI_DIR` is an npm
//! prefix (its `node_modules/.bin`), never the machine's PATH. A CLI that is not there is
//! reported as `skipped: REASON`; when `AGENTGRID_TEST_CLIS` (set by CI to what it installed)
//! names it, its absence fails the test instead.

use std::path::PathBuf;

use modelfixture::{Script, Step};

use crate::support::*;

const REAL_KEY: &str = "sk-real-cli-key-41c9d2e7a0";

mod aider;
mod codex;
mod gemini;
mod new_user;
mod npm_install;
mod opencode;
mod translated;
mod usage_check;

/// The CLI's program, or `None` (after saying why) when it is not installed and need not be.
fn installed(cli: &str, program: &str) -> Option<PathBuf> {
    installed_at(cli, &format!(".bin/{program}"))
}

/// Like [`installed`], for a program at `path` under the prefix's `node_modules`.
fn installed_at(cli: &str, path: &str) -> Option<PathBuf> {
    let required = std::env::var("AGENTGRID_TEST_CLIS")
        .unwrap_or_default()
        .split(',')
        .any(|c| c.trim() == cli);
    let reason = match std::env::var_os("AGENTGRID_TEST_CLI_DIR") {
        None => "AGENTGRID_TEST_CLI_DIR is not set (.ci/run installs the CLIs and sets it)".into(),
        Some(dir) => {
            let path = PathBuf::from(dir).join("node_modules").join(path);
            if path.exists() {
                return Some(path);
            }
            format!("{} does not exist", path.display())
        }
    };
    assert!(!required, "{cli} was to be installed by CI, but {reason}");
    eprintln!("skipped: {cli}: {reason}");
    None
}

fn config(fixture_url: &str) -> String {
    let origin = fixture_url.trim_end_matches("/v1");
    config_for("anthropic", origin, "sonnet", "fx-claude")
}

/// A config whose one provider is the fixture, speaking `kind` at `base_url`, with one alias.
fn config_for(kind: &str, base_url: &str, alias: &str, model: &str) -> String {
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  models:\n    providers:\n      fx: {{kind: {kind}, base_url: \"{base_url}\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      {alias}: {{provider: fx, model: {model}, prices: {{input: 3, output: 15}}}}\n"
    )
}

/// What every CLI must do when its provider refuses every request (HTTP 401, which the gateway
/// passes on as it is, never retried): the run fails, the execution is `failed` with the CLI's
/// reason (`says_status`: naming the status), the CLI's own result event says it was an error
/// when it has one (`result_event`), and the real key is found nowhere the agent could see.
fn an_api_error_fails_the_execution(
    runtime_type: &str,
    program: &std::path::Path,
    says_status: bool,
    result_event: bool,
) {
    let script = Script {
        steps: vec![Step {
            status: Some(401),
            error_message: Some("scripted invalid key".into()),
            ..Step::default()
        }],
        repeat: true,
    };
    let (_rt, _fixture, repo) = project(runtime_type, program, script);
    let out = run(&repo);
    assert!(!out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "failed");
    let status = repo.json(&["status", "--json"]);
    let execution = &status["executions"][0];
    assert_eq!(execution["state"], "failed", "{execution}");
    let summary = execution["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("the agent's CLI reported an error")
            && (!says_status || summary.contains("401")),
        "{summary}"
    );
    if result_event {
        let events = agent_events(&repo);
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "result" && e["is_error"] == true),
            "{events:?}"
        );
    }
    assert_no_key_anywhere(&repo);
}

/// A project whose one agent runs the CLI at `program` with `runtime_type`, sandboxed with the
/// gateway, and one task; the fixture answers `script`.
fn project(
    runtime_type: &str,
    program: &std::path::Path,
    script: Script,
) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    project_with(runtime_type, program, script, "")
}

/// Like [`project`], with more of the agent's manifest spec.
fn project_with(
    runtime_type: &str,
    program: &std::path::Path,
    script: Script,
    extra_spec: &str,
) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = runtime
        .block_on(modelfixture::spawn_with(
            script,
            modelfixture::FixtureOptions {
                api_key: Some(REAL_KEY.into()),
                port: 0,
            },
        ))
        .unwrap();
    let manifest = format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  runtime:\n    type: {runtime_type}\n    command: [\"{}\"]\n  routing: {{default: true}}\n  sandbox: {{network: gateway}}\n  limits: {{max_attempts: 1, max_iterations: 2, timeout: 3m}}\n{extra_spec}",
        program.display()
    );
    let repo = Repo::with_agents(&[("coder", &manifest)]);
    let config = match runtime_type {
        "codex" | "opencode" | "aider" => {
            config_for("openai", &fixture.base_url(), "fast", "fx-gpt")
        }
        // Gemini's paths hang off the origin (`/v1beta/models/…`).
        "gemini" => config_for(
            "gemini",
            fixture.base_url().trim_end_matches("/v1"),
            "fast",
            "fx-gem",
        ),
        _ => config(&fixture.base_url()),
    };
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), config).unwrap();
    repo.ok(&["task", "add", "Write hello.txt"]);
    (runtime, fixture, repo)
}

fn run(repo: &Repo) -> std::process::Output {
    repo.cmd(&["run"])
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap()
}

/// The real key appears in nothing the agent could see or agentgrid wrote: the project's state
/// (logs, the database, the worktrees) and the history of every branch.
fn assert_no_key_anywhere(repo: &Repo) {
    let mut stack = vec![repo.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let found = bytes
                    .windows(REAL_KEY.len())
                    .any(|w| w == REAL_KEY.as_bytes());
                assert!(!found, "the real key is in {}", path.display());
            }
        }
    }
    assert!(!repo.git(&["log", "--all", "-p"]).contains(REAL_KEY));
}

fn agent_events(repo: &Repo) -> Vec<serde_json::Value> {
    repo.ok(&["events", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "execution_agent_event")
        .map(|e| e["event"].clone())
        .collect()
}

#[test]
fn claude_code_writes_a_file_with_its_own_tools_through_the_gateway() {
    let Some(claude) = installed("claude", "claude") else {
        return;
    };
    let script = Script::new(vec![
        // The Bash tool needs a writable HOME (Claude Code keeps its state there) and a shell.
        Step::call(
            "I will write the file.",
            "Bash",
            serde_json::json!({"command": "printf 'hello from claude\\n' > hello.txt", "description": "write hello.txt"}),
            120,
            20,
        ),
        Step::reply("Done: wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("claude", &claude, script);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));

    // The file was made by the CLI's own tool and committed on the task's branch.
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "hello from claude\n"
    );

    // What the CLI said it did is recorded as events: its session, the tool call with its
    // arguments and result, its usage and its final result.
    let events = agent_events(&repo);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["session", "message", "tool_call", "usage", "result"] {
        assert!(kinds.contains(&kind), "no {kind} among {events:?}");
    }
    let call = events.iter().find(|e| e["kind"] == "tool_call").unwrap();
    assert_eq!(call["name"], "Bash", "{call}");
    assert!(
        call["arguments"].as_str().unwrap().contains("hello.txt"),
        "{call}"
    );
    assert_eq!(call["failed"], false, "{call}");
    let result = events.iter().find(|e| e["kind"] == "result").unwrap();
    assert_eq!(result["is_error"], false);
    assert_eq!(result["text"], "Done: wrote hello.txt.");

    // The model requests went through the gateway and were metered.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 280, "{usage}");
    assert_eq!(usage["output_tokens"], 30, "{usage}");
    assert!(usage["cost_micros"].as_u64().unwrap() > 0, "{usage}");
    // The CLI asked for the agent's alias, not a model name of its own.
    let asked: Vec<String> = fixture
        .requests()
        .iter()
        .filter_map(|r| r.json())
        .filter_map(|b| b["model"].as_str().map(String::from))
        .collect();
    assert!(asked.iter().all(|m| m == "fx-claude"), "{asked:?}");

    // `logs` shows the events readably, `logs --raw` the CLI's own output.
    let logs = repo.ok(&["logs", "1"]);
    assert!(logs.contains("tool Bash("), "{logs}");
    assert!(!logs.contains("\"type\":\"assistant\""), "{logs}");
    let raw = repo.ok(&["logs", "1", "--raw"]);
    assert!(raw.contains("\"type\":\"result\""), "{raw}");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(show.contains("tool calls: 1"), "{show}");

    assert_no_key_anywhere(&repo);
}

#[test]
fn claude_code_reporting_an_api_error_fails_the_execution_with_the_reason() {
    let Some(claude) = installed("claude", "claude") else {
        return;
    };
    an_api_error_fails_the_execution("claude", &claude, true, true);
}

#[test]
fn claude_code_resumes_its_session_when_validation_sends_it_round_again() {
    let Some(claude) = installed("claude", "claude") else {
        return;
    };
    let bash = |text: &str| serde_json::json!({"command": format!("printf '{text}\\n' > hello.txt"), "description": "write"});
    let script = Script::new(vec![
        Step::call("Writing.", "Bash", bash("first"), 100, 10),
        Step::reply("Wrote the first draft.", 120, 10, 0),
        Step::call("Fixing.", "Bash", bash("second"), 140, 10),
        Step::reply("Wrote the second draft.", 160, 10, 0),
    ]);
    let validator = "  validation:\n    validators:\n      - {name: second, run: \"grep -q second hello.txt\"}\n";
    let (_rt, fixture, repo) = project_with("claude", &claude, script, validator);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "second\n"
    );
    // The second iteration's first request carries the first iteration's conversation: the
    // CLI resumed its session (kept in the execution's own HOME) instead of starting over.
    let requests: Vec<serde_json::Value> =
        fixture.requests().iter().filter_map(|r| r.json()).collect();
    let third = requests
        .iter()
        .filter(|b| b["messages"].is_array())
        .nth(2)
        .expect("a third model request");
    let history = third["messages"].to_string();
    assert!(history.contains("Wrote the first draft."), "{history}");
    assert!(history.contains("Feedback on the work so far"), "{history}");
    let sessions: Vec<String> = agent_events(&repo)
        .iter()
        .filter(|e| e["kind"] == "session")
        .filter_map(|e| e["id"].as_str().map(String::from))
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
}

/// A CLI that exits 0 after saying in its own output that it failed (what several CLIs do on
/// an authentication error) has not done the work: the execution fails with what it said.
/// The "CLI" is a script printing Claude Code's stream-json, so this runs everywhere.
#[test]
fn a_cli_that_reports_an_error_and_exits_0_fails_with_its_reason() {
    let script = "#!/bin/sh\ncat >/dev/null\necho '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s-9\"}'\necho 'not json at all'\necho '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"result\":\"Not logged in\"}'\nexit 0\n";
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("claude");
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (_rt, _fixture, repo) = project("claude", &program, Script::new(vec![]));
    let out = run(&repo);
    assert!(!out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "failed");
    let execution = &repo.json(&["status", "--json"])["executions"][0];
    assert_eq!(execution["state"], "failed", "{execution}");
    assert!(
        execution["summary"].as_str().is_some_and(|s| s
            .contains("reported an error: Not logged in")
            && s.contains("exited with 0")),
        "{execution}"
    );
    let logs = repo.ok(&["logs", "1"]);
    assert!(logs.contains("session s-9"), "{logs}");
    assert!(logs.contains("failed: Not logged in"), "{logs}");
    assert!(repo.ok(&["logs", "1", "--raw"]).contains("not json at all"));
}

#[test]
fn claude_code_parked_at_an_approval_resumes_its_session_in_the_next_engine() {
    let Some(claude) = installed("claude", "claude") else {
        return;
    };
    let ask = serde_json::json!({
        "command": "agentgrid ctl approval request --summary 'plan: write hello.txt'",
        "description": "ask a person",
    });
    let write =
        serde_json::json!({"command": "printf 'resumed\\n' > hello.txt", "description": "write"});
    let script = Script::new(vec![
        Step::call("Asking first.", "Bash", ask, 100, 10),
        Step::reply("Waiting for the decision on the plan.", 120, 10, 0),
        Step::call("Approved; writing.", "Bash", write, 140, 10),
        Step::reply("Wrote hello.txt.", 160, 10, 0),
    ]);
    let (_rt, fixture, repo) = project("claude", &claude, script);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "blocked", "{}", stdout(&out));

    // The engine is gone while the person decides; a new one resumes the session.
    repo.ok(&["approvals", "approve", "1"]);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "resumed\n"
    );
    // The second execution's first request carries the first one's conversation.
    let requests: Vec<serde_json::Value> =
        fixture.requests().iter().filter_map(|r| r.json()).collect();
    let third = requests
        .iter()
        .filter(|b| b["messages"].is_array())
        .nth(2)
        .expect("a third model request");
    let history = third["messages"].to_string();
    assert!(
        history.contains("Waiting for the decision on the plan."),
        "{history}"
    );
    let sessions: Vec<String> = agent_events(&repo)
        .iter()
        .filter(|e| e["kind"] == "session")
        .filter_map(|e| e["id"].as_str().map(String::from))
        .collect();
    assert!(
        sessions.len() >= 2 && sessions.iter().all(|s| *s == sessions[0]),
        "one session across both executions: {sessions:?}"
    );
}
