//! Toolchains under a home directory, which the sandbox hides: `init` exposes the interpreter a
//! CLI it finds needs and offers the `PATH`'s other hidden toolchains commented out,
//! `validate` suggests those at the agent's manifest, and a workspace hook (run in the agent's
//! sandbox) sees exactly what the manifest exposes. Everything lives in a temporary `$HOME`
//! given to the binary alone, so nothing depends on the machine's own toolchains.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

fn executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A home with nvm's node (a script standing in for it), a `claude` run by that node, and a
/// cargo under `~/.cargo`.
struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
    node_bin: PathBuf,
    path: String,
}

fn home_with_toolchains() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().canonicalize().unwrap().join("home");
    let node_bin = home.join(".nvm/versions/node/v22.1.0/bin");
    executable(&node_bin.join("node"), "#!/bin/sh\nexit 0\n");
    // The interpreter named by its path, as a package manager writes it (the machine's own
    // node, if it has one, must not stand in for it).
    executable(
        &node_bin.join("claude"),
        &format!(
            "#!{}\nconsole.log('claude')\n",
            node_bin.join("node").display()
        ),
    );
    executable(&home.join(".cargo/bin/cargo"), "#!/bin/sh\necho cargo\n");
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        node_bin.display(),
        home.join(".cargo/bin").display()
    );
    Home {
        _dir: dir,
        home,
        node_bin,
        path,
    }
}

fn in_home(repo: &Repo, home: &Home, args: &[&str]) -> std::process::Output {
    repo.cmd(args)
        .env("HOME", &home.home)
        .env("PATH", &home.path)
        .output()
        .unwrap()
}

#[test]
fn init_exposes_a_hidden_interpreter_and_offers_the_paths_toolchains_that_validate_suggests() {
    let home = home_with_toolchains();
    let repo = Repo::new();
    let out = in_home(&repo, &home, &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    let nvm = home.home.join(".nvm");
    let cargo = home.home.join(".cargo");
    assert!(
        said.contains(&format!(
            "claude: `claude` runs on `{}`, which the sandbox hides: .agentgrid/agents/claude.yaml exposes `{}` read-only (sandbox.expose)",
            home.node_bin.join("node").display(),
            nvm.display()
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "claude: the sandbox hides toolchains on your PATH (`{}`): .agentgrid/agents/claude.yaml offers them as commented sandbox.expose entries",
            cargo.display()
        )),
        "{said}"
    );
    let file = repo.path().join(".agentgrid/agents/claude.yaml");
    let manifest = std::fs::read_to_string(&file).unwrap();
    let real_entry = format!("      - \"{}\"\n", nvm.display());
    let offered_entry = format!("      # - \"{}\"\n", cargo.display());
    assert!(manifest.contains(&real_entry), "{manifest}");
    assert!(manifest.contains(&offered_entry), "{manifest}");

    // What init wrote validates: the interpreter is shown, and the toolchain it left
    // commented is suggested at the agent's `sandbox.expose`.
    let out = in_home(&repo, &home, &["validate"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let expose_line = manifest
        .lines()
        .position(|l| l == real_entry.trim_end())
        .unwrap()
        + 1;
    let file = file.canonicalize().unwrap();
    let suggestion = err
        .lines()
        .find(|l| l.contains(": suggestion: "))
        .unwrap_or_else(|| panic!("no suggestion:\n{err}"));
    assert_eq!(
        suggestion,
        format!(
            "{}:{expose_line}:7: suggestion: agent `claude`: the sandbox hides these toolchain \
             directories of your PATH: `{}`; if the agent or its validators run tools from \
             them, add `sandbox: {{expose: [{}]}}` to the agent's manifest (read-only)",
            file.display(),
            cargo.join("bin").display(),
            cargo.display()
        )
    );
    let report: serde_json::Value =
        serde_json::from_slice(&in_home(&repo, &home, &["validate", "--json"]).stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["suggestions"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert_eq!(report["suggestions"][0]["line"], expose_line, "{report}");

    // Without the entry init wrote, the interpreter is reported as hidden, with that entry.
    std::fs::write(&file, manifest.replace(&real_entry, "")).unwrap();
    let out = in_home(&repo, &home, &["validate"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("which the sandbox hides")
            && err.contains(&format!("add `sandbox: {{expose: [{}]}}`", nvm.display())),
        "{err}"
    );

    // Taking the offer: the suggestion goes.
    std::fs::write(
        &file,
        manifest.replace(
            &offered_entry,
            &format!("      - \"{}\"\n", cargo.display()),
        ),
    )
    .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&in_home(&repo, &home, &["validate", "--json"]).stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["suggestions"], serde_json::json!([]), "{report}");
}

#[test]
fn a_workspace_hook_runs_an_exposed_toolchain_and_cannot_see_a_hidden_one() {
    let home = home_with_toolchains();
    // A second toolchain in the same home, left hidden.
    executable(
        &home.home.join(".pyenv/bin/python3"),
        "#!/bin/sh\necho python\n",
    );
    let cargo = home.home.join(".cargo");
    let python = home.home.join(".pyenv/bin/python3");
    let hook = format!(
        "{cargo}/bin/cargo > hook-cargo.txt; if [ -e {python} ]; then echo seen > hook-python.txt; else echo absent > hook-python.txt; fi",
        cargo = cargo.display(),
        python = python.display()
    );
    let agent = format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  runtime:\n    type: command\n    command: [\"true\"]\n  prompt: \"Task {{{{ task.id }}}}\"\n  routing: {{default: true}}\n  limits: {{max_attempts: 1}}\n  sandbox:\n    expose: [\"{}\"]\n",
        cargo.display()
    );
    let repo = Repo::with_agents(&[("coder", &agent)]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!(
            "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  shutdown_grace: 2s\n  workspace: {{hooks: {{before_run: \"{}\"}}}}\n",
            hook.replace('"', "\\\"")
        ),
    )
    .unwrap();
    let out = in_home(&repo, &home, &["task", "add", "use the toolchain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = in_home(&repo, &home, &["run"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hook-cargo.txt"]),
        "cargo\n"
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hook-python.txt"]),
        "absent\n"
    );
    // On the host the hidden one is there: the sandbox, not the test, kept it out.
    assert!(python.exists());
}

/// Aider in a virtualenv under the home, made from pyenv's interpreter: the adapter shows the
/// virtualenv itself, so `init` exposes only the interpreter it was made from and offers
/// nothing for the virtualenv's `bin` on the PATH.
#[test]
fn init_exposes_the_interpreter_an_aider_virtualenv_was_made_from() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().canonicalize().unwrap().join("home");
    let python = home.join(".pyenv/versions/3.11.7/bin/python3.11");
    executable(&python, "#!/bin/sh\nexit 0\n");
    let venv = home.join(".local/aider");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::write(
        venv.join("pyvenv.cfg"),
        format!("home = {}\n", python.parent().unwrap().display()),
    )
    .unwrap();
    std::os::unix::fs::symlink(&python, venv.join("bin/python3")).unwrap();
    executable(
        &venv.join("bin/aider"),
        &format!("#!{}\nimport aider\n", venv.join("bin/python3").display()),
    );
    let path = format!("{}:/usr/bin:/bin", venv.join("bin").display());
    let repo = Repo::new();
    let init = |args: &[&str]| {
        repo.cmd(args)
            .env("HOME", &home)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let out = init(&["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    let pyenv = home.join(".pyenv");
    assert!(
        said.contains(&format!(
            "aider: `aider` runs on `{}`, which the sandbox hides: .agentgrid/agents/aider.yaml exposes `{}` read-only",
            venv.join("bin/python3").display(),
            pyenv.display()
        )),
        "{said}"
    );
    assert!(!said.contains("toolchains on your PATH"), "{said}");
    let manifest =
        std::fs::read_to_string(repo.path().join(".agentgrid/agents/aider.yaml")).unwrap();
    assert!(
        manifest.contains(&format!("      - \"{}\"\n", pyenv.display())),
        "{manifest}"
    );
    assert!(
        !manifest.contains(&format!("- \"{}", home.join(".local").display())),
        "the virtualenv is not offered: {manifest}"
    );
    let out = init(&["validate", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["suggestions"], serde_json::json!([]), "{report}");
}
