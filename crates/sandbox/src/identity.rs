//! The unprivileged identity a sandboxed program runs as under a root engine.
//!
//! Under a root engine the program would otherwise be uid 0 of its user namespace, mapped to
//! the host's root, and read every root-only file the view shows (`/etc/ssh` host keys, say).
//! Instead it runs as [`AGENT_ID`] inside, mapped to a host uid and gid of its own that no
//! account uses (one per sandbox, so that `RLIMIT_NPROC` counts only its own processes), with
//! no supplementary groups: the system trees are readable to it only where they are readable
//! to everyone.
//!
//! What the engine named (the workspace, the git metadata, the exposed files) is bound with an
//! idmapped mount that shows the host's root as the agent's uid: inside, the agent owns its
//! workspace (so it can write it, and git's ownership check passes); on disk, what it writes
//! belongs to root like the rest of the worktree, so host git sees a worktree it owns. The
//! idmapped trees need the host's root in the initial user namespace, so the helper prepares
//! them before it creates the sandbox's namespaces and hands them to init as descriptors.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use crate::sys;

/// The uid and gid the program has inside its user namespace.
pub(crate) const AGENT_ID: u32 = 1000;

/// The first host uid (and gid) handed to sandboxes; the helper's pid is added, so that two
/// sandboxes never share one.
const HOST_ID_BASE: u32 = 3_000_000_000;

/// The identity of one sandbox: the host id its agent is mapped to, and the user namespace
/// (as a descriptor) whose mapping shows the host's root as that id, for idmapped mounts.
#[derive(Debug)]
pub(crate) struct Identity {
    pub host_id: u32,
    idmap: OwnedFd,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

impl Identity {
    /// Prepares an identity when the helper is the host's root in the initial user namespace;
    /// `None` otherwise (the program then keeps the engine's own uid, mapped 1:1).
    pub(crate) fn prepare() -> Option<Identity> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 || !initial_user_namespace() {
            return None;
        }
        let host_id = HOST_ID_BASE + std::process::id();
        let idmap = idmap_namespace(host_id).ok()?;
        Some(Identity { host_id, idmap })
    }

    /// A detached copy of the tree at `path` (with its submounts) in which the host's root
    /// appears as the agent, ready to be attached inside the sandbox.
    pub(crate) fn idmapped_tree(&self, path: &Path) -> io::Result<OwnedFd> {
        let c = sys::cstring(path)?;
        // SAFETY: a valid C path; the call returns a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                c.as_ptr(),
                OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just returned to us.
        let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: std::os::fd::AsRawFd::as_raw_fd(&self.idmap) as u64,
        };
        // SAFETY: a live descriptor, an empty C path and attr a live struct of the size passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                std::os::fd::AsRawFd::as_raw_fd(&tree),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(tree)
    }

    /// The `uid_map` and `gid_map` text of the sandbox's user namespace: the host's root stays
    /// root (init builds the view with it), and the agent's id is its host id.
    pub(crate) fn map(&self) -> String {
        format!("0 0 1\n{AGENT_ID} {} 1\n", self.host_id)
    }
}

/// Attaches a tree made by [`Identity::idmapped_tree`] at `target`.
pub(crate) fn attach(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let c = sys::cstring(target)?;
    // SAFETY: a live descriptor, an empty C path and a valid target C path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            std::os::fd::AsRawFd::as_raw_fd(tree),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Becomes the agent: no supplementary groups, then its gid and uid. After this the process
/// has no capability left.
pub(crate) fn become_agent() -> Result<(), String> {
    // SAFETY: plain system calls with integer arguments (and an empty group list).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(format!(
                "dropping the supplementary groups: {}",
                io::Error::last_os_error()
            ));
        }
        if libc::setresgid(AGENT_ID, AGENT_ID, AGENT_ID) != 0 {
            return Err(format!(
                "becoming gid {AGENT_ID}: {}",
                io::Error::last_os_error()
            ));
        }
        if libc::setresuid(AGENT_ID, AGENT_ID, AGENT_ID) != 0 {
            return Err(format!(
                "becoming uid {AGENT_ID}: {}",
                io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Whether this process is in the initial user namespace (whose map covers every id).
fn initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

/// A user namespace whose mapping takes the host's root to `host_id`, held by a descriptor: a
/// child creates it and waits until its maps are written and the namespace is opened.
fn idmap_namespace(host_id: u32) -> io::Result<OwnedFd> {
    let (ready_r, ready_w) = nix::unistd::pipe()?;
    let (done_r, done_w) = nix::unistd::pipe()?;
    // SAFETY: the helper is single-threaded; the child makes raw system calls only and exits.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            // The parent's ends: closed here, so that the parent's close is the end of file.
            drop(ready_r);
            drop(done_w);
            // SAFETY: raw calls on descriptors this child owns, then _exit.
            unsafe {
                let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
                let byte = [u8::from(ok)];
                libc::write(
                    std::os::fd::AsRawFd::as_raw_fd(&ready_w),
                    byte.as_ptr().cast(),
                    1,
                );
                let mut buf = [0u8; 1];
                libc::read(
                    std::os::fd::AsRawFd::as_raw_fd(&done_r),
                    buf.as_mut_ptr().cast(),
                    1,
                );
                libc::_exit(0)
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_w);
            drop(done_r);
            let mut byte = [0u8; 1];
            let read = nix::unistd::read(&ready_r, &mut byte);
            let result = (|| {
                if read != Ok(1) || byte[0] != 1 {
                    return Err(io::Error::other("the id-mapping namespace was not created"));
                }
                let proc = format!("/proc/{child}");
                std::fs::write(format!("{proc}/uid_map"), format!("0 {host_id} 1\n"))?;
                std::fs::write(format!("{proc}/setgroups"), "deny")?;
                std::fs::write(format!("{proc}/gid_map"), format!("0 {host_id} 1\n"))?;
                let path = CString::new(format!("{proc}/ns/user")).map_err(io::Error::other)?;
                // SAFETY: a valid C path; returns a new descriptor or -1.
                let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: the descriptor was just returned to us.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })();
            drop(done_w);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}

/// A child left in the initial user namespace to write the sandbox's id maps: mapping any id
/// but one's own takes `CAP_SETUID` in the parent namespace, which the helper gives up when it
/// enters the new one.
pub(crate) struct Mapper {
    go: OwnedFd,
    done: OwnedFd,
    child: nix::unistd::Pid,
}

impl Mapper {
    /// Starts the mapper, before the helper creates its user namespace.
    pub(crate) fn start(map: String) -> io::Result<Mapper> {
        let (go_r, go_w) = nix::unistd::pipe()?;
        let (done_r, done_w) = nix::unistd::pipe()?;
        let parent = std::process::id();
        // SAFETY: the helper is single-threaded, so the child may allocate and write files.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                drop(go_w);
                drop(done_r);
                let mut byte = [0u8; 1];
                let ok = nix::unistd::read(&go_r, &mut byte) == Ok(1)
                    && ["uid_map", "gid_map"]
                        .iter()
                        .all(|f| std::fs::write(format!("/proc/{parent}/{f}"), &map).is_ok());
                let _ = nix::unistd::write(&done_w, &[u8::from(ok)]);
                // SAFETY: ends the child at once, without the parent's exit handlers.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => Ok(Mapper {
                go: go_w,
                done: done_r,
                child,
            }),
        }
    }

    /// Has the mapper write the maps of the namespace the helper is now in.
    pub(crate) fn map(self) -> Result<(), String> {
        let _ = nix::unistd::write(&self.go, &[1]);
        let mut byte = [0u8; 1];
        let read = nix::unistd::read(&self.done, &mut byte);
        let _ = nix::sys::wait::waitpid(self.child, None);
        if read == Ok(1) && byte[0] == 1 {
            Ok(())
        } else {
            Err("cannot write the id maps of the sandbox's user namespace".into())
        }
    }
}
