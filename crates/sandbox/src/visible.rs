//! Whether a host path will be there inside a sandbox, asked before anything starts.
//!
//! The view (see [`crate::view`]) is an allow-list, so a file the engine did not name and that
//! lies outside the system trees is simply absent inside: an interpreter under a home
//! directory (pyenv, nvm, a virtualenv) makes a script's `#!` line point at nothing, and the
//! kernel reports that as the script itself missing. `validate`, `doctor` and the executor ask
//! this first, so the mistake is named for what it is.

use std::path::{Path, PathBuf};

use crate::spec::{FilesystemMode, SandboxSpec};
use crate::view::{ALWAYS_HIDDEN, SYSTEM};

/// Where a path stands in the view `spec` plans for a program whose `$HOME` is `home`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// It is there inside (a system tree, the workspace, a path the spec names), or the spec
    /// does not isolate the filesystem.
    Shown,
    /// It is absent inside; `hidden_by` is the hidden place it lies in, or `None` when it lies
    /// outside every tree the view shows.
    Hidden {
        real: PathBuf,
        hidden_by: Option<PathBuf>,
    },
    /// It does not exist on the host either.
    Missing,
}

/// Whether `path` is visible to a program sandboxed by `spec`. Links are followed on the host,
/// as the view binds what a path really is.
pub fn visibility(spec: &SandboxSpec, home: Option<&Path>, path: &Path) -> Visibility {
    let Ok(real) = path.canonicalize() else {
        return Visibility::Missing;
    };
    if spec.filesystem == FilesystemMode::None {
        return Visibility::Shown;
    }
    let real_of = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let named = std::iter::once(spec.workspace.clone())
        .chain(spec.writable.iter().cloned())
        .chain(spec.expose.iter().cloned())
        .chain(spec.git.iter().flat_map(|g| g.read_paths()));
    if named.map(|p| real_of(&p)).any(|p| real.starts_with(p)) {
        return Visibility::Shown;
    }
    let hidden = ALWAYS_HIDDEN
        .iter()
        .map(PathBuf::from)
        .chain(
            home.filter(|h| h.is_absolute() && *h != Path::new("/"))
                .map(Path::to_path_buf),
        )
        .chain(spec.hide.iter().cloned())
        .map(|p| real_of(&p))
        .filter(|p| real.starts_with(p))
        // The innermost place: a home inside `/tmp` is named as the home, so that what is
        // offered to expose is the toolchain right inside it, not the whole home.
        .max_by_key(|p| p.components().count());
    if let Some(place) = hidden {
        return Visibility::Hidden {
            real,
            hidden_by: Some(place),
        };
    }
    if SYSTEM
        .iter()
        .map(|s| real_of(Path::new(s)))
        .any(|s| real.starts_with(s))
    {
        return Visibility::Shown;
    }
    Visibility::Hidden {
        real,
        hidden_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_trees_and_the_workspace_are_shown_and_homes_are_not() {
        let project = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let tool = home.path().join("python3");
        std::fs::write(&tool, "").unwrap();
        let spec = SandboxSpec::new(project.path());
        assert_eq!(
            visibility(&spec, None, Path::new("/bin/sh")),
            Visibility::Shown
        );
        let script = project.path().join("agent.sh");
        std::fs::write(&script, "").unwrap();
        assert_eq!(visibility(&spec, None, &script), Visibility::Shown);
        // The temporary directory is hidden in every view, and so is `$HOME`.
        let Visibility::Hidden { hidden_by, .. } = visibility(&spec, Some(home.path()), &tool)
        else {
            panic!("a file in the home is hidden");
        };
        assert!(hidden_by.is_some());
        assert_eq!(
            visibility(&spec, None, &home.path().join("nothing")),
            Visibility::Missing
        );
        let mut open = spec.clone();
        open.filesystem = FilesystemMode::None;
        assert_eq!(
            visibility(&open, Some(home.path()), &tool),
            Visibility::Shown
        );
        let mut exposed = spec;
        exposed.expose.push(tool.clone());
        assert_eq!(
            visibility(&exposed, Some(home.path()), &tool),
            Visibility::Shown
        );
    }

    #[test]
    fn a_home_inside_the_temporary_directory_is_named_as_the_home() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap().join("home");
        std::fs::create_dir_all(home.join(".nvm/bin")).unwrap();
        let node = home.join(".nvm/bin/node");
        std::fs::write(&node, "").unwrap();
        let spec = SandboxSpec::new("/nonexistent/agentgrid-workspace");
        assert_eq!(
            visibility(&spec, Some(&home), &node),
            Visibility::Hidden {
                real: node.clone(),
                hidden_by: Some(home.clone()),
            }
        );
    }
}
