//! The git directory of a task's worktree as the engine knows it, and the checks and repairs
//! made before host-side git touches it.
//!
//! The engine never asks the worktree where its git directory is: the `.git` file, the
//! `commondir` and `gitdir` files and `HEAD` are all files an agent can write (the `.git` file
//! always; the others when its manifest lets it commit by itself). So the git directory is
//! computed (`<common>/worktrees/task-<id>`) and checked to be a real directory under
//! `<common>/worktrees`, the pointer files are put back to what git wrote, the object store's
//! alternates must be what the repository had when it was found, and before a commit `HEAD`
//! must name the task's own branch.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use domain::TaskId;

use crate::Error;
use crate::git::Target;

/// Larger than any pointer or ref file git writes; more is not read.
const SMALL_FILE: u64 = 4096;

/// The files under `<common>/objects/info` that make git read objects from other places (a
/// path on the host, a URL). Writable `objects` would let an agent that commits by itself add
/// one, and every later host git command would then read objects from wherever it names.
const ALTERNATES: [&str; 2] = ["alternates", "http-alternates"];

/// The repository's git directories, found once from the main checkout.
#[derive(Debug, Clone)]
pub(crate) struct Repository {
    /// The common git directory, resolved (`<repo>/.git` for an ordinary checkout).
    pub common_dir: PathBuf,
    /// `-c` settings of the trusted drivers, given to every git command.
    pub drivers: Vec<String>,
    /// What each of [`ALTERNATES`] held when the repository was found (`None`: absent), which
    /// is what the user set up.
    pub alternates: Vec<Option<Vec<u8>>>,
}

impl Repository {
    pub fn new(common_dir: PathBuf, drivers: Vec<String>) -> Result<Repository, Error> {
        let mut alternates = Vec::new();
        for name in ALTERNATES {
            let path = common_dir.join("objects/info").join(name);
            alternates.push(read_alternates(&path).map_err(|source| Error::Io {
                action: "read",
                path: path.clone(),
                source,
            })?);
        }
        Ok(Repository {
            common_dir,
            drivers,
            alternates,
        })
    }

    pub fn target<'a>(&'a self, cwd: &'a Path) -> Target<'a> {
        Target::Repository {
            common_dir: &self.common_dir,
            cwd,
            drivers: &self.drivers,
        }
    }

    /// Refuses, once, when the object store's alternates differ from what they were when the
    /// repository was found, and puts them back: git would otherwise read objects from
    /// wherever the new file points. The refusal is what the caller reports; the next command
    /// finds the store as the user left it.
    pub fn check_objects(&self) -> Result<(), Error> {
        let info = self.common_dir.join("objects/info");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                action: "restore",
                path,
                source,
            }
        };
        if let Ok(meta) = fs::symlink_metadata(&info)
            && !meta.file_type().is_dir()
        {
            // A link here would make every name below it lead elsewhere.
            remove_any(&info).map_err(io(&info))?;
            fs::create_dir(&info).map_err(io(&info))?;
            // Puts back what the user had in it.
            let _ = self.check_objects();
            return Err(self.tampered(
                &info,
                "it was replaced by something that is not a directory; it was made again",
            ));
        }
        for (name, wanted) in ALTERNATES.iter().zip(&self.alternates) {
            let path = info.join(name);
            let found = match read_alternates(&path) {
                Ok(found) => found,
                // Something unreadable in its place counts as changed.
                Err(_) => Some(Vec::new()),
            };
            if found == *wanted {
                continue;
            }
            let undone = match wanted {
                None => {
                    remove_any(&path).map_err(io(&path))?;
                    "it was removed"
                }
                Some(content) => {
                    restore_bytes(&path, content).map_err(io(&path))?;
                    "it was put back as it was"
                }
            };
            tracing::warn!(path = %path.display(), "undid a change to the object alternates");
            return Err(self.tampered(
                &path,
                &format!(
                    "it was changed since agentgrid started, so git would read objects from the \
                     places it names; {undone}"
                ),
            ));
        }
        Ok(())
    }

    fn tampered(&self, path: &Path, reason: &str) -> Error {
        Error::TamperedRepository {
            path: self.common_dir.clone(),
            reason: format!("{}: {reason}", path.display()),
        }
    }

    pub fn worktrees_dir(&self) -> PathBuf {
        self.common_dir.join("worktrees")
    }

    /// The git directory git makes for the worktree `<root>/task-<id>`: worktrees are named after
    /// the last component of their path.
    pub fn task_git_dir(&self, task: TaskId) -> PathBuf {
        self.worktrees_dir().join(format!("task-{}", task.0))
    }

    /// The task's git directory, checked, with its pointer files put back. Errors when the
    /// directory is missing, is not a plain directory under `<common>/worktrees`, or cannot be
    /// repaired.
    pub fn task_git(&self, task: TaskId, work_tree: &Path) -> Result<TaskGit, Error> {
        self.check_objects()?;
        let git_dir = self.task_git_dir(task);
        let untrusted = |reason: String| Error::UntrustedGitDir {
            task,
            path: git_dir.clone(),
            reason,
        };
        match fs::symlink_metadata(&git_dir) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => return Err(untrusted("it is not a directory".into())),
            Err(e) => return Err(untrusted(format!("it cannot be read: {e}"))),
        }
        let resolved = git_dir
            .canonicalize()
            .map_err(|e| untrusted(format!("it cannot be resolved: {e}")))?;
        let worktrees = self
            .worktrees_dir()
            .canonicalize()
            .map_err(|e| untrusted(format!("the worktrees directory cannot be resolved: {e}")))?;
        if resolved.parent() != Some(worktrees.as_path()) {
            return Err(untrusted(format!(
                "it resolves to {}, outside {}",
                resolved.display(),
                worktrees.display()
            )));
        }
        let work_tree_resolved = work_tree.canonicalize().map_err(|source| Error::Io {
            action: "resolve the workspace",
            path: work_tree.to_path_buf(),
            source,
        })?;
        let git = TaskGit {
            task,
            git_dir: resolved,
            common_dir: self.common_dir.clone(),
            work_tree: work_tree.to_path_buf(),
            drivers: self.drivers.clone(),
        };
        // What `git worktree add` wrote: the worktree's `.git` names the git directory, and the
        // git directory's `gitdir` names the worktree's `.git` (git worktree list and prune read
        // it).
        let dot_git = work_tree.join(".git");
        restore(
            &dot_git,
            &format!("gitdir: {}\n", git.git_dir.display()),
            task,
        )?;
        restore(
            &git.git_dir.join("gitdir"),
            &format!("{}\n", work_tree_resolved.join(".git").display()),
            task,
        )?;
        // Per-worktree configuration is read when the repository enables
        // extensions.worktreeConfig, and in a task's git directory it is the agent's to write.
        let config = git.git_dir.join("config.worktree");
        if fs::symlink_metadata(&config).is_ok() {
            tracing::warn!(%task, path = %config.display(), "removing a per-worktree config the engine did not write");
            remove_any(&config).map_err(|source| Error::Io {
                action: "remove",
                path: config.clone(),
                source,
            })?;
        }
        Ok(git)
    }
}

/// A task worktree's git directory, checked by [`Repository::task_git`].
#[derive(Debug, Clone)]
pub(crate) struct TaskGit {
    pub task: TaskId,
    pub git_dir: PathBuf,
    pub common_dir: PathBuf,
    pub work_tree: PathBuf,
    pub drivers: Vec<String>,
}

/// What a worktree's `HEAD` says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// `ref: <name>`.
    Symbolic(String),
    /// The file says the refs live in a reftable; git must be asked.
    Reftable,
    /// Anything else (a detached commit, garbage), as read.
    Other(String),
}

impl TaskGit {
    pub fn target(&self) -> Target<'_> {
        Target::Worktree {
            git_dir: &self.git_dir,
            common_dir: &self.common_dir,
            work_tree: &self.work_tree,
            drivers: &self.drivers,
        }
    }

    /// The worktree's index file.
    pub fn index(&self) -> PathBuf {
        self.git_dir.join("index")
    }

    /// Reads `HEAD` of the engine's git directory without following links.
    pub fn head_file(&self) -> Result<Head, Error> {
        let path = self.git_dir.join("HEAD");
        let text = read_small(&path).map_err(|source| Error::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        let text = text.unwrap_or_default();
        Ok(match text.trim_end().strip_prefix("ref: ") {
            Some("refs/heads/.invalid") => Head::Reftable,
            Some(name) => Head::Symbolic(name.to_string()),
            None => Head::Other(text.trim().chars().take(200).collect()),
        })
    }

    /// Whether the loose ref `refs/heads/<branch>` is itself a symbolic ref or a link, which
    /// would let a commit on the branch move another one.
    pub fn branch_is_indirect(&self, branch: &str) -> Result<bool, Error> {
        let path = self.common_dir.join("refs/heads").join(branch);
        match fs::symlink_metadata(&path) {
            Err(_) => Ok(false),
            Ok(meta) if meta.file_type().is_symlink() => Ok(true),
            Ok(meta) if !meta.file_type().is_file() => Ok(true),
            Ok(_) => {
                let text = read_small(&path).map_err(|source| Error::Io {
                    action: "read",
                    path: path.clone(),
                    source,
                })?;
                Ok(text.unwrap_or_default().starts_with("ref:"))
            }
        }
    }
}

/// Reads a small regular file without following a link or waiting on a FIFO. `None` when it
/// is not a regular file.
fn read_small(path: &Path) -> std::io::Result<Option<String>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.file_type().is_file() {
        return Ok(None);
    }
    let mut text = String::new();
    file.take(SMALL_FILE).read_to_string(&mut text)?;
    Ok(Some(text))
}

/// What an alternates file holds, read without following a link; `None` when absent. A link,
/// directory or other non-file counts as a file with content no engine writes.
fn read_alternates(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
        Ok(meta) if !meta.file_type().is_file() => {
            return Ok(Some(format!("<{:?}>", meta.file_type()).into_bytes()));
        }
        Ok(_) => {}
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let mut content = Vec::new();
    file.take(1 << 20).read_to_end(&mut content)?;
    Ok(Some(content))
}

/// Writes `content` into `path` beside it and renames it over whatever is there.
fn restore_bytes(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.file_type().is_dir()
    {
        fs::remove_dir_all(path)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.agentgrid-{}", std::process::id()));
    let _ = remove_any(&temporary);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temporary)?;
    file.write_all(content)?;
    drop(file);
    fs::rename(&temporary, path)
}

/// Makes `path` a regular file holding exactly `content`, whatever is there now (a changed
/// file, a link, a directory the agent made). The new file is written beside it and renamed
/// over it, so that nobody sees it half written.
fn restore(path: &Path, content: &str, task: TaskId) -> Result<(), Error> {
    let io = |source| Error::Io {
        action: "restore",
        path: path.to_path_buf(),
        source,
    };
    match read_small(path) {
        Ok(Some(current)) if current == content => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => {
            tracing::warn!(%task, path = %path.display(), "restoring a git pointer file that was changed");
        }
    }
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.file_type().is_dir()
    {
        fs::remove_dir_all(path).map_err(io)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.agentgrid-{}", std::process::id()));
    let _ = remove_any(&temporary);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temporary)
        .map_err(io)?;
    file.write_all(content.as_bytes()).map_err(io)?;
    drop(file);
    fs::rename(&temporary, path).map_err(io)
}

/// Removes a file, link or directory tree (never following a link).
pub(crate) fn remove_any(path: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(path)?.file_type().is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_replaces_changed_files_links_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".git");
        let want = "gitdir: /repo/.git/worktrees/task-1\n";
        restore(&path, want, TaskId(1)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), want);

        fs::write(&path, "gitdir: evil\n").unwrap();
        restore(&path, want, TaskId(1)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), want);

        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        restore(&path, want, TaskId(1)).unwrap();
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
        assert_eq!(fs::read_to_string(&path).unwrap(), want);

        fs::remove_file(&path).unwrap();
        fs::create_dir_all(path.join("hooks")).unwrap();
        fs::write(path.join("config"), "[core]\n").unwrap();
        restore(&path, want, TaskId(1)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), want);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );
    }

    #[test]
    fn alternates_are_held_to_what_the_repository_had_when_found() {
        let dir = tempfile::tempdir().unwrap();
        let common = dir.path().join(".git");
        let info = common.join("objects/info");
        fs::create_dir_all(&info).unwrap();
        fs::write(info.join("alternates"), "/the/users/store\n").unwrap();
        let repo = Repository::new(common.clone(), Vec::new()).unwrap();
        repo.check_objects().unwrap();

        fs::write(info.join("http-alternates"), "http://example.invalid/\n").unwrap();
        let refused = repo.check_objects().unwrap_err().to_string();
        assert!(refused.contains("http-alternates"), "{refused}");
        assert!(refused.contains("it was removed"), "{refused}");
        assert!(!info.join("http-alternates").exists());

        fs::write(info.join("alternates"), "/somewhere/else\n").unwrap();
        let refused = repo.check_objects().unwrap_err().to_string();
        assert!(refused.contains("put back"), "{refused}");
        assert_eq!(
            fs::read_to_string(info.join("alternates")).unwrap(),
            "/the/users/store\n"
        );
        repo.check_objects().unwrap();

        // A link in place of the directory leads every name below it elsewhere.
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("alternates"), "/somewhere/else\n").unwrap();
        fs::remove_dir_all(&info).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &info).unwrap();
        assert!(repo.check_objects().is_err());
        assert!(fs::symlink_metadata(&info).unwrap().is_dir());
        assert!(
            elsewhere.join("alternates").exists(),
            "nothing behind the link was touched"
        );
        assert_eq!(
            fs::read_to_string(info.join("alternates")).unwrap(),
            "/the/users/store\n",
            "the user's alternates are back in the directory made again"
        );
        repo.check_objects().unwrap();
    }

    #[test]
    fn small_reads_do_not_follow_links_or_wait_on_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        assert_eq!(read_small(&link).unwrap(), None);
        let fifo = dir.path().join("fifo");
        nix_free_mkfifo(&fifo);
        assert_eq!(read_small(&fifo).unwrap(), None);
    }

    fn nix_free_mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
}
