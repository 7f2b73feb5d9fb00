//! State a person can see: timers, the engine, interrupted executions, what is still relevant,
//! cost, diffs and the running status line, each through the real binary.

use std::time::Duration;

use crate::support::*;

/// A backoff long enough that only a reopen can make the task run within a test's time.
const SLOW_RETRY: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  shutdown_grace: 2s\n  retry: {base_delay: 10m, max_delay: 10m}\n";

const FAST_CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

fn project(script: &str, extra_spec: &str, config: &str) -> Repo {
    let spec = format!("  routing: {{default: true}}\n{extra_spec}");
    let repo = Repo::with_agents(&[("coder", &agent("coder", script, &spec))]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), config).unwrap();
    repo
}

/// A project whose one agent runs `script` (with `extra_spec`) under the fast retry, with one
/// task titled `title` run to done.
fn done_once(script: &str, extra_spec: &str, title: &str) -> Repo {
    let repo = project(script, extra_spec, FAST_CONFIG);
    repo.ok(&["task", "add", title]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    repo
}

fn task_json(repo: &Repo, id: u64) -> serde_json::Value {
    repo.tasks()
        .into_iter()
        .find(|t| t["id"] == id)
        .expect("task exists")
}

fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    text.len() == 24 && b[4] == b'-' && b[10] == b'T' && text.ends_with('Z')
}

#[test]
fn a_task_in_backoff_shows_its_next_try_and_a_reopen_runs_it_at_once() {
    // The first execution fails; any later one succeeds.
    let repo = project(
        "[ \"$AGENTGRID_EXECUTION_ID\" -gt 1 ] || exit 3",
        "  limits: {max_attempts: 3}\n",
        SLOW_RETRY,
    );
    repo.ok(&["task", "add", "flaky"]);
    // `--forever`: the engine notices the cancel below at once, and run-until-idle would end
    // there, with nothing left to do, before the reopen is written.
    let mut engine = repo
        .cmd(&["run", "--forever"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "the first try to fail", || {
        task_json(&repo, 1)["timer"]["kind"] == "retry"
    });
    let timer = &task_json(&repo, 1)["timer"];
    assert!(is_rfc3339(timer["at"].as_str().unwrap()), "{timer}");

    let status = repo.ok(&["status"]);
    assert!(status.contains("next try in 10 m, at "), "{status}");
    assert!(
        status.contains(&format!("engine: running (pid {}), since ", engine.id())),
        "{status}"
    );
    let json = repo.json(&["status", "--json"]);
    assert_eq!(json["timers"][0]["task"], 1, "{json}");
    assert_eq!(json["timers"][0]["kind"], "retry", "{json}");
    assert!(
        is_rfc3339(json["timers"][0]["at"].as_str().unwrap()),
        "{json}"
    );
    assert_eq!(json["engine"]["state"], "running", "{json}");
    assert_eq!(json["engine"]["pid"], engine.id(), "{json}");
    assert!(
        is_rfc3339(json["engine"]["since"].as_str().unwrap()),
        "{json}"
    );
    let list = repo.ok(&["task", "list"]);
    assert!(
        list.contains("NEXT") && list.contains("next try in 10 m"),
        "{list}"
    );

    // Stopped and reopened, the task forgets its backoff and the running engine takes it.
    repo.ok(&["task", "cancel", "1"]);
    repo.ok(&["task", "reopen", "1"]);
    assert!(task_json(&repo, 1)["timer"].is_null());
    wait_for(
        Duration::from_secs(30),
        "the reopened task to run without waiting out its old backoff",
        || repo.task_state(1) == "done",
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = engine.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let after = repo.ok(&["status"]);
    assert!(
        after.contains("engine: not running") && !after.contains("timers:"),
        "{after}"
    );
}

#[test]
fn after_a_kill_the_dead_engines_executions_show_as_interrupted() {
    let repo = project("sleep 30", "", FAST_CONFIG);
    repo.ok(&["task", "add", "slow"]);
    let mut engine = repo
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "the execution to run", || {
        repo.json(&["status", "--json"])["active_executions"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    let live = repo.ok(&["status"]);
    assert!(
        live.contains("running:") && !live.contains("interrupted"),
        "{live}"
    );
    engine.kill().unwrap(); // SIGKILL
    engine.wait().unwrap();

    let status = repo.ok(&["status"]);
    assert!(
        status.contains("interrupted (engine gone; the next run recovers them):"),
        "{status}"
    );
    assert!(status.contains("engine: not running"), "{status}");
    assert!(!status.contains("running:"), "{status}");
    let json = repo.json(&["status", "--json"]);
    assert_eq!(json["engine"]["state"], "stopped", "{json}");
    assert_eq!(json["active_executions"][0]["interrupted"], true, "{json}");

    // The next run recovers it; cancelled first, the task does not run again.
    repo.ok(&["task", "cancel", "1"]);
    let out = repo.ok(&["run"]);
    assert!(out.contains("recovered after a crash"), "{out}");
    let json = repo.json(&["status", "--json"]);
    assert!(json["active_executions"].as_array().unwrap().is_empty());
}

#[test]
fn status_forgets_a_failed_validator_once_the_task_is_done() {
    // Iteration 1 fails its validator, iteration 2 passes.
    let repo = done_once(
        "echo $AGENTGRID_ITERATION > it.txt",
        "  limits: {max_iterations: 2, max_attempts: 1}\n  validation:\n    validators:\n      - name: second\n        run: \"grep -q 2 it.txt\"\n",
        "twice",
    );
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(
        show["validations"][0]["passed"], false,
        "the first iteration failed: {show}"
    );
    let status = repo.ok(&["status"]);
    assert!(!status.contains("last failed validator"), "{status}");
    let show = repo.ok(&["task", "show", "1"]);
    assert!(
        show.contains("last validation (execution 1, iteration 2): passed, score 1.00"),
        "{show}"
    );
    assert!(
        show.contains("VALIDATOR")
            && show
                .lines()
                .any(|l| l.starts_with("second") && l.ends_with("passed")),
        "{show}"
    );
    let json = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(json["last_validation"]["iteration"], 2, "{json}");
}

#[test]
fn a_done_tasks_judge_base_is_pruned_at_its_end_and_at_start() {
    let repo = done_once(
        "echo work > work.txt",
        "  validation:\n    validators:\n      - name: present\n        run: \"test -f work.txt\"\n",
        "done soon",
    );
    let judges = repo.path().join(".agentgrid/judges");
    assert!(judges.is_dir(), "the validators ran on a judge tree");
    assert!(
        !judges.join("task-1.base").exists(),
        "pruned when the task ended"
    );

    // Bases left by an older engine: one of a done task, one of a task never made, and one of
    // a failed task, which a person may reopen.
    let failing = agent(
        "failing",
        "exit 3",
        "  routing: {labels: [fail]}\n  limits: {max_attempts: 1}\n",
    );
    std::fs::write(repo.path().join(".agentgrid/agents/failing.yaml"), failing).unwrap();
    repo.ok(&["task", "add", "fails", "--label", "fail"]);
    let _ = repo.run(&["run"]);
    assert_eq!(repo.task_state(2), "failed");
    let base = "0123456789abcdef0123456789abcdef01234567\n";
    for id in [1, 2, 99] {
        std::fs::write(judges.join(format!("task-{id}.base")), base).unwrap();
    }
    let _ = repo.run(&["run"]);
    assert!(!judges.join("task-1.base").exists(), "a done task's base");
    assert!(
        !judges.join("task-99.base").exists(),
        "a base without a task"
    );
    assert!(
        judges.join("task-2.base").exists(),
        "a failed task's base stays for a reopen"
    );
}

/// Calls the chat API once, without streaming.
const CALL_ONCE: &str = r#"import json, os, urllib.request
base, key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
    headers={"content-type": "application/json", "authorization": "Bearer " + key})
with urllib.request.urlopen(req, timeout=20) as r:
    r.read()
"#;

const MODEL_KEY: &str = "sk-real-node-key-visible";

#[test]
fn usage_sums_the_metering_by_task_tree_agent_and_day_and_task_show_names_the_cost() {
    let steps = vec![modelfixture::Step::reply("ok", 100, 10, 40); 10];
    let (_rt, _fixture, repo) = ModelProject {
        agent_py: CALL_ONCE,
        args: "",
        extra_spec: "",
        config: &|url: &str| {
            let origin = url.trim_end_matches("/v1");
            format!(
                "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  models:\n    providers:\n      fx: {{kind: openai-compatible, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      gpt: {{provider: fx, model: fx-gpt, prices: {{input: 2, output: 8}}}}\n"
            )
        },
        key: MODEL_KEY,
        task: "parent",
    }
    .build(modelfixture::Script::new(steps));
    repo.ok(&["task", "add", "child", "--parent", "1"]);
    repo.ok(&["task", "add", "alone"]);
    let out = repo
        .cmd(&["run"])
        .env("FIXTURE_KEY", MODEL_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let by = |group: &str| repo.json(&["usage", "--by", group, "--json"]);
    let requests = |report: &serde_json::Value, key: &str| {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .map_or(0, |r| r["requests"].as_u64().unwrap())
    };
    let tasks = by("task");
    let total = tasks["total"]["requests"].as_u64().unwrap();
    assert!(total >= 3, "one request per task at least: {tasks}");
    for key in ["#1", "#2", "#3"] {
        assert!(requests(&tasks, key) >= 1, "{key}: {tasks}");
    }
    assert_eq!(tasks["rows"][0]["title"], "parent", "{tasks}");
    assert_eq!(
        tasks["total"]["input_tokens"].as_u64().unwrap(),
        100 * total,
        "{tasks}"
    );
    assert!(
        tasks["total"]["cost_micros"].as_u64().unwrap() > 0,
        "{tasks}"
    );

    let trees = by("tree");
    assert_eq!(
        requests(&trees, "#1"),
        requests(&tasks, "#1") + requests(&tasks, "#2"),
        "a tree sums the parent with its sub-task: {trees}"
    );
    assert_eq!(requests(&trees, "#2"), 0, "a sub-task is no tree: {trees}");
    assert_eq!(requests(&trees, "#3"), requests(&tasks, "#3"));
    let agents = by("agent");
    assert_eq!(requests(&agents, "caller"), total, "{agents}");
    let days = by("day");
    assert_eq!(days["total"], tasks["total"], "{days}");
    let day = days["rows"][0]["key"].as_str().unwrap();
    assert!(day.len() == 10 && day.as_bytes()[4] == b'-', "{days}");

    let table = repo.ok(&["usage", "--by", "tree"]);
    assert!(
        table.contains("TREE") && table.contains("COST") && table.contains("total"),
        "{table}"
    );
    let show = repo.json(&["task", "show", "3", "--json"]);
    assert_eq!(show["usage"]["requests"], requests(&tasks, "#3"), "{show}");
    let human = repo.ok(&["task", "show", "3"]);
    assert!(
        human.contains("  cost:      $") && human.contains("tokens: 100 in, 40 of them cached"),
        "{human}"
    );
}

#[test]
fn usage_without_requests_says_where_they_come_from() {
    let repo = project("true", "", FAST_CONFIG);
    let out = repo.ok(&["usage"]);
    assert!(out.contains("no model requests recorded"), "{out}");
    let json = repo.json(&["usage", "--by", "day", "--json"]);
    assert_eq!(json["rows"], serde_json::json!([]));
    assert_eq!(json["total"]["requests"], 0);
}

#[test]
fn diff_shows_the_branch_against_its_base_and_task_show_its_distance() {
    // The agent also names a diff driver in its .gitattributes: host git runs no driver the
    // worktree names (`--no-ext-diff`, no configuration from the worktree).
    let repo = project(
        "echo hello > new.txt; echo '* diff=evil' > .gitattributes",
        "",
        FAST_CONFIG,
    );
    repo.ok(&["task", "add", "greet"]);
    repo.ok(&["task", "add", "not yet", "--label", "nobody-takes-this"]);
    let none = repo.run(&["diff", "2"]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("task #2 has no branch yet"),
        "{}",
        stderr(&none)
    );
    let missing = repo.run(&["diff", "9"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("task #9 does not exist"));

    repo.ok(&["task", "cancel", "2"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    // The checkout's HEAD (the default base) moves on after the task started.
    std::fs::write(repo.path().join("later.txt"), "later\n").unwrap();
    repo.git(&["add", "later.txt"]);
    repo.git(&["commit", "-q", "-m", "later on main"]);

    let patch = repo.ok(&["diff", "1"]);
    assert!(
        patch.contains("+++ b/new.txt") && patch.contains("+hello"),
        "{patch}"
    );
    assert!(
        !patch.contains("later.txt"),
        "main's own commits are not the task's: {patch}"
    );
    let stat = repo.ok(&["diff", "1", "--stat"]);
    assert!(
        stat.contains("new.txt") && stat.contains("files changed") && !stat.contains("+hello"),
        "{stat}"
    );
    let show = repo.ok(&["task", "show", "1"]);
    assert!(
        show.contains("distance:  1 commit(s) ahead of HEAD, 1 behind"),
        "{show}"
    );
    let json = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(json["branch_distance"]["ahead"], 1, "{json}");
    assert_eq!(json["branch_distance"]["behind"], 1, "{json}");
    assert_eq!(json["branch_distance"]["base"], "HEAD", "{json}");
    let json = repo.json(&["task", "show", "2", "--json"]);
    assert!(json["branch_distance"].is_null(), "{json}");
}

/// Clears the terminal's current line: how the status line is redrawn in place.
const CLEAR: &str = "\r\x1b[2K";

#[test]
fn run_redraws_a_status_line_in_place_on_a_terminal() {
    use std::io::Read;
    let repo = project("sleep 3", "", FAST_CONFIG);
    repo.ok(&["task", "add", "slow"]);
    repo.ok(&["task", "add", "later", "--blocked-by", "1"]);
    let pty = nix::pty::openpty(None, None).unwrap();
    // Colour on a terminal is another test's subject; plain text keeps this one about the line.
    let mut engine = repo
        .cmd(&["run", "--color", "never"])
        .stdout(std::process::Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(pty.slave))
        .spawn()
        .unwrap();
    // The terminal's other end, read until the engine has gone (EIO once no writer is left).
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let status = engine.wait().unwrap();
    let screen = reader.join().unwrap();
    assert!(status.success(), "{screen}");
    // Redrawn in place while the first task ran: one running, one queued behind it.
    let drawn: Vec<&str> = screen
        .split(CLEAR)
        .skip(1)
        .filter(|s| s.contains(" elapsed · "))
        .collect();
    assert!(drawn.len() >= 2, "redrawn at least twice: {screen:?}");
    assert!(
        drawn.iter().any(|l| l.starts_with("0:0")
            && l.contains("1 running · 1 queued · 0 waiting · $0.0000 spent")),
        "{screen:?}"
    );
    // A progress line is printed on a cleared line, never after the status text.
    for piece in screen.split("\r\n").flat_map(|line| line.split(CLEAR)) {
        assert!(
            !(piece.contains(" spent") && piece.contains('#')),
            "a progress line ran into the status line: {piece:?}"
        );
    }
    assert!(
        screen.contains(&format!(" spent{CLEAR}✓ #1 done")),
        "the line is cleared before a progress line: {screen:?}"
    );
    // Cleared at the end: the summary follows a cleared line, and no status text after it.
    let last_clear = screen.rfind(CLEAR).unwrap();
    let after = &screen[last_clear + CLEAR.len()..];
    assert!(!after.contains(" elapsed · "), "{after:?}");
    assert!(after.contains("execution(s) started"), "{after:?}");
}

#[test]
fn run_prints_plain_status_lines_when_not_on_a_terminal() {
    let repo = project("sleep 2.5", "", FAST_CONFIG);
    repo.ok(&["task", "add", "slow"]);
    let out = repo.run(&["run", "--status-every", "1"]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(!err.contains(CLEAR) && !err.contains('\r'), "{err:?}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(" elapsed · ")).collect();
    assert!(lines.len() >= 2, "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("1 running · 0 queued · 0 waiting")),
        "{err}"
    );
    // The default, on a pipe, is one line a minute: none in a run this short.
    let repo = project("true", "", FAST_CONFIG);
    repo.ok(&["task", "add", "quick"]);
    let out = repo.run(&["run"]);
    assert!(!stderr(&out).contains(" elapsed · "), "{}", stderr(&out));
}
