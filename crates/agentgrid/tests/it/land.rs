//! Landing done tasks on the base branch through the real binary: each strategy's commits
//! and trailers, a dirty main checkout refused and untouched, a conflict turned into a task
//! with the base unchanged, and a second land refused.

use crate::support::*;

/// A project whose agent writes `file` (a shell word: `f-$AGENTGRID_TASK_ID.txt`) with the
/// task's id as its content, and claims it is done.
fn writer_of(file: &str) -> Repo {
    let script = format!(
        "echo \"from $AGENTGRID_TASK_ID\" > {file}; \
         agentgrid ctl complete --summary \"wrote {file}\" >/dev/null || true"
    );
    let spec = "  routing: {default: true}\n  limits: {max_attempts: 1}\n";
    let repo = Repo::with_agents(&[("writer", &agent("writer", &script, spec))]);
    // The project's own files are the user's: committed, so the main checkout is clean.
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "agentgrid init"]);
    repo
}

fn writer() -> Repo {
    writer_of("out.txt")
}

fn rev(repo: &Repo, what: &str) -> String {
    repo.git(&["rev-parse", what]).trim().to_string()
}

fn done(repo: &Repo, title: &str) -> u64 {
    repo.ok(&[
        "task",
        "add",
        title,
        "--body",
        "Because the table needs it.",
    ]);
    repo.ok(&["run"]);
    let id = repo.tasks().len() as u64;
    assert_eq!(repo.task_state(id), "done");
    id
}

fn land_events(repo: &Repo, task: u64) -> Vec<serde_json::Value> {
    let out = repo.ok(&["events", "--task", &task.to_string(), "--json"]);
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"].as_str().unwrap().starts_with("task_land"))
        .collect()
}

#[test]
fn a_merge_land_makes_one_merge_commit_named_after_the_task() {
    let repo = writer();
    let task = done(&repo, "Write the table");
    let before = rev(&repo, "main");
    let out = repo.ok(&["land", "1"]);
    assert!(out.contains("#1 landed on main (merge)"), "{out}");
    let after = rev(&repo, "main");
    assert_ne!(before, after);
    // Two parents: the old main and the task's branch.
    let parents = repo.git(&["log", "-1", "--format=%P", "main"]);
    assert_eq!(
        parents.split_whitespace().collect::<Vec<_>>(),
        [before.as_str(), rev(&repo, "agentgrid/task-1").as_str()]
    );
    let message = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with("Write the table\n\nBecause the table needs it.\n"),
        "{message}"
    );
    assert!(message.contains("Summary: wrote out.txt"), "{message}");
    assert!(message.contains("Agentgrid-Task: 1\n"), "{message}");
    assert!(
        message.contains("Co-authored-by: writer <agent-writer@agentgrid.invalid>"),
        "{message}"
    );
    // The main checkout had main checked out, clean: it now holds the landed file.
    assert_eq!(
        std::fs::read_to_string(repo.path().join("out.txt")).unwrap(),
        "from 1\n"
    );
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
    // The land is on record, with the actor, the strategy and both commits.
    let events = land_events(&repo, task);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["task_land_started", "task_landed"], "{events:?}");
    assert_eq!(events[1]["actor"], "cli");
    assert_eq!(events[1]["strategy"], "merge");
    assert_eq!(events[1]["old"], before.as_str());
    assert_eq!(events[1]["new"], after.as_str());

    // Twice is refused, and nothing moves.
    let again = repo.run(&["land", "1"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains(&format!("already landed at {}", &after[..7])),
        "{}",
        stderr(&again)
    );
    assert_eq!(rev(&repo, "main"), after);
}

#[test]
fn a_squash_land_makes_one_commit_on_the_base() {
    let repo = writer();
    done(&repo, "Squash me");
    let before = rev(&repo, "main");
    let json = repo.json(&["land", "1", "--strategy", "squash", "--json"]);
    assert_eq!(json["outcome"], "landed", "{json}");
    let parents = repo.git(&["log", "-1", "--format=%P", "main"]);
    assert_eq!(parents.trim(), before, "one parent: the old base");
    let message = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(message.starts_with("Squash me\n"), "{message}");
    assert!(message.contains("Agentgrid-Land: squash\n"), "{message}");
    assert!(
        message.contains("agent-writer@agentgrid.invalid"),
        "{message}"
    );
    assert_eq!(repo.git(&["show", "main:out.txt"]), "from 1\n");
}

#[test]
fn a_rebase_land_replays_the_branch_with_trailers_from_the_config() {
    let repo = writer();
    let config = repo.path().join(".agentgrid/config.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("  land:\n    strategy: rebase\n");
    std::fs::write(&config, text).unwrap();
    repo.git(&["commit", "-q", "-am", "land by rebase"]);
    done(&repo, "Rebase me");
    // The base moved on meanwhile: the replayed commit sits on top of it.
    std::fs::write(repo.path().join("other.txt"), "by hand\n").unwrap();
    repo.git(&["add", "other.txt"]);
    repo.git(&["commit", "-q", "-m", "by hand"]);
    let before = rev(&repo, "main");
    let out = repo.ok(&["land", "1"]);
    assert!(out.contains("(rebase)"), "{out}");
    let parents = repo.git(&["log", "-1", "--format=%P", "main"]);
    assert_eq!(parents.trim(), before);
    let message = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(message.starts_with("Rebase me\n"), "{message}");
    assert!(message.contains("Agentgrid-Iteration: 1\n"), "{message}");
    assert!(message.contains("Agentgrid-Land: rebase\n"), "{message}");
    assert!(
        message.contains("agent-writer@agentgrid.invalid"),
        "{message}"
    );
    assert_eq!(repo.git(&["show", "main:out.txt"]), "from 1\n");
    assert_eq!(repo.git(&["show", "main:other.txt"]), "by hand\n");
}

#[test]
fn a_bad_strategy_in_the_config_is_reported_with_its_place() {
    let repo = writer();
    let config = repo.path().join(".agentgrid/config.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("  land:\n    strategy: octopus\n");
    std::fs::write(&config, text).unwrap();
    let out = repo.run(&["validate"]);
    assert_ne!(out.status.code(), Some(0));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("config.yaml:"), "{all}");
    assert!(
        all.contains("expected one of `merge`, `squash`, `rebase`, found `octopus`"),
        "{all}"
    );
}

#[test]
fn a_dirty_main_checkout_is_refused_and_left_as_it_was() {
    let repo = writer();
    done(&repo, "Dirty");
    let before = rev(&repo, "main");
    std::fs::write(repo.path().join("README.md"), "my unsaved edit\n").unwrap();
    let out = repo.run(&["land", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("uncommitted changes in README.md"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rev(&repo, "main"), before, "the base did not move");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("README.md")).unwrap(),
        "my unsaved edit\n"
    );
    assert!(!repo.path().join("out.txt").exists());
    assert!(
        land_events(&repo, 1).is_empty(),
        "a refused land records nothing"
    );
}

#[test]
fn a_conflicting_second_land_makes_a_task_and_leaves_the_base_alone() {
    // Two tasks writing the same line of the same file differently.
    let repo = writer_of("same.txt");
    repo.ok(&["task", "add", "First edit"]);
    repo.ok(&["task", "add", "Second edit"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(repo.task_state(2), "done");
    repo.ok(&["land", "1"]);
    let landed = rev(&repo, "main");
    let out = repo.run(&["land", "2", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["outcome"], "conflict", "{json}");
    assert_eq!(json["files"], serde_json::json!(["same.txt"]));
    assert_eq!(rev(&repo, "main"), landed, "the base is unchanged");
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
    let made = json["conflict_task"].as_u64().unwrap();
    let show = repo.json(&["task", "show", &made.to_string(), "--json"]);
    let task = if show.get("task").is_some() {
        &show["task"]
    } else {
        &show
    };
    assert_eq!(task["title"], "Resolve conflicts landing #2");
    assert!(
        task["body"].as_str().unwrap().contains("- same.txt"),
        "{task}"
    );
    assert!(
        task["labels"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("land-conflict")),
        "{task}"
    );
    assert_eq!(task["state"], "open");

    // Landing it again while that task is open updates it instead of opening a second one.
    let out = repo.run(&["land", "2", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["conflict_task"].as_u64(), Some(made), "{json}");
    let resolving: Vec<_> = repo
        .tasks()
        .into_iter()
        .filter(|t| t["title"] == "Resolve conflicts landing #2")
        .collect();
    assert_eq!(
        resolving.len(),
        1,
        "one task resolves the conflict: {resolving:?}"
    );
    let events = repo.ok(&["events", "--task", &made.to_string()]);
    assert!(
        events.contains("landing #2 conflicted again, in same.txt"),
        "{events}"
    );
    assert_eq!(rev(&repo, "main"), landed, "the base is still unchanged");
}

#[test]
fn a_task_that_is_not_done_does_not_land() {
    let repo = writer();
    repo.ok(&["task", "add", "Not yet"]);
    let out = repo.run(&["land", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("only a done task lands"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validators_failing_on_the_landed_tree_refuse_the_land() {
    // The validator passes on the task's branch, but the base gained a file meanwhile that
    // makes it fail on the merged tree: the land is refused with its result, nothing moves.
    let script = "echo work > out.txt";
    let spec = "  routing: {default: true}\n  limits: {max_attempts: 1}\n  validation:\n    validators:\n      - name: no-legacy\n        run: \"test ! -e legacy.txt || (echo 'legacy.txt is back' && exit 1)\"\n";
    let repo = Repo::with_agents(&[("checked", &agent("checked", script, spec))]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "agentgrid init"]);
    repo.ok(&["task", "add", "Do the work"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    std::fs::write(repo.path().join("legacy.txt"), "old\n").unwrap();
    repo.git(&["add", "legacy.txt"]);
    repo.git(&["commit", "-q", "-m", "bring legacy back"]);
    let before = rev(&repo, "main");

    let out = repo.run(&["land", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the validators of `checked` failed on the landed tree"),
        "{err}"
    );
    assert!(
        err.contains("legacy.txt is back"),
        "the validator's output is shown: {err}"
    );
    assert_eq!(rev(&repo, "main"), before, "nothing moved");
    assert!(land_events(&repo, 1).is_empty());

    // Without the file in the way, the same validators pass on the landed tree.
    repo.git(&["rm", "-q", "legacy.txt"]);
    repo.git(&["commit", "-q", "-m", "legacy goes again"]);
    repo.ok(&["land", "1"]);
    assert_eq!(repo.git(&["show", "main:out.txt"]), "work\n");
}

#[test]
fn landing_a_parent_lands_its_whole_tree_once() {
    use crate::idempotent::{LEAF, project};
    let planner = "agentgrid ctl subtask create 'a part' -l leaf >/dev/null && sh scripts/wait-for-children.sh";
    let repo = project(planner, "", LEAF);
    repo.ok(&["task", "add", "Big job", "--label", "big"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert_eq!(repo.task_state(2), "done");
    let json = repo.json(&["land", "1", "--json"]);
    assert_eq!(json["outcome"], "landed", "{json}");
    assert_eq!(json["tree"], serde_json::json!([2]));
    assert_eq!(repo.git(&["show", "main:part-2.txt"]), "2\n");
    // The sub-task came with it: it does not land again.
    let again = repo.run(&["land", "2"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already landed at"),
        "{}",
        stderr(&again)
    );
    assert!(stderr(&again).contains("with #1"), "{}", stderr(&again));
    let events = land_events(&repo, 2);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["root"], 1);
}

#[test]
fn a_hostile_branch_runs_nothing_on_the_host_while_it_lands() {
    // The agent's branch names filter, diff and merge drivers in `.gitattributes`; the user's
    // global git configuration defines a filter of that name and a hooks path, and the
    // repository has hooks. Landing (merge, judge, ref move, checkout update) runs none.
    let marks = tempfile::tempdir().unwrap();
    let mark = |name: &str| marks.path().join(name);
    let script =
        "printf '* filter=evil diff=evil merge=evil\\n' > .gitattributes; echo work > out.txt";
    let spec = "  routing: {default: true}\n  limits: {max_attempts: 1}\n";
    let repo = Repo::with_agents(&[("hostile", &agent("hostile", script, spec))]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "agentgrid init"]);
    repo.ok(&["task", "add", "Innocent work"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    assert!(
        repo.git(&["show", "agentgrid/task-1:.gitattributes"])
            .contains("filter=evil")
    );

    let home = tempfile::tempdir().unwrap();
    let hooks = marks.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let touch = |name: &str| format!("sh -c 'touch {}; cat'", mark(name).display());
    std::fs::write(
        home.path().join(".gitconfig"),
        format!(
            "[filter \"evil\"]\n\tsmudge = {}\n\tclean = {}\n[merge \"evil\"]\n\tdriver = {}\n[core]\n\thooksPath = {}\n",
            touch("smudge"),
            touch("clean"),
            touch("merge"),
            hooks.display()
        ),
    )
    .unwrap();
    let repo_hooks = repo.path().join(".git/hooks");
    for dir in [&hooks, &repo_hooks] {
        for hook in [
            "reference-transaction",
            "post-checkout",
            "post-merge",
            "post-commit",
        ] {
            let path = dir.join(hook);
            std::fs::write(
                &path,
                format!("#!/bin/sh\ntouch {}\n", mark(hook).display()),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let out = repo
        .cmd(&["land", "1"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(repo.path().join("out.txt")).unwrap(),
        "work\n",
        "the main checkout was brought to the landed commit"
    );
    let ran: Vec<String> = std::fs::read_dir(marks.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "hooks")
        .collect();
    assert!(ran.is_empty(), "ran on the host during the land: {ran:?}");
}
