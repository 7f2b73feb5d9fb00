//! Scenario C's baseline: the sandbox helper invocation agentgrid makes for a no-op execution,
//! rebuilt outside agentgrid so that `xargs -P2` can make it directly.
//!
//! agentgrid starts a sandboxed program by running its own binary as `agentgrid __sandbox`, in
//! the program's working directory, with the program's environment plus one variable,
//! `AGENTGRID_SANDBOX_SPEC`, that holds the sandbox and the program as JSON
//! (`sandbox::helper_command`, called from `crates/launch/src/sandboxed.rs`). The executor
//! derives the sandbox from the agent's profile (`sandbox_spec` in
//! `crates/executor/src/run.rs`). [`Baseline::prepare`] does the same from the same manifest
//! files and encodes it with the same `helper_command`, so the helper gets the same request:
//! the same filesystem and network modes, limits (and with them the same cgroups), hidden and
//! exposed paths, program and environment. What the baseline leaves out is exactly
//! agentgrid's orchestration: the scheduler, the store, the control socket and prompt file made
//! per execution, the pipes it reads.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, anyhow, bail, ensure};

/// The agent the bench projects define.
pub const AGENT: &str = "noop";

/// A ready helper invocation for one bench project.
pub struct Baseline {
    /// The program to start: the agentgrid binary.
    pub helper: PathBuf,
    /// Its arguments: `__sandbox`.
    pub args: Vec<String>,
    /// The whole environment to start it with, the sandbox request included.
    pub env: Vec<(String, String)>,
    spec: sandbox::SandboxSpec,
    workspace: PathBuf,
    /// The exposed control socket must exist for the sandbox to bind it; a listening socket is
    /// what agentgrid has there while an execution runs.
    _socket: UnixListener,
}

impl Baseline {
    /// Builds the invocation agentgrid would make to run the `noop` agent's command in the
    /// project at `repo` (after `agentgrid init` and the bench's own manifests), with
    /// workspaces off: the workspace is the project directory itself.
    pub fn prepare(bin: &Path, repo: &Path) -> anyhow::Result<Baseline> {
        let baseline = Baseline::build(bin, repo)?;
        sandbox::check(&baseline.spec, sandbox::host_support())
            .context("this host cannot build the sandbox of the bench's agent")?;
        Ok(baseline)
    }

    /// [`Baseline::prepare`] without asking whether this host can build the sandbox.
    fn build(bin: &Path, repo: &Path) -> anyhow::Result<Baseline> {
        let repo = repo
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", repo.display()))?;
        let state = repo.join(".agentgrid");
        let project = manifest::load_project(&state)
            .map_err(|d| anyhow!("the bench project's manifests do not load:\n{d}"))?;
        let agent = project
            .agent(AGENT)
            .with_context(|| format!("the bench project has no agent `{AGENT}`"))?;
        let command = &agent.spec().runtime.command;
        ensure!(
            command.len() == 1,
            "the sandboxed baseline runs a command without arguments, not {command:?}"
        );

        // The per-execution files the executor exposes to the sandbox, at the same places.
        let run_dir = engine::runtime_dir(&state);
        std::fs::create_dir_all(&run_dir)?;
        let socket_path = run_dir.join("1.sock");
        let socket = UnixListener::bind(&socket_path)
            .with_context(|| format!("cannot listen on {}", socket_path.display()))?;
        let prompt = run_dir.join("1-prompt.md");
        std::fs::write(&prompt, "Task 1: no-op 1")?;

        let env = execution_env(bin, &repo, &socket_path, &prompt);
        let program = find_program(&command[0], &env)?;
        if agent.spec().sandbox.network == manifest::NetworkMode::Gateway {
            // The relay needs a running gateway, which the baseline does not have.
            bail!("the sandboxed baseline does not support network `gateway`");
        }
        let places = executor::SandboxPlaces {
            workspace: repo.clone(),
            state_dir: state.clone(),
            run_dir: run_dir.clone(),
            main_checkout: None,
            worktrees: None,
            git: None,
            expose: vec![socket_path, prompt, bin.to_path_buf()],
            helper: bin.to_path_buf(),
            gateway: None,
            wall_time: None,
        };
        let spec = executor::sandbox_for(&agent.spec().sandbox, &places);
        let invocation = sandbox::helper_command(&spec, &program, &command[0], &[], &repo)?;
        let mut env = env;
        env.push(without_engine(invocation.env)?);
        Ok(Baseline {
            helper: invocation.helper,
            args: invocation.args,
            env,
            spec,
            workspace: repo,
            _socket: socket,
        })
    }

    /// Makes sure the invocation really confines, so that the baseline cannot silently run
    /// unsandboxed: inside, `/` must be read-only and the workspace writable (untimed).
    pub fn check_confined(&self) -> anyhow::Result<()> {
        let sh = find_program("sh", &self.env)?;
        let probe = sandbox::helper_command(
            &self.spec,
            &sh,
            "sh",
            &["-c".into(), "! test -w / && test -w .".into()],
            &self.workspace,
        )?;
        let mut env = self.env.clone();
        env.retain(|(k, _)| *k != probe.env.0);
        env.push(probe.env);
        let out = std::process::Command::new(&self.helper)
            .args(&probe.args)
            .env_clear()
            .envs(env)
            .current_dir(&self.workspace)
            .stdin(Stdio::null())
            .output()
            .context("cannot start the sandbox helper")?;
        ensure!(
            out.status.success(),
            "the baseline's sandbox does not confine as agentgrid's does ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

/// The environment the executor gives an execution (`base_environment` and `launch_spec` in
/// `crates/executor/src/run.rs`): the few inherited variables of `launch::base_env`, the
/// agentgrid binary's directory first on PATH, and the `AGENTGRID_*` variables.
fn execution_env(bin: &Path, repo: &Path, socket: &Path, prompt: &Path) -> Vec<(String, String)> {
    const INHERITED: [&str; 8] = [
        "PATH", "HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ",
    ];
    let mut env: Vec<(String, String)> = INHERITED
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/local/bin:/usr/bin:/bin".to_string(), |(_, v)| {
            v.clone()
        });
    let bin_dir = bin.parent().unwrap_or(Path::new("/")).display().to_string();
    env.retain(|(k, _)| k != "PATH");
    env.insert(0, ("PATH".into(), format!("{bin_dir}:{path}")));
    let show = |p: &Path| p.display().to_string();
    // A token of the same length as the executor's: 32 random bytes in hex.
    let token = "5".repeat(64);
    for (k, v) in [
        ("AGENTGRID_PROJECT", show(repo)),
        ("AGENTGRID_TASK_ID", "1".into()),
        ("AGENTGRID_EXECUTION_ID", "1".into()),
        ("AGENTGRID_EXECUTION_KIND", "work".into()),
        ("AGENTGRID_ATTEMPT", "1".into()),
        ("AGENTGRID_AGENT", AGENT.into()),
        ("AGENTGRID_WORKSPACE", show(repo)),
        ("AGENTGRID_CONTROL_SOCKET", show(socket)),
        ("AGENTGRID_TOKEN", token),
        ("AGENTGRID_PROMPT_FILE", show(prompt)),
        ("AGENTGRID_ITERATION", "1".into()),
    ] {
        env.push((k.into(), v));
    }
    env
}

/// The program as the launch crate resolves it: through the execution's PATH.
fn find_program(name: &str, env: &[(String, String)]) -> anyhow::Result<PathBuf> {
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("", |(_, v)| v.as_str());
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("`{name}` is not on PATH ({path})"))
}

/// The helper request with no engine to watch: under `xargs` the helper's parent is `xargs`,
/// not the process that built the request, and a helper refuses to start for an engine that is
/// not its parent. Watching costs agentgrid's side one `pidfd_open` and a poll per sandbox.
fn without_engine((key, value): (String, String)) -> anyhow::Result<(String, String)> {
    let mut request: serde_json::Value =
        serde_json::from_str(&value).context("the helper request is not JSON")?;
    request["engine_pid"] = serde_json::Value::Null;
    Ok((key, request.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request must be what the executor sends for the default profile. The expected value
    /// is what a running helper's environment held in an agentgrid project, with this test's
    /// paths.
    #[test]
    fn builds_the_executors_request_for_the_default_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().canonicalize().unwrap().join("repo");
        let state = repo.join(".agentgrid");
        std::fs::create_dir_all(state.join("agents")).unwrap();
        std::fs::write(
            state.join("agents/noop.yaml"),
            crate::bench::agent_yaml_for_tests(true),
        )
        .unwrap();
        let bin = std::env::current_exe().unwrap();
        let baseline = Baseline::build(&bin, &repo).unwrap();

        assert_eq!(baseline.helper, bin);
        assert_eq!(baseline.args, [sandbox::HELPER_ARG]);
        let request = baseline
            .env
            .iter()
            .find(|(k, _)| k == sandbox::SPEC_VAR)
            .map(|(_, v)| v)
            .expect("the sandbox request is in the environment");
        let request: serde_json::Value = serde_json::from_str(request).unwrap();
        let show = |p: &Path| p.display().to_string();
        let run = engine::runtime_dir(&state);
        // The state directory is hidden as a whole, and the run directory beside it.
        let hidden = vec![show(&state), show(&run)];
        assert_eq!(
            request["spec"],
            serde_json::json!({
                "filesystem": "workspace-write",
                "network": "none",
                "workspace": show(&repo),
                "writable": [],
                "expose": [show(&run.join("1.sock")), show(&run.join("1-prompt.md")), show(&bin)],
                "hide": hidden,
                "gateway": null,
                "git": null,
                "limits": {"memory": "8GiB", "processes": 1024, "open_files": 4096,
                           "file_size": "8GiB", "cpu_time": "1h", "wall_time": null},
            })
        );
        assert!(request["program"].as_str().unwrap().ends_with("/true"));
        assert_eq!(request["arg0"], "true");
        assert_eq!(request["cwd"], show(&repo));
        let path = &baseline.env.iter().find(|(k, _)| k == "PATH").unwrap().1;
        assert!(path.starts_with(&show(bin.parent().unwrap())), "{path}");
        for key in [
            "AGENTGRID_CONTROL_SOCKET",
            "AGENTGRID_PROMPT_FILE",
            "AGENTGRID_ITERATION",
        ] {
            assert!(
                baseline.env.iter().any(|(k, _)| k == key),
                "{key} is missing"
            );
        }
    }

    #[test]
    fn an_opted_out_agent_asks_for_no_isolation() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().canonicalize().unwrap();
        let state = repo.join(".agentgrid");
        std::fs::create_dir_all(state.join("agents")).unwrap();
        let opted_out = crate::bench::agent_yaml_for_tests(true).replace(
            "spec:\n",
            "spec:\n  sandbox: {filesystem: none, network: host}\n",
        );
        assert!(opted_out.contains("filesystem: none"), "{opted_out}");
        std::fs::write(state.join("agents/noop.yaml"), opted_out).unwrap();
        let baseline = Baseline::build(&std::env::current_exe().unwrap(), &repo).unwrap();
        assert_eq!(baseline.spec.filesystem, sandbox::FilesystemMode::None);
        assert_eq!(baseline.spec.network, sandbox::NetworkMode::Host);
        assert!(!baseline.spec.uses_namespaces());
    }
}
