//! Running git through the launch crate with a clean, predictable environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use launch::{LaunchSpec, Output};

use crate::Error;

/// Generous, because checking out a large repository takes a while; a hung git still ends.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);
/// Enough for porcelain listings of big worktrees; git's messages are far shorter.
const GIT_CAPTURE: usize = 8 * 1024 * 1024;

/// The environment of every git command: [`launch::base_env`], a fixed identity so commits never
/// depend on who runs agentgrid, no interactive prompts, and the C locale so that messages read
/// the same everywhere.
pub fn git_env() -> Vec<(String, String)> {
    let mut env = launch::base_env();
    for (key, value) in [
        ("GIT_AUTHOR_NAME", "agentgrid"),
        ("GIT_AUTHOR_EMAIL", "agentgrid@localhost"),
        ("GIT_COMMITTER_NAME", "agentgrid"),
        ("GIT_COMMITTER_EMAIL", "agentgrid@localhost"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("LC_ALL", "C"),
    ] {
        launch::set_var(&mut env, key.into(), value.into());
    }
    env
}

/// Runs `git <args>` in `dir` and returns what it did, whatever its exit status.
pub(crate) async fn git(dir: &Path, args: &[&str]) -> Result<Output, Error> {
    let spec = LaunchSpec::new("git", dir)
        .args(args.iter().copied())
        .with_env_exactly(git_env());
    Ok(launch::run(spec, GIT_TIMEOUT, GIT_CAPTURE).await?)
}

/// Runs `git <args>` in `dir` and returns its standard output, or an error naming the command.
pub(crate) async fn git_ok(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let out = git(dir, args).await?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(failure(dir, args, &out))
    }
}

/// The error for a git command that did not succeed.
pub(crate) fn failure(dir: &Path, args: &[&str], out: &Output) -> Error {
    Error::Git {
        command: format!("git {}", args.join(" ")),
        dir: dir.to_path_buf(),
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
    fn the_git_environment_has_a_fixed_identity_and_no_prompts() {
        let env = git_env();
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("GIT_AUTHOR_NAME"), Some("agentgrid"));
        assert_eq!(get("GIT_COMMITTER_EMAIL"), Some("agentgrid@localhost"));
        assert_eq!(get("GIT_TERMINAL_PROMPT"), Some("0"));
        assert!(get("PATH").is_some());
    }
}
