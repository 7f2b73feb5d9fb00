//! How much a worktree holds, measured against a quota before its content is committed.
//!
//! Whatever an agent leaves in its worktree is committed into the object store that every
//! branch of the repository shares, for good: branches are never deleted. So the size and the
//! number of files are checked before each commit, and a worktree over its quota is not
//! committed at all. The walk never follows symbolic links (an agent's link to `/` counts as one
//! small file), skips the `.git` entry, and stops as soon as a limit is passed, so measuring a
//! hostile tree costs at most the quota.

use std::fs;
use std::path::{Path, PathBuf};

/// The most a worktree may hold when it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Bytes of file content, counted by apparent size.
    pub bytes: u64,
    /// Entries: files, directories and links.
    pub files: u64,
}

impl Default for Quota {
    /// Generous for source trees with their dependencies installed, small enough that a
    /// runaway agent cannot fill the disk through its commits.
    fn default() -> Quota {
        Quota {
            bytes: 2 << 30,
            files: 200_000,
        }
    }
}

/// What a walk found, or where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measured {
    pub bytes: u64,
    pub files: u64,
}

/// A worktree over its quota: what was counted when the walk gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the workspace `{path}` holds more than {limit}, over its quota; nothing was committed. \
     Delete build output and other generated files (or list them in .gitignore), or raise \
     workspace.quota in .agentgrid/config.yaml"
)]
pub struct OverQuota {
    pub path: PathBuf,
    /// "2147483648 bytes" or "200000 files".
    pub limit: String,
}

/// Measures what a commit of `root` would add: `paths` are the changed and untracked files git
/// lists (relative to `root`, one entry per file), each counted by its own metadata. A file that
/// vanished meanwhile counts as nothing.
pub fn measure(root: &Path, paths: &[String], quota: Quota) -> Result<Measured, OverQuota> {
    let over = |limit: String| OverQuota {
        path: root.to_path_buf(),
        limit,
    };
    if paths.len() as u64 > quota.files {
        return Err(over(format!("{} files", quota.files)));
    }
    let mut found = Measured {
        bytes: 0,
        files: paths.len() as u64,
    };
    for path in paths {
        // The entry's own metadata: a symbolic link is never followed.
        if let Ok(meta) = fs::symlink_metadata(root.join(path))
            && meta.is_file()
        {
            found.bytes = found.bytes.saturating_add(meta.len());
        }
        if found.bytes > quota.bytes {
            return Err(over(format!("{} bytes", quota.bytes)));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("src/deep")).unwrap();
        fs::write(dir.path().join("src/a.txt"), vec![b'a'; 100]).unwrap();
        fs::write(dir.path().join("src/deep/b.txt"), vec![b'b'; 50]).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        let paths = ["src/a.txt", "src/deep/b.txt", "zero", "deleted.txt"]
            .map(String::from)
            .to_vec();
        (dir, paths)
    }

    #[test]
    fn counts_files_and_bytes_without_following_links() {
        let (dir, paths) = tree();
        let found = measure(dir.path(), &paths, Quota::default()).unwrap();
        assert_eq!(
            found,
            Measured {
                bytes: 150,
                files: 4
            }
        );
    }

    #[test]
    fn names_the_limit_passed() {
        let (dir, paths) = tree();
        let over = |quota| measure(dir.path(), &paths, quota).unwrap_err().limit;
        assert_eq!(
            over(Quota {
                bytes: 149,
                files: 10
            }),
            "149 bytes"
        );
        assert_eq!(
            over(Quota {
                bytes: 1000,
                files: 3
            }),
            "3 files"
        );
        assert!(
            measure(
                dir.path(),
                &paths,
                Quota {
                    bytes: 150,
                    files: 4
                }
            )
            .is_ok()
        );
        let err = measure(dir.path(), &paths, Quota { bytes: 1, files: 9 }).unwrap_err();
        assert!(err.to_string().contains("nothing was committed"), "{err}");
    }
}
