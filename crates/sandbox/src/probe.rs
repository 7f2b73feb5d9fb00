//! What this host supports, and whether a given sandbox can run on it.
//!
//! [`probe`] tries each mechanism for real where that is cheap and harmless: it clones short
//! lived children into new namespaces, mounts a fresh `/proc` inside one, asks the kernel for
//! its Landlock ABI and seccomp actions, and creates (and removes) a cgroup. [`check`] then
//! compares a [`SandboxSpec`] with the result and names, for each missing mechanism, the
//! manifest setting that opts out of it knowingly.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::cgroup::{self, Controller};
use crate::spec::{FilesystemMode, NetworkMode, SandboxSpec};
use crate::{Error, sys};

/// One isolation mechanism the sandbox can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    UserNamespaces,
    MountNamespaces,
    PidNamespaces,
    NetworkNamespaces,
    /// Mounting a fresh `/proc` in a new PID namespace (refused where `/proc` is partly masked).
    PrivateProc,
    /// `mount_setattr(2)`, to make whole mount trees read-only (Linux 5.12).
    MountSetattr,
    Landlock,
    Seccomp,
    MemoryCgroup,
    PidsCgroup,
    /// `RLIMIT_NPROC`, which the kernel does not enforce for root.
    ProcessRlimit,
}

impl Mechanism {
    pub const ALL: [Mechanism; 11] = [
        Mechanism::UserNamespaces,
        Mechanism::MountNamespaces,
        Mechanism::PidNamespaces,
        Mechanism::NetworkNamespaces,
        Mechanism::PrivateProc,
        Mechanism::MountSetattr,
        Mechanism::Landlock,
        Mechanism::Seccomp,
        Mechanism::MemoryCgroup,
        Mechanism::PidsCgroup,
        Mechanism::ProcessRlimit,
    ];

    /// A short human name.
    pub fn title(self) -> &'static str {
        match self {
            Mechanism::UserNamespaces => "user namespaces",
            Mechanism::MountNamespaces => "mount namespaces",
            Mechanism::PidNamespaces => "PID namespaces",
            Mechanism::NetworkNamespaces => "network namespaces",
            Mechanism::PrivateProc => "a private /proc",
            Mechanism::MountSetattr => "mount_setattr",
            Mechanism::Landlock => "Landlock",
            Mechanism::Seccomp => "seccomp filters",
            Mechanism::MemoryCgroup => "the memory cgroup",
            Mechanism::PidsCgroup => "the pids cgroup",
            Mechanism::ProcessRlimit => "the process rlimit",
        }
    }
}

/// Whether one mechanism works here, and the details (what was found, or why not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MechanismSupport {
    pub mechanism: Mechanism,
    pub available: bool,
    pub detail: String,
}

/// Everything [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSupport {
    pub mechanisms: Vec<MechanismSupport>,
    /// The kernel's Landlock ABI version, when it has Landlock.
    pub landlock_abi: Option<u32>,
}

impl HostSupport {
    pub fn get(&self, mechanism: Mechanism) -> Option<&MechanismSupport> {
        self.mechanisms.iter().find(|m| m.mechanism == mechanism)
    }

    pub fn available(&self, mechanism: Mechanism) -> bool {
        self.get(mechanism).is_some_and(|m| m.available)
    }

    /// Whether the default sandbox (workspace writable, no network) can run here.
    pub fn default_profile_ok(&self) -> bool {
        check(&SandboxSpec::new("/nonexistent/workspace"), self).is_ok()
    }
}

/// A mechanism a spec needs and the host lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub mechanism: Mechanism,
    /// Why it is missing, from the probe.
    pub reason: String,
    /// What to change to run without it, knowingly.
    pub opt_out: String,
}

/// Probes the host once per process and keeps the answer.
pub fn host_support() -> &'static HostSupport {
    static SUPPORT: OnceLock<HostSupport> = OnceLock::new();
    SUPPORT.get_or_init(probe)
}

/// Tries every mechanism on this host. Takes a few milliseconds; see [`host_support`].
pub fn probe() -> HostSupport {
    let mut mechanisms = Vec::new();
    let mut add = |mechanism, result: Result<String, String>| {
        let (available, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        mechanisms.push(MechanismSupport {
            mechanism,
            available,
            detail,
        });
    };

    let userns = clone_with(libc::CLONE_NEWUSER, "a user namespace");
    let userns_ok = userns.is_ok();
    add(Mechanism::UserNamespaces, userns);
    let inside_userns = |flag, what: &str| {
        if userns_ok {
            clone_with(libc::CLONE_NEWUSER | flag, what)
        } else {
            Err("needs user namespaces".to_string())
        }
    };
    add(
        Mechanism::MountNamespaces,
        inside_userns(libc::CLONE_NEWNS, "a mount namespace"),
    );
    add(
        Mechanism::PidNamespaces,
        inside_userns(libc::CLONE_NEWPID, "a PID namespace"),
    );
    add(
        Mechanism::NetworkNamespaces,
        inside_userns(libc::CLONE_NEWNET, "a network namespace"),
    );
    add(Mechanism::PrivateProc, private_proc(userns_ok));
    add(
        Mechanism::MountSetattr,
        if sys::has_mount_setattr() {
            Ok("available".into())
        } else {
            Err("the kernel lacks mount_setattr (Linux 5.12+)".into())
        },
    );
    let landlock = sys::landlock_abi();
    let landlock_abi = landlock.as_ref().ok().copied();
    add(
        Mechanism::Landlock,
        landlock.map(|abi| {
            let mut text = format!("ABI {abi}");
            if abi < 6 {
                text.push_str(
                    " (below 6: signals and abstract sockets are not scoped; the PID and \
                     network namespaces still cover them)",
                );
            }
            text
        }),
    );
    add(
        Mechanism::Seccomp,
        sys::seccomp_filter_available().map(|()| "filters with errno returns".into()),
    );
    add(Mechanism::MemoryCgroup, cgroup_support(Controller::Memory));
    add(Mechanism::PidsCgroup, cgroup_support(Controller::Pids));
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    add(
        Mechanism::ProcessRlimit,
        if uid == 0 {
            Err(
                "agentgrid runs as root: the kernel enforces RLIMIT_NPROC for the unprivileged \
                 identity agents get inside namespaced sandboxes, never for an agent that runs \
                 as root without namespaces"
                    .into(),
            )
        } else {
            Ok(format!("enforced for uid {uid}"))
        },
    );
    HostSupport {
        mechanisms,
        landlock_abi,
    }
}

fn clone_with(flags: libc::c_int, what: &str) -> Result<String, String> {
    fn exit_at_once() -> libc::c_int {
        0
    }
    match sys::probe_clone(flags, exit_at_once) {
        Ok(0) => Ok("available".into()),
        Ok(code) => Err(format!("a child in {what} failed with {code}")),
        Err(errno) => Err(format!(
            "cannot create {what}: {}{}",
            std::io::Error::from_raw_os_error(errno),
            namespace_hint(errno)
        )),
    }
}

fn namespace_hint(errno: i32) -> &'static str {
    if errno == libc::EPERM || errno == libc::ENOSPC {
        " (unprivileged namespaces may be disabled: see kernel.unprivileged_userns_clone, \
         user.max_user_namespaces, or an AppArmor restriction on unprivileged user namespaces)"
    } else {
        ""
    }
}

/// Mounts a fresh procfs inside new user, mount and PID namespaces, as the helper will.
fn private_proc(userns_ok: bool) -> Result<String, String> {
    if !userns_ok {
        return Err("needs user namespaces".into());
    }
    fn mount_proc() -> libc::c_int {
        // SAFETY: raw mount calls with static C strings, in a child that owns its namespaces.
        unsafe {
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return 100 + sys::last_errno().min(100);
            }
            if libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) != 0
            {
                return sys::last_errno().min(99);
            }
        }
        0
    }
    let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID;
    match sys::probe_clone(flags, mount_proc) {
        Ok(0) => Ok("available".into()),
        Ok(code) if code >= 100 => Err(format!(
            "cannot make the mount tree private: {}",
            std::io::Error::from_raw_os_error(code - 100)
        )),
        Ok(code) => Err(format!(
            "cannot mount a fresh /proc in a PID namespace: {} (usually because parts of /proc \
             are masked, as in many containers)",
            std::io::Error::from_raw_os_error(code)
        )),
        Err(errno) => Err(format!(
            "cannot create the namespaces: {}",
            std::io::Error::from_raw_os_error(errno)
        )),
    }
}

fn cgroup_support(controller: Controller) -> Result<String, String> {
    let location = cgroup::locate(controller)?;
    cgroup::probe_writable(controller, &location)?;
    let version = match location.version {
        cgroup::Version::V1 => "v1",
        cgroup::Version::V2 => "v2",
    };
    Ok(format!("{version}, under {}", location.dir.display()))
}

/// The first Landlock ABI that can refuse `connect` on a pathname Unix socket.
const LANDLOCK_UNIX_SOCKETS_ABI: u32 = 9;

/// Which mechanism keeps the host's pathname Unix sockets out of a sandbox's reach on this
/// host, in words for `doctor` and `run`.
pub fn unix_socket_defence(support: &HostSupport) -> String {
    let view = format!(
        "the allow-list view shows only the system trees ({}) and the paths the engine names, \
         so sockets elsewhere (/run, /tmp, homes, projects) are absent",
        crate::view::SYSTEM.join(", ")
    );
    match support.landlock_abi {
        Some(abi) if abi >= LANDLOCK_UNIX_SOCKETS_ABI => {
            format!("Landlock ABI {abi} refuses connect outside the exposed paths, and {view}")
        }
        Some(abi) => format!(
            "Landlock ABI {abi} cannot refuse connect on pathname sockets (that needs ABI \
             {LANDLOCK_UNIX_SOCKETS_ABI}); {view}"
        ),
        None => format!("without Landlock, {view}"),
    }
}

/// Unix sockets inside the system trees every sandbox shows (which only Landlock ABI 9 could
/// keep out of reach), at most `limit` of them. `/sys` holds none and is not walked.
pub fn sockets_in_system_trees(limit: usize) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = crate::view::system_trees()
        .into_iter()
        .filter_map(|t| match t {
            crate::view::System::Dir(path) if path != std::path::Path::new("/sys") => Some(path),
            _ => None,
        })
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_socket() {
                found.push(entry.path());
                if found.len() >= limit {
                    return found;
                }
            }
        }
    }
    found
}

/// The mechanisms `spec` needs, each with the setting that opts out of it.
pub fn requirements(spec: &SandboxSpec) -> Vec<(Mechanism, &'static str)> {
    const NO_NAMESPACES: &str = "set `sandbox.filesystem: none` and `sandbox.network: host` in \
                                 the agent's manifest (the sandbox is then only seccomp and \
                                 resource limits)";
    const NO_FILESYSTEM: &str =
        "set `sandbox.filesystem: none` in the agent's manifest (no filesystem isolation)";
    const NO_NETWORK: &str =
        "set `sandbox.network: host` in the agent's manifest (full network access)";
    const NO_SANDBOX: &str = "run the agent without a sandbox; agentgrid cannot sandbox anything \
                              on this host";
    const NO_PROCESS_LIMIT: &str = "run agentgrid as a user other than root (the kernel enforces \
                                    RLIMIT_NPROC for them) or give it a writable pids cgroup; \
                                    there is no safe way to run a process limit without either";
    let mut needs = vec![(Mechanism::Seccomp, NO_SANDBOX)];
    if spec.uses_namespaces() {
        needs.extend([
            (Mechanism::UserNamespaces, NO_NAMESPACES),
            (Mechanism::MountNamespaces, NO_NAMESPACES),
            (Mechanism::PidNamespaces, NO_NAMESPACES),
            (Mechanism::PrivateProc, NO_NAMESPACES),
        ]);
    }
    if spec.filesystem != FilesystemMode::None {
        needs.push((Mechanism::Landlock, NO_FILESYSTEM));
        needs.push((Mechanism::MountSetattr, NO_FILESYSTEM));
    }
    if spec.network != NetworkMode::Host {
        needs.push((Mechanism::NetworkNamespaces, NO_NETWORK));
    }
    if spec.limits.processes.is_some() {
        needs.push((Mechanism::ProcessRlimit, NO_PROCESS_LIMIT));
    }
    needs
}

/// Whether `spec` can run on a host with `support`; otherwise an error listing every missing
/// mechanism with its reason and its opt-out.
pub fn check(spec: &SandboxSpec, support: &HostSupport) -> Result<(), Error> {
    let mut missing = Vec::new();
    for (mechanism, opt_out) in requirements(spec) {
        // The process limit holds through either the rlimit or the pids cgroup.
        if mechanism == Mechanism::ProcessRlimit && support.available(Mechanism::PidsCgroup) {
            continue;
        }
        if support.available(mechanism) {
            continue;
        }
        let reason = support
            .get(mechanism)
            .map_or("it was not probed".to_string(), |m| m.detail.clone());
        if missing.iter().any(|m: &Missing| m.mechanism == mechanism) {
            continue;
        }
        missing.push(Missing {
            mechanism,
            reason,
            opt_out: opt_out.to_string(),
        });
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Unsupported { missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Limits;

    fn host(missing: &[Mechanism]) -> HostSupport {
        HostSupport {
            mechanisms: Mechanism::ALL
                .iter()
                .map(|&mechanism| MechanismSupport {
                    mechanism,
                    available: !missing.contains(&mechanism),
                    detail: format!("{} probe said so", mechanism.title()),
                })
                .collect(),
            landlock_abi: Some(7),
        }
    }

    #[test]
    fn a_complete_host_runs_every_profile() {
        let support = host(&[]);
        let mut spec = SandboxSpec::new("/w");
        spec.limits.processes = Some(10);
        check(&spec, &support).unwrap();
    }

    #[test]
    fn a_missing_mechanism_is_named_with_its_reason_and_opt_out() {
        let support = host(&[Mechanism::Landlock, Mechanism::NetworkNamespaces]);
        let err = check(&SandboxSpec::new("/w"), &support)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Landlock is missing (Landlock probe said so)"),
            "{err}"
        );
        assert!(err.contains("`sandbox.filesystem: none`"), "{err}");
        assert!(err.contains("network namespaces is missing"), "{err}");
        assert!(err.contains("`sandbox.network: host`"), "{err}");
        assert!(err.contains("agentgrid doctor"), "{err}");
    }

    #[test]
    fn opting_out_removes_the_requirement() {
        let support = host(&[
            Mechanism::Landlock,
            Mechanism::NetworkNamespaces,
            Mechanism::UserNamespaces,
        ]);
        let mut spec = SandboxSpec::new("/w");
        spec.filesystem = FilesystemMode::None;
        spec.network = NetworkMode::Host;
        check(&spec, &support).unwrap();
        let no_seccomp = host(&[Mechanism::Seccomp]);
        let err = check(&spec, &no_seccomp).unwrap_err().to_string();
        assert!(err.contains("seccomp filters is missing"), "{err}");
    }

    #[test]
    fn a_process_limit_as_root_needs_the_pids_cgroup() {
        let mut spec = SandboxSpec::new("/w");
        spec.limits = Limits {
            processes: Some(64),
            ..Limits::default()
        };
        check(&spec, &host(&[Mechanism::ProcessRlimit])).unwrap();
        check(&spec, &host(&[Mechanism::PidsCgroup])).unwrap();
        let err = check(
            &spec,
            &host(&[Mechanism::ProcessRlimit, Mechanism::PidsCgroup]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("user other than root"), "{err}");
    }

    #[test]
    fn this_host_is_probed_for_real() {
        let support = probe();
        assert_eq!(support.mechanisms.len(), Mechanism::ALL.len());
        // Whatever the host, seccomp is in every kernel agentgrid targets, and the probe of the
        // process rlimit follows who we are.
        assert!(support.available(Mechanism::Seccomp), "{support:#?}");
        // SAFETY: getuid cannot fail.
        let root = unsafe { libc::getuid() } == 0;
        assert_eq!(support.available(Mechanism::ProcessRlimit), !root);
        if support.available(Mechanism::Landlock) {
            assert!(support.landlock_abi.unwrap() >= 1);
        }
    }
}
