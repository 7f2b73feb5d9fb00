//! The filesystem the sandboxed program sees, planned on the host and built in the new mount
//! namespace.
//!
//! The view is an allow-list. Its root is an empty tmpfs; into it go, read-only, the trees
//! where the system keeps its programs, libraries and configuration ([`SYSTEM`]), and then
//! exactly the paths the spec names: the workspace, the writable and exposed paths, the git
//! metadata, the gateway socket, the program and the helper. Nothing else of the host is
//! there: not the main checkout, not the engine's state directory, not other projects, not
//! `/run`, `/tmp`, `/var` or the homes, and so none of the Unix sockets that live in such
//! places (a kernel whose Landlock predates ABI 9 cannot refuse `connect` on a visible one).
//!
//! Every path comes from the engine's facts. The planner never reads a file the program could
//! have written to decide what to bind (a workspace's `.git` file is the agent's), and it
//! refuses to bind a named path whose real location, through a link, lies inside a hidden
//! place the engine did not name.
//!
//! The view is built the way container runtimes do it, so that every source stays reachable
//! while the view is assembled: a scratch tmpfs becomes the root for a moment, with the host's
//! root under `/oldroot`; the new root is then assembled at `/newroot` from `/oldroot`, and
//! finally becomes the root itself while the scratch tmpfs and the host's root are detached.
//!
//! What `/newroot` holds, in order:
//! 1. an empty tmpfs (read-only once done) with the [`SYSTEM`] trees bound read-only, nosuid
//!    and nodev (or, for the ones that are symlinks on the host, the same symlinks);
//! 2. a fresh `/proc` (of the new PID namespace) and a minimal `/dev`;
//! 3. a private writable `/tmp`, `/var/tmp` and `$HOME`, and empty tmpfs (or empty files) over
//!    the hidden paths that lie inside something visible (`/etc/shadow`, the state directory
//!    inside a project used as the workspace);
//! 4. bind mounts of the named paths, shallowest first, so that a path inside a hidden
//!    directory gets a mount point in an empty tmpfs and reappears.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::spec::{FilesystemMode, Invocation, NetworkMode};
use crate::sys;

/// The host trees every view shows, read-only: programs, libraries, configuration, toolchains
/// installed under `/opt` or `/nix`, and `/sys` (read by runtimes for CPU and memory limits).
pub const SYSTEM: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix", "/sys",
];

/// Places that are hidden in every sandbox with filesystem isolation: other users' homes,
/// runtime sockets, shared temporary directories and password hashes. Outside the [`SYSTEM`]
/// trees they are absent anyway; naming them here makes a path that leads into them through
/// a link refused, and hides the ones inside a visible tree.
pub(crate) const ALWAYS_HIDDEN: &[&str] = &[
    "/home",
    "/root",
    "/run",
    "/var/run",
    "/tmp",
    "/var/tmp",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
];

/// Hidden paths that the program may still write: each gets a private, empty tmpfs.
const PRIVATE_WRITABLE: &[&str] = &["/tmp", "/var/tmp"];

/// Device nodes bound into the minimal `/dev`. `/dev/tty` is left out on purpose: it would
/// reach the terminal of whoever started agentgrid.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// One path made visible in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bind {
    pub path: PathBuf,
    pub writable: bool,
}

/// One hidden path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hide {
    pub path: PathBuf,
    /// The program may write in it (a private tmpfs), or it stays empty and read-only.
    pub writable: bool,
    pub is_dir: bool,
}

/// One [`SYSTEM`] tree as it is on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum System {
    /// A directory, bound read-only at the same path.
    Dir(PathBuf),
    /// A symlink into another system tree (`/bin -> usr/bin`), made again as it is.
    Link { path: PathBuf, target: PathBuf },
}

/// The view of one sandbox, with every path resolved on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub system: Vec<System>,
    pub hides: Vec<Hide>,
    pub binds: Vec<Bind>,
    /// Every path asked to be visible read-only, whether or not it needs a mount of its own.
    pub exposed: Vec<PathBuf>,
    /// Size of each private writable tmpfs, in bytes.
    pub tmp_bytes: u64,
}

/// A problem found while planning, before any namespace exists.
pub(crate) type PlanError = String;

/// What a path lies in, for deciding whether it needs a mount of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    /// A system tree: visible, read-only.
    System,
    /// A named path: visible, writable or not.
    Bind { writable: bool },
    /// A hidden path or a private tmpfs: what lies below it is not the host's.
    Hidden,
}

/// The deepest of `regions` strictly above `path`, if any.
fn enclosing(path: &Path, regions: &[(PathBuf, Region)]) -> Option<Region> {
    regions
        .iter()
        .filter(|(r, _)| path != r && path.starts_with(r))
        .max_by_key(|(r, _)| r.components().count())
        .map(|(_, region)| *region)
}

/// The [`SYSTEM`] trees of this host.
pub fn system_trees() -> Vec<System> {
    let mut trees = Vec::new();
    for name in SYSTEM {
        let path = Path::new(name);
        let Ok(meta) = fs::symlink_metadata(path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let (Ok(target), Ok(real)) = (fs::read_link(path), path.canonicalize()) else {
                continue;
            };
            // A link into another system tree is made again as it is; a link elsewhere shows
            // what it leads to at its own name.
            let inside_system = SYSTEM.iter().any(|s| *s != *name && real.starts_with(s));
            if inside_system {
                trees.push(System::Link {
                    path: path.to_path_buf(),
                    target,
                });
            } else if real.is_dir() {
                trees.push(System::Dir(path.to_path_buf()));
            }
        } else if meta.is_dir() {
            trees.push(System::Dir(path.to_path_buf()));
        }
    }
    trees
}

impl Plan {
    /// Plans the view for `inv`. `home` is the program's `$HOME`, `helper` the running binary
    /// (kept visible so that `agentgrid ctl` works inside).
    pub(crate) fn new(
        inv: &Invocation,
        home: Option<&Path>,
        helper: Option<&Path>,
    ) -> Result<Plan, PlanError> {
        let spec = &inv.spec;
        let home = home
            .filter(|h| h.is_absolute() && *h != Path::new("/"))
            .and_then(|h| h.canonicalize().ok());
        // Every hidden place, as named and where it really is.
        let mut hidden: Vec<PathBuf> = Vec::new();
        for path in ALWAYS_HIDDEN
            .iter()
            .map(PathBuf::from)
            .chain(home.clone())
            .chain(spec.hide.iter().cloned())
        {
            if let Ok(real) = path.canonicalize()
                && !hidden.contains(&real)
            {
                hidden.push(real);
            }
            if !hidden.contains(&path) {
                hidden.push(path);
            }
        }
        // A named path is bound where it really is; when that is, through a link, inside a
        // hidden place, the engine did not name that place and nothing is bound.
        let named = |path: &Path, what: &str| -> Result<PathBuf, PlanError> {
            let real = path.canonicalize().map_err(|e| {
                format!(
                    "the {what} `{}` cannot be made visible in the sandbox: {e}",
                    path.display()
                )
            })?;
            if real != path
                && let Some(place) = hidden.iter().find(|h| real.starts_with(h))
            {
                return Err(format!(
                    "the {what} `{}` leads to `{}`, inside the hidden `{}`; the sandbox binds \
                     only the paths it is given, not where their links lead",
                    path.display(),
                    real.display(),
                    place.display()
                ));
            }
            Ok(real)
        };
        let workspace = named(&spec.workspace, "workspace")?;
        let mut binds = vec![Bind {
            path: workspace.clone(),
            writable: spec.filesystem == FilesystemMode::WorkspaceWrite,
        }];
        for path in &spec.writable {
            binds.push(Bind {
                path: named(path, "writable path")?,
                writable: true,
            });
        }
        for path in &spec.expose {
            binds.push(Bind {
                path: named(path, "exposed path")?,
                writable: false,
            });
        }
        if let Some(gateway) = &spec.gateway {
            binds.push(Bind {
                path: named(&gateway.socket, "gateway socket")?,
                writable: false,
            });
        }
        if let Some(git) = &spec.git {
            for (path, what) in [
                (&git.git_dir, "worktree's git directory"),
                (&git.common_dir, "repository's git directory"),
            ] {
                // Looked at without following links: the engine names real directories.
                let meta = fs::symlink_metadata(path).map_err(|e| {
                    format!(
                        "the {what} `{}` cannot be made visible in the sandbox: {e}",
                        path.display()
                    )
                })?;
                if !meta.is_dir() {
                    return Err(format!(
                        "the {what} `{}` is not a directory; the engine names the git \
                         metadata of the worktrees it made",
                        path.display()
                    ));
                }
                named(path, what)?;
            }
            for path in git.read_paths() {
                binds.push(Bind {
                    path: named(&path, "git directory")?,
                    writable: false,
                });
            }
        }
        // The program and the helper are host files the program needs even when they live
        // outside the system trees (an agent installed under a home directory, say). With the
        // host's network, so is the resolver configuration, which often links into /run.
        let resolver = (spec.network == NetworkMode::Host).then_some(Path::new("/etc/resolv.conf"));
        for path in [Some(inv.program.as_path()), helper, resolver]
            .into_iter()
            .flatten()
        {
            if let Ok(path) = path.canonicalize() {
                binds.push(Bind {
                    path,
                    writable: false,
                });
            }
        }
        if let Ok(cwd) = inv.cwd.canonicalize()
            && !binds.iter().any(|b| cwd.starts_with(&b.path))
        {
            binds.push(Bind {
                path: named(&inv.cwd, "working directory")?,
                writable: false,
            });
        }
        binds.sort_by(|a, b| {
            (a.path.components().count(), &a.path).cmp(&(b.path.components().count(), &b.path))
        });
        binds.dedup_by(|later, earlier| {
            // The same path twice: writable wins.
            if later.path == earlier.path {
                earlier.writable |= later.writable;
                true
            } else {
                false
            }
        });

        let system = system_trees();
        let mut hides: Vec<Hide> = Vec::new();
        let private = PRIVATE_WRITABLE
            .iter()
            .map(PathBuf::from)
            .chain(home.clone());
        for path in private {
            let real = path.canonicalize().unwrap_or(path);
            if !hides.iter().any(|h| h.path == real) && !binds.iter().any(|b| b.path == real) {
                hides.push(Hide {
                    path: real,
                    writable: true,
                    is_dir: true,
                });
            }
        }
        for path in ALWAYS_HIDDEN
            .iter()
            .map(PathBuf::from)
            .chain(spec.hide.clone())
        {
            // A symlink such as /var/run -> /run is hidden through its target.
            let Ok(real) = path.canonicalize() else {
                continue;
            };
            let Ok(meta) = fs::metadata(&real) else {
                continue;
            };
            // Hiding a named path would hide what the engine asked to show (the workspace
            // itself); a path inside it (the engine's state directory when the project itself
            // is the workspace) stays hidden, since hides and binds are applied shallowest
            // first.
            if real == Path::new("/")
                || hides.iter().any(|h| h.path == real)
                || binds.iter().any(|b| b.path == real)
            {
                continue;
            }
            hides.push(Hide {
                path: real,
                writable: false,
                is_dir: meta.is_dir(),
            });
        }

        // Which regions are visible, for deciding what needs a mount of its own: a hidden
        // path only where something visible lies right above it, a named path unless it lies
        // in a visible region with the same access.
        let mut regions: Vec<(PathBuf, Region)> = system
            .iter()
            .filter_map(|s| match s {
                System::Dir(path) => Some((path.clone(), Region::System)),
                System::Link { .. } => None,
            })
            .collect();
        regions.extend(binds.iter().map(|b| {
            (
                b.path.clone(),
                Region::Bind {
                    writable: b.writable,
                },
            )
        }));
        regions.extend(hides.iter().map(|h| (h.path.clone(), Region::Hidden)));
        hides.retain(|h| {
            h.writable
                || matches!(
                    enclosing(&h.path, &regions),
                    Some(Region::System | Region::Bind { .. })
                )
        });
        hides.sort_by_key(|h| h.path.components().count());
        let exposed = binds
            .iter()
            .filter(|b| !b.writable)
            .map(|b| b.path.clone())
            .collect();
        binds.retain(|b| match enclosing(&b.path, &regions) {
            Some(Region::System) => b.writable,
            Some(Region::Bind { writable }) => writable != b.writable,
            Some(Region::Hidden) | None => true,
        });
        let tmp_bytes = spec.limits.memory.map_or(1 << 30, |m| m.bytes());
        Ok(Plan {
            system,
            hides,
            binds,
            exposed,
            tmp_bytes,
        })
    }

    /// The directories the program may write, for the Landlock rules.
    pub(crate) fn writable_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.path.clone())
            .collect();
        paths.extend(
            self.hides
                .iter()
                .filter(|h| h.writable)
                .map(|h| h.path.clone()),
        );
        paths.push("/dev/shm".into());
        paths
    }

    /// The paths exposed read-only, for the Landlock rules (sockets in them must be reachable).
    pub(crate) fn exposed_paths(&self) -> Vec<PathBuf> {
        self.exposed.clone()
    }
}

fn err(what: String, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn new(path: &Path) -> PathBuf {
    Path::new("/newroot").join(path.strip_prefix("/").unwrap_or(path))
}

fn old(path: &Path) -> PathBuf {
    Path::new("/oldroot").join(path.strip_prefix("/").unwrap_or(path))
}

fn tmpfs(target: &Path, mode: &str, bytes: u64) -> Result<(), String> {
    let data = format!("mode={mode},size={bytes}");
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| err(format!("mounting a tmpfs on {}", target.display()), e))
}

/// Creates the mount point `target` (a directory, or an empty file when `is_dir` is false) if it
/// is missing. That only succeeds inside one of our tmpfs: the host's tree is read-only.
fn mount_point(target: &Path, is_dir: bool) -> Result<(), String> {
    if target.exists() {
        return Ok(());
    }
    let parent = target.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent).map_err(|e| {
        err(
            format!(
                "creating the mount point {} (only possible inside a hidden directory)",
                target.display()
            ),
            e,
        )
    })?;
    let made = if is_dir {
        fs::create_dir(target)
    } else {
        fs::write(target, b"")
    };
    made.map_err(|e| err(format!("creating the mount point {}", target.display()), e))
}

fn bind(source: &Path, target: &Path) -> Result<(), String> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        err(
            format!("binding {} to {}", source.display(), target.display()),
            e,
        )
    })
}

fn setattr(target: &Path, attrs: u64, recursive: bool) -> Result<(), String> {
    sys::mount_setattr(target, attrs, recursive).map_err(|e| {
        err(
            format!("changing the mount flags of {}", target.display()),
            e,
        )
    })
}

/// Builds the view in the current (new, private) mount namespace and makes it the root.
/// Runs in the sandbox's PID 1, which has every capability inside its user namespace.
///
/// `trees` holds, for each of the plan's binds in order, an idmapped tree to attach instead of
/// a plain bind (see [`crate::identity`]); `agent` is the program's uid when it runs as an
/// unprivileged identity, which then owns its private home.
pub(crate) fn build(
    plan: &Plan,
    trees: &[Option<OwnedFd>],
    agent: Option<u32>,
) -> Result<(), String> {
    let to_io = |what: &'static str| move |e: nix::Error| err(what.to_string(), io::Error::from(e));
    // Nothing done here may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(to_io("making the mount tree private"))?;
    tmpfs(Path::new("/tmp"), "0755", 16 << 20)?;
    for dir in ["/tmp/newroot", "/tmp/oldroot"] {
        fs::create_dir(dir).map_err(|e| err(format!("creating {dir}"), e))?;
    }
    nix::unistd::chdir("/tmp").map_err(to_io("entering the scratch root"))?;
    nix::unistd::pivot_root("/tmp", "/tmp/oldroot")
        .map_err(to_io("pivoting to the scratch root"))?;
    nix::unistd::chdir("/").map_err(to_io("entering the scratch root"))?;

    // 1. An empty root with the system trees, read-only.
    let root = Path::new("/newroot");
    tmpfs(root, "0755", 1 << 20)?;
    for tree in &plan.system {
        match tree {
            System::Dir(path) => {
                let target = new(path);
                fs::create_dir_all(&target)
                    .map_err(|e| err(format!("creating {}", target.display()), e))?;
                bind(&old(path), &target)?;
                setattr(
                    &target,
                    sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
                    true,
                )?;
            }
            System::Link { path, target } => {
                std::os::unix::fs::symlink(target, new(path))
                    .map_err(|e| err(format!("creating the link {}", path.display()), e))?;
            }
        }
    }

    // 2. /proc of the new PID namespace and a minimal /dev.
    for dir in ["/newroot/proc", "/newroot/dev"] {
        fs::create_dir_all(dir).map_err(|e| err(format!("creating {dir}"), e))?;
    }
    mount(
        Some("proc"),
        "/newroot/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(to_io("mounting a fresh /proc"))?;
    build_dev(plan)?;

    // 3. Hidden paths and what stays visible, shallowest first, so a path hidden inside a
    //    visible one (the state directory inside a project used as the workspace) and a path
    //    shown inside a hidden one (a worktree under a hidden directory) both come out right.
    //    At the same depth a hide goes first and the bind of the same path wins.
    let mut steps: Vec<(usize, u8, Step)> = plan
        .hides
        .iter()
        .map(|h| (h.path.components().count(), 0, Step::Hide(h)))
        .chain(plan.binds.iter().enumerate().map(|(i, b)| {
            (
                b.path.components().count(),
                1,
                Step::Bind(b, trees.get(i).and_then(Option::as_ref)),
            )
        }))
        .collect();
    steps.sort_by_key(|(depth, order, _)| (*depth, *order));
    let mut read_only = Vec::new();
    for (_, _, step) in steps {
        match step {
            Step::Hide(hide) => hide_path(hide, plan, agent, &mut read_only)?,
            Step::Bind(b, tree) => bind_path(b, tree)?,
        }
    }
    for target in read_only {
        setattr(&target, sys::MOUNT_ATTR_RDONLY, false)?;
    }
    // Every mount point exists now; the root itself becomes read-only.
    setattr(root, sys::MOUNT_ATTR_RDONLY, false)?;

    // The host's root and the scratch root go away; /newroot becomes /.
    umount2("/oldroot", MntFlags::MNT_DETACH).map_err(to_io("detaching the host's root"))?;
    nix::unistd::chdir("/newroot").map_err(to_io("entering the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(to_io("pivoting to the new root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(to_io("detaching the scratch root"))?;
    nix::unistd::chdir("/").map_err(to_io("entering the new root"))?;
    Ok(())
}

enum Step<'p> {
    Hide(&'p Hide),
    Bind(&'p Bind, Option<&'p OwnedFd>),
}

fn hide_path(
    hide: &Hide,
    plan: &Plan,
    agent: Option<u32>,
    read_only: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let target = new(&hide.path);
    if hide.writable {
        // A private directory is there whether or not the host has it (`/var/tmp`, `$HOME`).
        mount_point(&target, true)?;
    } else if !target.exists() {
        // An earlier hide already covers this path.
        return Ok(());
    }
    if hide.is_dir {
        if hide.writable {
            let shared = PRIVATE_WRITABLE.iter().any(|p| hide.path == Path::new(p));
            let mode = match (shared, agent) {
                (true, _) => "1777".to_string(),
                (false, None) => "0700".to_string(),
                (false, Some(id)) => format!("0700,uid={id},gid={id}"),
            };
            tmpfs(&target, &mode, plan.tmp_bytes)?;
        } else {
            tmpfs(&target, "0755", 1 << 20)?;
            read_only.push(target);
        }
    } else {
        fs::write("/empty", b"").map_err(|e| err("creating an empty file".into(), e))?;
        bind(Path::new("/empty"), &target)?;
        setattr(&target, sys::MOUNT_ATTR_RDONLY, false)?;
    }
    Ok(())
}

fn bind_path(b: &Bind, tree: Option<&OwnedFd>) -> Result<(), String> {
    let source = old(&b.path);
    let target = new(&b.path);
    let is_dir = fs::metadata(&source)
        .map(|m| m.is_dir())
        .map_err(|e| err(format!("looking at {}", b.path.display()), e))?;
    mount_point(&target, is_dir)?;
    match tree {
        Some(tree) => crate::identity::attach(tree, &target).map_err(|e| {
            err(
                format!(
                    "attaching the idmapped {} to {}",
                    b.path.display(),
                    target.display()
                ),
                e,
            )
        })?,
        None => bind(&source, &target)?,
    }
    let mut attrs = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
    if !b.writable {
        attrs |= sys::MOUNT_ATTR_RDONLY;
    }
    setattr(&target, attrs, true)
}

fn build_dev(plan: &Plan) -> Result<(), String> {
    let dev = Path::new("/newroot/dev");
    if !dev.is_dir() {
        return Ok(());
    }
    tmpfs(dev, "0755", 1 << 20)?;
    for name in DEVICES {
        let source = Path::new("/oldroot/dev").join(name);
        if !source.exists() {
            continue;
        }
        let target = dev.join(name);
        fs::write(&target, b"").map_err(|e| err(format!("creating {}", target.display()), e))?;
        bind(&source, &target)?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link))
            .map_err(|e| err(format!("creating /dev/{link}"), e))?;
    }
    let shm = dev.join("shm");
    fs::create_dir(&shm).map_err(|e| err("creating /dev/shm".into(), e))?;
    tmpfs(&shm, "1777", plan.tmp_bytes)?;
    let pts = dev.join("pts");
    fs::create_dir(&pts).map_err(|e| err("creating /dev/pts".into(), e))?;
    // Pseudo-terminals are a convenience (for tools that insist on one); without them the
    // sandbox still works, so a kernel that refuses a private devpts is not an error.
    let _ = mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    );
    fs::set_permissions(dev, fs::Permissions::from_mode(0o755))
        .map_err(|e| err("setting the mode of /dev".into(), e))?;
    setattr(dev, sys::MOUNT_ATTR_RDONLY, false)?;
    Ok(())
}

/// The view of [`FilesystemMode::None`]: the host's tree as it is, with only `/proc` replaced
/// so that the program sees its own PID namespace and nothing of the host's processes.
pub(crate) fn private_proc_only() -> Result<(), String> {
    let to_io = |what: &'static str| move |e: nix::Error| err(what.to_string(), io::Error::from(e));
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(to_io("making the mount tree private"))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(to_io("mounting a fresh /proc"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::GitMetadata;
    use crate::spec::SandboxSpec;

    fn invocation(spec: SandboxSpec) -> Invocation {
        Invocation {
            cwd: spec.workspace.clone(),
            spec,
            program: "/bin/sh".into(),
            arg0: "sh".into(),
            args: vec![],
            support: None,
            engine_pid: None,
        }
    }

    /// A project with a worktree under its state directory, laid out by hand.
    struct Layout {
        _root: tempfile::TempDir,
        project: PathBuf,
        state: PathBuf,
        ws: PathBuf,
        common: PathBuf,
    }

    fn layout() -> Layout {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().canonicalize().unwrap().join("project");
        let state = project.join(".agentgrid");
        let ws = state.join("workspaces/task-1");
        let common = project.join(".git");
        for dir in [
            &common.join("worktrees/task-1"),
            &common.join("objects"),
            &ws,
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        Layout {
            _root: root,
            project,
            state,
            ws,
            common,
        }
    }

    fn visible(plan: &Plan) -> Vec<(&Path, bool)> {
        plan.binds
            .iter()
            .map(|b| (b.path.as_path(), b.writable))
            .collect()
    }

    #[test]
    fn a_workspace_inside_a_hidden_directory_reappears_with_the_git_metadata_it_is_given() {
        let l = layout();
        fs::create_dir_all(l.state.join("run")).unwrap();
        let socket = l.state.join("run/7.sock");
        fs::write(&socket, "").unwrap();

        let mut spec = SandboxSpec::new(&l.ws);
        spec.hide = vec![l.state.clone(), l.project.join("does-not-exist")];
        spec.expose = vec![socket.clone()];
        spec.git = Some(GitMetadata::linked(&l.common, "task-1"));
        let plan = Plan::new(&invocation(spec), Some(Path::new("/nonexistent")), None).unwrap();

        let hidden: Vec<&Path> = plan.hides.iter().map(|h| h.path.as_path()).collect();
        assert!(
            !hidden.iter().any(|h| h.starts_with(&l.project)),
            "what is not visible needs no hiding: {hidden:?}"
        );
        assert!(
            !plan.binds.iter().any(|b| b.path.ends_with("sh")),
            "a program in a system tree is visible without a mount of its own"
        );
        let visible = visible(&plan);
        assert!(visible.contains(&(l.ws.as_path(), true)), "{visible:?}");
        assert!(visible.contains(&(socket.as_path(), false)), "{visible:?}");
        assert!(
            visible.contains(&(l.common.as_path(), false)),
            "{visible:?}"
        );
        assert!(
            !visible
                .iter()
                .any(|(p, _)| *p == l.project || *p == l.state),
            "the main checkout and the state directory stay out: {visible:?}"
        );
        // Shallowest first, so that nested mounts land on top.
        let depths: Vec<usize> = plan
            .binds
            .iter()
            .map(|b| b.path.components().count())
            .collect();
        assert!(depths.windows(2).all(|w| w[0] <= w[1]), "{depths:?}");
        assert!(plan.writable_paths().contains(&l.ws));
        assert!(plan.writable_paths().contains(&PathBuf::from("/tmp")));
        assert!(plan.system.contains(&System::Dir("/usr".into())));
    }

    #[test]
    fn the_workspace_git_file_is_never_read() {
        let l = layout();
        let secret = l.project.join("secret-dir");
        fs::create_dir_all(&secret).unwrap();
        fs::write(l.ws.join(".git"), format!("gitdir: {}\n", secret.display())).unwrap();
        let plan = Plan::new(&invocation(SandboxSpec::new(&l.ws)), None, None).unwrap();
        assert_eq!(visible(&plan), vec![(l.ws.as_path(), true)]);
        // Not even a FIFO or an endless file as `.git` is opened.
        fs::remove_file(l.ws.join(".git")).unwrap();
        nix::unistd::mkfifo(&l.ws.join(".git"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        Plan::new(&invocation(SandboxSpec::new(&l.ws)), None, None).unwrap();
    }

    #[test]
    fn git_metadata_must_be_real_directories() {
        let l = layout();
        let elsewhere = l.project.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let link = l.common.join("worktrees/task-2");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let mut spec = SandboxSpec::new(&l.ws);
        spec.git = Some(GitMetadata::linked(&l.common, "task-2"));
        let err = Plan::new(&invocation(spec.clone()), None, None).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        spec.git = Some(GitMetadata::linked(&l.common, "task-3"));
        let err = Plan::new(&invocation(spec), None, None).unwrap_err();
        assert!(err.contains("task-3"), "{err}");
    }

    #[test]
    fn a_named_path_that_leads_into_a_hidden_place_is_refused() {
        let l = layout();
        let home = tempfile::tempdir().unwrap();
        let home = home.path().canonicalize().unwrap();
        let link = l.project.join("to-home");
        std::os::unix::fs::symlink(&home, &link).unwrap();
        let mut spec = SandboxSpec::new(&l.ws);
        spec.expose = vec![link];
        let err = Plan::new(&invocation(spec), Some(&home), None).unwrap_err();
        assert!(err.contains("inside the hidden"), "{err}");
    }

    #[test]
    fn a_project_used_as_the_workspace_keeps_its_state_directory_hidden() {
        let l = layout();
        let mut spec = SandboxSpec::new(&l.project);
        spec.hide = vec![l.state.clone()];
        let plan = Plan::new(&invocation(spec), None, None).unwrap();
        assert!(
            plan.hides.iter().any(|h| h.path == l.state && !h.writable),
            "{:?}",
            plan.hides
        );
        assert!(
            !plan.hides.iter().any(|h| h.path == l.project),
            "the workspace itself is never hidden"
        );
    }

    #[test]
    fn read_only_mode_binds_the_workspace_read_only_and_hides_inside_it_stay_hidden() {
        let root = tempfile::tempdir().unwrap();
        let ws = root.path().canonicalize().unwrap().join("ws");
        fs::create_dir_all(ws.join("sub")).unwrap();
        let mut spec = SandboxSpec::new(&ws);
        spec.filesystem = FilesystemMode::ReadOnly;
        spec.hide = vec![ws.join("sub")];
        let plan = Plan::new(&invocation(spec), None, None).unwrap();
        let bind = plan.binds.iter().find(|b| b.path == ws).unwrap();
        assert!(!bind.writable);
        assert!(
            plan.hides.iter().any(|h| h.path == ws.join("sub")),
            "a path inside the workspace stays hidden"
        );
        assert!(
            !plan.hides.iter().any(|h| h.path == ws),
            "the workspace itself is never hidden"
        );
    }

    #[test]
    fn missing_visible_paths_are_refused_before_anything_starts() {
        let mut spec = SandboxSpec::new("/nonexistent/ws");
        let err = Plan::new(&invocation(spec.clone()), None, None).unwrap_err();
        assert!(err.contains("workspace `/nonexistent/ws`"), "{err}");
        let root = tempfile::tempdir().unwrap();
        spec.workspace = root.path().to_path_buf();
        spec.expose = vec!["/nonexistent/control.sock".into()];
        let err = Plan::new(&invocation(spec), None, None).unwrap_err();
        assert!(err.contains("exposed path"), "{err}");
    }
}
