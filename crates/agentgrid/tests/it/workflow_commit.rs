//! Attacks on the commit that follows a workflow's command state, through the real binary: a
//! command that floods the worktree or writes a huge file is over the quota (its visit fails
//! with why, nothing is committed), and a command that points the worktree's `.git` at a git
//! directory of its own gets its work committed by host git on the task's own branch, with
//! nothing of that directory read or run.

use crate::support::*;

/// A project with the workflows `(name, spec)`, `config` as its config's `spec:` lines, the
/// files `(path, content)` committed to `main`, and one task per workflow, each started on it.
fn project(workflows: &[(&str, &str)], config: &str, files: &[(&str, String)]) -> Repo {
    let repo = Repo::with_agents(&[("coder", &agent("coder", "true", ""))]);
    for (path, content) in files {
        std::fs::write(repo.path().join(path), content).unwrap();
        repo.git(&["add", "--", path]);
    }
    if !files.is_empty() {
        repo.git(&["commit", "-q", "-m", "payload"]);
    }
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!("apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n{config}"),
    )
    .unwrap();
    let dir = repo.path().join(".agentgrid/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, spec) in workflows {
        let text = format!(
            "apiVersion: agentgrid.dev/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n{spec}"
        );
        std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
    }
    repo.ok(&["validate"]);
    for (n, (name, _)) in workflows.iter().enumerate() {
        repo.ok(&["task", "add", &format!("Task {}", n + 1)]);
        repo.ok(&["workflow", "start", &(n + 1).to_string(), name]);
    }
    repo
}

/// A workflow of one command state `argv` (YAML), which ends succeeded or failed with it.
fn one_command(argv: &str) -> String {
    format!(
        "  start: gen
  states:
    gen:
      run: {argv}
      on: [{{when: succeeded, to: done}}, {{to: failed}}]
    done: {{end: succeeded}}
    failed: {{end: failed}}
"
    )
}

fn rev(repo: &Repo, what: &str) -> String {
    repo.git(&["rev-parse", what]).trim().to_string()
}

#[test]
fn a_command_over_the_quota_fails_its_visit_and_commits_nothing() {
    let flood = one_command(
        "[sh, -c, 'mkdir -p junk && for i in $(seq 1 2000); do echo $i > junk/$i.txt; done']",
    );
    let huge = one_command("[sh, -c, 'head -c 3145728 /dev/zero > huge.bin']");
    let repo = project(
        &[("flood", &flood), ("huge", &huge)],
        "  workspace:\n    quota: {files: 100, bytes: 1MiB}\n",
        &[],
    );
    let main = rev(&repo, "main");
    repo.run(&["run"]);

    for (task, limit, made) in [(1, "100 files", "junk/"), (2, "1048576 bytes", "huge.bin")] {
        let run = repo.json(&["workflow", "show", &format!("W{task}"), "--json"]);
        let lines = history(&run);
        assert_eq!(run["status"], "failed", "{lines:#?}");
        assert!(
            lines.iter().any(|l| l.starts_with("gen: failed")),
            "{lines:#?}"
        );
        // Why is on the task: the command succeeded, its work is over the quota.
        let show = repo.ok(&["task", "show", &task.to_string()]);
        assert!(
            show.contains("succeeded, but what it changed was not committed")
                && show.contains("over its quota")
                && show.contains(limit),
            "{show}"
        );
        // Nothing entered the branch.
        let branch = format!("agentgrid/task-{task}");
        assert_eq!(rev(&repo, &branch), main, "{branch} did not move");
        let tree = repo.git(&["ls-tree", "-r", "--name-only", &branch]);
        assert!(!tree.contains(made), "{tree}");
    }
}

#[test]
fn a_command_that_points_the_worktree_at_its_own_git_directory_moves_only_its_branch() {
    // Markers under a directory the sandbox hides: only the host could make them.
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    // The command makes `evil/` a git directory sharing the repository's objects and refs (by
    // name: the sandbox shows it neither, but host git that followed the links would see
    // them), with HEAD on main, a config that runs a command on status and hooks of its own, and
    // points the worktree's `.git` at it: host git that followed it would commit onto main.
    let attack = format!(
        "set -e
common=$(sed -n 's|^gitdir: \\(.*\\)/worktrees/task-1$|\\1|p' .git)
test -n \"$common\"
mkdir -p evil/hooks evil/info
printf '[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n\\tfsmonitor = \"touch {m}/fsmonitor; false\"\\n\\thooksPath = {m}/hooks\\n' > evil/config
echo 'ref: refs/heads/main' > evil/HEAD
ln -s \"$common/objects\" evil/objects
ln -s \"$common/refs\" evil/refs
printf '#!/bin/sh\\ntouch {m}/post-commit\\n' > evil/hooks/post-commit
chmod +x evil/hooks/post-commit
echo /evil/ > evil/info/exclude
echo \"gitdir: $PWD/evil\" > .git
echo formatted > formatted.txt
"
    );
    std::fs::create_dir_all(marks.path().join("hooks")).unwrap();
    let hook = marks.path().join("hooks/post-commit");
    std::fs::write(&hook, format!("#!/bin/sh\ntouch {m}/hooks-path\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let repo = project(
        &[("fmt", &one_command("[sh, attack.sh]"))],
        "  retry: {base_delay: 100ms, max_delay: 200ms}\n",
        &[("attack.sh", attack)],
    );
    let main = rev(&repo, "main");
    repo.run(&["run"]);

    let run = repo.json(&["workflow", "show", "W1", "--json"]);
    assert_eq!(
        run["status"],
        "succeeded",
        "{:#?}\n{}",
        history(&run),
        repo.ok(&["task", "show", "1"])
    );
    let mut found: Vec<String> = std::fs::read_dir(marks.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "hooks")
        .collect();
    found.sort();
    assert_eq!(found, Vec::<String>::new(), "nothing ran on the host");
    assert_eq!(rev(&repo, "main"), main, "main did not move");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:formatted.txt"]).trim(),
        "formatted",
        "what the command changed is on the task's own branch"
    );
    let subject = repo.git(&["log", "-1", "--format=%s", "agentgrid/task-1"]);
    assert_eq!(subject.trim(), "gen: sh attack.sh");
    // The worktree's pointer names the engine's git directory again.
    let root = repo.path().canonicalize().unwrap();
    let pointer = std::fs::read_to_string(root.join(".agentgrid/workspaces/task-1/.git")).unwrap();
    let wanted = format!("gitdir: {}\n", root.join(".git/worktrees/task-1").display());
    assert_eq!(pointer, wanted);
}
