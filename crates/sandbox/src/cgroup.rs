//! Cgroup limits for one sandbox, on cgroup v1 or v2, where the host lets us create a child of
//! our own cgroup: memory for the whole execution, and a ceiling on its number of tasks.
//!
//! The helper creates `agentgrid-sandbox-<pid>` under its own cgroup of each controller, writes
//! the limits, and moves itself in before it starts anything, so every process of the sandbox
//! is counted. After the sandbox ends it moves back, reads what the kernel counted (out of
//! memory kills, refused forks) and removes the directory. A helper killed before that leaves
//! an empty directory behind, which the next helper removes.

use std::fs;
use std::path::{Path, PathBuf};

/// A controller agentgrid uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    Memory,
    Pids,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// Where this process's cgroup of one controller lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub version: Version,
    /// The directory of our own cgroup, under which a sandbox's cgroup is created.
    pub dir: PathBuf,
}

const PREFIX: &str = "agentgrid-sandbox-";

/// Finds our cgroup of `controller` from `/proc/self/cgroup` and `/proc/self/mountinfo`.
pub(crate) fn locate(controller: Controller) -> Result<Location, String> {
    let cgroups = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    locate_in(controller, &cgroups, &mountinfo)
}

fn locate_in(controller: Controller, cgroups: &str, mountinfo: &str) -> Result<Location, String> {
    let name = controller.name();
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_mountinfo).collect();
    // A controller bound to a v1 hierarchy is only usable there.
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if !list.split(',').any(|c| c == name) {
            continue;
        }
        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == name))
            .ok_or_else(|| format!("the {name} cgroup (v1) hierarchy is not mounted"))?;
        return Ok(Location {
            version: Version::V1,
            dir: join_cgroup(mount, path),
        });
    }
    let path = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| format!("no {name} cgroup: neither a v1 hierarchy nor cgroup v2"))?;
    let mount = mounts
        .iter()
        .find(|m| m.fstype == "cgroup2")
        .ok_or_else(|| "cgroup v2 is not mounted".to_string())?;
    let dir = join_cgroup(mount, path);
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    if !enabled.split_whitespace().any(|c| c == name) {
        return Err(format!(
            "the {name} controller is not enabled for children of {} (cgroup v2 \
             cgroup.subtree_control); ask for a delegated cgroup, e.g. run agentgrid in a \
             systemd user scope with Delegate=yes",
            dir.display()
        ));
    }
    Ok(Location {
        version: Version::V2,
        dir,
    })
}

struct Mount {
    root: String,
    point: String,
    fstype: String,
    options: String,
}

/// One line of mountinfo: `id parent maj:min root point opts [optional…] - fstype source super`.
fn parse_mountinfo(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let fields: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    Some(Mount {
        root: unescape(fields.get(3)?),
        point: unescape(fields.get(4)?),
        fstype: right.first()?.to_string(),
        options: right.get(2).copied().unwrap_or("").to_string(),
    })
}

/// Mountinfo escapes spaces, tabs, newlines and backslashes as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn join_cgroup(mount: &Mount, path: &str) -> PathBuf {
    // A mount of a sub-tree shows paths relative to its own root.
    let rel = path
        .strip_prefix(mount.root.as_str())
        .filter(|_| mount.root != "/")
        .unwrap_or(path);
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        PathBuf::from(&mount.point)
    } else {
        Path::new(&mount.point).join(rel)
    }
}

/// Checks that a child cgroup can be created and limited under `location`.
pub(crate) fn probe_writable(controller: Controller, location: &Location) -> Result<(), String> {
    let dir = location
        .dir
        .join(format!("agentgrid-probe-{}", std::process::id()));
    fs::create_dir(&dir).map_err(|e| {
        format!(
            "cannot create a cgroup under {}: {e}",
            location.dir.display()
        )
    })?;
    let file = limit_file(controller, location.version);
    let result = fs::write(dir.join(file), "max_test_value")
        .err()
        .map_or(Ok(()), |e| {
            // Writing garbage is refused with EINVAL when the file is writable at all.
            if e.raw_os_error() == Some(libc::EINVAL) {
                Ok(())
            } else {
                Err(format!("cannot write {file} in a new cgroup: {e}"))
            }
        });
    let _ = fs::remove_dir(&dir);
    result
}

fn limit_file(controller: Controller, version: Version) -> &'static str {
    match (controller, version) {
        (Controller::Memory, Version::V1) => "memory.limit_in_bytes",
        (Controller::Memory, Version::V2) => "memory.max",
        (Controller::Pids, _) => "pids.max",
    }
}

/// The cgroups of one running sandbox.
#[derive(Debug)]
pub(crate) struct SandboxCgroups {
    /// Each created directory, the cgroup we came from, and its controllers.
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    dir: PathBuf,
    parent: PathBuf,
    version: Version,
    controllers: Vec<Controller>,
}

/// What the kernel counted while the sandbox ran.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    pub oom_kills: u64,
    pub forks_refused: u64,
}

impl SandboxCgroups {
    /// Creates the cgroups for `limits` (controller, value) and moves this process into them.
    pub(crate) fn create(limits: &[(Controller, u64)]) -> Result<SandboxCgroups, String> {
        let pid = std::process::id();
        // Dropping `result` on an early return removes what was created so far.
        let mut result = SandboxCgroups {
            entries: Vec::new(),
        };
        for &(controller, value) in limits {
            let location = locate(controller)?;
            sweep_stale(&location.dir);
            let dir = location.dir.join(format!("{PREFIX}{pid}"));
            if let Some(entry) = result.entries.iter_mut().find(|e| e.dir == dir) {
                entry.controllers.push(controller);
            } else {
                fs::create_dir(&dir)
                    .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
                result.entries.push(Entry {
                    dir: dir.clone(),
                    parent: location.dir.clone(),
                    version: location.version,
                    controllers: vec![controller],
                });
            }
            let write = |file: &str, text: String| {
                fs::write(dir.join(file), &text).map_err(|e| {
                    format!("cannot write {text} to {}: {e}", dir.join(file).display())
                })
            };
            let version = location.version;
            write(limit_file(controller, version), value.to_string())?;
            // Swap must not extend the memory limit: the limit of memory plus swap equals the
            // memory limit where the host accounts swap.
            if controller == Controller::Memory {
                let swap = match version {
                    Version::V1 => ("memory.memsw.limit_in_bytes", value.to_string()),
                    Version::V2 => ("memory.swap.max", "0".to_string()),
                };
                if dir.join(swap.0).exists() {
                    write(swap.0, swap.1)?;
                }
            }
        }
        for entry in &result.entries {
            fs::write(entry.dir.join("cgroup.procs"), pid.to_string()).map_err(|e| {
                format!(
                    "cannot move the sandbox into the cgroup {}: {e}",
                    entry.dir.display()
                )
            })?;
        }
        Ok(result)
    }

    /// Reads what the kernel counted.
    pub(crate) fn counters(&self) -> Counters {
        let mut counters = Counters::default();
        for entry in &self.entries {
            for controller in &entry.controllers {
                match (controller, entry.version) {
                    (Controller::Memory, Version::V1) => {
                        counters.oom_kills +=
                            read_key(&entry.dir.join("memory.oom_control"), "oom_kill");
                    }
                    (Controller::Memory, Version::V2) => {
                        counters.oom_kills +=
                            read_key(&entry.dir.join("memory.events"), "oom_kill");
                    }
                    (Controller::Pids, _) => {
                        counters.forks_refused += read_key(&entry.dir.join("pids.events"), "max");
                    }
                }
            }
        }
        counters
    }
}

impl Drop for SandboxCgroups {
    /// Moves this process back to where it came from and removes the cgroups. Best effort: a
    /// directory left behind is empty and removed by the next helper.
    fn drop(&mut self) {
        let pid = std::process::id().to_string();
        for entry in self.entries.drain(..) {
            let _ = fs::write(entry.parent.join("cgroup.procs"), &pid);
            let _ = fs::remove_dir(&entry.dir);
        }
    }
}

/// Removes the directories of helpers that died without cleaning up. A cgroup that still has
/// processes cannot be removed, so a live sandbox is never touched; a directory whose helper
/// still runs is left alone too, since that helper may be about to move in.
fn sweep_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// The number after `key` in a flat keyed file such as `memory.events`.
fn read_key(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
27 25 0:25 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
28 25 0:26 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_controllers_are_found_in_their_hierarchy() {
        let cgroups = "8:pids:/\n4:memory:/process_api/abc\n0::/\n";
        let mem = locate_in(Controller::Memory, cgroups, MOUNTINFO).unwrap();
        assert_eq!(mem.version, Version::V1);
        assert_eq!(mem.dir, Path::new("/sys/fs/cgroup/memory/process_api/abc"));
        let pids = locate_in(Controller::Pids, cgroups, MOUNTINFO).unwrap();
        assert_eq!(pids.dir, Path::new("/sys/fs/cgroup/pids"));
    }

    #[test]
    fn v2_needs_the_controller_delegated() {
        let mountinfo = "28 25 0:26 / /nonexistent/cgroup rw - cgroup2 cgroup2 rw\n";
        let err = locate_in(Controller::Pids, "0::/user.slice\n", mountinfo).unwrap_err();
        assert!(err.contains("not enabled for children"), "{err}");
        assert!(err.contains("/nonexistent/cgroup/user.slice"), "{err}");
    }

    #[test]
    fn a_missing_hierarchy_is_reported() {
        let err = locate_in(Controller::Memory, "4:memory:/\n", "").unwrap_err();
        assert!(err.contains("not mounted"), "{err}");
    }

    #[test]
    fn keyed_files_are_read_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.events");
        fs::write(&path, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n").unwrap();
        assert_eq!(read_key(&path, "oom_kill"), 2);
        assert_eq!(read_key(&path, "max"), 3);
        assert_eq!(read_key(&path, "absent"), 0);
    }
}
