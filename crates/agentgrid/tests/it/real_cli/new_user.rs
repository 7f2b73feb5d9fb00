//! What a new user does, with the real CLIs: `agentgrid init` in a repository where the CLIs
//! are on `PATH` and an Anthropic key (and, standing in for Anthropic's API, the fixture's URL
//! as `ANTHROPIC_BASE_URL`) is in the environment, `task add`, `run`. Nothing is written by
//! hand: the agents and the `models:` section are init's. Codex reaches the Anthropic provider
//! in two hops (Responses into Chat Completions into Messages).

use modelfixture::{Script, Step};

use super::*;

#[test]
fn init_task_add_run_with_only_an_anthropic_key_works_for_claude_code_and_codex() {
    let (Some(claude), Some(_codex)) = (installed("claude", "claude"), installed("codex", "codex"))
    else {
        return;
    };
    let bin_dir = claude.parent().unwrap().to_path_buf();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let script = Script::new(vec![
        Step::call(
            "I will write the file.",
            "Bash",
            serde_json::json!({"command": "printf 'hi from claude\\n' > hello.txt", "description": "write hello.txt"}),
            100,
            10,
        ),
        Step::reply("Done.", 120, 5, 0),
        Step::call(
            "I will write the file.",
            "exec_command",
            serde_json::json!({"cmd": "printf 'hi from codex\\n' > hello.txt"}),
            100,
            10,
        ),
        Step::reply("Done.", 120, 5, 0),
    ]);
    let fixture = runtime
        .block_on(modelfixture::spawn_with(
            script,
            modelfixture::FixtureOptions {
                api_key: Some(REAL_KEY.into()),
                port: 0,
            },
        ))
        .unwrap();
    let origin = fixture.base_url().trim_end_matches("/v1").to_owned();
    let path = format!("{}:/usr/bin:/bin", bin_dir.display());
    let repo = Repo::new();
    let as_user = |args: &[&str]| {
        repo.cmd(args)
            .env("PATH", &path)
            .env("ANTHROPIC_API_KEY", REAL_KEY)
            .env("ANTHROPIC_BASE_URL", &origin)
            .output()
            .unwrap()
    };
    let out = as_user(&["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(repo.path().join(".agentgrid/config.yaml")).unwrap();
    assert!(
        config.contains(&format!(
            "base_url: \"{origin}\", api_key_env: ANTHROPIC_API_KEY"
        )),
        "{config}"
    );
    assert!(
        !config.contains(REAL_KEY),
        "init writes the key's name, never the key"
    );

    for (n, agent, wrote) in [
        (1, "claude", "hi from claude\n"),
        (2, "codex", "hi from codex\n"),
    ] {
        let out = as_user(&["task", "add", "Write hello.txt", "--agent", agent]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = as_user(&["run"]);
        assert!(
            out.status.success(),
            "{agent}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(repo.task_state(n), "done", "{agent}: {}", stdout(&out));
        assert_eq!(
            repo.git(&["show", &format!("agentgrid/task-{n}:hello.txt")]),
            wrote,
            "{agent}"
        );
    }
    let requests = fixture.requests();
    let model_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/v1/messages")
        .collect();
    assert_eq!(
        model_requests.len(),
        4,
        "{:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_no_key_anywhere(&repo);
}
