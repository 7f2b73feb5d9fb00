//! Attacks on the sandbox's own decisions, through the real binary: a `.git` pointer that
//! tries to choose what the next sandbox of its workspace binds, host sockets and files beside
//! the project, and an agent that tries to outlive the engine.
//!
//! Each agent prints `<name>: escaped` or `<name>: blocked` for every attempt; the tests read
//! the lines from the executions' logs on the host. The projects live outside /tmp (which
//! every sandbox hides), so that what the sandbox must leave out on its own is really tested.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::escape::{SANDBOX, outside_tmp, sandboxed, setup};
use crate::support::*;

/// A project in `dir` with one sandboxed agent running `script`.
fn project(dir: tempfile::TempDir, script: &str, limits: &str) -> Repo {
    setup(dir, &[("attacker", &sandboxed("attacker", script, limits))])
}

/// Shell lines that print `name: escaped` when `command` succeeds, `name: blocked` otherwise.
fn attempt(name: &str, command: &str) -> String {
    format!(
        "if ( {command} ) >/dev/null 2>&1; then echo '{name}: escaped'; else echo '{name}: blocked'; fi; "
    )
}

/// Shell lines that print `name: works` when `command` succeeds, `name: broken` otherwise.
fn works(name: &str, command: &str) -> String {
    format!(
        "if ( {command} ) >/dev/null 2>&1; then echo '{name}: works'; else echo '{name}: broken'; fi; "
    )
}

/// Everything every execution of the project printed.
fn all_logs(repo: &Repo) -> String {
    let mut text = String::new();
    let Ok(entries) = std::fs::read_dir(repo.path().join(".agentgrid/logs")) else {
        return text;
    };
    for entry in entries.flatten() {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    text
}

/// Checks that each of `names` was tried and blocked, and none escaped.
fn assert_blocked(log: &str, names: &[&str]) {
    for name in names {
        assert!(
            log.contains(&format!("{name}: blocked")),
            "{name} was not tried or not blocked:\n{log}"
        );
        assert!(
            !log.contains(&format!("{name}: escaped")),
            "{name} escaped:\n{log}"
        );
    }
}

/// A directory under `parent` with a `secret.txt`, or `None` (said on stderr) where this user
/// cannot make one.
fn secret_dir_in(parent: &Path, secret: &str) -> Option<tempfile::TempDir> {
    let dir = match tempfile::tempdir_in(parent) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!(
                "skipping the {} target: cannot make a directory there ({e})",
                parent.display()
            );
            return None;
        }
    };
    std::fs::write(dir.path().join("secret.txt"), format!("{secret}\n")).unwrap();
    Some(dir)
}

#[test]
fn a_git_pointer_does_not_choose_what_the_next_sandbox_shows() {
    let home = outside_tmp();
    std::fs::write(home.path().join("secret.txt"), "POINTED-SECRET\n").unwrap();
    let root = secret_dir_in(Path::new("/root"), "POINTED-SECRET");
    let run = secret_dir_in(Path::new("/run"), "POINTED-SECRET");
    let tmp = secret_dir_in(&std::env::temp_dir(), "POINTED-SECRET").unwrap();
    let repo = project(outside_tmp(), "true", "max_attempts: 2");
    let state = repo.path().join(".agentgrid");
    // A file the engine's state directory might hold tomorrow, and another task's worktree.
    std::fs::write(state.join("secret.txt"), "POINTED-SECRET\n").unwrap();
    let other = state.join("workspaces/task-99");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("secret.txt"), "POINTED-SECRET\n").unwrap();

    let mut targets: Vec<(&str, PathBuf)> = vec![
        ("home", home.path().to_path_buf()),
        ("tmp", tmp.path().to_path_buf()),
        ("state-directory", state.clone()),
        ("other-worktree", other.clone()),
    ];
    if let Some(dir) = &root {
        targets.push(("root", dir.path().to_path_buf()));
    }
    if let Some(dir) = &run {
        targets.push(("run", dir.path().to_path_buf()));
    }
    // Task N aims its `.git` at target N in its first attempt and fails, so that a second
    // attempt starts a new sandbox on the same worktree; that one looks for the secret.
    let mut script = String::from("case $AGENTGRID_TASK_ID in ");
    for (i, (name, dir)) in targets.iter().enumerate() {
        script.push_str(&format!(
            "{}) NAME={name}; TARGET={};; ",
            i + 1,
            dir.display()
        ));
    }
    script.push_str(
        "esac; if [ \"$AGENTGRID_ATTEMPT\" = 1 ]; then printf 'gitdir: %s\\n' \"$TARGET\" > .git; \
         echo \"pointed $NAME\"; exit 1; fi; echo \"second attempt $NAME\"; ",
    );
    script.push_str(
        "if grep -q POINTED-SECRET \"$TARGET/secret.txt\" 2>/dev/null; \
         then echo \"read-through-$NAME: escaped\"; else echo \"read-through-$NAME: blocked\"; fi",
    );
    std::fs::write(
        repo.path().join(".agentgrid/agents/attacker.yaml"),
        agent(
            "attacker",
            &script,
            &format!("  routing: {{default: true}}\n  limits: {{max_attempts: 2}}\n{SANDBOX}"),
        ),
    )
    .unwrap();
    for (name, _) in &targets {
        repo.ok(&["task", "add", &format!("Point .git at {name}")]);
    }
    repo.run(&["run"]);
    let log = all_logs(&repo);
    for (name, _) in &targets {
        assert!(
            log.contains(&format!("second attempt {name}")),
            "the second attempt on {name} ran:\n{log}"
        );
    }
    let names: Vec<String> = targets
        .iter()
        .map(|(name, _)| format!("read-through-{name}"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_blocked(&log, &names);
}

#[test]
fn a_git_pointer_at_an_endless_file_or_a_fifo_does_not_hang_the_engine() {
    // The first attempt makes `.git` a link to /dev/zero (task 1) or a FIFO (task 2) and fails;
    // the second attempt's sandbox must start at once, without reading either.
    let script = "if [ \"$AGENTGRID_ATTEMPT\" = 1 ]; then rm -f .git; \
                  if [ $AGENTGRID_TASK_ID = 1 ]; then ln -s /dev/zero .git; else mkfifo .git; fi; \
                  exit 1; fi; echo \"second attempt $AGENTGRID_TASK_ID ran\"";
    let repo = project(outside_tmp(), script, "max_attempts: 2, timeout: 20s");
    repo.ok(&["task", "add", "Endless pointer"]);
    repo.ok(&["task", "add", "FIFO pointer"]);
    let started = Instant::now();
    repo.run(&["run"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run took {:?}",
        started.elapsed()
    );
    let log = all_logs(&repo);
    for task in [1, 2] {
        assert!(
            log.contains(&format!("second attempt {task} ran")),
            "task {task}'s second attempt ran:\n{log}"
        );
    }
    // The engine still works on the same project.
    std::fs::write(
        repo.path().join(".agentgrid/agents/attacker.yaml"),
        agent(
            "attacker",
            "echo fine > fine.txt",
            &format!("  routing: {{default: true}}\n{SANDBOX}"),
        ),
    )
    .unwrap();
    repo.ok(&["task", "add", "Afterwards"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(3), "done");
}

#[test]
fn host_sockets_and_files_beside_the_project_are_out_of_reach() {
    // A service listening beside the project, one inside the main checkout, and the main
    // checkout's untracked files: none of it is the agent's.
    let beside = outside_tmp();
    let beside_socket = beside.path().join("service.sock");
    let beside_listener = UnixListener::bind(&beside_socket).unwrap();
    beside_listener.set_nonblocking(true).unwrap();
    let dir = outside_tmp();
    let checkout_socket = dir.path().join("checkout.sock");
    let checkout_listener = UnixListener::bind(&checkout_socket).unwrap();
    checkout_listener.set_nonblocking(true).unwrap();
    let main = dir.path().to_path_buf();
    std::fs::write(main.join(".env"), "API_KEY=CHECKOUT-SECRET\n").unwrap();

    let connect = |path: &Path| {
        format!(
            "python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])' {}",
            path.display()
        )
    };
    let mut script = String::from("echo legit > work.txt; ");
    script.push_str(&attempt("connect-beside-project", &connect(&beside_socket)));
    script.push_str(&attempt("connect-in-checkout", &connect(&checkout_socket)));
    script.push_str(&attempt(
        "read-checkout-env",
        &format!("grep -q CHECKOUT-SECRET {}/.env", main.display()),
    ));
    script.push_str(&attempt(
        "list-checkout",
        &format!("ls -A {} | grep -q README", main.display()),
    ));
    script.push_str(&attempt(
        "list-beside",
        &format!("ls -A {} | grep -q service", beside.path().display()),
    ));
    // What must keep working: the control socket and the agent's own sockets.
    script.push_str(&works(
        "control-socket",
        "agentgrid ctl comment 'still reachable'",
    ));
    script.push_str(&works(
        "own-socket",
        "python3 -c 'import socket; a=socket.socket(socket.AF_UNIX); a.bind(\"/tmp/own.sock\"); a.listen(1); b=socket.socket(socket.AF_UNIX); b.connect(\"/tmp/own.sock\")'",
    ));
    let repo = project(dir, &script, "max_attempts: 1");
    repo.ok(&["task", "add", "Reach the host"]);
    repo.ok(&["run"]);
    let log = all_logs(&repo);
    assert_blocked(
        &log,
        &[
            "connect-beside-project",
            "connect-in-checkout",
            "read-checkout-env",
            "list-checkout",
            "list-beside",
        ],
    );
    for name in ["control-socket", "own-socket"] {
        assert!(log.contains(&format!("{name}: works")), "{name}:\n{log}");
    }
    assert!(beside_listener.accept().is_err(), "nothing reached it");
    assert!(checkout_listener.accept().is_err(), "nothing reached it");
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:work.txt"]).trim(),
        "legit"
    );
}

/// Processes anywhere on the machine whose command line ends in `sleep <marker>`.
fn sleeps_with(marker: &str) -> Vec<i32> {
    let wanted = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).ends_with(&wanted))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn a_sandboxed_agent_dies_with_a_killed_engine() {
    let marker = format!("1000.{}55", std::process::id());
    let script = format!("setsid sleep {marker} & sleep {marker}");
    let repo = project(outside_tmp(), &script, "max_attempts: 1, timeout: 10m");
    repo.ok(&["task", "add", "Outlive the engine"]);
    let mut engine = repo
        .cmd(&["run", "--forever"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "the agent's sleeps to start",
        || sleeps_with(&marker).len() == 2,
    );
    engine.kill().unwrap(); // SIGKILL: the engine gets no chance to stop anything.
    engine.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sleeps_with(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = sleeps_with(&marker);
    for pid in &left {
        // Cleared up either way, so that a failure leaves nothing behind.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        left.is_empty(),
        "the agent outlived the engine: pids {left:?}"
    );
}

#[test]
fn doctor_proves_the_boundary_and_names_the_socket_defence() {
    let dir = outside_tmp();
    let out = command(bin())
        .args(["doctor", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = report["smoke_test"]["boundary"]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("the self-test ran: {report}"));
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for name in [
        "home-hidden",
        "state-hidden",
        "host-socket",
        "no-ip-socket",
        "private-proc",
    ] {
        assert!(names.contains(&name), "{name} was checked: {report}");
    }
    assert!(
        checks.iter().all(|c| c["ok"] == true),
        "the boundary held: {report}"
    );
    assert!(report["smoke_test"]["boundary"]["uid"].is_u64(), "{report}");
    let mechanism = report["unix_sockets"]["mechanism"].as_str().unwrap();
    assert!(
        mechanism.contains("allow-list view") && mechanism.contains("Landlock"),
        "{mechanism}"
    );
    assert!(out.status.success(), "{report}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the self-test leaves nothing behind"
    );
}

#[test]
fn under_a_root_engine_root_only_files_are_unreadable() {
    if sandbox_selftest_uid() != 0 {
        eprintln!("skipped: only a root engine gives its agents an identity of their own");
        return;
    }
    // A root-only file in a tree every sandbox shows, and one the agent's group could read.
    let secret = Path::new("/opt").join(format!(".agentgrid-root-only-{}", std::process::id()));
    std::fs::write(&secret, "ROOT-ONLY\n").unwrap();
    let set_mode = |mode| {
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap()
    };
    set_mode(0o600);
    let mut script = String::from("id -u > uid.txt; echo legit > work.txt; ");
    script.push_str(&attempt(
        "read-root-only",
        &format!("grep -q ROOT-ONLY {}", secret.display()),
    ));
    script.push_str(&works("git-status", "git status --short"));
    let repo = project(outside_tmp(), &script, "max_attempts: 1");
    repo.ok(&["task", "add", "Read root's files"]);
    repo.ok(&["run"]);
    let _ = std::fs::remove_file(&secret);
    let log = all_logs(&repo);
    assert_blocked(&log, &["read-root-only"]);
    assert!(log.contains("git-status: works"), "{log}");
    assert_ne!(
        repo.git(&["show", "agentgrid/task-1:uid.txt"]).trim(),
        "0",
        "the agent is not root"
    );
    assert_eq!(
        repo.git(&["show", "agentgrid/task-1:work.txt"]).trim(),
        "legit"
    );
}

/// The uid this test process runs as (the engine's, when it starts one).
fn sandbox_selftest_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap()
}
