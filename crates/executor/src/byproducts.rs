//! Validator byproducts: what the validators wrote into a worktree is removed before anything
//! else is committed there.
//!
//! Validators run right after the agent's work was committed, so every path that exists then
//! is the agent's (tracked, or ignored and never committed). A listing of the tree is taken
//! before the validators run; afterwards every file, link or directory that was not in it
//! (`__pycache__`, `.pytest_cache`, `.coverage`, reports) is removed. No git runs here: the
//! listing is the file system's own, so no configuration the agent wrote can change what is
//! seen or removed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A tree this large is not listed (and so not cleaned): the cost would outgrow the benefit.
const MAX_ENTRIES: usize = 500_000;

/// The paths under a worktree at one moment, relative to it; the worktree's `.git` is left out.
#[derive(Debug, Default)]
pub struct Listing {
    root: PathBuf,
    paths: HashSet<PathBuf>,
    complete: bool,
}

impl Listing {
    /// Lists every path under `root`, without following links.
    pub fn take(root: &Path) -> Listing {
        let mut paths = HashSet::new();
        let mut complete = true;
        let mut stack = vec![PathBuf::new()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let rel = dir.join(entry.file_name());
                if dir.as_os_str().is_empty() && entry.file_name() == ".git" {
                    continue;
                }
                if paths.len() >= MAX_ENTRIES {
                    complete = false;
                    break;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(rel.clone());
                }
                paths.insert(rel);
            }
        }
        Listing {
            root: root.to_path_buf(),
            paths,
            complete,
        }
    }

    /// Removes every path that was not there when the listing was taken, and returns them.
    /// New directories go whole, without being walked; links are removed, never followed.
    pub fn remove_new(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        if !self.complete {
            return removed;
        }
        let mut stack = vec![PathBuf::new()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(self.root.join(&dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let rel = dir.join(entry.file_name());
                if dir.as_os_str().is_empty() && entry.file_name() == ".git" {
                    continue;
                }
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if self.paths.contains(&rel) {
                    if is_dir {
                        stack.push(rel);
                    }
                    continue;
                }
                let path = self.root.join(&rel);
                // remove_dir_all never follows a link out of the tree it removes.
                let gone = if is_dir {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match gone {
                    Ok(()) => removed.push(rel),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "could not remove a validator's byproduct: {e}")
                    }
                }
            }
        }
        removed.sort();
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_appeared_after_the_listing_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("pkg/mod.py"), "x = 1\n").unwrap();
        std::fs::write(root.join(".git"), "gitdir: elsewhere\n").unwrap();
        let before = Listing::take(root);

        std::fs::create_dir_all(root.join("pkg/__pycache__")).unwrap();
        std::fs::write(root.join("pkg/__pycache__/mod.pyc"), "b").unwrap();
        std::fs::write(root.join(".coverage"), "c").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        std::fs::write(root.join("pkg/mod.py"), "x = 2\n").unwrap();

        let removed = before.remove_new();
        assert_eq!(
            removed,
            [".coverage", "link", "pkg/__pycache__"].map(PathBuf::from)
        );
        assert!(root.join("pkg/mod.py").exists());
        assert!(root.join(".git").exists());
        assert!(
            Path::new("/etc/passwd").exists(),
            "a link is never followed"
        );
    }
}
