//! Toolchains the sandbox hides, offered as `sandbox.expose` entries: the interpreter an
//! agent's program needs (which `init` writes as a real entry, since the agent cannot start
//! without it) and the directories of the user's `PATH` that lie in hidden places (which
//! `init` writes commented out and `validate` suggests, since only the person knows whether
//! the agent and its validators run tools from them).
//!
//! The sandbox's view is an allow-list: a toolchain under the home directory (nvm, pyenv,
//! rustup's `~/.cargo`, a virtualenv) is absent inside, and a tool the agent or a validator
//! runs from there is simply not found. What is offered is the directory right inside the
//! hidden place ([`launch::preflight::expose_hint`]), never one that
//! [`executor::relax::refused`] would refuse, and never a temporary directory, where nothing
//! of a person's setup lives.

use std::path::{Path, PathBuf};

use launch::sandbox::{SandboxSpec, Visibility};

use crate::checks::{Finding, Severity};

/// Where an agent's tools are looked up and what its sandbox shows.
pub struct Around<'a> {
    /// The directory a relative program is taken from.
    pub cwd: &'a Path,
    /// The `PATH` the agent and its validators are given (the engine's).
    pub path: &'a str,
    /// The engine's `$HOME`, which every sandbox hides.
    pub home: Option<&'a Path>,
    /// The agent's view, with every path already exposed.
    pub view: &'a SandboxSpec,
    /// What a relaxation may not name.
    pub guarded: &'a executor::relax::Guarded,
}

/// The interpreter of a program's `#!` line lies where the sandbox hides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenInterpreter {
    pub interpreter: PathBuf,
    /// The directory to expose for it.
    pub expose: PathBuf,
}

/// A directory of the `PATH` that the sandbox hides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenDir {
    /// As the `PATH` names it.
    pub dir: PathBuf,
    /// The directory to expose for it.
    pub expose: PathBuf,
}

/// The interpreter `program` needs that the view hides, with the directory to expose; `None`
/// when it is shown, when there is none, or when the only place to offer would be refused.
pub fn interpreter(program: &str, around: &Around<'_>) -> Option<HiddenInterpreter> {
    let checked = launch::preflight::check_program(
        program,
        launch::preflight::Surroundings {
            cwd: around.cwd,
            path: around.path,
            sandbox: Some(around.view),
            home: around.home,
        },
    );
    match checked {
        Err(launch::preflight::Problem::InterpreterHidden {
            interpreter,
            suggest,
            ..
        }) if executor::relax::refused("expose", &suggest, around.guarded).is_none() => {
            Some(HiddenInterpreter {
                interpreter,
                expose: suggest,
            })
        }
        _ => None,
    }
}

/// The directories of the `PATH` the view hides, in `PATH` order, each with the directory to
/// expose for it (several may share one: `~/.pyenv/bin` and `~/.pyenv/shims`).
pub fn path_dirs(around: &Around<'_>) -> Vec<HiddenDir> {
    let temporary: Vec<PathBuf> = ["/tmp", "/var/tmp"]
        .iter()
        .filter_map(|t| Path::new(t).canonicalize().ok())
        .collect();
    let mut found: Vec<HiddenDir> = Vec::new();
    for dir in around.path.split(':').map(PathBuf::from) {
        if !dir.is_absolute() || !dir.is_dir() || found.iter().any(|f| f.dir == dir) {
            continue;
        }
        let Visibility::Hidden { real, hidden_by } =
            launch::sandbox::visibility(around.view, around.home, &dir)
        else {
            continue;
        };
        // Hidden as a temporary directory itself (a home inside one is named as the home).
        if hidden_by
            .as_deref()
            .is_some_and(|place| temporary.iter().any(|t| place == t))
        {
            continue;
        }
        let expose = launch::preflight::expose_hint(&real, hidden_by.as_deref());
        if executor::relax::refused("expose", &expose, around.guarded).is_some() {
            continue;
        }
        found.push(HiddenDir { dir, expose });
    }
    found
}

/// The distinct directories to expose for `dirs`, in order.
pub fn exposures(dirs: &[HiddenDir]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if !out.contains(&d.expose) {
            out.push(d.expose.clone());
        }
    }
    out
}

/// A path as a YAML double-quoted scalar; `None` for one that is no plain text (not UTF-8,
/// or holding control characters), which is better left out of a manifest than mangled.
pub fn yaml_path(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    if text.chars().any(char::is_control) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// What `validate` suggests for each sandboxed agent: the toolchain directories of the `PATH`
/// its sandbox hides, at the agent's `sandbox.expose` (or where one would go).
pub fn suggestions(root: &Path, manifests: &manifest::Project) -> Vec<Finding> {
    let path = std::env::var("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let guarded = executor::relax::Guarded {
        state_dir: manifests.root.clone(),
        main_checkout: Some(root.to_path_buf()),
        git_dir: Some(root.join(".git")),
        worktrees: Some(manifests.workspace_root()),
        home: home.clone(),
    };
    let mut found = Vec::new();
    for agent in &manifests.agents {
        let Some(mut view) = crate::checks::agent_view(root, manifests, agent) else {
            continue;
        };
        // What the adapter of a known CLI shows beside its program (its npm package, its
        // virtualenv) needs no exposure of its own.
        if let Some(adapter) = executor::runtime::adapter(agent.spec().runtime.kind) {
            let program = agent
                .spec()
                .runtime
                .command
                .first()
                .cloned()
                .unwrap_or_else(|| adapter.program().to_string());
            if let Ok(real) =
                executor::runtime::resolve_program(adapter.as_ref(), &program, root, &path)
            {
                view.expose.extend(adapter.shown_with(&real));
            }
        }
        let around = Around {
            cwd: root,
            path: &path,
            home: home.as_deref(),
            view: &view,
            guarded: &guarded,
        };
        let dirs = path_dirs(&around);
        if dirs.is_empty() {
            continue;
        }
        let listed: Vec<String> = dirs
            .iter()
            .map(|d| format!("`{}`", d.dir.display()))
            .collect();
        let offered: Vec<String> = exposures(&dirs)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let at = |path: &[&str]| manifest::locate(&agent.source, Some(&agent.name), path);
        let place = at(&["spec", "sandbox", "expose"])
            .or_else(|| at(&["spec", "sandbox"]))
            .or_else(|| at(&["spec"]));
        found.push(Finding::at(
            Severity::Suggestion,
            place,
            &agent.source,
            format!(
                "agent `{}`: the sandbox hides these toolchain directories of your PATH: {}; \
                 if the agent or its validators run tools from them, add `sandbox: {{expose: \
                 [{}]}}` to the agent's manifest (read-only)",
                agent.name,
                listed.join(", "),
                offered.join(", ")
            ),
        ));
    }
    found
}

/// What `init` writes under a new agent's `sandbox:`: the exposure its program's interpreter
/// needs, and the hidden toolchains of the `PATH`, offered commented out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    pub needed: Option<HiddenInterpreter>,
    pub offered: Vec<HiddenDir>,
}

impl Offer {
    /// For a new agent of the project at `root` (state directory `state_dir`, worktrees in
    /// their default place) running the known CLI `adapter`, with the engine's `PATH` and
    /// `$HOME` as `init` sees them.
    pub fn for_cli(
        root: &Path,
        state_dir: &Path,
        adapter: &dyn executor::runtime::Adapter,
    ) -> Offer {
        let path = std::env::var("PATH").unwrap_or_default();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let worktrees = state_dir.join("workspaces");
        let guarded = executor::relax::Guarded {
            state_dir: state_dir.to_path_buf(),
            main_checkout: Some(root.to_path_buf()),
            git_dir: Some(root.join(".git")),
            worktrees: Some(worktrees.clone()),
            home: home.clone(),
        };
        let mut view = SandboxSpec::new(worktrees.join("task"));
        view.hide.push(root.to_path_buf());
        let program =
            executor::runtime::resolve_program(adapter, adapter.program(), root, &path).ok();
        if let Some(program) = &program {
            view.expose.extend(adapter.shown_with(program));
        }
        let mut around = Around {
            cwd: root,
            path: &path,
            home: home.as_deref(),
            view: &view,
            guarded: &guarded,
        };
        let needed = program
            .as_ref()
            .and_then(|p| interpreter(&p.display().to_string(), &around));
        let mut shown = view.clone();
        shown.expose.extend(needed.iter().map(|n| n.expose.clone()));
        around.view = &shown;
        Offer {
            needed,
            offered: path_dirs(&around),
        }
    }

    /// The lines to put under `sandbox:` (indented four spaces), or nothing.
    pub fn yaml(&self, program: &str) -> String {
        let offered: Vec<String> = exposures(&self.offered)
            .iter()
            .filter_map(|p| yaml_path(p))
            .collect();
        let needed = self
            .needed
            .as_ref()
            .and_then(|n| Some((n, yaml_path(&n.expose)?)));
        let header = "# Toolchains on your PATH that the sandbox hides: uncomment the ones the\n\
                      # agent and its validators need (shown read-only).\n";
        let mut out = String::new();
        match needed {
            Some((n, entry)) => {
                let interpreter = n.interpreter.display().to_string();
                out.push_str("    expose:              # host paths shown read-only\n");
                out.push_str(&format!(
                    "      # `{program}` runs on `{}`, which lies here\n",
                    interpreter.replace(char::is_control, "?")
                ));
                out.push_str(&format!("      - {entry}\n"));
                if !offered.is_empty() {
                    for line in header.lines() {
                        out.push_str(&format!("      {line}\n"));
                    }
                    for entry in &offered {
                        out.push_str(&format!("      # - {entry}\n"));
                    }
                }
            }
            None if !offered.is_empty() => {
                for line in header.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
                out.push_str("    # expose:\n");
                for entry in &offered {
                    out.push_str(&format!("    #   - {entry}\n"));
                }
            }
            None => {}
        }
        out
    }

    /// What `init` says about the agent it wrote to `file`.
    pub fn notes(&self, program: &str, file: &Path) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(n) = &self.needed {
            notes.push(format!(
                "`{program}` runs on `{}`, which the sandbox hides: {} exposes `{}` read-only \
                 (sandbox.expose)",
                n.interpreter.display(),
                file.display(),
                n.expose.display()
            ));
        }
        let offered = exposures(&self.offered);
        if !offered.is_empty() {
            let list: Vec<String> = offered
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect();
            notes.push(format!(
                "the sandbox hides toolchains on your PATH ({}): {} offers them as commented \
                 sandbox.expose entries; uncomment the ones the agent needs",
                list.join(", "),
                file.display()
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_quoted_for_yaml_and_control_characters_are_refused() {
        assert_eq!(
            yaml_path(Path::new("/home/a \"b\"\\c")).as_deref(),
            Some("\"/home/a \\\"b\\\"\\\\c\"")
        );
        assert_eq!(yaml_path(Path::new("/home/a\nb")), None);
    }

    #[test]
    fn hidden_dirs_of_the_path_are_offered_once_per_toolchain_and_temp_dirs_never() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap().join("home");
        for dir in [".pyenv/bin", ".pyenv/shims", ".cargo/bin"] {
            std::fs::create_dir_all(home.join(dir)).unwrap();
        }
        let scratch = tmp.path().canonicalize().unwrap().join("scratch-bin");
        std::fs::create_dir_all(&scratch).unwrap();
        let path = format!(
            "{p}/.pyenv/bin:{p}/.pyenv/shims:relative:{s}:/usr/bin:{p}/.cargo/bin:{p}/missing",
            p = home.display(),
            s = scratch.display()
        );
        let view = SandboxSpec::new("/nonexistent/agentgrid-workspace");
        let guarded = executor::relax::Guarded {
            state_dir: tmp.path().join("project/.agentgrid"),
            home: Some(home.clone()),
            ..Default::default()
        };
        let around = Around {
            cwd: Path::new("/"),
            path: &path,
            home: Some(&home),
            view: &view,
            guarded: &guarded,
        };
        let dirs = path_dirs(&around);
        assert_eq!(
            dirs.iter().map(|d| d.dir.clone()).collect::<Vec<_>>(),
            vec![
                home.join(".pyenv/bin"),
                home.join(".pyenv/shims"),
                home.join(".cargo/bin")
            ]
        );
        assert_eq!(
            exposures(&dirs),
            vec![home.join(".pyenv"), home.join(".cargo")]
        );
        // Once exposed, a toolchain is no longer offered.
        let mut exposed = view.clone();
        exposed.expose.push(home.join(".pyenv"));
        let around = Around {
            view: &exposed,
            ..around
        };
        assert_eq!(exposures(&path_dirs(&around)), vec![home.join(".cargo")]);
    }
}
