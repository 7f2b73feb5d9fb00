//! Paths the model names, confined to the workspace.
//!
//! The model is the adversary here: every path in a tool call is hostile input. A path is
//! taken only when it is relative (or absolute inside the workspace), has no `..`, and no
//! symbolic link along it leads out of the workspace. Opening for a write never follows a link
//! in the last component, so a link planted between the check and the open is refused by the
//! kernel rather than followed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Why a path was refused; the text goes back to the model as the tool's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty; give a path relative to the workspace, such as `src/main.rs`")]
    Empty,
    #[error("`{0}` is outside the workspace: give a path relative to the workspace root")]
    Outside(String),
    #[error(
        "`{0}` contains `..`, which is not allowed: give a path inside the workspace without `..`"
    )]
    Parent(String),
    #[error("`{0}` goes through a symbolic link that leads outside the workspace")]
    LinkOut(String),
    #[error("`{0}` cannot be checked: {1}")]
    Unreadable(String, String),
}

/// The workspace root, as the kernel sees it (links resolved).
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    pub fn open(dir: &Path) -> io::Result<Workspace> {
        Ok(Workspace {
            root: dir.canonicalize()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The workspace path `given` names, checked: see the module's rules.
    pub fn resolve(&self, given: &str) -> Result<PathBuf, PathError> {
        if given.trim().is_empty() {
            return Err(PathError::Empty);
        }
        let shown = given.to_string();
        if given.contains('\0') {
            return Err(PathError::Outside(shown.replace('\0', "\\0")));
        }
        let path = Path::new(given);
        let relative = if path.is_absolute() {
            match path.strip_prefix(&self.root) {
                Ok(rest) => rest.to_path_buf(),
                Err(_) => return Err(PathError::Outside(shown)),
            }
        } else {
            path.to_path_buf()
        };
        let mut clean = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err(PathError::Parent(shown)),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(PathError::Outside(shown));
                }
            }
        }
        let full = self.root.join(&clean);
        // Every existing prefix, links resolved, must stay inside; the first missing one ends
        // the walk, since what is below it will be made by us as plain directories.
        let mut prefix = self.root.clone();
        for part in clean.components() {
            prefix.push(part);
            match prefix.symlink_metadata() {
                Ok(meta) => {
                    if meta.file_type().is_symlink() {
                        match prefix.canonicalize() {
                            Ok(real) if real.starts_with(&self.root) => {}
                            // A dangling link could be made to point anywhere by writing
                            // through it.
                            _ => return Err(PathError::LinkOut(shown)),
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(PathError::Unreadable(shown, e.to_string())),
            }
        }
        Ok(full)
    }

    /// The path shown back to the model: relative to the workspace.
    pub fn show(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(rest) if rest.as_os_str().is_empty() => ".".into(),
            Ok(rest) => rest.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }
}

/// Opens a resolved path for reading, refusing a link in its last component that was put
/// there after the check.
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).open(path)
}

/// Creates or truncates a resolved path for writing. The last component is never followed if
/// it is a link (`O_NOFOLLOW`), and missing parents are made as directories.
pub fn open_write(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}
