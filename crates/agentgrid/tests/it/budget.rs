//! Budgets that hold during a run, through the real binary and a sandboxed agent against the
//! scripted model server: parallel streams raced against an execution budget, an execution
//! that ends over budget without asking again, an agent that hangs up mid-stream, and a
//! stalled stream cut by the idle timeout.

use modelfixture::{Script, Step};

use crate::support::*;

/// Calls the chat API in one of four ways (argument 1) and writes what came back, one answer
/// per line block, into `transcript.txt` on the task branch.
const AGENT_PY: &str = r#"import json, os, sys, threading, urllib.request, urllib.error

base, key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
mode = sys.argv[1]

def request():
    body = {"model": "gpt", "stream": True, "max_tokens": 200,
            "messages": [{"role": "user", "content": "Write a long answer"}]}
    return urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer " + key})

out = []
lock = threading.Lock()

def call():
    try:
        with urllib.request.urlopen(request(), timeout=20) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        text = f"HTTP {e.code}: {e.read().decode()}"
    except Exception as e:
        text = f"ERROR {e!r}"
    with lock:
        out.append(text)

def save():
    with open("transcript.txt", "w") as f:
        f.write("\n=====\n".join(out))

if mode == "parallel":
    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
elif mode == "once":
    call()
elif mode == "hangup":
    r = urllib.request.urlopen(request(), timeout=20)
    out.append(r.readline().decode())
    save()
    # Gone without reading the rest, the usage event included.
    os._exit(0)
save()
"#;

const REAL_KEY: &str = "sk-real-node-key-b5d8e2";

fn config(fixture_url: &str, extra: &str) -> String {
    let origin = fixture_url.trim_end_matches("/v1");
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  models:\n    providers:\n      fx: {{kind: openai-compatible, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      gpt: {{provider: fx, model: fx-gpt, prices: {{input: 2, output: 8}}}}\n{extra}"
    )
}

/// A project whose one agent runs `agent.py MODE`, with `extra` added to the node config, and
/// one task; the fixture answers `script`.
fn setup(
    mode: &str,
    script: Script,
    extra: &str,
) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    ModelProject {
        agent_py: AGENT_PY,
        args: mode,
        extra_spec: "",
        config: &|url| config(url, extra),
        key: REAL_KEY,
        task: "Call the model",
    }
    .build(script)
}

fn run(repo: &Repo) -> std::process::Output {
    repo.cmd(&["run"])
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap()
}

/// The execution's recorded model usage: (requests, input tokens, output tokens).
fn usage(repo: &Repo) -> (u64, u64, u64) {
    let status = repo.json(&["status", "--json"]);
    let usage = &status["executions"][0]["model_usage"];
    let get = |field: &str| usage[field].as_u64().unwrap_or(0);
    (get("requests"), get("input_tokens"), get("output_tokens"))
}

fn execution_state(repo: &Repo) -> String {
    let show = repo.json(&["task", "show", "1", "--json"]);
    show["executions"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn twenty_parallel_streams_cannot_spend_past_the_execution_budget() {
    const BUDGET: u64 = 2_000;
    // Each answer would run to 500 tokens; the agent caps it at 200.
    let step = Step {
        pause_ms: 20,
        ..Step::reply("a long answer indeed", 20, 500, 0)
    };
    let (_rt, fixture, repo) = setup(
        "parallel",
        Script::new(vec![step; 20]),
        &format!("  budgets:\n    per_execution: {{tokens: {BUDGET}}}\n"),
    );
    let out = run(&repo);
    let (requests, input, output) = usage(&repo);
    // Every answer costs no more than it reserved, so the budget holds exactly.
    assert!(
        input + output <= BUDGET,
        "{} tokens were spent against a budget of {BUDGET} in {requests} requests\n{}",
        input + output,
        stdout(&out)
    );
    assert!((1..20).contains(&requests), "{requests} requests");
    assert_eq!(fixture.requests().len() as u64, requests);
    assert_eq!(
        execution_state(&repo),
        "budget_exceeded",
        "{}",
        stdout(&out)
    );
    assert_eq!(repo.task_state(1), "blocked");
    assert!(
        fixture.most_under_way() <= 4,
        "{} requests at once",
        fixture.most_under_way()
    );
}

#[test]
fn an_execution_that_ended_over_its_budget_is_budget_exceeded() {
    // The provider counts far more input than the request's size suggests; the agent makes
    // no request after it, so nothing is ever refused.
    let (_rt, _fixture, repo) = setup(
        "once",
        Script::new(vec![Step::reply("an answer", 400, 30, 0)]),
        "  budgets:\n    per_execution: {tokens: 300}\n",
    );
    let out = run(&repo);
    assert_eq!(usage(&repo), (1, 400, 30));
    assert_eq!(
        execution_state(&repo),
        "budget_exceeded",
        "{}",
        stdout(&out)
    );
    let show = repo.json(&["task", "show", "1", "--json"]);
    let summary = show["executions"][0]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(
        summary.contains("execution budget of 300 tokens was exceeded (430 used)"),
        "{}",
        show["executions"][0]
    );
}

#[test]
fn an_agent_that_hangs_up_mid_stream_is_still_charged() {
    // The usage comes at the end of the stream, after the agent left; the gateway reads on.
    let step = Step {
        pause_ms: 300,
        ..Step::reply("an answer the agent never waits for", 30, 12, 0)
    };
    let (_rt, fixture, repo) = setup("hangup", Script::new(vec![step]), "");
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(fixture.requests().len(), 1);
    let transcript = repo.git(&["show", "agentgrid/task-1:transcript.txt"]);
    assert!(transcript.contains("data:"), "{transcript}");
    assert_eq!(
        usage(&repo),
        (1, 30, 12),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn a_stalled_stream_is_cut_by_the_idle_timeout() {
    // The stream stops after its first word and never goes on.
    let step = Step {
        gate: true,
        ..Step::reply("a stream that stalls", 30, 12, 0)
    };
    let (_rt, _fixture, repo) = setup(
        "once",
        Script::new(vec![step]),
        "    limits: {idle_timeout: 500ms}\n",
    );
    let started = std::time::Instant::now();
    let out = run(&repo);
    let transcript = repo.git(&["show", "agentgrid/task-1:transcript.txt"]);
    assert!(
        transcript.contains("idle timeout") && transcript.contains("\"error\""),
        "the agent got an error event: {transcript}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the stream was cut late"
    );
    // Charged as reserved: the estimated input and the request's whole cap.
    let (requests, input, output) = usage(&repo);
    assert_eq!((requests, output), (1, 200), "{}", stdout(&out));
    assert!(input >= 30, "{input}");
}
