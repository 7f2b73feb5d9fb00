//! The filesystem the sandboxed program sees, planned on the host and built in the new mount
//! namespace.
//!
//! The view is built the way container runtimes do it, so that every source stays reachable
//! while the view is assembled: a scratch tmpfs becomes the root for a moment, with the host's
//! root under `/oldroot`; the new root is then assembled at `/newroot` from `/oldroot`, and
//! finally becomes the root itself while the scratch tmpfs and the host's root are detached.
//!
//! What `/newroot` holds, in order:
//! 1. the host's whole tree, recursively bound and made read-only, nosuid and nodev;
//! 2. a fresh `/proc` (of the new PID namespace) and a minimal `/dev`;
//! 3. empty tmpfs over the hidden paths: home directories, `/run`, `/tmp`, `/var/tmp`, the
//!    spec's `hide` list (read-only once done), and a private writable `/tmp`, `/var/tmp` and
//!    `$HOME`;
//! 4. bind mounts of the paths that must stay visible (workspace, writable paths, exposed
//!    files, git metadata, the gateway socket), shallowest first, so that a path inside a hidden
//!    directory gets a mount point in the empty tmpfs and reappears.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::git::GitMetadata;
use crate::spec::{FilesystemMode, Invocation, NetworkMode};
use crate::sys;

/// Paths hidden in every sandbox with filesystem isolation: other users' homes, runtime
/// sockets, shared temporary directories and password hashes.
const ALWAYS_HIDDEN: &[&str] = &[
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

/// The view of one sandbox, with every path resolved on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub hides: Vec<Hide>,
    pub binds: Vec<Bind>,
    /// Every path asked to be visible read-only, whether or not it needs a mount of its own.
    pub exposed: Vec<PathBuf>,
    /// Size of each private writable tmpfs, in bytes.
    pub tmp_bytes: u64,
}

/// A problem found while planning, before any namespace exists.
pub(crate) type PlanError = String;

impl Plan {
    /// Plans the view for `inv`. `home` is the program's `$HOME`, `helper` the running binary
    /// (kept visible so that `agentgrid ctl` works inside).
    pub(crate) fn new(
        inv: &Invocation,
        home: Option<&Path>,
        helper: Option<&Path>,
    ) -> Result<Plan, PlanError> {
        let spec = &inv.spec;
        let resolve = |path: &Path, what: &str| {
            path.canonicalize().map_err(|e| {
                format!(
                    "the {what} `{}` cannot be made visible in the sandbox: {e}",
                    path.display()
                )
            })
        };
        let workspace = resolve(&spec.workspace, "workspace")?;
        let mut binds = vec![Bind {
            path: workspace.clone(),
            writable: spec.filesystem == FilesystemMode::WorkspaceWrite,
        }];
        for path in &spec.writable {
            binds.push(Bind {
                path: resolve(path, "writable path")?,
                writable: true,
            });
        }
        for path in &spec.expose {
            binds.push(Bind {
                path: resolve(path, "exposed path")?,
                writable: false,
            });
        }
        if let Some(gateway) = &spec.gateway {
            binds.push(Bind {
                path: resolve(&gateway.socket, "gateway socket")?,
                writable: false,
            });
        }
        if let Some(git) = GitMetadata::read(&workspace).map_err(|e| e.to_string())? {
            for path in git.read_paths() {
                binds.push(Bind {
                    path,
                    writable: false,
                });
            }
        }
        // The program and the helper are host files the program needs even when they live in
        // a hidden directory (an agent installed under a home directory, say). With the host's
        // network, so is the resolver configuration, which often links into /run.
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
                path: cwd,
                writable: false,
            });
        }

        let mut hides = Vec::new();
        let mut seen = BTreeSet::new();
        let home = home
            .filter(|h| h.is_absolute() && *h != Path::new("/"))
            .and_then(|h| h.canonicalize().ok());
        let requested = ALWAYS_HIDDEN
            .iter()
            .map(|p| (PathBuf::from(p), PRIVATE_WRITABLE.contains(p)))
            .chain(home.map(|h| (h, true)))
            .chain(spec.hide.iter().map(|p| (p.clone(), false)));
        for (path, writable) in requested {
            // A symlink such as /var/run -> /run is hidden through its target.
            let Ok(real) = path.canonicalize() else {
                continue;
            };
            let Ok(meta) = fs::metadata(&real) else {
                continue;
            };
            if real == Path::new("/") || !seen.insert(real.clone()) {
                continue;
            }
            // Hiding the workspace itself would hide the work. A path inside it (the engine's
            // state directory when the project itself is the workspace) stays hidden: hides and
            // binds are applied shallowest first, so it is hidden after the workspace is bound.
            if real == workspace {
                continue;
            }
            hides.push(Hide {
                path: real,
                writable,
                is_dir: meta.is_dir(),
            });
        }
        // A path hidden inside a directory that is already hidden needs no mount of its own,
        // unless something visible lies in between (the workspace, shown again inside a hidden
        // /tmp, with the state directory inside it).
        let hidden_dirs: Vec<PathBuf> = hides
            .iter()
            .filter(|h| h.is_dir)
            .map(|h| h.path.clone())
            .collect();
        hides.retain(|h| {
            !hidden_dirs.iter().any(|d| {
                h.path != *d
                    && h.path.starts_with(d)
                    && !binds
                        .iter()
                        .any(|b| h.path.starts_with(&b.path) && b.path.starts_with(d))
            })
        });
        hides.sort_by_key(|h| h.path.components().count());

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
        // A read-only path outside every hidden directory is already visible, read-only, as
        // part of the host's tree. Otherwise a path needs its own mount unless it lies in a
        // visible path with the same access and no hidden directory in between.
        let all = binds.clone();
        let exposed = all
            .iter()
            .filter(|b| !b.writable)
            .map(|b| b.path.clone())
            .collect();
        binds.retain(|b| {
            let hidden = |outer: Option<&Path>| {
                hides.iter().any(|h| {
                    b.path.starts_with(&h.path) && outer.is_none_or(|o| h.path.starts_with(o))
                })
            };
            if !b.writable && !hidden(None) {
                return false;
            }
            !all.iter().any(|outer| {
                outer.path != b.path
                    && b.path.starts_with(&outer.path)
                    && outer.writable == b.writable
                    && !hidden(Some(&outer.path))
            })
        });
        let tmp_bytes = spec.limits.memory.map_or(1 << 30, |m| m.bytes());
        Ok(Plan {
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
pub(crate) fn build(plan: &Plan) -> Result<(), String> {
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

    // 1. The host, read-only.
    bind(Path::new("/oldroot"), Path::new("/newroot"))?;
    setattr(
        Path::new("/newroot"),
        sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
        true,
    )?;

    // 2. /proc of the new PID namespace and a minimal /dev.
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
        .chain(
            plan.binds
                .iter()
                .map(|b| (b.path.components().count(), 1, Step::Bind(b))),
        )
        .collect();
    steps.sort_by_key(|(depth, order, _)| (*depth, *order));
    let mut read_only = Vec::new();
    for (_, _, step) in steps {
        match step {
            Step::Hide(hide) => hide_path(hide, plan, &mut read_only)?,
            Step::Bind(b) => bind_path(b)?,
        }
    }
    for target in read_only {
        setattr(&target, sys::MOUNT_ATTR_RDONLY, false)?;
    }

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
    Bind(&'p Bind),
}

fn hide_path(hide: &Hide, plan: &Plan, read_only: &mut Vec<PathBuf>) -> Result<(), String> {
    let target = new(&hide.path);
    // An earlier hide may already cover this path.
    if !target.exists() {
        return Ok(());
    }
    if hide.is_dir {
        if hide.writable {
            let shared = PRIVATE_WRITABLE.iter().any(|p| hide.path == Path::new(p));
            let mode = if shared { "1777" } else { "0700" };
            tmpfs(&target, mode, plan.tmp_bytes)?;
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

fn bind_path(b: &Bind) -> Result<(), String> {
    let source = old(&b.path);
    let target = new(&b.path);
    let is_dir = fs::metadata(&source)
        .map(|m| m.is_dir())
        .map_err(|e| err(format!("looking at {}", b.path.display()), e))?;
    mount_point(&target, is_dir)?;
    bind(&source, &target)?;
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
    use crate::spec::SandboxSpec;

    fn invocation(spec: SandboxSpec) -> Invocation {
        Invocation {
            cwd: spec.workspace.clone(),
            spec,
            program: "/bin/sh".into(),
            arg0: "sh".into(),
            args: vec![],
            support: None,
        }
    }

    #[test]
    fn a_workspace_inside_a_hidden_directory_reappears_with_its_git_metadata() {
        let root = tempfile::tempdir().unwrap();
        let root_path = root.path().canonicalize().unwrap();
        let state = root_path.join("project/.agentgrid");
        let ws = state.join("workspaces/task-1");
        let common = root_path.join("project/.git");
        fs::create_dir_all(common.join("worktrees/task-1")).unwrap();
        fs::create_dir_all(common.join("objects")).unwrap();
        fs::write(common.join("worktrees/task-1/commondir"), "../..\n").unwrap();
        fs::create_dir_all(&ws).unwrap();
        fs::write(
            ws.join(".git"),
            format!("gitdir: {}\n", common.join("worktrees/task-1").display()),
        )
        .unwrap();
        fs::create_dir_all(state.join("run")).unwrap();
        let socket = state.join("run/7.sock");
        fs::write(&socket, "").unwrap();

        let mut spec = SandboxSpec::new(&ws);
        spec.hide = vec![state.clone(), root_path.join("does-not-exist")];
        spec.expose = vec![socket.clone()];
        let plan = Plan::new(&invocation(spec), Some(Path::new("/nonexistent")), None).unwrap();

        let hidden: Vec<&Path> = plan.hides.iter().map(|h| h.path.as_path()).collect();
        assert!(hidden.iter().any(|h| state.starts_with(h)), "{hidden:?}");
        assert!(
            !hidden.iter().any(|h| h != &state && h.starts_with(&state)),
            "nothing is hidden twice: {hidden:?}"
        );
        assert!(
            !hidden.iter().any(|h| h.ends_with("does-not-exist")),
            "missing paths need no hiding: {hidden:?}"
        );
        assert!(
            !plan.binds.iter().any(|b| b.path.ends_with("sh")),
            "a program outside hidden directories is visible without a mount of its own"
        );
        let visible: Vec<(&Path, bool)> = plan
            .binds
            .iter()
            .map(|b| (b.path.as_path(), b.writable))
            .collect();
        assert!(visible.contains(&(ws.as_path(), true)), "{visible:?}");
        assert!(visible.contains(&(socket.as_path(), false)), "{visible:?}");
        assert!(visible.contains(&(common.as_path(), false)), "{visible:?}");
        // Shallowest first, so that nested mounts land on top.
        let depths: Vec<usize> = plan
            .binds
            .iter()
            .map(|b| b.path.components().count())
            .collect();
        assert!(depths.windows(2).all(|w| w[0] <= w[1]), "{depths:?}");
        assert!(plan.writable_paths().contains(&ws));
        assert!(plan.writable_paths().contains(&PathBuf::from("/tmp")));
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
