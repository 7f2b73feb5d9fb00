//! The spawn itself: what a child inherits from us and what it does not, and how a failure
//! before its program runs is reported.

use std::os::unix::fs::PermissionsExt;

use launch::sandbox::{FilesystemMode, NetworkMode, SandboxSpec};
use launch::{Error, OutputSpec, run, spawn};

use crate::{DEADLINE, pgrp_of, sh};

#[tokio::test]
async fn the_exit_code_and_the_killing_signal_are_the_programs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(sh("exit 7", dir.path()), DEADLINE, 1024).await.unwrap();
    assert_eq!((out.code, out.signal), (Some(7), None), "{out:?}");

    let out = run(sh("kill -USR1 $$", dir.path()), DEADLINE, 1024)
        .await
        .unwrap();
    assert_eq!(
        (out.code, out.signal),
        (None, Some(libc::SIGUSR1)),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_file_the_kernel_cannot_execute_is_a_spawn_error_with_its_errno() {
    let dir = tempfile::tempdir().unwrap();
    // Executable bits but no format the kernel knows and no `#!` line: execve fails with
    // ENOEXEC in the child, after the clone, so the error must come back through it.
    let script = dir.path().join("not-a-program");
    std::fs::write(&script, "echo this is no program\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let spec = launch::LaunchSpec::new(script.to_str().unwrap(), dir.path());
    let err = spawn(spec.clone(), OutputSpec::default()).unwrap_err();
    let Error::Spawn { source, .. } = &err else {
        panic!("expected a spawn error, got {err:?}");
    };
    assert_eq!(source.raw_os_error(), Some(libc::ENOEXEC), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("starting `{}` in `", script.display()))
            && text.contains("Exec format error"),
        "{text}"
    );
    // The same through `run`, and nothing is left running or unreaped: a second failure
    // behaves exactly like the first.
    let err = run(spec, DEADLINE, 1024).await.unwrap_err();
    assert!(
        matches!(&err, Error::Spawn { source, .. } if source.raw_os_error() == Some(libc::ENOEXEC)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_limit_the_child_cannot_set_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = SandboxSpec::new(dir.path().canonicalize().unwrap());
    sandbox.filesystem = FilesystemMode::None;
    sandbox.network = NetworkMode::Host;
    // Above the kernel's `nr_open` ceiling, which not even root may pass.
    sandbox.limits.open_files = Some(1 << 40);
    let spec = sh("echo should not run", dir.path()).with_sandbox(sandbox);
    let err = run(spec, DEADLINE, 1024).await.unwrap_err();
    assert!(
        matches!(&err, Error::Spawn { source, .. } if source.raw_os_error() == Some(libc::EPERM)),
        "{err:?}"
    );
}

/// The `SigIgn` and `SigBlk` masks of a child shell, read with built-ins only.
const SIGNAL_MASKS: &str = r#"while read -r key value; do
  case "$key" in SigIgn:|SigBlk:) echo "$key $value";; esac
done < /proc/$$/status"#;

/// A mask of `/proc/<pid>/status` (`SigIgn`, `SigBlk`, ...) as a number.
fn status_mask(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

#[tokio::test]
async fn a_child_starts_with_no_blocked_signal_and_only_inherited_ignores() {
    // This thread, which starts the child (a current-thread runtime), blocks SIGUSR2 and
    // SIGHUP: the child must start with nothing blocked. The test process ignores SIGPIPE (the
    // Rust runtime does), which the child must not; whatever else it ignores was ignored by
    // whoever started it and passes on, as it did with `posix_spawn`. Caught signals need no
    // check here: `execve` resets every handler itself, the spawn resets ours only so that
    // none can run in the child before that.
    // SAFETY: changes only this thread's mask, restored below.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGUSR2);
        libc::sigaddset(&mut block, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
    }
    let ours = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run(sh(SIGNAL_MASKS, dir.path()), DEADLINE, 4096).await;
    // SAFETY: restores the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    let out = out.unwrap();
    assert!(out.success(), "{out:?}");

    let blocked_here = status_mask(&ours, "SigBlk:");
    assert_eq!(blocked_here & bit(libc::SIGUSR2), bit(libc::SIGUSR2));
    let ignored_here = status_mask(&ours, "SigIgn:");
    assert_eq!(ignored_here & bit(libc::SIGPIPE), bit(libc::SIGPIPE));
    assert_eq!(status_mask(&out.stdout, "SigBlk:"), 0, "{out:?}");
    assert_eq!(
        status_mask(&out.stdout, "SigIgn:"),
        ignored_here & !bit(libc::SIGPIPE),
        "{out:?}"
    );
    assert_eq!(
        launch::signals::unlisted_handlers(),
        Vec::<i32>::new(),
        "only listed signals have a handler of ours"
    );
}

/// The descriptors open in a child shell, by number. The glob opens the directory while it
/// expands, so the entry of that descriptor is gone by the time the loop looks at it.
const OPEN_FDS: &str = r#"for f in /proc/$$/fd/*; do [ -e "$f" ] && echo "${f##*/}"; done; true"#;

/// The descriptors a child should have: 0, 1 and 2, and whatever this test process was given
/// without close-on-exec by whoever started it (those pass on through any exec).
fn expected_fds() -> Vec<String> {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &i32| {
            // SAFETY: F_GETFD only reads the flags of a descriptor number (-1 if it is gone).
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            fd > 2 && flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .chain([0, 1, 2])
        .collect();
    fds.sort();
    // The shell's glob sorts as text.
    let mut names: Vec<String> = fds.iter().map(i32::to_string).collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_child_gets_only_its_three_standard_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    // Descriptors of ours that a careless spawn would pass on: an open file, and the other
    // ends of an earlier child's pipes.
    let _file = std::fs::File::open(dir.path()).unwrap();
    let earlier = spawn(sh("sleep 5", dir.path()), OutputSpec::default()).unwrap();

    let out = run(sh(OPEN_FDS, dir.path()), DEADLINE, 4096).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected_fds());

    // With bytes on standard input it is a pipe, and still nothing else is open.
    let spec = sh(&format!("cat >/dev/null; {OPEN_FDS}"), dir.path()).with_stdin("input");
    let out = run(spec, DEADLINE, 4096).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected_fds());

    earlier.kill_group(launch::Signal::SIGKILL).unwrap();
    earlier.wait().await.unwrap();
}

#[tokio::test]
async fn the_child_leads_a_group_of_its_own_as_soon_as_spawn_returns() {
    let dir = tempfile::tempdir().unwrap();
    let process = spawn(sh("sleep 5", dir.path()), OutputSpec::default()).unwrap();
    let pid = process.pid;
    // The spawn returns only once the program runs, so its group is already set.
    assert_eq!(pgrp_of(pid), pid);
    assert_ne!(pgrp_of(pid), pgrp_of(std::process::id() as i32));
    process.kill_group(launch::Signal::SIGKILL).unwrap();
    let exit = process.wait().await.unwrap();
    assert_eq!(exit.signal, Some(libc::SIGKILL));
}
