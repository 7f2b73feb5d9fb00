//! Model calls from inside a sandboxed execution through the engine's gateway, against the
//! scripted model server: all three wire formats streaming, usage and cost per execution,
//! budgets, a rate limit ridden out, and the real key nowhere the agent or the logs could see.

use modelfixture::{Script, Step};

use crate::support::*;

/// Calls each API once with streaming on, writes what came back and its environment into the
/// workspace (so both land on the task branch for the test to read).
const AGENT_PY: &str = r#"import json, os, sys, urllib.request, urllib.error

def post(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()

openai, okey = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
anthropic, akey = os.environ["ANTHROPIC_BASE_URL"], os.environ["ANTHROPIC_API_KEY"]
with open("env.txt", "w") as f:
    f.write("\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())))
calls = [
    (openai + "/chat/completions", {"model": "gpt", "stream": True,
        "messages": [{"role": "user", "content": "hi"}]}, {"authorization": "Bearer " + okey}),
    (openai + "/responses", {"model": "gpt", "stream": True, "input": "hi"},
        {"authorization": "Bearer " + okey}),
    (anthropic + "/v1/messages", {"model": "claude", "stream": True, "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}]},
        {"x-api-key": akey, "anthropic-version": "2023-06-01"}),
    (os.environ.get("GOOGLE_GEMINI_BASE_URL", "") + "/v1beta/models/gpt:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        {"x-goog-api-key": os.environ.get("GEMINI_API_KEY", "")}),
]
out = []
for url, body, headers in calls[: int(sys.argv[1])]:
    try:
        out.append(post(url, body, headers))
    except urllib.error.HTTPError as e:
        out.append(f"HTTP {e.code}: {e.read().decode()}")
        open("transcript.txt", "w").write("\n".join(out))
        if sys.argv[2:] == ["linger"]:
            import time
            time.sleep(60)
        sys.exit(0 if sys.argv[2:] == ["shrug"] else 1)
open("transcript.txt", "w").write("\n".join(out))
"#;

const REAL_KEY: &str = "sk-real-node-key-7f3a9c1e5b";

fn models_config(fixture_url: &str, budgets: &str) -> String {
    let origin = fixture_url.trim_end_matches("/v1");
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {{base_delay: 100ms, max_delay: 200ms}}\n  models:\n    providers:\n      fx-openai: {{kind: openai-compatible, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n      fx-anthropic: {{kind: anthropic, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      gpt: {{provider: fx-openai, model: fx-gpt, prices: {{input: 2, output: 8}}}}\n      claude: {{provider: fx-anthropic, model: fx-claude, prices: {{input: 3, output: 15, cached_input: 0.3}}}}\n    retry: {{max_attempts: 4, base_delay: 50ms, max_delay: 200ms}}\n{budgets}"
    )
}

fn setup(
    calls: u32,
    script: Script,
    budgets: &str,
) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    setup_with(&calls.to_string(), script, budgets, "")
}

/// Like [`setup`], with the agent's arguments (the number of calls, then `linger` for an agent
/// that keeps running after a refusal, or `shrug` for one that exits 0 after it) and more of
/// its manifest.
fn setup_with(
    args: &str,
    script: Script,
    budgets: &str,
    extra_spec: &str,
) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    ModelProject {
        agent_py: AGENT_PY,
        args,
        extra_spec,
        config: &|url| models_config(url, budgets),
        key: REAL_KEY,
        task: "Call the models",
    }
    .build(script)
}

fn run_with_key(repo: &Repo) -> std::process::Output {
    repo.cmd(&["run"])
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap()
}

#[test]
fn a_sandboxed_agent_reaches_all_three_apis_and_never_sees_the_key() {
    let script = Script::new(vec![
        Step::reply("chat says hello", 11, 4, 0),
        Step {
            status: Some(429),
            retry_after_ms: Some(50),
            ..Step::default()
        },
        Step::reply("responses say hello", 12, 5, 2),
        Step::reply("messages say hello", 13, 6, 3),
    ]);
    let (_rt, fixture, repo) = setup(3, script, "");
    let out = run_with_key(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done");

    let transcript = repo.git(&["show", "agentgrid/task-1:transcript.txt"]);
    for text in [
        "chat says hello",
        "responses say hello",
        "messages say hello",
    ] {
        // Streams arrive as SSE events carrying the text in pieces; the words are all there.
        for word in text.split(' ') {
            assert!(
                transcript.contains(word),
                "{word} missing from {transcript}"
            );
        }
    }
    assert!(
        transcript.contains("data:"),
        "the answers were streamed: {transcript}"
    );

    let status = repo.json(&["status", "--json"]);
    let usage = &status["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 3, "{usage}");
    assert_eq!(usage["input_tokens"], 36);
    assert_eq!(usage["output_tokens"], 15);
    assert!(usage["cost_micros"].as_u64().unwrap() > 0, "{usage}");

    let events = repo.ok(&["events", "--json"]);
    assert!(
        events.contains("\"type\":\"execution_model_waiting\""),
        "the 429 was waited out visibly"
    );
    assert!(events.contains("\"status\":429"));

    // The fixture saw the real key on every request and never the execution's token.
    let env = repo.git(&["show", "agentgrid/task-1:env.txt"]);
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("AGENTGRID_TOKEN="))
        .expect("token in env")
        .to_string();
    let requests = fixture.requests();
    assert!(
        requests.len() >= 4,
        "three calls and one retry: {}",
        requests.len()
    );
    for r in &requests {
        let auth = format!("{:?}", r.headers);
        assert!(
            auth.contains(REAL_KEY),
            "the upstream got the real key: {auth}"
        );
        assert!(!auth.contains(&token), "the token never goes upstream");
    }
    assert_no_key_anywhere(&repo);
}

#[test]
fn a_sandboxed_gemini_client_finds_the_gateway_in_its_own_variables() {
    // The Gemini call goes to an OpenAI-compatible alias: the gateway translates it.
    let script = Script::new(vec![
        Step::reply("chat says hello", 11, 4, 0),
        Step::reply("responses say hello", 12, 5, 2),
        Step::reply("messages say hello", 13, 6, 3),
        Step::reply("gemini says hello", 14, 7, 0),
    ]);
    let (_rt, _fixture, repo) = setup(4, script, "");
    let out = run_with_key(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done");
    let transcript = repo.git(&["show", "agentgrid/task-1:transcript.txt"]);
    assert!(
        transcript.contains("gemini") && transcript.contains("candidates"),
        "the Gemini stream came back in Gemini's shape: {transcript}"
    );
    let env = repo.git(&["show", "agentgrid/task-1:env.txt"]);
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("OPENAI_API_KEY="))
        .expect("the execution's token");
    assert!(env.contains(&format!("GEMINI_API_KEY={token}")), "{env}");
    assert!(
        env.lines()
            .any(|l| l.starts_with("GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:")),
        "{env}"
    );
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 4, "{usage}");
    assert_no_key_anywhere(&repo);
}

#[test]
fn a_budget_stops_the_execution_with_the_providers_error() {
    let script = Script::new(vec![
        Step::reply("first answer", 40, 20, 0),
        Step::reply("never sent", 1, 1, 0),
    ]);
    let (_rt, fixture, repo) = setup(3, script, "  budgets:\n    per_execution: {tokens: 50}\n");
    let out = run_with_key(&repo);
    assert_eq!(repo.task_state(1), "blocked", "{}", stdout(&out));
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(
        show["executions"][0]["state"], "budget_exceeded",
        "{}",
        show["executions"][0]
    );
    assert!(
        show["task"]["summary"].as_str().unwrap().contains("budget"),
        "{}",
        show["task"]
    );
    let transcript = repo.git(&["show", "agentgrid/task-1:transcript.txt"]);
    assert!(
        transcript.contains("HTTP 429") && transcript.contains("insufficient_quota"),
        "{transcript}"
    );
    assert_eq!(
        fixture.requests().len(),
        1,
        "the refused request never went upstream"
    );
    assert_no_key_anywhere(&repo);
}

#[test]
fn an_agent_that_keeps_running_over_budget_is_stopped() {
    let script = Script::new(vec![
        Step::reply("first answer", 40, 20, 0),
        Step::reply("never sent", 1, 1, 0),
    ]);
    let (_rt, _fixture, repo) = setup_with(
        "3 linger",
        script,
        "  budgets:\n    per_execution: {tokens: 50}\n",
        "",
    );
    let started = std::time::Instant::now();
    let out = run_with_key(&repo);
    // The agent would sleep a minute; the engine stops it after a short grace.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the agent was not stopped: {}",
        stdout(&out)
    );
    assert_eq!(repo.task_state(1), "blocked", "{}", stdout(&out));
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["executions"][0]["state"], "budget_exceeded");
    let transcript = repo.git(&["show", "agentgrid/task-1:transcript.txt"]);
    assert!(transcript.contains("HTTP 429"), "{transcript}");
}

#[test]
fn nothing_is_validated_after_a_refusal_over_budget() {
    // The agent shrugs the refusal off and exits 0; its work is not judged, and no second
    // iteration starts: the execution is over.
    let script = Script::new(vec![
        Step::reply("first answer", 40, 20, 0),
        Step::reply("never sent", 1, 1, 0),
    ]);
    let (_rt, _fixture, repo) = setup_with(
        "3 shrug",
        script,
        "  budgets:\n    per_execution: {tokens: 50}\n",
        "  validation:\n    validators:\n      - {name: fine, run: \"true\"}\n",
    );
    let out = run_with_key(&repo);
    assert_eq!(repo.task_state(1), "blocked", "{}", stdout(&out));
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["executions"][0]["state"], "budget_exceeded");
    let events: Vec<serde_json::Value> = repo
        .ok(&["events", "--json"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"execution_finished"), "{kinds:?}");
    assert!(
        !kinds.contains(&"execution_validated"),
        "validators ran after the refusal: {kinds:?}"
    );
}

/// Searches the database, the logs, the run files and every commit of every branch.
fn assert_no_key_anywhere(repo: &Repo) {
    let mut stack = vec![repo.path().join(".agentgrid")];
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
    let history = repo.git(&["log", "--all", "-p"]);
    assert!(
        !history.contains(REAL_KEY),
        "the real key is in the git history"
    );
}
