//! Starting a child with `clone(CLONE_VM | CLONE_VFORK)`: the system calls of the spawn itself.
//!
//! The child borrows this process's memory on a small stack of its own and this thread waits
//! until it has executed its program (or failed to), as with `vfork`. Nothing is copied, so the
//! start costs the same however large the engine is. glibc's `posix_spawn` works the same way,
//! but its child puts all 64 signals back to their defaults one by one, about 120 system calls
//! per start; ours resets only the few in [`crate::signals::HANDLED`].
//!
//! Everything the child needs (the program's path, argument and environment arrays, the
//! descriptors, the limits) is prepared here before the clone, because the child may not
//! allocate or take a lock: it shares the heap with threads that keep running. It only makes
//! system calls, and reports a failure through a word of the shared memory that this thread
//! reads once the child is gone.

use std::cell::RefCell;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::resource::{Resource, setrlimit};

use crate::signals::HANDLED;

/// What to start. All paths and strings are the caller's; they are turned into C strings here.
pub(crate) struct Request<'a> {
    /// The file to execute: a path, never looked up along `PATH` (the caller resolved it).
    pub path: &'a Path,
    /// The argument vector, `argv[0]` first.
    pub argv: Vec<&'a OsStr>,
    /// The complete environment, each entry `KEY=VALUE`.
    pub env: Vec<Vec<u8>>,
    pub cwd: &'a Path,
    /// A pipe to the child's standard input, or `/dev/null`.
    pub stdin_pipe: bool,
    /// Resource limits to set in the child before it executes the program.
    pub rlimits: &'a [(Resource, u64, u64)],
}

/// A started child: its pid, a pidfd where the kernel gave one, and this side of its pipes.
pub(crate) struct Child {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    pub stdin: Option<File>,
    pub stdout: File,
    pub stderr: File,
}

/// Starts the child in a process group of its own, with exactly `request`'s environment, its
/// standard output and error on fresh pipes. Returns once the program runs; a failure of any
/// step before that (`chdir`, a limit, `execve`) is this function's error, with its errno.
pub(crate) fn spawn(request: &Request<'_>) -> io::Result<Child> {
    crate::signals::check_listed();
    let path = c_string(request.path.as_os_str().as_bytes())?;
    let cwd = c_string(request.cwd.as_os_str().as_bytes())?;
    let argv: Vec<CString> = request
        .argv
        .iter()
        .map(|a| c_string(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = request
        .env
        .iter()
        .map(|e| c_string(e))
        .collect::<io::Result<_>>()?;
    let argv_ptrs = null_terminated(&argv);
    let env_ptrs = null_terminated(&env);

    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let (stdin_write, stdin_read) = if request.stdin_pipe {
        let (read, write) = pipe()?;
        (Some(write), Some(read))
    } else {
        (None, None)
    };
    let stdin_source = match &stdin_read {
        Some(fd) => fd.as_raw_fd(),
        None => dev_null()?,
    };

    let shared = Shared {
        path: path.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: env_ptrs.as_ptr(),
        cwd: cwd.as_ptr(),
        fds: [
            stdin_source,
            stdout_write.as_raw_fd(),
            stderr_write.as_raw_fd(),
        ],
        rlimits: request.rlimits,
        failed: AtomicI32::new(0),
    };
    let (pid, pidfd) = STACK.with(|stack| -> io::Result<(i32, Option<OwnedFd>)> {
        let mut stack = stack.borrow_mut();
        let stack = match &mut *stack {
            Some(stack) => stack,
            empty => empty.insert(ChildStack::new()?),
        };
        clone_child(&shared, stack)
    })?;
    // Only this side of each pipe stays open here; the child has its own copies.
    drop((stdout_write, stderr_write, stdin_read));
    let errno = shared.failed.load(Ordering::Acquire);
    if errno != 0 {
        // The child has already exited (it never executed anything); reap it.
        let mut status = 0;
        // SAFETY: waiting for our own child, with a live status word.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(Child {
        pid,
        pidfd,
        stdin: stdin_write.map(File::from),
        stdout: File::from(stdout_read),
        stderr: File::from(stderr_read),
    })
}

/// What the child reads (and the one word it writes), all prepared before the clone.
struct Shared<'a> {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    /// The descriptors that become 0, 1 and 2, each at 3 or above (see [`pipe`]).
    fds: [RawFd; 3],
    rlimits: &'a [(Resource, u64, u64)],
    /// The errno of the step that failed, or 0 while none has.
    failed: AtomicI32,
}

/// Blocks every signal, clones the child onto `stack`, and restores the mask. The child starts
/// with all signals blocked, so no handler of ours can run in it before it has reset them.
fn clone_child(shared: &Shared<'_>, stack: &mut ChildStack) -> io::Result<(i32, Option<OwnedFd>)> {
    // SAFETY: the sets are initialised by sigfillset / pthread_sigmask before they are read.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let mut result = clone_with(shared, stack, libc::CLONE_PIDFD);
    if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
        // Kernels before 5.2 know no CLONE_PIDFD; the watcher then opens a pidfd itself.
        result = clone_with(shared, stack, 0);
    }
    // SAFETY: `old` is the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    result
}

fn clone_with(
    shared: &Shared<'_>,
    stack: &mut ChildStack,
    extra: libc::c_int,
) -> io::Result<(i32, Option<OwnedFd>)> {
    let mut pidfd: libc::c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD | extra;
    // SAFETY: the child runs `child_main` on a stack of its own that nothing else uses while
    // this thread is suspended (CLONE_VFORK), reads `shared` (alive until clone returns, since
    // the child has executed or exited by then) and writes only its atomic word. With
    // CLONE_PIDFD the kernel stores the pidfd in the parent-tid argument.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            shared as *const Shared<'_> as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: with CLONE_PIDFD the kernel returned a new descriptor that nobody else owns.
    let pidfd = (extra & libc::CLONE_PIDFD != 0 && pidfd >= 0)
        .then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    Ok((pid, pidfd))
}

/// The child, between the clone and `execve`. It shares this process's memory, so it makes
/// system calls only: no allocation, no locks, no panics (nothing here can panic).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Shared` of `clone_with`, alive until this child execs or exits.
    let shared = unsafe { &*(arg as *const Shared<'_>) };
    let fail = |errno: libc::c_int| -> ! {
        shared.failed.store(errno.max(1), Ordering::Release);
        // SAFETY: ends this child at once, running nothing of the parent's.
        unsafe { libc::_exit(127) }
    };
    let last_errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    // SAFETY (every call below): plain system calls on values prepared by the parent.
    unsafe {
        // A handler of ours goes back to the default; so does the runtime's ignore of SIGPIPE
        // (as std's spawn does). A signal ignored by whoever started us stays ignored.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for sig in HANDLED {
            let mut current: libc::sigaction = std::mem::zeroed();
            if sig != libc::SIGPIPE
                && libc::sigaction(sig, std::ptr::null(), &mut current) == 0
                && (current.sa_sigaction == libc::SIG_DFL || current.sa_sigaction == libc::SIG_IGN)
            {
                continue;
            }
            if libc::sigaction(sig, &default, std::ptr::null_mut()) != 0 {
                fail(last_errno());
            }
        }
        // A group of its own, so the whole tree can be signalled at once.
        if libc::setpgid(0, 0) != 0 {
            fail(last_errno());
        }
        for (target, fd) in shared.fds.iter().enumerate() {
            // dup2 onto another number clears close-on-exec on the copy; every other
            // descriptor of ours is close-on-exec and disappears at the exec.
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                fail(last_errno());
            }
        }
        if libc::chdir(shared.cwd) != 0 {
            fail(last_errno());
        }
        for (resource, soft, hard) in shared.rlimits {
            if let Err(errno) = setrlimit(*resource, *soft, *hard) {
                fail(errno as libc::c_int);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(shared.path, shared.argv, shared.envp);
        fail(last_errno())
    }
}

/// A child's stack: mapped once per thread that spawns and kept, since mapping and unmapping
/// it at every spawn would cost a TLB flush on every core this process runs on.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

/// Room for the child's few frames, the C library's wrappers and a debug build's larger ones.
const STACK_BYTES: usize = 128 * 1024;
/// An unmapped page below the stack, so an overflow faults instead of writing over the heap.
const GUARD_BYTES: usize = 4096;

thread_local! {
    static STACK: RefCell<Option<ChildStack>> = const { RefCell::new(None) };
}

impl ChildStack {
    fn new() -> io::Result<ChildStack> {
        let len = STACK_BYTES + GUARD_BYTES;
        // SAFETY: an anonymous private mapping; the result is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping just made.
        if unsafe { libc::mprotect(base, GUARD_BYTES, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The highest address, where a downward-growing stack starts (page aligned, so 16 too).
    fn top(&mut self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which is where the stack pointer starts.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, used by no child any more (the spawn waits).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a path, argument or environment entry holds a NUL byte",
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A close-on-exec pipe, (read end, write end), both at descriptor 3 or above: a number below
/// 3 (possible only when this process's own standard streams are closed) could be overwritten
/// by the child's `dup2` of another stream before it is copied itself.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(read)?, above_stdio(write)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: duplicates a descriptor we own to the lowest free number from 3, close-on-exec.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the new descriptor is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// `/dev/null`, opened once for every child whose standard input is empty.
fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let file = File::open("/dev/null")?;
    let fd = above_stdio(OwnedFd::from(file))?;
    Ok(NULL.get_or_init(|| fd).as_raw_fd())
}
