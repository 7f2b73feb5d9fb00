//! Thin wrappers around the system calls that neither `nix` nor `libc` wrap for us: probing
//! clones, `mount_setattr`, `capset`, bringing up loopback, and errno handling.
//!
//! Everything here is a direct system call; none of it allocates in a forked child except where
//! a comment says so.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: libc::c_uint = 0x8000;

pub(crate) fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Sets mount attributes on `path`, and on every mount below it when `recursive`.
pub(crate) fn mount_setattr(path: &Path, set: u64, recursive: bool) -> io::Result<()> {
    let c = cstring(path)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: the path is a valid C string and attr a live struct of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(rc).map(drop)
}

/// Whether the kernel knows `mount_setattr(2)` (Linux 5.12).
pub(crate) fn has_mount_setattr() -> bool {
    // An invalid file descriptor gets EBADF from a kernel that has the call, ENOSYS otherwise.
    // SAFETY: no pointer is dereferenced for an invalid descriptor with a null attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            std::ptr::null::<MountAttr>(),
            0,
        )
    };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// The Landlock ABI version the kernel offers, or why there is none.
pub(crate) fn landlock_abi() -> Result<u32, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no attribute pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc > 0 {
        return Ok(rc as u32);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EOPNOTSUPP) => Err(
            "the kernel has Landlock but it is disabled; add `landlock` to the `lsm=` boot \
             parameter"
                .into(),
        ),
        Some(libc::ENOSYS) => Err("the kernel was built without Landlock (Linux 5.13+)".into()),
        _ => Err(format!(
            "landlock_create_ruleset failed: {}",
            io::Error::last_os_error()
        )),
    }
}

/// Whether seccomp filters (with errno returns) are available.
pub(crate) fn seccomp_filter_available() -> Result<(), String> {
    const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: the action is a live u32, as SECCOMP_GET_ACTION_AVAIL expects.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "seccomp filters are not available: {} (the kernel needs CONFIG_SECCOMP_FILTER)",
            io::Error::last_os_error()
        ))
    }
}

/// What a probe child does: raw system calls only, returning an exit code.
pub(crate) type ProbeChild = fn() -> libc::c_int;

/// Clones a child with `flags` (namespace flags; SIGCHLD is added) that runs `child` and exits
/// with its result. Returns the child's exit code, or the errno of the clone itself.
///
/// This is safe to call from a multi-threaded process: the child only makes raw system calls
/// and `_exit`s, touching no lock another thread could hold.
pub(crate) fn probe_clone(flags: libc::c_int, child: ProbeChild) -> Result<i32, i32> {
    // SAFETY: without CLONE_VM the child gets a copy of our memory and continues on its own copy
    // of this stack, like fork; it runs only `child` (raw syscalls) and `_exit`.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    if pid == 0 {
        let code = child();
        // SAFETY: ends the child at once, without running any of the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    loop {
        // SAFETY: status is a live int.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::__WALL) };
        if rc >= 0 {
            break;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(libc::ECHILD);
        }
    }
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Ok(128 + libc::WTERMSIG(status))
    }
}

/// The errno of the last failed call, for probe children.
pub(crate) fn last_errno() -> libc::c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Empties the bounding, ambient, permitted, effective and inheritable capability sets, and
/// locks the securebits so that executing a program as uid 0 gives no capability back.
/// Steps that need a capability this process does not have are skipped: such a process has no
/// capability to lose there.
pub(crate) fn drop_capabilities() -> io::Result<()> {
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
    const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
    const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;
    let bits = SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED
        | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        // Needs CAP_SETPCAP; without it there is no capability to regain anyway.
        libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0);
        for cap in 0..64 {
            // EINVAL past the last capability the kernel knows; EPERM without CAP_SETPCAP.
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are live structs of the layout capset(2) expects for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    check(rc).map(drop)
}

/// Empties the bounding and ambient capability sets, while this process still has
/// `CAP_SETPCAP`: before it changes its uid, which clears the rest of its capabilities.
pub(crate) fn drop_bounding_set() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        for cap in 0..64 {
            // EINVAL past the last capability the kernel knows.
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
}

/// Brings the loopback interface of the current network namespace up.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: fd is our socket and req a live ifreq naming `lo`.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req as *const libc::ifreq) };
    let result = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(fd) };
    result
}

/// Closes every file descriptor from 3 on.
pub(crate) fn close_from_3() {
    // SAFETY: close_range takes plain integers; failure (old kernel) falls back to a loop.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc < 0 {
        for fd in 3..1024 {
            // SAFETY: closing descriptors this process no longer needs.
            unsafe { libc::close(fd) };
        }
    }
}

/// Puts every signal back to its default action and unblocks all of them, so the program
/// starts as if from a clean shell, whatever the helper ignored.
pub(crate) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting the default disposition is always valid.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty, initialised set is unblocked for this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}
