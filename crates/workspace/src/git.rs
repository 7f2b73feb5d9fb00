//! Running git through the launch crate with a clean, predictable environment, on directories
//! the engine names itself.
//!
//! Everything in a task's worktree is written by the agent, which is treated as an adversary:
//! its `.git` pointer file, `.gitattributes`, nested repositories, and (for an agent allowed to
//! commit by itself) the files of its own worktree git directory. So git never finds the
//! repository on its own: every command names `--git-dir` (and, for a worktree, `--work-tree`
//! and `GIT_COMMON_DIR`) from the paths the engine computed, reads no system or global
//! configuration (only the trusted drivers' definitions, taken from it by name at setup, see
//! [`crate::trusted_drivers`]), and gets [`HARDENING`] on its command line, which outranks
//! every configuration file: no hooks, no fsmonitor, no automatic maintenance, no transports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use launch::{LaunchSpec, Output};

use crate::Error;

/// Generous, because checking out a large repository takes a while; a hung git still ends.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);
/// Enough for porcelain listings of big worktrees; git's messages are far shorter.
const GIT_CAPTURE: usize = 8 * 1024 * 1024;

/// Configuration given on the command line of every git command. Command-line settings win over
/// every configuration file, and git passes them on to the git processes it starts itself (in
/// `GIT_CONFIG_PARAMETERS`), so they also hold for the status `git worktree remove` runs.
///
/// - Hooks are looked up under `/dev/null`, where no file can ever exist: `--no-verify` does
///   not skip `post-commit`, `post-checkout`, `post-merge` or `reference-transaction`.
/// - No fsmonitor (a command run at every status), no untracked cache.
/// - No automatic `gc`/`maintenance` after a commit, which would start more git processes.
/// - Submodules and nested repositories are not entered: their configuration is the agent's.
/// - No signing programs, no pager, no editor, no replace refs, no transport at all (host git
///   never talks to a remote), and no credential helper.
pub(crate) const HARDENING: &[&str] = &[
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "core.useReplaceRefs=false",
    "-c",
    "core.pager=cat",
    "-c",
    "core.editor=true",
    "-c",
    "sequence.editor=true",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "submodule.recurse=false",
    "-c",
    "diff.ignoreSubmodules=all",
    "-c",
    "status.submoduleSummary=false",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
    "-c",
    "merge.verifySignatures=false",
    "-c",
    "merge.stat=false",
    "-c",
    "protocol.allow=never",
    "-c",
    "credential.helper=",
];

/// The environment of every git command: [`launch::base_env`] without `HOME`, a fixed identity
/// so commits never depend on who runs agentgrid, no system or global configuration (nor
/// system attributes), no interactive prompts, and the C locale so that messages read the same
/// everywhere.
pub fn git_env() -> Vec<(String, String)> {
    let mut env = launch::base_env();
    // git reads `~/.gitconfig` and `~/.config/git/*` from HOME; without it there is nothing to
    // read, whatever GIT_CONFIG_GLOBAL says.
    env.retain(|(key, _)| key != "HOME" && !key.starts_with("GIT_"));
    for (key, value) in [
        ("GIT_AUTHOR_NAME", "agentgrid"),
        ("GIT_AUTHOR_EMAIL", "agentgrid@localhost"),
        ("GIT_COMMITTER_NAME", "agentgrid"),
        ("GIT_COMMITTER_EMAIL", "agentgrid@localhost"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_ATTR_NOSYSTEM", "1"),
        ("GIT_NO_REPLACE_OBJECTS", "1"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_PAGER", "cat"),
        ("GIT_EDITOR", "true"),
        ("LC_ALL", "C"),
    ] {
        launch::set_var(&mut env, key.into(), value.into());
    }
    env
}

/// Which repository and checkout one git command works on, always named explicitly.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// Only the repository's common git directory: worktree bookkeeping, refs, objects. Runs in
    /// `cwd` (the main checkout), which git does not look at.
    Repository {
        common_dir: &'a Path,
        cwd: &'a Path,
        drivers: &'a [String],
    },
    /// A task's worktree: its git directory (`<common>/worktrees/task-<id>`), the common git
    /// directory (given in `GIT_COMMON_DIR`, so the worktree's `commondir` file is never read)
    /// and the checkout itself.
    Worktree {
        git_dir: &'a Path,
        common_dir: &'a Path,
        work_tree: &'a Path,
        drivers: &'a [String],
    },
    /// A tree the engine checks commits out into for judging: the common git directory, an
    /// engine-owned index file (in `GIT_INDEX_FILE`, outside the tree) and the tree itself.
    Judge {
        common_dir: &'a Path,
        index: &'a Path,
        work_tree: &'a Path,
        drivers: &'a [String],
    },
}

impl Target<'_> {
    /// The directory errors name.
    fn dir(&self) -> &Path {
        match self {
            Target::Repository { cwd, .. } => cwd,
            Target::Worktree { work_tree, .. } | Target::Judge { work_tree, .. } => work_tree,
        }
    }

    fn spec(&self, args: &[&str]) -> LaunchSpec {
        let mut env = git_env();
        let (git_dir, common_dir, work_tree, cwd, drivers) = match *self {
            Target::Repository {
                common_dir,
                cwd,
                drivers,
            } => (common_dir, common_dir, None, cwd, drivers),
            Target::Worktree {
                git_dir,
                common_dir,
                work_tree,
                drivers,
            } => (git_dir, common_dir, Some(work_tree), work_tree, drivers),
            Target::Judge {
                common_dir,
                index,
                work_tree,
                drivers,
            } => {
                launch::set_var(
                    &mut env,
                    "GIT_INDEX_FILE".into(),
                    index.to_string_lossy().into_owned(),
                );
                (common_dir, common_dir, Some(work_tree), work_tree, drivers)
            }
        };
        launch::set_var(
            &mut env,
            "GIT_COMMON_DIR".into(),
            common_dir.to_string_lossy().into_owned(),
        );
        let mut full: Vec<String> = vec![format!("--git-dir={}", git_dir.display())];
        if let Some(work_tree) = work_tree {
            full.push(format!("--work-tree={}", work_tree.display()));
        }
        // The trusted drivers' definitions come first, so that nothing in them can loosen the
        // hardening that follows.
        full.extend(drivers.iter().cloned());
        full.extend(HARDENING.iter().map(|s| s.to_string()));
        full.extend(args.iter().map(|s| s.to_string()));
        LaunchSpec::new("git", cwd).args(full).with_env_exactly(env)
    }
}

/// Runs `git <args>` on `target` and returns what it did, whatever its exit status.
pub(crate) async fn git(target: Target<'_>, args: &[&str]) -> Result<Output, Error> {
    Ok(launch::run(target.spec(args), GIT_TIMEOUT, GIT_CAPTURE).await?)
}

/// Runs `git <args>` on `target` and returns its standard output, or an error naming the
/// command.
pub(crate) async fn git_ok(target: Target<'_>, args: &[&str]) -> Result<String, Error> {
    let out = git(target, args).await?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(failure(target, args, &out))
    }
}

/// Finds the common git directory of the checkout at `repo_root`. This is the one time git
/// looks for a repository by itself: the main checkout is the user's, and what it names is
/// trusted from then on; the hardening holds here too.
pub(crate) async fn discover_common_dir(repo_root: &Path) -> Result<Output, Error> {
    let mut args: Vec<&str> = HARDENING.to_vec();
    args.extend(["rev-parse", "--path-format=absolute", "--git-common-dir"]);
    let spec = LaunchSpec::new("git", repo_root)
        .args(args)
        .with_env_exactly(git_env());
    Ok(launch::run(spec, GIT_TIMEOUT, GIT_CAPTURE).await?)
}

/// The error for a git command that did not succeed.
pub(crate) fn failure(target: Target<'_>, args: &[&str], out: &Output) -> Error {
    Error::Git {
        command: format!("git {}", args.join(" ")),
        dir: target.dir().to_path_buf(),
        status: out.describe(),
        output: out.combined(),
    }
}

/// Whether a failed git command lost a race with another git process: for one of git's lock
/// files, or reading a worktree record that another `git worktree add` was still writing. Such
/// failures are worth one retry when several workspaces are made at once.
pub(crate) fn transient(out: &Output) -> bool {
    let text = out.combined();
    text.contains(".lock")
        || text.contains("lock file")
        || text.contains("failed to read .git/worktrees/")
}

/// Splits NUL-separated output such as `git status -z`.
pub(crate) fn split_z(text: &str) -> Vec<String> {
    text.split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// One entry of `git worktree list --porcelain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorktreeEntry {
    pub path: PathBuf,
    /// The short branch name, `None` when detached.
    pub branch: Option<String>,
    /// git found its directory gone.
    pub prunable: bool,
}

pub(crate) fn parse_worktree_list(text: &str) -> Vec<WorktreeEntry> {
    let mut entries = Vec::new();
    for block in text.split("\n\n") {
        let mut entry: Option<WorktreeEntry> = None;
        for line in block.lines() {
            if let Some(path) = line.strip_prefix("worktree ") {
                entry = Some(WorktreeEntry {
                    path: PathBuf::from(path),
                    branch: None,
                    prunable: false,
                });
            } else if let Some(e) = entry.as_mut() {
                if let Some(branch) = line.strip_prefix("branch ") {
                    e.branch = Some(
                        branch
                            .strip_prefix("refs/heads/")
                            .unwrap_or(branch)
                            .to_string(),
                    );
                } else if line == "prunable" || line.starts_with("prunable ") {
                    e.prunable = true;
                }
            }
        }
        entries.extend(entry);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_worktree_listings() {
        let text = "worktree /repo\nHEAD 1111\nbranch refs/heads/main\n\n\
                    worktree /repo/.agentgrid/workspaces/task-3\nHEAD 2222\nbranch refs/heads/agentgrid/task-3\n\n\
                    worktree /gone\nHEAD 3333\ndetached\nprunable gitdir file points to non-existent location\n";
        let entries = parse_worktree_list(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].branch.as_deref(), Some("main"));
        assert_eq!(
            entries[1].path,
            PathBuf::from("/repo/.agentgrid/workspaces/task-3")
        );
        assert_eq!(entries[1].branch.as_deref(), Some("agentgrid/task-3"));
        assert!(!entries[1].prunable);
        assert_eq!(entries[2].branch, None);
        assert!(entries[2].prunable);
    }

    #[test]
    fn lock_and_half_written_record_failures_are_transient() {
        let failed = |stderr: &str| Output {
            code: Some(128),
            signal: None,
            stdout: String::new(),
            stderr: stderr.into(),
            stdout_cut: false,
            stderr_cut: false,
            timed_out: false,
            wall_ms: 1,
            cpu_ms: 0,
        };
        assert!(transient(&failed(
            "fatal: Unable to create '/r/.git/index.lock': File exists."
        )));
        assert!(transient(&failed(
            "fatal: failed to read .git/worktrees/task-1/commondir: Success"
        )));
        assert!(!transient(&failed("fatal: invalid reference: nope")));
    }

    #[test]
    fn the_git_environment_has_a_fixed_identity_no_prompts_and_no_outside_config() {
        let env = git_env();
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("GIT_AUTHOR_NAME"), Some("agentgrid"));
        assert_eq!(get("GIT_COMMITTER_EMAIL"), Some("agentgrid@localhost"));
        assert_eq!(get("GIT_TERMINAL_PROMPT"), Some("0"));
        assert_eq!(get("GIT_CONFIG_NOSYSTEM"), Some("1"));
        assert_eq!(get("GIT_CONFIG_GLOBAL"), Some("/dev/null"));
        assert_eq!(
            get("HOME"),
            None,
            "no home directory whose config git could read"
        );
        assert!(get("PATH").is_some());
    }
}
