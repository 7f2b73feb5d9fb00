//! Judging a commit: validators run on a tree the engine checked out, never in the agent's
//! worktree, after the changes since the task's base commit were checked.
//!
//! Per task, under the project's state directory (hidden from every sandbox):
//! - `judges/task-<id>.base`: the commit the task's branch was made from, recorded before the
//!   agent's first iteration ever runs, so that nothing the agent does can move it (a ref could
//!   be moved by an agent that commits by itself);
//! - `judges/task-<id>/tree` and its index beside it: the commit under judgement, and nothing
//!   else. Untracked and ignored files of the worktree never reach it; what validators write in
//!   it never reaches the branch; it is reused from one iteration to the next.
//!
//! Before any validator runs, [`crate::protect`] reads the changes since base; a protected file
//! changed or a planted file added fails the iteration with the reason fed back, as a failed
//! validator would. Dependencies the owner installed but never committed (`validation.share`)
//! appear in the tree as links to the main checkout's copies, shown read-only in the sandbox.

use std::path::{Path, PathBuf};

use domain::event::ValidatorResult;
use workspace::{ChangeKind, JudgeTree, Workspace, Workspaces};

use crate::guard::Guard;
use crate::protect::{self, Finding, Protection};
use crate::run::AgentRun;
use crate::run::{ExecutionJob, Site, sandbox_for, sandbox_places, validator_environment};
use crate::validate::{OUTPUT_TAIL_BYTES, Validation, Verdict, output_tail, run_guarded};

/// The name the refusal goes under in the evidence, beside the validators' own names.
pub const CHECK_NAME: &str = "judged files";

fn judges_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("judges")
}

/// Where the validators of a land of the task judge the landed commit: apart from the
/// executions' judge tree, which the engine may be removing as the land runs.
pub fn land_judge_dir(state_dir: &Path, task: domain::TaskId) -> PathBuf {
    state_dir.join("judges").join(format!("land-{task}"))
}

/// Where the task's judge tree lives.
pub fn judge_dir(state_dir: &Path, task: domain::TaskId) -> PathBuf {
    state_dir.join("judges").join(format!("task-{task}"))
}

fn base_file(job: &ExecutionJob) -> PathBuf {
    base_file_of(&job.state_dir, job.task)
}

/// Where the task's base commit is recorded.
pub fn base_file_of(state_dir: &Path, task: domain::TaskId) -> PathBuf {
    state_dir.join("judges").join(format!("task-{task}.base"))
}

/// The tasks that have a base commit recorded under `state_dir`, from the file names.
pub fn recorded_bases(state_dir: &Path) -> Vec<domain::TaskId> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("judges")) else {
        return Vec::new();
    };
    let mut tasks: Vec<domain::TaskId> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let id = name
                .to_str()?
                .strip_prefix("task-")?
                .strip_suffix(".base")?;
            // Only the names this module writes: digits, no sign, no leading zero.
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.starts_with('0') {
                return None;
            }
            id.parse().ok().map(domain::TaskId)
        })
        .collect();
    tasks.sort();
    tasks
}

/// Forgets the base commit of a task that ended for good (done: no person can reopen it).
/// A failed, cancelled or blocked task keeps its base, since a reopened one is judged against
/// the same commit.
pub fn forget_base(state_dir: &Path, task: domain::TaskId) -> std::io::Result<()> {
    match std::fs::remove_file(base_file_of(state_dir, task)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The task's base commit: the one recorded, or, the first time, where its branch forked from
/// what it started from, recorded now.
pub(crate) async fn base_commit(
    job: &ExecutionJob,
    manager: &Workspaces,
    start_from: Option<&str>,
) -> Result<String, String> {
    // The judge trees lie inside the main checkout's `.agentgrid`; they ignore themselves, so
    // that the owner's `git status` and `git add -A` never see them, in projects made before
    // they existed too.
    ignore_judges(&job.state_dir)?;
    let file = base_file(job);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let text = text.trim();
        if text.len() >= 40 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(text.to_string());
        }
    }
    let base = manager
        .fork_point(job.task, start_from)
        .await
        .map_err(|e| format!("finding the task's base commit: {e}"))?;
    std::fs::write(&file, format!("{base}\n"))
        .map_err(|e| format!("recording the base commit in {}: {e}", file.display()))?;
    Ok(base)
}

/// Makes the judge trees ignore themselves, so that the owner's `git status` and `git add -A`
/// never see them.
fn ignore_judges(state_dir: &Path) -> Result<(), String> {
    let dir = judges_dir(state_dir);
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&ignore, "*\n"))
            .map_err(|e| format!("preparing {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Checks and validates what the task's branch holds now.
pub(crate) async fn judge_branch(
    job: &ExecutionJob,
    manager: &Workspaces,
    ws: &Workspace,
    start_from: Option<&str>,
) -> Result<Validation, String> {
    let base = base_commit(job, manager, start_from).await?;
    let commit = manager
        .branch_commit(ws.task)
        .await
        .map_err(|e| format!("reading the task's branch: {e}"))?;
    judge_commit(&job.site(), manager, &base, &commit).await
}

/// Checks and validates `commit` exactly as an execution's verdict does, with the changes
/// since `base` checked first: for a land, the landed commit, judged against the base it
/// lands on. The validators come from `site.agent` (the manifests), never from the tree.
pub async fn judge_commit(
    site: &Site<'_>,
    manager: &Workspaces,
    base: &str,
    commit: &str,
) -> Result<Validation, String> {
    let agent = site.agent;
    let (base, commit) = (base.to_string(), commit.to_string());
    ignore_judges(site.state_dir)?;
    let judge = JudgeTree::new(site.judge_dir.clone());
    manager
        .check_out_for_judging(&judge, &commit)
        .await
        .map_err(|e| format!("checking the commit out for the validators: {e}"))?;
    let tree = judge.tree();

    let changes = manager
        .changes(&base, &commit)
        .await
        .map_err(|e| format!("listing the changes since the base commit: {e}"))?;
    let argvs: Vec<Vec<String>> = agent.validators.iter().map(|v| v.argv.clone()).collect();
    let mut protection = Protection::new(&argvs, agent.protect.clone());
    // A script's text is read as the base commit has it, so the agent's copy names nothing.
    // A file that cannot be read as text (a committed binary) runs nothing more that we know.
    for file in protection.validator_files.clone() {
        if let Ok(Some(text)) = manager.file_at(&base, &file).await
            && protect::is_shell_script(&file, &text)
        {
            protection.add_script(&text);
        }
    }
    protection.add_runner_dependencies();
    // What the owner shares (a vendored runner, a virtualenv's packages) is imported from
    // outside the tree; a new module of the same name first on `sys.path` would replace it.
    for module in shared_modules(agent, manager) {
        protection.add_run_module(&module);
    }
    let mut findings = protect::protected_changes(&protection, &changes);
    if protection.covers_pytest_tables() {
        for change in changes
            .iter()
            .filter(|c| c.path == "pyproject.toml" || c.path.ends_with("/pyproject.toml"))
        {
            let read = |at: String| async move {
                manager
                    .file_at(&at, &change.path)
                    .await
                    .map_err(|e| format!("reading {}: {e}", change.path))
            };
            let now = read(commit.clone()).await?.unwrap_or_default();
            let found = match change.kind {
                ChangeKind::Added => protect::pytest_tables_added(&change.path, &now),
                _ => {
                    let then = read(base.clone()).await?.unwrap_or_default();
                    protect::pytest_tables_changed(&change.path, &then, &now)
                }
            };
            findings.extend(found);
        }
    }
    if protection.runs_npm && !protection.is_off() {
        for change in changes.iter().filter(|c| {
            c.kind != ChangeKind::Added
                && (c.path == "package.json" || c.path.ends_with("/package.json"))
        }) {
            let read = |at: String| async move {
                manager
                    .file_at(&at, &change.path)
                    .await
                    .map_err(|e| format!("reading {}: {e}", change.path))
            };
            let then = read(base.clone()).await?.unwrap_or_default();
            let now = read(commit.clone()).await?.unwrap_or_default();
            findings.extend(protect::npm_scripts_changed(&change.path, &then, &now));
        }
    }
    findings.extend(protect::planted_files(&changes, &protection, |dir| {
        std::fs::symlink_metadata(tree.join(dir).join("__init__.py")).is_ok_and(|m| m.is_file())
    }));
    if !findings.is_empty() {
        return Ok(refusal(&findings, &base));
    }

    let shared = share(agent, manager, &tree)?;
    let changed: Vec<String> = changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Deleted)
        .map(|c| c.path.clone())
        .collect();
    let guard = Guard::prepare(&site.judge_dir, &tree, &changed)
        .map_err(|e| format!("writing agentgrid's guard for the validators: {e}"))?;
    let mut env = validator_environment(site, &tree);
    // Bytecode is neither written nor read from the tree: a planted `__pycache__/*.pyc` would
    // otherwise be imported in place of its source. The prefix is a directory nobody writes.
    for (key, value) in [
        ("PYTHONNOUSERSITE", "1".to_string()),
        ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
        (
            "PYTHONPYCACHEPREFIX",
            judges_dir(site.state_dir)
                .join("no-pycache")
                .display()
                .to_string(),
        ),
    ] {
        launch::set_var(&mut env, key.into(), value);
    }
    guard.set_env(&mut env);
    let sandbox = agent.sandbox.enabled.then(|| {
        // The binary stays visible (it is the sandbox helper); without a token and a socket
        // it can do nothing for a validator. The agent's worktree is hidden with every other.
        let mut expose = vec![site.agentgrid_bin.to_path_buf(), guard.shown()];
        expose.extend(shared);
        let mut places = sandbox_places(site, &tree, &expose);
        places.git = None;
        places.gateway = None;
        let mut spec = sandbox_for(&agent.sandbox, &places);
        if spec.network == launch::sandbox::NetworkMode::Gateway {
            spec.network = launch::sandbox::NetworkMode::None;
        }
        spec.gateway = None;
        spec.writable.push(guard.writable());
        spec
    });
    run_guarded(
        &agent.validators,
        agent.threshold,
        &tree,
        &env,
        sandbox.as_ref(),
        Some(&guard),
    )
    .await
    .map_err(|e| format!("validation: {e}"))
}

/// The top-level Python module names in the shared paths of the main checkout (the owner's,
/// read on the host): `owner_runner` for `vendor/owner_runner.py`, `pluggy` for
/// `.venv/lib/python3.11/site-packages/pluggy/`. A bounded walk: shared trees can be large.
fn shared_modules(agent: &AgentRun, manager: &Workspaces) -> Vec<String> {
    const MAX_ENTRIES: usize = 50_000;
    let repo_root = &manager.config().repo_root;
    let mut modules = Vec::new();
    let mut seen = 0usize;
    let mut pending: Vec<(PathBuf, usize)> = agent
        .share
        .iter()
        .map(|entry| (repo_root.join(entry), 0))
        .collect();
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        // Top-level modules are those of a shared directory itself (`vendor/`) or of a
        // site-packages directory under it; a file deeper in a package is no module of its own.
        let holds_modules = depth == 0
            || dir
                .file_name()
                .is_some_and(|n| n == "site-packages" || n == "dist-packages");
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return modules;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if holds_modules && entry.path().join("__init__.py").is_file() {
                    modules.push(name.clone());
                }
                // A virtualenv keeps its packages a few levels down (lib/pythonX.Y/site-packages).
                if depth < 4 && !name.starts_with('.') && name != "__pycache__" {
                    pending.push((entry.path(), depth + 1));
                }
            } else if holds_modules && let Some(stem) = name.strip_suffix(".py") {
                modules.push(stem.to_string());
            }
        }
    }
    modules
}

/// Puts a link to each shared path of the main checkout into the tree, in place of whatever
/// the commit has there, and returns the main checkout's paths (to be shown read-only).
fn share(agent: &AgentRun, manager: &Workspaces, tree: &Path) -> Result<Vec<PathBuf>, String> {
    let repo_root = &manager.config().repo_root;
    let mut shown = Vec::new();
    for entry in &agent.share {
        let source = repo_root.join(entry);
        let Ok(source) = source.canonicalize() else {
            tracing::warn!(path = %source.display(), "validation.share names a path the main checkout does not have");
            continue;
        };
        let io = |e: std::io::Error| format!("sharing {entry} into the judge tree: {e}");
        // Every directory on the way is made a real one: a link the commit holds in its place
        // (`node_modules -> /somewhere`) would lead the engine's own writes out of the tree.
        let mut place = tree.to_path_buf();
        let components: Vec<_> = Path::new(entry).components().collect();
        for (i, component) in components.iter().enumerate() {
            place.push(component);
            let last = i + 1 == components.len();
            match std::fs::symlink_metadata(&place) {
                Ok(meta) if meta.is_dir() && !last => continue,
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&place).map_err(io)?,
                Ok(_) => std::fs::remove_file(&place).map_err(io)?,
                Err(_) => {}
            }
            if !last {
                std::fs::create_dir(&place).map_err(io)?;
            }
        }
        std::os::unix::fs::symlink(&source, &place).map_err(io)?;
        shown.push(source);
    }
    Ok(shown)
}

/// The failed validation of a tree that cannot be judged.
fn refusal(findings: &[Finding], base: &str) -> Validation {
    let mut text = String::new();
    for f in findings {
        text.push_str(&f.message);
        text.push('\n');
    }
    text.push_str(&format!(
        "(compared with the task's base commit {})\n",
        &base[..base.len().min(12)]
    ));
    let first = &findings[0].message;
    let reason = match findings.len() {
        1 => first.clone(),
        n => format!("{first} (and {} more)", n - 1),
    };
    let result = ValidatorResult {
        name: CHECK_NAME.into(),
        score: 0.0,
        passed: false,
        weight: 0.0,
        command: String::new(),
        exit_code: None,
        signal: None,
        timed_out: false,
        duration_ms: 0,
        counts: None,
        reason: Some(reason.clone()),
        score_only: false,
        output_tail: output_tail(&text, "", OUTPUT_TAIL_BYTES),
    };
    Validation {
        score: 0.0,
        passed: false,
        verdicts: vec![Verdict {
            result,
            status: "refused before the validators ran".into(),
        }],
        reason: Some(reason),
    }
}
