//! The one place where a child process starts, and the thread that reaps it.
//!
//! Both [`crate::spawn`] and [`crate::run`] come through [`start`], so whatever must hold for
//! every child (a clean environment, its own process group, and later the sandbox) is applied
//! here once.

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdout, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use crate::{Error, LaunchSpec, StdinSpec};

/// How the direct child ended, as the reaper saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu_ms: u64,
    pub wall_ms: u64,
}

/// A child that was just started: its pipes and the promise of its exit.
pub(crate) struct Started {
    pub pid: i32,
    pub started: Instant,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
    pub exit: oneshot::Receiver<Result<RawExit, String>>,
    /// Set once the direct child has exited and its group was killed, just before the child is
    /// reaped. After that its pid may be reused, so nothing may signal the group any more.
    pub finished: Arc<AtomicBool>,
}

/// Starts `spec` in its own process group with exactly its environment, and a thread that
/// reaps it with `wait4` (which, unlike tokio's reaper, reports the CPU time it used).
#[allow(clippy::disallowed_methods)] // This is the one function allowed to create a Command.
pub(crate) fn start(spec: LaunchSpec) -> Result<Started, Error> {
    if !spec.cwd.is_dir() {
        return Err(Error::CwdMissing {
            program: spec.program,
            cwd: spec.cwd,
        });
    }
    let program = spec.resolve_program()?;
    let mut command = std::process::Command::new(&program);
    command
        .arg0(&spec.program)
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(match spec.stdin {
            StdinSpec::Null => Stdio::null(),
            StdinSpec::Bytes(_) => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own lets the whole tree be signalled at once, so nothing the child
        // starts can outlive it unnoticed.
        .process_group(0);
    let spawn_error = |source| Error::Spawn {
        program: spec.program.clone(),
        cwd: spec.cwd.clone(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let started = Instant::now();
    let pid = child.id() as i32;
    let stdin = child.stdin.take();
    let pipes = child.stdout.take().zip(child.stderr.take());
    // The Child handle is dropped without waiting: the reaper thread below owns the waiting, and
    // dropping a std Child neither kills nor reaps it.
    drop(child);

    let finished = Arc::new(AtomicBool::new(false));
    let (exit_tx, exit) = oneshot::channel();
    let flag = finished.clone();
    let reaper = thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            // The receiver may be gone if nobody waits; the child is reaped all the same.
            let _ = exit_tx.send(reap(pid, started, &flag));
        });
    if let Err(source) = reaper {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        return Err(Error::Thread {
            what: "reaper",
            pid,
            source,
        });
    }

    let Some((stdout, stderr)) = pipes else {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        return Err(spawn_error(io::Error::other(
            "the output pipes were not created",
        )));
    };
    if let (Some(mut input), StdinSpec::Bytes(bytes)) = (stdin, spec.stdin) {
        // A thread of its own, so that a child that reads slowly (or not at all) cannot block
        // the caller; a child that exits early just makes the write fail, which is fine.
        let writer = thread::Builder::new()
            .name(format!("stdin-{pid}"))
            .spawn(move || {
                let _ = input.write_all(&bytes);
            });
        if let Err(source) = writer {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            return Err(Error::Thread {
                what: "stdin writer",
                pid,
                source,
            });
        }
    }
    Ok(Started {
        pid,
        started,
        stdout,
        stderr,
        exit,
        finished,
    })
}

/// Waits for `pid` to exit, kills the rest of its group, then reaps it with its resource usage.
fn reap(pid: i32, started: Instant, finished: &AtomicBool) -> Result<RawExit, String> {
    let target = Pid::from_raw(pid);
    // Wait without reaping: while the child is an unreaped zombie its pid, and so its group id,
    // cannot be handed to another process, which makes the group kill below safe.
    loop {
        match waitid(Id::Pid(target), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("waitid: {e}")),
        }
    }
    let wall_ms = started.elapsed().as_millis() as u64;
    // Whatever the child left behind in its group dies with it. ESRCH cannot happen while the
    // zombie is a member, and nothing else is worth reporting here.
    let _ = killpg(target, Signal::SIGKILL);
    finished.store(true, Ordering::SeqCst);

    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers refer to live, writable locals of the right types.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(format!("wait4: {err}"));
        }
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
    // wait4 reports the child's own usage plus that of every descendant it reaped.
    let cpu_ms = millis(usage.ru_utime) + millis(usage.ru_stime);
    Ok(RawExit {
        code,
        signal,
        cpu_ms,
        wall_ms,
    })
}

fn millis(tv: libc::timeval) -> u64 {
    (tv.tv_sec.max(0) as u64) * 1000 + (tv.tv_usec.max(0) as u64) / 1000
}
