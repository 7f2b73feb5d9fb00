//! The one place where a child process starts, and the thread that watches it.
//!
//! Both [`crate::spawn`] and [`crate::run`] come through [`start`], so whatever must hold for
//! every child (a clean environment, its own process group, and the sandbox) is applied
//! here once; the system calls of the start itself are [`crate::exec`]'s. [`watch`] then reads both of the child's pipes and reaps it, waiting on the two
//! pipes and on a pidfd of the child at once: as a task of the caller's tokio runtime, or else
//! on one thread, instead of three threads (two blocking readers and a blocking reaper).
//! Starting and ending threads, and waking one another, is a large part of what a short child
//! costs.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyMutGuard};
use tokio::sync::oneshot;

use crate::{Error, LaunchSpec, StdinSpec, Stream, exec};

/// How the direct child ended, as the reaper saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu_ms: u64,
    pub wall_ms: u64,
}

/// A child that was just started, before [`watch`] takes its pipes.
pub(crate) struct Started {
    pub pid: i32,
    pub started: Instant,
    /// The kernel's handle on the child, made by the clone itself where the kernel can.
    pidfd: Option<OwnedFd>,
    stdout: File,
    stderr: File,
    /// Set once the direct child has exited and its group was killed, just before the child is
    /// reaped. After that its pid may be reused, so nothing may signal the group any more.
    pub finished: Arc<AtomicBool>,
}

/// Starts `spec` in its own process group with exactly its environment. Nothing reads its
/// output or reaps it until [`watch`] is called, which the caller does at once.
pub(crate) fn start(spec: LaunchSpec) -> Result<Started, Error> {
    if !spec.cwd.is_dir() {
        return Err(Error::CwdMissing {
            program: spec.program,
            cwd: spec.cwd,
        });
    }
    let program = spec.resolve_program()?;
    // With a sandbox, the helper starts in the program's place and becomes it.
    let helper = crate::sandboxed::helper(&spec, &program)?;
    let helper_path = match &helper {
        Some(h) => Some(helper_path(&spec, &h.helper)?),
        None => None,
    };
    let (path, argv) = match (&helper, &helper_path) {
        (Some(h), Some(path)) => (
            path.as_path(),
            std::iter::once(h.helper.as_os_str())
                .chain(h.args.iter().map(OsStr::new))
                .collect(),
        ),
        _ => (
            program.as_path(),
            std::iter::once(OsStr::new(&spec.program))
                .chain(spec.args.iter().map(OsStr::new))
                .collect(),
        ),
    };
    // Later entries win, and the child sees them sorted by name.
    let env: BTreeMap<&str, &str> = spec
        .env
        .iter()
        .chain(helper.iter().map(|h| &h.env))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // No isolation was asked for, so no helper runs; the limits are set in the child before it
    // executes the program. A profile that wants neither isolation nor limits says
    // `sandbox: {enabled: false}` and has no sandbox spec at all.
    let rlimits = spec
        .sandbox
        .as_ref()
        .filter(|s| !s.uses_namespaces())
        .map(|s| sandbox::rlimit_table(&s.limits))
        .unwrap_or_default();
    let request = exec::Request {
        path,
        argv,
        env: env
            .iter()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect(),
        cwd: &spec.cwd,
        stdin_pipe: matches!(spec.stdin, StdinSpec::Bytes(_)),
        rlimits: &rlimits,
    };
    let spawned = exec::spawn(&request).map_err(|source| Error::Spawn {
        program: spec.program.clone(),
        cwd: spec.cwd.clone(),
        source,
    });
    drop(request);
    let child = spawned?;
    let started = Instant::now();
    let pid = child.pid;
    if let (Some(mut input), StdinSpec::Bytes(bytes)) = (child.stdin, spec.stdin) {
        // A thread of its own, so that a child that reads slowly (or not at all) cannot block
        // the caller; a child that exits early just makes the write fail, which is fine.
        let writer = thread::Builder::new()
            .name(format!("stdin-{pid}"))
            .spawn(move || {
                let _ = input.write_all(&bytes);
            });
        if let Err(source) = writer {
            abandon(pid);
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
        pidfd: child.pidfd,
        stdout: child.stdout,
        stderr: child.stderr,
        finished: Arc::new(AtomicBool::new(false)),
    })
}

/// Where the sandbox helper is: a name without a `/` is looked up along the spec's `PATH`,
/// as for any program; a path is taken as it is (relative ones from the child's directory).
fn helper_path(spec: &LaunchSpec, helper: &Path) -> Result<PathBuf, Error> {
    if helper.as_os_str().as_bytes().contains(&b'/') {
        return Ok(helper.to_path_buf());
    }
    LaunchSpec::new(helper.to_string_lossy(), &spec.cwd)
        .with_env_exactly(spec.env.clone())
        .resolve_program()
}

/// Receives a watched child's output as the watcher reads it.
pub(crate) trait OutputSink: Send + 'static {
    /// Bytes just read from one of the pipes.
    fn data(&mut self, stream: Stream, bytes: &[u8]);
    /// The pipe reached end of file (or failed): nothing more comes from it.
    fn closed(&mut self, stream: Stream);
}

/// What [`watch`] promises.
pub(crate) struct Watch {
    /// How the direct child ended; sent as soon as it was reaped.
    pub exit: oneshot::Receiver<Result<RawExit, String>>,
    /// Resolves once both pipes reached end of file.
    pub drained: oneshot::Receiver<()>,
}

/// Reads the child's pipes into `sink` and reaps the child with `wait4` (which, unlike tokio's
/// reaper, reports the CPU time it used).
///
/// Inside a tokio runtime this is a task of that runtime, woken by the runtime's own epoll when
/// a pipe has data or the child's pidfd says it exited: no thread is started at all. Outside a
/// runtime it is one thread waiting in `poll` on the same three descriptors. Where the kernel
/// offers no pidfd (before Linux 5.3) the reaping gets a thread of its own.
pub(crate) fn watch(child: Started, sink: impl OutputSink) -> Result<Watch, Error> {
    let Started {
        pid,
        started,
        pidfd,
        stdout,
        stderr,
        finished,
    } = child;
    let (exit_tx, exit) = oneshot::channel();
    let (drained_tx, drained) = oneshot::channel();
    let mut pidfd = pidfd.or_else(|| pidfd_open(pid));
    let (mut stdout, mut stderr) = (stdout, stderr);
    if let Some(fd) = pidfd.take() {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => match AsyncWatch::register(&handle, fd, stdout, stderr) {
                Ok(watch) => {
                    let reaped = Reaped {
                        pid,
                        started,
                        finished,
                        exit_tx,
                    };
                    handle.spawn(watch.run(reaped, drained_tx, sink));
                    return Ok(Watch { exit, drained });
                }
                Err((fd, out, err)) => {
                    pidfd = Some(fd);
                    stdout = out;
                    stderr = err;
                }
            },
            Err(_) => pidfd = Some(fd),
        }
    }
    let mut reaper = None;
    if pidfd.is_none() {
        let flag = finished.clone();
        let spawned = thread::Builder::new()
            .name(format!("reap-{pid}"))
            .spawn(move || {
                // The receiver may be gone if nobody waits; the child is reaped all the same.
                let _ = exit_tx.send(reap(pid, started, &flag));
            });
        if let Err(source) = spawned {
            abandon(pid);
            return Err(Error::Thread {
                what: "reaper",
                pid,
                source,
            });
        }
    } else {
        reaper = Some(exit_tx);
    }
    let watcher = Watcher {
        pid,
        started,
        finished,
        pidfd,
        exit_tx: reaper,
        drained_tx: Some(drained_tx),
        stdout: Some(stdout),
        stderr: Some(stderr),
    };
    let spawned = thread::Builder::new()
        .name(format!("watch-{pid}"))
        .spawn(move || watcher.run(sink));
    if let Err(source) = spawned {
        // Without a reader the child could block on a full pipe forever.
        abandon(pid);
        return Err(Error::Thread {
            what: "output watcher",
            pid,
            source,
        });
    }
    Ok(Watch { exit, drained })
}

/// What reaping a child needs, and where its exit goes.
struct Reaped {
    pid: i32,
    started: Instant,
    finished: Arc<AtomicBool>,
    exit_tx: oneshot::Sender<Result<RawExit, String>>,
}

/// The watcher as a task: the child's pidfd and pipes, registered with the runtime.
struct AsyncWatch {
    pidfd: Option<AsyncFd<OwnedFd>>,
    stdout: Option<AsyncFd<File>>,
    stderr: Option<AsyncFd<File>>,
}

type Unregistered = (OwnedFd, File, File);

impl AsyncWatch {
    /// Registers the three descriptors with the runtime's reactor, or hands them back when it
    /// cannot (a runtime built without I/O, say), so that a thread can watch them instead.
    fn register(
        handle: &tokio::runtime::Handle,
        pidfd: OwnedFd,
        stdout: File,
        stderr: File,
    ) -> Result<AsyncWatch, Unregistered> {
        let _entered = handle.enter();
        // SAFETY (all three registrations): each object owns its descriptor, which stays open and
        // the same until the AsyncFd is dropped or unwrapped; `get_mut` is only used to read.
        let pidfd = match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => return Err((e.into_parts().0, stdout, stderr)),
        };
        let stdout = match unsafe { AsyncFd::register_with_interest(stdout, Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => return Err((pidfd.into_inner(), e.into_parts().0, stderr)),
        };
        let stderr = match unsafe { AsyncFd::register_with_interest(stderr, Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => return Err((pidfd.into_inner(), stdout.into_inner(), e.into_parts().0)),
        };
        // Reads must report "nothing yet" instead of blocking a worker of the runtime.
        if set_nonblocking(stdout.as_raw_fd()).is_err()
            || set_nonblocking(stderr.as_raw_fd()).is_err()
        {
            return Err((pidfd.into_inner(), stdout.into_inner(), stderr.into_inner()));
        }
        Ok(AsyncWatch {
            pidfd: Some(pidfd),
            stdout: Some(stdout),
            stderr: Some(stderr),
        })
    }

    async fn run(
        mut self,
        reaped: Reaped,
        drained_tx: oneshot::Sender<()>,
        mut sink: impl OutputSink,
    ) {
        let mut buf = vec![0u8; FIRST_READ_BUFFER];
        let mut reaped = Some(reaped);
        let mut drained_tx = Some(drained_tx);
        while self.pidfd.is_some() || self.stdout.is_some() || self.stderr.is_some() {
            tokio::select! {
                ready = readable(&mut self.stdout) => {
                    let closed = match ready {
                        Ok(mut guard) => read_ready(&mut guard, Stream::Stdout, &mut sink, &mut buf),
                        Err(_) => true,
                    };
                    if closed {
                        self.stdout = None;
                        sink.closed(Stream::Stdout);
                    }
                }
                ready = readable(&mut self.stderr) => {
                    let closed = match ready {
                        Ok(mut guard) => read_ready(&mut guard, Stream::Stderr, &mut sink, &mut buf),
                        Err(_) => true,
                    };
                    if closed {
                        self.stderr = None;
                        sink.closed(Stream::Stderr);
                    }
                }
                // A pidfd becomes readable once its process has exited, and stays so.
                _ = readable(&mut self.pidfd) => {
                    self.pidfd = None;
                    if let Some(r) = reaped.take() {
                        // The receiver may be gone if nobody waits; the child is reaped all the same.
                        let _ = r.exit_tx.send(reap(r.pid, r.started, &r.finished));
                    }
                }
            }
            if self.stdout.is_none()
                && self.stderr.is_none()
                && let Some(tx) = drained_tx.take()
            {
                let _ = tx.send(());
            }
        }
    }
}

/// Waits until `fd` is readable; never, once it is gone.
async fn readable<T: AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> io::Result<AsyncFdReadyMutGuard<'_, T>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// Reads what a ready pipe holds into `sink`; true once it reached end of file or failed. A
/// child that writes without pause gets a few reads per turn, so the other pipe and its exit
/// are still looked at.
/// The size the buffer for a child's pipes starts at in a runtime, and the size it grows to
/// once a read fills it. Most short processes print little or nothing (the first read of a
/// silent one finds the end of the pipe), and zeroing 64 KiB for every child was about a
/// twentieth of the engine's instructions in scenario A of `cargo xtask bench`.
const FIRST_READ_BUFFER: usize = 1024;
const READ_BUFFER: usize = 64 * 1024;

fn read_ready<T: Read + AsRawFd>(
    guard: &mut AsyncFdReadyMutGuard<'_, T>,
    stream: Stream,
    sink: &mut impl OutputSink,
    buf: &mut Vec<u8>,
) -> bool {
    for _ in 0..16 {
        match guard.try_io(|inner| inner.get_mut().read(buf)) {
            Ok(Ok(0)) => return true,
            Ok(Ok(n)) => {
                sink.data(stream, &buf[..n]);
                // A full buffer means more is coming: read it in larger pieces.
                if n == buf.len() && buf.len() < READ_BUFFER {
                    buf.resize(READ_BUFFER, 0);
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return true,
            // Drained for now: the reactor says when more comes.
            Err(_would_block) => return false,
        }
    }
    false
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // One call instead of F_GETFL and F_SETFL: a pipe's only status flag that matters here is
    // O_NONBLOCK, and FIONBIO sets just that one.
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO on a descriptor this process owns, reading one live int.
    if unsafe { libc::ioctl(fd, libc::FIONBIO, &on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The state of the one thread that watches a child outside a runtime.
struct Watcher {
    pid: i32,
    started: Instant,
    finished: Arc<AtomicBool>,
    /// Readable once the child has exited; `None` when a separate reaper thread waits instead.
    pidfd: Option<OwnedFd>,
    exit_tx: Option<oneshot::Sender<Result<RawExit, String>>>,
    drained_tx: Option<oneshot::Sender<()>>,
    stdout: Option<File>,
    stderr: Option<File>,
}

impl Watcher {
    fn run(mut self, mut sink: impl OutputSink) {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
            let mut watch = |fd: RawFd| {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
            };
            // Each fd is at a fixed slot, or -1, which poll ignores.
            watch(self.stdout.as_ref().map_or(-1, AsRawFd::as_raw_fd));
            watch(self.stderr.as_ref().map_or(-1, AsRawFd::as_raw_fd));
            let waiting_for_exit = self.exit_tx.is_some();
            watch(match (&self.pidfd, waiting_for_exit) {
                (Some(fd), true) => fd.as_raw_fd(),
                _ => -1,
            });
            if fds.iter().all(|p| p.fd < 0) {
                return;
            }
            // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structures.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if rc < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // poll cannot fail on valid descriptors; if it does, fall back to blocking on
                // each in turn, which is what separate threads would have done.
                self.finish_blocking(&mut sink, &mut buf);
                return;
            }
            if fds[0].revents != 0 {
                self.read_some(Stream::Stdout, &mut sink, &mut buf);
            }
            if fds[1].revents != 0 {
                self.read_some(Stream::Stderr, &mut sink, &mut buf);
            }
            if fds[2].revents != 0
                && let Some(tx) = self.exit_tx.take()
            {
                let _ = tx.send(reap(self.pid, self.started, &self.finished));
            }
        }
    }

    /// One read from a pipe that poll said is ready: data, or end of file.
    fn read_some(&mut self, stream: Stream, sink: &mut impl OutputSink, buf: &mut [u8]) {
        let result = match stream {
            Stream::Stdout => self.stdout.as_mut().map(|p| p.read(buf)),
            Stream::Stderr => self.stderr.as_mut().map(|p| p.read(buf)),
        };
        match result {
            None => {}
            Some(Ok(0)) => self.close(stream, sink),
            Some(Ok(n)) => sink.data(stream, &buf[..n]),
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Some(Err(_)) => self.close(stream, sink),
        }
    }

    fn close(&mut self, stream: Stream, sink: &mut impl OutputSink) {
        match stream {
            Stream::Stdout => self.stdout = None,
            Stream::Stderr => self.stderr = None,
        }
        sink.closed(stream);
        if self.stdout.is_none()
            && self.stderr.is_none()
            && let Some(tx) = self.drained_tx.take()
        {
            let _ = tx.send(());
        }
    }

    fn finish_blocking(&mut self, sink: &mut impl OutputSink, buf: &mut [u8]) {
        if let Some(tx) = self.exit_tx.take() {
            let _ = tx.send(reap(self.pid, self.started, &self.finished));
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            while match stream {
                Stream::Stdout => self.stdout.is_some(),
                Stream::Stderr => self.stderr.is_some(),
            } {
                self.read_some(stream, sink, buf);
            }
        }
    }
}

/// Kills the group of a child that cannot be watched, and reaps the child so that it does not
/// stay a zombie.
fn abandon(pid: i32) {
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = reap(pid, Instant::now(), &AtomicBool::new(false));
}

/// A pidfd for `pid`, or `None` where the kernel has none (before Linux 5.3).
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just returned by the kernel and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
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
