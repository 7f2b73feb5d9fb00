//! What the binary says about itself: its exit status, its output when the reader goes away,
//! the closing summary of a run, and the files `init` writes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Repo, agent, command, stderr, stdout};

fn import(repo: &Repo, count: usize) {
    let file = repo.path().join("many.jsonl");
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!(
            "{{\"title\": \"Task number {i} with a title long enough to fill the pipe\"}}\n"
        ));
    }
    std::fs::write(&file, text).unwrap();
    repo.ok(&["task", "import", file.to_str().unwrap()]);
}

fn assert_quiet_end(args: &[&str], out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "agentgrid {args:?} with its reader gone: {}",
        stderr(out)
    );
    assert!(
        !stderr(out).contains("panicked"),
        "agentgrid {args:?}: {}",
        stderr(out)
    );
}

/// Runs the command with a standard output whose reader has already gone.
fn with_stdout_closed(repo: &Repo, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = repo
        .cmd(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_quiet_end(args, &out);
    out
}

#[test]
fn output_ends_quietly_when_its_reader_goes_away() {
    let repo = Repo::with_agents(&[(
        "worker",
        &agent("worker", "true", "  routing: {default: true}\n"),
    )]);
    // Far more than a pipe holds (64 KiB), so the writer is still writing when the reader
    // leaves, as with `| head`.
    import(&repo, 2000);
    for args in [
        &["task", "list"][..],
        &["task", "list", "--json"],
        &["events"],
    ] {
        let mut child = repo
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 64];
        child.stdout.take().unwrap().read_exact(&mut head).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_quiet_end(args, &out);
    }

    with_stdout_closed(&repo, &["task", "show", "1"]);
    with_stdout_closed(&repo, &["status", "--json"]);
    with_stdout_closed(&repo, &["status"]);
    // The import itself happens: only its report is lost.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = repo
        .cmd(&["task", "import", "--json"])
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"title\": \"one more\"}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_quiet_end(&["task", "import", "--json"], &out);
    assert_eq!(repo.tasks().len(), 2001);

    // A run whose progress nobody reads still does its work and ends with its own status.
    let repo = Repo::with_agents(&[(
        "worker",
        &agent("worker", "true", "  routing: {default: true}\n"),
    )]);
    repo.ok(&["task", "add", "one"]);
    with_stdout_closed(&repo, &["run"]);
    assert_eq!(repo.task_state(1), "done");
}

#[test]
fn a_busy_database_is_no_wrong_request_and_a_second_engine_exits_2() {
    let repo = Repo::with_agents(&[(
        "worker",
        &agent("worker", "true", "  routing: {default: true}\n"),
    )]);
    repo.ok(&["task", "add", "first"]);

    // Another process holds the database's write lock for longer than the store waits.
    let db = repo.path().join(".agentgrid/agentgrid.db");
    let mut holder = command("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('held', flush=True)\n\
             sys.stdin.read()\n",
            db.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");
    let out = repo.run(&["task", "add", "second"]);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "a locked database means try again, not a wrong request: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("locked by another process"),
        "{}",
        stderr(&out)
    );
    assert_eq!(repo.tasks().len(), 1, "nothing changed");

    // A refused change is a wrong request that changed nothing, with the store's reason.
    let out = repo.run(&["task", "dep", "add", "1", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Another engine holds the project's engine lock.
    let lock = repo.path().join(".agentgrid/engine.lock");
    let mut engine = command("python3")
        .args([
            "-c",
            "import fcntl, os, sys\n\
             f = open(sys.argv[1], 'w')\n\
             fcntl.flock(f, fcntl.LOCK_EX)\n\
             f.write(str(os.getpid())); f.flush()\n\
             print('held', flush=True)\n\
             sys.stdin.read()\n",
            lock.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(engine.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let out = repo.run(&["run"]);
    drop(engine.stdin.take());
    engine.wait().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another agentgrid engine is running in this project"),
        "{}",
        stderr(&out)
    );
    assert_eq!(repo.task_state(1), "open");
}

#[test]
fn a_run_sums_up_only_what_it_did_and_fails_only_for_its_own_failures() {
    let repo = Repo::with_agents(&[(
        "worker",
        &agent("worker", "true", "  routing: {default: true}\n"),
    )]);
    let config = repo.path().join(".agentgrid/config.yaml");
    let normal = std::fs::read_to_string(&config).unwrap();
    // An earlier run in which every task failed at once, on a guard.
    std::fs::write(
        &config,
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  guards: {max_executions_per_task: 0}\n",
    )
    .unwrap();
    import(&repo, 5000);
    let out = repo.run(&["run", "--quiet"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary = stdout(&out);
    assert_eq!(
        summary.lines().count(),
        1,
        "--quiet prints the one line of counts: {summary}"
    );
    assert!(
        summary.contains("5000 task(s) touched: 0 done, 5000 failed"),
        "{summary}"
    );
    std::fs::write(&config, normal).unwrap();

    // The next run does one task: its summary is about that task only.
    repo.ok(&["task", "add", "the new one"]);
    let started = Instant::now();
    let out = repo.run(&["run"]);
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "failures of an earlier run are not this run's: {}",
        stdout(&out)
    );
    let summary = stdout(&out);
    let table: Vec<&str> = summary
        .lines()
        .skip_while(|l| !l.starts_with("TASK"))
        .collect();
    assert!(table.len() < 6, "{summary}");
    assert!(table.iter().any(|l| l.starts_with("#5001")), "{summary}");
    assert!(!table.iter().any(|l| l.starts_with("#1 ")), "{summary}");
    assert!(
        summary.contains("1 execution(s) started; 1 task(s) touched: 1 done, 0 failed"),
        "{summary}"
    );
    assert!(took < Duration::from_secs(20), "the run took {took:?}");

    // A run that touches many tasks lists a bounded number of them.
    let reopen: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    for id in &reopen {
        repo.ok(&["task", "reopen", id]);
    }
    std::fs::write(
        &config,
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  guards: {max_executions_per_task: 0}\n",
    )
    .unwrap();
    let out = repo.run(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let summary = stdout(&out);
    let rows = summary.lines().filter(|l| l.starts_with('#')).count();
    assert_eq!(rows, 20, "{summary}");
    assert!(
        summary.contains("… and 10 more (agentgrid task list --state failed)"),
        "{summary}"
    );
}

#[test]
fn init_writes_the_defaults_it_says_it_writes() {
    let repo = Repo::new();
    // No agent CLI on PATH: init writes its template agent.
    let out = repo
        .cmd(&["init"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let path = repo.path().join(".agentgrid/config.yaml");
    let config = manifest::parse_config(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    assert_eq!(
        config,
        manifest::ConfigSpec::default(),
        "config.yaml says its values are the defaults"
    );

    // The agent template: what it sets on purpose, and the defaults for everything else.
    let path = repo.path().join(".agentgrid/agents/worker.yaml");
    let agents = manifest::parse_agents(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    let spec = &agents[0].manifest.spec;
    let expected = manifest::AgentSpec {
        description: spec.description.clone(),
        runtime: spec.runtime.clone(),
        prompt: spec.prompt.clone(),
        routing: manifest::Routing {
            default: true,
            ..Default::default()
        },
        limits: manifest::Limits {
            max_attempts: 1,
            ..Default::default()
        },
        validation: Default::default(),
        completion: Default::default(),
        sandbox: Default::default(),
        agency: None,
        role: None,
        topics: Vec::new(),
    };
    assert_eq!(spec, &expected);
}

#[test]
fn a_worktree_busy_when_its_task_ended_is_removed_once_it_is_free() {
    let marks = tempfile::tempdir().unwrap();
    let ended = marks.path().join("holder-ended");
    let holder = marks.path().join("holder.py");
    std::fs::write(
        &holder,
        "import os, sys, time\n\
         if os.fork():\n    sys.exit(0)\n\
         os.setsid()\n\
         time.sleep(3)\n\
         open(sys.argv[1], 'w').close()\n",
    )
    .unwrap();
    // Task 1 leaves a process behind in its worktree, outside its process group, for a few
    // seconds; task 2 keeps the run going meanwhile.
    let script = format!(
        "case $AGENTGRID_TASK_ID in \
         1) python3 {} {} </dev/null >/dev/null 2>&1 ;; \
         *) sleep 7 ;; esac",
        holder.display(),
        ended.display()
    );
    let repo = Repo::with_agents(&[(
        "worker",
        &agent(
            "worker",
            &script,
            "  routing: {default: true}\n  sandbox: {enabled: false}\n",
        ),
    )]);
    repo.ok(&["task", "add", "leaves a process behind"]);
    repo.ok(&["task", "add", "takes its time"]);
    let worktree = repo.path().join(".agentgrid/workspaces/task-1");
    let run = repo
        .cmd(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for(Duration::from_secs(30), "task 1 to end", || {
        repo.task_state(1) == "done"
    });
    assert!(
        ended.exists() || worktree.exists(),
        "the worktree stays while a process works in it"
    );
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        ended.exists(),
        "the process left behind ended during the run: {}",
        stdout(&out)
    );
    assert!(
        !worktree.exists(),
        "the busy worktree is removed once free, in the same run"
    );
    assert!(
        repo.git(&["branch", "--list", "agentgrid/task-1"])
            .contains("task-1")
    );
}
