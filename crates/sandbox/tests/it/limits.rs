//! Resource limits, and what the sandbox says when one ends the program.

use std::fs;
use std::time::{Duration, Instant};

use domain::ByteSize;
use sandbox::Mechanism;

use crate::support::*;

#[test]
fn a_file_beyond_the_size_limit_is_cut_off() {
    let ws = scratch();
    let mut spec = spec(ws.path());
    spec.limits.file_size = Some(ByteSize(1 << 20));
    let run = run(&spec, "exec dd if=/dev/zero of=big bs=64k count=100", &[]);
    assert_eq!(run.signal, Some(libc::SIGXFSZ), "{run:#?}");
    assert!(run.stderr.contains("file-size limit of 1MiB"), "{run:#?}");
    assert_eq!(fs::metadata(ws.path().join("big")).unwrap().len(), 1 << 20);
}

#[test]
fn cpu_time_runs_out() {
    let ws = scratch();
    let mut spec = spec(ws.path());
    spec.limits.cpu_time = Some(domain::Duration::from_secs(1));
    let run = run(&spec, "while :; do :; done", &[]);
    assert_eq!(run.signal, Some(libc::SIGXCPU), "{run:#?}");
    assert!(run.stderr.contains("CPU-time limit of 1s"), "{run:#?}");
}

#[test]
fn wall_time_kills_everything_in_the_sandbox() {
    let ws = scratch();
    let mut spec = spec(ws.path());
    spec.limits.wall_time = Some(domain::Duration::from_millis(500));
    let started = Instant::now();
    let run = run(&spec, "sleep 30 & sleep 30", &[]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(run.signal, Some(libc::SIGKILL), "{run:#?}");
    assert!(
        run.stderr.contains("wall-time limit of 500ms was reached"),
        "{run:#?}"
    );
}

#[test]
fn the_process_limit_stops_a_fork_bomb() {
    let ws = scratch();
    let mut spec = spec(ws.path());
    spec.limits.processes = Some(16);
    // A bounded bomb: it tries far more processes than allowed and counts what it got. The
    // children it did start are killed with the sandbox when it exits.
    let script = "perl -e '$ok = 0; $failed = 0; for (1..60) { $p = fork(); \
                  if (!defined $p) { $failed++ } elsif ($p == 0) { sleep 30; exit 0 } else { $ok++ } } \
                  print \"started=$ok failed=$failed\\n\"'";
    let run = run(&spec, script, &[]);
    let numbers: Vec<u32> = run
        .stdout
        .trim()
        .split(' ')
        .filter_map(|kv| kv.split_once('=')?.1.parse().ok())
        .collect();
    let [started, failed] = numbers[..] else {
        panic!("{run:#?}");
    };
    assert!(
        started <= 16 + 8,
        "at most the limit (and the sandbox's own tasks): {run:#?}"
    );
    assert!(failed >= 60 - 24, "{run:#?}");
    // The agent never runs as root of its namespace with the host's root behind it (under a
    // root engine it gets an unprivileged identity), so RLIMIT_NPROC refuses the forks before
    // the pids cgroup, whose limit leaves room for the sandbox's own processes.
}

#[test]
fn a_memory_hog_does_not_get_its_memory() {
    let ws = scratch();
    let mut spec = spec(ws.path());
    spec.limits.memory = Some(ByteSize(64 << 20));
    let run = run(
        &spec,
        "perl -e '$x = \"a\" x (300 * 1024 * 1024); print \"ALLOCATED\\n\"'",
        &[],
    );
    assert!(!run.ok() && !run.stdout.contains("ALLOCATED"), "{run:#?}");
}

#[test]
fn cgroups_hold_the_sandbox_where_the_host_offers_them_and_are_removed_after() {
    let available = sandbox::probe().available(Mechanism::MemoryCgroup);
    let ws = scratch();
    let mut spec = spec(ws.path());
    spec.limits.memory = Some(ByteSize(256 << 20));
    let run = run(&spec, "grep memory /proc/self/cgroup", &[]);
    let line = run.stdout.trim();
    // Without a writable memory cgroup the limit is the rlimit alone (see the memory hog).
    assert_eq!(line.contains("agentgrid-sandbox-"), available, "{run:#?}");
    if available {
        let name = line.rsplit('/').next().unwrap();
        let left = walk(std::path::Path::new("/sys/fs/cgroup"))
            .into_iter()
            .any(|p| p.ends_with(name));
        assert!(!left, "the cgroup {name} was removed");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

#[test]
fn open_files_are_limited() {
    let ws = scratch();
    let mut spec = spec(ws.path());
    spec.limits.open_files = Some(40);
    let run = run(&spec, "ulimit -n", &[]);
    assert_eq!(run.stdout.trim(), "40", "{run:#?}");
}
