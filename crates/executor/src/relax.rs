//! The manifest's own sandbox relaxations, `sandbox.expose` (read-only) and `sandbox.writable`
//! (read-write): host paths bound into the view at the same place, so that a toolchain under a
//! home directory, or a package cache, is there on purpose.
//!
//! A relaxation may not undo what the sandbox hides for the engine's sake: the project's state
//! directory (the store, the run directory with every execution's socket and token, the other
//! tasks' worktrees), the main repository's git directory, the main checkout (its untracked
//! files, `.env` included), the user's whole home, `/` and the kernel's trees `/proc`, `/sys`
//! and `/dev`. [`refused`] says why a path may not be given; `validate` reports it at the
//! manifest's line and the executor refuses to start an execution with it.

use std::path::{Path, PathBuf};

/// The places a relaxation may neither lie in nor hold, as this host has them.
#[derive(Debug, Clone, Default)]
pub struct Guarded {
    /// The project's state directory (`.agentgrid`).
    pub state_dir: PathBuf,
    /// The main checkout, the repository's working tree.
    pub main_checkout: Option<PathBuf>,
    /// The main repository's git directory.
    pub git_dir: Option<PathBuf>,
    /// Where the tasks' worktrees live.
    pub worktrees: Option<PathBuf>,
    /// The user's home directory.
    pub home: Option<PathBuf>,
}

impl Guarded {
    /// The places of one execution's sandbox, and the engine's `$HOME`.
    pub fn of(places: &crate::SandboxPlaces) -> Guarded {
        Guarded {
            state_dir: places.state_dir.clone(),
            main_checkout: places.main_checkout.clone(),
            git_dir: places
                .git
                .as_ref()
                .map(|g| g.common_dir.clone())
                .or_else(|| places.main_checkout.as_ref().map(|m| m.join(".git")))
                .or_else(|| Some(places.workspace.join(".git"))),
            worktrees: places.worktrees.clone(),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }
}

/// The kernel's trees: a view of the host's processes, devices and kernel state.
const KERNEL: &[&str] = &["/proc", "/sys", "/dev"];

/// Why `path`, given under `sandbox.<field>`, may not be bound into an agent's sandbox, with
/// what to do instead; `None` when it may.
pub fn refused(field: &str, path: &Path, guarded: &Guarded) -> Option<String> {
    let shown = path.display();
    let real = match path.canonicalize() {
        Ok(real) => real,
        Err(e) => {
            return Some(format!(
                "`sandbox.{field}` names `{shown}`, which is not there on this host ({e}): \
                 create it, or remove it from the list"
            ));
        }
    };
    if real != path {
        return Some(format!(
            "`sandbox.{field}` names `{shown}`, which leads to `{}`; the sandbox binds a path \
             where it really is, so give `{}` instead",
            real.display(),
            real.display()
        ));
    }
    if real == Path::new("/") {
        return Some(format!(
            "`sandbox.{field}` names `/`, the whole filesystem: name the directory that holds \
             the toolchain itself, or give the agent `sandbox: {{filesystem: none}}` knowingly"
        ));
    }
    for kernel in KERNEL {
        if real.starts_with(kernel) {
            return Some(format!(
                "`sandbox.{field}` names `{shown}`, inside `{kernel}`, which the sandbox \
                 provides itself (a private view): remove it from the list"
            ));
        }
    }
    let real_of = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let places = [
        (
            Some(&guarded.state_dir),
            "the project's state directory",
            "it holds the store, every execution's control socket and token, and the other \
             tasks' worktrees",
        ),
        (
            guarded.git_dir.as_ref(),
            "the main repository's git directory",
            "the agent's worktree already shows the git metadata it needs, read-only",
        ),
        (
            guarded.worktrees.as_ref(),
            "the tasks' worktrees",
            "each agent sees only its own task's worktree",
        ),
        (
            guarded.main_checkout.as_ref(),
            "the main checkout",
            "its untracked files (`.env` among them) stay out of every sandbox; the agent's \
             worktree already holds the committed files",
        ),
    ];
    for (place, what, why) in places {
        let Some(place) = place.map(|p| real_of(p)) else {
            continue;
        };
        if real.starts_with(&place) {
            return Some(format!(
                "`sandbox.{field}` names `{shown}`, inside {what} `{}`: {why}; remove it from \
                 the list",
                place.display()
            ));
        }
        if place.starts_with(&real) {
            return Some(format!(
                "`sandbox.{field}` names `{shown}`, which holds {what} `{}`: {why}; name a \
                 directory that holds only the toolchain",
                place.display()
            ));
        }
    }
    if let Some(home) = guarded.home.as_deref().map(real_of)
        && home != Path::new("/")
        && home.starts_with(&real)
    {
        return Some(format!(
            "`sandbox.{field}` names `{shown}`, which is (or holds) the whole home directory \
             `{}`, with its keys and credentials: name only the toolchain's directory, such as \
             `{}`",
            home.display(),
            home.join(".pyenv").display()
        ));
    }
    None
}

/// The first refusal among a profile's relaxations, for an execution about to start.
pub fn check_profile(profile: &manifest::SandboxProfile, guarded: &Guarded) -> Result<(), String> {
    if !profile.enabled || profile.filesystem == manifest::FilesystemMode::None {
        return Ok(());
    }
    let all = (profile.expose.iter().map(|p| ("expose", p)))
        .chain(profile.writable.iter().map(|p| ("writable", p)));
    for (field, path) in all {
        if let Some(reason) = refused(field, path, guarded) {
            return Err(format!("cannot start the agent: {reason}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchains_pass_and_the_engines_places_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let project = root.join("project");
        let state = project.join(".agentgrid");
        let git = project.join(".git");
        let home = root.join("home");
        let tools = home.join(".pyenv");
        for dir in [&state, &git, &tools] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::os::unix::fs::symlink(&tools, root.join("link")).unwrap();
        let guarded = Guarded {
            state_dir: state.clone(),
            main_checkout: Some(project.clone()),
            git_dir: Some(git.clone()),
            worktrees: Some(state.join("worktrees")),
            home: Some(home.clone()),
        };
        assert_eq!(refused("expose", &tools, &guarded), None);
        assert_eq!(refused("expose", Path::new("/usr/bin"), &guarded), None);
        let says = |path: &Path, words: &str| {
            let reason = refused("writable", path, &guarded).expect("refused");
            assert!(reason.contains(words), "{reason}");
            assert!(reason.contains("sandbox.writable"), "{reason}");
        };
        says(&state, "state directory");
        says(&git, "git directory");
        says(&project, "holds the project's state directory");
        std::fs::create_dir_all(project.join("src")).unwrap();
        says(&project.join("src"), "inside the main checkout");
        says(&root, "holds the project's state directory");
        says(&home, "whole home directory");
        says(Path::new("/"), "whole filesystem");
        says(Path::new("/proc"), "inside `/proc`");
        says(Path::new("/dev/null"), "inside `/dev`");
        says(&root.join("link"), "leads to");
        says(&root.join("nothing"), "not there");
    }
}
