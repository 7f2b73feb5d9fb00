//! Aider (`aider-chat` from PyPI, in a virtualenv) end to end against the scripted model server
//! speaking Chat Completions behind the gateway: its whole-file edit format makes the file, its
//! text output becomes events, its usage is metered, an API error (after which Aider exits 0)
//! fails the execution, and it never sees the real key.
//!
//! `.ci/run` installs it into a virtualenv outside the repository and names that virtualenv in
//! `AGENTGRID_TEST_AIDER_VENV`; the sandbox shows the virtualenv because the adapter asks.

use modelfixture::{Script, Step};

use super::*;

fn aider() -> Option<PathBuf> {
    let required = std::env::var("AGENTGRID_TEST_CLIS")
        .unwrap_or_default()
        .split(',')
        .any(|c| c.trim() == "aider");
    let reason = match std::env::var_os("AGENTGRID_TEST_AIDER_VENV") {
        None => "AGENTGRID_TEST_AIDER_VENV is not set (.ci/run installs Aider and sets it)".into(),
        Some(dir) => {
            let path = PathBuf::from(dir).join("bin/aider");
            if path.exists() {
                return Some(path);
            }
            format!("{} does not exist", path.display())
        }
    };
    assert!(!required, "aider was to be installed by CI, but {reason}");
    eprintln!("skipped: aider: {reason}");
    None
}

/// The chat requests the fixture received, as JSON.
fn chats(fixture: &modelfixture::Fixture) -> Vec<serde_json::Value> {
    fixture
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .filter_map(|r| r.json())
        .collect()
}

#[test]
fn aider_writes_a_file_with_its_edit_format_through_the_gateway() {
    let Some(aider) = aider() else {
        return;
    };
    // Aider's `whole` edit format (its default for a model it does not know): the file's
    // path on a line, then its whole new content fenced.
    let script = Script::new(vec![Step::reply(
        "I will write the file.\n\nhello.txt\n```\nhello from aider\n```\n",
        120,
        20,
        0,
    )]);
    let (_rt, fixture, repo) = project("aider", &aider, script);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        repo.task_state(1),
        "done",
        "{}\n{}",
        stdout(&out),
        repo.ok(&["logs", "1", "--raw"])
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "hello from aider\n"
    );
    // Nothing of Aider's own (its histories, caches) is committed with the work.
    let files = repo.git(&["ls-tree", "-r", "--name-only", "agentgrid/task-1"]);
    assert!(!files.contains(".aider"), "{files}");

    let events = agent_events(&repo);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["message", "tool_call", "usage", "result"] {
        assert!(kinds.contains(&kind), "no {kind} among {events:?}");
    }
    let call = events.iter().find(|e| e["kind"] == "tool_call").unwrap();
    assert_eq!(call["name"], "edit", "{call}");
    assert_eq!(call["arguments"], "hello.txt", "{call}");
    assert_eq!(call["failed"], false, "{call}");

    // The request went through the gateway, for the agent's alias, and was metered; what
    // Aider reported agrees.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 1, "{usage}");
    assert_eq!(usage["input_tokens"], 120, "{usage}");
    assert_eq!(usage["output_tokens"], 20, "{usage}");
    let reported = events.iter().find(|e| e["kind"] == "usage").unwrap();
    assert_eq!(reported["input_tokens"], 120, "{reported}");
    assert_eq!(reported["output_tokens"], 20, "{reported}");
    let requests = chats(&fixture);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["model"], "fx-gpt", "{requests:?}");
    assert!(
        requests[0]["messages"]
            .to_string()
            .contains("Write hello.txt"),
        "the prompt reached the model: {requests:?}"
    );

    let show = repo.ok(&["task", "show", "1"]);
    assert!(show.contains("tool calls: 1"), "{show}");
    assert!(repo.ok(&["logs", "1"]).contains("tool edit("));
    assert_no_key_anywhere(&repo);
}

#[test]
fn aider_reaches_an_anthropic_provider_through_the_gateways_translation() {
    let Some(aider) = aider() else {
        return;
    };
    let script = Script::new(vec![Step::reply(
        "I will write the file.\n\nhello.txt\n```\nhello via anthropic\n```\n",
        120,
        20,
        30,
    )]);
    let (_rt, fixture, repo) = project("aider", &aider, script);
    // The only provider speaks Anthropic Messages; Aider speaks Chat Completions, whole.
    let origin = fixture.base_url().trim_end_matches("/v1").to_owned();
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        config_for("anthropic", &origin, "fast", "fx-claude"),
    )
    .unwrap();
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        repo.task_state(1),
        "done",
        "{}\n{}",
        stdout(&out),
        repo.ok(&["logs", "1", "--raw"])
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "hello via anthropic\n"
    );
    let requests = fixture.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, "/v1/messages");
    let sent = requests[0].json().unwrap();
    assert_eq!(sent["model"], "fx-claude", "{sent}");
    assert!(
        sent["system"].to_string().len() > 10,
        "Aider's system prompt: {sent}"
    );
    assert!(
        sent["messages"].to_string().contains("Write hello.txt"),
        "{sent}"
    );
    // Metered on Anthropic's figures, cache reads counted among the input.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 1, "{usage}");
    assert_eq!(usage["input_tokens"], 120, "{usage}");
    assert_eq!(usage["cached_tokens"], 30, "{usage}");
    assert_eq!(usage["output_tokens"], 20, "{usage}");
    assert_no_key_anywhere(&repo);
}

/// Aider has no session to resume: a validation-feedback iteration is a fresh process, so the
/// validator's feedback must reach the model in the prompt itself (its message on stdin).
#[test]
fn aider_gets_the_validators_feedback_in_its_next_iteration_prompt() {
    let Some(aider) = aider() else {
        return;
    };
    let script = Script::new(vec![
        Step::reply("First draft.\n\nhello.txt\n```\nfirst\n```\n", 100, 10, 0),
        Step::reply("Fixed.\n\nhello.txt\n```\nsecond\n```\n", 140, 10, 0),
    ]);
    let validator = "  validation:\n    validators:\n      - {name: second, run: \"grep -q second hello.txt || { echo 'hello.txt must say second-7f3a'; exit 1; }\"}\n";
    let (_rt, fixture, repo) = project_with("aider", &aider, script, validator);
    let out = run(&repo);
    assert!(
        out.status.success(),
        "{}\n{}\n{}\n{:?}",
        stdout(&out),
        stderr(&out),
        repo.ok(&["logs", "1", "--raw"]),
        chats(&fixture)
    );
    assert_eq!(
        repo.task_state(1),
        "done",
        "{}\n{}",
        stdout(&out),
        repo.ok(&["logs", "1", "--raw"])
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "second\n"
    );
    let requests = chats(&fixture);
    assert_eq!(requests.len(), 2, "{requests:?}");
    // The first request knows nothing of a verdict; the second carries the failed
    // validator's name and what it printed, in the prompt Aider was given.
    let first = requests[0]["messages"].to_string();
    assert!(!first.contains("second-7f3a"), "{first}");
    let second = requests[1]["messages"].to_string();
    assert!(second.contains("Feedback on the work so far"), "{second}");
    assert!(
        second.contains("hello.txt must say second-7f3a"),
        "{second}"
    );
    // No session was recorded or resumed: there is none to resume.
    let events = agent_events(&repo);
    assert!(!events.iter().any(|e| e["kind"] == "session"), "{events:?}");
}

#[test]
fn aider_reporting_an_api_error_fails_the_execution_with_the_reason() {
    let Some(aider) = aider() else {
        return;
    };
    // A request refused as bad is retried neither by the gateway nor by Aider, which then
    // exits 0. (A provider refusing the node's key reaches Aider as a 502, which it retries
    // with backoff for about a minute before it gives up the same way.)
    let script = Script {
        steps: vec![Step {
            status: Some(400),
            error_message: Some("scripted bad request".into()),
            ..Step::default()
        }],
        repeat: true,
    };
    let (_rt, _fixture, repo) = project("aider", &aider, script);
    let out = run(&repo);
    assert!(!out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "failed");
    let execution = &repo.json(&["status", "--json"])["executions"][0];
    assert_eq!(execution["state"], "failed", "{execution}");
    let summary = execution["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("the agent's CLI reported an error")
            && summary.contains("litellm.BadRequestError")
            && summary.contains("scripted bad request"),
        "{summary}"
    );
    assert_no_key_anywhere(&repo);
}

/// An Aider whose virtualenv was made from an interpreter under the home (pyenv's, say): the
/// sandbox shows the virtualenv, not that interpreter, and `validate` says so before any run.
/// The virtualenv is made by hand, so this runs everywhere.
#[test]
fn validate_names_an_aider_interpreter_under_a_hidden_home() {
    let home = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let base = home.path().join(".pyenv/versions/3.11.7/bin");
    std::fs::create_dir_all(&base).unwrap();
    let python = base.join("python3.11");
    std::fs::write(&python, "#!/bin/sh\nexit 0\n").unwrap();
    let venv = tools.path().join("aider-venv");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::write(
        venv.join("pyvenv.cfg"),
        format!("home = {}\n", base.display()),
    )
    .unwrap();
    std::os::unix::fs::symlink(&python, venv.join("bin/python3")).unwrap();
    let aider = venv.join("bin/aider");
    std::fs::write(
        &aider,
        format!("#!{}\nimport aider\n", venv.join("bin/python3").display()),
    )
    .unwrap();
    for file in [&python, &aider] {
        std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let manifest = format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  runtime:\n    type: aider\n    command: [\"{}\"]\n  routing: {{default: true}}\n  sandbox: {{network: gateway}}\n",
        aider.display()
    );
    let repo = Repo::with_agents(&[("coder", &manifest)]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        config_for("openai", "http://127.0.0.1:9/v1", "fast", "fx-gpt"),
    )
    .unwrap();
    let out = repo
        .cmd(&["validate"])
        .env("HOME", home.path())
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("which the sandbox hides")
            && err.contains(&format!(
                "it is `{}`, inside the hidden",
                python.canonicalize().unwrap().display()
            )),
        "{err}"
    );
    // Made from a system interpreter, the same virtualenv is fine.
    std::fs::remove_file(venv.join("bin/python3")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", venv.join("bin/python3")).unwrap();
    let out = repo
        .cmd(&["validate"])
        .env("HOME", home.path())
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
