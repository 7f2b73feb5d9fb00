//! Checks made before a program starts: that it will be found, that the interpreter its `#!`
//! line names exists, and that a sandbox will show that interpreter.
//!
//! Each of these fails the same way however often the program is started, so they are
//! configuration mistakes, not bad luck: `validate` and `doctor` report them before anything
//! runs, and the executor fails the execution at once instead of leaving it to retries.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sandbox::{SandboxSpec, Visibility};

/// A program that cannot start, whatever is tried again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "`{program}` is on no directory of the PATH: install it, fix its name, or give its full \
         path (the PATH searched: `{path}`)"
    )]
    NotFound { program: String, path: String },

    #[error(
        "`{}` does not exist or is not an executable file: check the path (a relative one is \
         taken from the task's worktree, which holds only what is committed) and its permissions",
        path.display()
    )]
    NotExecutable { path: PathBuf },

    #[error(
        "`{}` starts with `#!{line}`, but its interpreter `{interpreter}` {why}: install it, or \
         change the script's first line",
        program.display()
    )]
    InterpreterMissing {
        program: PathBuf,
        line: String,
        interpreter: String,
        why: String,
    },

    #[error(
        "`{}` needs the interpreter `{}` (its `#!` line), which the sandbox hides ({}): the \
         sandbox shows only the system trees ({}), the workspace and the paths the agent's \
         manifest exposes, so add `sandbox: {{expose: [{}]}}` to the agent's manifest to show \
         that toolchain read-only, use an interpreter installed in the system trees, or give \
         the agent `sandbox: {{filesystem: none}}` knowingly",
        program.display(),
        interpreter.display(),
        place,
        sandbox::SYSTEM.join(", "),
        suggest.display()
    )]
    InterpreterHidden {
        program: PathBuf,
        interpreter: PathBuf,
        /// Where it really is and the hidden place that holds it, in words.
        place: String,
        /// The directory to expose: see [`expose_hint`].
        suggest: PathBuf,
    },
}

/// A program a shell line names, which the shell looks up on the `PATH` of the view it runs
/// in: in a sandbox, only the directories the sandbox shows count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{name}` is found only at `{}`, which the sandbox hides ({place}): add `sandbox: \
     {{expose: [{}]}}` to the agent's manifest to show that toolchain read-only, install it in \
     a system tree, or give the agent `sandbox: {{filesystem: none}}` knowingly",
    found.display(),
    suggest.display()
)]
pub struct HiddenOnPath {
    pub name: String,
    pub found: PathBuf,
    pub place: String,
    /// The directory to expose: see [`expose_hint`].
    pub suggest: PathBuf,
}

/// The directory to offer as `sandbox.expose` for a hidden file at `real` (a real path):
/// the directory right inside the hidden place that holds it (`~/.pyenv` for
/// `~/.pyenv/versions/3.12/bin/python3`, since a toolchain needs the files beside its binary),
/// or right inside the top-level directory when no hidden place holds it (`/opt/tool`). The
/// file itself when it lies directly in that place.
pub fn expose_hint(real: &Path, hidden_by: Option<&Path>) -> PathBuf {
    let top;
    let base = match hidden_by {
        Some(place) if real.starts_with(place) => place,
        _ => {
            top = real.components().take(2).collect::<PathBuf>();
            &top
        }
    };
    match real
        .strip_prefix(base)
        .ok()
        .and_then(|rest| rest.components().next())
    {
        Some(first) => base.join(first),
        None => real.to_path_buf(),
    }
}

/// Why a program named in a shell line will not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByName {
    #[error(transparent)]
    Program(Problem),
    #[error(transparent)]
    Hidden(HiddenOnPath),
}

/// Where a program will be looked for and what it will see: its working directory, the `PATH`
/// it is given, and the sandbox it runs in (with the `$HOME` that sandbox hides), if any.
#[derive(Debug, Clone, Copy)]
pub struct Surroundings<'a> {
    pub cwd: &'a Path,
    pub path: &'a str,
    pub sandbox: Option<&'a SandboxSpec>,
    pub home: Option<&'a Path>,
}

/// What was found: the program, and the interpreter its `#!` line leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub program: PathBuf,
    pub interpreter: Option<PathBuf>,
}

/// Finds `program` as [`crate::LaunchSpec::resolve_program`] would, then follows its `#!`
/// line (through `env`, on the same `PATH`) and checks that the interpreter exists and that
/// the sandbox shows it. The program itself is always shown: the sandbox binds it.
pub fn check_program(program: &str, around: Surroundings<'_>) -> Result<Found, Problem> {
    let found = find(program, around.cwd, around.path).ok_or_else(|| {
        if program.contains('/') {
            Problem::NotExecutable {
                path: around.cwd.join(program),
            }
        } else {
            Problem::NotFound {
                program: program.to_string(),
                path: around.path.to_string(),
            }
        }
    })?;
    let Some((line, interpreter, argument)) = shebang(&found) else {
        return Ok(Found {
            program: found,
            interpreter: None,
        });
    };
    let missing = |name: &str, why: String| Problem::InterpreterMissing {
        program: found.clone(),
        line: line.clone(),
        interpreter: name.to_string(),
        why,
    };
    let interpreter_path = PathBuf::from(&interpreter);
    if !executable(&interpreter_path) {
        return Err(missing(&interpreter, "does not exist".into()));
    }
    check_shown(&found, &interpreter_path, around)?;
    // `#!/usr/bin/env python3` runs whatever `python3` comes first on the PATH inside.
    let through_env = interpreter_path.file_name().is_some_and(|n| n == "env");
    let Some(name) = argument.filter(|_| through_env) else {
        return Ok(Found {
            program: found,
            interpreter: Some(interpreter_path),
        });
    };
    let candidates: Vec<PathBuf> = around
        .path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(&name))
        .filter(|c| executable(c))
        .collect();
    let Some(first) = candidates.first() else {
        return Err(missing(
            &name,
            format!("is on no directory of the PATH (`{}`)", around.path),
        ));
    };
    let shown = candidates
        .iter()
        .find(|c| check_shown(&found, c, around).is_ok());
    match shown {
        Some(c) => Ok(Found {
            program: found,
            interpreter: Some(c.clone()),
        }),
        None => Err(check_shown(&found, first, around).unwrap_err()),
    }
}

/// Checks a program that a shell line runs by `name` (`sh -c "aider --yes …"`): the first
/// executable of that name on the `PATH` that the sandbox shows, and its `#!` interpreter.
pub fn check_by_name(name: &str, around: Surroundings<'_>) -> Result<Found, ByName> {
    let candidates: Vec<PathBuf> = around
        .path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .filter(|c| executable(c))
        .collect();
    let Some(first) = candidates.first() else {
        return Err(ByName::Program(Problem::NotFound {
            program: name.to_string(),
            path: around.path.to_string(),
        }));
    };
    let shown = |c: &PathBuf| match around.sandbox {
        None => Visibility::Shown,
        Some(spec) => sandbox::visibility(spec, around.home, c),
    };
    let Some(found) = candidates.iter().find(|c| shown(c) == Visibility::Shown) else {
        let place = match shown(first) {
            Visibility::Hidden {
                real,
                hidden_by: Some(place),
            } => format!(
                "it is `{}`, inside the hidden `{}`",
                real.display(),
                place.display()
            ),
            Visibility::Hidden { real, .. } => {
                format!(
                    "it is `{}`, outside every tree the sandbox shows",
                    real.display()
                )
            }
            _ => "it cannot be read".into(),
        };
        let suggest = match shown(first) {
            Visibility::Hidden { real, hidden_by } => expose_hint(&real, hidden_by.as_deref()),
            _ => first.clone(),
        };
        return Err(ByName::Hidden(HiddenOnPath {
            name: name.to_string(),
            found: first.clone(),
            place,
            suggest,
        }));
    };
    check_program(&found.display().to_string(), around).map_err(ByName::Program)
}

fn check_shown(
    program: &Path,
    interpreter: &Path,
    around: Surroundings<'_>,
) -> Result<(), Problem> {
    let Some(spec) = around.sandbox else {
        return Ok(());
    };
    match sandbox::visibility(spec, around.home, interpreter) {
        Visibility::Shown | Visibility::Missing => Ok(()),
        Visibility::Hidden { real, hidden_by } => Err(Problem::InterpreterHidden {
            program: program.to_path_buf(),
            interpreter: interpreter.to_path_buf(),
            suggest: expose_hint(&real, hidden_by.as_deref()),
            place: match hidden_by {
                Some(place) => format!(
                    "it is `{}`, inside the hidden `{}`",
                    real.display(),
                    place.display()
                ),
                None => format!(
                    "it is `{}`, outside every tree the sandbox shows",
                    real.display()
                ),
            },
        }),
    }
}

/// The program a name or path leads to, or `None`.
fn find(program: &str, cwd: &Path, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        };
        return executable(&p).then_some(p);
    }
    crate::spec::find_on_path(program, path)
}

fn executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A script's `#!` line: the line itself, the interpreter and its first argument that is not
/// an option (what `env` runs, `env -S` included).
fn shebang(program: &Path) -> Option<(String, String, Option<String>)> {
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(program).ok()?;
    let n = file.read(&mut head).ok()?;
    let head = head.get(..n)?;
    let rest = head.strip_prefix(b"#!")?;
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = String::from_utf8_lossy(&rest[..end]).trim().to_string();
    let mut words = line.split_whitespace();
    let interpreter = words.next()?.to_string();
    let argument = words.find(|w| !w.starts_with('-')).map(str::to_string);
    Some((line, interpreter, argument))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn around<'a>(
        cwd: &'a Path,
        path: &'a str,
        sandbox: Option<&'a SandboxSpec>,
    ) -> Surroundings<'a> {
        Surroundings {
            cwd,
            path,
            sandbox,
            home: None,
        }
    }

    #[test]
    fn a_missing_program_or_interpreter_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(matches!(
            check_program("claud", around(d, "/nonexistent", None)),
            Err(Problem::NotFound { .. })
        ));
        assert!(matches!(
            check_program("./agent.sh", around(d, "/usr/bin:/bin", None)),
            Err(Problem::NotExecutable { .. })
        ));
        script(d, "agent.sh", "#!/nonexistent/python9\nprint(1)\n");
        let err = check_program("./agent.sh", around(d, "/usr/bin:/bin", None)).unwrap_err();
        assert!(
            err.to_string()
                .contains("`/nonexistent/python9` does not exist"),
            "{err}"
        );
        script(d, "env.sh", "#!/usr/bin/env -S no-such-interpreter -u\n");
        let err = check_program("./env.sh", around(d, "/usr/bin:/bin", None)).unwrap_err();
        assert!(
            err.to_string()
                .contains("`no-such-interpreter` is on no directory"),
            "{err}"
        );
        script(d, "ok.sh", "#!/bin/sh\nexit 0\n");
        let found = check_program("./ok.sh", around(d, "/usr/bin:/bin", None)).unwrap();
        assert_eq!(found.interpreter, Some(PathBuf::from("/bin/sh")));
    }

    #[test]
    fn an_interpreter_outside_the_sandbox_view_is_reported_as_hidden() {
        // The interpreter sits beside the workspace, in a temporary directory every view hides.
        let tools = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        let interpreter = script(tools.path(), "python3", "#!/bin/sh\nexec /bin/sh \"$@\"\n");
        script(
            workspace.path(),
            "agent.py",
            &format!("#!{}\n", interpreter.display()),
        );
        let spec = SandboxSpec::new(workspace.path());
        let err = check_program(
            "./agent.py",
            around(workspace.path(), "/usr/bin:/bin", Some(&spec)),
        )
        .unwrap_err();
        assert!(matches!(err, Problem::InterpreterHidden { .. }), "{err}");
        assert!(err.to_string().contains("which the sandbox hides"), "{err}");
        // Through `env`, the first one the sandbox shows is the one that runs.
        script(workspace.path(), "env.py", "#!/usr/bin/env python3\n");
        let path = format!("{}", tools.path().display());
        let err =
            check_program("./env.py", around(workspace.path(), &path, Some(&spec))).unwrap_err();
        assert!(matches!(err, Problem::InterpreterHidden { .. }), "{err}");
        // A shell line's program is looked up among what the sandbox shows.
        let err =
            check_by_name("python3", around(workspace.path(), &path, Some(&spec))).unwrap_err();
        assert!(matches!(err, ByName::Hidden(_)), "{err}");
        let both = format!("{path}:/bin");
        assert!(check_by_name("sh", around(workspace.path(), &both, Some(&spec))).is_ok());
        assert!(matches!(
            check_by_name("no-such-tool", around(workspace.path(), &both, Some(&spec))),
            Err(ByName::Program(Problem::NotFound { .. }))
        ));
        // Without the sandbox, the same interpreter is fine.
        assert!(
            check_program(
                "./agent.py",
                around(workspace.path(), "/usr/bin:/bin", None)
            )
            .is_ok()
        );
    }

    #[test]
    fn the_offered_exposure_is_the_toolchain_not_the_hidden_place() {
        let home = Path::new("/home/me");
        assert_eq!(
            expose_hint(
                Path::new("/home/me/.pyenv/versions/3.12/bin/python3.12"),
                Some(home)
            ),
            PathBuf::from("/home/me/.pyenv")
        );
        assert_eq!(
            expose_hint(Path::new("/home/me/python3"), Some(home)),
            PathBuf::from("/home/me/python3")
        );
        assert_eq!(
            expose_hint(Path::new("/opt/tool/bin/node"), None),
            PathBuf::from("/opt/tool")
        );
    }
}
