//! Mistakes caught before anything runs: what `validate` and `doctor` report beside the
//! manifests' own problems, and what `run` warns about at start.
//!
//! Each of these would otherwise show up late and look like something else: a command with a
//! typo or an interpreter the sandbox hides fails every attempt of every task, a base branch
//! that is not there fails every checkout, an unset key stops `run`, uncommitted changes are
//! silently left out of the agents' worktrees. A finding is an *error* when `run` cannot work
//! with it and a *warning* when it may be what the person wants.

use std::path::{Path, PathBuf};
use std::time::Duration;

use manifest::Place;
use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// `run` cannot work with it: validate exits non-zero.
    Error,
    /// May be fine; said so that it is not a surprise.
    Warning,
    /// Something the person may want to add (a toolchain to expose); only `validate` says it.
    Suggestion,
}

/// One mistake found, where it comes from (a manifest setting when there is one) and what to
/// do, in its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The manifest file, or the repository when the setting is not written anywhere.
    pub file: PathBuf,
    /// 1-based; 0 when the finding concerns the file (or the repository) as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Finding {
    pub(crate) fn at(
        severity: Severity,
        place: Option<Place>,
        fallback: &Path,
        message: String,
    ) -> Finding {
        let place = place.unwrap_or(Place {
            file: fallback.to_path_buf(),
            line: 0,
            column: 0,
        });
        Finding {
            severity,
            file: place.file,
            line: place.line,
            column: place.column,
            message,
        }
    }

    /// The place and the message, for a line that says its severity itself.
    pub fn render_place(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.file.display(), self.message)
        } else {
            format!(
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }

    /// The finding as `validate` prints it: `file:line:col: warning: message`.
    pub fn render(&self) -> String {
        let what = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Suggestion => "suggestion",
        };
        if self.line == 0 {
            format!("{}: {what}: {}", self.file.display(), self.message)
        } else {
            format!(
                "{}:{}:{}: {what}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Every check `validate` and `doctor` make on a project whose manifests load.
pub async fn project(root: &Path, manifests: &manifest::Project) -> Vec<Finding> {
    let mut found = Vec::new();
    let config_file = manifests.root.join("config.yaml");
    let head = repository(root, manifests, &config_file, &mut found).await;
    for agent in &manifests.agents {
        found.extend(still_the_template(agent));
        match command(root, manifests, agent) {
            Some(f) => found.push(f),
            None if head.is_some() => found.extend(uncommitted_command(root, agent).await),
            None => {}
        }
        found.extend(shell_command(root, manifests, agent));
        found.extend(relaxations(root, manifests, agent));
        found.extend(hidden_program(root, manifests, agent));
    }
    keys(manifests, &config_file, &mut found);
    found.extend(ignored_manifests(root, manifests).await);
    if head.is_some() {
        found.extend(start_warnings(root, manifests).await);
    }
    found
}

/// The repository has a commit, and the configured base ref names one. Returns HEAD's commit.
async fn repository(
    root: &Path,
    manifests: &manifest::Project,
    config_file: &Path,
    found: &mut Vec<Finding>,
) -> Option<String> {
    let head = git(root, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]).await;
    let Some(head) = head else {
        found.push(Finding::at(
            Severity::Error,
            None,
            root,
            "the repository has no commits, and agents start from one: make a first commit \
             (`git add -A && git commit -m start`)"
                .into(),
        ));
        return None;
    };
    let base = &manifests.config.workspace.base;
    if manifests.config.workspace.enabled
        && git(
            root,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &format!("{base}^{{commit}}"),
            ],
        )
        .await
        .is_none()
    {
        let branches = git(
            root,
            &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
        )
        .await
        .unwrap_or_default();
        let branches: Vec<&str> = branches.lines().take(5).collect();
        found.push(Finding::at(
            Severity::Error,
            manifest::locate(config_file, None, &["spec", "workspace", "base"]),
            config_file,
            format!(
                "workspace.base is `{base}`, which names no branch, tag or commit in this \
                 repository{}: set it to one that exists, or create it (`git branch {base}`)",
                if branches.is_empty() {
                    String::new()
                } else {
                    format!(" (its branches: {})", branches.join(", "))
                }
            ),
        ));
    }
    Some(head)
}

/// The agent's command resolves, and the interpreter of its `#!` line exists and is visible in
/// the agent's sandbox, as the executor checks before it starts the agent. For a known CLI
/// (`runtime.type` claude, codex, gemini, aider, opencode) the program is the manifest's `command` or
/// the CLI's usual name, and it is found as the executor finds it: links followed, a wrapper
/// replaced by the binary it starts ([`executor::runtime::resolve_program`]).
fn command(root: &Path, manifests: &manifest::Project, agent: &manifest::Agent) -> Option<Finding> {
    let spec = agent.spec();
    let adapter = executor::runtime::adapter(spec.runtime.kind);
    let given = spec.runtime.command.first();
    let program = match (given, &adapter) {
        (Some(program), _) => program.clone(),
        (None, Some(adapter)) => adapter.program().to_string(),
        (None, None) => return None,
    };
    // A templated program is known only per task.
    if program.contains("{{") || program.contains("{%") {
        return None;
    }
    let at = |path: &[&str]| manifest::locate(&agent.source, Some(&agent.name), path);
    let error = |place, message| Some(Finding::at(Severity::Error, place, &agent.source, message));
    let mut checked = program.clone();
    if let Some(adapter) = &adapter {
        let (path, _, _) = surroundings(root, manifests, agent);
        match executor::runtime::resolve_program(adapter.as_ref(), &program, root, &path) {
            Ok(real) => checked = real.display().to_string(),
            Err(executor::runtime::ProgramProblem::NotFound { path, .. }) if given.is_none() => {
                return error(
                    at(&["spec", "runtime", "type"]),
                    format!(
                        "agent `{}` runs `{}`, but `{program}` is on no directory of the PATH \
                         (`{path}`) and `runtime.command` is not set: install it (`{}`), or \
                         set `runtime.command` to the program's full path",
                        agent.name,
                        spec.runtime.kind.name(),
                        adapter.install_hint()
                    ),
                );
            }
            // Said below, as for any command.
            Err(executor::runtime::ProgramProblem::NotFound { .. }) => {}
            Err(problem @ executor::runtime::ProgramProblem::Wrapper(_)) => {
                let place = match given {
                    Some(_) => at(&["spec", "runtime", "command", "0"]),
                    None => at(&["spec", "runtime", "type"]),
                };
                return error(place, format!("agent `{}`: {problem}", agent.name));
            }
        }
    }
    let problem = preflight(root, manifests, agent, |around| {
        launch::preflight::check_program(&checked, around).err()
    })?;
    let mut message = format!("agent `{}`: {problem}", agent.name);
    if program.contains('/') && !Path::new(&program).is_absolute() {
        message.push_str(" (a relative command is taken from the task's worktree)");
    }
    let place = match given {
        Some(_) => at(&["spec", "runtime", "command", "0"]),
        None => at(&["spec", "runtime", "type"]),
    };
    error(place, message)
}

/// The program a known CLI's agent will run, as `validate` and `doctor` name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentProgram {
    pub agent: String,
    /// The runtime type (`claude`, `codex`, `gemini`).
    pub runtime: &'static str,
    /// The file the sandbox runs: links followed, a wrapper replaced by the binary it starts.
    pub program: PathBuf,
}

/// The programs of the agents that run a known CLI and whose program is found.
pub fn programs(root: &Path, manifests: &manifest::Project) -> Vec<AgentProgram> {
    let mut found = Vec::new();
    for agent in &manifests.agents {
        let spec = agent.spec();
        let Some(adapter) = executor::runtime::adapter(spec.runtime.kind) else {
            continue;
        };
        let program = match spec.runtime.command.first() {
            Some(p) if p.contains("{{") || p.contains("{%") => continue,
            Some(p) => p.clone(),
            None => adapter.program().to_string(),
        };
        let (path, _, _) = surroundings(root, manifests, agent);
        if let Ok(real) =
            executor::runtime::resolve_program(adapter.as_ref(), &program, root, &path)
        {
            found.push(AgentProgram {
                agent: agent.name.clone(),
                runtime: spec.runtime.kind.name(),
                program: real,
            });
        }
    }
    found
}

/// What the example agent `agentgrid init` writes says in its command, when no agent CLI was
/// found to write a real one.
const TEMPLATE_MARK: &str = "set runtime.command to your agent CLI";

/// The example agent left as `init` wrote it: its command only says to replace it and exits
/// 1, which the engine would take for a failure worth retrying.
fn still_the_template(agent: &manifest::Agent) -> Option<Finding> {
    let spec = agent.spec();
    let at = spec
        .runtime
        .command
        .iter()
        .position(|word| word.contains(TEMPLATE_MARK))?;
    Some(Finding::at(
        Severity::Error,
        manifest::locate(
            &agent.source,
            Some(&agent.name),
            &["spec", "runtime", "command", &at.to_string()],
        ),
        &agent.source,
        format!(
            "agent `{}` is still the example `agentgrid init` wrote, whose command only fails: set runtime.command to the program that runs your agent (or `runtime: {{type: claude}}` for Claude Code; see the README's runtimes), or remove the file",
            agent.name
        ),
    ))
}

/// Runs one of launch's preflight checks in the surroundings the agent's processes will have.
fn preflight<T>(
    root: &Path,
    manifests: &manifest::Project,
    agent: &manifest::Agent,
    check: impl FnOnce(launch::preflight::Surroundings<'_>) -> Option<T>,
) -> Option<T> {
    let (path, home, sandbox) = surroundings(root, manifests, agent);
    check(launch::preflight::Surroundings {
        cwd: root,
        path: &path,
        sandbox: sandbox.as_ref(),
        home: home.as_deref(),
    })
}

/// What the agent's program is looked up with: the engine's `PATH` and `$HOME`, and the view
/// of its sandbox. The agent works in a worktree of its own; the main checkout and the state
/// directory are hidden (see the executor's `sandbox_for`).
fn surroundings(
    root: &Path,
    manifests: &manifest::Project,
    agent: &manifest::Agent,
) -> (
    String,
    Option<PathBuf>,
    Option<launch::sandbox::SandboxSpec>,
) {
    (
        std::env::var("PATH").unwrap_or_default(),
        std::env::var_os("HOME").map(PathBuf::from),
        agent_view(root, manifests, agent),
    )
}

/// The view of the agent's sandbox as far as host paths go, or `None` when its filesystem is
/// not isolated.
pub(crate) fn agent_view(
    root: &Path,
    manifests: &manifest::Project,
    agent: &manifest::Agent,
) -> Option<launch::sandbox::SandboxSpec> {
    let profile = &agent.spec().sandbox;
    (profile.enabled && profile.filesystem != manifest::FilesystemMode::None).then(|| {
        let mut view = launch::sandbox::SandboxSpec::new(manifests.workspace_root().join("task"));
        view.hide.push(root.to_path_buf());
        view.expose.extend(profile.expose.iter().cloned());
        view.writable.extend(profile.writable.iter().cloned());
        view
    })
}

/// Each `sandbox.expose` and `sandbox.writable` path exists as given and is none of the places
/// the sandbox hides for the engine's sake (see [`executor::relax`]); the executor refuses to
/// start the agent otherwise.
fn relaxations(
    root: &Path,
    manifests: &manifest::Project,
    agent: &manifest::Agent,
) -> Vec<Finding> {
    let profile = &agent.spec().sandbox;
    if !profile.enabled || profile.filesystem == manifest::FilesystemMode::None {
        return Vec::new();
    }
    let guarded = executor::relax::Guarded {
        state_dir: manifests.root.clone(),
        main_checkout: Some(root.to_path_buf()),
        git_dir: Some(root.join(".git")),
        worktrees: Some(manifests.workspace_root()),
        home: std::env::var_os("HOME").map(PathBuf::from),
    };
    let all = (profile
        .expose
        .iter()
        .enumerate()
        .map(|(i, p)| ("expose", i, p)))
    .chain(
        profile
            .writable
            .iter()
            .enumerate()
            .map(|(i, p)| ("writable", i, p)),
    );
    all.filter_map(|(field, i, path)| {
        let reason = executor::relax::refused(field, path, &guarded)?;
        Some(Finding::at(
            Severity::Error,
            manifest::locate(
                &agent.source,
                Some(&agent.name),
                &["spec", "sandbox", field, &i.to_string()],
            ),
            &agent.source,
            format!("agent `{}`: {reason}", agent.name),
        ))
    })
    .collect()
}

/// The agent's program itself lies in a place the sandbox hides (a CLI installed under the
/// home directory): the sandbox binds that one file, not the files beside it, which a
/// toolchain's binary usually needs (its libraries, its packages). A warning, since a single
/// static binary runs as it is.
fn hidden_program(
    root: &Path,
    manifests: &manifest::Project,
    agent: &manifest::Agent,
) -> Option<Finding> {
    let spec = agent.spec();
    let given = spec.runtime.command.first()?;
    if given.contains("{{") || given.contains("{%") {
        return None;
    }
    let (program, hidden) = preflight(root, manifests, agent, |around| {
        let found = launch::preflight::check_program(given, around).ok()?;
        let view = around.sandbox?;
        match launch::sandbox::visibility(view, around.home, &found.program) {
            launch::sandbox::Visibility::Hidden { real, hidden_by } => {
                Some((found.program, (real, hidden_by)))
            }
            _ => None,
        }
    })?;
    let (real, hidden_by) = hidden;
    let place = match &hidden_by {
        Some(place) => format!("inside the hidden `{}`", place.display()),
        None => "outside every tree the sandbox shows".to_string(),
    };
    let suggest = launch::preflight::expose_hint(&real, hidden_by.as_deref());
    Some(Finding::at(
        Severity::Warning,
        manifest::locate(
            &agent.source,
            Some(&agent.name),
            &["spec", "runtime", "command", "0"],
        ),
        &agent.source,
        format!(
            "agent `{}`: its program `{}` is `{}`, {place}; the sandbox shows that file alone, \
             not the files beside it: if it needs them, add `sandbox: {{expose: [{}]}}` to the \
             agent's manifest",
            agent.name,
            program.display(),
            real.display(),
            suggest.display()
        ),
    ))
}

/// Words a shell line may start with that are not a program to look up.
const SHELL_WORDS: &[&str] = &[
    "!",
    ".",
    ":",
    "[",
    "[[",
    "alias",
    "break",
    "case",
    "cd",
    "command",
    "continue",
    "echo",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "for",
    "if",
    "printf",
    "read",
    "return",
    "set",
    "shift",
    "source",
    "test",
    "trap",
    "true",
    "ulimit",
    "umask",
    "unset",
    "until",
    "wait",
    "while",
    "{",
    "(",
    "agentgrid",
];

/// The program a `sh -c "…"` command starts with (`init` writes agents that way): a warning,
/// not an error, since a shell line may define or install what it runs.
fn shell_command(
    root: &Path,
    manifests: &manifest::Project,
    agent: &manifest::Agent,
) -> Option<Finding> {
    let command = &agent.spec().runtime.command;
    let shell = Path::new(command.first()?).file_name()?.to_str()?;
    if !matches!(shell, "sh" | "bash" | "dash" | "zsh") || command.get(1)? != "-c" {
        return None;
    }
    let line = command.get(2)?;
    let mut words = line.split_whitespace();
    let mut first = words.next()?;
    if first == "exec" {
        first = words.next()?;
    }
    let plain = first
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if !plain || SHELL_WORDS.contains(&first) {
        return None;
    }
    let problem = preflight(root, manifests, agent, |around| {
        launch::preflight::check_by_name(first, around).err()
    })?;
    Some(Finding::at(
        Severity::Warning,
        manifest::locate(
            &agent.source,
            Some(&agent.name),
            &["spec", "runtime", "command", "2"],
        ),
        &agent.source,
        format!(
            "agent `{}`: its shell line starts with `{first}`, which will not run: {problem}",
            agent.name
        ),
    ))
}

/// A relative command that exists in the checkout but is not committed: the task's worktree,
/// made from a commit, will not have it.
async fn uncommitted_command(root: &Path, agent: &manifest::Agent) -> Option<Finding> {
    let program = agent.spec().runtime.command.first()?;
    if !program.contains('/') || Path::new(program).is_absolute() || program.contains("{{") {
        return None;
    }
    let committed = git(root, &["ls-tree", "--name-only", "HEAD", "--", program])
        .await
        .is_some_and(|out| !out.trim().is_empty());
    if committed {
        return None;
    }
    Some(Finding::at(
        Severity::Error,
        manifest::locate(
            &agent.source,
            Some(&agent.name),
            &["spec", "runtime", "command", "0"],
        ),
        &agent.source,
        format!(
            "agent `{}`: `{program}` is not committed, and the task's worktree holds only what \
             is: commit it (`git add {program} && git commit`)",
            agent.name
        ),
    ))
}

/// Every provider key the config names is set in this environment. `run` refuses to start
/// without one as soon as any model alias exists; with none, the gateway is not started and
/// an unset key is only a warning.
fn keys(manifests: &manifest::Project, config_file: &Path, found: &mut Vec<Finding>) {
    let models = &manifests.config.models;
    for (name, provider) in &models.providers {
        let Some(var) = &provider.api_key_env else {
            continue;
        };
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            continue;
        }
        let used_by: Vec<&str> = models
            .aliases
            .iter()
            .filter(|(_, a)| a.provider == *name)
            .map(|(alias, _)| alias.as_str())
            .collect();
        let (severity, consequence) = if !models.aliases.is_empty() {
            (
                Severity::Error,
                if used_by.is_empty() {
                    "`agentgrid run` refuses to start without it".to_string()
                } else {
                    format!(
                        "the model aliases {} use it, and `agentgrid run` refuses to start \
                         without it",
                        used_by.join(", ")
                    )
                },
            )
        } else {
            (Severity::Warning, "no model alias uses it yet".to_string())
        };
        found.push(Finding::at(
            severity,
            manifest::locate(
                config_file,
                None,
                &["spec", "models", "providers", name, "api_key_env"],
            ),
            config_file,
            format!(
                "model provider `{name}` takes its key from {var}, which is not set in this \
                 environment ({consequence}): export {var} before `agentgrid run`"
            ),
        ));
    }
}

/// Manifests that the repository's ignore rules hide: a clean clone would not have them.
async fn ignored_manifests(root: &Path, manifests: &manifest::Project) -> Vec<Finding> {
    let mut files: Vec<PathBuf> = vec![manifests.root.join("config.yaml")];
    files.extend(manifests.agents.iter().map(|a| a.source.clone()));
    files.sort();
    files.dedup();
    let mut found = Vec::new();
    for file in files.iter().filter(|f| f.exists()) {
        let Ok(relative) = file.strip_prefix(root) else {
            continue;
        };
        let relative = relative.to_string_lossy();
        if git(root, &["check-ignore", "--quiet", "--", &relative])
            .await
            .is_some()
        {
            found.push(Finding::at(
                Severity::Warning,
                None,
                file,
                format!(
                    "`{relative}` is ignored by the repository's .gitignore, so it is never \
                     committed and a clean clone runs without it: add `!{relative}` to \
                     .gitignore (or un-ignore .agentgrid/*.yaml), then commit it"
                ),
            ));
        }
    }
    found
}

/// What `run` says at start: differences between the checkout and what the agents will see.
pub async fn start_warnings(root: &Path, manifests: &manifest::Project) -> Vec<Finding> {
    let mut found = Vec::new();
    if !manifests.config.workspace.enabled {
        return found;
    }
    let head = git(
        root,
        &["rev-parse", "--verify", "--quiet", "--short", "HEAD"],
    )
    .await;
    let Some(head) = head else {
        return found;
    };
    let changes = git(
        root,
        &["status", "--porcelain", "--", ".", ":(exclude).agentgrid"],
    )
    .await
    .unwrap_or_default();
    if !changes.trim().is_empty() {
        found.push(Finding::at(
            Severity::Warning,
            None,
            root,
            format!(
                "agents start from HEAD {}; uncommitted changes are not in their worktrees \
                 ({} changed path(s)): commit what the agents need",
                head.trim(),
                changes.lines().count()
            ),
        ));
    }
    if root.join(".gitmodules").exists() {
        found.push(Finding::at(
            Severity::Warning,
            None,
            &root.join(".gitmodules"),
            "the repository has submodules, which are not initialised in the agents' \
             worktrees (they are empty there): add `git submodule update --init` to \
             workspace.hooks.after_create if the agents need them"
                .into(),
        ));
    }
    let sandboxed = manifests.agents.iter().any(|a| {
        a.spec().sandbox.enabled && a.spec().sandbox.filesystem != manifest::FilesystemMode::None
    });
    if sandboxed && let Some(place) = hidden_home(root) {
        found.push(Finding::at(
            Severity::Warning,
            None,
            root,
            format!(
                "the project lies inside `{}`, which the sandbox hides: agents see their own \
                 worktree and the system trees, not the main checkout nor anything else there \
                 (a .venv, node_modules, toolchains in the home)",
                place.display()
            ),
        ));
    }
    found
}

/// The home directory the project lies in, when the sandbox hides it. Temporary directories
/// are hidden too, but nothing of a person's setup lives there, so they go unmentioned.
fn hidden_home(root: &Path) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let view = launch::sandbox::SandboxSpec::new("/nonexistent/agentgrid-workspace");
    match launch::sandbox::visibility(&view, home.as_deref(), root) {
        launch::sandbox::Visibility::Hidden {
            hidden_by: Some(place),
            ..
        } if !["/tmp", "/var/tmp"].iter().any(|t| {
            Path::new(t)
                .canonicalize()
                .is_ok_and(|t| place.starts_with(t))
        }) =>
        {
            Some(place)
        }
        _ => None,
    }
}

/// Runs git on the host as the project does (its hardened environment: no system or global
/// configuration, no hooks, no fsmonitor), in `root`. Its standard output on success.
async fn git(root: &Path, args: &[&str]) -> Option<String> {
    let mut spec = launch::LaunchSpec::new("git", root);
    spec.env = workspace::git_env();
    spec.args = [
        "-c",
        "core.fsmonitor=false",
        "-c",
        "core.hooksPath=/dev/null",
        "-C",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([root.display().to_string()])
    .chain(args.iter().map(|s| s.to_string()))
    .collect();
    let out = launch::run(spec, Duration::from_secs(30), 1 << 20)
        .await
        .ok()?;
    out.success().then_some(out.stdout)
}
