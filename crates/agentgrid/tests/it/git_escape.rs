//! Attacks on host-side git: a sandboxed agent cannot run anything on the host, move another
//! branch or copy host files into its repository through the git metadata it can write (its
//! worktree's `.git` pointer, `.gitattributes`, a git directory of its own), nor through a
//! workspace hook that runs code from its worktree.
//!
//! Each payload is committed to `main` before the run, with the absolute paths of the test's
//! directories written in, so that the agent's script only puts it in place. Every check is made
//! on the host: marker files the payload would create outside the workspace, where each branch
//! points and what it holds, and the `.git` pointer of the workspace afterwards.

use std::path::{Path, PathBuf};

use crate::escape::{CONFIG, SANDBOX, outside_tmp, sandboxed, setup};
use crate::support::*;

/// A project in `dir` whose `main` also holds `payload` (path, content, executable), with one
/// sandboxed agent running `script` for every task, and `config` appended to the node config.
fn project(
    dir: tempfile::TempDir,
    script: &str,
    payload: &[(&str, String, bool)],
    config: &str,
) -> Repo {
    let agent = sandboxed("attacker", script, "max_attempts: 1, timeout: 60s");
    let repo = setup(dir, &[("attacker", &agent)]);
    for (path, content, executable) in payload {
        let file = repo.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        if *executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        repo.git(&["add", "--", path]);
    }
    if !payload.is_empty() {
        repo.git(&["commit", "-q", "-m", "payload"]);
    }
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!("{CONFIG}{config}"),
    )
    .unwrap();
    repo
}

/// Where a project made in `dir` will have its git directory and task worktrees.
struct Places {
    common: PathBuf,
    root: PathBuf,
}

impl Places {
    fn of(dir: &tempfile::TempDir) -> Places {
        let root = dir.path().canonicalize().unwrap();
        Places {
            common: root.join(".git"),
            root,
        }
    }

    fn workspace(&self, task: u64) -> PathBuf {
        self.root.join(format!(".agentgrid/workspaces/task-{task}"))
    }

    fn task_git_dir(&self, task: u64) -> PathBuf {
        self.common.join(format!("worktrees/task-{task}"))
    }

    /// Shell lines that make `evil/` a git directory of the agent's own, sharing the
    /// repository's objects and refs (so that git writing through it moves the real branches)
    /// but configured by `payload/config`, with `payload/hooks/*` as its hooks and itself
    /// excluded from the work tree (so that git through it sees a clean checkout), and point the
    /// worktree's `.git` at it.
    fn own_git_dir(&self, head: &str) -> String {
        format!(
            "mkdir -p evil/hooks && cp payload/config evil/config && \
             echo 'ref: refs/heads/{head}' > evil/HEAD && \
             ln -s {c}/objects evil/objects && ln -s {c}/refs evil/refs && \
             if [ -d payload/hooks ]; then cp payload/hooks/* evil/hooks/; fi && \
             mkdir evil/info && echo /evil/ > evil/info/exclude && \
             echo \"gitdir: $PWD/evil\" > .git; ",
            c = self.common.display()
        )
    }

    /// The `.git` pointer of a task's worktree names the git directory git made for it.
    fn assert_pointer_restored(&self, task: u64) {
        let pointer = std::fs::read_to_string(self.workspace(task).join(".git")).unwrap();
        let wanted = format!("gitdir: {}\n", self.task_git_dir(task).display());
        assert_eq!(
            pointer, wanted,
            "the .git pointer of task {task} was put back"
        );
    }
}

fn rev(repo: &Repo, what: &str) -> String {
    repo.git(&["rev-parse", what]).trim().to_string()
}

/// The names of the files in `dir`: the markers a payload made on the host.
fn markers(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// A hook that touches `marker` in `dir`.
fn touching_hook(dir: &Path, marker: &str) -> String {
    format!("#!/bin/sh\ntouch {}/{marker}\n", dir.display())
}

/// Keeps a task's worktree after it ended, so that the test can look at it: an untracked file
/// left after the last commit (here by `after_run`) is work that removal refuses to throw away.
const KEEP_WORKTREE: &str = "  workspace: {hooks: {after_run: \"touch left-behind\"}}\n";

#[test]
fn a_git_directory_of_the_agents_own_runs_nothing_on_the_host() {
    let marks = outside_tmp();
    let m = marks.path().display();
    let dir = outside_tmp();
    let places = Places::of(&dir);
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\
         \tfsmonitor = \"touch {m}/fsmonitor; false\"\n\
         [filter \"x\"]\n\tclean = \"touch {m}/filter-clean; cat\"\n\
         [include]\n\tpath = {}/payload/extra.cfg\n",
        places.workspace(1).display()
    );
    let extra = format!("[filter \"y\"]\n\tclean = \"touch {m}/included-filter; cat\"\n");
    let script = format!(
        "{}printf '*.txt filter=x\\n*.y filter=y\\n' > .gitattributes; \
         echo work > work.txt; echo more > data.y",
        places.own_git_dir("agentgrid/task-1")
    );
    let payload = [
        ("payload/config", config, false),
        ("payload/extra.cfg", extra, false),
        (
            "payload/hooks/post-commit",
            touching_hook(marks.path(), "post-commit"),
            true,
        ),
        (
            "payload/hooks/reference-transaction",
            touching_hook(marks.path(), "reference-transaction"),
            true,
        ),
        (
            "payload/hooks/pre-commit",
            touching_hook(marks.path(), "pre-commit"),
            true,
        ),
    ];
    let repo = project(dir, &script, &payload, KEEP_WORKTREE);
    let main = rev(&repo, "main");
    repo.ok(&["task", "add", "Own git directory"]);
    repo.run(&["run"]);

    assert_eq!(
        markers(marks.path()),
        Vec::<String>::new(),
        "nothing ran on the host"
    );
    assert_eq!(rev(&repo, "main"), main, "main did not move");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:work.txt"]).trim(),
        "work",
        "the agent's work landed on its own branch"
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:data.y"]).trim(),
        "more"
    );
    places.assert_pointer_restored(1);
}

#[test]
fn hooks_path_and_core_worktree_of_the_agents_git_directory_are_ignored() {
    let marks = outside_tmp();
    let home = outside_tmp();
    std::fs::write(home.path().join("secret.txt"), "HOME-SECRET\n").unwrap();
    let dir = outside_tmp();
    let places = Places::of(&dir);
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\
         \thooksPath = {}/hooks-elsewhere\n\tworktree = {}\n",
        places.workspace(1).display(),
        home.path().display()
    );
    let script = format!(
        "{}mkdir hooks-elsewhere && cp payload/post-commit hooks-elsewhere/ && \
         chmod +x hooks-elsewhere/post-commit; echo work > work.txt",
        places.own_git_dir("agentgrid/task-1")
    );
    let payload = [
        ("payload/config", config, false),
        (
            "payload/post-commit",
            touching_hook(marks.path(), "post-commit"),
            true,
        ),
    ];
    let repo = project(dir, &script, &payload, KEEP_WORKTREE);
    repo.ok(&["task", "add", "Hooks path and work tree"]);
    let out = repo
        .cmd(&["run"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.code().is_some(), "{out:?}");

    assert_eq!(
        markers(marks.path()),
        Vec::<String>::new(),
        "nothing ran on the host"
    );
    let found = command("git")
        .args(["grep", "-l", "HOME-SECRET", "agentgrid/task-1"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert!(
        !found.status.success(),
        "a home file was copied into the branch: {}",
        stdout(&found)
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:work.txt"]).trim(),
        "work"
    );
    places.assert_pointer_restored(1);
}

#[test]
fn a_pointer_at_the_main_repository_does_not_commit_onto_main() {
    let dir = outside_tmp();
    let places = Places::of(&dir);
    let script = format!(
        "echo work > work.txt; echo 'gitdir: {}' > .git",
        places.common.display()
    );
    let repo = project(dir, &script, &[], KEEP_WORKTREE);
    let main = rev(&repo, "main");
    let index = std::fs::read(places.common.join("index")).unwrap();
    repo.ok(&["task", "add", "Point at main"]);
    repo.run(&["run"]);

    assert_eq!(rev(&repo, "main"), main, "main did not move");
    assert_eq!(
        std::fs::read(places.common.join("index")).unwrap(),
        index,
        "the main checkout's index was not rewritten"
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:work.txt"]).trim(),
        "work",
        "the agent's work landed on its own branch"
    );
    places.assert_pointer_restored(1);
}

#[test]
fn a_pointer_at_another_tasks_git_directory_does_not_move_its_branch() {
    let dir = outside_tmp();
    let places = Places::of(&dir);
    let script = format!(
        "case $AGENTGRID_TASK_ID in \
         1) echo one > one.txt; agentgrid ctl block --reason 'needs a person' ;; \
         2) echo two > two.txt; echo 'gitdir: {}' > .git ;; \
         esac",
        places.task_git_dir(1).display()
    );
    let repo = project(dir, &script, &[], KEEP_WORKTREE);
    repo.ok(&["task", "add", "The victim"]);
    repo.run(&["run"]);
    assert_eq!(repo.task_state(1), "blocked");
    let victim = rev(&repo, "agentgrid/task-1");
    let victim_index = std::fs::read(places.task_git_dir(1).join("index")).unwrap();

    repo.ok(&["task", "add", "The attacker"]);
    repo.run(&["run"]);
    assert_eq!(
        rev(&repo, "agentgrid/task-1"),
        victim,
        "the other task's branch did not move"
    );
    assert_eq!(
        std::fs::read(places.task_git_dir(1).join("index")).unwrap(),
        victim_index,
        "the other task's index was not rewritten"
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-2:two.txt"]).trim(),
        "two",
        "the agent's work landed on its own branch"
    );
    places.assert_pointer_restored(1);
    places.assert_pointer_restored(2);
}

#[test]
fn a_merge_driver_set_up_in_the_parents_worktree_does_not_run() {
    // The parent points its worktree's `.git` at a git directory of its own that defines a
    // merge driver, and names the driver in `.gitattributes`. Its two sub-tasks change the two
    // ends of one file, so that merging the second into the parent is a real three-way merge
    // of that file: the moment git would run the driver.
    let marks = outside_tmp();
    let dir = outside_tmp();
    let places = Places::of(&dir);
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\
         [merge \"evil\"]\n\tdriver = \"touch {}/merge-driver; false\"\n",
        marks.path().display()
    );
    let wait = |condition: &str| {
        format!(
            "i=0; until {condition}; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done; "
        )
    };
    let script = format!(
        "case $AGENTGRID_TASK_ID in \
         1) if [ $AGENTGRID_EXECUTION_KIND = work ]; then \
              agentgrid ctl subtask create first > /dev/null && \
              agentgrid ctl subtask create second > /dev/null && \
              echo 'shared.txt merge=evil' > .gitattributes && {} true; fi ;; \
         2) {}sed -i 1s/.*/A/ shared.txt ;; \
         3) {}sed -i 5s/.*/B/ shared.txt ;; \
         esac",
        places.own_git_dir("agentgrid/task-1"),
        wait("git rev-parse -q --verify refs/heads/agentgrid/task-3 > /dev/null"),
        wait("git show agentgrid/task-1:shared.txt | grep -q '^A$'"),
    );
    let payload = [
        ("payload/config", config, false),
        ("shared.txt", "1\n2\n3\n4\n5\n".to_string(), false),
    ];
    let repo = project(dir, &script, &payload, "");
    repo.ok(&["task", "add", "The parent"]);
    repo.run(&["run"]);

    assert_eq!(
        markers(marks.path()),
        Vec::<String>::new(),
        "the merge driver did not run"
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:shared.txt"]),
        "A\n2\n3\n4\nB\n",
        "both sub-tasks were merged into the parent, by git's own merge"
    );
    assert_eq!(repo.task_state(1), "done");
}

/// A project whose `after_run` hook runs `sh fmt.sh`, and whose agent replaces `fmt.sh` with
/// a script that touches a marker outside the workspace and records the hook's token.
fn hook_attack(marks: &Path, hook: &str) -> Repo {
    let evil = format!(
        "touch {}/hook-ran-on-the-host\nprintf '%s' \"$AGENTGRID_TOKEN\" > token.txt\necho ran > hook-ran.txt\n",
        marks.display()
    );
    let payload = [
        ("fmt.sh", "true\n".to_string(), false),
        ("payload/fmt.sh", evil, false),
    ];
    project(
        outside_tmp(),
        "cp payload/fmt.sh fmt.sh; echo work > work.txt",
        &payload,
        &format!(
            "  workspace: {{hooks: {{after_create: \"echo created > created.txt\", after_run: {hook}}}}}\n"
        ),
    )
}

#[test]
fn a_hook_runs_the_agents_code_in_the_sandbox_without_the_token() {
    let marks = outside_tmp();
    let repo = hook_attack(marks.path(), "\"sh fmt.sh\"");
    repo.ok(&["task", "add", "Rewrite the formatter"]);
    repo.run(&["run"]);

    assert_eq!(
        markers(marks.path()),
        Vec::<String>::new(),
        "the hook could not write outside"
    );
    // The hook left files after the last commit, so the worktree was kept and shows what the
    // hook did inside.
    let ws = repo.path().join(".agentgrid/workspaces/task-1");
    assert_eq!(
        std::fs::read_to_string(ws.join("hook-ran.txt")).unwrap(),
        "ran\n",
        "the hook ran, in the sandbox"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("token.txt")).unwrap(),
        "",
        "a hook gets no execution token"
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:created.txt"]).trim(),
        "created",
        "after_create ran in the sandbox before the agent"
    );
    let status = repo.ok(&["status"]);
    assert!(!status.contains("hook runs on the host"), "{status}");
}

#[test]
fn a_hook_marked_host_runs_on_the_host_and_status_says_so() {
    let marks = outside_tmp();
    let repo = hook_attack(marks.path(), "{run: \"sh fmt.sh\", host: true}");
    repo.ok(&["task", "add", "Rewrite the formatter"]);
    repo.run(&["run"]);

    assert_eq!(markers(marks.path()), ["hook-ran-on-the-host"]);
    let ws = repo.path().join(".agentgrid/workspaces/task-1");
    assert_eq!(
        std::fs::read_to_string(ws.join("token.txt")).unwrap(),
        "",
        "not even a hook on the host gets the execution token"
    );
    let status = repo.ok(&["status"]);
    assert!(
        status.contains("warning: the after_run hook runs on the host"),
        "{status}"
    );
    let json = repo.json(&["status", "--json"]);
    assert_eq!(json["host_hooks"], serde_json::json!(["after_run"]));
}

#[test]
fn a_pointer_rewritten_by_a_validator_is_put_back_before_the_next_iteration() {
    // Validators run the agent's code too. This one points `.git` nowhere and fails, so that
    // the agent goes round again and records what its next iteration sees.
    let dir = outside_tmp();
    let places = Places::of(&dir);
    let script = "if [ $AGENTGRID_ITERATION = 1 ]; then \
                  printf 'echo gitdir: /nowhere > .git; exit 1\\n' > check.sh; \
                  else cat .git > seen.txt; echo 'exit 0' > check.sh; fi";
    let spec = format!(
        "  routing: {{default: true}}\n  limits: {{max_attempts: 1, max_iterations: 2, timeout: 60s}}\n{SANDBOX}\
         \x20 validation:\n    validators:\n      - {{name: check, run: \"sh check.sh\"}}\n"
    );
    let repo = setup(dir, &[("attacker", &agent("attacker", script, &spec))]);
    repo.ok(&["task", "add", "Rewrite the pointer from a validator"]);
    repo.run(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:seen.txt"]),
        format!("gitdir: {}\n", places.task_git_dir(1).display()),
        "the second iteration saw the engine's git directory"
    );
}

#[test]
fn an_agent_that_commits_by_itself_keeps_its_commits_on_its_branch() {
    // Legitimate work the checks must not get in the way of: an agent allowed to use git
    // itself (here, with its sandbox turned off) commits, and leaves more for the engine.
    let script = "echo mine > mine.txt && git add mine.txt && \
                  git -c user.name=agent -c user.email=agent@localhost commit -q -m 'by the agent' && \
                  echo more > more.txt";
    let spec =
        "  routing: {default: true}\n  limits: {max_attempts: 1}\n  sandbox: {enabled: false}\n";
    let repo = setup(
        outside_tmp(),
        &[("committer", &agent("committer", script, spec))],
    );
    let main = rev(&repo, "main");
    repo.ok(&["task", "add", "Commit by yourself"]);
    repo.run(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(rev(&repo, "main"), main);
    let log = repo.git(&["log", "--format=%s", "main..agentgrid/task-1"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(subjects.len(), 2, "{log}");
    // The engine's commit is named after the task; its ids are in trailers.
    assert_eq!(subjects[0], "Commit by yourself", "{log}");
    let trailers = repo.git(&["log", "-1", "--format=%(trailers)", "agentgrid/task-1"]);
    assert!(trailers.contains("Agentgrid-Task: 1\n"), "{trailers}");
    assert!(
        trailers.contains("Agentgrid-Agent: committer\n"),
        "{trailers}"
    );
    assert_eq!(subjects[1], "by the agent");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:more.txt"]).trim(),
        "more"
    );
}

#[test]
fn a_before_remove_hook_the_engine_runs_stays_in_the_agents_sandbox() {
    // The engine runs before_remove itself, after the execution ended, with the sandbox of the
    // agent that worked there. The agent replaced the script the hook runs.
    let marks = outside_tmp();
    let evil = format!(
        "echo ran > hook-ran.txt\ntouch {}/before-remove-ran-on-the-host\n",
        marks.path().display()
    );
    let payload = [
        ("cleanup.sh", "true\n".to_string(), false),
        ("payload/cleanup.sh", evil, false),
    ];
    let repo = project(
        outside_tmp(),
        "cp payload/cleanup.sh cleanup.sh",
        &payload,
        "  workspace: {hooks: {before_remove: \"sh cleanup.sh\"}}\n",
    );
    repo.ok(&["task", "add", "Rewrite the cleanup"]);
    repo.run(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(
        markers(marks.path()),
        Vec::<String>::new(),
        "the hook could not write outside"
    );
    // The hook failed (it could not touch its marker), so the worktree was kept, with what the
    // hook did inside.
    let ws = repo.path().join(".agentgrid/workspaces/task-1");
    assert_eq!(
        std::fs::read_to_string(ws.join("hook-ran.txt")).unwrap(),
        "ran\n",
        "the hook ran, in the sandbox"
    );
}

/// An agent that may use git by itself (its sandbox turned off, the one way a manifest gives
/// it writable git metadata today), running `script`.
fn committer(script: &str) -> Repo {
    let spec =
        "  routing: {default: true}\n  limits: {max_attempts: 1}\n  sandbox: {enabled: false}\n";
    setup(
        outside_tmp(),
        &[("committer", &agent("committer", script, spec))],
    )
}

#[test]
fn an_index_the_agent_crafted_is_not_what_the_engine_commits() {
    // The agent stages content its worktree does not hold and hides the difference with
    // skip-worktree, so that `git add -A` would leave the entry alone: the commit would then
    // hold what nobody saw in the worktree. The engine builds the index again from HEAD.
    let script = "echo good > app.txt && \
                  blob=$(echo evil | git hash-object -w --stdin) && \
                  git update-index --add --cacheinfo 100644,$blob,app.txt && \
                  git update-index --skip-worktree app.txt";
    let repo = committer(script);
    repo.ok(&["task", "add", "Stage something else"]);
    repo.run(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:app.txt"]),
        "good\n",
        "the commit holds the worktree's content"
    );
}

#[test]
fn object_alternates_the_agent_added_are_removed_and_nothing_is_committed() {
    // The agent points the object store at a host directory of objects: every later host git
    // command would read objects from there.
    let elsewhere = outside_tmp();
    let store = elsewhere.path().join("objects");
    std::fs::create_dir_all(&store).unwrap();
    let script = format!(
        "echo work > work.txt && \
         echo {} > \"$(git rev-parse --git-common-dir)/objects/info/alternates\"",
        store.display()
    );
    let repo = committer(&script);
    let alternates = repo.path().join(".git/objects/info/alternates");
    let main = rev(&repo, "main");
    repo.ok(&["task", "add", "Borrow objects"]);
    let out = repo.run(&["run"]);
    assert!(
        !alternates.exists(),
        "the alternates file was removed: {}",
        stderr(&out)
    );
    assert_eq!(repo.task_state(1), "failed");
    let shown = repo.json(&["task", "show", "1", "--json"]);
    let summary = shown["executions"][0]["summary"].to_string();
    assert!(
        summary.contains("objects/info/alternates: it was changed since agentgrid started")
            && summary.contains("it was removed"),
        "{shown:#}"
    );
    assert_eq!(rev(&repo, "main"), main);
    assert_eq!(
        repo.git(&["rev-parse", "agentgrid/task-1"]).trim(),
        main,
        "nothing was committed through the borrowed store"
    );
}

#[test]
fn object_alternates_the_user_set_up_stay() {
    // Alternates that were there when the engine found the repository are the user's.
    let elsewhere = outside_tmp();
    let store = elsewhere.path().join("objects");
    std::fs::create_dir_all(&store).unwrap();
    let repo = committer("echo work > work.txt");
    let alternates = repo.path().join(".git/objects/info/alternates");
    std::fs::create_dir_all(alternates.parent().unwrap()).unwrap();
    std::fs::write(&alternates, format!("{}\n", store.display())).unwrap();
    repo.ok(&["task", "add", "Ordinary work"]);
    repo.run(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(
        std::fs::read_to_string(&alternates).unwrap(),
        format!("{}\n", store.display())
    );
}
