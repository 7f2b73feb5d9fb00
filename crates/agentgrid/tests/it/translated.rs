//! A sandboxed agent speaking Chat Completions to aliases of an `anthropic` and a `gemini`
//! provider, through the real binary's gateway: it asks for far more output than its budget
//! leaves, picks provider headers of its own and has the provider echo the key; the budget's
//! cap reaches the provider in its own field, the real key only in the provider's own header,
//! and nothing of it comes back.

use modelfixture::{Script, Step};

use crate::support::*;

const REAL_KEY: &str = "sk-real-node-key-3d81b0c4f2";

const AGENT_PY: &str = r#"import json, os, urllib.request, urllib.error

base, key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]

def post(body):
    req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer " + key,
                 "x-api-key": "agent-chosen-key", "anthropic-version": "1999-01-01"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}: {e.read().decode()}"

hi = [{"role": "user", "content": "hi"}]
out = [
    post({"model": "claude", "stream": True, "max_tokens": 1000000000, "messages": hi}),
    post({"model": "claude", "messages": [{"role": "user", "content": "show me your key"}]}),
    post({"model": "gem", "stream": True, "max_completion_tokens": 1000000000, "messages": hi}),
]
open("transcript.txt", "w").write("\n---\n".join(out))
"#;

fn config(fixture_url: &str) -> String {
    let origin = fixture_url.trim_end_matches("/v1");
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  models:\n    providers:\n      fx-anthropic: {{kind: anthropic, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n      fx-google: {{kind: gemini, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      claude: {{provider: fx-anthropic, model: fx-claude, prices: {{input: 3, output: 15}}}}\n      gem: {{provider: fx-google, model: fx-gem, prices: {{input: 1, output: 4}}}}\n  budgets:\n    per_execution: {{tokens: 3000}}\n"
    )
}

#[test]
fn a_chat_agent_reaches_anthropic_and_gemini_aliases_within_its_budget_and_never_the_key() {
    let script = Script::new(vec![
        Step::reply("translated hello from claude", 30, 5, 0),
        Step {
            status: Some(400),
            error_message: Some(format!("the key is {REAL_KEY}")),
            ..Step::default()
        },
        Step::reply("translated hello from gemini", 14, 3, 0),
    ]);
    let (_rt, fixture, repo) = ModelProject {
        agent_py: AGENT_PY,
        args: "",
        extra_spec: "",
        config: &config,
        key: REAL_KEY,
        task: "Call the models over Chat Completions",
    }
    .build(script);
    let out = repo
        .cmd(&["run"])
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));

    let transcript = repo.git(&["show", "agentgrid/task-1:transcript.txt"]);
    let parts: Vec<&str> = transcript.split("\n---\n").collect();
    assert_eq!(parts.len(), 3, "{transcript}");
    for (part, model) in [(parts[0], "claude"), (parts[2], "gemini")] {
        assert!(part.trim_end().ends_with("data: [DONE]"), "{part}");
        for word in ["translated", "hello", "from", model] {
            assert!(part.contains(word), "{word} missing from {part}");
        }
    }
    // The provider's error comes back in OpenAI's shape, the key scrubbed out of it.
    assert!(parts[1].starts_with("HTTP 400: "), "{}", parts[1]);
    assert!(parts[1].contains("invalid_request_error"), "{}", parts[1]);
    assert!(parts[1].contains("the key is <redacted>"), "{}", parts[1]);

    let requests = fixture.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    for r in &requests[..2] {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some(REAL_KEY));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    }
    let first = requests[0].json().unwrap();
    assert_eq!(first["model"], "fx-claude");
    let cap = first["max_tokens"].as_u64().unwrap();
    assert!(cap < 3000, "the budget's cap, not the agent's: {first}");
    let gemini = &requests[2];
    assert_eq!(gemini.path, "/v1beta/models/fx-gem:streamGenerateContent");
    assert_eq!(gemini.header("x-goog-api-key"), Some(REAL_KEY));
    assert_eq!(gemini.header("authorization"), None);
    let cap = gemini.json().unwrap()["generationConfig"]["maxOutputTokens"]
        .as_u64()
        .unwrap();
    assert!(cap < 3000, "the budget's cap, not the agent's: {cap}");
    for r in &requests {
        assert!(!r.contains("agent-chosen-key"), "{r:?}");
    }

    // Metered on the providers' own figures; the refused request is not billed.
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 44, "{usage}");
    assert_eq!(usage["output_tokens"], 8, "{usage}");
    assert!(
        repo.ok(&["task", "show", "1"])
            .contains("(2 request(s); tokens: 44 in, 0 of them cached, 8 out)")
    );

    // The key is in nothing agentgrid wrote or the agent committed.
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
    assert!(!repo.git(&["log", "--all", "-p"]).contains(REAL_KEY));
}
