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
            // Colour is chosen by the environment too; tests that want it say so.
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            // `init` writes a `models:` section for a key it finds; a test gets one only when
            // it sets the key itself.
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("GEMINI_API_KEY")
            // So is the base URL a provider's own tools read.
            .env_remove("ANTHROPIC_BASE_URL")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("GOOGLE_GEMINI_BASE_URL")
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

/// A workflow run's history (`workflow show --json`) as `state: note` lines.
pub fn history(run: &serde_json::Value) -> Vec<String> {
    run["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["state"].as_str().unwrap(),
                e["note"].as_str().unwrap()
            )
        })
        .collect()
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

/// The real binary on a pseudo-terminal of 120 columns by 32 rows, as a person at a terminal
/// runs it, with a terminal emulator (`vt100`) keeping the screen it draws.
pub struct Pty {
    master: std::fs::File,
    child: std::process::Child,
    screen: std::sync::Arc<std::sync::Mutex<vt100::Parser>>,
}

impl Repo {
    pub fn pty(&self, args: &[&str]) -> Pty {
        self.pty_with_env(args, &[])
    }

    /// [`Repo::pty`] with these variables set; the person's own editor is never inherited.
    pub fn pty_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Pty {
        use std::os::unix::process::CommandExt;
        let size = nix::pty::Winsize {
            ws_row: 32,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let slave = pty.slave;
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("AGENTGRID_PROJECT")
            .env("TERM", "xterm-256color")
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            .envs(env.iter().copied())
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec: the child gets a session
        // of its own with the terminal as its controlling terminal, as a login shell would.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        // The slave's copies in `cmd` close with it, so the master reads EOF (EIO) once the
        // child is gone.
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let (rows, cols) = (
            std::num::NonZeroU16::new(32),
            std::num::NonZeroU16::new(120),
        );
        let parser = vt100::Parser::new(rows.unwrap(), cols.unwrap(), 0);
        let screen = std::sync::Arc::new(std::sync::Mutex::new(parser));
        let mut reader = master.try_clone().unwrap();
        let feed = screen.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().unwrap().process(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            screen,
        }
    }
}

impl Pty {
    /// Types `keys` (raw bytes: `\r` is Enter, `\x1b[B` the down arrow).
    pub fn send(&mut self, keys: &str) {
        use std::io::Write;
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// What the screen shows now.
    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `text`, and returns the screen.
    pub fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the screen never showed {text:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the program to end and returns its exit code.
    pub fn wait(mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!(
                    "the program did not end; the screen shows:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
