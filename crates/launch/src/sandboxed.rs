//! Starting a child inside a sandbox: the helper command that replaces the program when the
//! spec asks for one. The helper (the agentgrid binary run as `agentgrid __sandbox`, see the
//! sandbox crate) builds the sandbox and then becomes the program; everything else about the
//! child (its process group, pipes, environment, reaping) stays exactly as without a sandbox.

use std::path::Path;

use crate::{Error, LaunchSpec};

/// The command to start instead of `program` when `spec` has a sandbox, after checking that
/// this host can build it.
pub(crate) fn helper(
    spec: &LaunchSpec,
    program: &Path,
) -> Result<Option<sandbox::HelperCommand>, Error> {
    let Some(sandbox_spec) = &spec.sandbox else {
        return Ok(None);
    };
    if !sandbox_spec.uses_namespaces() {
        // No filesystem and no network isolation asked for: only the limits remain, and those
        // are set in the child directly (see `start`), without the helper's cost.
        return Ok(None);
    }
    let fail = |source| Error::Sandbox {
        program: spec.program.clone(),
        source,
    };
    sandbox::check(sandbox_spec, sandbox::host_support()).map_err(fail)?;
    sandbox::helper_command(sandbox_spec, program, &spec.program, &spec.args, &spec.cwd)
        .map(Some)
        .map_err(fail)
}
