//! A CLI as npm installs it, laid out by the test: Codex's `@openai/codex` is a node wrapper
//! whose native binary lives in a platform package beside it, and the sandbox runs that
//! binary. Everything the agent's program is looked up with is the PATH the test builds (a
//! directory holding only `git`, and the install's `.bin`), so nothing depends on what the
//! machine has installed. The "native binary" is a script printing Codex's JSON lines, so
//! this runs everywhere.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use modelfixture::Script;

use super::*;

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The platform package's name and the target triple, as Codex's wrapper picks them.
fn platform() -> (&'static str, &'static str) {
    if cfg!(target_arch = "aarch64") {
        ("@openai/codex-linux-arm64", "aarch64-unknown-linux-musl")
    } else {
        ("@openai/codex-linux-x64", "x86_64-unknown-linux-musl")
    }
}

/// What the fake native binary prints: one turn that wrote hello.txt.
const NATIVE: &str = r#"#!/bin/sh
cat >/dev/null
printf 'made by the native binary\n' > hello.txt
echo '{"type":"thread.started","thread_id":"t-native"}'
echo '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"Wrote hello.txt."}}'
echo '{"type":"turn.completed","usage":{"input_tokens":0,"cached_input_tokens":0,"output_tokens":0}}'
"#;

/// An npm prefix with Codex installed (its platform binary too when `native`), and a PATH
/// made of its `.bin` and a directory holding only `git`.
struct Install {
    prefix: tempfile::TempDir,
    path: String,
}

impl Install {
    fn new(native: bool) -> Install {
        let prefix = tempfile::tempdir().unwrap();
        let modules = prefix.path().join("node_modules");
        let package = modules.join("@openai/codex");
        write(
            &package.join("package.json"),
            r#"{"name":"@openai/codex","version":"0.169.0","bin":{"codex":"bin/codex.js"}}"#,
            0o644,
        );
        // Were it run, the wrapper would fail the execution.
        write(
            &package.join("bin/codex.js"),
            "#!/bin/sh\necho 'the node wrapper ran' >&2\nexit 3\n",
            0o755,
        );
        std::fs::create_dir_all(modules.join(".bin")).unwrap();
        std::os::unix::fs::symlink("../@openai/codex/bin/codex.js", modules.join(".bin/codex"))
            .unwrap();
        if native {
            let (package, triple) = platform();
            let dir = modules.join(package);
            write(
                &dir.join("package.json"),
                &format!(r#"{{"name":"{package}"}}"#),
                0o644,
            );
            write(
                &dir.join(format!("vendor/{triple}/bin/codex")),
                NATIVE,
                0o755,
            );
        }
        let tools = prefix.path().join("tools");
        std::fs::create_dir_all(&tools).unwrap();
        let git = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .map(|d| Path::new(d).join("git"))
            .find(|g| g.is_file())
            .expect("git on the test's PATH");
        std::os::unix::fs::symlink(git, tools.join("git")).unwrap();
        let path = format!("{}:{}", modules.join(".bin").display(), tools.display());
        Install { prefix, path }
    }

    fn native(&self) -> PathBuf {
        let (package, triple) = platform();
        std::fs::canonicalize(self.prefix.path())
            .unwrap()
            .join("node_modules")
            .join(package)
            .join(format!("vendor/{triple}/bin/codex"))
    }
}

/// A project whose one agent is `runtime: {type: codex}` with no `command`.
fn codex_project() -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = runtime
        .block_on(modelfixture::spawn(Script::new(vec![])))
        .unwrap();
    let manifest = "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  runtime:\n    type: codex\n  routing: {default: true}\n  sandbox: {network: gateway}\n  limits: {max_attempts: 1, max_iterations: 1, timeout: 1m}\n";
    let repo = Repo::with_agents(&[("coder", manifest)]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        config_for("openai", &fixture.base_url(), "fast", "fx-gpt"),
    )
    .unwrap();
    (runtime, fixture, repo)
}

#[test]
fn validate_and_doctor_name_the_native_binary_behind_codexs_npm_wrapper() {
    let install = Install::new(true);
    let (_rt, _fixture, repo) = codex_project();
    let out = repo
        .cmd(&["validate"])
        .env("PATH", &install.path)
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let native = install.native();
    assert!(
        stdout(&out).contains(&format!("agent `coder` (codex) runs {}", native.display())),
        "{}",
        stdout(&out)
    );
    let json: serde_json::Value = serde_json::from_slice(
        &repo
            .cmd(&["validate", "--json"])
            .env("PATH", &install.path)
            .env("FIXTURE_KEY", REAL_KEY)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        json["programs"],
        serde_json::json!([{"agent": "coder", "runtime": "codex", "program": native}]),
        "{json}"
    );
    let doctor = repo
        .cmd(&["doctor", "--json"])
        .env("PATH", &install.path)
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap();
    let doctor: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(doctor["programs"], json["programs"], "{doctor}");
}

#[test]
fn validate_says_where_and_what_to_do_when_a_clis_program_is_missing() {
    let (_rt, _fixture, repo) = codex_project();
    let file = repo.path().join(".agentgrid/agents/coder.yaml");
    let file = std::fs::canonicalize(&file).unwrap_or(file);

    // Not installed at all: the PATH holds only git.
    let install = Install::new(false);
    let tools = install.prefix.path().join("tools");
    let out = repo
        .cmd(&["validate"])
        .env("PATH", &tools)
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(":7:")
            && err.contains(
                "error: agent `coder` runs `codex`, but `codex` is on no directory of the PATH"
            ),
        "{err}"
    );
    assert!(
        err.contains(&file.display().to_string()) || err.contains("coder.yaml"),
        "{err}"
    );
    assert!(err.contains("npm install -g @openai/codex"), "{err}");
    assert!(err.contains("runtime.command"), "{err}");

    // Installed without its platform package: the wrapper is found, its binary is not.
    let out = repo
        .cmd(&["validate"])
        .env("PATH", &install.path)
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Codex's node wrapper, and the native binary it runs is missing")
            && err.contains("reinstall Codex"),
        "{err}"
    );
}

#[test]
fn run_starts_codexs_native_binary_and_not_its_node_wrapper() {
    let install = Install::new(true);
    let (_rt, _fixture, repo) = codex_project();
    repo.ok(&["task", "add", "Write hello.txt"]);
    let out = repo
        .cmd(&["run"])
        .env("PATH", &install.path)
        .env("FIXTURE_KEY", REAL_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(repo.task_state(1), "done", "{}", stdout(&out));
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:hello.txt"]),
        "made by the native binary\n"
    );
    let logs = repo.ok(&["logs", "1", "--raw"]);
    assert!(!logs.contains("the node wrapper ran"), "{logs}");
    let events = agent_events(&repo);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "session" && e["id"] == "t-native"),
        "{events:?}"
    );
}
