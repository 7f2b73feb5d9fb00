//! The sandbox helper: what the agentgrid binary does when started as `agentgrid __sandbox`.
//!
//! Three processes take part, each with one job:
//!
//! - The **helper** (started by the launch crate, leader of the execution's process group)
//!   reads the [`Invocation`], plans the view, puts itself into the sandbox's cgroups, creates
//!   the user, PID, IPC and (unless the network is `host`) network namespaces, and forks.
//!   It then waits, reports which limit ended the program, removes the cgroups, and ends the
//!   way the program ended (same exit code, or the same signal).
//! - **init**, PID 1 of the new PID namespace, creates its own mount namespace and builds the
//!   filesystem view there, brings up loopback
//!   and the gateway relay, forks the program, then reaps every process in the namespace,
//!   enforces the wall-time limit and, when the program ends, kills whatever it left behind.
//!   When init dies, the kernel kills every process in the namespace, so nothing escapes.
//! - The **program**'s process applies rlimits, Landlock, dropped capabilities, no_new_privs
//!   and seccomp to itself, closes every inherited descriptor but 0, 1 and 2, and executes the
//!   program with exactly its environment.
//!
//! Without namespaces (filesystem `none` and network `host`), there is no init: the helper forks
//! the program directly and enforces the wall time itself.
//!
//! Signals: the launch crate signals the whole process group, which holds the helper, init and
//! the program (and whatever of its children stayed in the group). The helper ignores the
//! polite signals, so that it outlives the program and reports its end; init, as PID 1 of its
//! namespace, does not receive them at all. A process that left the group is still killed when
//! init exits. SIGKILL of the group kills the helper and init, and with init the namespace.

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigHandler, Signal, kill, killpg, signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use crate::cgroup::{Controller, Counters, SandboxCgroups};
use crate::confine::{self, LandlockPaths};
use crate::identity::Identity;
use crate::spec::{FilesystemMode, HELPER_ARG, Invocation, Limits, NetworkMode, SPEC_VAR};
use crate::view::{self, Plan};
use crate::{probe, sys};

/// The helper's exit code when the sandbox could not be set up; the reason is on stderr.
pub const SETUP_FAILED: i32 = 125;
/// The exit code when the program exists but cannot be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The exit code when the program does not exist inside the sandbox.
pub const NOT_FOUND: i32 = 127;

/// Every line the sandbox itself prints starts with this, on the program's stderr.
const PREFIX: &str = "agentgrid sandbox:";

/// Whether this process was started as the sandbox helper. Call it first thing in `main`,
/// before any thread exists, and hand over to [`helper_main`] if so.
pub fn is_helper_invocation() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == HELPER_ARG)
}

/// Runs the helper. Never returns: the process ends the way the sandboxed program ended.
///
/// Must be called while the process is still single-threaded (user namespaces cannot be
/// created by a multi-threaded process), so before an async runtime or any logging thread.
pub fn helper_main() -> ! {
    match helper() {
        Ok(never) => match never {},
        Err(message) => {
            say(&message);
            std::process::exit(SETUP_FAILED)
        }
    }
}

fn say(message: &str) {
    let _ = writeln!(io::stderr(), "{PREFIX} {message}");
}

/// The program to execute, prepared before any fork.
struct Program {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: PathBuf,
    shown: String,
}

fn c(bytes: Vec<u8>, what: &str) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("the {what} contains a NUL byte"))
}

impl Program {
    fn new(inv: &Invocation, env: &[(OsString, OsString)]) -> Result<Program, String> {
        let path = c(
            inv.program.clone().into_os_string().into_vec(),
            "program path",
        )?;
        let argv = std::iter::once(&inv.arg0)
            .chain(&inv.args)
            .map(|a| c(a.clone().into_bytes(), "argument list"))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.clone().into_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_encoded_bytes());
                c(kv, "environment")
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Program {
            path,
            argv,
            envp,
            cwd: inv.cwd.clone(),
            shown: inv.program.display().to_string(),
        })
    }
}

/// How the program (or the sandbox's init) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Code(i32),
    Signal(i32),
}

impl End {
    fn from_status(status: WaitStatus) -> Option<End> {
        match status {
            WaitStatus::Exited(_, code) => Some(End::Code(code)),
            WaitStatus::Signaled(_, sig, _) => Some(End::Signal(sig as i32)),
            _ => None,
        }
    }

    fn encode(self) -> String {
        match self {
            End::Code(c) => format!("code {c}\n"),
            End::Signal(s) => format!("signal {s}\n"),
        }
    }

    fn decode(text: &str) -> Option<End> {
        let (kind, value) = text.trim().split_once(' ')?;
        let value = value.parse().ok()?;
        match kind {
            "code" => Some(End::Code(value)),
            "signal" => Some(End::Signal(value)),
            _ => None,
        }
    }
}

fn helper() -> Result<Infallible, String> {
    let json = std::env::var(SPEC_VAR).map_err(|_| {
        format!(
            "`{HELPER_ARG}` is agentgrid's internal sandbox helper and is started by agentgrid \
             itself ({SPEC_VAR} is not set)"
        )
    })?;
    let inv: Invocation = serde_json::from_str(&json)
        .map_err(|e| format!("the sandbox invocation cannot be read: {e}"))?;
    let spec = &inv.spec;
    spec.validate().map_err(|e| e.to_string())?;
    let support = match &inv.support {
        Some(support) => support.clone(),
        None => probe::probe(),
    };
    probe::check(spec, &support).map_err(|e| e.to_string())?;
    let engine = inv.engine_pid.map(watch_engine).transpose()?.flatten();

    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| k != SPEC_VAR).collect();
    let home = env
        .iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| PathBuf::from(v));
    let plan = if spec.filesystem == FilesystemMode::None {
        None
    } else {
        // The host's temporary directory is not visible; the private /tmp is.
        for (k, v) in env.iter_mut() {
            if k == "TMPDIR" {
                *v = "/tmp".into();
            }
        }
        let helper = std::env::current_exe().ok();
        Some(Plan::new(&inv, home.as_deref(), helper.as_deref())?)
    };
    let program = Program::new(&inv, &env)?;
    // Under a root engine the program runs as an unprivileged identity, and what the engine
    // named is shown to it through idmapped trees made now, while the helper is still the
    // host's root. Should any tree fail, the program keeps the engine's uid, as elsewhere.
    let mut identity = plan.as_ref().and_then(|_| Identity::prepare());
    let mut trees: Vec<Option<OwnedFd>> = Vec::new();
    if let (Some(id), Some(plan)) = (&identity, &plan) {
        match plan
            .binds
            .iter()
            .map(|b| id.idmapped_tree(&b.path).map(Some))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(made) => trees = made,
            Err(_) => identity = None,
        }
    }
    let filters = confine::seccomp_filters(spec.network)?;

    let mut wanted = Vec::new();
    if let Some(memory) = spec.limits.memory
        && support.available(probe::Mechanism::MemoryCgroup)
    {
        wanted.push((Controller::Memory, memory.bytes()));
    }
    if let Some(n) = spec.limits.processes
        && support.available(probe::Mechanism::PidsCgroup)
    {
        // The helper and init (and init's relay threads) count too.
        wanted.push((Controller::Pids, n + 8));
    }
    let cgroups = if wanted.is_empty() {
        None
    } else {
        Some(SandboxCgroups::create(&wanted)?)
    };

    // The helper outlives the program to report its end; see the module documentation.
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }

    let uses_namespaces = spec.uses_namespaces();
    if uses_namespaces {
        // SAFETY: these calls cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        // The mount namespace is init's alone (see `init`): the view it builds must not become
        // the helper's, which still needs the host's cgroup files at the end.
        let mut flags =
            CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC;
        if spec.network != NetworkMode::Host {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        let mapper = match &identity {
            Some(id) => Some(
                crate::identity::Mapper::start(id.map())
                    .map_err(|e| format!("cannot start the id mapper: {e}"))?,
            ),
            None => None,
        };
        unshare(flags).map_err(|e| {
            format!(
                "cannot create the sandbox's namespaces: {e}{}",
                if e == nix::errno::Errno::EINVAL {
                    " (the helper must run before any other thread starts)"
                } else {
                    ""
                }
            )
        })?;
        match mapper {
            Some(mapper) => mapper.map()?,
            None => write_id_maps(uid, gid)?,
        }
    }

    let (status_r, status_w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot create a pipe: {e}"))?;
    let (alive_r, alive_w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot create a pipe: {e}"))?;
    // SAFETY: the helper is single-threaded, so the child may do anything after the fork.
    match unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Child => {
            drop(status_r);
            drop(alive_w);
            if uses_namespaces {
                let agent = identity.as_ref().map(|_| crate::identity::AGENT_ID);
                init(
                    &inv,
                    plan.as_ref(),
                    (&trees, agent),
                    &program,
                    &filters,
                    status_w,
                    alive_r,
                )
            } else {
                run_program(&inv.spec.limits, None, false, &program, &filters)
            }
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            drop(alive_r);
            let end = if uses_namespaces {
                supervise_init(child, status_r, engine)
            } else {
                if let Some(engine) = engine {
                    end_with_engine(engine, child);
                }
                supervise_program(child, &inv.spec.limits)
            };
            // Kept open until here: init treats its end as the helper's death.
            drop(alive_w);
            let counters = cgroups.as_ref().map(SandboxCgroups::counters);
            explain(end, &inv.spec.limits, counters.unwrap_or_default());
            drop(cgroups);
            finish(end)
        }
    }
}

/// Opens a pidfd of the engine that started the helper, so that the sandbox can end with it.
/// `None` where the kernel has no pidfds (before Linux 5.3); the parent-death signal then does
/// the job, less well (it follows the engine's thread that started the helper, not the engine).
fn watch_engine(engine: u32) -> Result<Option<OwnedFd>, String> {
    let gone = || {
        format!("the engine (pid {engine}) that started this sandbox is gone; nothing is started")
    };
    // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, engine as libc::pid_t, 0) };
    if fd < 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return Err(gone());
        }
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        if nix::unistd::getppid().as_raw() as u32 != engine {
            return Err(gone());
        }
        return Ok(None);
    }
    // SAFETY: the descriptor was just returned to us and is owned by nobody else.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    // The pidfd names whichever process has that pid now; it is the engine only if the engine
    // is still our parent, which no other process can become.
    if nix::unistd::getppid().as_raw() as u32 != engine {
        return Err(gone());
    }
    Ok(Some(fd))
}

/// Kills the sandbox: `child` first (init, whose end takes every process of the PID namespace
/// with it, or the program), then the helper's process group, which holds the helper itself.
fn kill_sandbox(child: Pid) {
    let _ = kill(child, Signal::SIGKILL);
    let _ = killpg(Pid::from_raw(0), Signal::SIGKILL);
}

/// Without namespaces: a thread that kills the sandbox when the engine ends, whatever way it
/// ends (SIGKILL included). With namespaces the helper cannot start threads (it has unshared
/// its PID namespace), so [`supervise_init`] watches the engine itself.
fn end_with_engine(engine: OwnedFd, child: Pid) {
    let _ = thread::Builder::new()
        .name("engine-watch".into())
        .spawn(move || {
            let mut fds = [libc::pollfd {
                fd: engine.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            loop {
                // SAFETY: one live pollfd, waiting without a timeout.
                let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) };
                if rc > 0 {
                    break;
                }
                if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    // Nothing to watch with: end rather than outlive the engine unseen.
                    break;
                }
            }
            // Nothing is said: whoever read the sandbox's output went with the engine.
            kill_sandbox(child);
        });
}

/// Maps our own uid and gid (as they were before the new user namespace, where they read as
/// the overflow ids until mapped) into the new user namespace, and nothing else.
fn write_id_maps(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), String> {
    let write = |file: &str, text: String| {
        fs::write(file, &text).map_err(|e| format!("cannot write {file}: {e}"))
    };
    // Unprivileged processes may map their gid only after giving up setgroups.
    match fs::write("/proc/self/setgroups", "deny") {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot write /proc/self/setgroups: {e}")),
    }
    write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))
}

fn wait_for(pid: Pid) -> Option<End> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(status) => {
                if let Some(end) = End::from_status(status) {
                    return Some(end);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Waits for init and reads the program's end from it; kills the sandbox if the engine ends
/// first.
fn supervise_init(init: Pid, status: OwnedFd, engine: Option<OwnedFd>) -> End {
    let mut report = Vec::new();
    let mut status = fs::File::from(status);
    loop {
        let mut fds = vec![libc::pollfd {
            fd: status.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(engine) = &engine {
            fds.push(libc::pollfd {
                fd: engine.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: live pollfds, as many as we pass, waiting without a timeout.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        if fds.get(1).is_some_and(|f| f.revents != 0) {
            kill_sandbox(init);
        }
        if fds[0].revents != 0 {
            let mut chunk = [0u8; 64];
            match status.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => report.extend_from_slice(&chunk[..n]),
            }
        }
    }
    let report = String::from_utf8_lossy(&report);
    let init_end = wait_for(init);
    match End::decode(&report) {
        Some(end) => end,
        // Init ended without a report: it failed to set up (and said why), or was killed.
        None => init_end.unwrap_or(End::Code(SETUP_FAILED)),
    }
}

/// Without namespaces: waits for the program, killing the process group at the wall time.
fn supervise_program(child: Pid, limits: &Limits) -> End {
    static DONE: AtomicBool = AtomicBool::new(false);
    if let Some(wall) = limits.wall_time {
        let _ = thread::Builder::new()
            .name("wall-time".into())
            .spawn(move || {
                thread::sleep(wall.as_std());
                if !DONE.load(Ordering::SeqCst) {
                    say(&wall_time_message(wall));
                    // The group is the helper, the program and what it started: all of it goes.
                    let _ = killpg(Pid::from_raw(0), Signal::SIGKILL);
                }
            });
    }
    let end = wait_for(child).unwrap_or(End::Code(SETUP_FAILED));
    DONE.store(true, Ordering::SeqCst);
    end
}

fn wall_time_message(wall: domain::Duration) -> String {
    format!(
        "the wall-time limit of {wall} was reached; the program and everything it started were \
         killed"
    )
}

/// Says which limit ended the program, when one did.
fn explain(end: End, limits: &Limits, counters: Counters) {
    let show = |v: Option<String>| v.unwrap_or_else(|| "the limit".into());
    // A program that ignores SIGXCPU is killed by SIGKILL a second later, which could have
    // other causes; only SIGXCPU itself says for sure that the CPU limit ended it.
    if end == End::Signal(libc::SIGXCPU) {
        say(&format!(
            "the program used up its CPU-time limit of {} and was killed by SIGXCPU",
            show(limits.cpu_time.map(|d| d.to_string()))
        ));
    }
    if end == End::Signal(libc::SIGXFSZ) {
        say(&format!(
            "the program tried to write a file beyond the file-size limit of {} and was killed \
             by SIGXFSZ",
            show(limits.file_size.map(|s| s.to_string()))
        ));
    }
    if counters.oom_kills > 0 {
        say(&format!(
            "the memory limit of {} was reached; the kernel killed {} process(es)",
            show(limits.memory.map(|s| s.to_string())),
            counters.oom_kills
        ));
    }
    if counters.forks_refused > 0 {
        say(&format!(
            "the process limit of {} was reached; {} attempt(s) to start a process were refused",
            show(limits.processes.map(|n| n.to_string())),
            counters.forks_refused
        ));
    }
}

/// Ends the helper the way the program ended.
fn finish(end: End) -> ! {
    match end {
        End::Code(code) => std::process::exit(code),
        End::Signal(sig) => {
            // No core file of the helper, whatever the signal.
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            sys::reset_signals();
            // SAFETY: raising a signal against ourselves.
            unsafe { libc::raise(sig) };
            // Only a signal whose default is to do nothing gets here.
            std::process::exit(128 + sig)
        }
    }
}

/// PID 1 of the sandbox. Builds the view and the network, starts the program, and reaps.
fn init(
    inv: &Invocation,
    plan: Option<&Plan>,
    (trees, agent): (&[Option<OwnedFd>], Option<u32>),
    program: &Program,
    filters: &[seccompiler::BpfProgram],
    status: OwnedFd,
    alive: OwnedFd,
) -> ! {
    let fail = |message: String| -> ! {
        say(&message);
        std::process::exit(SETUP_FAILED)
    };
    // SAFETY: prctl with integer arguments.
    unsafe {
        // If the helper dies, so does init, and with it the whole namespace.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // Not dumpable: nothing in the sandbox may read or write init's memory through /proc,
        // since init holds every capability of the user namespace.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    if helper_gone(&alive) {
        std::process::exit(SETUP_FAILED);
    }
    // pivot_root moves every process of the mount namespace that shares the old root, so the
    // view gets a namespace of its own, owned by the sandbox's user namespace.
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        fail(format!("cannot create the sandbox's mount namespace: {e}"));
    }
    let built = match plan {
        Some(plan) => view::build(plan, trees, agent),
        None => view::private_proc_only(),
    };
    if let Err(e) = built {
        fail(format!("cannot build the sandbox's filesystem: {e}"));
    }
    let mut listener = None;
    if inv.spec.network == NetworkMode::Gateway {
        if let Err(e) = sys::loopback_up() {
            fail(format!("cannot bring up loopback in the sandbox: {e}"));
        }
        if let Some(gateway) = &inv.spec.gateway {
            match TcpListener::bind(("127.0.0.1", gateway.port)) {
                Ok(l) => listener = Some((l, gateway.socket.clone())),
                Err(e) => fail(format!(
                    "cannot listen on 127.0.0.1:{} for the gateway relay: {e}",
                    gateway.port
                )),
            }
        }
    }

    // SAFETY: init is single-threaded until after this fork.
    let main = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let paths = plan.map(|p| LandlockPaths {
                writable: p.writable_paths(),
                exposed: p.exposed_paths(),
            });
            run_program(
                &inv.spec.limits,
                paths.as_ref(),
                agent.is_some(),
                program,
                filters,
            )
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(format!("cannot fork the program: {e}")),
    };

    if let Some((listener, socket)) = listener {
        let _ = thread::Builder::new()
            .name("gateway-relay".into())
            .spawn(move || relay(listener, socket));
    }
    // Set by the timer before it kills; read once everything is reaped, so that the message is
    // the last line of the output, after whatever the killed processes wrote.
    static WALL_TIME_HIT: AtomicBool = AtomicBool::new(false);
    if let Some(wall) = inv.spec.limits.wall_time {
        let _ = thread::Builder::new()
            .name("wall-time".into())
            .spawn(move || {
                thread::sleep(wall.as_std());
                WALL_TIME_HIT.store(true, Ordering::SeqCst);
                kill_all_but_init();
            });
    }

    let mut end = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
            Ok(status) => {
                if status.pid() == Some(main)
                    && let Some(e) = End::from_status(status)
                {
                    end = Some(e);
                    // Whatever the program left running goes with it.
                    kill_all_but_init();
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    let end = end.unwrap_or(End::Code(SETUP_FAILED));
    if let Some(wall) = inv.spec.limits.wall_time
        && WALL_TIME_HIT.load(Ordering::SeqCst)
    {
        say(&wall_time_message(wall));
    }
    let _ = fs::File::from(status).write_all(end.encode().as_bytes());
    std::process::exit(0)
}

fn helper_gone(alive: &OwnedFd) -> bool {
    let mut fds = [libc::pollfd {
        fd: alive.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one live pollfd, no waiting.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    rc > 0 && fds[0].revents & (libc::POLLHUP | libc::POLLIN) != 0
}

/// From PID 1 of a namespace, `kill(-1)` reaches every other process of the namespace and
/// nothing outside it. Anywhere else it would reach every process we may signal, so it is
/// refused unless we are PID 1.
fn kill_all_but_init() {
    if std::process::id() == 1 {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    }
}

/// Accepts connections on loopback and relays each to the gateway's Unix socket.
fn relay(listener: TcpListener, socket: PathBuf) {
    for stream in listener.incoming() {
        let Ok(tcp) = stream else { continue };
        let socket = socket.clone();
        let _ = thread::Builder::new()
            .name("gateway-conn".into())
            .spawn(move || {
                // A refused connection closes the TCP side, which the client sees as a reset.
                if let Ok(unix) = UnixStream::connect(&socket) {
                    splice(tcp, unix);
                }
            });
    }
}

fn splice(tcp: TcpStream, unix: UnixStream) {
    let (Ok(mut tcp_in), Ok(mut unix_in)) = (tcp.try_clone(), unix.try_clone()) else {
        return;
    };
    let mut unix_out = unix;
    let upstream = thread::spawn(move || {
        let _ = io::copy(&mut tcp_in, &mut unix_out);
        let _ = unix_out.shutdown(Shutdown::Write);
    });
    let mut tcp_out = tcp;
    let _ = io::copy(&mut unix_in, &mut tcp_out);
    let _ = tcp_out.shutdown(Shutdown::Write);
    let _ = upstream.join();
}

/// In the program's own process: confine it and execute it. Never returns.
fn run_program(
    limits: &Limits,
    landlock: Option<&LandlockPaths>,
    as_agent: bool,
    program: &Program,
    filters: &[seccompiler::BpfProgram],
) -> ! {
    let result = (|| -> Result<Infallible, (i32, String)> {
        let setup = |e: String| (SETUP_FAILED, e);
        sys::reset_signals();
        nix::unistd::chdir(&program.cwd).map_err(|e| {
            setup(format!(
                "cannot enter the working directory {} inside the sandbox: {e}",
                program.cwd.display()
            ))
        })?;
        confine::rlimits(limits).map_err(setup)?;
        if let Some(paths) = landlock {
            confine::landlock(paths).map_err(setup)?;
        }
        if as_agent {
            sys::drop_bounding_set();
            crate::identity::become_agent().map_err(setup)?;
        }
        confine::drop_privileges().map_err(setup)?;
        sys::close_from_3();
        confine::apply_seccomp(filters).map_err(setup)?;
        let err = nix::unistd::execve(&program.path, &program.argv, &program.envp)
            .err()
            .unwrap_or(nix::errno::Errno::UnknownErrno);
        let code = if err == nix::errno::Errno::ENOENT {
            NOT_FOUND
        } else {
            CANNOT_EXECUTE
        };
        Err((
            code,
            format!("cannot execute `{}` in the sandbox: {err}", program.shown),
        ))
    })();
    let Err((code, message)) = result;
    say(&message);
    std::process::exit(code)
}
