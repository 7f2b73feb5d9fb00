//! Integration tests of the workspace crate, with real git repositories in temporary directories.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use domain::TaskId;
use launch::{LaunchSpec, OutputSpec, Signal};
use tempfile::TempDir;
use workspace::{
    Error, HookKind, Hooks, MergeOutcome, RemoveOutcome, WorkspaceConfig, Workspaces, git_env,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs git in `dir` and returns its trimmed standard output, failing the test if git fails.
async fn git(dir: &Path, args: &[&str]) -> String {
    let out = try_git(dir, args).await;
    assert!(
        out.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        out.combined()
    );
    out.stdout.trim().to_string()
}

async fn try_git(dir: &Path, args: &[&str]) -> launch::Output {
    let spec = LaunchSpec::new("git", dir)
        .args(args.iter().copied())
        .with_env_exactly(git_env());
    launch::run(spec, DEADLINE, 1024 * 1024).await.unwrap()
}

/// A repository with one commit on `main`, holding README.md.
async fn repo() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]).await;
    std::fs::write(dir.path().join("README.md"), "hello\n").unwrap();
    git(dir.path(), &["add", "README.md"]).await;
    git(dir.path(), &["commit", "-q", "-m", "first"]).await;
    dir
}

fn workspaces(repo: &Path, hooks: Hooks) -> Workspaces {
    Workspaces::new(WorkspaceConfig {
        repo_root: repo.to_path_buf(),
        root: ".agentgrid/workspaces".into(),
        base: "HEAD".into(),
        hooks,
        hook_timeout: Duration::from_secs(20),
        quota: Default::default(),
        drivers: Default::default(),
    })
}

async fn branch_exists(repo: &Path, branch: &str) -> bool {
    try_git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .await
    .success()
}

#[tokio::test]
async fn ensure_creates_the_branch_and_directory_and_is_idempotent() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let first = ws.ensure(TaskId(1), None, None).await.unwrap();
    assert!(first.created);
    assert_eq!(first.branch, "agentgrid/task-1");
    assert_eq!(first.path, repo.path().join(".agentgrid/workspaces/task-1"));
    assert_eq!(
        std::fs::read_to_string(first.path.join("README.md")).unwrap(),
        "hello\n"
    );
    assert!(branch_exists(repo.path(), "agentgrid/task-1").await);
    assert_eq!(
        ws.head(&first).await.unwrap(),
        git(repo.path(), &["rev-parse", "HEAD"]).await
    );
    assert_eq!(
        git(&first.path, &["branch", "--show-current"]).await,
        "agentgrid/task-1"
    );

    let again = ws.ensure(TaskId(1), None, None).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.path, first.path);
    assert_eq!(again.branch, first.branch);

    let listed = ws.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].task, TaskId(1));
    assert_eq!(listed[0].path, first.path);
    // The worktrees inside the repository do not show up as untracked files of the main checkout.
    assert_eq!(git(repo.path(), &["status", "--porcelain"]).await, "");
}

#[tokio::test]
async fn a_sub_task_branch_starts_from_its_parent_branch() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let parent = ws.ensure(TaskId(1), None, None).await.unwrap();
    std::fs::write(parent.path.join("plan.md"), "the plan\n").unwrap();
    let parent_head = ws.commit_all(&parent, "plan").await.unwrap().unwrap();

    let child = ws
        .ensure(TaskId(2), Some(&parent.branch), None)
        .await
        .unwrap();
    assert!(child.created);
    assert_eq!(ws.head(&child).await.unwrap(), parent_head);
    assert_eq!(
        std::fs::read_to_string(child.path.join("plan.md")).unwrap(),
        "the plan\n"
    );

    // A top-level task still starts from the base, without the parent's work.
    let other = ws.ensure(TaskId(3), None, None).await.unwrap();
    assert!(!other.path.join("plan.md").exists());
}

#[tokio::test]
async fn hooks_run_in_order_in_the_workspace_with_their_environment() {
    let repo = repo().await;
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("hooks.log");
    let line = |what: &str| {
        format!(
            "echo \"{what} $AGENTGRID_HOOK $AGENTGRID_TASK_ID $(pwd)\" >> {}",
            log.display()
        )
    };
    let hooks = Hooks {
        after_create: Some(line("created").into()),
        before_run: Some(format!("{} $EXTRA", line("before")).into()),
        after_run: Some(line("after").into()),
        before_remove: Some(line("removing").into()),
    };
    let ws = workspaces(repo.path(), hooks);
    let w = ws.ensure(TaskId(4), None, None).await.unwrap();
    ws.ensure(TaskId(4), None, None).await.unwrap();
    let extra = vec![("EXTRA".to_string(), "extra-value".to_string())];
    ws.run_hook(&w, HookKind::BeforeRun, &extra, None)
        .await
        .unwrap();
    ws.run_hook(&w, HookKind::AfterRun, &[], None)
        .await
        .unwrap();
    assert_eq!(ws.remove(&w, None).await.unwrap(), RemoveOutcome::Removed);

    let logged = std::fs::read_to_string(&log).unwrap();
    let path = w.path.display();
    let expected = format!(
        "created after_create 4 {path}\nbefore before_run 4 {path} extra-value\n\
         after after_run 4 {path}\nremoving before_remove 4 {path}\n"
    );
    assert_eq!(
        logged, expected,
        "after_create runs once, and every hook in the workspace"
    );
}

#[tokio::test]
async fn a_failing_hook_is_an_error_with_its_output() {
    let repo = repo().await;
    let hooks = Hooks {
        before_run: Some("echo compiling; echo missing dependency >&2; exit 3".into()),
        after_run: Some("sleep 30".into()),
        ..Hooks::default()
    };
    let mut ws = workspaces(repo.path(), hooks.clone());
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    let err = ws
        .run_hook(&w, HookKind::BeforeRun, &[], None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Hook {
                hook: HookKind::BeforeRun,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("before_run") && text.contains("exited with 3"),
        "{text}"
    );
    assert!(
        text.contains("compiling") && text.contains("missing dependency"),
        "{text}"
    );

    ws = Workspaces::new(WorkspaceConfig {
        hook_timeout: Duration::from_millis(300),
        ..ws.config().clone()
    });
    let started = std::time::Instant::now();
    let err = ws
        .run_hook(&w, HookKind::AfterRun, &[], None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_failed_after_create_hook_undoes_the_checkout_so_the_next_ensure_retries() {
    let repo = repo().await;
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("tried");
    // Fails the first time only.
    let script = format!(
        "test -f {m} || {{ touch {m}; echo first try fails; exit 1; }}",
        m = marker.display()
    );
    let ws = workspaces(
        repo.path(),
        Hooks {
            after_create: Some(script.into()),
            ..Hooks::default()
        },
    );
    let err = ws.ensure(TaskId(1), None, None).await.unwrap_err();
    assert!(err.to_string().contains("first try fails"), "{err}");
    assert!(!ws.path_of(TaskId(1)).exists());
    assert!(branch_exists(repo.path(), "agentgrid/task-1").await);

    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    assert!(w.created);
    assert!(w.path.join("README.md").exists());
}

#[tokio::test]
async fn commit_all_commits_tracked_and_untracked_changes_and_nothing_when_clean() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    assert_eq!(ws.commit_all(&w, "nothing").await.unwrap(), None);

    std::fs::write(w.path.join("README.md"), "changed\n").unwrap();
    std::fs::create_dir(w.path.join("src")).unwrap();
    std::fs::write(w.path.join("src/new.rs"), "fn main() {}\n").unwrap();
    let sha = ws
        .commit_all(&w, "task 1: work")
        .await
        .unwrap()
        .expect("a commit");
    assert_eq!(sha.len(), 40);
    assert_eq!(ws.head(&w).await.unwrap(), sha);
    let files = git(
        &w.path,
        &["show", "--name-only", "--format=%an <%ae>|%s", &sha],
    )
    .await;
    let mut lines = files.lines();
    assert_eq!(
        lines.next(),
        Some("agentgrid <agentgrid@localhost>|task 1: work")
    );
    let mut changed: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    changed.sort();
    assert_eq!(changed, ["README.md", "src/new.rs"]);
    assert_eq!(ws.commit_all(&w, "again").await.unwrap(), None);
}

#[tokio::test]
async fn merging_a_branch_makes_a_merge_commit() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let parent = ws.ensure(TaskId(1), None, None).await.unwrap();
    let child = ws
        .ensure(TaskId(2), Some(&parent.branch), None)
        .await
        .unwrap();
    std::fs::write(child.path.join("feature.txt"), "feature\n").unwrap();
    ws.commit_all(&child, "feature").await.unwrap().unwrap();
    let before = ws.head(&parent).await.unwrap();

    let outcome = ws
        .merge_branch(&parent, &child.branch, "merge task 2")
        .await
        .unwrap();
    let MergeOutcome::Merged { commit } = outcome else {
        panic!("expected a merge, got {outcome:?}")
    };
    assert_eq!(ws.head(&parent).await.unwrap(), commit);
    let parents = git(&parent.path, &["rev-list", "--parents", "-n", "1", &commit]).await;
    assert_eq!(
        parents.split_whitespace().count(),
        3,
        "a merge commit has two parents: {parents}"
    );
    assert!(parents.contains(&before));
    assert_eq!(
        git(&parent.path, &["log", "-1", "--format=%s"]).await,
        "merge task 2"
    );
    assert!(parent.path.join("feature.txt").exists());

    let again = ws
        .merge_branch(&parent, &child.branch, "merge task 2 again")
        .await
        .unwrap();
    assert_eq!(again, MergeOutcome::UpToDate);
}

#[tokio::test]
async fn a_conflicting_merge_is_aborted_and_names_the_files() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let a = ws.ensure(TaskId(1), None, None).await.unwrap();
    let b = ws.ensure(TaskId(2), None, None).await.unwrap();
    std::fs::write(a.path.join("README.md"), "from a\n").unwrap();
    std::fs::write(b.path.join("README.md"), "from b\n").unwrap();
    ws.commit_all(&a, "a").await.unwrap().unwrap();
    ws.commit_all(&b, "b").await.unwrap().unwrap();
    let before = ws.head(&a).await.unwrap();

    let outcome = ws.merge_branch(&a, &b.branch, "merge b").await.unwrap();
    assert_eq!(
        outcome,
        MergeOutcome::Conflict {
            files: vec!["README.md".into()]
        }
    );
    assert_eq!(ws.head(&a).await.unwrap(), before);
    assert_eq!(
        git(&a.path, &["status", "--porcelain"]).await,
        "",
        "the merge was aborted"
    );
    assert_eq!(
        std::fs::read_to_string(a.path.join("README.md")).unwrap(),
        "from a\n"
    );

    let err = ws
        .merge_branch(&a, "no-such-branch", "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-branch"), "{err}");
}

#[tokio::test]
async fn merging_into_a_dirty_workspace_is_refused() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let a = ws.ensure(TaskId(1), None, None).await.unwrap();
    let b = ws.ensure(TaskId(2), None, None).await.unwrap();
    std::fs::write(b.path.join("b.txt"), "b\n").unwrap();
    ws.commit_all(&b, "b").await.unwrap().unwrap();
    std::fs::write(a.path.join("README.md"), "unsaved\n").unwrap();
    let err = ws.merge_branch(&a, &b.branch, "merge b").await.unwrap_err();
    assert!(matches!(err, Error::Uncommitted { .. }), "{err:?}");
    assert!(err.to_string().contains("README.md"), "{err}");
}

#[tokio::test]
async fn remove_waits_for_processes_inside_and_keeps_the_branch() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    std::fs::write(w.path.join("work.txt"), "work\n").unwrap();
    let sha = ws.commit_all(&w, "work").await.unwrap().unwrap();

    let sleeper = launch::spawn(
        LaunchSpec::new("sleep", &w.path).arg("30"),
        OutputSpec::default(),
    )
    .unwrap();
    let outcome = ws.remove(&w, None).await.unwrap();
    let RemoveOutcome::Busy { pids } = outcome else {
        panic!("removed while busy: {outcome:?}")
    };
    assert!(
        pids.contains(&sleeper.pid),
        "{pids:?} lacks {}",
        sleeper.pid
    );
    assert!(w.path.join("work.txt").exists());

    sleeper.kill_group(Signal::SIGKILL).unwrap();
    tokio::time::timeout(DEADLINE, sleeper.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ws.remove(&w, None).await.unwrap(), RemoveOutcome::Removed);
    assert!(!w.path.exists());
    assert!(ws.list().await.unwrap().is_empty());
    assert_eq!(
        git(repo.path(), &["rev-parse", "agentgrid/task-1"]).await,
        sha
    );
    assert_eq!(
        ws.remove(&w, None).await.unwrap(),
        RemoveOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn remove_refuses_uncommitted_changes() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    std::fs::write(w.path.join("draft.txt"), "draft\n").unwrap();
    let err = ws.remove(&w, None).await.unwrap_err();
    assert!(matches!(err, Error::Uncommitted { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("draft.txt") && text.contains("commit them first"),
        "{text}"
    );
    assert!(w.path.join("draft.txt").exists());

    let sha = ws.commit_all(&w, "draft").await.unwrap().unwrap();
    assert_eq!(ws.remove(&w, None).await.unwrap(), RemoveOutcome::Removed);
    assert_eq!(
        git(repo.path(), &["rev-parse", "agentgrid/task-1"]).await,
        sha
    );

    // The branch is checked out again, with its commits, on the next ensure.
    let back = ws.ensure(TaskId(1), None, None).await.unwrap();
    assert!(back.created);
    assert_eq!(ws.head(&back).await.unwrap(), sha);
    assert!(back.path.join("draft.txt").exists());
}

#[tokio::test]
async fn a_failing_before_remove_hook_keeps_the_workspace() {
    let repo = repo().await;
    let ws = workspaces(
        repo.path(),
        Hooks {
            before_remove: Some("exit 1".into()),
            ..Hooks::default()
        },
    );
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    let err = ws.remove(&w, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Hook {
                hook: HookKind::BeforeRemove,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(w.path.exists());
}

#[tokio::test]
async fn ensure_reattaches_the_branch_after_the_directory_was_deleted_by_hand() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    std::fs::write(w.path.join("kept.txt"), "kept\n").unwrap();
    let sha = ws.commit_all(&w, "kept").await.unwrap().unwrap();
    std::fs::remove_dir_all(&w.path).unwrap();

    let back = ws.ensure(TaskId(1), None, None).await.unwrap();
    assert!(back.created);
    assert_eq!(back.path, w.path);
    assert_eq!(ws.head(&back).await.unwrap(), sha);
    assert_eq!(
        std::fs::read_to_string(back.path.join("kept.txt")).unwrap(),
        "kept\n"
    );
    assert_eq!(ws.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_repository_without_commits_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]).await;
    let ws = workspaces(dir.path(), Hooks::default());
    let err = ws.ensure(TaskId(1), None, None).await.unwrap_err();
    assert!(matches!(err, Error::NoCommits { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("has no commits: make a first commit"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_start_points_and_non_repositories_are_reported() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let err = ws
        .ensure(TaskId(5), Some("agentgrid/task-404"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownStartPoint { .. }), "{err:?}");
    assert!(err.to_string().contains("agentgrid/task-404"), "{err}");

    let plain = tempfile::tempdir().unwrap();
    let ws = workspaces(plain.path(), Hooks::default());
    let err = ws.ensure(TaskId(1), None, None).await.unwrap_err();
    assert!(matches!(err, Error::NotARepository { .. }), "{err:?}");
}

#[tokio::test]
async fn a_foreign_directory_in_the_way_is_not_taken_over() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let path = ws.path_of(TaskId(9));
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("mine.txt"), "not yours\n").unwrap();
    let err = ws.ensure(TaskId(9), None, None).await.unwrap_err();
    assert!(matches!(err, Error::PathTaken { .. }), "{err:?}");
    assert!(path.join("mine.txt").exists());
}

#[tokio::test]
async fn list_shows_only_task_worktrees_under_the_root() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    ws.ensure(TaskId(3), None, None).await.unwrap();
    ws.ensure(TaskId(1), None, None).await.unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let other = elsewhere.path().join("other");
    git(
        repo.path(),
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "unrelated",
            other.to_str().unwrap(),
        ],
    )
    .await;
    let tasks: Vec<TaskId> = ws.list().await.unwrap().iter().map(|w| w.task).collect();
    assert_eq!(tasks, [TaskId(1), TaskId(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ensures_on_different_tasks_all_succeed() {
    let repo = repo().await;
    let ws = Arc::new(workspaces(repo.path(), Hooks::default()));
    let handles: Vec<_> = (1..=12)
        .map(|n| {
            let ws = ws.clone();
            tokio::spawn(async move { ws.ensure(TaskId(n), None, None).await })
        })
        .collect();
    for handle in handles {
        let w = handle.await.unwrap().unwrap();
        assert!(w.created);
        assert!(w.path.join("README.md").exists());
    }
    assert_eq!(ws.list().await.unwrap().len(), 12);
}

/// What git in a worktree whose `.git` names a git directory of the agent's own would run: the
/// directory shares the repository's objects and refs, so git through it moves real branches.
fn hijack_git_pointer(repo: &Path, ws: &Path, config: &str) {
    let evil = ws.join("evil");
    let common = repo.join(".git").canonicalize().unwrap();
    std::fs::create_dir_all(evil.join("info")).unwrap();
    std::fs::write(evil.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(evil.join("config"), config).unwrap();
    std::fs::write(evil.join("info/exclude"), "/evil/\n").unwrap();
    std::os::unix::fs::symlink(common.join("objects"), evil.join("objects")).unwrap();
    std::os::unix::fs::symlink(common.join("refs"), evil.join("refs")).unwrap();
    std::fs::write(ws.join(".git"), format!("gitdir: {}\n", evil.display())).unwrap();
}

#[tokio::test]
async fn a_rewritten_git_pointer_is_put_back_and_the_agents_config_never_read() {
    let repo = repo().await;
    let marks = tempfile::tempdir().unwrap();
    let ws = workspaces(repo.path(), Hooks::default());
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    let pointer = std::fs::read_to_string(w.path.join(".git")).unwrap();
    let main = git(repo.path(), &["rev-parse", "main"]).await;
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = \"touch {m}/fsmonitor; false\"\n\
         \thooksPath = {m}\n[filter \"x\"]\n\tclean = \"touch {m}/filter; cat\"\n",
        m = marks.path().display()
    );
    hijack_git_pointer(repo.path(), &w.path, &config);
    std::fs::write(w.path.join(".gitattributes"), "*.txt filter=x\n").unwrap();
    std::fs::write(w.path.join("work.txt"), "work\n").unwrap();

    let sha = ws.commit_all(&w, "work").await.unwrap().expect("a commit");
    assert_eq!(
        std::fs::read_dir(marks.path()).unwrap().count(),
        0,
        "nothing of the agent's config ran"
    );
    assert_eq!(git(repo.path(), &["rev-parse", "main"]).await, main);
    assert_eq!(
        git(repo.path(), &["rev-parse", "agentgrid/task-1"]).await,
        sha
    );
    assert_eq!(
        std::fs::read_to_string(w.path.join(".git")).unwrap(),
        pointer
    );
}

#[tokio::test]
async fn a_head_moved_to_another_branch_is_refused_and_nothing_is_committed() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    let main = git(repo.path(), &["rev-parse", "main"]).await;
    let git_dir = repo.path().join(".git/worktrees/task-1");
    std::fs::write(git_dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(w.path.join("work.txt"), "work\n").unwrap();

    let err = ws.commit_all(&w, "work").await.unwrap_err();
    assert!(matches!(err, Error::HeadMoved { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("refs/heads/main") && text.contains("agentgrid/task-1"),
        "{text}"
    );
    assert_eq!(git(repo.path(), &["rev-parse", "main"]).await, main);

    // A branch that is itself a link to another ref is refused the same way.
    std::fs::write(git_dir.join("HEAD"), "ref: refs/heads/agentgrid/task-1\n").unwrap();
    std::fs::write(
        repo.path().join(".git/refs/heads/agentgrid/task-1"),
        "ref: refs/heads/main\n",
    )
    .unwrap();
    let err = ws.commit_all(&w, "work").await.unwrap_err();
    assert!(matches!(err, Error::HeadMoved { .. }), "{err:?}");
    assert_eq!(git(repo.path(), &["rev-parse", "main"]).await, main);
}

#[tokio::test]
async fn a_merge_into_a_parent_with_a_rewritten_pointer_uses_the_engines_git_directory() {
    let repo = repo().await;
    let marks = tempfile::tempdir().unwrap();
    let ws = workspaces(repo.path(), Hooks::default());
    let parent = ws.ensure(TaskId(1), None, None).await.unwrap();
    let child = ws
        .ensure(TaskId(2), Some(&parent.branch), None)
        .await
        .unwrap();
    std::fs::write(child.path.join("feature.txt"), "feature\n").unwrap();
    ws.commit_all(&child, "feature").await.unwrap().unwrap();
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = \"touch {m}/fsmonitor; false\"\n",
        m = marks.path().display()
    );
    hijack_git_pointer(repo.path(), &parent.path, &config);
    let main = git(repo.path(), &["rev-parse", "main"]).await;

    let outcome = ws
        .merge_branch(&parent, &child.branch, "merge")
        .await
        .unwrap();
    assert!(
        matches!(outcome, MergeOutcome::Merged { .. }),
        "{outcome:?}"
    );
    assert_eq!(std::fs::read_dir(marks.path()).unwrap().count(), 0);
    assert_eq!(
        git(repo.path(), &["rev-parse", "main"]).await,
        main,
        "the merge went onto the parent's branch, not onto the branch the pointer named"
    );
    assert!(
        git(repo.path(), &["show", "agentgrid/task-1:feature.txt"])
            .await
            .contains("feature")
    );
}

#[tokio::test]
async fn a_worktree_over_its_quota_is_not_committed() {
    let repo = repo().await;
    let ws = Workspaces::new(WorkspaceConfig {
        quota: workspace::Quota {
            bytes: 10_000,
            files: 5,
        },
        ..workspaces(repo.path(), Hooks::default()).config().clone()
    });
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    // Many small files in an untracked directory: git lists the directory as one entry unless
    // asked for every file, which is what counts.
    std::fs::create_dir(w.path.join("many")).unwrap();
    for i in 0..6 {
        std::fs::write(w.path.join(format!("many/{i}.txt")), "x").unwrap();
    }
    let err = ws.commit_all(&w, "too many").await.unwrap_err();
    assert!(err.to_string().contains("5 files"), "{err}");
    std::fs::remove_dir_all(w.path.join("many")).unwrap();
    std::fs::write(w.path.join("big.bin"), vec![0u8; 20_000]).unwrap();
    let err = ws.commit_all(&w, "too big").await.unwrap_err();
    assert!(
        err.to_string().contains("10000 bytes")
            && err.to_string().contains("nothing was committed"),
        "{err}"
    );
    assert_eq!(
        git(&w.path, &["rev-list", "--count", "HEAD"]).await.trim(),
        "1",
        "no commit was made"
    );
    std::fs::write(w.path.join("big.bin"), vec![0u8; 2_000]).unwrap();
    assert!(ws.commit_all(&w, "fits").await.unwrap().is_some());
}

#[tokio::test]
async fn a_judge_tree_holds_exactly_the_commit_whatever_was_done_to_it() {
    let repo = repo().await;
    let ws = workspaces(repo.path(), Hooks::default());
    let w = ws.ensure(TaskId(1), None, None).await.unwrap();
    let base = ws.fork_point(TaskId(1), None).await.unwrap();
    assert_eq!(base, git(repo.path(), &["rev-parse", "main"]).await);

    std::fs::write(w.path.join("README.md"), "changed\n").unwrap();
    std::fs::write(w.path.join(".gitignore"), "*.log\n").unwrap();
    std::fs::create_dir(w.path.join("src")).unwrap();
    std::fs::write(w.path.join("src/a.py"), "x = 1\n").unwrap();
    std::fs::write(w.path.join("planted.log"), "ignored, never committed\n").unwrap();
    let commit = ws.commit_all(&w, "work").await.unwrap().expect("a commit");
    assert_eq!(ws.branch_commit(TaskId(1)).await.unwrap(), commit);

    let mut changes: Vec<(workspace::ChangeKind, String)> = ws
        .changes(&base, &commit)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.path))
        .collect();
    changes.sort_by(|a, b| a.1.cmp(&b.1));
    use workspace::ChangeKind::{Added, Modified};
    assert_eq!(
        changes,
        [
            (Added, ".gitignore".to_string()),
            (Modified, "README.md".to_string()),
            (Added, "src/a.py".to_string()),
        ]
    );
    assert_eq!(
        ws.file_at(&base, "README.md").await.unwrap().as_deref(),
        Some("hello\n")
    );
    assert_eq!(ws.file_at(&commit, "nope.txt").await.unwrap(), None);

    let place = tempfile::tempdir().unwrap();
    let judge = workspace::JudgeTree::new(place.path().join("task-1"));
    ws.check_out_for_judging(&judge, &commit).await.unwrap();
    let tree = judge.tree();
    let listing = |tree: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(tree)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(listing(&tree), [".gitignore", "README.md", "src"]);
    assert_eq!(
        std::fs::read_to_string(tree.join("README.md")).unwrap(),
        "changed\n"
    );

    // What validators leave: a rewritten tracked file, new files, ignored ones, directories.
    std::fs::write(tree.join("README.md"), "tampered\n").unwrap();
    std::fs::write(tree.join("new.txt"), "byproduct\n").unwrap();
    std::fs::write(tree.join("report.log"), "ignored byproduct\n").unwrap();
    std::fs::create_dir_all(tree.join("cache/deep")).unwrap();
    std::fs::write(tree.join("cache/deep/f"), "x").unwrap();
    std::fs::remove_file(tree.join("src/a.py")).unwrap();
    // A file beside the tree shows that the tree was brought back in place, not made anew.
    std::fs::write(judge.dir.join("marker"), "").unwrap();
    ws.check_out_for_judging(&judge, &commit).await.unwrap();
    assert_eq!(listing(&tree), [".gitignore", "README.md", "src"]);
    assert_eq!(
        std::fs::read_to_string(tree.join("README.md")).unwrap(),
        "changed\n"
    );
    assert!(tree.join("src/a.py").is_file());
    assert!(judge.dir.join("marker").exists(), "incremental");

    // The base commit checks out just as well, and the tree can be removed.
    ws.check_out_for_judging(&judge, &base).await.unwrap();
    assert_eq!(listing(&tree), ["README.md"]);
    judge.remove().unwrap();
    assert!(!judge.dir.exists());
}

/// The checkout a land leaves when a crash comes between moving the base and updating the
/// checkout: `main` at the land commit, the index and files still the old commit's.
#[tokio::test]
async fn a_main_checkout_left_behind_by_a_land_is_seen_and_brought_along() {
    let dir = repo().await;
    let repo = dir.path();
    let ws = workspaces(repo, Hooks::default());
    let old = git(repo, &["rev-parse", "HEAD"]).await;
    git(repo, &["checkout", "-q", "-b", "work"]).await;
    std::fs::write(repo.join("landed.txt"), "landed\n").unwrap();
    git(repo, &["add", "landed.txt"]).await;
    git(repo, &["commit", "-q", "-m", "the work"]).await;
    let new = git(repo, &["rev-parse", "HEAD"]).await;
    git(repo, &["checkout", "-q", "main"]).await;
    ws.move_ref("refs/heads/main", &old, &new, "a land cut short")
        .await
        .unwrap();
    assert!(matches!(
        ws.main_checkout("refs/heads/main").await.unwrap(),
        workspace::MainCheckout::Dirty { .. }
    ));
    assert!(
        ws.main_checkout_lags("refs/heads/main", &old, &new)
            .await
            .unwrap()
    );

    ws.update_main_checkout(&old, &new).await.unwrap();
    assert_eq!(
        ws.main_checkout("refs/heads/main").await.unwrap(),
        workspace::MainCheckout::Clean
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("landed.txt")).unwrap(),
        "landed\n"
    );
    // A checkout that followed, or that moved on since, does not lag.
    assert!(
        !ws.main_checkout_lags("refs/heads/main", &old, &new)
            .await
            .unwrap()
    );
    std::fs::write(repo.join("README.md"), "edited\n").unwrap();
    git(repo, &["commit", "-q", "-am", "later"]).await;
    assert!(
        !ws.main_checkout_lags("refs/heads/main", &old, &new)
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_in_one_worktree_take_turns_across_managers() {
    let repo = repo().await;
    let first = Arc::new(workspaces(repo.path(), Hooks::default()));
    // A second manager of the same repository in the process takes the same turns.
    let second = Arc::new(workspaces(repo.path(), Hooks::default()));
    let ws = first.ensure(TaskId(1), None, None).await.unwrap();
    let mut commits = Vec::new();
    for i in 0..8 {
        std::fs::write(ws.path.join(format!("f{i}.txt")), format!("{i}\n")).unwrap();
        let manager = Arc::clone(if i % 2 == 0 { &first } else { &second });
        let ws = ws.clone();
        commits.push(tokio::spawn(async move {
            manager.commit_all(&ws, &format!("commit {i}\n")).await
        }));
    }
    // Each commit ran whole, none raced another for the index: all succeeded, and together
    // they hold every file.
    for commit in commits {
        commit.await.unwrap().unwrap();
    }
    let files = git(&ws.path, &["ls-tree", "-r", "--name-only", "HEAD"]).await;
    for i in 0..8 {
        assert!(files.lines().any(|f| f == format!("f{i}.txt")), "{files}");
    }
    assert_eq!(git(&ws.path, &["status", "--porcelain"]).await, "");
}

#[tokio::test]
async fn work_in_a_turn_taken_at_another_worktree_is_refused() {
    let dir = repo().await;
    let manager = workspaces(dir.path(), Hooks::default());
    let ws = manager.ensure(TaskId(1), None, None).await.unwrap();
    std::fs::write(ws.path.join("work.txt"), "work\n").unwrap();
    let before = git(&ws.path, &["rev-parse", "HEAD"]).await;
    let other = manager.turn(TaskId(2)).await;
    let refused = manager.commit_all_in(&other, &ws, "work\n").await;
    assert!(
        matches!(
            refused,
            Err(Error::WrongTurn {
                held: TaskId(2),
                wanted: TaskId(1)
            })
        ),
        "{refused:?}"
    );
    // A turn of the same task id at another repository's worktree is no turn here either.
    let elsewhere = repo().await;
    let foreign = workspaces(elsewhere.path(), Hooks::default());
    let turn = foreign.turn(TaskId(1)).await;
    assert!(matches!(
        manager.commit_all_in(&turn, &ws, "work\n").await,
        Err(Error::WrongTurn { .. })
    ));
    assert!(matches!(
        manager.ensure_in(&turn, None, None).await,
        Err(Error::WrongTurn { .. })
    ));
    assert_eq!(git(&ws.path, &["rev-parse", "HEAD"]).await, before);
    // In its own turn the commit is made.
    let own = manager.turn(TaskId(1)).await;
    let made = manager.commit_all_in(&own, &ws, "work\n").await.unwrap();
    assert!(made.is_some());
}
