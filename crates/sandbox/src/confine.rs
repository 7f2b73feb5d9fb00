//! The restrictions a sandboxed program carries through `exec`: resource limits, Landlock,
//! dropped capabilities, no_new_privs and the seccomp filter. All of it is applied by the
//! program's own process, single-threaded, just before it becomes the program.

use std::collections::BTreeMap;
use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, path_beneath_rules,
};
use nix::sys::resource::{Resource, setrlimit};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::spec::{Limits, NetworkMode};
use crate::sys;

/// The per-process resource limits as `(resource, soft, hard)`, worked out before any fork so
/// that applying them needs no allocation. Core dumps are always off: a dump could fill the
/// workspace and would carry the program's memory out of its lifetime.
pub fn rlimit_table(limits: &Limits) -> Vec<(Resource, u64, u64)> {
    let mut table = vec![(Resource::RLIMIT_CORE, 0, 0)];
    if let Some(memory) = limits.memory {
        table.push((Resource::RLIMIT_DATA, memory.bytes(), memory.bytes()));
    }
    if let Some(n) = limits.processes {
        table.push((Resource::RLIMIT_NPROC, n, n));
    }
    if let Some(n) = limits.open_files {
        table.push((Resource::RLIMIT_NOFILE, n, n));
    }
    if let Some(size) = limits.file_size {
        table.push((Resource::RLIMIT_FSIZE, size.bytes(), size.bytes()));
    }
    if let Some(cpu) = limits.cpu_time {
        // At the soft limit the kernel sends SIGXCPU (which a program may catch to clean up);
        // a second later, at the hard limit, SIGKILL.
        let secs = cpu.as_millis().div_ceil(1000).max(1);
        table.push((Resource::RLIMIT_CPU, secs, secs + 1));
    }
    table
}

/// Sets the per-process resource limits of [`rlimit_table`].
pub(crate) fn rlimits(limits: &Limits) -> Result<(), String> {
    for (resource, soft, hard) in rlimit_table(limits) {
        setrlimit(resource, soft, hard)
            .map_err(|e| format!("setting {resource:?} to {soft}: {e}"))?;
    }
    Ok(())
}

/// The Landlock ruleset: everything readable and executable, writable only where the view
/// says, devices usable, sockets in exposed paths connectable (on kernels that can tell), and
/// no signals or abstract sockets beyond the sandbox.
pub(crate) struct LandlockPaths {
    pub writable: Vec<PathBuf>,
    pub exposed: Vec<PathBuf>,
}

pub(crate) fn landlock(paths: &LandlockPaths) -> Result<RulesetStatus, String> {
    let fail = |e: landlock::RulesetError| format!("setting up Landlock: {e}");
    // The newest ABI this crate knows; on older kernels the rights they lack are dropped
    // (best effort), which the probe reports.
    let abi = ABI::V9;
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let devices = AccessFs::ReadFile
        | AccessFs::WriteFile
        | AccessFs::ReadDir
        | AccessFs::Truncate
        | AccessFs::IoctlDev;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(fail)?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/"], read))
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/dev"], devices))
        .map_err(fail)?
        .add_rules(path_beneath_rules(&paths.writable, all))
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            &paths.exposed,
            read | AccessFs::ResolveUnix,
        ))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("Landlock is not enforced by this kernel".into());
    }
    Ok(status.ruleset)
}

/// Drops every capability for good (see [`sys::drop_capabilities`]) and sets no_new_privs, so
/// that no setuid program or file capability can give anything back.
pub(crate) fn drop_privileges() -> Result<(), String> {
    sys::drop_capabilities().map_err(|e| format!("dropping capabilities: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("setting no_new_privs: {e}"))
}

fn arch() -> Result<TargetArch, String> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("no seccomp filter for {}", std::env::consts::ARCH))
}

/// System calls the program never gets: tracing and reading other processes, mounting,
/// namespaces, kernel keyrings, BPF, perf, io_uring (which would bypass the socket checks),
/// module and kexec loading, clock and reboot control.
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_acct,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
];

/// Socket families the program may create, by network mode. Netlink stays: libc uses it to
/// list interfaces, and within a private network namespace it shows only the sandbox's own.
fn allowed_families(network: NetworkMode) -> &'static [libc::c_int] {
    match network {
        NetworkMode::None => &[libc::AF_UNIX, libc::AF_NETLINK],
        NetworkMode::Gateway | NetworkMode::Host => &[
            libc::AF_UNIX,
            libc::AF_NETLINK,
            libc::AF_INET,
            libc::AF_INET6,
        ],
    }
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| format!("building the seccomp filter: {e}"))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| format!("building the seccomp filter: {e}"))
}

/// The filters, in the order they are installed: the main one (EPERM), and one that answers
/// `clone3` with ENOSYS so that libc falls back to `clone`, whose flags the main filter can
/// inspect (`clone3` passes them in memory, out of a filter's reach).
pub(crate) fn seccomp_filters(network: NetworkMode) -> Result<Vec<BpfProgram>, String> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED {
        rules.insert(nr, Vec::new());
    }
    let families = allowed_families(network)
        .iter()
        .map(|&f| cond(0, SeccompCmpOp::Ne, f as u64))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_socket, vec![rule(families)?]);
    // New namespaces through clone, whose flags are its first argument on the architectures
    // agentgrid supports: one rule per flag, since a rule's conditions must all hold.
    let per_flag = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ]
    .iter()
    .map(|&f| rule(vec![cond(0, SeccompCmpOp::MaskedEq(f as u64), f as u64)?]))
    .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, per_flag);
    // Injecting input into a terminal.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![cond(1, SeccompCmpOp::Eq, request(libc::TIOCSTI))?])?,
            rule(vec![cond(1, SeccompCmpOp::Eq, request(libc::TIOCLINUX))?])?,
        ],
    );
    let main = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("building the seccomp filter: {e}"))?;
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    let clone3 = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| format!("building the seccomp filter: {e}"))?;
    let compile = |f: SeccompFilter| {
        BpfProgram::try_from(f).map_err(|e| format!("compiling the seccomp filter: {e}"))
    };
    let mut filters = vec![compile(main)?, compile(clone3)?];
    filters.extend(x32_guard());
    Ok(filters)
}

/// On x86_64 the x32 ABI reaches the same system calls under numbers with bit 30 set, which a
/// filter keyed on the x86_64 numbers would let through; this filter refuses all of them.
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> Option<BpfProgram> {
    use seccompiler::sock_filter;
    // BPF_LD | BPF_W | BPF_ABS, of which only BPF_ABS has bits set.
    const LD_W_ABS: u16 = 0x20;
    const JGE_K: u16 = 0x05 | 0x30;
    const RET_K: u16 = 0x06;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    Some(vec![
        // Load the system call number.
        sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ])
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_guard() -> Option<BpfProgram> {
    None
}

/// An ioctl request number as a filter operand. Its type differs between targets (an unsigned
/// long on glibc, an int on musl), so the cast is a no-op only on some of them.
#[allow(clippy::unnecessary_cast)]
fn request(number: libc::Ioctl) -> u64 {
    number as u64
}

/// Installs the filters on the calling thread (the program's only thread).
pub(crate) fn apply_seccomp(filters: &[BpfProgram]) -> Result<(), String> {
    for filter in filters {
        seccompiler::apply_filter(filter).map_err(|e| format!("installing seccomp: {e}"))?;
    }
    Ok(())
}
