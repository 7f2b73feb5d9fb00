//! Bounded everything: agents that try to exhaust the engine's resources through what they may
//! legitimately touch (the control socket, their output), through the real binary. Each one
//! must leave the engine working for every other task, its own limits still enforced.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

const CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  shutdown_grace: 2s\n";

/// Sandboxed, with room for many descriptors: what a hostile agent is given by a generous
/// manifest.
const SANDBOX: &str = "  sandbox:\n    filesystem: workspace-write\n    network: none\n    limits: {memory: 512MiB, processes: 64, open_files: 8192, file_size: 10MiB, cpu_time: 5m}\n";

/// An agent running `script`, routed by `label`, with `limits`.
fn bounded(name: &str, label: &str, script: &str, limits: &str) -> String {
    agent(
        name,
        script,
        &format!("  routing: {{labels: [{label}]}}\n  limits: {{{limits}}}\n{SANDBOX}"),
    )
}

/// A project whose main branch holds `files` (scripts the agents run), with `agents`.
fn project(agents: &[(&str, &str)], files: &[(&str, &str)]) -> Repo {
    let repo = Repo::with_agents(agents);
    for (name, text) in files {
        std::fs::write(repo.path().join(name), text).unwrap();
    }
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), CONFIG).unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "scripts"]);
    repo
}

/// Processes anywhere on the machine whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read(p.join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

fn workspace(repo: &Repo, task: u64) -> PathBuf {
    repo.path()
        .join(format!(".agentgrid/workspaces/task-{task}"))
}

fn execution(repo: &Repo, task: u64) -> serde_json::Value {
    repo.json(&["task", "show", &task.to_string(), "--json"])["executions"][0].clone()
}

/// An engine process, killed if the test ends before it stops it.
struct Engine(std::process::Child);

impl Drop for Engine {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Opens as many connections to the control socket as it can, up to the number given, holds
/// them, says how many it got, and then waits to be killed.
const FLOOD: &str = r#"
import os, socket, sys, time
path = os.environ["AGENTGRID_CONTROL_SOCKET"]
held = []
failures = 0
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(0.2)
    try:
        s.connect(path)
    except OSError:
        s.close()
        failures += 1
        # The engine stopped accepting: its backlog is full.
        if failures == 10:
            break
        continue
    held.append(s)
with open("flooded.tmp", "w") as f:
    f.write(str(len(held)))
os.rename("flooded.tmp", "flooded")
while True:
    time.sleep(60)
"#;

#[test]
fn a_connection_flood_starves_no_other_task_and_its_agent_still_dies() {
    let marker = format!("flood-{}-{}", std::process::id(), line!());
    let flooder = bounded(
        "flooder",
        "flood",
        &format!("exec python3 flood.py 6000 {marker}"),
        "max_attempts: 1, timeout: 10s",
    );
    let worker = bounded(
        "worker",
        "work",
        "echo done > out.txt && agentgrid ctl comment 'still reachable'",
        "max_attempts: 1, timeout: 60s",
    );
    let repo = project(
        &[("flooder", &flooder), ("worker", &worker)],
        &[("flood.py", FLOOD)],
    );
    let errors = tempfile::NamedTempFile::new().unwrap();
    let mut command = repo.cmd(&["run", "--forever"]);
    command
        .stdout(Stdio::null())
        .stderr(errors.reopen().unwrap());
    // Fewer descriptors than the flood opens, so that an engine that accepts every connection
    // runs out of them; the hard limit stays, so that the agent may raise its own.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= 8192,
        "the flood needs a hard descriptor limit of 8192, not {hard}"
    );
    // SAFETY: only setrlimit runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 4096, hard)
                .map_err(std::io::Error::from)
        });
    }
    let mut engine = Engine(command.spawn().unwrap());
    let engine = &mut engine.0;

    repo.ok(&[
        "task",
        "add",
        "Flood the control socket",
        "--label",
        "flood",
    ]);
    wait_for(Duration::from_secs(30), "the flood to be in place", || {
        workspace(&repo, 1).join("flooded").exists()
    });
    repo.ok(&["task", "add", "Ordinary work", "--label", "work"]);
    wait_for(
        Duration::from_secs(30),
        "the ordinary task to end while the flood holds",
        || matches!(repo.task_state(2).as_str(), "done" | "failed"),
    );
    let worker_exec = execution(&repo, 2);
    assert_eq!(repo.task_state(2), "done", "{worker_exec}");
    let show = repo.json(&["task", "show", "2", "--json"]);
    assert!(
        show["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "task_commented"),
        "the ordinary agent's control call went through: {show}"
    );
    // The flooder's timeout still ends it, and everything it started.
    wait_for(Duration::from_secs(60), "the flooder to time out", || {
        repo.task_state(1) == "failed"
    });
    assert_eq!(execution(&repo, 1)["state"], "timed_out");
    wait_for(Duration::from_secs(10), "the flooder to be gone", || {
        processes_with(&marker).is_empty()
    });

    // A second flood, still held when the engine is told to stop.
    let marker = format!("flood-{}-{}", std::process::id(), line!());
    let flooder = bounded(
        "flooder",
        "flood",
        &format!("exec python3 flood.py 6000 {marker}"),
        "max_attempts: 1, timeout: 10m",
    );
    std::fs::write(repo.path().join(".agentgrid/agents/flooder.yaml"), flooder).unwrap();
    repo.ok(&["task", "add", "Flood again", "--label", "flood"]);
    wait_for(Duration::from_secs(30), "the second flood", || {
        workspace(&repo, 3).join("flooded").exists()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = Instant::now();
    wait_for(Duration::from_secs(20), "the engine to stop", || {
        engine.try_wait().unwrap().is_some()
    });
    let status = engine.wait().unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(15));
    let errors = std::fs::read_to_string(errors.path()).unwrap();
    // A failed task (the first flooder) makes the exit code 1; a signal or an error would not.
    assert_eq!(
        status.code(),
        Some(1),
        "the engine stopped cleanly: {errors}"
    );
    assert!(errors.contains("stopping:"), "{errors}");
    assert!(!errors.contains("rror"), "{errors}");
    wait_for(
        Duration::from_secs(10),
        "the second flooder to be gone",
        || processes_with(&marker).is_empty(),
    );
}

/// Where the output log of task `task`'s first execution is.
fn log_path(repo: &Repo, task: u64) -> PathBuf {
    let path = execution(repo, task)["log_path"]
        .as_str()
        .expect("the execution has a log")
        .to_string();
    let path = Path::new(&path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        repo.path().join(path)
    }
}

#[test]
fn a_gigabyte_of_output_keeps_only_the_head_and_tail_in_the_log() {
    const GIB: u64 = 1 << 30;
    let script = format!(
        "echo FIRST-LINE; yes 'the agent says this again and again' | head -c {GIB}; echo; echo LAST-LINE"
    );
    let repo = project(
        &[(
            "chatty",
            &bounded("chatty", "talk", &script, "max_attempts: 1, timeout: 5m"),
        )],
        &[],
    );
    repo.ok(&["task", "add", "Talk a lot", "--label", "talk"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    let path = log_path(&repo, 1);
    let size = std::fs::metadata(&path).unwrap().len();
    // The cap (16 MiB) and room for the note.
    assert!(
        size <= (16 << 20) + (64 << 10),
        "the log holds {size} bytes"
    );
    let log = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(text.starts_with("FIRST-LINE\n"), "the head is kept");
    assert!(text.trim_end().ends_with("LAST-LINE"), "the tail is kept");
    let note = text
        .lines()
        .find(|l| l.contains("bytes of output not logged"))
        .expect("a note says what was dropped");
    let dropped: u64 = note
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("the note counts the bytes");
    assert!(
        dropped > GIB - (16 << 20) - (1 << 20) && dropped < GIB,
        "{note}"
    );
}

#[test]
fn output_past_the_log_cap_is_not_activity() {
    // The agent prints without pause, for ever; once its log is full, it counts as silent.
    let repo = project(
        &[(
            "babbler",
            &agent(
                "babbler",
                "exec yes 'still talking'",
                &format!(
                    "  routing: {{labels: [talk]}}\n  limits: {{max_attempts: 1, timeout: 5m, stall_timeout: 2s}}\n{SANDBOX}"
                ),
            ),
        )],
        &[],
    );
    repo.ok(&["task", "add", "Babble", "--label", "talk"]);
    let started = Instant::now();
    repo.run(&["run"]);
    assert!(started.elapsed() < Duration::from_secs(120));
    let exec = execution(&repo, 1);
    assert_eq!(repo.task_state(1), "failed", "{exec}");
    assert!(
        exec.to_string().contains("stall") || exec["state"] == "stalled",
        "ended as stalled: {exec}"
    );
}

/// Sends the calls of a hostile agent on one connection and writes each answer, one per line,
/// to `answers.txt`.
const ABUSE: &str = r#"
import json, os, socket
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["AGENTGRID_CONTROL_SOCKET"])
f = s.makefile("rwb")
token = os.environ["AGENTGRID_TOKEN"]
out = open("answers.txt", "w")
def call(name, **op):
    op["op"] = name
    op["token"] = token
    f.write(json.dumps(op).encode() + b"\n")
    f.flush()
    answer = json.loads(f.readline())
    out.write(json.dumps(answer) + "\n")
call("comment", text="x" * (1 << 20))
call("comment", text="x" * (20 << 10))
call("subtask_create", title="\x1b[31mred\x1b[0m title")
call("subtask_create", title="two\nlines")
call("subtask_create", title="t" * 1000)
call("subtask_create", title="fine", body="b" * (100 << 10))
for i in range(10000):
    call("comment", text="comment %d" % i)
out.close()
"#;

#[test]
fn oversized_forged_and_endless_control_calls_are_refused_and_store_nothing() {
    let repo = project(
        &[(
            "abuser",
            &bounded(
                "abuser",
                "abuse",
                "python3 abuse.py",
                "max_attempts: 1, timeout: 2m",
            ),
        )],
        &[("abuse.py", ABUSE)],
    );
    repo.ok(&[
        "task",
        "add",
        "Abuse the control socket",
        "--label",
        "abuse",
    ]);
    repo.ok(&["run"]);
    let answers: Vec<serde_json::Value> = repo
        .git(&["show", "agentgrid/task-1:answers.txt"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 6 + 10000, "every call was answered");
    let error = |i: usize| {
        assert_eq!(answers[i]["ok"], false, "call {i} refused: {}", answers[i]);
        answers[i]["error"].as_str().unwrap().to_string()
    };
    assert!(error(0).contains("16 KiB"), "{}", error(0));
    assert!(error(1).contains("16 KiB"), "{}", error(1));
    assert!(error(2).contains("control character"), "{}", error(2));
    assert!(error(3).contains("one line"), "{}", error(3));
    assert!(error(4).contains("200 characters"), "{}", error(4));
    assert!(error(5).contains("64 KiB"), "{}", error(5));
    let accepted = answers[6..].iter().filter(|a| a["ok"] == true).count();
    assert!(
        accepted > 0 && accepted <= 500,
        "{accepted} comments accepted"
    );
    let refused = answers[6 + accepted]["error"].as_str().unwrap().to_string();
    assert!(refused.contains("comments per execution"), "{refused}");
    assert!(
        answers[6 + accepted..].iter().all(|a| a["ok"] == false),
        "nothing is accepted past the limit"
    );

    assert_eq!(repo.tasks().len(), 1, "no sub-task was created");
    let show = repo.json(&["task", "show", "1", "--json"]);
    let comments: Vec<&serde_json::Value> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "task_commented")
        .collect();
    assert_eq!(
        comments.len(),
        accepted,
        "the store holds only the accepted"
    );
    assert!(
        comments.iter().all(|c| c.to_string().len() < 1024),
        "no oversized comment was stored"
    );
}

#[test]
fn an_engine_told_to_stop_while_its_agent_floods_its_output_stops_promptly() {
    let repo = project(
        &[(
            "babbler",
            &agent(
                "babbler",
                "echo started > started; exec yes 'still talking'",
                &format!(
                    "  routing: {{labels: [talk]}}\n  limits: {{max_attempts: 1, timeout: 10m}}\n{SANDBOX}"
                ),
            ),
        )],
        &[],
    );
    let errors = tempfile::NamedTempFile::new().unwrap();
    let mut engine = Engine(
        repo.cmd(&["run", "--forever"])
            .stdout(Stdio::null())
            .stderr(errors.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    repo.ok(&["task", "add", "Babble", "--label", "talk"]);
    wait_for(Duration::from_secs(30), "the agent to start", || {
        workspace(&repo, 1).join("started").exists()
    });
    // Up to the log cap, so that the flood is in full swing.
    wait_for(Duration::from_secs(60), "the log to fill", || {
        std::fs::metadata(repo.path().join(".agentgrid/logs/1.log"))
            .is_ok_and(|m| m.len() >= 15 << 20)
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = Instant::now();
    wait_for(Duration::from_secs(20), "the engine to stop", || {
        engine.0.try_wait().unwrap().is_some()
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        stopped.elapsed()
    );
    let errors = std::fs::read_to_string(errors.path()).unwrap();
    assert!(errors.contains("stopping:"), "{errors}");
}

#[test]
fn a_workspace_over_its_quota_is_not_committed_and_says_why() {
    // The agent floods its worktree with files; none of them may enter the object store.
    let repo = Repo::with_agents(&[(
        "flood",
        &agent(
            "flood",
            "mkdir -p junk && for i in $(seq 1 50); do echo $i > junk/$i.txt; done",
            "  routing: {default: true}\n  limits: {max_attempts: 1}\n",
        ),
    )]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  workspace:\n    quota: {files: 20}\n",
    )
    .unwrap();
    repo.ok(&["task", "add", "Make a mess"]);
    let run = repo.run(&["run"]);
    assert_eq!(run.status.code(), Some(1), "{}", stdout(&run));
    assert_eq!(repo.task_state(1), "failed");
    let show = repo.json(&["task", "show", "1", "--json"]);
    let summary = show["executions"][0]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(
        summary.contains("over its quota") && summary.contains("20 files"),
        "{summary}"
    );
    let tree = repo.git(&["ls-tree", "-r", "--name-only", "agentgrid/task-1"]);
    assert!(!tree.contains("junk/"), "{tree}");

    // A quota that makes no sense is a manifest error naming its place.
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  workspace:\n    quota: {files: 0, bytes: lots}\n",
    )
    .unwrap();
    let out = repo.run(&["validate"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("config.yaml:5:") && text.contains("quota.files"),
        "{text}"
    );
    assert!(text.contains("quota.bytes"), "{text}");
}
