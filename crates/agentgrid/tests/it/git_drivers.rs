//! Trusted git drivers: a repository that uses git-lfs, set up the way `git lfs install` sets it
//! up (in the user's `~/.gitconfig`), works through host git once the project names `lfs` as
//! trusted, and naming it lets `.gitattributes` select nothing else the user's configuration
//! defines. Each engine runs with a home of the test's own, so nothing of the machine's git
//! configuration takes part.

use std::path::Path;
use std::process::Output;

use crate::escape::{CONFIG, outside_tmp, sandboxed, setup};
use crate::support::*;

const POINTER: &str = "version https://git-lfs.github.com/spec/v1\n";
const TRUST_LFS: &str = "  workspace: {git: {drivers: [lfs]}}\n";

/// Whether git-lfs can run here; a test that needs it says loudly that it did not run.
fn lfs_installed(test: &str) -> bool {
    let found = command("git-lfs")
        .arg("version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        eprintln!(
            "\n!!! SKIPPED {test}: git-lfs is not installed (CI installs it: apt-get install git-lfs)\n"
        );
    }
    found
}

/// A home directory whose `.gitconfig` is what `git lfs install` writes, plus `extra`.
fn lfs_home(extra: &str) -> tempfile::TempDir {
    let home = outside_tmp();
    let out = command("git")
        .args(["lfs", "install", "--skip-repo"])
        .env("HOME", home.path())
        .env("GIT_CONFIG_SYSTEM", "/dev/null")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("GIT_CONFIG_GLOBAL")
        .current_dir(home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "git lfs install: {out:?}");
    let config = home.path().join(".gitconfig");
    let mut text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[filter \"lfs\"]"), "{text}");
    text.push_str(extra);
    std::fs::write(&config, text).unwrap();
    home
}

/// git in `dir` as the user whose home is `home`.
fn user_git(home: &Path, dir: &Path, args: &[&str]) -> String {
    let out = command("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_SYSTEM", "/dev/null")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("GIT_CONFIG_GLOBAL")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// agentgrid in the project as the user whose home is `home`.
fn run_as(repo: &Repo, home: &Path, args: &[&str]) -> Output {
    repo.cmd(args)
        .env("HOME", home)
        .env("GIT_CONFIG_SYSTEM", "/dev/null")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("GIT_CONFIG_GLOBAL")
        .output()
        .unwrap()
}

/// A project whose `main` tracks `*.bin` with LFS and holds `big.bin` as an LFS object, with
/// one sandboxed agent running `script`, and `config` appended to the project config.
fn lfs_project(home: &Path, script: &str, config: &str) -> Repo {
    let agent = sandboxed("worker", script, "max_attempts: 1, timeout: 60s");
    let repo = setup(outside_tmp(), &[("worker", &agent)]);
    std::fs::write(
        repo.path().join(".gitattributes"),
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    )
    .unwrap();
    std::fs::write(repo.path().join("big.bin"), "the original large content\n").unwrap();
    user_git(home, repo.path(), &["add", ".gitattributes", "big.bin"]);
    user_git(home, repo.path(), &["commit", "-q", "-m", "an LFS object"]);
    assert!(
        repo.git(&["cat-file", "-p", "main:big.bin"])
            .starts_with(POINTER),
        "main stores big.bin as an LFS pointer"
    );
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!("{CONFIG}{config}"),
    )
    .unwrap();
    repo
}

/// The oid an LFS pointer names.
fn oid(pointer: &str) -> String {
    pointer
        .lines()
        .find_map(|l| l.strip_prefix("oid sha256:"))
        .unwrap_or_else(|| panic!("not an LFS pointer: {pointer}"))
        .to_string()
}

#[test]
fn an_lfs_repository_checks_out_content_and_commits_pointers() {
    if !lfs_installed("an_lfs_repository_checks_out_content_and_commits_pointers") {
        return;
    }
    let marks = outside_tmp();
    // Another filter the user's configuration defines: trusting `lfs` does not let the agent's
    // `.gitattributes` select it.
    let home = lfs_home(&format!(
        "[filter \"other\"]\n\tclean = \"touch {m}/other-clean; cat\"\n\tsmudge = \"touch {m}/other-smudge; cat\"\n",
        m = marks.path().display()
    ));
    let script = "cat big.bin > seen.txt && printf 'new large content\\n' > new.bin && \
                  echo '*.txt filter=other' >> .gitattributes && echo plain > note.txt";
    let repo = lfs_project(home.path(), script, TRUST_LFS);
    repo.ok(&["task", "add", "Write a large file"]);
    let out = run_as(&repo, home.path(), &["run"]);
    assert_eq!(repo.task_state(1), "done", "{}", stderr(&out));

    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:seen.txt"]),
        "the original large content\n",
        "the agent read the smudged content, not the pointer"
    );
    let pointer = repo.git(&["cat-file", "-p", "agentgrid/task-1:new.bin"]);
    assert!(
        pointer.starts_with(POINTER),
        "the new file is committed as an LFS pointer: {pointer}"
    );
    let oid = oid(&pointer);
    let object = repo
        .path()
        .join(".git/lfs/objects")
        .join(&oid[0..2])
        .join(&oid[2..4])
        .join(&oid);
    assert_eq!(
        std::fs::read_to_string(&object).unwrap(),
        "new large content\n",
        "the object is in the repository's LFS store"
    );
    assert_eq!(
        std::fs::read_dir(marks.path()).unwrap().count(),
        0,
        "the other filter of the user's configuration did not run"
    );
    assert_eq!(repo.git(&["show", "agentgrid/task-1:note.txt"]), "plain\n");
}

#[test]
fn without_trusting_lfs_host_git_does_not_run_it() {
    if !lfs_installed("without_trusting_lfs_host_git_does_not_run_it") {
        return;
    }
    // What the setting is for: the user's `~/.gitconfig` alone does not reach host git.
    let home = lfs_home("");
    let repo = lfs_project(
        home.path(),
        "cat big.bin > seen.txt && printf 'raw\\n' > new.bin",
        "",
    );
    repo.ok(&["task", "add", "Write a large file"]);
    let out = run_as(&repo, home.path(), &["run"]);
    assert_eq!(repo.task_state(1), "done", "{}", stderr(&out));
    assert!(
        repo.git(&["show", "agentgrid/task-1:seen.txt"])
            .starts_with(POINTER),
        "the worktree held the pointer"
    );
    assert_eq!(
        repo.git(&["cat-file", "-p", "agentgrid/task-1:new.bin"]),
        "raw\n"
    );
}

#[test]
fn a_trusted_driver_nobody_defined_is_refused_at_its_line() {
    // A home without any git configuration.
    let home = outside_tmp();
    let agent = sandboxed("worker", "true", "max_attempts: 1");
    let repo = setup(outside_tmp(), &[("worker", &agent)]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!("{CONFIG}  workspace:\n    git: {{drivers: [lfs]}}\n"),
    )
    .unwrap();
    repo.ok(&["task", "add", "Anything"]);
    let out = run_as(&repo, home.path(), &["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            ".agentgrid/config.yaml:7:21: spec.workspace.git.drivers: `lfs`: no `filter.lfs.*`"
        ),
        "{err}"
    );
    assert!(err.contains("git lfs install"), "{err}");
    assert_eq!(repo.task_state(1), "open", "nothing ran");

    let doctor = run_as(&repo, home.path(), &["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(report["git_drivers"][0]["name"], "lfs");
    assert_eq!(report["git_drivers"][0]["ok"], false);
    assert_eq!(
        doctor.status.code(),
        Some(1),
        "doctor counts it as a problem"
    );
}

#[test]
fn doctor_says_where_a_trusted_driver_is_defined() {
    if !lfs_installed("doctor_says_where_a_trusted_driver_is_defined") {
        return;
    }
    let home = lfs_home("");
    let repo = lfs_project(home.path(), "true", TRUST_LFS);
    let doctor = run_as(&repo, home.path(), &["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let lfs = &report["git_drivers"][0];
    assert_eq!(lfs["name"], "lfs");
    assert_eq!(lfs["ok"], true, "{report}");
    assert_eq!(lfs["sources"], serde_json::json!(["global"]));
    let settings: Vec<&str> = lfs["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        settings.contains(&"filter.lfs.process=git-lfs filter-process"),
        "{settings:?}"
    );
    let text = stdout(&run_as(&repo, home.path(), &["doctor"]));
    assert!(
        text.contains("Git driver `lfs`: ✓ trusted, defined in the global configuration"),
        "{text}"
    );
}
