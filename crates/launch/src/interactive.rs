//! Programs a person works in at the terminal, such as the editor that takes a rejection's
//! feedback.
//!
//! Unlike every other child, such a program shares the terminal with agentgrid: it reads the
//! keys and draws on the screen, so it inherits standard input, output and error and stays in
//! the caller's process group (the terminal's foreground group; a group of its own could not
//! read from the terminal). The environment is still exactly the spec's, and it never runs
//! sandboxed: it is the person's own tool, started on their behalf and waited for.

use crate::{Error, LaunchSpec};

/// Runs `spec` on the caller's terminal and waits for it; the exit status says how it ended.
/// Blocks the calling thread for as long as the person works, so call it off async threads.
#[allow(clippy::disallowed_methods)] // The other function allowed to create a Command.
pub fn run_interactive(spec: &LaunchSpec) -> Result<std::process::ExitStatus, Error> {
    if spec.sandbox.is_some() {
        return Err(Error::Spawn {
            program: spec.program.clone(),
            cwd: spec.cwd.clone(),
            source: std::io::Error::other(
                "a program run on the person's terminal is never sandboxed",
            ),
        });
    }
    if !spec.cwd.is_dir() {
        return Err(Error::CwdMissing {
            program: spec.program.clone(),
            cwd: spec.cwd.clone(),
        });
    }
    let program = spec.resolve_program()?;
    let spawn_error = |source| Error::Spawn {
        program: spec.program.clone(),
        cwd: spec.cwd.clone(),
        source,
    };
    let mut child = std::process::Command::new(&program)
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .spawn()
        .map_err(spawn_error)?;
    child.wait().map_err(spawn_error)
}
