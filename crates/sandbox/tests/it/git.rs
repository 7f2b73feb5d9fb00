//! Git inside a linked worktree: reading always works, committing only with the commit paths.

use std::fs;
use std::path::{Path, PathBuf};

use sandbox::GitMetadata;

use crate::support::*;

/// A repository with one commit and a linked worktree under a hidden `.agentgrid`, the way
/// agentgrid lays out its workspaces.
fn repo() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = scratch();
    let repo = canonical(dir.path());
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join("README.md"), "readme\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let ws = repo.join(".agentgrid/workspaces/task-1");
    git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "agentgrid/task-1",
            ws.to_str().unwrap(),
        ],
    );
    (dir, repo, ws)
}

const COMMIT: &str = "git status --short && git log --oneline | wc -l && echo change > new.txt && \
                      git add new.txt && git -c user.name=a -c user.email=a@a.invalid commit -q -m agent && echo COMMITTED";

fn branch_head(repo: &Path) -> String {
    git(repo, &["rev-parse", "agentgrid/task-1"])
}

#[test]
fn an_agent_reads_git_metadata_but_cannot_write_it_by_default() {
    let (_dir, repo, ws) = repo();
    let before = branch_head(&repo);
    let mut spec = spec(&ws);
    spec.hide = vec![repo.join(".agentgrid")];
    spec.git = Some(GitMetadata::linked(&repo.join(".git"), "task-1"));
    let run = run(&spec, COMMIT, &[]);
    assert!(run.stdout.contains('1'), "git log works inside: {run:#?}");
    assert!(!run.stdout.contains("COMMITTED"), "{run:#?}");
    assert_eq!(branch_head(&repo), before);
    assert!(
        ws.join("new.txt").exists(),
        "the work itself is in the workspace"
    );
}

#[test]
fn with_the_commit_paths_writable_an_agent_commits_on_its_branch() {
    let (_dir, repo, ws) = repo();
    let before = branch_head(&repo);
    let meta = GitMetadata::linked(&repo.join(".git"), "task-1");
    let mut spec = spec(&ws);
    spec.hide = vec![repo.join(".agentgrid")];
    spec.writable = meta.commit_paths();
    spec.git = Some(meta);
    let run = run(&spec, COMMIT, &[]);
    assert!(run.stdout.contains("COMMITTED"), "{run:#?}");
    assert_ne!(branch_head(&repo), before);
    assert_eq!(
        git(&repo, &["rev-parse", "main"]),
        git(&repo, &["rev-parse", "agentgrid/task-1~1"])
    );
    // The main checkout was not touched.
    assert!(git(&repo, &["diff", "--stat"]).is_empty());
    assert!(!repo.join("new.txt").exists());
}
