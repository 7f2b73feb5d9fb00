//! Another process holding the database's write lock for a long time (a long `task import`, a
//! database browser left in a transaction): the engine waits it out, the CLI says so.
//!
//! The agents here share files with the test, so they opt out of the sandbox explicitly
//! (`filesystem: none`); the sandbox itself is tested by `escape.rs`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

/// How long the test holds the lock: three times the store's busy timeout, so the engine's
/// writes give up inside SQLite several times before the lock goes.
const HELD: Duration = Duration::from_secs(30);

/// Takes the write lock on `db` from another process, as `BEGIN IMMEDIATE` in python's sqlite3
/// does, and holds it for `held`. Returns once the lock is taken.
fn hold_write_lock(db: &std::path::Path, held: Duration) -> Reaped {
    let script = "import sqlite3, sys, time\n\
                  c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n\
                  c.execute('BEGIN IMMEDIATE')\n\
                  print('locked', flush=True)\n\
                  time.sleep(float(sys.argv[2]))\n\
                  c.execute('ROLLBACK')\n";
    let mut holder = command("python3")
        .args(["-c", script])
        .arg(db)
        .arg(held.as_secs_f64().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "locked",
        "python3 could not take the write lock"
    );
    Reaped(holder)
}

/// A child process that is killed if the test fails before it ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn events_of(repo: &Repo, task: u64, kind: &str) -> Vec<serde_json::Value> {
    let show = repo.json(&["task", "show", &task.to_string(), "--json"]);
    show["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .cloned()
        .collect()
}

#[test]
fn the_engine_waits_out_a_write_lock_held_by_another_process_and_loses_nothing() {
    let files = tempfile::tempdir().unwrap();
    let started = files.path().join("started");
    let log = files.path().join("calls.log");
    // The talker comments before the lock is taken (then says so), and four times more while
    // it is held and after: each call must succeed, however late its answer.
    let talker = "agentgrid ctl comment 'note 0' >> \"$LOG\" 2>&1 || exit 3; touch \"$STARTED\"; \
                  for i in 1 2 3 4; do agentgrid ctl comment \"note $i\" >> \"$LOG\" 2>&1 || exit 3; \
                  echo \"call $i ok\" >> \"$LOG\"; sleep 1; done";
    // The quiet one ends while the lock is held: its end cannot be written until it goes.
    let quiet = "touch \"$STARTED.quiet\"; sleep 4";
    let env = format!(
        "    env: {{STARTED: \"{}\", LOG: \"{}\"}}\n    command:",
        started.display(),
        log.display()
    );
    let spec = |label: &str| {
        format!(
            "  routing: {{labels: [{label}]}}\n  sandbox: {{filesystem: none, network: host}}\n"
        )
    };
    let repo = Repo::with_agents(&[
        (
            "talker",
            &agent("talker", talker, &spec("talk")).replace("    command:", &env),
        ),
        (
            "quiet",
            &agent("quiet", quiet, &spec("quiet")).replace("    command:", &env),
        ),
    ]);
    repo.ok(&["task", "add", "Talk through a lock", "--label", "talk"]);
    repo.ok(&["task", "add", "End during a lock", "--label", "quiet"]);

    let mut engine = Reaped(
        repo.cmd(&["run"])
            .env("AGENTGRID_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(30), "both agents to start", || {
        started.exists() && files.path().join("started.quiet").exists()
    });
    let locked_at = Instant::now();
    let mut holder = hold_write_lock(&repo.path().join(".agentgrid/agentgrid.db"), HELD);

    // A CLI write gives up after its busy timeout, with a message that says why and an exit
    // code that is not the one for a wrong request.
    let add = repo.run(&["task", "add", "Added while locked"]);
    assert!(
        locked_at.elapsed() < HELD,
        "the CLI should have given up before the lock went"
    );
    assert!(
        !add.status.success() && add.status.code() != Some(2),
        "task add while locked exited {:?}",
        add.status.code()
    );
    assert!(
        stderr(&add).contains("database is locked by another process"),
        "{}",
        stderr(&add)
    );
    // The engine is still there, waiting.
    assert!(
        engine.0.try_wait().unwrap().is_none(),
        "the engine stopped while the database was locked"
    );

    assert!(holder.0.wait().unwrap().success());
    let status = wait_with_limit(&mut engine.0, Duration::from_secs(60));
    let mut engine_err = String::new();
    std::io::Read::read_to_string(engine.0.stderr.as_mut().unwrap(), &mut engine_err).unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "agentgrid run failed:\n{engine_err}"
    );
    assert!(
        engine_err.contains("the database is locked by another process; waiting"),
        "the engine should say why it waits:\n{engine_err}"
    );
    assert_eq!(
        engine_err
            .matches("locked by another process; waiting")
            .count(),
        engine_err.matches("writable again").count(),
        "one warning per stall, each followed by its end:\n{engine_err}"
    );

    let calls = std::fs::read_to_string(&log).unwrap();
    for i in 1..=4 {
        assert!(calls.contains(&format!("call {i} ok")), "{calls}");
    }
    let tasks = repo.tasks();
    assert_eq!(
        tasks.len(),
        2,
        "the task added while locked was not written"
    );
    assert!(tasks.iter().all(|t| t["state"] == "done"), "{tasks:?}");
    let texts: Vec<String> = events_of(&repo, 1, "task_commented")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .filter(|t| t.starts_with("note "))
        .collect();
    assert_eq!(texts, ["note 0", "note 1", "note 2", "note 3", "note 4"]);
    // Each execution ran once and its end is recorded: none was taken for lost or retried.
    for task in [1, 2] {
        let show = repo.json(&["task", "show", &task.to_string(), "--json"]);
        let executions = show["executions"].as_array().unwrap();
        assert_eq!(executions.len(), 1, "{show}");
        assert_eq!(executions[0]["state"], "succeeded", "{show}");
        assert!(executions[0]["ended_at"].is_number(), "{show}");
    }
}

/// Waits for `child` to exit, killing it and failing the test after `limit`.
fn wait_with_limit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("agentgrid run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
