//! Where an engine keeps its short-lived files: control sockets, prompt files, the gateway socket.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The run directory for the project whose state lives in `state_dir`.
///
/// These files live for one execution and are never needed after a restart, so they belong on a
/// memory-backed filesystem: `$XDG_RUNTIME_DIR` when the session has one, else `/dev/shm`, in a
/// directory only this user can enter. Creating and deleting two files per execution on a disk
/// filesystem was a measurable part of starting one, and short paths also keep Unix socket names
/// within their 108 bytes. When neither place is usable, `<state_dir>/run` serves.
pub fn runtime_dir(state_dir: &Path) -> PathBuf {
    let fallback = state_dir.join("run");
    let canonical = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.to_path_buf());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    canonical.hash(&mut hasher);
    let project = format!("{:016x}", hasher.finish());
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let bases = [
        std::env::var_os("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("agentgrid")),
        Some(PathBuf::from(format!("/dev/shm/agentgrid-{uid}"))),
    ];
    for base in bases.into_iter().flatten() {
        if private_dir(&base, uid) {
            return base.join(project);
        }
    }
    fallback
}

/// True when `dir` is (or could be made) a real directory owned by `uid` that nobody else may
/// enter. A directory someone else planted, or a symlink, is refused.
fn private_dir(dir: &Path, uid: u32) -> bool {
    if !dir.parent().is_some_and(Path::is_dir) {
        return false;
    }
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_project_gets_its_own_private_directory() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dir_a = runtime_dir(a.path());
        assert_eq!(dir_a, runtime_dir(a.path()), "stable for one project");
        assert_ne!(dir_a, runtime_dir(b.path()), "distinct between projects");
        let base = dir_a.parent().unwrap();
        if base != a.path() {
            let meta = std::fs::metadata(base).unwrap();
            assert_eq!(meta.mode() & 0o077, 0, "only its owner may enter");
        }
    }

    #[test]
    fn a_directory_planted_by_someone_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::DirBuilder::new()
            .mode(0o777)
            .create(&open)
            .unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        // SAFETY: getuid cannot fail.
        assert!(!private_dir(&open, unsafe { libc::getuid() }));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(!private_dir(&link, unsafe { libc::getuid() }));
    }
}
