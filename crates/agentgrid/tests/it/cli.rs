//! The command line as a new user meets it: init, the tracker, validation, mistakes.

use crate::support::*;

#[test]
fn init_refuses_outside_a_git_repository() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(bin())
        .arg("init")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not inside a git repository"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join(".agentgrid").exists(),
        "nothing was created"
    );
}

#[test]
fn init_creates_the_project_and_is_idempotent() {
    let repo = Repo::new();
    let first = repo.ok(&["init"]);
    assert!(first.contains("created .agentgrid/config.yaml"), "{first}");
    assert!(repo.path().join(".agentgrid/agentgrid.db").exists());
    let agents: Vec<_> = std::fs::read_dir(repo.path().join(".agentgrid/agents"))
        .unwrap()
        .collect();
    assert_eq!(agents.len(), 1, "one example agent");
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec: {}\n",
    )
    .unwrap();
    let second = repo.ok(&["init"]);
    assert!(
        second.contains("kept    .agentgrid/config.yaml"),
        "{second}"
    );
    let config = std::fs::read_to_string(repo.path().join(".agentgrid/config.yaml")).unwrap();
    assert_eq!(
        config, "apiVersion: agentgrid.dev/v1\nkind: Config\nspec: {}\n",
        "init never overwrites"
    );
    // The manifests load; an example agent left as init wrote it is named as still to be set
    // (see mistakes.rs), one init wrote for a CLI it found passes.
    let out = repo.run(&["validate"]);
    let err = stderr(&out);
    assert!(
        out.status.success()
            || (err.contains("the manifests themselves are valid")
                && err.contains("still the example")),
        "{err}"
    );
}

#[test]
fn commands_outside_a_project_say_to_run_init() {
    let repo = Repo::new();
    let out = repo.run(&["task", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("run `agentgrid init`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tasks_are_added_listed_shown_edited_and_linked() {
    let repo = Repo::new();
    repo.ok(&["init"]);
    repo.ok(&[
        "task",
        "add",
        "Build the exporter",
        "--label",
        "backend",
        "--priority",
        "1",
    ]);
    let child = repo.json(&["task", "add", "Write CSV rows", "--parent", "1", "--json"]);
    assert_eq!(child["parent"], 1);
    assert_eq!(child["depth"], 1);
    repo.ok(&["task", "add", "Document it", "--blocked-by", "2"]);

    let tasks = repo.tasks();
    assert_eq!(tasks.len(), 3);
    for field in ["id", "title", "state", "parent", "labels"] {
        assert!(
            tasks[0].get(field).is_some(),
            "task list --json has {field}"
        );
    }
    assert_eq!(tasks[0]["labels"], serde_json::json!(["backend"]));
    assert_eq!(tasks[2]["blocked_by"], serde_json::json!([2]));
    assert_eq!(tasks[0]["state"], "open");

    repo.ok(&[
        "task",
        "edit",
        "1",
        "--title",
        "Build the CSV exporter",
        "--add-label",
        "csv",
        "--remove-label",
        "backend",
    ]);
    let shown = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(shown["task"]["title"], "Build the CSV exporter");
    assert_eq!(shown["task"]["labels"], serde_json::json!(["csv"]));
    assert_eq!(shown["children"].as_array().unwrap().len(), 1);

    let cycle = repo.run(&["task", "dep", "add", "2", "3"]);
    assert_eq!(cycle.status.code(), Some(2), "a cycle is refused");
    assert!(stderr(&cycle).contains("cycle"), "{}", stderr(&cycle));

    repo.ok(&["task", "cancel", "1"]);
    assert_eq!(repo.task_state(1), "cancelled");
    assert_eq!(
        repo.task_state(2),
        "cancelled",
        "cancel reaches open sub-tasks"
    );
    repo.ok(&["task", "reopen", "1"]);
    assert_eq!(repo.task_state(1), "open");
}

#[test]
fn mistakes_get_clear_errors_and_change_nothing() {
    let repo = Repo::new();
    repo.ok(&["init"]);
    let before = repo.ok(&["events", "--json"]);
    for (args, expect) in [
        (vec!["task", "show", "99"], "task #99 does not exist"),
        (vec!["task", "add", "  "], "needs a title"),
        (vec!["task", "add", "x", "--priority", "7"], "out of range"),
        (
            vec!["task", "add", "x", "--label", "has space"],
            "not allowed",
        ),
        (vec!["task", "add", "x", "--parent", "42"], "#42"),
        (vec!["task", "show", "abc"], "is not a task id"),
        (
            vec!["task", "list", "--state", "finished"],
            "expected one of",
        ),
        (vec!["task", "edit", "1"], "does not exist"),
        (vec!["task", "nudge", "5"], "#5"),
        (vec!["logs", "3"], "execution 3 does not exist"),
        (vec!["task", "frobnicate"], "unrecognized subcommand"),
        (vec!["run", "--fast"], "unexpected argument"),
    ] {
        let out = repo.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expect),
            "{args:?}: expected {expect:?} in {}",
            stderr(&out)
        );
    }
    assert_eq!(
        repo.ok(&["events", "--json"]),
        before,
        "no event was recorded"
    );
}

#[test]
fn validate_reports_every_problem_with_its_place() {
    let broken = "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: Bad Name\nspec:\n  runtime:\n    type: command\n    command: []\n  prompt: \"{{ task.nope }}\"\n  limits:\n    timeout: soon\n";
    let repo = Repo::with_agents(&[("bad", broken)]);
    let out = repo.run(&["validate"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains("bad.yaml:4:"), "the name's line: {text}");
    assert!(text.contains("bad.yaml:11:"), "the timeout's line: {text}");
    let out = repo.run(&["validate", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert!(json["problems"].as_array().unwrap().len() >= 3, "{json}");
    let run = repo.run(&["run"]);
    assert_eq!(run.status.code(), Some(2), "run refuses invalid manifests");
    assert!(
        stderr(&run).contains("agentgrid validate"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn the_demo_runs_offline_to_a_clean_summary() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let out = command(bin())
        .args(["demo", "--dir", target.to_str().unwrap()])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("every issue is done"), "{text}");
    assert!(
        text.contains("iteration 1: validation failed"),
        "one worker fails first: {text}"
    );
    assert!(
        text.contains("resume execution"),
        "the parent is resumed: {text}"
    );
    // The project stays usable with the normal CLI.
    let list = command(bin())
        .args(["task", "list", "--json"])
        .current_dir(&target)
        .output()
        .unwrap();
    let tasks: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(tasks.len(), 5);
    assert!(tasks.iter().all(|t| t["state"] == "done"));
    let log = command("git")
        .args(["log", "--oneline", "agentgrid/task-3"])
        .current_dir(&target)
        .output()
        .unwrap();
    let log = stdout(&log);
    assert!(
        log.contains("merge #4") && log.contains("merge #5"),
        "children merged into the parent branch: {log}"
    );
}

#[test]
fn init_writes_an_agent_for_a_cli_it_finds_on_path() {
    let repo = Repo::new();
    let bin_dir = tempfile::tempdir().unwrap();
    let fake = bin_dir.path().join("aider");
    std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&fake).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin_dir.path().display());
    let out = repo.cmd(&["init"]).env("PATH", &path).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest =
        std::fs::read_to_string(repo.path().join(".agentgrid/agents/aider.yaml")).unwrap();
    assert!(manifest.contains("type: aider"), "{manifest}");
    let out = repo.cmd(&["validate"]).env("PATH", &path).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A fake CLI named `binary` in `dir`: it only has to exist for `init` to find it.
fn fake_cli(dir: &std::path::Path, binary: &str) {
    let fake = dir.join(binary);
    std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn init_writes_a_working_agent_per_cli_with_the_provider_of_the_key_it_finds() {
    let repo = Repo::new();
    let bin_dir = tempfile::tempdir().unwrap();
    fake_cli(bin_dir.path(), "claude");
    fake_cli(bin_dir.path(), "codex");
    fake_cli(bin_dir.path(), "gemini");
    fake_cli(bin_dir.path(), "opencode");
    fake_cli(bin_dir.path(), "aider");
    let path = format!("{}:/usr/bin:/bin", bin_dir.path().display());
    let out = repo
        .cmd(&["init"])
        .env("PATH", &path)
        .env_remove("OPENAI_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env("ANTHROPIC_API_KEY", "sk-test-not-written")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The gateway translates Responses (Codex), Chat Completions (OpenCode, Aider) and the
    // Gemini API (Gemini CLI) for an Anthropic provider: their agents work as written, with
    // no note.
    for cli in ["Codex", "Gemini CLI", "OpenCode", "Aider"] {
        assert!(
            !stdout(&out).contains(&format!("{cli} reaches")),
            "{}",
            stdout(&out)
        );
    }
    let agents = repo.path().join(".agentgrid/agents");
    for (file, kind) in [
        ("aider.yaml", "type: aider"),
        ("opencode.yaml", "type: opencode"),
        ("gemini.yaml", "type: gemini"),
    ] {
        let manifest = std::fs::read_to_string(agents.join(file)).unwrap();
        assert!(
            manifest.contains(kind) && manifest.contains("network: gateway"),
            "{manifest}"
        );
    }
    let opencode = std::fs::read_to_string(agents.join("opencode.yaml")).unwrap();
    assert!(opencode.contains("type: opencode"), "{opencode}");
    let gemini = std::fs::read_to_string(agents.join("gemini.yaml")).unwrap();
    assert!(gemini.contains("type: gemini"), "{gemini}");
    assert!(!gemini.contains("--yolo"), "{gemini}");
    assert!(gemini.contains("network: gateway"), "{gemini}");
    let claude = std::fs::read_to_string(agents.join("claude.yaml")).unwrap();
    assert!(claude.contains("type: claude"), "{claude}");
    assert!(claude.contains("network: gateway"), "{claude}");
    assert!(claude.contains("default: true"), "{claude}");
    let codex = std::fs::read_to_string(agents.join("codex.yaml")).unwrap();
    assert!(!codex.contains("--full-auto"), "{codex}");
    assert!(codex.contains("type: codex"), "{codex}");
    assert!(codex.contains("network: gateway"), "{codex}");
    assert!(codex.contains("labels: [codex]"), "{codex}");
    let config = std::fs::read_to_string(repo.path().join(".agentgrid/config.yaml")).unwrap();
    assert!(
        config.contains("kind: anthropic") && config.contains("api_key_env: ANTHROPIC_API_KEY"),
        "{config}"
    );
    assert!(
        !config.contains("sk-test-not-written"),
        "the key itself is never written"
    );
    // What init wrote passes validate where the CLIs and the key are, as they were for init.
    let out = repo
        .cmd(&["validate"])
        .env("PATH", &path)
        .env("ANTHROPIC_API_KEY", "sk-test-not-written")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // With only OpenAI's key, the provider is OpenAI's, at its versioned base URL, which
    // is what the codex agent's Responses requests go to.
    let openai = Repo::new();
    let out = openai
        .cmd(&["init"])
        .env("PATH", &path)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env("OPENAI_API_KEY", "sk-test-not-written")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("Codex reaches"), "{}", stdout(&out));
    assert!(
        !stdout(&out).contains("Gemini CLI reaches"),
        "{}",
        stdout(&out)
    );
    let config = std::fs::read_to_string(openai.path().join(".agentgrid/config.yaml")).unwrap();
    assert!(
        config.contains(r#"openai: {kind: openai, base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}"#),
        "{config}"
    );
    let out = openai
        .cmd(&["validate"])
        .env("PATH", &path)
        .env("OPENAI_API_KEY", "sk-test-not-written")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // With only Gemini's key, every CLI reaches the Gemini provider too.
    let gemini = Repo::new();
    let out = gemini
        .cmd(&["init"])
        .env("PATH", &path)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env("GEMINI_API_KEY", "sk-test-not-written")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for cli in ["Codex", "Gemini CLI", "OpenCode", "Aider"] {
        assert!(
            !stdout(&out).contains(&format!("{cli} reaches")),
            "{}",
            stdout(&out)
        );
    }

    // Without any key there is no `models:` section, and init says what to do.
    let bare = Repo::new();
    let out = bare
        .cmd(&["init"])
        .env("PATH", &path)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .output()
        .unwrap();
    assert!(stdout(&out).contains("No model key"), "{}", stdout(&out));
    let config = std::fs::read_to_string(bare.path().join(".agentgrid/config.yaml")).unwrap();
    assert!(!config.contains("models:"), "{config}");
}

#[test]
fn events_resume_from_any_position() {
    let repo = Repo::new();
    repo.ok(&["init"]);
    repo.ok(&["task", "add", "one"]);
    repo.ok(&["task", "add", "two"]);
    repo.ok(&["task", "nudge", "1"]);
    let all: Vec<serde_json::Value> = repo
        .ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 3);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let after: Vec<serde_json::Value> = repo
        .ok(&["events", "--json", "--from", "1"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(after, all[1..].to_vec());
    let text = repo.ok(&["events", "--task", "1"]);
    assert!(
        text.contains("created \"one\"")
            && text.contains("nudged by cli")
            && !text.contains("\"two\""),
        "{text}"
    );
}

#[test]
fn status_names_agents_that_opted_out_of_isolation() {
    let open = agent(
        "open",
        "true",
        "  routing: {default: true}\n  sandbox: {filesystem: none, network: host}\n",
    );
    let tight = agent("tight", "true", "  routing: {labels: [x]}\n");
    let repo = Repo::with_agents(&[("open", &open), ("tight", &tight)]);
    let text = repo.ok(&["status"]);
    assert!(
        text.contains("warning: agent open runs with filesystem: none (no filesystem isolation) and network: host (full network access)"),
        "{text}"
    );
    assert!(!text.contains("agent tight"), "{text}");
    let json = repo.json(&["status", "--json"]);
    assert_eq!(
        json["sandbox_relaxations"]["open"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn tasks_are_imported_from_json_lines_all_or_nothing() {
    let repo = Repo::new();
    repo.ok(&["init"]);
    let good = repo.path().join("tasks.jsonl");
    std::fs::write(
        &good,
        "{\"title\": \"Parse the CSV\", \"labels\": [\"backend\"], \"priority\": 1}\n\
         \n\
         {\"title\": \"Write the docs\", \"body\": \"For users.\", \"blocked_by\": [1]}\n\
         {\"title\": \"Ask the worker\", \"agent\": \"worker\"}\n",
    )
    .unwrap();
    let out = repo.ok(&["task", "import", good.to_str().unwrap()]);
    assert!(out.contains("imported 3 tasks: #1 to #3"), "{out}");
    let tasks = repo.tasks();
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[0]["labels"], serde_json::json!(["backend"]));
    assert_eq!(tasks[0]["priority"], 1);
    assert_eq!(tasks[1]["body"], "For users.");
    assert_eq!(tasks[1]["blocked_by"], serde_json::json!([1]));
    // `worker` is the agent `init` defines; an unknown one is refused (see conventions.rs).
    assert_eq!(tasks[2]["agent"], "worker");
    assert!(tasks.iter().all(|t| t["state"] == "open"));

    // One transaction for the whole file: the three tasks are three events in a row.
    let events: Vec<serde_json::Value> = repo
        .ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["type"] == "task_created"));

    // Standard input, with the created tasks as JSON.
    let mut cmd = repo.cmd(&["task", "import", "--json"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"title\": \"From stdin\", \"parent\": 1}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created[0]["id"], 4);
    assert_eq!(created[0]["parent"], 1);

    // A file with bad lines creates nothing and names every bad line.
    let bad = repo.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"title\": \"Fine on its own\"}\n\
         {\"titel\": \"misspelt\"}\n\
         not json\n\
         {\"title\": \"Too urgent\", \"priority\": 9}\n",
    )
    .unwrap();
    let out = repo.run(&["task", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("nothing was imported"), "{err}");
    assert!(err.contains("bad.jsonl:2: unknown field `titel`"), "{err}");
    assert!(err.contains("bad.jsonl:3: not valid JSON"), "{err}");
    assert!(
        err.contains("bad.jsonl:4: priority 9 is out of range"),
        "{err}"
    );
    assert!(!err.contains("bad.jsonl:1:"), "{err}");

    // A line the store refuses (its parent does not exist) also stops the whole file.
    std::fs::write(
        &bad,
        "{\"title\": \"Fine on its own\"}\n{\"title\": \"Orphan\", \"parent\": 99}\n",
    )
    .unwrap();
    let out = repo.run(&["task", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bad.jsonl:2: the parent task #99 does not exist"),
        "{err}"
    );
    assert_eq!(
        repo.tasks().len(),
        4,
        "nothing from the bad files was created"
    );
}

#[test]
fn a_run_records_every_step_of_an_execution_as_an_event_in_order() {
    let repo = Repo::with_agents(&[(
        "noop",
        &agent("noop", "true", "  routing: {default: true}\n"),
    )]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  workspace: {enabled: false}\n",
    )
    .unwrap();
    repo.ok(&["task", "add", "one"]);
    repo.ok(&["task", "add", "two"]);
    repo.ok(&["run", "--quiet"]);
    let events: Vec<serde_json::Value> = repo
        .ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for execution in [1, 2] {
        let steps: Vec<String> = events
            .iter()
            .filter(|e| e["entity"] == "execution" && e["entity_id"] == execution)
            .map(|e| match e["type"].as_str().unwrap() {
                "execution_state_changed" => format!("-> {}", e["to"].as_str().unwrap()),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(
            steps,
            [
                "execution_created",
                "-> preparing",
                "-> running",
                "execution_process_started",
                "execution_process_exited",
                "-> succeeded",
                "execution_finished",
            ],
            "execution {execution}"
        );
    }
    // The log numbers every event once, in order, however the engine batched its writes.
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(repo.task_state(2), "done");
}

#[test]
fn a_task_list_with_a_limit_shows_the_newest_and_says_more_match() {
    let repo = Repo::new();
    repo.ok(&["init"]);
    let lines: String = (1..=5)
        .map(|i| format!("{{\"title\": \"task {i}\"}}\n"))
        .collect();
    let file = repo.path().join("tasks.jsonl");
    std::fs::write(&file, lines).unwrap();
    repo.ok(&["task", "import", file.to_str().unwrap()]);
    let listed = repo.json(&["task", "list", "--limit", "2", "--json"]);
    let ids: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [4, 5]);
    let text = repo.ok(&["task", "list", "--limit", "2"]);
    assert!(
        text.contains("task 5") && !text.contains("task 3"),
        "{text}"
    );
    assert!(
        text.contains("(the newest 2 shown; older tasks match: raise --limit)"),
        "{text}"
    );
    let all = repo.ok(&["task", "list", "--limit", "5"]);
    assert!(
        all.contains("task 1") && !all.contains("older tasks match"),
        "{all}"
    );
    // A limit of nothing would list nothing and then suggest adding a task: refused instead.
    let zero = repo.run(&["task", "list", "--limit", "0"]);
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
    assert!(stderr(&zero).contains("--limit"), "{}", stderr(&zero));
}

#[test]
fn init_takes_a_providers_base_url_from_its_usual_variable_and_refuses_a_forged_one() {
    let init_with = |base_url: &str| {
        let repo = Repo::new();
        let out = repo
            .cmd(&["init"])
            .env("PATH", "/usr/bin:/bin")
            .env("ANTHROPIC_API_KEY", "sk-test-not-written")
            .env("ANTHROPIC_BASE_URL", base_url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read_to_string(repo.path().join(".agentgrid/config.yaml")).unwrap()
    };
    let config = init_with("https://llm-proxy.example.com/anthropic/");
    assert!(
        config.contains(r#"anthropic: {kind: anthropic, base_url: "https://llm-proxy.example.com/anthropic", api_key_env: ANTHROPIC_API_KEY}"#),
        "{config}"
    );
    // A value that would write more YAML than a URL is not written: the provider's own URL is.
    for forged in [
        "https://x\", api_key_env: PATH, y: \"",
        "https://x}\n  evil: 1",
        "file:///etc/passwd",
    ] {
        let config = init_with(forged);
        assert!(
            config.contains(
                r#"base_url: "https://api.anthropic.com", api_key_env: ANTHROPIC_API_KEY}"#
            ),
            "{forged:?}: {config}"
        );
        assert!(
            !config.contains("evil") && !config.contains("api_key_env: PATH"),
            "{config}"
        );
    }
}
