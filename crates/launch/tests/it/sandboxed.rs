//! Children started inside a sandbox keep every promise of the launch API: output to the log
//! and the channel, standard input, exit status, timeouts, and group signals that reach
//! everything the child started, even processes that left its group.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use launch::sandbox::{NetworkMode, SandboxSpec};
use launch::{Error, LaunchSpec, OutputSpec, Signal, Stream, run, spawn, terminate_group};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(20);

fn sandbox(workspace: &Path) -> SandboxSpec {
    let mut spec = SandboxSpec::new(workspace.canonicalize().unwrap());
    spec.helper = Some(env!("CARGO_BIN_EXE_launch-sandbox-helper").into());
    spec
}

fn sandboxed_sh(script: &str, workspace: &Path) -> LaunchSpec {
    LaunchSpec::new("sh", workspace)
        .args(["-c", script])
        .with_sandbox(sandbox(workspace))
}

/// `sleep <marker>` processes anywhere on the machine (not the shells that start them).
fn processes_with(marker: &str) -> Vec<i32> {
    let wanted = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).ends_with(&wanted))
                .unwrap_or(false)
        })
        .collect()
}

/// A marker unique to this test run, so that leftovers of another run never count.
fn marker(n: u32) -> String {
    format!("1000.{}{n}", std::process::id())
}

/// Kills a sandbox's group when a test fails half-way, so no sandbox outlives its test. Once
/// the sandbox was waited for, the group id may belong to someone else: disarm it then.
struct KillOnDrop(i32);

impl KillOnDrop {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = launch::kill_group(self.0, Signal::SIGKILL);
    }
}

/// Waits until `n` such processes run: `echo ready` can come before a background `sleep` has
/// even executed.
async fn wait_until_running(marker: &str, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if processes_with(marker).len() == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn wait_until_gone(marker: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if processes_with(marker).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_sandboxed_child_logs_its_output_and_exits_with_its_own_status() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("out.log");
    let (tx, mut rx) = mpsc::channel(16);
    let spec = sandboxed_sh(
        "echo to-stdout; echo to-stderr >&2; cat; exit 3",
        dir.path(),
    )
    .with_stdin(b"from-stdin\n".to_vec());
    let process = spawn(
        spec,
        OutputSpec {
            log_file: Some(log.clone()),
            line_tx: Some(tx),
            ..OutputSpec::default()
        },
    )
    .unwrap();
    let exit = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, Some(3), "{exit:?}");
    let mut lines = Vec::new();
    while let Ok(line) = rx.try_recv() {
        lines.push((line.stream, line.text));
    }
    assert!(
        lines.contains(&(Stream::Stdout, "to-stdout".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Stream::Stderr, "to-stderr".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Stream::Stdout, "from-stdin".into())),
        "{lines:?}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("to-stdout") && logged.contains("from-stdin"),
        "{logged}"
    );
    assert!(exit.tail.contains("to-stderr"), "{exit:?}");
}

#[tokio::test]
async fn terminating_the_group_reaches_the_program_and_what_escaped_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let marker = &marker(1);
    let script = format!(
        "trap 'echo got-term; exit 7' TERM; setsid sleep {marker} & echo ready; \
         while :; do sleep 0.05; done"
    );
    let (tx, mut rx) = mpsc::channel(16);
    let process = spawn(
        sandboxed_sh(&script, dir.path()),
        OutputSpec {
            line_tx: Some(tx),
            ..OutputSpec::default()
        },
    )
    .unwrap();
    let guard = KillOnDrop(process.pgid());
    let ready = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.text, "ready");
    assert!(
        wait_until_running(marker, 1).await,
        "the escaped sleep runs"
    );
    assert!(terminate_group(process.pgid(), Duration::from_secs(5)).await);
    let exit = process.wait().await.unwrap();
    guard.disarm();
    assert_eq!(
        exit.code,
        Some(7),
        "the program got SIGTERM and ended itself: {exit:?}"
    );
    assert!(exit.tail.contains("got-term"));
    assert!(
        wait_until_gone(marker).await,
        "a process that left the group died with the sandbox"
    );
}

#[tokio::test]
async fn killing_the_group_kills_the_whole_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let marker = &marker(2);
    let script = format!("setsid sleep {marker} & sleep {marker} & echo ready; wait");
    let (tx, mut rx) = mpsc::channel(16);
    let process = spawn(
        sandboxed_sh(&script, dir.path()),
        OutputSpec {
            line_tx: Some(tx),
            ..OutputSpec::default()
        },
    )
    .unwrap();
    let guard = KillOnDrop(process.pgid());
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(wait_until_running(marker, 2).await);
    process.kill_group(Signal::SIGKILL).unwrap();
    let exit = process.wait().await.unwrap();
    guard.disarm();
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert!(wait_until_gone(marker).await);
}

#[tokio::test]
async fn a_run_that_times_out_takes_its_whole_sandbox_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let marker = &marker(3);
    let started = Instant::now();
    let out = run(
        sandboxed_sh(
            &format!("setsid sleep {marker} & sleep {marker}"),
            dir.path(),
        ),
        Duration::from_millis(500),
        4096,
    )
    .await
    .unwrap();
    assert!(out.timed_out, "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(wait_until_gone(marker).await);
}

#[tokio::test]
async fn the_sandbox_applies_through_launch() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let script = format!(
        "echo ok > inside.txt; echo no > {}/outside.txt; \
         ls /proc | grep -c '^[0-9]'",
        outside.path().display()
    );
    let out = run(sandboxed_sh(&script, dir.path()), DEADLINE, 4096)
        .await
        .unwrap();
    assert!(dir.path().join("inside.txt").exists(), "{out:?}");
    assert!(!outside.path().join("outside.txt").exists(), "{out:?}");
    // Outside the workspace the host is read-only, or hidden when it lies under /tmp (as the
    // target directory does when the repository was cloned there).
    assert!(
        out.stderr.contains("Read-only file system")
            || out.stderr.contains("Directory nonexistent"),
        "{out:?}"
    );
    let processes: u32 = out.stdout.lines().last().unwrap().trim().parse().unwrap();
    assert!(processes <= 5, "{out:?}");
}

#[tokio::test]
async fn an_incoherent_sandbox_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sandbox(dir.path());
    spec.network = NetworkMode::Gateway;
    let err = run(
        LaunchSpec::new("true", dir.path()).with_sandbox(spec),
        DEADLINE,
        4096,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Sandbox { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("`true`") && text.contains("gateway relay"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_helper_binary_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sandbox(dir.path());
    spec.helper = Some(PathBuf::from("/nonexistent/agentgrid"));
    let err = run(
        LaunchSpec::new("true", dir.path()).with_sandbox(spec),
        DEADLINE,
        4096,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
}

#[tokio::test]
async fn with_no_isolation_asked_for_the_limits_apply_without_the_helper() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = SandboxSpec::new(dir.path().canonicalize().unwrap());
    spec.filesystem = launch::sandbox::FilesystemMode::None;
    spec.network = NetworkMode::Host;
    spec.limits.open_files = Some(77);
    // A helper that does not exist proves it is not used.
    spec.helper = Some("/nonexistent/agentgrid".into());
    let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let launch = LaunchSpec::new("sh", dir.path())
        .args(["-c", "ulimit -n; readlink /proc/self/ns/pid"])
        .with_sandbox(spec);
    let out = run(launch, DEADLINE, 4096).await.unwrap();
    assert!(out.success(), "{}", out.combined());
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("77"), "the open-files limit was set");
    assert_eq!(
        lines.next(),
        Some(ours.to_str().unwrap()),
        "no PID namespace: no helper"
    );
}
