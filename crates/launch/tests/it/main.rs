//! Integration tests of the launch crate, with real processes.

mod sandboxed;
mod spawn;

use std::path::Path;
use std::time::Duration;

use launch::{
    Error, LaunchSpec, OutputLine, OutputSpec, Signal, Stream, group_alive, process_alive,
    process_start_time, run, spawn, terminate_group,
};
use tokio::sync::mpsc;

/// The longest any single test waits for a real process.
const DEADLINE: Duration = Duration::from_secs(20);

fn sh(script: &str, cwd: &Path) -> LaunchSpec {
    LaunchSpec::new("sh", cwd).args(["-c", script])
}

async fn next_line(rx: &mut mpsc::Receiver<OutputLine>) -> OutputLine {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("no output in time")
        .expect("channel closed")
}

fn pgrp_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn handles_can_move_between_tasks() {
    fn send<T: Send + Sync>() {}
    send::<launch::Process>();
    send::<LaunchSpec>();
    send::<OutputSpec>();
}

#[tokio::test]
async fn the_environment_is_exactly_the_one_given() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        (
            "AGENTGRID_PROBE".to_string(),
            "a value with spaces".to_string(),
        ),
    ];
    let spec = LaunchSpec::new("env", dir.path()).with_env_exactly(env);
    let out = run(spec, DEADLINE, 64 * 1024).await.unwrap();
    assert!(out.success(), "{out:?}");
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["AGENTGRID_PROBE=a value with spaces", "PATH=/usr/bin:/bin"]
    );
}

#[tokio::test]
async fn the_child_leads_its_own_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let output = OutputSpec {
        line_tx: Some(tx),
        ..OutputSpec::default()
    };
    let process = spawn(sh("echo ready; sleep 100", dir.path()), output).unwrap();
    assert_eq!(next_line(&mut rx).await.text, "ready");
    assert_eq!(pgrp_of(process.pid), process.pid);
    assert_eq!(process.pgid(), process.pid);
    assert_ne!(pgrp_of(process.pid), pgrp_of(std::process::id() as i32));
    let start = process_start_time(process.pid).expect("a running child has a start time");
    assert_eq!(process_start_time(process.pid), Some(start));

    process.kill_group(Signal::SIGKILL).unwrap();
    let pid = process.pid;
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.signal, Some(Signal::SIGKILL as i32));
    assert_eq!(exit.code, None);
    assert_eq!(exit.describe(), "killed by SIGKILL");
    assert!(!process_alive(pid));
    assert!(!group_alive(pid));
}

#[tokio::test]
async fn kill_group_reaches_a_grandchild() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let output = OutputSpec {
        line_tx: Some(tx),
        ..OutputSpec::default()
    };
    let process = spawn(sh("sleep 100 & echo $!; wait", dir.path()), output).unwrap();
    let grandchild: i32 = next_line(&mut rx).await.text.parse().unwrap();
    assert!(process_alive(grandchild));
    assert_eq!(pgrp_of(grandchild), process.pid);

    process.kill_group(Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.signal, Some(Signal::SIGTERM as i32));
    assert!(
        !process_alive(grandchild),
        "the grandchild survived the group kill"
    );
}

#[tokio::test]
async fn a_grandchild_dies_when_the_direct_child_exits() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let output = OutputSpec {
        line_tx: Some(tx),
        ..OutputSpec::default()
    };
    // The grandchild keeps the output pipes open; wait() must still end, because the group dies.
    let process = spawn(sh("sleep 100 & echo $!; exit 3", dir.path()), output).unwrap();
    let grandchild: i32 = next_line(&mut rx).await.text.parse().unwrap();
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, Some(3));
    assert!(!exit.success());
    assert!(exit.wall_ms < 10_000, "{exit:?}");
    assert!(
        !process_alive(grandchild),
        "the grandchild outlived its parent"
    );
    assert_eq!(exit.tail, format!("{grandchild}\n"));
}

#[tokio::test]
async fn lines_reach_the_log_and_the_channel_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    std::fs::write(&log, "earlier run\n").unwrap();
    let (tx, mut rx) = mpsc::channel(1000);
    let output = OutputSpec {
        log_file: Some(log.clone()),
        line_tx: Some(tx),
        ..OutputSpec::default()
    };
    let script =
        "i=1; while [ $i -le 200 ]; do echo line$i; i=$((i+1)); done; echo oops >&2; printf tail";
    let process = spawn(sh(script, dir.path()), output).unwrap();
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    while let Ok(line) = rx.try_recv() {
        match line.stream {
            Stream::Stdout => stdout.push(line.text),
            Stream::Stderr => stderr.push(line.text),
        }
    }
    let mut expected: Vec<String> = (1..=200).map(|i| format!("line{i}")).collect();
    expected.push("tail".into());
    assert_eq!(stdout, expected);
    assert_eq!(stderr, ["oops"]);

    let logged = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<&str> = logged.lines().collect();
    assert_eq!(
        logged[0], "earlier run",
        "the log is appended to, not replaced"
    );
    assert_eq!(logged.len(), 1 + 202);
    let logged_stdout: Vec<&str> = logged[1..]
        .iter()
        .copied()
        .filter(|l| *l != "oops")
        .collect();
    assert_eq!(logged_stdout, expected);
}

#[tokio::test]
async fn a_ten_megabyte_burst_keeps_memory_bounded_and_the_log_complete() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("burst.log");
    // Nobody reads the channel while the child runs: a slow receiver must cost lines, not memory.
    let (tx, mut rx) = mpsc::channel(8);
    let output = OutputSpec {
        log_file: Some(log.clone()),
        line_tx: Some(tx),
        max_line_bytes: 1024,
        tail_bytes: 4096,
        ..OutputSpec::default()
    };
    let line = "x".repeat(99);
    let script = format!("yes {line} | head -n 100000");
    let process = spawn(sh(&script, dir.path()), output).unwrap();
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(exit.tail.len() <= 4096, "tail is {} bytes", exit.tail.len());
    assert!(exit.tail.ends_with(&format!("{line}\n")));
    let mut received = 0;
    while rx.try_recv().is_ok() {
        received += 1;
    }
    assert_eq!(received, 8, "the channel holds only its capacity");
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        10_000_000,
        "the log has every line"
    );
}

#[tokio::test]
async fn past_the_log_cap_only_the_tail_is_kept_and_the_rest_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("capped.log");
    // An earlier iteration already used part of the cap.
    std::fs::write(&log, "earlier\n").unwrap();
    let (tx, mut rx) = mpsc::channel(100_000);
    let output = OutputSpec {
        log_file: Some(log.clone()),
        line_tx: Some(tx),
        max_log_bytes: 300_000,
        log_tail_bytes: 100_000,
        ..OutputSpec::default()
    };
    // Stderr and stdout both, and a last line without a newline.
    let script = "seq 1 200000; echo on-stderr >&2; printf last";
    let process = spawn(sh(script, dir.path()), output).unwrap();
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.len() <= 300_000 + 400, "{} bytes", logged.len());
    assert!(logged.starts_with("earlier\n1\n2\n"), "{logged}");
    assert!(logged.contains("[agentgrid: the log is full (300000 bytes per execution)"));
    // The two pipes are read in no set order (a pipe's unread bytes, at most 64 KiB, can come
    // after the other's line), but each line stays whole.
    let ending: Vec<&str> = logged
        .lines()
        .rev()
        .take_while(|l| !l.starts_with("[agentgrid:"))
        .collect();
    assert!(ending.contains(&"on-stderr"), "{logged}");
    assert!(ending.contains(&"last"), "{logged}");
    assert!(["last", "on-stderr"].contains(&ending[0]), "{logged}");
    assert!(
        ending
            .iter()
            .all(|l| l.parse::<u64>().is_ok() || ["last", "on-stderr"].contains(l))
    );
    assert!(logged.ends_with('\n'));
    assert!(
        exit.tail.ends_with(&logged[logged.len() - 10..]),
        "{}",
        exit.tail
    );
    let note = logged
        .lines()
        .find(|l| l.contains("bytes of output not logged"))
        .expect("a note counts what was dropped");
    let dropped: u64 = note["[agentgrid: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Everything printed is in the log or counted as dropped, but for the notes.
    let printed: u64 = (1..=200_000u64)
        .map(|n| n.to_string().len() as u64 + 1)
        .sum::<u64>()
        + "on-stderr\n".len() as u64
        + "last".len() as u64;
    let body: u64 = logged
        .lines()
        .filter(|l| !l.starts_with("[agentgrid:") && *l != "earlier")
        .map(|l| l.len() as u64 + 1)
        .sum();
    assert_eq!(
        body + dropped,
        printed + 1,
        "the added newline after `last`"
    );
    // Lines past the cap are no sign of life: the channel got only the logged head.
    let mut received = 0;
    while rx.try_recv().is_ok() {
        received += 1;
    }
    assert!(received < 60_000, "{received} lines reached the channel");
}

#[tokio::test]
async fn a_slow_receiver_loses_lines_that_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let output = OutputSpec {
        line_tx: Some(tx),
        ..OutputSpec::default()
    };
    let process = spawn(sh("seq 1 1000; sleep 100", dir.path()), output).unwrap();
    // The output is all written well before this deadline; then the child is only sleeping.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while process.dropped_lines() < 996 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(process.dropped_lines(), 996);
    assert_eq!(next_line(&mut rx).await.text, "1");
    assert!(process.tail().ends_with("999\n1000\n"));
    process.kill_group(Signal::SIGKILL).unwrap();
    tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn long_lines_are_cut_with_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("long.log");
    let (tx, mut rx) = mpsc::channel(16);
    let output = OutputSpec {
        log_file: Some(log.clone()),
        line_tx: Some(tx),
        max_line_bytes: 100,
        tail_bytes: 4096,
        ..OutputSpec::default()
    };
    let script = "head -c 10000 /dev/zero | tr '\\0' a; echo; echo short";
    let process = spawn(sh(script, dir.path()), output).unwrap();
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
    let long = next_line(&mut rx).await;
    assert_eq!(long.cut_bytes, 9900);
    assert_eq!(long.text, format!("{} [… 9900 bytes cut]", "a".repeat(100)));
    assert_eq!(next_line(&mut rx).await.text, "short");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged, format!("{}\nshort\n", long.text));
}

#[tokio::test]
async fn last_output_time_follows_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let output = OutputSpec {
        line_tx: Some(tx),
        ..OutputSpec::default()
    };
    let process = spawn(sh("sleep 0.4; echo late; sleep 100", dir.path()), output).unwrap();
    assert_eq!(process.last_output_at(), process.started_at());
    assert_eq!(next_line(&mut rx).await.text, "late");
    let quiet_start = process.last_output_at() - process.started_at();
    assert!(quiet_start >= Duration::from_millis(350), "{quiet_start:?}");
    process.kill_group(Signal::SIGKILL).unwrap();
    tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn run_kills_the_group_on_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sh("sleep 100 & echo $!; sleep 100", dir.path());
    let out = tokio::time::timeout(DEADLINE, run(spec, Duration::from_millis(300), 1024))
        .await
        .unwrap()
        .unwrap();
    assert!(out.timed_out);
    assert!(!out.success());
    assert_eq!(out.describe(), "timed out and was killed");
    let grandchild: i32 = out.stdout.trim().parse().unwrap();
    assert!(
        !process_alive(grandchild),
        "the grandchild survived the timeout"
    );
    assert!(out.wall_ms >= 300 && out.wall_ms < 10_000, "{out:?}");
}

#[tokio::test]
async fn run_captures_both_streams_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sh("echo hello; seq 1 10000 >&2; exit 4", dir.path());
    let out = run(spec, DEADLINE, 20).await.unwrap();
    assert_eq!(out.code, Some(4));
    assert!(!out.timed_out);
    assert_eq!(out.stdout, "hello\n");
    assert!(!out.stdout_cut);
    assert_eq!(out.stderr, "997\n9998\n9999\n10000\n");
    assert!(out.stderr_cut);
    assert_eq!(out.describe(), "exited with 4");
}

#[tokio::test]
async fn cpu_time_of_a_busy_loop_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let script = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";
    let process = spawn(sh(script, dir.path()), OutputSpec::default()).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(120), process.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
    assert!(exit.cpu_ms > 0, "{exit:?}");
    assert!(exit.wall_ms > 0, "{exit:?}");
    assert_eq!(exit.usage().cpu_ms, exit.cpu_ms);
}

#[tokio::test]
async fn cpu_time_includes_children_that_were_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let busy = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";
    let direct = run(sh(busy, dir.path()), Duration::from_secs(120), 1024)
        .await
        .unwrap();
    assert!(direct.success(), "{direct:?}");
    // The outer shell does nearly nothing itself; the work is done by an inner shell it forks
    // and waits for (the trailing `true` keeps it from simply exec'ing the inner one).
    let nested = format!("sh -c '{busy}'; true");
    let out = run(sh(&nested, dir.path()), Duration::from_secs(120), 1024)
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert!(
        out.cpu_ms * 3 >= direct.cpu_ms,
        "nested {} ms, direct {} ms",
        out.cpu_ms,
        direct.cpu_ms
    );
}

#[tokio::test]
async fn a_missing_program_is_named_with_the_path_searched() {
    let dir = tempfile::tempdir().unwrap();
    let spec = LaunchSpec::new("no-such-program-here", dir.path())
        .with_env_exactly(vec![("PATH".into(), "/usr/bin:/bin".into())]);
    let err = spawn(spec.clone(), OutputSpec::default()).unwrap_err();
    assert!(matches!(err, Error::ProgramNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("`no-such-program-here`") && text.contains("`/usr/bin:/bin`"),
        "{text}"
    );

    let err = run(spec, DEADLINE, 10).await.unwrap_err();
    assert!(matches!(err, Error::ProgramNotFound { .. }), "{err:?}");

    let err = spawn(
        LaunchSpec::new("./missing.sh", dir.path()),
        OutputSpec::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing.sh"), "{err}");
}

#[tokio::test]
async fn a_missing_working_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let err = spawn(LaunchSpec::new("true", &gone), OutputSpec::default()).unwrap_err();
    assert!(matches!(err, Error::CwdMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&gone.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn an_unwritable_log_file_is_reported_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("no-dir").join("x.log");
    let output = OutputSpec {
        log_file: Some(log),
        ..OutputSpec::default()
    };
    let err = spawn(LaunchSpec::new("true", dir.path()), output).unwrap_err();
    assert!(matches!(err, Error::LogFile { .. }), "{err:?}");
}

#[tokio::test]
async fn stdin_bytes_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let spec = LaunchSpec::new("cat", dir.path()).with_stdin("first line\nsecond line");
    let out = run(spec, DEADLINE, 1024).await.unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, "first line\nsecond line");

    // Without stdin bytes the child reads end of file at once.
    let out = run(LaunchSpec::new("cat", dir.path()), DEADLINE, 1024)
        .await
        .unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, "");
}

#[tokio::test]
async fn terminate_group_falls_back_to_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let output = OutputSpec {
        line_tx: Some(tx),
        ..OutputSpec::default()
    };
    // An ignored signal stays ignored across exec, so the sleep ignores SIGTERM as well.
    let process = spawn(
        sh("trap '' TERM; echo ready; sleep 100", dir.path()),
        output,
    )
    .unwrap();
    assert_eq!(next_line(&mut rx).await.text, "ready");
    let pid = process.pid;
    assert!(terminate_group(pid, Duration::from_millis(200)).await);
    assert!(!group_alive(pid));
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.signal, Some(Signal::SIGKILL as i32));
    assert_eq!(process_start_time(pid), None);
}

/// Many groups end together: the stubborn ones cost one grace period between them, not one
/// each, and every group is gone at the end.
#[tokio::test]
async fn terminate_groups_ends_many_groups_in_one_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_millis(1500);
    let mut polite = Vec::new();
    let mut stubborn = Vec::new();
    for _ in 0..8 {
        polite.push(spawn(sh("sleep 100", dir.path()), OutputSpec::default()).unwrap());
    }
    for _ in 0..4 {
        let (tx, mut rx) = mpsc::channel(16);
        let output = OutputSpec {
            line_tx: Some(tx),
            ..OutputSpec::default()
        };
        let process = spawn(
            sh("trap '' TERM; echo ready; sleep 100", dir.path()),
            output,
        )
        .unwrap();
        assert_eq!(next_line(&mut rx).await.text, "ready");
        stubborn.push(process);
    }
    let groups: Vec<i32> = polite.iter().chain(&stubborn).map(|p| p.pgid()).collect();
    let started = std::time::Instant::now();
    let left = launch::terminate_groups(&groups, grace).await;
    let took = started.elapsed();
    assert!(left.is_empty(), "groups left alive: {left:?}");
    assert!(groups.iter().all(|&g| !group_alive(g)));
    // Four stubborn groups one after another would take four grace periods (6 s).
    assert!(
        took < grace * 2 + Duration::from_millis(500),
        "winding down 12 groups took {took:?}"
    );
    for process in polite {
        let exit = tokio::time::timeout(DEADLINE, process.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit.signal, Some(Signal::SIGTERM as i32));
    }
    for process in stubborn {
        let exit = tokio::time::timeout(DEADLINE, process.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit.signal, Some(Signal::SIGKILL as i32));
    }
}

#[tokio::test]
async fn terminate_group_on_a_polite_group_needs_only_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let process = spawn(sh("sleep 100", dir.path()), OutputSpec::default()).unwrap();
    assert!(terminate_group(process.pid, DEADLINE).await);
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    // `sh -c` with a single command may exec it directly, so the signal is seen either way.
    assert_eq!(exit.signal, Some(Signal::SIGTERM as i32));
}

#[tokio::test]
async fn a_silent_child_leaves_no_log_file_and_the_first_line_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("quiet.log");
    let output = || OutputSpec {
        log_file: Some(log.clone()),
        ..OutputSpec::default()
    };
    let exit = spawn(LaunchSpec::new("true", dir.path()), output())
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(exit.success());
    assert!(!log.exists(), "nothing was printed, so no file was made");

    let exit = spawn(sh("echo first; echo second >&2", dir.path()), output())
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(exit.success());
    let logged = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = logged.lines().collect();
    lines.sort();
    assert_eq!(lines, ["first", "second"]);
}

#[test]
fn a_child_started_outside_a_runtime_is_watched_by_a_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let output = OutputSpec {
        line_tx: Some(tx),
        ..OutputSpec::default()
    };
    // No runtime here: the output and the exit are watched by a thread of the crate.
    let process = spawn(sh("echo out; echo err >&2; exit 3", dir.path()), output).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exit = runtime
        .block_on(async { tokio::time::timeout(DEADLINE, process.wait()).await })
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, Some(3));
    let mut lines = Vec::new();
    while let Ok(line) = rx.try_recv() {
        lines.push((line.stream, line.text));
    }
    lines.sort_by_key(|(stream, _)| stream.as_str());
    assert_eq!(
        lines,
        [
            (Stream::Stderr, "err".to_string()),
            (Stream::Stdout, "out".to_string())
        ]
    );
}

/// Waits until `path` holds a pid (written by the child once it runs).
async fn pid_in(path: &Path) -> i32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(start.elapsed() < DEADLINE, "the child never wrote its pid");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_cancel_ends_a_running_command_and_its_group_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The grandchild ignores SIGTERM: only the SIGKILL that follows ends it.
    let script = format!(
        "sh -c 'trap \"\" TERM; sleep 100' & echo $! > {}.tmp; mv {0}.tmp {0}; sleep 100",
        pids.display()
    );
    let token = launch::CancellationToken::new();
    let running = tokio::spawn(launch::cancellable(
        token.clone(),
        run(sh(&script, dir.path()), Duration::from_secs(100), 1024),
    ));
    let grandchild = pid_in(&pids).await;
    let asked = std::time::Instant::now();
    token.cancel();
    let result = tokio::time::timeout(DEADLINE, running)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(Error::Cancelled { ref program }) if program == "sh"),
        "{result:?}"
    );
    assert!(
        asked.elapsed() < launch::CANCEL_GRACE + Duration::from_secs(2),
        "the cancel took {:?}",
        asked.elapsed()
    );
    assert!(
        !process_alive(grandchild),
        "a grandchild that ignores SIGTERM survived the cancel"
    );
}

#[tokio::test]
async fn nothing_starts_in_a_cancelled_scope_but_a_shielded_step_does() {
    let dir = tempfile::tempdir().unwrap();
    let token = launch::CancellationToken::new();
    token.cancel();
    let marker = dir.path().join("ran");
    let touch = sh(&format!("touch {}", marker.display()), dir.path());
    let refused = launch::cancellable(token.clone(), run(touch.clone(), DEADLINE, 1024)).await;
    assert!(
        matches!(refused, Err(Error::Cancelled { .. })),
        "{refused:?}"
    );
    let spawned = launch::cancellable(token.clone(), async {
        spawn(touch.clone(), OutputSpec::default())
    })
    .await;
    assert!(
        matches!(spawned, Err(Error::Cancelled { .. })),
        "{spawned:?}"
    );
    assert!(!marker.exists(), "a child started after the cancel");
    assert!(launch::cancellable(token.clone(), async { launch::is_cancelled() }).await);
    assert!(
        !launch::is_cancelled(),
        "outside any scope nothing is cancelled"
    );

    let shielded = launch::cancellable(token, launch::shielded(run(touch, DEADLINE, 1024)))
        .await
        .unwrap();
    assert!(shielded.success(), "{shielded:?}");
    assert!(marker.exists(), "the shielded step ran");
}

#[tokio::test]
async fn an_uncancelled_scope_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = launch::CancellationToken::new();
    let out = launch::cancellable(token, run(sh("echo fine", dir.path()), DEADLINE, 1024))
        .await
        .unwrap();
    assert!(out.success() && out.stdout == "fine\n", "{out:?}");
}
