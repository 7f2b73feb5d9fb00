//! The built-in agent (`runtime: {type: builtin}`) end to end: the real binary runs it in the
//! default sandbox, it talks to the scripted model server through the engine's gateway, and its
//! tools do the work. The model is the adversary here: its path escapes are refused and change
//! nothing outside the workspace, and an API error fails the execution with the reason.

use modelfixture::{Script, Step};
use serde_json::json;

use crate::support::*;

const REAL_KEY: &str = "sk-real-builtin-key-4d2b8e";

fn config(fixture_url: &str, budgets: &str) -> String {
    let origin = fixture_url.trim_end_matches("/v1");
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {{base_delay: 100ms, max_delay: 200ms}}\n  models:\n    providers:\n      fx: {{kind: anthropic, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      claude: {{provider: fx, model: fx-claude, prices: {{input: 3, output: 15}}}}\n{budgets}"
    )
}

fn builtin_agent(extra_spec: &str) -> String {
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: builtin\nspec:\n  runtime:\n    type: builtin\n    model: claude\n  routing: {{default: true}}\n  sandbox: {{network: gateway}}\n  limits: {{max_attempts: 1, timeout: 2m}}\n{extra_spec}"
    )
}

/// A project with the built-in agent and a task, and the fixture answering with the steps
/// `script` gives for the project's directory.
fn setup(
    script: impl FnOnce(&std::path::Path) -> Vec<Step>,
    extra_spec: &str,
) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    setup_with_budgets(script, extra_spec, "")
}

fn setup_with_budgets(
    script: impl FnOnce(&std::path::Path) -> Vec<Step>,
    extra_spec: &str,
    budgets: &str,
) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    let repo = Repo::with_agents(&[("builtin", &builtin_agent(extra_spec))]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = runtime
        .block_on(modelfixture::spawn_with(
            Script::new(script(repo.path())),
            modelfixture::FixtureOptions {
                api_key: Some(REAL_KEY.into()),
                port: 0,
            },
        ))
        .unwrap();
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        config(&fixture.base_url(), budgets),
    )
    .unwrap();
    repo.ok(&["task", "add", "Write the greeting"]);
    (runtime, fixture, repo)
}

fn run(repo: &Repo) -> std::process::Output {
    repo.cmd(&["run"])
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap()
}

/// The request bodies the fixture received, as text.
fn bodies(fixture: &modelfixture::Fixture) -> Vec<String> {
    fixture
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages"))
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

/// The execution's log: the agent's JSON event lines.
fn log_events(repo: &Repo) -> Vec<serde_json::Value> {
    let status = repo.json(&["status", "--json"]);
    let id = status["executions"][0]["id"].to_string();
    repo.ok(&["logs", &id])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("type").is_some())
        .collect()
}

#[test]
fn the_builtin_agent_writes_through_its_tools_and_the_work_is_judged_and_metered() {
    let steps = vec![
        Step::call(
            "I will write the file.",
            "write_file",
            json!({"path": "greeting/hello.txt", "content": "hello wrold\n"}),
            20,
            5,
        ),
        Step::call(
            "Fixing the typo.",
            "edit",
            json!({"path": "greeting/hello.txt", "old": "wrold", "new": "world"}),
            30,
            6,
        ),
        Step::call(
            "An edit that does not match is refused.",
            "edit",
            json!({"path": "greeting/hello.txt", "old": "no such text", "new": "x"}),
            35,
            6,
        ),
        Step::call(
            "Checking.",
            "run_command",
            json!({"command": "cat greeting/hello.txt; echo token=${AGENTGRID_TOKEN:-none}"}),
            40,
            7,
        ),
        Step::reply("The greeting is written.", 50, 8, 0),
    ];
    let spec = "  validation:\n    validators:\n      - {name: greeting, run: \"grep -qx 'hello world' greeting/hello.txt\"}\n";
    let (_rt, fixture, repo) = setup(|_| steps, spec);
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:greeting/hello.txt"]),
        "hello world\n"
    );

    // Each tool's result went back to the model with the next request.
    let bodies = bodies(&fixture);
    assert_eq!(bodies.len(), 5, "{bodies:#?}");
    assert!(
        bodies[1].contains("wrote 12 bytes to `greeting/hello.txt`"),
        "{}",
        bodies[1]
    );
    assert!(
        bodies[3].contains("does not occur in `greeting/hello.txt`"),
        "{}",
        bodies[3]
    );
    assert!(bodies[3].contains("\"is_error\":true"), "{}", bodies[3]);
    // The command ran in the workspace, without the agent's token.
    assert!(bodies[4].contains("hello world"), "{}", bodies[4]);
    assert!(bodies[4].contains("token=none"), "{}", bodies[4]);
    // The real key reached the provider; the agent only ever had its execution token.
    for r in fixture.requests() {
        assert_eq!(r.header("x-api-key"), Some(REAL_KEY));
    }

    let status = repo.json(&["status", "--json"]);
    let usage = &status["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 5, "{usage}");
    assert_eq!(usage["input_tokens"], 175, "{usage}");
    assert_eq!(usage["output_tokens"], 32, "{usage}");
    assert!(usage["cost_micros"].as_u64().unwrap() > 0, "{usage}");

    // The log holds one JSON line per step.
    let events = log_events(&repo);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"result"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "tool").count(),
        4,
        "{kinds:?}"
    );
    let edit = events
        .iter()
        .find(|e| e["type"] == "tool" && e["ok"] == false)
        .expect("the refused edit is an event");
    assert_eq!(edit["name"], "edit");
    assert!(
        edit["error"].as_str().unwrap().contains("does not occur"),
        "{edit}"
    );
    assert_eq!(events.last().unwrap()["usage"]["output_tokens"], 32);
}

#[test]
fn path_escapes_by_the_model_are_refused_and_change_nothing_outside() {
    let (_rt, fixture, repo) = setup(escape_steps, "");
    let outside_abs = repo.path().join("planted-absolute.txt");
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done");
    assert!(!outside_abs.exists());
    assert!(!repo.path().join("planted-relative.txt").exists());
    assert!(!repo.path().join(".agentgrid/planted-relative.txt").exists());
    assert_eq!(repo.git(&["show", "agentgrid/task-1:inside.txt"]), "fine\n");

    let bodies = bodies(&fixture);
    assert_eq!(bodies.len(), 10, "{bodies:#?}");
    // The result of the call before request `i`, which closes that request's conversation.
    let result = |i: usize| {
        let body: serde_json::Value = serde_json::from_str(&bodies[i]).unwrap();
        let last = body["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["content"][0]["type"], "tool_result", "{last}");
        last["content"][0]["content"].as_str().unwrap().to_string()
    };
    assert!(result(1).contains("contains `..`"), "{}", result(1));
    assert!(
        result(2).contains("is outside the workspace"),
        "{}",
        result(2)
    );
    assert!(
        result(3).contains("is outside the workspace"),
        "{}",
        result(3)
    );
    assert!(result(4).contains("contains `..`"), "{}", result(4));
    assert!(
        result(6).contains("symbolic link that leads outside"),
        "{}",
        result(6)
    );
    assert!(
        result(7).contains("symbolic link that leads outside"),
        "{}",
        result(7)
    );
    assert!(result(8).contains("NOT-PLANTED"), "{}", result(8));
    for body in &bodies {
        assert!(
            !body.contains("root:x:0"),
            "the model saw /etc/passwd: {body}"
        );
    }
    let refused = log_events(&repo)
        .into_iter()
        .filter(|e| e["type"] == "tool" && e["ok"] == false)
        .count();
    assert_eq!(refused, 6);
}

/// The model's attempts, in order: `..`, an absolute path into the main checkout, reads of a
/// system file both ways, links it makes itself to places outside, then an honest write.
fn escape_steps(project: &std::path::Path) -> Vec<Step> {
    let outside_abs = project.join("planted-absolute.txt");
    let call = |name: &str, args: serde_json::Value| Step::call("", name, args, 10, 1);
    vec![
        call(
            "write_file",
            json!({"path": "../../../planted-relative.txt", "content": "x"}),
        ),
        call(
            "write_file",
            json!({"path": outside_abs.to_str().unwrap(), "content": "x"}),
        ),
        call("read_file", json!({"path": "/etc/passwd"})),
        call("read_file", json!({"path": "../../etc/passwd"})),
        // Links the model makes itself, to a place the sandbox lets it write and to a file
        // the sandbox lets it read: only the tool's own check refuses them.
        call(
            "run_command",
            json!({"command": "mkdir -p /tmp/outside && ln -s /tmp/outside out && ln -s /etc/passwd pw"}),
        ),
        call(
            "write_file",
            json!({"path": "out/planted.txt", "content": "x"}),
        ),
        call("read_file", json!({"path": "pw"})),
        call(
            "run_command",
            json!({"command": "ls /tmp/outside/planted.txt 2>&1 || echo NOT-PLANTED"}),
        ),
        call(
            "write_file",
            json!({"path": "inside.txt", "content": "fine\n"}),
        ),
        Step::reply("done", 10, 1, 0),
    ]
}

#[test]
fn an_api_error_fails_the_execution_with_the_reason() {
    let steps = vec![
        Step::call(
            "",
            "write_file",
            json!({"path": "a.txt", "content": "a"}),
            10,
            1,
        ),
        Step {
            status: Some(400),
            error_message: Some("scripted refusal: the prompt is too long".into()),
            ..Step::default()
        },
    ];
    let (_rt, fixture, repo) = setup(|_| steps, "");
    let out = run(&repo);
    assert!(!out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["state"], "failed", "{}", show["task"]);
    let summary = show["task"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("HTTP 400")
            && summary.contains("scripted refusal: the prompt is too long"),
        "{summary}"
    );
    assert_eq!(bodies(&fixture).len(), 2);
    let events = log_events(&repo);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{events:?}");
}

#[test]
fn a_budget_refusal_by_the_gateway_ends_the_loop_with_the_reason() {
    // The provider counts far more input than the request's size suggests, so the next
    // request does not fit the execution's budget and the gateway refuses it.
    let steps = vec![
        Step::call(
            "",
            "write_file",
            json!({"path": "a.txt", "content": "a"}),
            4_990,
            5,
        ),
        Step::reply("never sent", 1, 1, 0),
    ];
    let budgets = "  budgets:\n    per_execution: {tokens: 5000}\n";
    let (_rt, fixture, repo) = setup_with_budgets(|_| steps, "", budgets);
    let out = run(&repo);
    assert_eq!(bodies(&fixture).len(), 1, "{}", stdout(&out));
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["executions"][0]["state"], "budget_exceeded", "{show}");
    // The agent itself stopped and said why, rather than being killed.
    let events = log_events(&repo);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{events:?}");
    let message = last["message"].as_str().unwrap();
    assert!(message.contains("budget"), "{message}");
    assert_eq!(last["usage"]["input_tokens"], 4_990);
}

#[test]
fn the_demo_runs_with_the_builtin_agent_against_its_scripted_model() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let out = command(bin())
        .args([
            "demo",
            "--agents",
            "builtin",
            "--dir",
            target.to_str().unwrap(),
        ])
        .env_remove("AGENTGRID_PROJECT")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("every issue is done"), "{text}");
    assert!(
        text.contains("iteration 1: validation failed"),
        "the first slug fix fails and is fed back: {text}"
    );
    assert!(text.contains("resume execution"), "{text}");
    let agentgrid = |args: &[&str]| {
        let out = command(bin())
            .args(args)
            .current_dir(&target)
            .env_remove("AGENTGRID_PROJECT")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let worker = std::fs::read_to_string(target.join(".agentgrid/agents/worker.yaml")).unwrap();
    assert!(worker.contains("type: builtin"), "{worker}");
    assert!(!target.join("agent-scripts").exists());

    // The code came from the model's tool calls, and the parent's branch has it all.
    let git = |args: &[&str]| {
        let out = command("git")
            .args(args)
            .current_dir(&target)
            .output()
            .unwrap();
        stdout(&out)
    };
    assert!(git(&["show", "agentgrid/task-3:textkit/report.py"]).contains("def report(text)"));
    assert!(
        git(&["show", "agentgrid/task-2:textkit/__init__.py"])
            .contains("return \"-\".join(text.lower().split())")
    );
    // Every execution went through the gateway and was metered.
    let status: serde_json::Value =
        serde_json::from_str(&agentgrid(&["status", "--json"])).unwrap();
    let executions = status["executions"].as_array().unwrap();
    assert_eq!(executions.len(), 6, "{status}");
    for e in executions {
        assert!(e["model_usage"]["requests"].as_u64().unwrap() > 0, "{e}");
    }
    let log = agentgrid(&["logs", "1"]);
    assert!(log.contains("\"name\":\"write_file\""), "{log}");
}

#[test]
fn the_builtin_agent_works_through_an_openai_provider_by_way_of_chat_completions() {
    let steps = vec![
        Step::call(
            "I will write the file.",
            "write_file",
            json!({"path": "greeting/hello.txt", "content": "hello world\n"}),
            20,
            5,
        ),
        Step::reply("The greeting is written.", 30, 4, 0),
    ];
    let (_rt, fixture, repo) = setup(|_| steps, "");
    // The same alias, served by an OpenAI provider: the gateway translates the agent's
    // Messages into Chat Completions and the answers back.
    let origin = fixture.base_url().trim_end_matches("/v1").to_owned();
    let config = format!(
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  models:\n    providers:\n      fx: {{kind: openai, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      claude: {{provider: fx, model: fx-gpt, prices: {{input: 3, output: 15}}}}\n"
    );
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), config).unwrap();
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:greeting/hello.txt"]),
        "hello world\n"
    );
    let requests = fixture.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {REAL_KEY}").as_str())
        );
    }
    // The tool's result went back as the `tool` message of the call's id.
    let second = requests[1].json().unwrap();
    let messages = second["messages"].as_array().unwrap();
    let id = messages
        .iter()
        .find_map(|m| m["tool_calls"][0]["id"].as_str())
        .expect("the call is in the history");
    let result = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the tool's result");
    assert_eq!(result["tool_call_id"], id);
    assert!(
        result["content"]
            .as_str()
            .unwrap()
            .contains("greeting/hello.txt"),
        "{result}"
    );
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 50, "{usage}");
    assert_eq!(usage["output_tokens"], 9, "{usage}");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(show.contains("2 request(s); tokens: 50 in"), "{show}");
}

#[test]
fn the_builtin_agent_works_through_a_gemini_provider_in_two_hops() {
    let steps = vec![
        Step::call(
            "I will write the file.",
            "write_file",
            json!({"path": "greeting/hello.txt", "content": "hello world\n"}),
            20,
            5,
        ),
        Step::reply("The greeting is written.", 30, 4, 0),
    ];
    let (_rt, fixture, repo) = setup(|_| steps, "");
    // The alias served by a Gemini provider: the agent's Messages go into Chat Completions and
    // on into the Gemini API, and the answers come back the same way.
    let origin = fixture.base_url().trim_end_matches("/v1").to_owned();
    let config = format!(
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  models:\n    providers:\n      fx: {{kind: gemini, base_url: \"{origin}/v1beta\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      claude: {{provider: fx, model: fx-gem, prices: {{input: 3, output: 15}}}}\n"
    );
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), config).unwrap();
    let out = run(&repo);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:greeting/hello.txt"]),
        "hello world\n"
    );
    let requests = fixture.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert!(r.path.starts_with("/v1beta/models/fx-gem:"), "{}", r.path);
        assert_eq!(r.header("x-goog-api-key"), Some(REAL_KEY));
    }
    // The tool's result went back as the function's response, under the call's name.
    let second = requests[1].json().unwrap();
    let response = second["contents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["parts"].as_array().cloned().unwrap_or_default())
        .find_map(|p| p.get("functionResponse").cloned())
        .expect("the tool's result");
    assert_eq!(response["name"], "write_file", "{response}");
    let usage = &repo.json(&["status", "--json"])["executions"][0]["model_usage"];
    assert_eq!(usage["requests"], 2, "{usage}");
    assert_eq!(usage["input_tokens"], 50, "{usage}");
    assert_eq!(usage["output_tokens"], 9, "{usage}");
}
