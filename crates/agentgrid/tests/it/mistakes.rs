//! Mistakes a new user makes, caught before they cost a retry: `validate` names each one with
//! the place to change and what to do, `run` warns about what agents will not see, and a task
//! that cannot start for a reason of the configuration fails at once.

use crate::support::*;

/// A PATH built by the test, so that what resolves does not depend on the machine's: the
/// system directories (git, sh) and nothing from a home.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

const RETRYING_CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// An agent whose command is `program` itself, not a shell line.
fn typo_agent(name: &str, program: &str) -> String {
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: {name}\nspec:\n  runtime:\n    type: command\n    command: [\"{program}\", \"-p\"]\n  routing: {{default: true}}\n  limits: {{max_attempts: 3}}\n"
    )
}

#[test]
fn validate_names_each_mistake_of_a_new_user_before_anything_runs() {
    let repo = Repo::with_agents(&[("coder", &typo_agent("coder", "claud-cod"))]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  workspace:\n    base: trunk\n  models:\n    providers:\n      anthropic:\n        kind: anthropic\n        base_url: https://api.anthropic.com\n        api_key_env: AGENTGRID_TEST_UNSET_KEY\n",
    )
    .unwrap();
    std::fs::write(repo.path().join("README.md"), "# changed, not committed\n").unwrap();
    let out = repo
        .cmd(&["validate"])
        .env("PATH", PATH)
        .env_remove("AGENTGRID_TEST_UNSET_KEY")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let agent_file = repo.path().join(".agentgrid/agents/coder.yaml");
    let agent_file = agent_file.canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "{}:8:15: error: agent `coder`: `claud-cod` is on no directory of the PATH",
            agent_file.display()
        )) && err.contains("fix its name"),
        "the typo is named at its line and column, with what to do:\n{err}"
    );
    assert!(
        err.contains("config.yaml:5:11: error: workspace.base is `trunk`, which names no branch")
            && err.contains("(its branches: main)"),
        "the missing base branch is named at its setting:\n{err}"
    );
    assert!(
        err.contains("warning: model provider `anthropic` takes its key from AGENTGRID_TEST_UNSET_KEY, which is not set"),
        "an unset key no alias uses is a warning:\n{err}"
    );
    assert!(
        err.contains("warning: agents start from HEAD ")
            && err.contains("uncommitted changes are not in their worktrees"),
        "the dirty tree is said:\n{err}"
    );
    assert!(err.contains("2 problem(s) found"), "{err}");

    // The same findings in JSON: errors as problems, the rest as warnings.
    let out = repo
        .cmd(&["validate", "--json"])
        .env("PATH", PATH)
        .env_remove("AGENTGRID_TEST_UNSET_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"].as_array().unwrap().len(), 2, "{report}");
    let typo = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["file"].as_str().unwrap().ends_with("coder.yaml"))
        .expect("the typo is a problem");
    assert_eq!(
        (&typo["line"], &typo["column"]),
        (&8.into(), &15.into()),
        "{report}"
    );
    assert_eq!(report["warnings"].as_array().unwrap().len(), 2, "{report}");

    // Fixed, the same project validates, warnings and all.
    std::fs::write(&agent_file, typo_agent("coder", "sh")).unwrap();
    repo.git(&["branch", "trunk"]);
    let out = repo.cmd(&["validate"]).env("PATH", PATH).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn validate_reports_an_interpreter_the_sandbox_hides_and_ignored_manifests() {
    // A script committed in the repository whose `#!` line names an interpreter in a
    // temporary directory, which the sandbox hides like a home (a pyenv shim, say).
    let tools = tempfile::tempdir().unwrap();
    let python = tools.path().join("python3");
    std::fs::write(&python, "#!/bin/sh\nexec /bin/sh \"$@\"\n").unwrap();
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&python, executable).unwrap();
    let repo = Repo::with_agents(&[("coder", &typo_agent("coder", "./agent.py"))]);
    let script = repo.path().join("agent.py");
    std::fs::write(&script, format!("#!{}\nprint('hi')\n", python.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(repo.path().join(".gitignore"), ".agentgrid/agents/\n").unwrap();
    repo.git(&["add", "agent.py", ".gitignore"]);
    repo.git(&["commit", "-q", "-m", "the agent"]);
    let out = repo.cmd(&["validate"]).env("PATH", PATH).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":8:15: error: agent `coder`:")
            && err.contains(&format!("needs the interpreter `{}`", python.display()))
            && err.contains("which the sandbox hides")
            && err.contains(&format!(
                "add `sandbox: {{expose: [{}]}}`",
                tools.path().canonicalize().unwrap().display()
            )),
        "{err}"
    );
    assert!(
        err.contains(
            "warning: `.agentgrid/agents/coder.yaml` is ignored by the repository's .gitignore"
        ),
        "{err}"
    );
    // Without filesystem isolation the same interpreter is there.
    std::fs::write(
        repo.path().join(".agentgrid/agents/coder.yaml"),
        typo_agent("coder", "./agent.py") + "  sandbox: {filesystem: none}\n",
    )
    .unwrap();
    let out = repo.cmd(&["validate"]).env("PATH", PATH).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn validate_says_when_the_repository_has_no_commits() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo { dir };
    repo.git(&["init", "-q", "-b", "main"]);
    repo.ok(&["init"]);
    let out = repo.cmd(&["validate"]).env("PATH", PATH).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "error: the repository has no commits, and agents start from one: make a first commit"
        ),
        "{err}"
    );
}

#[test]
fn a_typo_in_the_command_fails_the_task_at_once_and_it_needs_a_person() {
    let repo = Repo::with_agents(&[("coder", &typo_agent("coder", "claud-cod"))]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), RETRYING_CONFIG).unwrap();
    std::fs::write(repo.path().join(".gitmodules"), "[submodule \"vendor\"]\n").unwrap();
    repo.git(&["add", ".gitmodules"]);
    repo.git(&["commit", "-q", "-m", "a submodule"]);
    std::fs::write(repo.path().join("notes.txt"), "not committed\n").unwrap();
    repo.ok(&["task", "add", "Fix the bug"]);
    let out = repo.cmd(&["run"]).env("PATH", PATH).output().unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the failed task makes run exit 1: {err}"
    );
    assert!(
        err.contains("warning: agents start from HEAD ")
            && err.contains("uncommitted changes are not in their worktrees"),
        "run warns about the dirty tree at start:\n{err}"
    );
    assert!(
        err.contains("warning: the repository has submodules, which are not initialised in the agents' worktrees"),
        "{err}"
    );
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["state"], "failed");
    assert_eq!(
        show["executions"].as_array().unwrap().len(),
        1,
        "three attempts were allowed, but only one ran: {show}"
    );
    let summary = show["task"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("`claud-cod` is on no directory of the PATH")
            && summary.contains("not retried, as only a change to the configuration helps"),
        "{summary}"
    );
    let status = repo.ok(&["status"]);
    let attention = status
        .split("needs a person:")
        .nth(1)
        .unwrap_or_else(|| panic!("the task needs a person:\n{status}"));
    assert!(
        attention.contains("#1") && attention.contains("failed") && attention.contains("claud-cod"),
        "{status}"
    );
}

#[test]
fn a_missing_base_branch_fails_the_task_at_once() {
    let repo = Repo::with_agents(&[("coder", &typo_agent("coder", "sh"))]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!("{RETRYING_CONFIG}  workspace: {{base: trunk}}\n"),
    )
    .unwrap();
    repo.ok(&["task", "add", "Fix the bug"]);
    let out = repo.cmd(&["run"]).env("PATH", PATH).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["state"], "failed");
    assert_eq!(show["executions"].as_array().unwrap().len(), 1, "{show}");
    let summary = show["task"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("`trunk`") && summary.contains("not retried"),
        "{summary}"
    );
}

#[test]
fn doctor_reports_the_same_mistakes_inside_a_project() {
    let repo = Repo::with_agents(&[("coder", &typo_agent("coder", "claud-cod"))]);
    let out = repo
        .cmd(&["doctor", "--json"])
        .env("PATH", PATH)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["project"].as_array().expect("project findings");
    assert!(
        findings.iter().any(|f| f["severity"] == "error"
            && f["line"] == 8
            && f["message"]
                .as_str()
                .unwrap()
                .contains("`claud-cod` is on no directory of the PATH")),
        "{}",
        report["project"]
    );
    let out = repo.cmd(&["doctor"]).env("PATH", PATH).output().unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("Project:")
            && text.contains("✗")
            && text.contains("coder.yaml:8:15: error: agent `coder`"),
        "{text}"
    );
}

#[test]
fn validate_says_when_a_relative_command_is_not_committed() {
    let repo = Repo::with_agents(&[("coder", &typo_agent("coder", "./agent.sh"))]);
    let script = repo.path().join("agent.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = repo.cmd(&["validate"]).env("PATH", PATH).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":8:15: error: agent `coder`: `./agent.sh` is not committed"),
        "{err}"
    );
    repo.git(&["add", "agent.sh"]);
    repo.git(&["commit", "-q", "-m", "the agent"]);
    let out = repo.cmd(&["validate"]).env("PATH", PATH).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn validate_warns_when_a_shell_line_starts_with_a_program_that_is_missing() {
    // The shape `init` writes: `sh -c "aider …"`.
    let repo = Repo::with_agents(&[(
        "coder",
        &agent("coder", "aidr --yes-always", "  routing: {default: true}\n"),
    )]);
    let out = repo.cmd(&["validate"]).env("PATH", PATH).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "a warning only: {err}");
    assert!(
        err.contains(":8:27: warning: agent `coder`: its shell line starts with `aidr`, which will not run: `aidr` is on no directory of the PATH"),
        "{err}"
    );
}

#[test]
fn run_names_the_mistakes_validate_finds_at_its_start() {
    // A new user's first run: a typo in the command, a base branch that is not there, and a
    // change not committed.
    let repo = Repo::with_agents(&[("coder", &typo_agent("coder", "claud-cod"))]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!("{RETRYING_CONFIG}  workspace: {{base: trunk}}\n"),
    )
    .unwrap();
    std::fs::write(repo.path().join("README.md"), "# changed, not committed\n").unwrap();
    repo.ok(&["task", "add", "Fix the bug"]);
    let out = repo.cmd(&["run"]).env("PATH", PATH).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let typo = lines
        .iter()
        .position(|l| {
            l.starts_with("error: ")
                && l.contains(
                    "coder.yaml:8:15: agent `coder`: `claud-cod` is on no directory of the PATH",
                )
                && l.contains("fix its name")
        })
        .unwrap_or_else(|| panic!("the typo is named with its place:\n{err}"));
    let base = lines
        .iter()
        .position(|l| {
            l.starts_with("error: ")
                && l.contains("config.yaml:")
                && l.contains("workspace.base is `trunk`, which names no branch")
                && l.contains("(its branches: main)")
        })
        .unwrap_or_else(|| panic!("the missing base is named with its place:\n{err}"));
    let meaning = lines
        .iter()
        .position(|l| l.contains("2 problem(s) in the configuration") && l.contains("task reopen"))
        .unwrap_or_else(|| panic!("what the problems mean for the run:\n{err}"));
    assert!(typo.max(base) < meaning, "{err}");
    assert!(
        err.contains("warning: agents start from HEAD ")
            && err.contains("uncommitted changes are not in their worktrees"),
        "{err}"
    );
    // The task met the mistake once and was not retried.
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert_eq!(show["task"]["state"], "failed");
    assert_eq!(show["executions"].as_array().unwrap().len(), 1, "{show}");
}

#[test]
fn the_example_agent_left_as_init_wrote_it_is_named_before_it_fails() {
    let repo = Repo::new();
    // No agent CLI on this PATH, so init writes its example agent.
    let out = repo.cmd(&["init"]).env("PATH", PATH).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = repo.cmd(&["validate"]).env("PATH", PATH).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("worker.yaml:")
            && err.contains("error: agent `worker` is still the example `agentgrid init` wrote")
            && err.contains("set runtime.command to the program that runs your agent"),
        "{err}"
    );
    // Once the command is the user's, the finding goes.
    let manifest = repo.path().join(".agentgrid/agents/worker.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let start = text.find("    command: [").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let fixed = format!("{}    command: [\"true\"]{}", &text[..start], &text[end..]);
    std::fs::write(&manifest, fixed).unwrap();
    let out = repo.cmd(&["validate"]).env("PATH", PATH).output().unwrap();
    assert!(
        !stderr(&out).contains("still the example"),
        "{}",
        stderr(&out)
    );
}

/// An import file that is not UTF-8 is refused with the file, line and column of the first bad
/// byte (what and where) followed by the decoder's own error (why), and imports nothing.
#[test]
fn an_import_that_is_not_utf8_names_the_line_and_column_and_the_cause() {
    let repo = Repo::with_agents(&[("writer", &agent("writer", "true", ""))]);
    std::fs::write(
        repo.path().join("tasks.jsonl"),
        b"{\"title\": \"fine\"}\n{\"title\": \"b\xffd\"}\n",
    )
    .unwrap();
    let out = repo.run(&["task", "import", "tasks.jsonl"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tasks.jsonl:2:13: not UTF-8 text, so nothing was imported: caused by invalid utf-8 sequence"),
        "{err}"
    );
    let tasks = repo.json(&["task", "list", "--json"]);
    assert_eq!(tasks, serde_json::json!([]), "nothing was imported");
}
