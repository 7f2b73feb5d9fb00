//! Running the real binary in a real git repository.
//!
//! Tests stand where a user stands: outside agentgrid, starting it as a program. That is why
//! this module, alone among the tests, starts processes with `std::process::Command`.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    /// A git repository with one commit, not yet initialised for agentgrid.
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.path().join("README.md"), "# test project\n").unwrap();
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "first"]);
        repo
    }

    /// A repository initialised with `agentgrid init` and the given agents instead of the
    /// example one.
    pub fn with_agents(agents: &[(&str, &str)]) -> Repo {
        let repo = Repo::new();
        repo.ok(&["init"]);
        let dir = repo.path().join(".agentgrid/agents");
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        for (name, yaml) in agents {
            std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
        }
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t.invalid")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("AGENTGRID_PROJECT")
            // `init` writes a `models:` section for a key it finds; a test gets one only when
            // it sets the key itself.
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("GEMINI_API_KEY")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and expects exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "agentgrid {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// The tasks as `task list --json` prints them.
    pub fn tasks(&self) -> Vec<serde_json::Value> {
        self.json(&["task", "list", "--json"])
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn task_state(&self, id: u64) -> String {
        let task = self
            .tasks()
            .into_iter()
            .find(|t| t["id"] == id)
            .expect("task exists");
        task["state"].as_str().unwrap().to_string()
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_agentgrid"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command-runtime agent manifest running `script` with `sh -c`.
pub fn agent(name: &str, script: &str, extra_spec: &str) -> String {
    let script = script.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: {name}\nspec:\n  runtime:\n    type: command\n    command: [\"sh\", \"-c\", \"{script}\"]\n  prompt: \"Task {{{{ task.id }}}}: {{{{ task.title }}}}\"\n{extra_spec}"
    )
}

/// Waits until `check` holds, failing the test with `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command for a program outside any project (the binary elsewhere, git).
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    Command::new(program)
}

/// What a model-calling test needs: the runtime the fixture runs on, the scripted model server
/// (answering with `key` as the real key) and a project whose one agent, `caller`, runs
/// `python3 agent.py ARGS` in a sandbox with the gateway, with one task.
pub struct ModelProject<'a> {
    /// The agent's script, committed as `agent.py`.
    pub agent_py: &'a str,
    pub args: &'a str,
    /// More of the agent's manifest spec.
    pub extra_spec: &'a str,
    /// The node config, given the fixture's base URL.
    pub config: &'a dyn Fn(&str) -> String,
    pub key: &'a str,
    pub task: &'a str,
}

impl ModelProject<'_> {
    pub fn build(
        &self,
        script: modelfixture::Script,
    ) -> (tokio::runtime::Runtime, modelfixture::Fixture, Repo) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let fixture = runtime
            .block_on(modelfixture::spawn_with(
                script,
                modelfixture::FixtureOptions {
                    api_key: Some(self.key.into()),
                    port: 0,
                },
            ))
            .unwrap();
        let caller = agent(
            "caller",
            &format!("python3 agent.py {}", self.args),
            &format!(
                "  routing: {{default: true}}\n  sandbox: {{network: gateway}}\n  limits: {{max_attempts: 1}}\n{}",
                self.extra_spec
            ),
        );
        let repo = Repo::with_agents(&[("caller", &caller)]);
        std::fs::write(repo.path().join("agent.py"), self.agent_py).unwrap();
        repo.git(&["add", "agent.py"]);
        repo.git(&["commit", "-q", "-m", "add the model-calling agent"]);
        std::fs::write(
            repo.path().join(".agentgrid/config.yaml"),
            (self.config)(&fixture.base_url()),
        )
        .unwrap();
        repo.ok(&["task", "add", self.task]);
        (runtime, fixture, repo)
    }
}
