//! Toolchains visible on purpose: `sandbox.expose` (read-only) and `sandbox.writable`
//! (read-write) host paths, through the real binary. What a task's agent saw is read from the
//! file it left on the task's branch.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

const CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// An agent whose command is `program`, with `sandbox` (lines indented under `sandbox:`).
fn manifest(program: &str, sandbox: &str) -> String {
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  runtime:\n    type: command\n    command: [\"{program}\"]\n  prompt: \"Task {{{{ task.id }}}}\"\n  routing: {{default: true}}\n  limits: {{max_attempts: 1}}\n  sandbox:\n{sandbox}"
    )
}

fn executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn real(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().canonicalize().unwrap()
}

fn project(agent: &str) -> Repo {
    let repo = Repo::with_agents(&[("coder", agent)]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), CONFIG).unwrap();
    repo
}

fn set_agent(repo: &Repo, agent: &str) {
    std::fs::write(repo.path().join(".agentgrid/agents/coder.yaml"), agent).unwrap();
}

#[test]
fn a_toolchain_in_an_exposed_dir_runs_read_only_and_a_writable_dir_takes_writes() {
    // A toolchain in a temporary directory, hidden in every sandbox like one under $HOME: a
    // program and the data file beside it, which it reads at start (as a CLI reads its
    // packages).
    let tools = tempfile::tempdir().unwrap();
    let tools = real(&tools);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = real(&cache);
    std::fs::create_dir_all(tools.join("lib")).unwrap();
    std::fs::write(tools.join("lib/data"), "toolchain data\n").unwrap();
    let program = tools.join("bin/tool");
    executable(
        &program,
        &format!(
            "#!/bin/sh\nhere=$(dirname \"$0\")\ncat \"$here/../lib/data\" > seen.txt || exit 7\n\
             if (echo planted >> \"$here/../lib/data\") 2>/dev/null; then echo 'exposed: written' >> seen.txt; else echo 'exposed: refused' >> seen.txt; fi\n\
             if (echo planted > \"$here/new-file\") 2>/dev/null; then echo 'new: written' >> seen.txt; else echo 'new: refused' >> seen.txt; fi\n\
             echo cached > {cache}/out.txt || exit 8\n\
             echo 'writable: written' >> seen.txt\n",
            cache = cache_dir.display()
        ),
    );

    // Without the exposure, validate says the program is shown alone and offers the dir.
    let repo = project(&manifest(&program.display().to_string(), ""));
    let out = repo.run(&["validate"]);
    let err = stderr(&out);
    assert!(
        err.contains(":8:15: warning: agent `coder`: its program")
            && err.contains("the sandbox shows that file alone")
            && err.contains(&format!("sandbox: {{expose: [{}]}}", tools.display())),
        "{err}"
    );

    let sandbox = format!(
        "    expose: [\"{}\"]\n    writable: [\"{}\"]\n",
        tools.display(),
        cache_dir.display()
    );
    set_agent(&repo, &manifest(&program.display().to_string(), &sandbox));
    let out = repo.run(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("shows that file alone"),
        "{}",
        stderr(&out)
    );

    repo.ok(&["task", "add", "use the toolchain"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    let seen = repo.git(&["show", "agentgrid/task-1:seen.txt"]);
    assert_eq!(
        seen,
        "toolchain data\nexposed: refused\nnew: refused\nwritable: written\n"
    );
    // The host's files say the same: the exposed dir is untouched, the writable one written.
    assert_eq!(
        std::fs::read_to_string(tools.join("lib/data")).unwrap(),
        "toolchain data\n"
    );
    assert!(!tools.join("bin/new-file").exists());
    assert_eq!(
        std::fs::read_to_string(cache_dir.join("out.txt")).unwrap(),
        "cached\n"
    );

    // Both are relaxations, shown by status and doctor.
    let expose = format!("expose: {} (read-only)", tools.display());
    let writable = format!("writable: {} (read-write)", cache_dir.display());
    let text = repo.ok(&["status"]);
    assert!(
        text.contains(&format!("agent coder runs with {expose} and {writable}")),
        "{text}"
    );
    let json = repo.json(&["status", "--json"]);
    assert_eq!(
        json["sandbox_relaxations"]["coder"],
        serde_json::json!([expose, writable]),
        "{json}"
    );
    let doctor = repo.run(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(
        report["sandbox_relaxations"]["coder"],
        serde_json::json!([expose, writable]),
        "{report}"
    );
    let doctor = stdout(&repo.run(&["doctor"]));
    assert!(doctor.contains(&format!("! coder: {expose}")), "{doctor}");
}

#[test]
fn validate_refuses_relaxations_that_undo_what_the_sandbox_hides() {
    let home = tempfile::tempdir().unwrap();
    let home = real(&home);
    let repo = project(&manifest("true", "    expose:\n      - relative/tools\n"));
    let state = repo.path().canonicalize().unwrap().join(".agentgrid");
    let out = repo.run(&["validate"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":14:9: spec.sandbox.expose[0]: `relative/tools` is not an absolute path"),
        "{err}"
    );

    let sandbox = format!(
        "    expose:\n      - {state}\n      - {git}\n      - /usr/bin\n    writable:\n      - /\n      - {home}\n      - /proc/self\n      - {missing}\n",
        state = state.display(),
        git = state.parent().unwrap().join(".git").display(),
        home = home.display(),
        missing = home.join("no-such-dir").display(),
    );
    set_agent(&repo, &manifest("true", &sandbox));
    let out = repo.cmd(&["validate"]).env("HOME", &home).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = |n: usize| -> String {
        err.lines()
            .find(|l| l.contains(&format!("coder.yaml:{n}:9: error: agent `coder`: ")))
            .unwrap_or_else(|| panic!("no error at line {n}:\n{err}"))
            .to_string()
    };
    assert!(
        line(14).contains("inside the project's state directory"),
        "{err}"
    );
    assert!(line(14).contains("`sandbox.expose`"), "{err}");
    assert!(
        line(15).contains("inside the main repository's git directory"),
        "{err}"
    );
    assert!(
        !err.contains(":16:9:"),
        "/usr/bin is a fine exposure:\n{err}"
    );
    assert!(line(18).contains("`/`, the whole filesystem"), "{err}");
    assert!(line(18).contains("`sandbox.writable`"), "{err}");
    assert!(line(19).contains("the whole home directory"), "{err}");
    assert!(
        line(20).contains("leads to") || line(20).contains("inside `/proc`"),
        "{err}"
    );
    assert!(line(21).contains("not there on this host"), "{err}");

    // `run` refuses to start the agent with them, as a configuration failure.
    set_agent(
        &repo,
        &manifest(
            "true",
            &format!("    writable: [\"{}\"]\n", state.display()),
        ),
    );
    repo.ok(&["task", "add", "never runs"]);
    let _ = repo.run(&["run"]);
    assert_eq!(repo.task_state(1), "failed");
    let shown = repo.ok(&["task", "show", "1"]);
    assert!(
        shown.contains("inside the project's state directory"),
        "{shown}"
    );
}

#[test]
fn a_hidden_interpreter_is_reported_with_the_dir_to_expose() {
    // A script committed in the repository whose `#!` line names an interpreter in a
    // temporary directory, hidden like one under a home (a pyenv shim, say).
    let tools = tempfile::tempdir().unwrap();
    let tools = real(&tools);
    let interpreter = tools.join("bin/python3");
    executable(&interpreter, "#!/bin/sh\necho interpreted > ran.txt\n");
    let repo = project(&manifest("./agent.py", ""));
    executable(
        &repo.path().join("agent.py"),
        &format!("#!{}\nprint('hi')\n", interpreter.display()),
    );
    repo.git(&["add", "agent.py"]);
    repo.git(&["commit", "-q", "-m", "the agent"]);
    let out = repo.run(&["validate"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":8:15: error: agent `coder`:")
            && err.contains(&format!(
                "needs the interpreter `{}`",
                interpreter.display()
            ))
            && err.contains("which the sandbox hides")
            && err.contains(&format!("add `sandbox: {{expose: [{}]}}`", tools.display())),
        "{err}"
    );

    // Taking the hint: it validates, and the agent runs with that interpreter.
    set_agent(
        &repo,
        &manifest(
            "./agent.py",
            &format!("    expose: [\"{}\"]\n", tools.display()),
        ),
    );
    let out = repo.run(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    repo.ok(&["task", "add", "interpret"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:ran.txt"]),
        "interpreted\n"
    );
}
