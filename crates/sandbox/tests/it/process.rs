//! Processes, signals, privileges and system calls inside the sandbox.

use std::fs;

use sandbox::{FilesystemMode, NetworkMode};

use crate::support::*;

#[test]
fn exit_codes_and_signals_come_through_unchanged() {
    let ws = scratch();
    let spec = spec(ws.path());
    assert_eq!(run(&spec, "exit 3", &[]).code, Some(3));
    let killed = run(&spec, "kill -TERM $$", &[]);
    assert_eq!(killed.signal, Some(libc::SIGTERM), "{killed:#?}");
    let missing = run(&spec, "exec /nonexistent/agent", &[]);
    assert_eq!(missing.code, Some(127), "{missing:#?}");
}

#[test]
fn the_environment_is_exactly_what_was_given() {
    let ws = scratch();
    let spec = spec(ws.path());
    let run = run(&spec, "env | sort", &[("ONLY_THIS", "1")]);
    let names: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split('=').next())
        .collect();
    // sh adds PWD itself.
    assert_eq!(names, ["ONLY_THIS", "PATH", "PWD"], "{run:#?}");
}

#[test]
fn the_host_processes_are_invisible_and_unreachable() {
    let ws = scratch();
    let spec = spec(ws.path());
    let me = std::process::id();
    let script = format!(
        "echo pid=$$; cat /proc/{me}/environ && echo READ-ENVIRON; kill -0 {me} && echo SIGNALLED; \
         ls /proc | grep -c '^[0-9]'"
    );
    let run = run(&spec, &script, &[]);
    assert!(
        run.stdout.contains("pid=2"),
        "the program is PID 2, after init: {run:#?}"
    );
    assert!(!run.stdout.contains("READ-ENVIRON"), "{run:#?}");
    assert!(!run.stdout.contains("SIGNALLED"), "{run:#?}");
    let last: u32 = run.stdout.lines().last().unwrap().trim().parse().unwrap();
    assert!(last <= 5, "{run:#?}");
}

#[test]
fn no_capabilities_no_new_privileges_and_a_seccomp_filter() {
    let ws = scratch();
    let spec = spec(ws.path());
    let run = run(
        &spec,
        "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status",
        &[],
    );
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(run.stdout.contains(line), "{line} in {run:#?}");
    }
}

#[test]
fn dangerous_system_calls_are_refused() {
    let ws = scratch();
    let spec = spec(ws.path());
    // Each attempt prints its name only if the kernel let it through.
    let script = "\
        strace -f true 2>/dev/null && echo PTRACE; \
        perl -e 'exit(syscall(101, 0, 0, 0, 0) == -1 ? 1 : 0)' && echo PTRACE-SYSCALL; \
        unshare -U true 2>/dev/null && echo UNSHARE; \
        unshare -r true 2>/dev/null && echo USERNS; \
        mount -t tmpfs none /tmp 2>/dev/null && echo MOUNT; \
        perl -e 'exit(syscall(425, 8, 0) == -1 ? 1 : 0)' && echo IO-URING; \
        perl -e 'exit(syscall(321, 0, 0, 0) == -1 ? 1 : 0)' && echo BPF; \
        perl -e 'exit(syscall(250, 0, 0, 0, 0, 0) == -1 ? 1 : 0)' && echo KEYCTL; \
        echo done";
    let run = run(&spec, script, &[]);
    assert_eq!(run.stdout.trim(), "done", "{run:#?}");
}

#[test]
fn threads_still_start_with_clone3_refused() {
    let ws = scratch();
    let spec = spec(ws.path());
    // git, like most programs, starts threads; libc falls back from clone3 to clone.
    let run = run(
        &spec,
        "perl -e 'exit(syscall(435, 0, 0) == -1 && $!{ENOSYS} ? 0 : 1)' && echo CLONE3-ENOSYS; \
         git --version",
        &[],
    );
    assert!(run.stdout.contains("CLONE3-ENOSYS"), "{run:#?}");
    assert!(run.stdout.contains("git version"), "{run:#?}");
}

#[test]
fn without_namespaces_the_sandbox_is_seccomp_and_limits_only() {
    let ws = scratch();
    let outside = scratch();
    let mut spec = spec(ws.path());
    spec.filesystem = FilesystemMode::None;
    spec.network = NetworkMode::Host;
    let script = format!(
        "echo x > {}/w; grep -E '^(Seccomp|CapEff):' /proc/self/status; strace true 2>/dev/null && echo PTRACE",
        outside.path().display()
    );
    let run = run(&spec, &script, &[]);
    assert!(fs::read_to_string(outside.path().join("w")).is_ok());
    assert!(run.stdout.contains("Seccomp:\t2"), "{run:#?}");
    assert!(run.stdout.contains("CapEff:\t0000000000000000"), "{run:#?}");
    assert!(!run.stdout.contains("PTRACE"), "{run:#?}");
}
