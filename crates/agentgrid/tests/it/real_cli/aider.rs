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
