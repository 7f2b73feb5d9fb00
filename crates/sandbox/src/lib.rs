//! Sandboxed executions: the isolation agentgrid puts around every agent it runs, built into
//! the agentgrid binary itself, with no external sandbox program.
//!
//! An agent is untrusted code with a shell. Inside its sandbox it can do its work (read the
//! system, write its workspace, run its tools) and nothing else: it cannot read secrets outside
//! the workspace, write elsewhere, reach the network or the host's sockets, see or signal the
//! engine, or exhaust the machine.
//!
//! The principal types and functions:
//! - [`SandboxSpec`]: the filesystem mode ([`FilesystemMode`]), the network mode
//!   ([`NetworkMode`], with a [`GatewayRelay`] for `gateway`), the workspace, the paths to make
//!   writable, expose or hide, and the [`Limits`]. It is plain data (serde), because it travels
//!   to the helper process as JSON.
//! - [`helper_command`] turns a spec and a program into the command the launch crate starts;
//!   [`is_helper_invocation`] and [`helper_main`] are the other end, called first thing in the
//!   agentgrid binary's `main`.
//! - [`probe`] / [`host_support`] find out what the host supports ([`HostSupport`], one
//!   [`MechanismSupport`] per [`Mechanism`]); [`check`] refuses a spec the host cannot honour,
//!   naming each missing mechanism and the manifest setting that opts out of it knowingly.
//! - [`GitMetadata`] names a worktree's git directories (the engine knows them; the sandbox
//!   never reads the workspace's `.git` file) and what a commit from inside writes.
//! - [`SelfTest`] and [`selftest_main`]: the boundary checking itself from inside a sandbox.
//!
//! The key design decision: isolation is applied by re-executing the agentgrid binary as a
//! small helper (`agentgrid __sandbox`), never on the engine's own threads. The helper starts
//! single-threaded, creates user, mount, PID, IPC and network namespaces, and becomes the
//! parent of PID 1 of the new PID namespace; PID 1 builds a read-only view of the system with
//! the workspace writable and private directories hidden, then forks the program, which
//! confines itself further (rlimits, Landlock, no capabilities, no_new_privs, seccomp) and
//! executes. Mount namespaces hide, Landlock backs them up, seccomp closes the kernel
//! interfaces that would undo both, and the PID namespace makes sure that when the helper's
//! process group is killed, everything inside dies with it. See [`helper`] for the process
//! structure and the `view` module for the filesystem.
//!
//! ```no_run
//! // In the launch crate: start `sh -c make` in a sandbox around /work/ws.
//! let mut spec = sandbox::SandboxSpec::new("/work/ws");
//! spec.limits.wall_time = Some(domain::Duration::from_secs(600));
//! sandbox::check(&spec, sandbox::host_support())?;
//! let cmd = sandbox::helper_command(
//!     &spec,
//!     "/bin/sh".as_ref(),
//!     "sh",
//!     &["-c".into(), "make".into()],
//!     "/work/ws".as_ref(),
//! )?;
//! // Start cmd.helper with cmd.args and the program's environment plus cmd.env.
//! # Ok::<(), sandbox::Error>(())
//! ```

mod cgroup;
mod confine;
mod error;
pub mod git;
pub mod helper;
mod identity;
mod probe;
pub mod selftest;
mod spec;
mod sys;
mod view;
mod visible;

pub use confine::rlimit_table;
pub use error::Error;
pub use git::GitMetadata;
pub use helper::{CANNOT_EXECUTE, NOT_FOUND, SETUP_FAILED, helper_main, is_helper_invocation};
pub use probe::{
    HostSupport, Mechanism, MechanismSupport, Missing, check, host_support, probe, requirements,
    sockets_in_system_trees, unix_socket_defence,
};
pub use selftest::{SELFTEST_ARG, SelfTest, is_selftest_invocation, selftest_main};
pub use spec::{
    FilesystemMode, GatewayRelay, HELPER_ARG, HelperCommand, Invocation, Limits, NetworkMode,
    SPEC_VAR, SandboxSpec, helper_command,
};
pub use view::SYSTEM;
pub use visible::{Visibility, visibility};
