//! Used-up quotas through the real binary: a sandboxed agent whose provider says
//! `insufficient_quota` is not burnt through its attempts; the provider is paused, which
//! `events` and `status` show, and the task runs again when the pause ends.

use std::time::Duration;

use modelfixture::{Script, Step};

use crate::support::*;

/// Asks the chat API once and writes the answer (or the error) into `transcript.txt`; exits 1
/// on an error, as agent CLIs do.
const AGENT_PY: &str = r#"import json, os, sys, urllib.request, urllib.error

base, key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
body = {"model": "gpt", "messages": [{"role": "user", "content": "Say hello"}]}
request = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
    headers={"content-type": "application/json", "authorization": "Bearer " + key})
try:
    with urllib.request.urlopen(request, timeout=20) as r:
        text, code = r.read().decode(), 0
except urllib.error.HTTPError as e:
    text, code = f"HTTP {e.code}: {e.read().decode()}", 1
with open("transcript.txt", "w") as f:
    f.write(text)
sys.exit(code)
"#;

const REAL_KEY: &str = "sk-real-node-key-q7c1a9";

fn project(script: Script) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    ModelProject {
        agent_py: AGENT_PY,
        args: "",
        extra_spec: "",
        config: &|url: &str| {
            let origin = url.trim_end_matches("/v1");
            format!(
                "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  models:\n    providers:\n      fx: {{kind: openai-compatible, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      gpt: {{provider: fx, model: fx-gpt}}\n"
            )
        },
        key: REAL_KEY,
        task: "Call the model",
    }
    .build(script)
}

fn quota(retry_after_secs: u64) -> Step {
    Step {
        error_code: Some("insufficient_quota".into()),
        retry_after_secs: Some(retry_after_secs),
        ..Step::status(429)
    }
}

fn event_types(repo: &Repo) -> Vec<String> {
    repo.ok(&["events", "--json"])
        .lines()
        .map(|l| {
            let event: serde_json::Value = serde_json::from_str(l).unwrap();
            event["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn a_used_up_quota_pauses_the_provider_and_costs_the_task_no_attempt() {
    // One attempt only: a quota error counted as the agent's failure would fail the task.
    let (_rt, fixture, repo) = project(Script::new(vec![
        quota(1),
        Step::reply("hello after the reset", 5, 2, 0),
    ]));
    let out = repo
        .cmd(&["run"])
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap();
    assert_eq!(
        repo.task_state(1),
        "done",
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(fixture.requests().len(), 2, "no retry burnt on the quota");
    let show = repo.json(&["task", "show", "1", "--json"]);
    let first = &show["executions"][0];
    assert_eq!(first["state"], "failed", "{show}");
    let summary = first["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("provider fx paused until") && summary.contains("(quota"),
        "{summary}"
    );
    assert_eq!(show["executions"][1]["state"], "succeeded", "{show}");
    assert_eq!(
        show["executions"][1]["attempt"], 1,
        "the same attempt again"
    );
    let types = event_types(&repo);
    let paused = types.iter().position(|t| t == "provider_paused");
    let resumed = types.iter().position(|t| t == "provider_resumed");
    assert!(
        paused.is_some() && resumed > paused,
        "paused, then resumed: {types:?}"
    );
    let human = repo.ok(&["events"]);
    assert!(
        human.contains("provider fx paused until") && human.contains("provider fx resumed"),
        "{human}"
    );
    let transcript = repo.git(&["show", "agentgrid/task-1:transcript.txt"]);
    assert!(transcript.contains("hello after the reset"), "{transcript}");
}

#[test]
fn status_shows_a_paused_provider_and_its_agents_wait() {
    let (_rt, fixture, repo) = project(Script::new(vec![quota(3600)]));
    let mut engine = repo
        .cmd(&["run"])
        .env("FIXTURE_KEY", REAL_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = serde_json::Value::Null;
    wait_for(Duration::from_secs(60), "the provider to be paused", || {
        status = repo.json(&["status", "--json"]);
        status["providers"][0]["paused_until"].is_string()
            && status["active_executions"]
                .as_array()
                .is_some_and(|a| a.is_empty())
    });
    let provider = &status["providers"][0];
    assert_eq!(provider["name"], "fx");
    assert!(
        provider["pause_reason"]
            .as_str()
            .unwrap()
            .contains("insufficient_quota"),
        "{provider}"
    );
    let human = repo.ok(&["status"]);
    assert!(
        human.contains("provider fx: paused until") && human.contains("insufficient_quota"),
        "{human}"
    );
    // Not failed and not run again while the provider is paused.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(repo.task_state(1), "open");
    assert_eq!(fixture.requests().len(), 1);
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["attempts"], 0, "{show}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(engine.wait().unwrap().success());
}
