//! The escape suite: scripted agents that try to break out of their sandbox, through the real
//! binary. Each attempt writes `<name>: escaped` or `<name>: blocked` to `results.txt` in its
//! workspace, which agentgrid commits to the task's branch after the agent exits; the tests read
//! it from there, check the host side too (files, listeners, the engine), and check that the
//! engine recorded each execution's end with its reason.
//!
//! The repositories live outside /tmp (which every sandbox hides), so that what the sandbox
//! must hide on its own (the engine's state directory, the home directory) is really tested.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;

pub(crate) const CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// The sandbox section every escape agent runs under.
pub(crate) const SANDBOX: &str = "  sandbox:\n    filesystem: workspace-write\n    network: none\n    limits: {memory: 256MiB, processes: 64, open_files: 1024, file_size: 10MiB, cpu_time: 1m}\n";

/// A directory outside /tmp and the other places every sandbox hides: the build's scratch
/// directory, or one under /var/lib when the repository itself was cloned into /tmp.
pub(crate) fn outside_tmp() -> tempfile::TempDir {
    const HIDDEN: [&str; 5] = ["/tmp", "/var/tmp", "/run", "/home", "/root"];
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .canonicalize()
        .unwrap();
    let root = if HIDDEN.iter().any(|h| target.starts_with(h)) {
        let fallback = PathBuf::from("/var/lib/agentgrid-escape-tests");
        std::fs::create_dir_all(&fallback).unwrap_or_else(|e| {
            panic!(
                "cannot make {} ({e}): run the escape suite from a clone outside /tmp",
                fallback.display()
            )
        });
        fallback
    } else {
        target
    };
    tempfile::tempdir_in(root).unwrap()
}

/// Like `Repo::with_agents`, in a directory outside /tmp, with fast retries.
fn repo(agents: &[(&str, &str)]) -> Repo {
    setup(outside_tmp(), agents)
}

/// Sets up a project with `agents` in `dir`.
pub(crate) fn setup(dir: tempfile::TempDir, agents: &[(&str, &str)]) -> Repo {
    let repo = Repo { dir };
    repo.git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.path().join("README.md"), "# test project\n").unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "first"]);
    repo.ok(&["init"]);
    let dir = repo.path().join(".agentgrid/agents");
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for (name, yaml) in agents {
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
    }
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), CONFIG).unwrap();
    repo
}

/// A sandboxed agent running `script`, with `limits` as its agent limits.
pub(crate) fn sandboxed(name: &str, script: &str, limits: &str) -> String {
    agent(
        name,
        script,
        &format!("  routing: {{default: true}}\n  limits: {{{limits}}}\n{SANDBOX}"),
    )
}

/// Shell lines that record one attempt: `name: escaped` when `command` succeeds.
fn attempt(name: &str, command: &str) -> String {
    format!(
        "if ( {command} ) >/dev/null 2>&1; then echo '{name}: escaped' >> results.txt; else echo '{name}: blocked' >> results.txt; fi; "
    )
}

fn results(repo: &Repo) -> Vec<(String, String)> {
    repo.git(&["show", "agentgrid/task-1:results.txt"])
        .lines()
        .filter_map(|l| {
            let (name, outcome) = l.split_once(": ")?;
            Some((name.to_string(), outcome.to_string()))
        })
        .collect()
}

fn execution(repo: &Repo) -> serde_json::Value {
    repo.json(&["task", "show", "1", "--json"])["executions"][0].clone()
}

#[test]
fn escape_attempts_fail_while_work_in_the_workspace_succeeds() {
    let home = outside_tmp();
    std::fs::write(home.path().join("secret.txt"), "HOME-SECRET\n").unwrap();
    let outside = outside_tmp();
    std::fs::write(outside.path().join("file.txt"), "untouched\n").unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let socket_path = sockets.path().join("service.sock");
    let unix = UnixListener::bind(&socket_path).unwrap();
    unix.set_nonblocking(true).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let pid_file = outside.path().join("engine.pid");

    let project = outside_tmp();
    let repo_dir = project.path().to_path_buf();
    let db = repo_dir.join(".agentgrid/agentgrid.db");
    let engine = format!("$(cat {})", pid_file.display());
    let mut script = String::from("echo legit > work.txt; git status --short > status.txt; ");
    for (name, command) in [
        (
            "read-home-secret",
            format!("grep -q HOME-SECRET {}/secret.txt", home.path().display()),
        ),
        (
            "read-home-via-env",
            "grep -q HOME-SECRET \"$HOME/secret.txt\"".to_string(),
        ),
        // Each write needs the real file to be seen first: a directory that exists inside only
        // as the parent of a mount point in the sandbox's private /tmp is not the host's.
        (
            "write-outside",
            format!(
                "[ -f {o}/file.txt ] && echo x > {o}/escape.txt",
                o = outside.path().display()
            ),
        ),
        (
            "change-outside-file",
            format!(
                "[ -f {o}/file.txt ] && echo x >> {o}/file.txt",
                o = outside.path().display()
            ),
        ),
        (
            "write-main-checkout",
            format!(
                "[ -f {r}/README.md ] && echo x >> {r}/README.md",
                r = repo_dir.display()
            ),
        ),
        (
            "follow-symlink-out",
            format!(
                "ln -s {}/secret.txt link && grep -q HOME-SECRET link",
                home.path().display()
            ),
        ),
        (
            "write-through-symlink",
            format!(
                "ln -s {}/file.txt wlink && echo x >> wlink",
                outside.path().display()
            ),
        ),
        (
            "tcp-loopback",
            format!(
                "perl -MIO::Socket::INET -e 'exit(IO::Socket::INET->new(PeerAddr => \"127.0.0.1:{port}\", Timeout => 3) ? 0 : 1)'"
            ),
        ),
        (
            "unix-socket",
            format!(
                "perl -MIO::Socket::UNIX -e 'exit(IO::Socket::UNIX->new(Peer => \"{}\") ? 0 : 1)'",
                socket_path.display()
            ),
        ),
        (
            "engine-environ",
            format!("grep -q ENGINE-MARKER /proc/{engine}/environ"),
        ),
        (
            "engine-database",
            format!("head -c 16 {} | grep -q SQLite", db.display()),
        ),
        ("signal-engine", format!("kill -CONT {engine}")),
        (
            "ptrace-engine",
            format!("perl -e 'exit(syscall(101, 16, {engine}, 0, 0) == 0 ? 0 : 1)'"),
        ),
        (
            "see-host-processes",
            "[ $(ls /proc | grep -c '^[0-9]') -gt 20 ]".to_string(),
        ),
    ] {
        script.push_str(&attempt(name, &command));
    }
    script.push_str("cat results.txt");
    let repo = setup(
        project,
        &[("escaper", &sandboxed("escaper", &script, "max_attempts: 1"))],
    );

    let mut engine = repo
        .cmd(&["run", "--forever"])
        .env("HOME", home.path())
        .env("ENGINE_SECRET", "ENGINE-MARKER")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, engine.id().to_string()).unwrap();
    repo.ok(&["task", "add", "Try to escape"]);
    wait_for(
        Duration::from_secs(60),
        "the escape attempts to end",
        || {
            let state = repo.task_state(1);
            state == "done" || state == "failed"
        },
    );
    let engine_alive = engine.try_wait().unwrap().is_none();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = engine.wait().unwrap();
    assert!(engine_alive, "the engine survived its agent");
    assert!(status.success(), "the engine shut down cleanly: {status:?}");

    let results = results(&repo);
    assert_eq!(results.len(), 14, "every attempt ran: {results:?}");
    let escaped: Vec<&String> = results
        .iter()
        .filter(|(_, outcome)| outcome != "blocked")
        .map(|(name, _)| name)
        .collect();
    assert!(escaped.is_empty(), "escaped: {escaped:?}");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:work.txt"]).trim(),
        "legit"
    );
    assert!(!outside.path().join("escape.txt").exists());
    assert_eq!(
        std::fs::read_to_string(outside.path().join("file.txt")).unwrap(),
        "untouched\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("README.md")).unwrap(),
        "# test project\n"
    );
    assert!(
        tcp.accept().is_err(),
        "nothing reached the loopback listener"
    );
    assert!(unix.accept().is_err(), "nothing reached the Unix socket");
    let exec = execution(&repo);
    assert_eq!(exec["state"], "succeeded", "{exec}");
}

#[test]
fn a_fork_bomb_hits_the_process_limit() {
    // A bounded bomb, so that even without a sandbox it could not take the machine down: it
    // tries 300 processes and records how many it got. Its children sleep until the sandbox
    // ends them.
    let script = "perl -e '$ok = 0; for (1..300) { $p = fork(); if (!defined $p) { next } \
                  elsif ($p == 0) { sleep 20; exit 0 } else { $ok++ } } print \"$ok\\n\"' > started.txt; \
                  echo done";
    let repo = repo(&[(
        "bomber",
        &sandboxed("bomber", script, "max_attempts: 1, timeout: 60s"),
    )]);
    repo.ok(&["task", "add", "Fork bomb"]);
    repo.ok(&["run"]);
    let started: u32 = repo
        .git(&["show", "agentgrid/task-1:started.txt"])
        .trim()
        .parse()
        .unwrap();
    assert!(
        started <= 64 + 8,
        "the process limit held: {started} processes"
    );
    let exec = execution(&repo);
    assert_eq!(exec["state"], "succeeded", "{exec}");
    let log = repo.ok(&["logs", "1"]);
    assert!(
        log.contains("process limit of 64 was reached") || started < 64,
        "{log}"
    );
    // The engine is still fine: another task runs after it.
    repo.ok(&["task", "add", "After the bomb"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(2), "done");
}

#[test]
fn a_memory_hog_does_not_get_its_memory() {
    let script = "perl -e '$x = \"a\" x (1024 * 1024 * 1024); print \"ALLOCATED\\n\"'";
    let repo = repo(&[("hog", &sandboxed("hog", script, "max_attempts: 1"))]);
    repo.ok(&["task", "add", "Eat memory"]);
    repo.run(&["run"]);
    let exec = execution(&repo);
    assert_eq!(exec["state"], "failed", "{exec}");
    let log = repo.ok(&["logs", "1"]);
    assert!(!log.contains("ALLOCATED"), "{log}");
    let summary = repo.json(&["task", "show", "1", "--json"])["task"]["summary"].to_string();
    assert!(
        summary.contains("agent"),
        "the end is recorded with its reason: {summary}"
    );
}

#[test]
fn filling_the_disk_stops_at_the_limits() {
    // Inside the workspace a file stops at the file-size limit (10MiB); the private /tmp holds
    // at most the memory limit (256MiB). The last `dd` ends the agent by SIGXFSZ.
    let script = "dd if=/dev/zero of=/tmp/fill bs=1M count=300 2>/dev/null; \
                  stat -c %s /tmp/fill > tmp-size.txt; rm -f /tmp/fill; \
                  exec dd if=/dev/zero of=big bs=1M count=100";
    let repo = repo(&[("filler", &sandboxed("filler", script, "max_attempts: 1"))]);
    repo.ok(&["task", "add", "Fill the disk"]);
    repo.run(&["run"]);
    let tmp: u64 = repo
        .git(&["show", "agentgrid/task-1:tmp-size.txt"])
        .trim()
        .parse()
        .unwrap();
    assert!(tmp <= 256 << 20, "/tmp held {tmp} bytes");
    let big = repo.git(&["cat-file", "-s", "agentgrid/task-1:big"]);
    assert_eq!(big.trim(), (10u64 << 20).to_string());
    let exec = execution(&repo);
    assert_eq!(exec["state"], "failed", "{exec}");
    let summary = repo.json(&["task", "show", "1", "--json"])["task"]["summary"].to_string();
    assert!(summary.contains("file-size limit"), "{summary}");
}

#[test]
fn running_past_the_time_limit_ends_everything_the_agent_started() {
    let marker = format!("1000.{}77", std::process::id());
    let script = format!("setsid sleep {marker} & echo started; sleep {marker}");
    let repo = repo(&[(
        "sleeper",
        &sandboxed("sleeper", &script, "max_attempts: 1, timeout: 2s"),
    )]);
    repo.ok(&["task", "add", "Never ends"]);
    let started = std::time::Instant::now();
    repo.run(&["run"]);
    assert!(started.elapsed() < Duration::from_secs(60));
    let exec = execution(&repo);
    assert_eq!(exec["state"], "timed_out", "{exec}");
    wait_for(
        Duration::from_secs(5),
        "every sleep of the agent to end",
        || sleeps_with(&marker).is_empty(),
    );
}

/// `sleep <marker>` processes anywhere on the machine.
fn sleeps_with(marker: &str) -> Vec<PathBuf> {
    let wanted = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read(p.join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).ends_with(&wanted))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn without_worktrees_the_state_directory_stays_hidden_inside_the_project() {
    state_directory_stays_hidden(outside_tmp());
    // Under /tmp the project is inside a hidden directory and shown again as the workspace;
    // its state directory must be hidden once more inside it.
    state_directory_stays_hidden(tempfile::tempdir().unwrap());
}

fn state_directory_stays_hidden(dir: tempfile::TempDir) {
    // With workspaces off the agent works in the project itself, which holds `.agentgrid`.
    let probe = |name: &str, command: &str| {
        format!(
            "if ( {command} ) >/dev/null 2>&1; then echo '{name}: escaped'; else echo '{name}: blocked'; fi; "
        )
    };
    let mut script = String::from("echo legit > work.txt && echo 'legit-work: done'; ");
    script.push_str(&probe(
        "read-database",
        "head -c 16 .agentgrid/agentgrid.db | grep -q SQLite",
    ));
    script.push_str(&probe(
        "write-database",
        "echo x >> .agentgrid/agentgrid.db",
    ));
    script.push_str(&probe("list-logs", "[ -n \"$(ls .agentgrid/logs)\" ]"));
    let repo = setup(
        dir,
        &[("inplace", &sandboxed("inplace", &script, "max_attempts: 1"))],
    );
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        format!("{CONFIG}  workspace: {{enabled: false}}\n"),
    )
    .unwrap();
    repo.ok(&["task", "add", "Work in place"]);
    repo.ok(&["run"]);
    let log = repo.ok(&["logs", "1"]);
    assert!(log.contains("legit-work: done"), "{log}");
    for name in ["read-database", "write-database", "list-logs"] {
        assert!(
            log.contains(&format!("{name}: blocked")),
            "{name} was not blocked:\n{log}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(repo.path().join("work.txt")).unwrap(),
        "legit\n"
    );
    assert_eq!(
        repo.task_state(1),
        "done",
        "the engine's database is intact"
    );
}
